//! The kernel's families: what this kernel supports (program types, BTF offsets), which
//! programs are attached, and — read at scrape time from the loaded object — per-kind
//! record accounting, lost records, map fills, enforcement counters and program run
//! statistics. A read that fails is counted in `nodeward_kernel_read_errors_total` and
//! logged; the family keeps its last good value (never a silent 0).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use agent_common::{event, maps, stats};
use aya::maps::{HashMap as BpfHashMap, MapData};
use prometheus::{
    IntCounterVec, IntGauge, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tracing::warn;

use super::{
    loader::KernelStats,
    probe::KernelFacts,
    programs::{self, PROGRAMS, ProgramStatus, Status},
};
use crate::metrics::{Agent, Registry, Shared, Totals, gauge_vec};

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
pub const LOSS_REASONS: &[&str] = &[
    "ringbuf_full",
    "map_full",
    "queue_full",
    "fanotify_overflow",
];

/// Kernel sources read at scrape time (label `source` of the read-error counter).
pub const READ_SOURCES: &[&str] = &[
    "stats",
    "qstats",
    "exec_watch",
    "program_info",
    "map_full",
    "origin_table",
];

/// Counts and logs a failed kernel read (a clone of the agent's error counter).
#[derive(Clone)]
pub struct ReadErrors(IntCounterVec);

impl ReadErrors {
    pub fn new(agent: &Agent) -> ReadErrors {
        ReadErrors(agent.read_errors())
    }

    /// Count a failed read of `source` and log it, at most once a minute per source (a
    /// read failing every second would otherwise log 3600 lines an hour; the first
    /// failure after a quiet minute is always logged, and the counter has every one).
    pub fn failed(&self, source: &'static str, error: impl std::fmt::Display) {
        let counter = self.0.with_label_values(&[source]);
        counter.inc();
        if should_log(source, std::time::Instant::now()) {
            warn!(source, error = %error, failures = counter.get(), "cannot read a kernel map; what it feeds keeps its last value (logged at most once a minute per source)");
        }
    }
}

/// When each source's read error was last logged (process-wide: every `ReadErrors`
/// clone and every sampler share one limit per source).
static LAST_LOGGED: Mutex<std::collections::BTreeMap<&'static str, std::time::Instant>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Whether a failure of `source` at `now` is logged: the first one, then one a minute.
fn should_log(source: &'static str, now: std::time::Instant) -> bool {
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    match last.get(source) {
        Some(t) if now.duration_since(*t) < std::time::Duration::from_secs(60) => false,
        _ => {
            last.insert(source, now);
            true
        }
    }
}

pub struct KernelMetrics {
    program_attached: IntGaugeVec,
    route_fallback: IntGaugeVec,
    program_type_supported: IntGaugeVec,
    kernel_offset_resolved: IntGaugeVec,
    scrape: Arc<Scrape>,
}

impl KernelMetrics {
    pub fn new(r: &Registry, agent: &Agent) -> KernelMetrics {
        let m = KernelMetrics {
            program_attached: gauge_vec(
                r,
                "nodeward_program_attached",
                "1 when the eBPF program is attached, else 0.",
                &["detector", "program"],
            ),
            route_fallback: gauge_vec(
                r,
                "nodeward_kernel_route_fallback",
                "1 when a hook group runs on its fallback, 0 on its preferred route. For every group but session.storage the fallback is syscall tracepoints (every syscall on the node then takes the kernel's slow path); for session.storage it is the pid table and a program on every task exit. `nodeward check` states each fallback's cost.",
                &["group"],
            ),
            program_type_supported: gauge_vec(
                r,
                "nodeward_kernel_program_type_supported",
                "1 when this kernel loads eBPF programs of this type (probed by loading).",
                &["type"],
            ),
            kernel_offset_resolved: gauge_vec(
                r,
                "nodeward_kernel_btf_offset_resolved",
                "1 when the kernel struct offset was found in BTF; 0 means the matching event field stays unset.",
                &["field"],
            ),
            scrape: Arc::new(Scrape::new(
                [agent.queue_full.clone(), agent.fanotify_lost.clone()],
                ReadErrors::new(agent),
            )),
        };
        agent.preset_read_errors(READ_SOURCES);
        let capacity = gauge_vec(
            r,
            "nodeward_map_capacity",
            "Capacity (max entries) of a kernel hash map.",
            &["map"],
        );
        capacity
            .with_label_values(&[maps::EXEC_WATCH])
            .set(maps::EXEC_WATCH_CAPACITY.into());
        let ring = IntGauge::new(
            "nodeward_ringbuf_capacity_bytes",
            "Size of the kernel event ring buffer.",
        )
        .expect("valid metric");
        ring.set(maps::EVENTS_BYTES.into());
        r.register(Box::new(ring)).expect("unique metric");
        r.register(Box::new(Shared(m.scrape.clone())))
            .expect("unique metric");
        for p in PROGRAMS {
            m.program_attached
                .with_label_values(&[p.detector, p.name])
                .set(0);
        }
        for t in super::probe::PROGRAM_TYPES {
            m.program_type_supported.with_label_values(&[t]).set(0);
        }
        for f in super::btf::FIELDS {
            m.kernel_offset_resolved.with_label_values(&[f]).set(0);
        }
        m
    }

    pub fn set_facts(&self, facts: &KernelFacts) {
        for t in &facts.program_types {
            self.program_type_supported
                .with_label_values(&[t.name])
                .set(t.supported.into());
        }
        for &f in super::btf::FIELDS {
            let ok = facts.btf_error.is_none() && !facts.offsets_missing.contains(&f);
            self.kernel_offset_resolved
                .with_label_values(&[f])
                .set(ok.into());
        }
    }

    /// Attached programs, and each detector's `up` from its required programs.
    pub fn set_program_statuses(&self, statuses: &[ProgramStatus], agent: &Agent) {
        for s in statuses {
            self.program_attached
                .with_label_values(&[s.spec.detector, s.spec.name])
                .set((s.status == Status::Attached).into());
        }
        self.route_fallback.reset();
        for (group, fallback) in crate::kernel::loader::route_in_use(statuses) {
            self.route_fallback
                .with_label_values(&[group])
                .set(fallback.into());
        }
        for d in agent_common::DETECTORS {
            let state = programs::detector_state(d, statuses);
            agent.set_detector_enabled(d, state != Err(programs::Down::Disabled));
            agent.set_detector_up(d, state.is_ok());
        }
    }

    /// From now on, scrapes read these kernel handles (`None`: stop, and let go of
    /// the run-statistics switch).
    pub fn set_kernel_stats(&self, stats: Option<KernelStats>) {
        *self.scrape.source.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }
}

/// The scrape-time collector (cloudflare/ebpf_exporter's model).
struct Scrape {
    source: Mutex<Option<KernelStats>>,
    /// Userspace losses: queue_full, fanotify_overflow.
    userspace: [Arc<AtomicU64>; 2],
    records: Totals,
    lost: Totals,
    enforcement: Totals,
    map_full: Totals,
    runs: Totals,
    run_seconds: Totals,
    map_entries: IntGaugeVec,
    errors: ReadErrors,
}

impl Scrape {
    fn new(userspace: [Arc<AtomicU64>; 2], errors: ReadErrors) -> Scrape {
        let s = Scrape {
            source: Mutex::new(None),
            userspace,
            records: Totals::new(
                "nodeward_kernel_records_total",
                "Kernel-side accounting per record kind: submitted, ringbuf_full, read_error, map_full.",
                &["kind", "result"],
            ),
            lost: Totals::new(
                "nodeward_events_lost_total",
                "Records lost before a detector saw them, by reason (ringbuf_full and map_full counted in the kernel, queue_full in userspace, fanotify_overflow when the kernel's fanotify queue of the secrets detector overflowed).",
                &["reason"],
            ),
            enforcement: Totals::new(
                "nodeward_quarantine_kernel_total",
                "What the kernel programs enforced: exec_killed, drop_v4, drop_v6, drop_mac, drop_arp, drop_corosync, expired_seen (an expired entry ignored), signal_error.",
                &["counter"],
            ),
            map_full: Totals::new(
                "nodeward_map_insert_failures_total",
                "Failed inserts into the kernel's counting maps (MARTIAN_COUNTS, MARTIAN_SOURCES, RESET_COUNTS, RESET_PEERS): what those maps did not count because they were full. LRU maps evict their oldest entry instead and rarely fail.",
                &["map"],
            ),
            runs: Totals::new(
                "nodeward_program_runs_total",
                "Runs of each eBPF program (kernel bpf_stats; only with agent.program_stats = true).",
                &["program"],
            ),
            run_seconds: Totals::new(
                "nodeward_program_run_seconds_total",
                "Time spent in the eBPF program (kernel bpf_stats).",
                &["program"],
            ),
            map_entries: IntGaugeVec::new(
                Opts::new("nodeward_map_entries", "Entries in a kernel hash map."),
                &["map"],
            )
            .expect("valid metric"),
            errors,
        };
        for k in event::KINDS {
            for c in stats::COUNTER_NAMES {
                s.records.preset(&[k.name, c]);
            }
        }
        for r in LOSS_REASONS {
            s.lost.preset(&[r]);
        }
        for c in QSTAT_NAMES {
            s.enforcement.preset(&[c]);
        }
        for m in maps::MAP_FULL_NAMES {
            s.map_full.preset(&[m]);
        }
        for p in PROGRAMS {
            s.runs.preset(&[p.name]);
            s.run_seconds.preset(&[p.name]);
        }
        s.map_entries.with_label_values(&[maps::EXEC_WATCH]).set(0);
        s
    }

    fn totals(&self) -> [&Totals; 6] {
        [
            &self.records,
            &self.lost,
            &self.enforcement,
            &self.map_full,
            &self.runs,
            &self.run_seconds,
        ]
    }

    fn failed(&self, source: &'static str, error: impl std::fmt::Display) {
        self.errors.failed(source, error);
    }

    /// Read everything from the kernel into the families.
    fn refresh(&self, k: &KernelStats) {
        let mut lost = [0u64; 2];
        let mut stats_ok = true;
        'kinds: for kind in event::KINDS {
            for (c, name) in stats::COUNTER_NAMES.iter().enumerate() {
                let slot = stats::slot(kind.number, c as u32);
                let total: u64 = match k.stats.get(&slot, 0) {
                    Ok(v) => v.iter().sum(),
                    Err(e) => {
                        self.failed("stats", e);
                        stats_ok = false;
                        break 'kinds;
                    }
                };
                self.records.set(&[kind.name, name], total as f64);
                match c as u32 {
                    stats::RINGBUF_FULL => lost[0] += total,
                    stats::MAP_FULL => lost[1] += total,
                    _ => {}
                }
            }
        }
        if stats_ok {
            self.lost.set(&["ringbuf_full"], lost[0] as f64);
            self.lost.set(&["map_full"], lost[1] as f64);
        }
        match count_keys(&k.exec_watch) {
            Ok(n) => self
                .map_entries
                .with_label_values(&[maps::EXEC_WATCH])
                .set(n),
            Err(e) => self.failed("exec_watch", e),
        }
        for (i, name) in QSTAT_NAMES.iter().enumerate() {
            match k.qstats.get(&(i as u32), 0) {
                Ok(v) => self.enforcement.set(&[name], v.iter().sum::<u64>() as f64),
                Err(e) => {
                    self.failed("qstats", e);
                    break;
                }
            }
        }
        for (i, name) in maps::MAP_FULL_NAMES.iter().enumerate() {
            match k.map_full.get(&(i as u32), 0) {
                Ok(v) => self.map_full.set(&[name], v.iter().sum::<u64>() as f64),
                Err(e) => {
                    self.failed("map_full", e);
                    break;
                }
            }
        }
        let ids = k
            .program_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !ids.is_empty() {
            for info in aya::programs::loaded_programs() {
                let info = match info {
                    Ok(i) => i,
                    Err(e) => {
                        self.failed("program_info", e);
                        continue;
                    }
                };
                if let Some((name, _)) = ids.iter().find(|(_, id)| *id == info.id()) {
                    self.runs.set(&[name], info.run_count() as f64);
                    self.run_seconds.set(&[name], info.run_time().as_secs_f64());
                }
            }
        }
    }
}

