//! All of the agent's metrics: the agent-wide families, the kernel's, the quarantine
//! engine's and one struct per detector (`detectors/<id>/metrics.rs`), on one registry.
//! A finding is counted here once, in `nodeward_findings_total` and its detector's own
//! families.

use std::sync::{Arc, atomic::Ordering};

use agent_common::event::KINDS;
use prometheus::IntCounterVec;

use super::{
    Finding, arp::metrics::ArpMetrics, corosync::metrics::CorosyncMetrics,
    martian::metrics::MartianMetrics, reboot::metrics::RebootMetrics,
    secrets::metrics::SecretsMetrics, session::metrics::SessionMetrics,
    tcp_reset::metrics::TcpResetMetrics,
};
use crate::{
    kernel::{metrics::KernelMetrics, programs::ProgramStatus},
    metrics::{Agent, Registry, counter_vec},
    quarantine::metrics::QuarantineMetrics,
};

/// `nodeward_findings_total{detector}` label of correlated incidents.
const INCIDENT: &str = "incident";

pub struct Metrics {
    pub agent: Arc<Agent>,
    pub kernel: KernelMetrics,
    pub quarantine: QuarantineMetrics,
    pub reboot: RebootMetrics,
    pub session: SessionMetrics,
    pub arp: ArpMetrics,
    pub tcp_reset: TcpResetMetrics,
    pub martian: MartianMetrics,
    pub secrets: SecretsMetrics,
    pub corosync: CorosyncMetrics,
    incidents: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let findings: Vec<&str> = super::ALL.iter().copied().chain([INCIDENT]).collect();
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        let agent = Agent::new(super::ALL, &findings, &kinds);
        let r: &Registry = &agent.registry;
        let m = Metrics {
            kernel: KernelMetrics::new(r, &agent),
            quarantine: QuarantineMetrics::new(r),
            reboot: RebootMetrics::new(r),
            session: SessionMetrics::new(r),
            arp: ArpMetrics::new(r),
            tcp_reset: TcpResetMetrics::new(r, &agent),
            martian: MartianMetrics::new(r),
            secrets: SecretsMetrics::new(r),
            corosync: CorosyncMetrics::new(r),
            incidents: counter_vec(
                r,
                "nodeward_incidents_total",
                "Correlated incidents: ip_conflict (an ARP conflict plus martian drops from, or a reset storm with, the same address within a minute), logged once with all the evidence.",
                &["kind"],
            ),
            agent: Arc::new(agent),
        };
        m.incidents.with_label_values(&["ip_conflict"]);
        m
    }

    /// Count a finding: once in `nodeward_findings_total`, once in its detector's own.
    pub fn record_finding(&self, f: &Finding) {
        self.agent.record_finding(f.detector());
        match f {
            Finding::RebootIntent(i) => self.reboot.record(i),
            Finding::SshSession(_) => self.session.record(),
            Finding::Arp(a) => self.arp.record(a),
            Finding::Incident(i) => self.incidents.with_label_values(&[i.kind]).inc(),
            Finding::Corosync(f) => self.corosync.record(f),
            Finding::Secret(f) => self.secrets.record(f),
            Finding::Martian(f) => self.martian.record(f),
            Finding::TcpReset(t) => self.tcp_reset.record(t),
        }
    }

    /// Attached programs and each detector's `up` (corosync's also needs its
    /// configuration: see [`Metrics::set_corosync_state`]).
    pub fn set_program_statuses(&self, statuses: &[ProgramStatus]) {
        self.kernel.set_program_statuses(statuses, &self.agent);
        let up = crate::kernel::programs::detector_state("corosync", statuses).is_ok();
        self.corosync.programs_up.store(up, Ordering::Relaxed);
        // Attached programs are not enough: corosync also needs its configuration and
        // readable counters (as last seen).
        self.refresh_corosync_up();
    }

    /// Recompute corosync's `up` after one of its conditions changed.
    pub fn refresh_corosync_up(&self) {
        self.agent.set_detector_up("corosync", self.corosync.up());
    }

    /// The corosync detector's configuration state: down while the cluster
    /// configuration is unreadable or malformed.
    pub fn set_corosync_state(&self, ok: bool, members: usize, standalone: Option<bool>) {
        self.corosync.state(ok, members, standalone);
        self.refresh_corosync_up();
    }

    /// The text exposition (scrape-time collectors read the kernel now).
    pub fn render(&self) -> String {
        self.agent.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
