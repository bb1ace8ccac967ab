//! Detector pipeline: decoded records from the queue -> detectors -> findings ->
//! metrics and structured log lines.

use std::sync::Arc;

use agent_common::decode::Event;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::{
    config::Config,
    detectors::arp::active::ActiveCheck,
    detectors::metrics::Metrics,
    detectors::{DetectorSet, Finding},
    net::ifname,
    time::now_ms,
};

/// Channels from the pipeline to the task that owns the journal.
pub struct ToGuard {
    /// Kernel quarantine enforcement (rule id, attribution).
    pub enforced: mpsc::Sender<(u64, serde_json::Value)>,
    /// Reboot intents, to be journaled (fsync) at once.
    pub intents: mpsc::Sender<crate::detectors::reboot::RebootIntent>,
    /// Active ARP conflicts, for `nodeward bindings`.
    pub conflicts: std::sync::Arc<std::sync::Mutex<Vec<crate::detectors::arp::ActiveConflict>>>,
    /// Secret opens by processes that are not allowed readers (quarantine candidates).
    pub secrets: mpsc::Sender<crate::detectors::secrets::SecretFinding>,
    /// Rogue cluster members (quarantine candidates).
    pub corosync: mpsc::Sender<crate::detectors::corosync::CorosyncFinding>,
}

/// The IPAM lease file, re-read when its modification time or size changes.
#[derive(Default)]
struct LeaseFile {
    seen: Option<(std::path::PathBuf, Option<std::time::SystemTime>, u64)>,
}

impl LeaseFile {
    /// `Some(new leases)` when they changed (`Some(None)`: no lease file any more).
    fn poll(
        &mut self,
        path: Option<&std::path::Path>,
    ) -> Option<Option<crate::detectors::arp::Leases>> {
        let Some(path) = path else {
            return self.seen.take().map(|_| None);
        };
        let meta = std::fs::metadata(path).ok();
        let stamp = (
            path.to_path_buf(),
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.as_ref().map_or(0, |m| m.len()),
        );
        if self.seen.as_ref() == Some(&stamp) {
            return None;
        }
        self.seen = Some(stamp);
        match std::fs::read_to_string(path)
            .map_err(crate::detectors::arp::LeaseError::from)
            .and_then(|t| crate::detectors::arp::Leases::parse(&t))
        {
            Ok(l) => {
                tracing::info!(file = %path.display(), leases = l.by_addr.len(), "IPAM lease file loaded");
                Some(Some(l))
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "IPAM lease file unusable; IPAM comparison paused");
                Some(None)
            }
        }
    }
}

pub use crate::detectors::procfs::lineage;

