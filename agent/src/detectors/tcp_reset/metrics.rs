//! Metrics of the `tcp_reset` detector. The reset counts are read from the kernel's
//! per-CPU map at scrape time.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use agent_common::tcp_reset::{DIR_SENT, ResetKey};
use aya::maps::{MapData, PerCpuHashMap};
use prometheus::{
    IntCounterVec, IntGaugeVec,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{Direction, ResetFinding};
use crate::{
    kernel::metrics::ReadErrors,
    metrics::{Agent, Registry, Shared, Totals, counter_vec, gauge_vec},
};

pub struct TcpResetMetrics {
    counts: Arc<Counts>,
    storms: IntCounterVec,
    storm_series: IntGaugeVec,
}

/// `nodeward_tcp_resets_total`, read from `RESET_COUNTS` at scrape time.
struct Counts {
    map: Mutex<Option<PerCpuHashMap<MapData, ResetKey, u64>>>,
    /// Names of `enum sk_rst_reason` values (from BTF).
    names: Mutex<HashMap<u32, String>>,
    totals: Totals,
    errors: ReadErrors,
}

impl TcpResetMetrics {
    pub fn new(r: &Registry, agent: &Agent) -> TcpResetMetrics {
        agent.preset_read_errors(&["reset_counts"]);
        let counts = Arc::new(Counts {
            map: Mutex::new(None),
            names: Mutex::new(HashMap::new()),
            totals: Totals::new(
                "nodeward_tcp_resets_total",
                "TCP resets by direction (sent, received) and reason (enum sk_rst_reason, resolved from the kernel's BTF; received resets have reason none).",
                &["direction", "reason"],
            ),
            errors: ReadErrors::new(agent),
        });
        counts.totals.preset(&["received", "none"]);
        r.register(Box::new(Shared(counts.clone())))
            .expect("unique metric");
        let m = TcpResetMetrics {
            counts,
            storms: counter_vec(
                r,
                "nodeward_tcp_reset_storms_total",
                "Reset storms detected (storm_threshold resets with one peer within the window), by direction.",
                &["direction"],
            ),
            storm_series: gauge_vec(
                r,
                "nodeward_tcp_reset_storm_active",
                "One series per peer in an active reset storm (capped by detectors.tcp_reset.max_storm_series); the value is the resets in the window.",
                &["peer", "direction"],
            ),
        };
        for d in ["sent", "received"] {
            m.storms.with_label_values(&[d]);
        }
        m
    }

    /// The reason names this kernel knows (each sent reason shown from the start).
    pub fn set_reasons(&self, names: &HashMap<u32, String>) {
        for name in names.values() {
            self.counts.totals.preset(&["sent", name]);
        }
        *lock(&self.counts.names) = names.clone();
    }

    /// From now on, scrapes read this map.
    pub fn set_counts(&self, map: PerCpuHashMap<MapData, ResetKey, u64>) {
        *lock(&self.counts.map) = Some(map);
    }

    pub fn record(&self, t: &ResetFinding) {
        if t.kind == "reset_storm" {
            self.storms.with_label_values(&[t.direction.as_str()]).inc();
        }
    }

    /// Active reset storms, capped.
    pub fn set_storms(&self, storms: &[(IpAddr, Direction, u64)], cap: usize) {
        self.storm_series.reset();
        for (peer, dir, n) in storms.iter().take(cap) {
            self.storm_series
                .with_label_values(&[&peer.to_string(), dir.as_str()])
                .set(*n as i64);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Collector for Counts {
    fn desc(&self) -> Vec<&Desc> {
        self.totals.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(map) = lock(&self.map).as_ref() {
            let names = lock(&self.names).clone();
            for entry in map.iter() {
                let (k, v) = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        self.errors.failed("reset_counts", e);
                        break;
                    }
                };
                let total: u64 = v.iter().sum();
                let (dir, reason) = if k.direction == DIR_SENT {
                    let name = names
                        .get(&k.reason)
                        .cloned()
                        .unwrap_or_else(|| format!("reason_{}", k.reason));
                    ("sent", name)
                } else {
                    ("received", "none".to_string())
                };
                self.totals.set(&[dir, &reason], total as f64);
            }
        }
        self.totals.collect()
    }
}
