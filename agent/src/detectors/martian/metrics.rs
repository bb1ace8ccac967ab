//! Metrics of the `martian` detector. Drop totals are the kernel's running counts (set
//! by the sampler that reads them); the kernel's own martian counters are read from
//! `/proc` at scrape time once the agent runs.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use prometheus::{
    IntCounterVec, IntGaugeVec,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{FloodTop, MartianFinding};
use crate::metrics::{Registry, Shared, Totals, counter_vec, gauge_vec};

pub struct MartianMetrics {
    drops: Arc<Totals>,
    floods: IntCounterVec,
    flood_series: IntGaugeVec,
    top_sources: IntGaugeVec,
    kernel: Arc<ProcCounters>,
}

/// `in_martian_src` and `IPReversePathFilter`, read at scrape time.
struct ProcCounters {
    /// Off in a fresh registry, so that the first scrape is machine-independent.
    on: AtomicBool,
    totals: Totals,
}

impl MartianMetrics {
    pub fn new(r: &Registry) -> MartianMetrics {
        let kernel = Arc::new(ProcCounters {
            on: AtomicBool::new(false),
            totals: Totals::new(
                "nodeward_martian_kernel_stat_total",
                "The kernel's own martian counters, as a cross-check and for kernels without drop reasons: in_martian_src (/proc/net/stat/rt_cache), ip_reverse_path_filter (TcpExt IPReversePathFilter, agent's netns).",
                &["stat"],
            ),
        });
        for c in ["in_martian_src", "ip_reverse_path_filter"] {
            kernel.totals.preset(&[c]);
        }
        r.register(Box::new(Shared(kernel.clone())))
            .expect("unique metric");
        MartianMetrics {
            drops: Totals::registered(
                r,
                "nodeward_martian_drops_total",
                "Packets the kernel dropped for a martian source, by skb drop reason (names from BTF: ip_rpfilter, ip_invalid_source, ip_local_source, ip_localnet, ip_invalid_dest); interfaces of other namespaces read if<index>@netns<inode>.",
                &["interface", "reason"],
            ),
            floods: counter_vec(
                r,
                "nodeward_martian_floods_total",
                "Martian floods detected (flood_threshold drops per interface and reason within the window).",
                &["reason"],
            ),
            flood_series: gauge_vec(
                r,
                "nodeward_martian_flood_active",
                "One series per interface and reason in an active martian flood (capped by detectors.martian.max_flood_series); the value is the drops in the window.",
                &["interface", "reason"],
            ),
            top_sources: gauge_vec(
                r,
                "nodeward_martian_top_source",
                "Top source addresses of an active martian flood (only while it lasts; detectors.martian.top_sources per flood): drops so far.",
                &["interface", "reason", "source"],
            ),
            kernel,
        }
    }

    /// Read the kernel's own counters at every scrape from now on.
    pub fn read_proc(&self) {
        self.kernel.on.store(true, Ordering::Relaxed);
    }

    pub fn record(&self, f: &MartianFinding) {
        if f.kind == "martian_flood" {
            self.floods.with_label_values(&[&f.reason]).inc();
        }
    }

    /// Drop totals: the kernel's running counts per (interface, reason).
    pub fn set_totals(&self, totals: &[((String, String), u64)]) {
        for ((iface, reason), n) in totals {
            self.drops.set(&[iface, reason], *n as f64);
        }
    }

    pub fn set_reasons(&self, reasons: &HashMap<u32, String>) {
        for r in reasons.values() {
            self.floods.with_label_values(&[r]);
        }
    }

    /// Active floods and their top sources, capped.
    pub fn set_floods(&self, floods: &[((String, String), u64)], tops: &[FloodTop], cap: usize) {
        self.flood_series.reset();
        self.top_sources.reset();
        for ((iface, reason), n) in floods.iter().take(cap) {
            self.flood_series
                .with_label_values(&[iface, reason])
                .set(*n as i64);
        }
        for ((iface, reason), top) in tops.iter().take(cap) {
            for (addr, n) in top {
                self.top_sources
                    .with_label_values(&[iface, reason, &addr.to_string()])
                    .set(*n as i64);
            }
        }
    }
}

impl Collector for ProcCounters {
    fn desc(&self) -> Vec<&Desc> {
        self.totals.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.on.load(Ordering::Relaxed) {
            let (rt, rp) = super::proc::counters();
            if let Some(v) = rt {
                self.totals.set(&["in_martian_src"], v as f64);
            }
            if let Some(v) = rp {
                self.totals.set(&["ip_reverse_path_filter"], v as f64);
            }
        }
        self.totals.collect()
    }
}
