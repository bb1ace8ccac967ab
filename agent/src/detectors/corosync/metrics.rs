//! Metrics of the `corosync` detector (subsystem `nodeward_corosync_*`).

use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use super::{ActiveRogue, CorosyncFinding, KINDS};
use crate::metrics::{Registry, Totals, counter_vec, gauge, gauge_vec};

pub struct CorosyncMetrics {
    /// The kernel's running totals (set by the runtime that reads them each second).
    packets: Arc<Totals>,
    dropped: Arc<Totals>,
    untracked: Arc<Totals>,
    findings: IntCounterVec,
    rogues: IntGauge,
    rogue_series: IntGaugeVec,
    flooding: IntGauge,
    members: IntGauge,
    role: IntGaugeVec,
    config_ok: IntGauge,
    config_loads: IntCounterVec,
    interfaces: IntGauge,
    interfaces_failed: IntGauge,
    /// The detector's programs are attached (set with the program statuses).
    pub(crate) programs_up: AtomicBool,
    /// The last read of the kernel's cluster counters succeeded (a detector that
    /// cannot read them sees nothing: it is down until a read succeeds again).
    pub(crate) reads_ok: AtomicBool,
}

impl CorosyncMetrics {
    pub fn new(r: &Registry) -> Self {
        let m = CorosyncMetrics {
            packets: Totals::registered(
                r,
                "nodeward_corosync_packets_total",
                "Cluster (corosync/knet) packets seen at TC ingress of the watched interfaces, by source: member (in the nodelist) or non_member.",
                &["source"],
            ),
            dropped: Totals::registered(
                r,
                "nodeward_corosync_dropped_packets_total",
                "Cluster packets from quarantined non-member sources dropped in the kernel.",
                &[],
            ),
            untracked: Totals::registered(
                r,
                "nodeward_corosync_untracked_packets_total",
                "Cluster packets counted in the totals but not per source (the per-source table refused an entry): per-source rates are blind to these.",
                &[],
            ),
            findings: counter_vec(
                r,
                "nodeward_corosync_findings_total",
                "Corosync findings by kind: rogue_member, rogue_member_ended, flood, flood_ended, corosync_on_standalone, role_changed.",
                &["kind"],
            ),
            rogues: gauge(
                r,
                "nodeward_corosync_rogue_sources",
                "Sources outside the nodelist sending cluster traffic now (all of them, uncapped).",
            ),
            rogue_series: gauge_vec(
                r,
                "nodeward_corosync_rogue_packets_per_second",
                "One series per active rogue source, present only while it is active (capped by detectors.corosync.max_rogue_series, highest rates first): its packets per second.",
                &["source"],
            ),
            flooding: gauge(
                r,
                "nodeward_corosync_flooding_sources",
                "Sources (members or not) above detectors.corosync.flood_rate now.",
            ),
            members: gauge(
                r,
                "nodeward_corosync_members",
                "Member addresses loaded from the cluster configuration.",
            ),
            role: gauge_vec(
                r,
                "nodeward_corosync_role",
                "This node's cluster role (1 on the current one): member or standalone (configured or inferred from the nodelist).",
                &["role"],
            ),
            config_ok: gauge(
                r,
                "nodeward_corosync_config_ok",
                "1 when the cluster configuration was read (or is absent: no cluster), 0 when it is unreadable or malformed (the detector is down).",
            ),
            config_loads: counter_vec(
                r,
                "nodeward_corosync_config_loads_total",
                "Reads of a changed cluster configuration, by result (success, failure).",
                &["result"],
            ),
            interfaces: gauge(
                r,
                "nodeward_corosync_interfaces",
                "Interfaces the cluster-traffic counter is attached to.",
            ),
            interfaces_failed: gauge(
                r,
                "nodeward_corosync_interfaces_failed",
                "Interfaces the cluster-traffic counter should watch but is not attached to (absent from this network namespace, or the attach failed; the reason is logged once).",
            ),
            programs_up: AtomicBool::new(false),
            reads_ok: AtomicBool::new(true),
        };
        for s in ["member", "non_member"] {
            m.packets.preset(&[s]);
        }
        m.dropped.preset(&[]);
        m.untracked.preset(&[]);
        for k in KINDS {
            m.findings.with_label_values(&[k]);
        }
        for role in ["member", "standalone"] {
            m.role.with_label_values(&[role]).set(0);
        }
        for r in ["success", "failure"] {
            m.config_loads.with_label_values(&[r]);
        }
        m
    }

    pub fn record(&self, f: &CorosyncFinding) {
        self.findings.with_label_values(&[f.kind]).inc();
    }

    pub fn config_loaded(&self, ok: bool) {
        self.config_loads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// The configuration's state (whether the detector is up: [`Self::up`]).
    pub fn state(&self, ok: bool, members: usize, standalone: Option<bool>) {
        self.config_ok.set(ok.into());
        self.members.set(members as i64);
        if let Some(s) = standalone {
            self.role.with_label_values(&["standalone"]).set(s.into());
            self.role.with_label_values(&["member"]).set((!s).into());
        }
    }

    /// Up: configuration usable, programs attached, and the last read of the kernel's
    /// counters succeeded.
    pub fn up(&self) -> bool {
        self.config_ok.get() == 1
            && self.programs_up.load(Ordering::Relaxed)
            && self.reads_ok.load(Ordering::Relaxed)
    }

    /// Kernel totals: `agent_common::corosync::TOTAL_*` slots.
    pub fn totals(&self, t: &[u64; 4]) {
        use agent_common::corosync::{
            TOTAL_DROPPED, TOTAL_MEMBER, TOTAL_NON_MEMBER, TOTAL_UNTRACKED,
        };
        let t = |slot: u32| t[slot as usize] as f64;
        self.packets.set(&["member"], t(TOTAL_MEMBER));
        self.packets.set(&["non_member"], t(TOTAL_NON_MEMBER));
        self.dropped.set(&[], t(TOTAL_DROPPED));
        self.untracked.set(&[], t(TOTAL_UNTRACKED));
    }

    pub fn rogues(&self, active: &[ActiveRogue], flooding: usize, cap: usize) {
        self.rogues.set(active.len() as i64);
        self.flooding.set(flooding as i64);
        self.rogue_series.reset();
        for r in active.iter().take(cap) {
            self.rogue_series
                .with_label_values(&[&r.addr.to_string()])
                .set(r.rate as i64);
        }
    }

    #[cfg(test)]
    pub fn rogue_series(&self) -> &dyn prometheus::core::Collector {
        &self.rogue_series
    }

    pub fn interfaces(&self, n: usize, failed: usize) {
        self.interfaces.set(n as i64);
        self.interfaces_failed.set(failed as i64);
    }
}
