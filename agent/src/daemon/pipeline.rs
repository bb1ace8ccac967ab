//! Detector pipeline: decoded records from the queue -> detectors -> findings ->
//! metrics and structured log lines.

use std::sync::Arc;

use agent_common::decode::Event;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::{
    config::Config,
    detectors::metrics::Metrics,
    detectors::{DetectorSet, Finding},
    net::{iface_label, ifname, own_netns},
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
            .map_err(|e| e.to_string())
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

/// Names of the ancestors of `pid`, nearest last ("sshd → bash → reboot" order),
/// read from /proc while they still exist (best effort, at most 8 levels).
pub fn lineage(pid: u32) -> Vec<String> {
    let mut chain = Vec::new();
    let mut cur = pid;
    for _ in 0..8 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{cur}/stat")) else {
            break;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            break;
        };
        chain.push(stat[open + 1..close].to_string());
        let ppid: u32 = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid <= 1 {
            break;
        }
        cur = ppid;
    }
    chain.reverse();
    chain
}

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
    loop {
        // Biased, the kernel's events last: a configuration, allowance or role change
        // already signalled is taken before the next event is judged, and a busy queue
        // never starves the tick or the samplers.
        tokio::select! {
            biased;
            changed = config.changed() => {
                if changed.is_err() { return; }
                detectors = DetectorSet::new(&config.borrow_and_update().detectors);
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
                    report(&finding);
                    metrics.record_finding(&finding);
                }
                let conflicts = detectors.arp_conflicts();
                metrics.arp.set_conflicts(&conflicts, cap, ifname);
                *to_guard.conflicts.lock().expect("conflicts lock") = conflicts;
            }
            Some(finding) = sampled.recv() => {
                let now_ms = now_ms();
                let incident = correlator.observe(&finding, now_ms).map(Finding::Incident);
                for f in std::iter::once(finding).chain(incident) {
                    report(&f);
                    metrics.record_finding(&f);
                    if let Finding::Corosync(c) = &f
                        && c.kind == "rogue_member"
                        && to_guard.corosync.try_send(c.clone()).is_err()
                    {
                        tracing::error!("rogue member not passed to the quarantine engine: queue full");
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
                let Some(event) = event else { return };
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
                        // The reboot process and its parent are usually still there.
                        let mut chain = lineage(i.process.ppid);
                        chain.push(i.process.comm.clone());
                        i.lineage = chain;
                    }
                    // One order for every finding: log, metrics, journal, quarantine request.
                    report(&finding);
                    metrics.record_finding(&finding);
                    if let Finding::Secret(f) = &finding
                        && !f.allowed
                        && to_guard.secrets.try_send(f.clone()).is_err()
                    {
                        tracing::error!("secret open not passed to the quarantine engine: queue full");
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

/// One structured log line per finding; `detail` carries the whole finding as JSON.
pub fn report(finding: &Finding) {
    let detail = serde_json::to_string(finding).unwrap_or_default();
    match finding {
        Finding::Secret(f) => {
            let p = &f.process;
            let msg = format!(
                "{}: {} by {}[{}] (uid {}, origin {}){}",
                f.kind,
                f.path,
                p.comm,
                p.pid,
                p.uid,
                serde_json::to_string(&p.origin).unwrap_or_default(),
                if f.allowed { " — allowed reader" } else { "" }
            );
            if f.allowed {
                tracing::info!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = true, detail = %detail, "{msg}");
            } else {
                warn!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = false, lineage = %f.lineage.join(" → "), detail = %detail, "{msg}");
            }
        }
        Finding::Corosync(f) => {
            let addr = f.addr.map(|a| a.to_string()).unwrap_or_default();
            let msg = match (f.kind, &f.process) {
                ("role_changed", _) => format!(
                    "role_changed: this node is now {} (was {}): {}",
                    f.role_to.unwrap_or(""),
                    f.role_from.unwrap_or(""),
                    f.role_reason.as_deref().unwrap_or("")
                ),
                ("corosync_on_standalone", Some(p)) => format!(
                    "corosync_on_standalone: {} {}[{}] (uid {}, origin {}){} — {}",
                    f.what.unwrap_or(""),
                    p.comm,
                    p.pid,
                    p.uid,
                    serde_json::to_string(&p.origin).unwrap_or_default(),
                    f.port
                        .map(|port| format!(" bound {addr}:{port}"))
                        .unwrap_or_default(),
                    f.role_reason.as_deref().unwrap_or("")
                ),
                _ => format!(
                    "{}: {} ({}) at {} packets/s on {} ({} packets, {} dropped)",
                    f.kind,
                    addr,
                    match (f.member, f.node_id) {
                        (Some(true), Some(id)) => format!("member, node {id}"),
                        _ => "not in the nodelist".into(),
                    },
                    f.rate_pps.unwrap_or(0),
                    f.interfaces.join(","),
                    f.packets.unwrap_or(0),
                    f.dropped.unwrap_or(0)
                ),
            };
            let pid = f.process.as_ref().map_or(0, |p| p.pid);
            let origin = f.process.as_ref().map_or("", |p| p.origin.label());
            if f.kind.ends_with("_ended") {
                tracing::info!(target: "nodeward::finding", detector = "corosync", finding = f.kind, address = %addr, detail = %detail, "{msg}");
            } else {
                warn!(target: "nodeward::finding", detector = "corosync", finding = f.kind, address = %addr, pid, origin, interfaces = %f.interfaces.join(","), lineage = %f.lineage.join(" → "), detail = %detail, "{msg}");
            }
        }
        Finding::Incident(i) => {
            let addr = i.addr.map(|a| a.to_string()).unwrap_or_default();
            let mut parts = Vec::new();
            if let Some(a) = &i.arp {
                parts.push(format!(
                    "{} by {} and {}",
                    a.kind,
                    a.mac,
                    a.old_mac.map(|m| m.to_string()).unwrap_or_default()
                ));
            }
            if let Some(m) = &i.martian {
                parts.push(format!("{} {} drops on {}", m.count, m.reason, m.interface));
            }
            if let Some(r) = &i.resets {
                parts.push(format!("{} resets {}", r.count, r.direction.as_str()));
            }
            warn!(target: "nodeward::finding", detector = "incident", finding = i.kind, address = %addr, detail = %detail, "{}: {}: {}", i.kind, addr, parts.join("; "));
        }
        Finding::Martian(f) => {
            let top: Vec<String> = f
                .top_sources
                .iter()
                .map(|(a, n)| format!("{a} ({n})"))
                .collect();
            let msg = format!(
                "{}: {} {} drops on {} within {}s; top sources: {}",
                f.kind,
                f.count,
                f.reason,
                f.interface,
                f.window_s,
                top.join(", ")
            );
            if f.kind == "martian_flood" {
                warn!(target: "nodeward::finding", detector = "martian", finding = f.kind, interface = %f.interface, reason = %f.reason, count = f.count, detail = %detail, "{msg}");
            } else {
                tracing::info!(target: "nodeward::finding", detector = "martian", finding = f.kind, interface = %f.interface, reason = %f.reason, count = f.count, detail = %detail, "{msg}");
            }
        }
        Finding::TcpReset(t) => {
            let msg = format!(
                "{}: {} resets {} {} within {}s",
                t.kind,
                t.count,
                if t.direction.as_str() == "sent" {
                    "sent to"
                } else {
                    "received from"
                },
                t.peer,
                t.window_s
            );
            if t.kind == "reset_storm" {
                warn!(target: "nodeward::finding", detector = "tcp_reset", finding = t.kind, peer = %t.peer, direction = t.direction.as_str(), count = t.count, detail = %detail, "{msg}");
            } else {
                tracing::info!(target: "nodeward::finding", detector = "tcp_reset", finding = t.kind, peer = %t.peer, direction = t.direction.as_str(), count = t.count, detail = %detail, "{msg}");
            }
        }
        Finding::Arp(a) => {
            let port = ifname(a.ifindex);
            let old = a
                .old_mac
                .map(|m| {
                    format!(
                        " (was {m} on {})",
                        a.old_ifindex.map(ifname).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let msg = format!(
                "{}: {} claimed by {} on {}{}",
                a.kind, a.addr, a.mac, port, old
            );
            match a.kind {
                "conflict" | "garp_conflict" | "probe_conflict" | "ipam_live_but_free"
                | "ipam_other_owner" => {
                    warn!(target: "nodeward::finding", detector = "arp", finding = a.kind, address = %a.addr, mac = %a.mac, interface = %port, detail = %detail, "{msg}")
                }
                _ => {
                    tracing::info!(target: "nodeward::finding", detector = "arp", finding = a.kind, address = %a.addr, mac = %a.mac, interface = %port, detail = %detail, "{msg}")
                }
            }
        }
        Finding::SshSession(s) => {
            tracing::info!(
                target: "nodeward::finding",
                detector = "session",
                finding = "ssh_session",
                pid = s.sshd.pid,
                comm = %s.sshd.comm,
                detail = %detail,
                "ssh connection accepted by {}[{}]: {}",
                s.sshd.comm, s.sshd.pid, serde_json::to_string(&s.origin).unwrap_or_default(),
            );
        }
        Finding::RebootIntent(i) => {
            let p = &i.process;
            warn!(
                target: "nodeward::finding",
                detector = "reboot",
                finding = "reboot_intent",
                path = i.path,
                action = i.action.as_str(),
                pid = p.pid,
                ppid = p.ppid,
                uid = p.uid,
                loginuid = p.loginuid.map(i64::from).unwrap_or(-1),
                sessionid = p.sessionid.map(i64::from).unwrap_or(-1),
                comm = %p.comm,
                origin = p.origin.label(),
                expected = i.expected,
                guard = i.guard.unwrap_or(""),
                command = %i.argv.join(" "),
                lineage = %i.lineage.join(" → "),
                detail = %detail,
                "{} reboot intent: {} via {} by {}[{}] ({}){}",
                if i.expected { "expected" } else { "UNEXPECTED" },
                i.action.as_str(), i.path, p.comm, p.pid, i.because,
                match i.guard { Some("blocked") => " — BLOCKED by the reboot guard", Some(_) => " — the reboot guard would block it (dry run)", None => "" },
            );
        }
    }
}

/// The reset-storm sampler: once a second, the kernel's per-peer totals through the
/// (pure) detector; findings are logged and counted like every other.
pub async fn reset_sampler(
    map: aya::maps::PerCpuHashMap<aya::maps::MapData, agent_common::tcp_reset::PeerKey, u64>,
    config: crate::config::TcpResetConfig,
    metrics: Arc<Metrics>,
    findings: mpsc::Sender<Finding>,
) {
    use crate::detectors::tcp_reset::{Direction, ResetDetector};
    use agent_common::{session::AF_INET, tcp_reset::DIR_SENT};
    let mut detector = ResetDetector::new(&config);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let totals: Vec<(std::net::IpAddr, Direction, u64)> = map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                let peer = if k.family == AF_INET {
                    std::net::IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
                } else {
                    std::net::IpAddr::from(k.addr)
                };
                let dir = if k.direction == DIR_SENT {
                    Direction::Sent
                } else {
                    Direction::Received
                };
                (peer, dir, v.iter().sum())
            })
            .collect();
        let now_ms = now_ms();
        for f in detector.sample(now_ms, &totals) {
            let _ = findings.send(Finding::TcpReset(f)).await;
        }
        metrics
            .tcp_reset
            .set_storms(&detector.active(), config.max_storm_series);
    }
}

/// The martian sampler: once a second, drops per interface and reason and the top
/// sources through the (pure) detector; totals also feed the metrics.
pub async fn martian_sampler(
    counts: aya::maps::PerCpuHashMap<aya::maps::MapData, agent_common::martian::MartianKey, u64>,
    sources: aya::maps::PerCpuHashMap<
        aya::maps::MapData,
        agent_common::martian::MartianSource,
        u64,
    >,
    reasons: std::collections::HashMap<u32, String>,
    config: crate::config::MartianConfig,
    metrics: Arc<Metrics>,
    findings: mpsc::Sender<Finding>,
) {
    use crate::detectors::martian::MartianDetector;
    let own = own_netns();
    let label = |k: &agent_common::martian::MartianKey| {
        (
            iface_label(k.ifindex, k.netns, own),
            reasons
                .get(&k.reason)
                .cloned()
                .unwrap_or_else(|| format!("reason_{}", k.reason)),
        )
    };
    let mut detector = MartianDetector::new(&config);
    metrics.martian.set_reasons(&reasons);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut totals: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for (k, v) in counts.iter().filter_map(Result::ok) {
            *totals.entry(label(&k)).or_default() += v.iter().sum::<u64>();
        }
        let totals: Vec<((String, String), u64)> = totals.into_iter().collect();
        let srcs: Vec<((String, String), std::net::Ipv4Addr, u64)> = sources
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                (
                    label(&k.key),
                    std::net::Ipv4Addr::from(k.saddr),
                    v.iter().sum(),
                )
            })
            .collect();
        metrics.martian.set_totals(&totals);
        let now_ms = now_ms();
        for f in detector.sample(now_ms, &totals, &srcs) {
            let _ = findings.send(Finding::Martian(f)).await;
        }
        let active = detector.active();
        let tops: Vec<crate::detectors::martian::FloodTop> = active
            .iter()
            .map(|(k, _)| (k.clone(), detector.top(k, &srcs)))
            .collect();
        metrics
            .martian
            .set_floods(&active, &tops, config.max_flood_series);
    }
}
