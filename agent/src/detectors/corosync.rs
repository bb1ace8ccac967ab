//! `corosync` detector: cluster traffic per source (sampled from the kernel's counters
//! once a second) and cluster daemons on this node.
//!
//! - `rogue_member`: a source outside the nodelist sends cluster traffic (with the key
//!   it is a silent phantom member: corosync itself logs nothing). Ends
//!   (`rogue_member_ended`) after `quiet_period` without its traffic.
//! - `flood`: a source (member or not) above `flood_rate` packets/s on an interface;
//!   ends (`flood_ended`) after `quiet_period` at or below the rate.
//! - `corosync_on_standalone`: on a node whose role is standalone, a cluster daemon was
//!   started or a socket was bound to a cluster port (with the process, its lineage
//!   and its SSH origin).
//! - `role_changed`: this node became a member or stopped being one (e.g. a
//!   corosync.conf copied onto a standalone node that lists it).

pub mod conf;
pub mod config;
pub mod kernel;
pub mod metrics;
pub mod report;
pub mod runtime;
pub mod status;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use agent_common::{
    corosync::{CorosyncLocalEvent, LOCAL_EXEC},
    decode::Event,
    session::AF_INET,
};
use serde::Serialize;

use super::Process;
use config::CorosyncConfig;

pub const KINDS: &[&str] = &[
    "rogue_member",
    "rogue_member_ended",
    "flood",
    "flood_ended",
    "corosync_on_standalone",
    "role_changed",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CorosyncFinding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// The source address (wire findings) or the bound address (bind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    /// Wire findings: whether the source is in the nodelist, and its node id there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u32>,
    /// Packets per second (highest of its interfaces, last sample).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_pps: Option<u64>,
    /// Packets counted from the source so far (and dropped by a quarantine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Local findings: `exec` or `bind`, the process, and why this node is standalone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_reason: Option<String>,
    /// `role_changed`: the previous and the new role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_to: Option<&'static str>,
}

/// Counters of one source on one interface, as read from the kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub addr: IpAddr,
    pub interface: String,
    pub member: bool,
    pub packets: u64,
    pub dropped: u64,
}

#[derive(Default)]
struct SourceState {
    interfaces: BTreeSet<String>,
    last_growth_ms: u64,
    last_over_ms: u64,
    rate: u64,
    packets: u64,
    dropped: u64,
    rogue: bool,
    flood: bool,
}

/// This node's role, as decided from the configuration and local addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Role {
    pub standalone: bool,
    /// Why (e.g. "no local address in the nodelist of /etc/corosync/corosync.conf").
    pub reason: String,
}

impl Role {
    pub fn name(&self) -> &'static str {
        if self.standalone {
            "standalone"
        } else {
            "member"
        }
    }
}

/// A change of this node's role (none for the first decision, or the same role).
pub fn role_change(previous: Option<&Role>, now: &Role) -> Option<CorosyncFinding> {
    let previous = previous?;
    (previous.standalone != now.standalone).then(|| CorosyncFinding {
        kind: "role_changed",
        role_from: Some(previous.name()),
        role_to: Some(now.name()),
        role_reason: Some(now.reason.clone()),
        ..Default::default()
    })
}

/// An active rogue source, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveRogue {
    pub addr: IpAddr,
    pub rate: u64,
}

pub struct CorosyncDetector {
    flood_rate: u64,
    quiet_ms: u64,
    members: BTreeMap<IpAddr, u32>,
    /// Previous sample per (source, interface, counted as a member): packets and when.
    /// A source that joins the nodelist has two counters (before and after), each
    /// with its own history.
    prev: BTreeMap<(IpAddr, String, bool), (u64, u64)>,
    sources: BTreeMap<IpAddr, SourceState>,
}

