//! `arp` detector: who answers for an address on the bridge. arpwatch's semantics made
//! precise:
//!
//! - `new_binding`: an address claimed for the first time;
//! - `mac_change`: a different MAC now claims it and the previous one has been quiet
//!   (a host replaced its NIC or MAC: one move, no conflict);
//! - `conflict`: two MACs are live for one address — the previous holder claimed it
//!   within `conflict_window` of the newcomer (two answers to one question), or the
//!   claims alternate (flip-flop); `garp_conflict` when the newcomer announced it with
//!   a gratuitous ARP; `probe_conflict` when an RFC 5227 probe asks for an address
//!   someone holds;
//! - `conflict_cleared`: only one MAC seen for `quiet_period`.
//!
//! Everything is per L2 domain ([`Slot`]: bridge, outer VLAN, address): the same address
//! on two bridges, or on two VLANs of one bridge, is two bindings and never a conflict.

pub mod active;
pub mod bindings;
pub mod config;
pub mod fdb;
pub mod kernel;
pub mod metrics;
pub mod report;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use agent_common::{
    arp::{ARP_CHANGE, ARP_F_GRATUITOUS, ARP_NEW, ARP_PROBE_CONFLICT, ArpEvent},
    decode::Event,
};
use serde::Serialize;

use crate::net::Mac;
use config::ArpConfig;

/// Bounded `kind` label values.
pub const KINDS: &[&str] = &[
    "new_binding",
    "mac_change",
    "conflict",
    "garp_conflict",
    "probe_conflict",
    "conflict_cleared",
    "ipam_live_but_free",
    "ipam_other_owner",
];

/// Why a lease file cannot be used (IPAM comparison pauses until it is fixed).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot read the lease file: {0}")]
    Read(#[from] std::io::Error),
    #[error("lease file (JSON): {0}")]
    Json(#[from] serde_json::Error),
    #[error("lease file line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Expected bindings from IPAM (the lease file): address -> (MAC if known, owner).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leases {
    pub by_addr: BTreeMap<IpAddr, (Option<Mac>, String)>,
}

impl Leases {
    /// JSON `{"leases": [{"ip": "10.8.64.2", "mac": "02:..", "owner": "sandbox-a"}]}`
    /// or CSV lines `ip,mac,owner` (mac may be empty; `#` comments).
    pub fn parse(text: &str) -> Result<Leases, LeaseError> {
        let mut by_addr = BTreeMap::new();
        if text.trim_start().starts_with('{') {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct File {
                leases: Vec<Lease>,
            }
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Lease {
                ip: IpAddr,
                #[serde(default)]
                mac: Option<Mac>,
                #[serde(default)]
                owner: String,
            }
            let f: File = serde_json::from_str(text)?;
            for l in f.leases {
                by_addr.insert(l.ip, (l.mac, l.owner));
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut f = line.split(',').map(str::trim);
                let ip: IpAddr =
                    f.next()
                        .unwrap_or("")
                        .parse()
                        .map_err(|e: std::net::AddrParseError| LeaseError::Line {
                            line: n + 1,
                            reason: e.to_string(),
                        })?;
                let mac = match f.next().unwrap_or("") {
                    "" => None,
                    m => Some(m.parse().map_err(|e: crate::net::MacParseError| {
                        LeaseError::Line {
                            line: n + 1,
                            reason: e.to_string(),
                        }
                    })?),
                };
                by_addr.insert(ip, (mac, f.next().unwrap_or("").to_string()));
            }
        }
        Ok(Leases { by_addr })
    }
}

/// One address in one L2 domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Slot {
    /// ifindex of the bridge (or of the interface, when it is in no bridge).
    pub domain: u32,
    /// Outer VLAN id; 0 untagged.
    pub vlan: u16,
    pub addr: IpAddr,
}

