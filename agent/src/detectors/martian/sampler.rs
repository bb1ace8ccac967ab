//! The martian sampler: once a second, drops per interface and reason and the top
//! sources through the (pure) detector; the totals also feed the metrics.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    sync::Arc,
};

use agent_common::martian::{MartianKey, MartianSource};
use aya::maps::{MapData, PerCpuHashMap};
use tokio::sync::mpsc;

use super::{FloodTop, MartianDetector, config::MartianConfig};
use crate::{
    detectors::{Finding, metrics::Metrics},
    kernel::metrics::ReadErrors,
    net::{iface_label, own_netns},
    time::now_ms,
};

/// `source` labels of failed reads of the two maps.
const COUNTS: &str = "martian_counts";
const SOURCES: &str = "martian_sources";

pub async fn run(
    counts: PerCpuHashMap<MapData, MartianKey, u64>,
    sources: PerCpuHashMap<MapData, MartianSource, u64>,
    reasons: HashMap<u32, String>,
    config: MartianConfig,
    metrics: Arc<Metrics>,
    findings: mpsc::Sender<Finding>,
) {
    let own = own_netns();
    let label = |k: &MartianKey| {
        (
            iface_label(k.ifindex, k.netns, own),
            reasons
                .get(&k.reason)
                .cloned()
                .unwrap_or_else(|| format!("reason_{}", k.reason)),
        )
    };
    let errors = ReadErrors::new(&metrics.agent);
    metrics.agent.preset_read_errors(&[COUNTS, SOURCES]);
    let mut detector = MartianDetector::new(&config);
    metrics.martian.set_reasons(&reasons);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut by_label: BTreeMap<(String, String), u64> = BTreeMap::new();
        for entry in counts.iter() {
            match entry {
                Ok((k, v)) => *by_label.entry(label(&k)).or_default() += v.iter().sum::<u64>(),
                Err(e) => {
                    errors.failed(COUNTS, e);
                    break;
                }
            }
        }
        let totals: Vec<((String, String), u64)> = by_label.into_iter().collect();
        let mut srcs: Vec<((String, String), Ipv4Addr, u64)> = Vec::new();
        for entry in sources.iter() {
            match entry {
                Ok((k, v)) => srcs.push((label(&k.key), Ipv4Addr::from(k.saddr), v.iter().sum())),
                Err(e) => {
                    errors.failed(SOURCES, e);
                    break;
                }
            }
        }
        metrics.martian.set_totals(&totals);
        for f in detector.sample(now_ms(), &totals, &srcs) {
            if findings.send(Finding::Martian(f)).await.is_err() {
                return;
            }
        }
        let active = detector.active();
        let tops: Vec<FloodTop> = active
            .iter()
            .map(|(k, _)| (k.clone(), detector.top(k)))
            .collect();
        metrics
            .martian
            .set_floods(&active, &tops, config.max_flood_series);
    }
}