impl CorosyncDetector {
    pub fn new(config: &CorosyncConfig) -> Self {
        CorosyncDetector {
            flood_rate: config.flood_rate,
            quiet_ms: config.quiet_period.as_millis() as u64,
            members: BTreeMap::new(),
            prev: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }

    pub fn set_members(&mut self, members: BTreeMap<IpAddr, u32>) {
        self.members = members;
    }

    fn finding(&self, kind: &'static str, addr: IpAddr, s: &SourceState) -> CorosyncFinding {
        CorosyncFinding {
            kind,
            addr: Some(addr),
            member: Some(self.members.contains_key(&addr)),
            node_id: self.members.get(&addr).copied(),
            rate_pps: Some(s.rate),
            packets: Some(s.packets),
            dropped: Some(s.dropped),
            interfaces: s.interfaces.iter().cloned().collect(),
            ..Default::default()
        }
    }

    /// One sample of every (source, interface) counter; returns what changed.
    pub fn sample(&mut self, now_ms: u64, samples: &[Sample]) -> Vec<CorosyncFinding> {
        let mut rates: BTreeMap<IpAddr, u64> = BTreeMap::new();
        let mut totals: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
        for s in samples {
            let key = (s.addr, s.interface.clone(), s.member);
            let (delta, dt_ms) = match self.prev.get(&key) {
                Some(&(p, t)) => (s.packets.saturating_sub(p), now_ms.saturating_sub(t)),
                // First sight: counted since the agent started (at most a tick ago).
                None => (s.packets, 1000),
            };
            self.prev.insert(key, (s.packets, now_ms));
            let t = totals.entry(s.addr).or_default();
            t.0 += s.packets;
            t.1 += s.dropped;
            let rate = delta * 1000 / dt_ms.max(1);
            let r = rates.entry(s.addr).or_default();
            *r = (*r).max(rate);
            if delta > 0 {
                let st = self.sources.entry(s.addr).or_default();
                st.interfaces.insert(s.interface.clone());
                st.last_growth_ms = now_ms;
            }
        }
        let mut out = Vec::new();
        let addrs: Vec<IpAddr> = self.sources.keys().copied().collect();
        for addr in addrs {
            let member = self.members.contains_key(&addr);
            let mut st = self.sources.remove(&addr).expect("listed");
            st.rate = rates.get(&addr).copied().unwrap_or(0);
            if let Some(&(p, d)) = totals.get(&addr) {
                st.packets = p;
                st.dropped = d;
            }
            let growing = st.last_growth_ms == now_ms;
            if st.rate > self.flood_rate {
                st.last_over_ms = now_ms;
            }
            if !member && growing && !st.rogue {
                st.rogue = true;
                out.push(self.finding("rogue_member", addr, &st));
            }
            if st.rate > self.flood_rate && !st.flood {
                st.flood = true;
                out.push(self.finding("flood", addr, &st));
            }
            if st.flood && now_ms.saturating_sub(st.last_over_ms) >= self.quiet_ms {
                st.flood = false;
                out.push(self.finding("flood_ended", addr, &st));
            }
            let silent = now_ms.saturating_sub(st.last_growth_ms) >= self.quiet_ms;
            // A source that became a member (nodelist change) is no longer rogue.
            if st.rogue && (silent || member) {
                st.rogue = false;
                out.push(self.finding("rogue_member_ended", addr, &st));
            }
            if silent && !st.rogue && !st.flood {
                continue; // forgotten; its counters stay in `prev`
            }
            self.sources.insert(addr, st);
        }
        // Keys the kernel evicted (LRU) are forgotten here too.
        let live: BTreeSet<(IpAddr, String, bool)> = samples
            .iter()
            .map(|s| (s.addr, s.interface.clone(), s.member))
            .collect();
        self.prev.retain(|k, _| live.contains(k));
        out
    }

    pub fn active_rogues(&self) -> Vec<ActiveRogue> {
        let mut v: Vec<ActiveRogue> = self
            .sources
            .iter()
            .filter(|(_, s)| s.rogue)
            .map(|(a, s)| ActiveRogue {
                addr: *a,
                rate: s.rate,
            })
            .collect();
        v.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.addr.cmp(&b.addr)));
        v
    }

    pub fn flooding(&self) -> usize {
        self.sources.values().filter(|s| s.flood).count()
    }
}

/// The local side: a cluster daemon on this node (`own_netns`) whose role is
/// standalone. Processes in other network namespaces are other "nodes" (containers,
/// test namespaces) and are not this node's cluster stack.
pub fn local(event: &Event, role: &Role, own_netns: u32) -> Option<CorosyncFinding> {
    let Event::CorosyncLocal(e) = event else {
        return None;
    };
    if !role.standalone || (e.netns != 0 && own_netns != 0 && e.netns != own_netns) {
        return None;
    }
    Some(local_finding(e, role))
}