impl Slot {
    fn of(e: &ArpEvent) -> Slot {
        Slot {
            domain: e.domain,
            vlan: e.vlan,
            addr: addr_of(e),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArpFinding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    pub addr: IpAddr,
    /// The L2 domain: ifindex of the bridge (named in the log as `bridge`).
    pub domain: u32,
    /// The claimer (or, for `conflict_cleared`, the MAC that remains).
    pub mac: Mac,
    pub ifindex: u32,
    /// The previous holder (changes and conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mac: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_ifindex: Option<u32>,
    /// Milliseconds between the previous holder's last claim and this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_seen_ms_ago: Option<u64>,
    /// Every MAC seen for the address while the conflict lasts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<Mac>,
    pub vlan: u16,
    /// Inner VLAN id of a QinQ frame.
    #[serde(skip_serializing_if = "is_zero")]
    pub inner_vlan: u16,
    /// The claim was a gratuitous ARP (an announcement or takeover).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gratuitous: bool,
    /// IPAM findings: the lease's owner and MAC, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<(Option<Mac>, String)>,
}

#[derive(Clone, Debug)]
struct Seen {
    ifindex: u32,
    last_ms: u64,
}

#[derive(Clone, Debug, Default)]
struct AddrState {
    /// MACs seen claiming the address, with where and when.
    macs: BTreeMap<Mac, Seen>,
    /// Last MAC to claim it.
    current: Option<Mac>,
    /// When the conflict started, while one is active.
    conflict_since_ms: Option<u64>,
}

/// A conflict as shown by `nodeward bindings` and the capped metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActiveConflict {
    pub addr: IpAddr,
    pub domain: u32,
    pub vlan: u16,
    pub macs: Vec<(Mac, u32)>,
    pub since_ms: u64,
}

pub struct ArpDetector {
    config: ArpConfig,
    addrs: BTreeMap<Slot, AddrState>,
    /// Who holds each address now (from NEW/CHANGE), for IPAM comparison.
    live: BTreeMap<Slot, (Mac, u32)>,
    leases: Option<Leases>,
    /// Addresses currently diverging from IPAM, with the finding kind.
    drift: BTreeMap<Slot, &'static str>,
}

/// Most addresses kept for IPAM comparison (the kernel map is the full record).
const LIVE_CAP: usize = 65536;

/// The claimed address: IPv4 (ARP) or IPv6 (neighbour discovery).
fn addr_of(e: &ArpEvent) -> IpAddr {
    if e.family == agent_common::session::AF_INET6 {
        IpAddr::from(e.addr)
    } else {
        IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]))
    }
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

fn mac_of(b: [u8; 6]) -> Mac {
    Mac(b)
}

impl ArpDetector {
    pub fn new(config: &ArpConfig) -> Self {
        ArpDetector {
            config: config.clone(),
            addrs: BTreeMap::new(),
            live: BTreeMap::new(),
            leases: None,
            drift: BTreeMap::new(),
        }
    }

    /// `now_ms`: wall clock; the event's own age is derived from kernel times.
    pub fn observe(&mut self, event: &Event, now_ms: u64) -> Vec<ArpFinding> {
        let Event::Arp(e) = event else {
            return Vec::new();
        };
        let mut out = self.claim(e, now_ms);
        if matches!(e.kind, ARP_NEW | ARP_CHANGE) {
            let slot = Slot::of(e);
            if self.live.len() < LIVE_CAP || self.live.contains_key(&slot) {
                self.live.insert(slot, (mac_of(e.mac), e.ifindex));
            }
            out.extend(self.compare(slot));
        }
        out
    }

    /// New lease data (or none): compare every live address again.
    pub fn set_leases(&mut self, leases: Option<Leases>) -> Vec<ArpFinding> {
        self.leases = leases;
        self.drift.clear();
        let slots: Vec<Slot> = self.live.keys().copied().collect();
        slots.into_iter().flat_map(|s| self.compare(s)).collect()
    }