pub async fn run(
    mut queue: mpsc::Receiver<Event>,
    mut config: watch::Receiver<Arc<Config>>,
    metrics: Arc<Metrics>,
    to_guard: ToGuard,
    mut allowance: watch::Receiver<Option<crate::detectors::reboot::Allowance>>,
    mut sampled: mpsc::Receiver<Finding>,
    mut cluster_role: watch::Receiver<Option<crate::detectors::corosync::Role>>,
) {
    let mut correlator =
        crate::detectors::incident::Correlator::new(std::time::Duration::from_secs(60));
    let mut detectors = DetectorSet::new(&config.borrow_and_update().detectors);
    detectors.set_reboot_allowance(allowance.borrow_and_update().clone());
    detectors.set_corosync_role(cluster_role.borrow_and_update().clone());
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let cap = config.borrow().detectors.arp.max_conflict_series;
    let mut leases = LeaseFile::default();
    let mut active = ActiveCheck::new(config.borrow().detectors.arp.active_check_rate);
    let mut alerting = config.borrow().alerting.clone();
    let mut pusher = super::push::Pusher::start(alerting.clone(), metrics.clone());
    loop {
        // Biased, the kernel's events last: a configuration, allowance or role change
        // already signalled is taken before the next event is judged, and a busy queue
        // never starves the tick or the samplers.
        tokio::select! {
            biased;
            changed = config.changed() => {
                if changed.is_err() { return; }
                detectors = DetectorSet::new(&config.borrow_and_update().detectors);
                active = ActiveCheck::new(config.borrow().detectors.arp.active_check_rate);
                if config.borrow().alerting != alerting {
                    // The old task sends what it has queued, then ends.
                    alerting = config.borrow().alerting.clone();
                    pusher = super::push::Pusher::start(alerting.clone(), metrics.clone());
                }
                detectors.set_reboot_allowance(allowance.borrow().clone());
                detectors.set_corosync_role(cluster_role.borrow().clone());
            }
            _ = tick.tick() => {
                let now_ms = now_ms();
                let path = config.borrow().detectors.arp.leases.clone();
                let mut found = Vec::new();
                if let Some(update) = leases.poll(path.as_deref()) {
                    found.extend(detectors.set_arp_leases(update));
                }
                found.extend(detectors.tick(now_ms));
                metrics.arp.set_drift(&detectors.arp_drift());
                for finding in found {
                    crate::detectors::report::report(&finding);
                    metrics.record_finding(&finding);
                    pusher.finding(&finding).await;
                }
                let conflicts = detectors.arp_conflicts();
                metrics.arp.set_conflicts(&conflicts, cap, ifname);
                *to_guard.conflicts.lock().expect("conflicts lock") = conflicts;
            }
            Some(finding) = sampled.recv() => {
                let now_ms = now_ms();
                let incident = correlator.observe(&finding, now_ms).map(Finding::Incident);
                for f in std::iter::once(finding).chain(incident) {
                    crate::detectors::report::report(&f);
                    metrics.record_finding(&f);
                    pusher.finding(&f).await;
                    if let Finding::Corosync(c) = &f
                        && c.kind == "rogue_member"
                        && to_guard.corosync.try_send(c.clone()).is_err()
                    {
                        tracing::error!("rogue member not passed to the quarantine engine: queue full");
                    }
                    // Secret opens seen by fanotify (the decision is already made).
                    if let Finding::Secret(s) = &f
                        && !s.allowed
                        && to_guard.secrets.try_send(s.clone()).is_err()
                    {
                        tracing::error!("secret open not passed to the quarantine engine: queue full");
                    }
                }
            }
            changed = cluster_role.changed() => {
                if changed.is_err() { return; }
                detectors.set_corosync_role(cluster_role.borrow_and_update().clone());
            }
            changed = allowance.changed() => {
                if changed.is_err() { return; }
                detectors.set_reboot_allowance(allowance.borrow_and_update().clone());
            }
            event = queue.recv() => {
                let Some(mut event) = event else { return };
                if let Event::Arp(e) = &event
                    && let Some(fixed) = crate::detectors::arp::fdb::attribute(e)
                {
                    event = Event::Arp(agent_common::record::Record::new(fixed));
                }
                if let Event::ExecBlocked(b) = &event {
                    let p = crate::detectors::Process::from(&b.proc);
                    warn!(target: "nodeward::enforced", action = "block_exec", id = b.rule_id, pid = p.pid, ppid = p.ppid, comm = %p.comm, signal_result = b.signal_result, "exec blocked: {}[{}] killed", p.comm, p.pid);
                    let detail = serde_json::json!({"process": p, "signal_result": b.signal_result});
                    let _ = to_guard.enforced.try_send((b.rule_id, detail));
                }
                let now_ms = now_ms();
                let found = detectors.observe(&event, now_ms);
                let incidents: Vec<Finding> = found.iter().filter_map(|f| correlator.observe(f, now_ms)).map(Finding::Incident).collect();
                for mut finding in found.into_iter().chain(incidents) {
                    if let Finding::Secret(f) = &mut finding {
                        let mut chain = lineage(f.process.ppid);
                        chain.push(f.process.comm.clone());
                        f.lineage = chain;
                    }
                    if let Finding::Corosync(f) = &mut finding
                        && let Some(p) = &f.process
                    {
                        let mut chain = lineage(p.ppid);
                        chain.push(p.comm.clone());
                        f.lineage = chain;
                    }
                    if let Finding::RebootIntent(i) = &mut finding {
                        // From the kernel's walk at the exec where there is one: the
                        // SSH session may have ended before this record was read.
                        let mut chain = crate::detectors::procfs::lineage_with(&i.ancestors, i.process.ppid);
                        chain.push(i.process.comm.clone());
                        i.lineage = chain;
                    }
                    // A reboot intent is pushed first, and waited for: the host may be
                    // gone before the next step, let alone the next scrape.
                    let urgent = matches!(finding, Finding::RebootIntent(_));
                    if urgent {
                        pusher.finding(&finding).await;
                    }
                    // One order for every finding: log, metrics, push, journal,
                    // quarantine request.
                    crate::detectors::report::report(&finding);
                    metrics.record_finding(&finding);
                    if !urgent {
                        pusher.finding(&finding).await;
                    }
                    if let Finding::Secret(f) = &finding
                        && !f.allowed
                        && to_guard.secrets.try_send(f.clone()).is_err()
                    {
                        tracing::error!("secret open not passed to the quarantine engine: queue full");
                    }
                    if let Finding::Arp(a) = &finding
                        && ActiveCheck::wanted(a)
                        && config.borrow().detectors.arp.active_check
                    {
                        metrics.arp.active_check(active.ask(a));
                    }
                    if let Finding::RebootIntent(i) = finding
                        && to_guard.intents.try_send(i).is_err() {
                            tracing::error!("reboot intent not journaled: the guard queue is full");
                        }
                }
                if matches!(event, Event::Arp(_)) {
                    metrics.arp.set_drift(&detectors.arp_drift());
                    let conflicts = detectors.arp_conflicts();
                    metrics.arp.set_conflicts(&conflicts, cap, ifname);
                    *to_guard.conflicts.lock().expect("conflicts lock") = conflicts;
                }
            }
        }
    }
}