impl Collector for Scrape {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = Vec::new();
        for t in self.totals() {
            d.extend(t.desc());
        }
        d.extend(self.map_entries.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(k) = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            self.refresh(k);
        }
        for (reason, n) in ["queue_full", "fanotify_overflow"]
            .iter()
            .zip(&self.userspace)
        {
            self.lost.set(&[reason], n.load(Ordering::Relaxed) as f64);
        }
        let mut out = Vec::new();
        for t in self.totals() {
            out.extend(t.collect());
        }
        out.extend(self.map_entries.collect());
        out
    }
}

/// Entries of a hash map, counted by walking its keys (the maps here are small).
fn count_keys<K: aya::Pod, V: aya::Pod>(
    map: &BpfHashMap<MapData, K, V>,
) -> Result<i64, aya::maps::MapError> {
    let mut n = 0;
    for k in map.keys() {
        k?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// A source failing every second is logged once a minute, and a new failure after
    /// a quiet minute is logged at once.
    #[test]
    fn read_errors_are_logged_once_a_minute_per_source() {
        let t0 = Instant::now();
        let source = "test_source_logged_once_a_minute";
        assert!(super::should_log(source, t0));
        for s in 1..60 {
            assert!(
                !super::should_log(source, t0 + Duration::from_secs(s)),
                "second {s}"
            );
        }
        assert!(super::should_log(source, t0 + Duration::from_secs(60)));
        assert!(super::should_log(
            "test_source_other",
            t0 + Duration::from_secs(1)
        ));
        assert!(super::should_log(source, t0 + Duration::from_secs(300)));
    }
}