    /// Addresses diverging from IPAM now, by kind.
    pub fn drift_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for k in self.drift.values() {
            *m.entry(*k).or_default() += 1;
        }
        m
    }

    /// IPAM comparison of one live address: reported once per divergence. The lease
    /// file names addresses only: each domain's binding is compared with it.
    fn compare(&mut self, slot: Slot) -> Option<ArpFinding> {
        let leases = self.leases.as_ref()?;
        let &(mac, ifindex) = self.live.get(&slot)?;
        let lease = leases.by_addr.get(&slot.addr);
        let kind = match lease {
            None => Some("ipam_live_but_free"),
            Some((Some(lm), _)) if *lm != mac => Some("ipam_other_owner"),
            _ => None,
        };
        match kind {
            None => {
                self.drift.remove(&slot);
                None
            }
            Some(k) if self.drift.get(&slot) == Some(&k) => None,
            Some(k) => {
                self.drift.insert(slot, k);
                Some(ArpFinding {
                    kind: k,
                    addr: slot.addr,
                    domain: slot.domain,
                    mac,
                    ifindex,
                    old_mac: None,
                    old_ifindex: None,
                    old_seen_ms_ago: None,
                    macs: Vec::new(),
                    vlan: slot.vlan,
                    inner_vlan: 0,
                    gratuitous: false,
                    lease: lease.cloned(),
                })
            }
        }
    }

    fn claim(&mut self, e: &ArpEvent, now_ms: u64) -> Vec<ArpFinding> {
        let slot = Slot::of(e);
        let mac = mac_of(e.mac);
        let old = mac_of(e.old_mac);
        let ago_ms = e.header.ktime_ns.saturating_sub(e.old_last_seen_ns) / 1_000_000;
        let quiet = self.config.quiet_period.as_millis() as u64;
        let window = self.config.conflict_window.as_millis() as u64;
        let state = self.addrs.entry(slot).or_default();
        let base = ArpFinding {
            kind: "",
            addr: slot.addr,
            domain: slot.domain,
            mac,
            ifindex: e.ifindex,
            old_mac: None,
            old_ifindex: None,
            old_seen_ms_ago: None,
            macs: Vec::new(),
            vlan: e.vlan,
            inner_vlan: e.inner_vlan,
            gratuitous: e.flags & ARP_F_GRATUITOUS != 0,
            lease: None,
        };
        let mut out = Vec::new();
        match e.kind {
            ARP_NEW => {
                state.macs.insert(
                    mac,
                    Seen {
                        ifindex: e.ifindex,
                        last_ms: now_ms,
                    },
                );
                state.current = Some(mac);
                out.push(ArpFinding {
                    kind: "new_binding",
                    ..base
                });
            }
            ARP_CHANGE => {
                // The previous holder's last claim, on our clock.
                state.macs.insert(
                    old,
                    Seen {
                        ifindex: e.old_ifindex,
                        last_ms: now_ms.saturating_sub(ago_ms),
                    },
                );
                let alternating = state
                    .macs
                    .get(&mac)
                    .is_some_and(|s| now_ms.saturating_sub(s.last_ms) < quiet);
                state.macs.insert(
                    mac,
                    Seen {
                        ifindex: e.ifindex,
                        last_ms: now_ms,
                    },
                );
                state.current = Some(mac);
                state
                    .macs
                    .retain(|_, s| now_ms.saturating_sub(s.last_ms) < quiet);
                let both_live = ago_ms <= window || alternating;
                let kind = if !both_live {
                    "mac_change"
                } else if e.flags & ARP_F_GRATUITOUS != 0 {
                    "garp_conflict"
                } else {
                    "conflict"
                };
                if both_live && state.conflict_since_ms.is_none() {
                    state.conflict_since_ms = Some(now_ms);
                } else if both_live {
                    // Already reported; the flip-flop goes on (not re-reported).
                    return Vec::new();
                }
                out.push(ArpFinding {
                    kind,
                    old_mac: Some(old),
                    old_ifindex: Some(e.old_ifindex),
                    old_seen_ms_ago: Some(ago_ms),
                    macs: state.macs.keys().copied().collect(),
                    ..base
                });
            }
            ARP_PROBE_CONFLICT => {
                out.push(ArpFinding {
                    kind: "probe_conflict",
                    old_mac: Some(old),
                    old_ifindex: Some(e.old_ifindex),
                    old_seen_ms_ago: Some(ago_ms),
                    ..base
                });
            }
            _ => {}
        }
        out
    }

    /// Time passes: conflicts with a single live MAC for `quiet_period` end.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ArpFinding> {
        let quiet = self.config.quiet_period.as_millis() as u64;
        let mut out = Vec::new();
        for (slot, st) in &mut self.addrs {
            let Some(current) = st.current else { continue };
            if st.conflict_since_ms.is_none() {
                continue;
            }
            // The current holder keeps claiming without events; the others must have
            // been silent for the quiet period.
            let others_quiet = st
                .macs
                .iter()
                .filter(|(m, _)| **m != current)
                .all(|(_, s)| now_ms.saturating_sub(s.last_ms) >= quiet);
            if others_quiet {
                st.conflict_since_ms = None;
                st.macs.retain(|m, _| *m == current);
                let ifindex = st.macs.get(&current).map_or(0, |s| s.ifindex);
                out.push(ArpFinding {
                    kind: "conflict_cleared",
                    addr: slot.addr,
                    domain: slot.domain,
                    mac: current,
                    ifindex,
                    old_mac: None,
                    old_ifindex: None,
                    old_seen_ms_ago: None,
                    macs: vec![current],
                    vlan: slot.vlan,
                    inner_vlan: 0,
                    gratuitous: false,
                    lease: None,
                });
            }
        }
        // Forget addresses with no conflict and nothing recent (the kernel map keeps
        // the bindings themselves).
        self.addrs.retain(|_, st| {
            st.conflict_since_ms.is_some()
                || st
                    .macs
                    .values()
                    .any(|s| now_ms.saturating_sub(s.last_ms) < quiet)
        });
        out
    }

    pub fn active_conflicts(&self) -> Vec<ActiveConflict> {
        self.addrs
            .iter()
            .filter_map(|(slot, st)| {
                let since_ms = st.conflict_since_ms?;
                Some(ActiveConflict {
                    addr: slot.addr,
                    domain: slot.domain,
                    vlan: slot.vlan,
                    macs: st.macs.iter().map(|(m, s)| (*m, s.ifindex)).collect(),
                    since_ms,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::event::{EventHeader, kind};

    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn cfg() -> ArpConfig {
        ArpConfig {
            quiet_period: Duration::from_secs(30),
            conflict_window: Duration::from_millis(500),
            ..ArpConfig::default()
        }
    }

    /// An event at kernel time `t_ms`; the old holder last seen at `old_ms`.
    fn ev(k: u32, mac: [u8; 6], old: [u8; 6], t_ms: u64, old_ms: u64, flags: u16) -> Event {
        ev_in(7, 0, k, mac, old, t_ms, old_ms, flags)
    }

    /// The same, in L2 domain (bridge ifindex `domain`, VLAN `vlan`).
    #[allow(clippy::too_many_arguments)]
    fn ev_in(
        domain: u32,
        vlan: u16,
        k: u32,
        mac: [u8; 6],
        old: [u8; 6],
        t_ms: u64,
        old_ms: u64,
        flags: u16,
    ) -> Event {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 8, 64, 2]);
        Event::Arp(
            ArpEvent {
                header: EventHeader::new(
                    kind::ARP,
                    core::mem::size_of::<ArpEvent>(),
                    t_ms * 1_000_000,
                ),
                kind: k,
                ifindex: if mac == A { 11 } else { 12 },
                flags,
                vlan,
                family: 2,
                inner_vlan: 0,
                addr,
                mac,
                old_mac: old,
                old_ifindex: if old == A { 11 } else { 12 },
                old_last_seen_ns: old_ms * 1_000_000,
                domain,
                _pad1: 0,
            }
            .into(),
        )
    }

    #[test]
    fn one_address_in_two_domains_is_two_bindings_not_a_conflict() {
        let mut d = ArpDetector::new(&cfg());
        // Two bridges (ifindex 7 and 8), then two VLANs of bridge 7: each a new binding.
        for (domain, vlan, mac) in [(7, 0, A), (8, 0, B), (7, 64, A), (7, 65, B)] {
            let f = d.observe(&ev_in(domain, vlan, ARP_NEW, mac, [0; 6], 1, 0, 0), 1);
            assert_eq!(kinds(f.clone()), ["new_binding"], "{domain}/{vlan}");
            assert_eq!((f[0].domain, f[0].vlan), (domain, vlan));
        }
        assert!(d.active_conflicts().is_empty());
        // Within one domain the second MAC is a conflict, named with its VLAN.
        let f = d.observe(&ev_in(7, 64, ARP_CHANGE, B, A, 2, 2, 0), 2);
        assert_eq!(kinds(f.clone()), ["conflict"]);
        assert_eq!((f[0].domain, f[0].vlan), (7, 64));
        let active = d.active_conflicts();
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].domain, active[0].vlan), (7, 64));
    }

    fn kinds(f: Vec<ArpFinding>) -> Vec<&'static str> {
        f.into_iter()
            .map(|f| f.kind)
            .filter(|k| !k.is_empty())
            .collect()
    }

    #[test]
    fn two_answers_to_one_question_is_a_conflict_with_both_macs_and_ports() {
        let mut d = ArpDetector::new(&cfg());
        assert_eq!(
            kinds(d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000)),
            ["new_binding"]
        );
        let f = d.observe(&ev(ARP_CHANGE, B, A, 1003, 1000, 0), 1003);
        assert_eq!(f[0].kind, "conflict");
        assert_eq!(
            (f[0].mac, f[0].ifindex, f[0].old_mac, f[0].old_ifindex),
            (Mac(B), 12, Some(Mac(A)), Some(11))
        );
        assert_eq!(f[0].macs, [Mac(A), Mac(B)]);
        // The flip-flop goes on: not re-reported while active.
        assert!(kinds(d.observe(&ev(ARP_CHANGE, A, B, 2000, 1003, 0), 2000)).is_empty());
        assert_eq!(d.active_conflicts().len(), 1);
        // B leaves: after the quiet period with only A, the conflict ends.
        assert!(kinds(d.tick(20_000)).is_empty());
        assert_eq!(kinds(d.tick(31_500)), ["conflict_cleared"]);
        assert!(d.active_conflicts().is_empty());
    }

    #[test]
    fn one_mac_change_is_not_a_conflict() {
        let mut d = ArpDetector::new(&cfg());
        d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000);
        // A was last heard 20 s ago; B takes over (a host changed its MAC once).
        assert_eq!(
            kinds(d.observe(
                &ev(ARP_CHANGE, B, A, 21_000, 1000, ARP_F_GRATUITOUS),
                21_000
            )),
            ["mac_change"]
        );
        assert!(d.active_conflicts().is_empty());
        assert!(kinds(d.tick(60_000)).is_empty());
    }

    #[test]
    fn flip_back_to_a_recent_mac_is_a_conflict() {
        let mut d = ArpDetector::new(&cfg());
        d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000);
        assert_eq!(
            kinds(d.observe(&ev(ARP_CHANGE, B, A, 5000, 1000, 0), 5000)),
            ["mac_change"]
        );
        assert_eq!(
            kinds(d.observe(&ev(ARP_CHANGE, A, B, 9000, 5000, 0), 9000)),
            ["conflict"],
            "A again: both live"
        );
    }

    #[test]
    fn leases_report_live_but_free_and_other_owner_once() {
        let mut d = ArpDetector::new(&cfg());
        d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000);
        let l = Leases::parse("# ip,mac,owner\n10.8.64.3,,sandbox-b\n").unwrap();
        let f = d.set_leases(Some(l));
        assert_eq!(kinds(f), ["ipam_live_but_free"]);
        assert_eq!(d.drift_counts().get("ipam_live_but_free"), Some(&1));
        let json = r#"{"leases": [{"ip": "10.8.64.2", "mac": "02:00:00:00:00:0b", "owner": "reviewagent"}]}"#;
        let f = d.set_leases(Some(Leases::parse(json).unwrap()));
        assert_eq!(f[0].kind, "ipam_other_owner");
        assert_eq!(
            f[0].lease.as_ref().map(|l| l.1.as_str()),
            Some("reviewagent")
        );
        // Same state, same claim again: not re-reported.
        assert!(
            kinds(d.observe(&ev(ARP_CHANGE, A, A, 50_000, 49_000, 0), 50_000))
                .iter()
                .all(|k| !k.starts_with("ipam"))
        );
        let ok = Leases::parse("10.8.64.2,02:00:00:00:00:0a,sandbox-a\n").unwrap();
        assert!(d.set_leases(Some(ok)).is_empty());
        assert!(d.drift_counts().is_empty());
        assert!(Leases::parse("not-an-ip,,x").is_err());
        assert!(Leases::parse(r#"{"leases": [{"ip": "10.0.0.1", "bogus": 1}]}"#).is_err());
    }

    #[test]
    fn gratuitous_takeover_and_probe_conflicts() {
        let mut d = ArpDetector::new(&cfg());
        d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000);
        assert_eq!(
            kinds(d.observe(&ev(ARP_CHANGE, B, A, 1100, 1050, ARP_F_GRATUITOUS), 1100)),
            ["garp_conflict"]
        );
        let mut d = ArpDetector::new(&cfg());
        d.observe(&ev(ARP_NEW, A, [0; 6], 1000, 0, 0), 1000);
        let f = d.observe(&ev(ARP_PROBE_CONFLICT, B, A, 1200, 1000, 0), 1200);
        assert_eq!(f[0].kind, "probe_conflict");
        assert_eq!(f[0].old_mac, Some(Mac(A)));
    }
}
