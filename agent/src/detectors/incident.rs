//! Incident correlation: when an ARP conflict, martian drops and TCP resets involve
//! the same address within a window, they are one story (a duplicate IP, incident
//! 002), reported once as an `ip_conflict` incident carrying all the evidence.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use serde::Serialize;

use super::{Finding, arp::ArpFinding, martian::MartianFinding, tcp_reset::ResetFinding};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Incident {
    /// `ip_conflict`.
    pub kind: &'static str,
    pub addr: Option<IpAddr>,
    pub arp: Option<ArpFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub martian: Option<MartianFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets: Option<ResetFinding>,
}

#[derive(Default)]
struct Evidence {
    arp: Option<(ArpFinding, u64)>,
    martian: Option<(MartianFinding, u64)>,
    resets: Option<(ResetFinding, u64)>,
    reported_ms: Option<u64>,
}

pub struct Correlator {
    window_ms: u64,
    by_addr: BTreeMap<IpAddr, Evidence>,
}

impl Correlator {
    pub fn new(window: Duration) -> Self {
        Correlator {
            window_ms: window.as_millis() as u64,
            by_addr: BTreeMap::new(),
        }
    }

    /// Feed a finding; returns an incident when the evidence for one address is complete.
    pub fn observe(&mut self, f: &Finding, now_ms: u64) -> Option<Incident> {
        let addrs: Vec<IpAddr> = match f {
            Finding::Arp(a)
                if matches!(a.kind, "conflict" | "garp_conflict" | "probe_conflict") =>
            {
                self.by_addr.entry(a.addr).or_default().arp = Some((a.clone(), now_ms));
                vec![a.addr]
            }
            Finding::Martian(m) if m.kind == "martian_flood" => {
                let addrs: Vec<IpAddr> =
                    m.top_sources.iter().map(|(s, _)| IpAddr::V4(*s)).collect();
                for a in &addrs {
                    self.by_addr.entry(*a).or_default().martian = Some((m.clone(), now_ms));
                }
                addrs
            }
            Finding::TcpReset(r) if r.kind == "reset_storm" => {
                self.by_addr.entry(r.peer).or_default().resets = Some((r.clone(), now_ms));
                vec![r.peer]
            }
            _ => return None,
        };
        let window = self.window_ms;
        let fresh = |t: &u64| now_ms.saturating_sub(*t) <= window;
        self.by_addr.retain(|_, e| {
            e.arp.as_ref().is_some_and(|x| fresh(&x.1))
                || e.martian.as_ref().is_some_and(|x| fresh(&x.1))
                || e.resets.as_ref().is_some_and(|x| fresh(&x.1))
        });
        for addr in addrs {
            let Some(e) = self.by_addr.get_mut(&addr) else {
                continue;
            };
            let arp = e.arp.as_ref().filter(|x| fresh(&x.1));
            let martian = e.martian.as_ref().filter(|x| fresh(&x.1));
            let resets = e.resets.as_ref().filter(|x| fresh(&x.1));
            let recent = e
                .reported_ms
                .is_some_and(|t| now_ms.saturating_sub(t) <= window);
            if arp.is_some() && (martian.is_some() || resets.is_some()) && !recent {
                let incident = Incident {
                    kind: "ip_conflict",
                    addr: Some(addr),
                    arp: arp.map(|x| x.0.clone()),
                    martian: martian.map(|x| x.0.clone()),
                    resets: resets.map(|x| x.0.clone()),
                };
                e.reported_ms = Some(now_ms);
                return Some(incident);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{detectors::tcp_reset::Direction, net::Mac};

    fn arp(addr: &str) -> Finding {
        Finding::Arp(ArpFinding {
            kind: "conflict",
            addr: addr.parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            domain: 2,
            ifindex: 3,
            old_mac: Some(Mac([2, 0, 0, 0, 0, 2])),
            old_ifindex: Some(4),
            old_seen_ms_ago: Some(1),
            macs: vec![],
            vlan: 0,
            inner_vlan: 0,
            gratuitous: false,
            lease: None,
        })
    }

    fn martian(src: [u8; 4]) -> Finding {
        Finding::Martian(MartianFinding {
            kind: "martian_flood",
            interface: "rt0".into(),
            reason: "ip_local_source".into(),
            count: 500,
            window_s: 10,
            top_sources: vec![(Ipv4Addr::from(src), 500)],
        })
    }

    #[test]
    fn conflict_plus_martian_from_the_same_address_is_one_incident() {
        let mut c = Correlator::new(Duration::from_secs(60));
        assert!(c.observe(&arp("10.8.64.2"), 1000).is_none());
        assert!(
            c.observe(&martian([10, 8, 64, 9]), 2000).is_none(),
            "another address"
        );
        let i = c.observe(&martian([10, 8, 64, 2]), 3000).expect("incident");
        assert_eq!(i.kind, "ip_conflict");
        assert!(i.arp.is_some() && i.martian.is_some());
        assert!(
            c.observe(&martian([10, 8, 64, 2]), 4000).is_none(),
            "reported once per window"
        );
        let storm = Finding::TcpReset(ResetFinding {
            kind: "reset_storm",
            peer: "10.8.64.2".parse().unwrap(),
            direction: Direction::Received,
            count: 300,
            window_s: 10,
        });
        assert!(c.observe(&storm, 5000).is_none());
    }

    #[test]
    fn evidence_older_than_the_window_does_not_combine() {
        let mut c = Correlator::new(Duration::from_secs(60));
        c.observe(&arp("10.8.64.2"), 0);
        assert!(c.observe(&martian([10, 8, 64, 2]), 61_000).is_none());
    }
}