fn local_finding(e: &CorosyncLocalEvent, role: &Role) -> CorosyncFinding {
    let exec = e.what == LOCAL_EXEC;
    let addr = (!exec).then(|| {
        if e.family == AF_INET {
            IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
        } else {
            IpAddr::from(e.addr)
        }
    });
    CorosyncFinding {
        kind: "corosync_on_standalone",
        addr,
        what: Some(if exec { "exec" } else { "bind" }),
        port: (!exec).then_some(e.port),
        process: Some(Process::from(&e.proc)),
        role_reason: Some(role.reason.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{corosync::LOCAL_BIND, event::EventHeader, fill_cstr, proc::ProcCtx};

    fn cfg() -> CorosyncConfig {
        CorosyncConfig {
            flood_rate: 100,
            quiet_period: std::time::Duration::from_secs(5),
            ..Default::default()
        }
    }

    fn s(addr: &str, iface: &str, packets: u64) -> Sample {
        Sample {
            addr: addr.parse().unwrap(),
            interface: iface.into(),
            member: false,
            packets,
            dropped: 0,
        }
    }

    fn kinds(f: &[CorosyncFinding]) -> Vec<&'static str> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn members_at_normal_rates_raise_nothing() {
        let mut d = CorosyncDetector::new(&cfg());
        d.set_members(BTreeMap::from([
            ("10.0.0.1".parse().unwrap(), 1),
            ("10.0.0.2".parse().unwrap(), 2),
        ]));
        for t in 0..20u64 {
            let f = d.sample(
                t * 1000,
                &[s("10.0.0.1", "eth0", t * 5), s("10.0.0.2", "eth0", t * 6)],
            );
            assert!(f.is_empty(), "{f:?}");
        }
        assert!(d.active_rogues().is_empty());
    }

    #[test]
    fn a_non_member_is_a_rogue_once_then_ends_when_silent() {
        let mut d = CorosyncDetector::new(&cfg());
        d.set_members(BTreeMap::from([("10.0.0.1".parse().unwrap(), 1)]));
        let f = d.sample(1000, &[s("10.0.0.3", "br0", 2), s("10.0.0.3", "eth1", 1)]);
        assert_eq!(kinds(&f), ["rogue_member"]);
        assert_eq!(f[0].member, Some(false));
        assert_eq!(f[0].interfaces, ["br0", "eth1"]);
        assert_eq!(f[0].addr.unwrap().to_string(), "10.0.0.3");
        // Still sending: no repeat.
        assert!(d.sample(2000, &[s("10.0.0.3", "br0", 3)]).is_empty());
        assert_eq!(d.active_rogues().len(), 1);
        // Silent for the quiet period.
        assert!(d.sample(5000, &[s("10.0.0.3", "br0", 3)]).is_empty());
        let f = d.sample(7000, &[s("10.0.0.3", "br0", 3)]);
        assert_eq!(kinds(&f), ["rogue_member_ended"]);
        assert!(d.active_rogues().is_empty());
        // Back: a new episode.
        assert_eq!(
            kinds(&d.sample(8000, &[s("10.0.0.3", "br0", 4)])),
            ["rogue_member"]
        );
    }

    #[test]
    fn flood_by_rate_per_interface_for_members_too() {
        let mut d = CorosyncDetector::new(&cfg());
        d.set_members(BTreeMap::from([("10.0.0.1".parse().unwrap(), 1)]));
        assert!(d.sample(0, &[s("10.0.0.1", "eth0", 0)]).is_empty());
        assert!(d.sample(1000, &[s("10.0.0.1", "eth0", 90)]).is_empty());
        let f = d.sample(2000, &[s("10.0.0.1", "eth0", 400)]);
        assert_eq!(kinds(&f), ["flood"]);
        assert_eq!(f[0].member, Some(true));
        assert_eq!(f[0].node_id, Some(1));
        assert_eq!(f[0].rate_pps, Some(310));
        assert!(d.sample(3000, &[s("10.0.0.1", "eth0", 900)]).is_empty());
        // Back to normal for the quiet period.
        assert!(d.sample(4000, &[s("10.0.0.1", "eth0", 905)]).is_empty());
        let f = d.sample(8000, &[s("10.0.0.1", "eth0", 925)]);
        assert_eq!(kinds(&f), ["flood_ended"]);
    }

    #[test]
    fn a_source_that_joins_the_nodelist_stops_being_rogue() {
        let mut d = CorosyncDetector::new(&cfg());
        assert_eq!(
            kinds(&d.sample(1000, &[s("fd00::3", "eth0", 1)])),
            ["rogue_member"]
        );
        d.set_members(BTreeMap::from([("fd00::3".parse().unwrap(), 3)]));
        assert_eq!(
            kinds(&d.sample(2000, &[s("fd00::3", "eth0", 2)])),
            ["rogue_member_ended"]
        );
        assert!(d.sample(3000, &[s("fd00::3", "eth0", 3)]).is_empty());
    }

    /// The kernel keeps the packets counted before the source joined (non-member) next to
    /// those after (member): two counters, neither read as the other's growth.
    #[test]
    fn a_joined_source_s_old_and_new_counters_are_not_a_flood() {
        let mut d = CorosyncDetector::new(&cfg());
        assert_eq!(
            kinds(&d.sample(1000, &[s("fd00::3", "eth0", 1)])),
            ["rogue_member"]
        );
        d.set_members(BTreeMap::from([("fd00::3".parse().unwrap(), 3)]));
        let member = |packets| Sample {
            member: true,
            ..s("fd00::3", "eth0", packets)
        };
        let mut seen = Vec::new();
        for (t, n) in [(2000, 50), (3000, 100), (4000, 150)] {
            seen.extend(kinds(&d.sample(t, &[s("fd00::3", "eth0", 1), member(n)])));
        }
        assert_eq!(seen, ["rogue_member_ended"], "50 packets/s is no flood");
    }

    fn local_event(what: u32, netns: u32) -> Event {
        let mut p = ProcCtx {
            pid: 77,
            ppid: 1,
            ..Default::default()
        };
        fill_cstr(&mut p.comm, b"corosync");
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, 3]);
        Event::CorosyncLocal(
            CorosyncLocalEvent {
                header: EventHeader::new(agent_common::event::kind::COROSYNC_LOCAL, 144, 0),
                proc: p,
                netns,
                what,
                family: AF_INET,
                port: 5405,
                _pad: 0,
                addr,
            }
            .into(),
        )
    }

    #[test]
    fn a_role_change_is_a_finding_but_the_first_decision_is_not() {
        let standalone = Role {
            standalone: true,
            reason: "no local address".into(),
        };
        let member = Role {
            standalone: false,
            reason: "10.0.0.3 is node 3".into(),
        };
        assert!(role_change(None, &standalone).is_none());
        assert!(role_change(Some(&standalone), &standalone).is_none());
        let f = role_change(Some(&standalone), &member).unwrap();
        assert_eq!(
            (f.kind, f.role_from, f.role_to),
            ("role_changed", Some("standalone"), Some("member"))
        );
        assert_eq!(f.role_reason.as_deref(), Some("10.0.0.3 is node 3"));
    }

    #[test]
    fn a_cluster_daemon_on_a_standalone_node_in_its_own_namespace_is_a_finding() {
        let standalone = Role {
            standalone: true,
            reason: "no local address in the nodelist".into(),
        };
        let member = Role {
            standalone: false,
            reason: "10.0.0.1 is node 1".into(),
        };
        let f = local(&local_event(LOCAL_EXEC, 5), &standalone, 5).unwrap();
        assert_eq!(f.what, Some("exec"));
        assert_eq!(f.process.as_ref().unwrap().comm, "corosync");
        let f = local(&local_event(LOCAL_BIND, 5), &standalone, 5).unwrap();
        assert_eq!((f.what, f.port), (Some("bind"), Some(5405)));
        assert_eq!(f.addr.unwrap().to_string(), "10.0.0.3");
        assert!(local(&local_event(LOCAL_EXEC, 5), &member, 5).is_none());
        // Another namespace is another node.
        assert!(local(&local_event(LOCAL_EXEC, 6), &standalone, 5).is_none());
    }
}
