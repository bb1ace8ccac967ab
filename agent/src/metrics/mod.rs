//! Prometheus metrics. Every family is registered and every bounded label set is
//! pre-set to 0 at start-up, so the first scrape already shows the full picture.
//! Kernel-side counters (per-CPU `STATS`, map sizes, program run statistics) are
//! read at scrape time by [`KernelStats::refresh`].

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use agent_common::{event::kind, maps, stats};

use prometheus::{CounterVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{
    detectors::{self, Finding},
    kernel::probe::KernelFacts,
    kernel::programs::{self, PROGRAMS, ProgramStatus, Status},
};

/// Names of record kinds, indexed by kind number (metric label `kind`).
pub fn kind_name(k: u16) -> &'static str {
    match k {
        kind::REBOOT_SYSCALL => "reboot_syscall",
        kind::KEXEC => "kexec",
        kind::EXEC => "exec",
        kind::EXEC_BLOCKED => "exec_blocked",
        kind::SSH_ACCEPT => "ssh_accept",
        kind::SYSRQ_OPEN => "sysrq_open",
        kind::ARP => "arp",
        kind::SECRET_OPEN => "secret_open",
        kind::COROSYNC_LOCAL => "corosync_local",
        _ => "unknown",
    }
}

/// Names of the QSTATS slots (agent_common::quarantine::QSTAT_*), by index.
pub const QSTAT_NAMES: [&str; 8] = [
    "exec_killed",
    "drop_v4",
    "drop_v6",
    "drop_mac",
    "drop_arp",
    "expired_seen",
    "signal_error",
    "drop_corosync",
];

/// Reasons a record can be lost (metric label `reason`).
pub const LOSS_REASONS: &[&str] = &["ringbuf_full", "map_full", "queue_full"];
/// Reasons a record can fail to decode.
pub const DECODE_REASONS: &[&str] = &["short", "unknown_kind", "abi", "length"];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

/// Counters that only userspace sees.
#[derive(Default)]
pub struct UserCounters {
    pub queue_full: AtomicU64,
}

