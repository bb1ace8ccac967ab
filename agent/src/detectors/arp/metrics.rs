//! Metrics of the `arp` detector.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use super::{ActiveConflict, ArpFinding, KINDS};
use crate::metrics::{Registry, counter_vec, gauge, gauge_vec};

/// Kinds of IPAM drift (label `kind` of `nodeward_arp_ipam_drift`).
const DRIFT: [&str; 2] = ["ipam_live_but_free", "ipam_other_owner"];

pub struct ArpMetrics {
    findings: IntCounterVec,
    conflicts: IntGauge,
    conflict_series: IntGaugeVec,
    interfaces: IntGauge,
    interfaces_failed: IntGauge,
    active_checks: IntCounterVec,
    drift: IntGaugeVec,
}

impl ArpMetrics {
    pub fn new(r: &Registry) -> ArpMetrics {
        let m = ArpMetrics {
            findings: counter_vec(
                r,
                "nodeward_arp_findings_total",
                "ARP findings by kind: new_binding, mac_change, conflict, garp_conflict, probe_conflict, conflict_cleared.",
                &["kind"],
            ),
            conflicts: gauge(
                r,
                "nodeward_arp_conflicts_active",
                "Addresses currently claimed by more than one live MAC.",
            ),
            conflict_series: gauge_vec(
                r,
                "nodeward_arp_conflict_active",
                "One series per active duplicate-address conflict (capped by detectors.arp.max_conflict_series; details in the log and `nodeward bindings`).",
                &["address", "interfaces", "bridge", "vlan"],
            ),
            interfaces: gauge(
                r,
                "nodeward_arp_interfaces",
                "Interfaces the ARP observer is attached to.",
            ),
            interfaces_failed: gauge(
                r,
                "nodeward_arp_interfaces_failed",
                "Interfaces the ARP observer should watch but is not attached to (absent from this network namespace, or the attach failed; the reason is logged once).",
            ),
            active_checks: counter_vec(
                r,
                "nodeward_arp_active_checks_total",
                "Active checks of a takeover (one unicast ARP probe or DAD solicitation to the previous owner), by result: sent, rate_limited, failed.",
                &["result"],
            ),
            drift: gauge_vec(
                r,
                "nodeward_arp_ipam_drift",
                "Live addresses diverging from the IPAM lease file now: ipam_live_but_free, ipam_other_owner.",
                &["kind"],
            ),
        };
        for k in KINDS {
            m.findings.with_label_values(&[k]);
        }
        for o in super::active::Outcome::ALL {
            m.active_checks.with_label_values(&[o.label()]);
        }
        for k in DRIFT {
            m.drift.with_label_values(&[k]).set(0);
        }
        m
    }

    pub fn record(&self, f: &ArpFinding) {
        self.findings.with_label_values(&[f.kind]).inc();
    }

    /// Active conflicts: the count, and up to `cap` labelled series.
    pub fn set_conflicts(
        &self,
        conflicts: &[ActiveConflict],
        cap: usize,
        ifname: impl Fn(u32) -> String,
    ) {
        self.conflicts.set(conflicts.len() as i64);
        self.conflict_series.reset();
        for c in conflicts.iter().take(cap) {
            let mut ifs: Vec<String> = c.macs.iter().map(|(_, i)| ifname(*i)).collect();
            ifs.sort();
            ifs.dedup();
            self.conflict_series
                .with_label_values(&[
                    &c.addr.to_string(),
                    &ifs.join(","),
                    &ifname(c.domain),
                    &c.vlan.to_string(),
                ])
                .set(1);
        }
    }

    pub fn set_drift(&self, counts: &std::collections::BTreeMap<&'static str, usize>) {
        for k in DRIFT {
            self.drift
                .with_label_values(&[k])
                .set(counts.get(k).copied().unwrap_or(0) as i64);
        }
    }

    pub fn active_check(&self, o: super::active::Outcome) {
        self.active_checks.with_label_values(&[o.label()]).inc();
    }

    pub fn set_interfaces(&self, n: usize, failed: usize) {
        self.interfaces.set(n as i64);
        self.interfaces_failed.set(failed as i64);
    }
}
