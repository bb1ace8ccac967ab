//! Scrape-time metrics read from the kernel: per-CPU record accounting, map sizes,
//! enforcement counters, reset counts, program run statistics, and the kernel's own
//! martian counters. A child of `metrics`, so it updates the registered families.

use agent_common::{event::kind, maps, stats};
use aya::maps::{HashMap as BpfHashMap, MapData};

use super::{Metrics, QSTAT_NAMES, advance, kind_name};
use crate::kernel::loader::KernelStats;

impl KernelStats {
    pub(super) fn refresh(&mut self, m: &Metrics) {
        // The kernel's own martian counters (read only by a running agent: the first
        // scrape of a fresh registry stays machine-independent).
        let (rt, rp) = crate::detectors::martian::proc::counters();
        if let Some(v) = rt {
            advance(&m.martian_kernel.with_label_values(&["in_martian_src"]), v);
        }
        if let Some(v) = rp {
            advance(
                &m.martian_kernel
                    .with_label_values(&["ip_reverse_path_filter"]),
                v,
            );
        }
        let mut lost = [0u64; 2];
        for k in 1..=kind::MAX {
            for (c, name) in stats::COUNTER_NAMES.iter().enumerate() {
                let slot = stats::slot(k, c as u32);
                let total: u64 = self
                    .stats
                    .get(&slot, 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                advance(
                    &m.kernel_records.with_label_values(&[kind_name(k), name]),
                    total,
                );
                match c as u32 {
                    stats::RINGBUF_FULL => lost[0] += total,
                    stats::MAP_FULL => lost[1] += total,
                    _ => {}
                }
            }
        }
        advance(&m.events_lost.with_label_values(&["ringbuf_full"]), lost[0]);
        advance(&m.events_lost.with_label_values(&["map_full"]), lost[1]);
        m.map_entries
            .with_label_values(&[maps::EXEC_WATCH])
            .set(count_keys(&self.exec_watch));
        if let Some(resets) = &self.resets {
            let names = m.rst_reasons.lock().expect("reasons lock").clone();
            for (k, v) in resets.iter().filter_map(Result::ok) {
                let total: u64 = v.iter().sum();
                let (dir, reason) = if k.direction == agent_common::tcp_reset::DIR_SENT {
                    (
                        "sent",
                        names
                            .get(&k.reason)
                            .cloned()
                            .unwrap_or_else(|| format!("reason_{}", k.reason)),
                    )
                } else {
                    ("received", "none".to_string())
                };
                advance(&m.tcp_resets.with_label_values(&[dir, &reason]), total);
            }
        }
        for (i, name) in QSTAT_NAMES.iter().enumerate() {
            let total: u64 = self
                .qstats
                .get(&(i as u32), 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0);
            advance(&m.quarantine_kernel.with_label_values(&[name]), total);
        }
        let ids = self.program_ids.lock().expect("program ids lock").clone();
        if !ids.is_empty() {
            for info in aya::programs::loaded_programs().filter_map(Result::ok) {
                if let Some((name, _)) = ids.iter().find(|(_, id)| *id == info.id()) {
                    advance(&m.program_runs.with_label_values(&[name]), info.run_count());
                    let c = m.program_run_seconds.with_label_values(&[name]);
                    let total = info.run_time().as_secs_f64();
                    if total > c.get() {
                        c.inc_by(total - c.get());
                    }
                }
            }
        }
    }
}

/// Entries of a hash map, counted by walking its keys (the maps here are small).
fn count_keys<K: aya::Pod, V: aya::Pod>(map: &BpfHashMap<MapData, K, V>) -> i64 {
    map.keys().filter(Result::is_ok).count() as i64
}