pub struct Metrics {
    pub registry: Registry,
    pub user: Arc<UserCounters>,
    detector_up: IntGaugeVec,
    program_attached: IntGaugeVec,
    program_type_supported: IntGaugeVec,
    kernel_offset_resolved: IntGaugeVec,
    events: IntCounterVec,
    events_lost: IntCounterVec,
    kernel_records: IntCounterVec,
    decode_errors: IntCounterVec,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    program_runs: IntCounterVec,
    program_run_seconds: CounterVec,
    ringbuf_capacity: IntGauge,
    config_reloads: IntCounterVec,
    findings: IntCounterVec,
    reboot_intents: IntCounterVec,
    reboot_blocked: prometheus::IntCounter,
    reboots: IntCounterVec,
    last_reboot: IntGaugeVec,
    ssh_accepts: prometheus::IntCounter,
    arp_findings: IntCounterVec,
    tcp_resets: IntCounterVec,
    martian_drops: IntCounterVec,
    martian_floods: IntCounterVec,
    martian_flood_series: IntGaugeVec,
    martian_top_sources: IntGaugeVec,
    martian_kernel: IntCounterVec,
    tcp_storms: IntCounterVec,
    tcp_storm_series: IntGaugeVec,
    rst_reasons: Mutex<std::collections::HashMap<u32, String>>,
    arp_conflicts: IntGauge,
    arp_conflict_series: IntGaugeVec,
    arp_interfaces: IntGauge,
    arp_drift: IntGaugeVec,
    incidents: IntCounterVec,
    secret_opens: IntCounterVec,
    secret_files: IntGauge,
    quarantine_active: IntGaugeVec,
    quarantine_decisions: IntCounterVec,
    quarantine_kernel: IntCounterVec,
    enforcement_backend: IntGaugeVec,
    kernel: Mutex<Option<KernelStats>>,
    corosync: corosync::CorosyncMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let build_info = gauge_vec(
            &r,
            "nodeward_build_info",
            "Build of the running agent (always 1).",
            &["version", "abi"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &agent_common::event::ABI_VERSION.to_string(),
            ])
            .set(1);
        let m = Metrics {
            detector_up: gauge_vec(
                &r,
                "nodeward_detector_up",
                "1 when the detector runs with all its required programs attached, else 0 (reason in the log and `nodeward check`).",
                &["detector"],
            ),
            program_attached: gauge_vec(
                &r,
                "nodeward_program_attached",
                "1 when the eBPF program is attached, else 0.",
                &["detector", "program"],
            ),
            program_type_supported: gauge_vec(
                &r,
                "nodeward_kernel_program_type_supported",
                "1 when this kernel loads eBPF programs of this type (probed by loading).",
                &["type"],
            ),
            kernel_offset_resolved: gauge_vec(
                &r,
                "nodeward_kernel_btf_offset_resolved",
                "1 when the kernel struct offset was found in BTF; 0 means the matching event field stays unset.",
                &["field"],
            ),
            events: counter_vec(
                &r,
                "nodeward_events_total",
                "Records received from the kernel and decoded.",
                &["kind"],
            ),
            events_lost: counter_vec(
                &r,
                "nodeward_events_lost_total",
                "Records lost before a detector saw them, by reason (ringbuf_full and map_full counted in the kernel, queue_full in userspace).",
                &["reason"],
            ),
            kernel_records: counter_vec(
                &r,
                "nodeward_kernel_records_total",
                "Kernel-side accounting per record kind: submitted, ringbuf_full, read_error, map_full.",
                &["kind", "result"],
            ),
            decode_errors: counter_vec(
                &r,
                "nodeward_event_decode_errors_total",
                "Records that could not be decoded.",
                &["reason"],
            ),
            map_entries: gauge_vec(
                &r,
                "nodeward_map_entries",
                "Entries in a kernel hash map.",
                &["map"],
            ),
            map_capacity: gauge_vec(
                &r,
                "nodeward_map_capacity",
                "Capacity (max entries) of a kernel hash map.",
                &["map"],
            ),
            program_runs: counter_vec(
                &r,
                "nodeward_program_runs_total",
                "Times the eBPF program ran (kernel bpf_stats).",
                &["program"],
            ),
            program_run_seconds: {
                let v = CounterVec::new(
                    Opts::new(
                        "nodeward_program_run_seconds_total",
                        "Time spent in the eBPF program (kernel bpf_stats).",
                    ),
                    &["program"],
                )
                .expect("valid metric");
                r.register(Box::new(v.clone())).expect("unique metric");
                v
            },
            ringbuf_capacity: {
                let g = IntGauge::new(
                    "nodeward_ringbuf_capacity_bytes",
                    "Size of the kernel event ring buffer.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            config_reloads: counter_vec(
                &r,
                "nodeward_config_reloads_total",
                "Configuration reloads (SIGHUP), by result.",
                &["result"],
            ),
            findings: counter_vec(
                &r,
                "nodeward_findings_total",
                "Findings reported, by detector.",
                &["detector"],
            ),
            reboot_intents: counter_vec(
                &r,
                "nodeward_reboot_intents_total",
                "Intents to reboot, halt, power off or kexec this machine, by path, origin (ssh, local, service) and whether expected.",
                &["path", "origin", "expected"],
            ),
            reboot_blocked: {
                let c = prometheus::IntCounter::new("nodeward_reboot_blocked_total", "Reboot-family execs the reboot guard killed before they ran (protected host, enforce).").expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            reboots: counter_vec(
                &r,
                "nodeward_reboots_total",
                "Reboots of this node seen across agent restarts (boot id changes), by the cause nodeward recorded before it (ssh, local, service, unknown) and whether it was expected (true, false, unknown). Persisted in the state directory.",
                &["cause", "expected"],
            ),
            last_reboot: gauge_vec(
                &r,
                "nodeward_last_reboot_info",
                "The last reboot of this node (one series): cause, expected, and the SSH source address if any.",
                &["cause", "expected", "source"],
            ),
            ssh_accepts: {
                let c = prometheus::IntCounter::new(
                    "nodeward_session_ssh_accepts_total",
                    "SSH connections accepted by a watched sshd (each starts a tracked session).",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            martian_drops: counter_vec(
                &r,
                "nodeward_martian_drops_total",
                "Packets the kernel dropped for a martian source, by interface and skb drop reason (names from the kernel's BTF). Interfaces of other network namespaces read if<index>@netns<inode>.",
                &["interface", "reason"],
            ),
            martian_floods: counter_vec(
                &r,
                "nodeward_martian_floods_total",
                "Martian floods detected (flood_threshold drops per interface and reason within the window).",
                &["reason"],
            ),
            martian_flood_series: gauge_vec(
                &r,
                "nodeward_martian_flood_active",
                "One series per interface and reason in an active martian flood (capped by detectors.martian.max_flood_series); the value is the drops in the window.",
                &["interface", "reason"],
            ),
            martian_top_sources: gauge_vec(
                &r,
                "nodeward_martian_top_source",
                "Top source addresses of an active martian flood (only while it lasts; detectors.martian.top_sources per flood): drops so far.",
                &["interface", "reason", "source"],
            ),
            martian_kernel: counter_vec(
                &r,
                "nodeward_martian_kernel_stat_total",
                "The kernel's own martian counters, as a cross-check and for kernels without drop reasons: in_martian_src (/proc/net/stat/rt_cache), ip_reverse_path_filter (TcpExt IPReversePathFilter, agent's netns).",
                &["stat"],
            ),
            tcp_resets: counter_vec(
                &r,
                "nodeward_tcp_resets_total",
                "TCP resets by direction (sent, received) and reason (enum sk_rst_reason, resolved from the kernel's BTF; received resets have reason none).",
                &["direction", "reason"],
            ),
            tcp_storms: counter_vec(
                &r,
                "nodeward_tcp_reset_storms_total",
                "Reset storms detected (storm_threshold resets with one peer within the window), by direction.",
                &["direction"],
            ),
            tcp_storm_series: gauge_vec(
                &r,
                "nodeward_tcp_reset_storm_active",
                "One series per peer in an active reset storm (capped by detectors.tcp_reset.max_storm_series); the value is the resets in the window.",
                &["peer", "direction"],
            ),
            rst_reasons: Mutex::new(Default::default()),
            arp_findings: counter_vec(
                &r,
                "nodeward_arp_findings_total",
                "ARP findings by kind: new_binding, mac_change, conflict, garp_conflict, probe_conflict, conflict_cleared.",
                &["kind"],
            ),
            arp_conflicts: {
                let g = IntGauge::new(
                    "nodeward_arp_conflicts_active",
                    "Addresses currently claimed by more than one live MAC.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            arp_conflict_series: gauge_vec(
                &r,
                "nodeward_arp_conflict_active",
                "One series per active duplicate-address conflict (capped by detectors.arp.max_conflict_series; details in the log and `nodeward bindings`).",
                &["address", "interfaces"],
            ),
            secret_opens: counter_vec(
                &r,
                "nodeward_secrets_opens_total",
                "Opens of watched secret files: secret_read, secret_written, secret_created; allowed=true for reads by detectors.secrets.allowed_readers.",
                &["kind", "allowed"],
            ),
            secret_files: {
                let g = IntGauge::new(
                    "nodeward_secrets_files_present",
                    "Secret files that exist now and are watched by inode (opens through relative paths, symlinks, hard links and bind mounts are seen too).",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            incidents: counter_vec(
                &r,
                "nodeward_incidents_total",
                "Correlated incidents: ip_conflict (an ARP conflict plus martian drops or TCP resets involving the same address).",
                &["kind"],
            ),
            arp_drift: gauge_vec(
                &r,
                "nodeward_arp_ipam_drift",
                "Live addresses diverging from the IPAM lease file now: ipam_live_but_free, ipam_other_owner.",
                &["kind"],
            ),
            arp_interfaces: {
                let g = IntGauge::new(
                    "nodeward_arp_interfaces",
                    "Interfaces the ARP observer is attached to.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            quarantine_active: gauge_vec(
                &r,
                "nodeward_quarantine_active",
                "Quarantines currently in force, by action.",
                &["action"],
            ),
            quarantine_decisions: counter_vec(
                &r,
                "nodeward_quarantine_decisions_total",
                "Quarantine engine decisions, by action and result (applied, proposed, approved, dry_run, refused_*, failed, expired, released, enforced).",
                &["action", "result"],
            ),
            quarantine_kernel: counter_vec(
                &r,
                "nodeward_quarantine_kernel_total",
                "Enforcement done by the kernel programs: exec_killed, drop_v4, drop_v6, drop_mac, drop_arp, expired_seen, signal_error, drop_corosync.",
                &["counter"],
            ),
            enforcement_backend: gauge_vec(
                &r,
                "nodeward_enforcement_backend_info",
                "Kernel backend enforcing each action here (always 1).",
                &["action", "backend"],
            ),
            corosync: corosync::CorosyncMetrics::new(&r),
            registry: r,
            user: Arc::new(UserCounters::default()),
            kernel: Mutex::new(None),
        };
        m.preset();
        m
    }

    /// Pre-set every bounded label combination to 0.
    fn preset(&self) {
        for d in detectors::ALL {
            self.detector_up.with_label_values(&[d]).set(0);
            self.findings.with_label_values(&[d]);
        }
        self.findings.with_label_values(&["incident"]);
        for p in PROGRAMS {
            self.program_attached
                .with_label_values(&[p.detector, p.name])
                .set(0);
            self.program_runs.with_label_values(&[p.name]);
            self.program_run_seconds.with_label_values(&[p.name]);
        }
        for t in crate::kernel::probe::PROGRAM_TYPES {
            self.program_type_supported.with_label_values(&[t]).set(0);
        }
        for f in crate::kernel::btf::FIELDS {
            self.kernel_offset_resolved.with_label_values(&[f]).set(0);
        }
        for k in 1..=kind::MAX {
            self.events.with_label_values(&[kind_name(k)]);
            for c in stats::COUNTER_NAMES {
                self.kernel_records.with_label_values(&[kind_name(k), c]);
            }
        }
        for r in LOSS_REASONS {
            self.events_lost.with_label_values(&[r]);
        }
        for r in DECODE_REASONS {
            self.decode_errors.with_label_values(&[r]);
        }
        for r in ["success", "failure"] {
            self.config_reloads.with_label_values(&[r]);
        }
        for k in crate::config::ActionKind::ALL {
            self.quarantine_active
                .with_label_values(&[k.as_str()])
                .set(0);
            for r in crate::quarantine::RESULTS {
                self.quarantine_decisions
                    .with_label_values(&[k.as_str(), r]);
            }
        }
        for d in ["sent", "received"] {
            self.tcp_storms.with_label_values(&[d]);
        }
        for c in ["in_martian_src", "ip_reverse_path_filter"] {
            self.martian_kernel.with_label_values(&[c]);
        }
        self.tcp_resets.with_label_values(&["received", "none"]);
        for k in ["ipam_live_but_free", "ipam_other_owner"] {
            self.arp_drift.with_label_values(&[k]).set(0);
        }
        self.incidents.with_label_values(&["ip_conflict"]);
        for k in detectors::secrets::KINDS {
            for a in ["true", "false"] {
                self.secret_opens.with_label_values(&[k, a]);
            }
        }
        for k in detectors::arp::KINDS {
            self.arp_findings.with_label_values(&[k]);
        }
        for c in QSTAT_NAMES {
            self.quarantine_kernel.with_label_values(&[c]);
        }
        for p in detectors::reboot::PATHS {
            for o in ["ssh", "local", "service", "unknown"] {
                for e in ["true", "false"] {
                    self.reboot_intents.with_label_values(&[p, o, e]);
                }
            }
        }
        for c in crate::detectors::reboot::history::CAUSES {
            for e in ["true", "false", "unknown"] {
                self.reboots.with_label_values(&[c, e]);
            }
        }
        self.map_entries
            .with_label_values(&[maps::EXEC_WATCH])
            .set(0);
        self.map_capacity
            .with_label_values(&[maps::EXEC_WATCH])
            .set(maps::EXEC_WATCH_CAPACITY.into());
        self.ringbuf_capacity.set(maps::EVENTS_BYTES.into());
    }

    /// Martian drop totals (advanced to the kernel's running counts).
    pub fn set_martian_totals(&self, totals: &[((String, String), u64)]) {
        for ((iface, reason), n) in totals {
            advance(&self.martian_drops.with_label_values(&[iface, reason]), *n);
        }
    }

    pub fn set_martian_reasons(&self, reasons: &std::collections::HashMap<u32, String>) {
        for r in reasons.values() {
            self.martian_floods.with_label_values(&[r]);
        }
    }

    /// Active floods and their top sources, capped.
    pub fn set_martian_floods(
        &self,
        floods: &[((String, String), u64)],
        tops: &[detectors::martian::FloodTop],
        cap: usize,
    ) {
        self.martian_flood_series.reset();
        self.martian_top_sources.reset();
        for ((iface, reason), n) in floods.iter().take(cap) {
            self.martian_flood_series
                .with_label_values(&[iface, reason])
                .set(*n as i64);
        }
        for ((iface, reason), top) in tops.iter().take(cap) {
            for (addr, n) in top {
                self.martian_top_sources
                    .with_label_values(&[iface, reason, &addr.to_string()])
                    .set(*n as i64);
            }
        }
    }

    /// Active reset storms, capped.
    pub fn set_reset_storms(
        &self,
        storms: &[(std::net::IpAddr, detectors::tcp_reset::Direction, u64)],
        cap: usize,
    ) {
        self.tcp_storm_series.reset();
        for (peer, dir, n) in storms.iter().take(cap) {
            self.tcp_storm_series
                .with_label_values(&[&peer.to_string(), dir.as_str()])
                .set(*n as i64);
        }
    }

    pub fn set_kernel_facts(&self, facts: &KernelFacts) {
        for name in facts.rst_reasons.values() {
            self.tcp_resets.with_label_values(&["sent", name]);
        }
        *self.rst_reasons.lock().expect("reasons lock") = facts.rst_reasons.clone();
        for t in &facts.program_types {
            self.program_type_supported
                .with_label_values(&[t.name])
                .set(t.supported.into());
        }
        for &f in crate::kernel::btf::FIELDS {
            let ok = facts.btf_error.is_none() && !facts.offsets_missing.contains(&f);
            self.kernel_offset_resolved
                .with_label_values(&[f])
                .set(ok.into());
        }
    }

    pub fn set_program_statuses(&self, statuses: &[ProgramStatus]) {
        for s in statuses {
            self.program_attached
                .with_label_values(&[s.spec.detector, s.spec.name])
                .set((s.status == Status::Attached).into());
        }
        for d in detectors::ALL {
            let up = programs::detector_state(d, statuses).is_ok();
            if *d == "corosync" {
                self.corosync
                    .programs_up
                    .store(up, std::sync::atomic::Ordering::Relaxed);
            }
            self.detector_up.with_label_values(&[d]).set(up.into());
        }
    }

    pub fn set_secret_files(&self, n: usize) {
        self.secret_files.set(n as i64);
    }

    /// A changed cluster configuration was read (or failed to).
    pub fn record_corosync_config(&self, ok: bool) {
        self.corosync.config_loaded(ok);
    }

    /// The corosync detector's configuration state: down while the cluster
    /// configuration is unreadable or malformed.
    pub fn set_corosync_state(&self, ok: bool, members: usize, standalone: Option<bool>) {
        let up = self.corosync.state(ok, members, standalone);
        self.detector_up
            .with_label_values(&["corosync"])
            .set(up.into());
    }

    pub fn set_corosync_totals(&self, totals: &[u64; 4]) {
        self.corosync.totals(totals);
    }

    pub fn set_corosync_rogues(
        &self,
        active: &[detectors::corosync::ActiveRogue],
        flooding: usize,
        cap: usize,
    ) {
        self.corosync.rogues(active, flooding, cap);
    }

    pub fn set_corosync_interfaces(&self, n: usize) {
        self.corosync.interfaces(n);
    }

    pub fn record_decision(&self, action: crate::config::ActionKind, result: &str) {
        self.quarantine_decisions
            .with_label_values(&[action.as_str(), result])
            .inc();
    }

    pub fn set_quarantine_active(&self, action: crate::config::ActionKind, n: usize) {
        self.quarantine_active
            .with_label_values(&[action.as_str()])
            .set(n as i64);
    }

    /// Replace the backend info series (one per action).
    pub fn set_enforcement_backends(&self, backends: &[(crate::config::ActionKind, &str)]) {
        self.enforcement_backend.reset();
        for (action, backend) in backends {
            self.enforcement_backend
                .with_label_values(&[action.as_str(), backend])
                .set(1);
        }
    }

    /// Active ARP conflicts: the count, and up to `cap` labelled series.
    pub fn set_arp_conflicts(
        &self,
        conflicts: &[detectors::arp::ActiveConflict],
        cap: usize,
        ifname: impl Fn(u32) -> String,
    ) {
        self.arp_conflicts.set(conflicts.len() as i64);
        self.arp_conflict_series.reset();
        for c in conflicts.iter().take(cap) {
            let mut ifs: Vec<String> = c.macs.iter().map(|(_, i)| ifname(*i)).collect();
            ifs.sort();
            ifs.dedup();
            self.arp_conflict_series
                .with_label_values(&[&c.addr.to_string(), &ifs.join(",")])
                .set(1);
        }
    }

    pub fn set_arp_drift(&self, counts: &std::collections::BTreeMap<&'static str, usize>) {
        for k in ["ipam_live_but_free", "ipam_other_owner"] {
            self.arp_drift
                .with_label_values(&[k])
                .set(counts.get(k).copied().unwrap_or(0) as i64);
        }
    }

    pub fn set_arp_interfaces(&self, n: usize) {
        self.arp_interfaces.set(n as i64);
    }

    /// Reboot history from the state directory (counts and the last one).
    pub fn set_reboot_history(&self, h: &crate::detectors::reboot::history::History) {
        for (key, n) in &h.reboots {
            if let Some((cause, expected)) = key.split_once('/') {
                let c = self.reboots.with_label_values(&[cause, expected]);
                advance(&c, *n);
            }
        }
        self.last_reboot.reset();
        if let Some(last) = &h.last {
            self.last_reboot
                .with_label_values(&[&last.cause, &last.expected, &last.source])
                .set(1);
        }
    }

    pub fn set_kernel_stats(&self, stats: Option<KernelStats>) {
        *self.kernel.lock().expect("metrics lock") = stats;
    }

    pub fn record_event(&self, k: u16) {
        self.events.with_label_values(&[kind_name(k)]).inc();
    }

    pub fn record_decode_error(&self, reason: &str) {
        self.decode_errors.with_label_values(&[reason]).inc();
    }

    pub fn record_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn record_finding(&self, f: &Finding) {
        self.findings.with_label_values(&[f.detector()]).inc();
        match f {
            Finding::RebootIntent(i) => {
                let expected = if i.expected { "true" } else { "false" };
                self.reboot_intents
                    .with_label_values(&[i.path, i.process.origin.label(), expected])
                    .inc();
                if i.guard == Some("blocked") {
                    self.reboot_blocked.inc();
                }
            }
            Finding::SshSession(_) => self.ssh_accepts.inc(),
            Finding::Arp(a) => self.arp_findings.with_label_values(&[a.kind]).inc(),
            Finding::Incident(i) => self.incidents.with_label_values(&[i.kind]).inc(),
            Finding::Corosync(f) => self.corosync.record(f),
            Finding::Secret(f) => self
                .secret_opens
                .with_label_values(&[f.kind, if f.allowed { "true" } else { "false" }])
                .inc(),
            Finding::Martian(f) => {
                if f.kind == "martian_flood" {
                    self.martian_floods.with_label_values(&[&f.reason]).inc();
                }
            }
            Finding::TcpReset(t) => {
                if t.kind == "reset_storm" {
                    self.tcp_storms
                        .with_label_values(&[t.direction.as_str()])
                        .inc();
                }
            }
        }
    }

    /// Bring kernel-sourced values up to date, then render the text exposition.
    pub fn render(&self) -> String {
        let queue_full = self.user.queue_full.load(Ordering::Relaxed);
        advance(
            &self.events_lost.with_label_values(&["queue_full"]),
            queue_full,
        );
        if let Some(k) = self.kernel.lock().expect("metrics lock").as_mut() {
            k.refresh(self);
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Move a counter forward to a monotonic total read from elsewhere.
fn advance(c: &prometheus::IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl Metrics {
    /// Take the engine's new decisions into the counters and set the active gauges.
    pub fn sync_quarantine<B: crate::quarantine::Backend>(
        &self,
        engine: &mut crate::quarantine::Engine<B>,
    ) {
        for (action, result) in engine.take_decisions() {
            self.record_decision(action, result);
        }
        for k in crate::config::ActionKind::ALL {
            self.set_quarantine_active(
                k,
                engine
                    .active()
                    .iter()
                    .filter(|q| q.target.action() == k)
                    .count(),
            );
        }
    }
}

mod corosync;

mod kernel;
pub use crate::kernel::loader::KernelStats;

#[cfg(test)]
mod tests;
