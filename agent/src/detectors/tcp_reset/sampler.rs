//! The reset-storm sampler: once a second, the kernel's per-peer reset totals through the
//! (pure) detector; findings go to the pipeline like every other detector's.

use std::{net::IpAddr, sync::Arc};

use agent_common::{
    session::AF_INET,
    tcp_reset::{DIR_SENT, PeerKey},
};
use aya::maps::{MapData, PerCpuHashMap};
use tokio::sync::mpsc;

use super::{Direction, ResetDetector, config::TcpResetConfig};
use crate::{
    detectors::{Finding, metrics::Metrics},
    kernel::metrics::ReadErrors,
    time::now_ms,
};

/// `source` label of a failed read of the per-peer map.
const SOURCE: &str = "reset_peers";

pub async fn run(
    map: PerCpuHashMap<MapData, PeerKey, u64>,
    config: TcpResetConfig,
    metrics: Arc<Metrics>,
    findings: mpsc::Sender<Finding>,
) {
    let mut detector = ResetDetector::new(&config);
    let errors = ReadErrors::new(&metrics.agent);
    metrics.agent.preset_read_errors(&[SOURCE]);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut totals: Vec<(IpAddr, Direction, u64)> = Vec::new();
        for entry in map.iter() {
            match entry {
                Ok((k, v)) => totals.push((peer(&k), direction(&k), v.iter().sum())),
                Err(e) => {
                    errors.failed(SOURCE, e);
                    break;
                }
            }
        }
        for f in detector.sample(now_ms(), &totals) {
            if findings.send(Finding::TcpReset(f)).await.is_err() {
                return;
            }
        }
        metrics
            .tcp_reset
            .set_storms(&detector.active(), config.max_storm_series);
    }
}

fn peer(k: &PeerKey) -> IpAddr {
    if k.family == AF_INET {
        IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
    } else {
        IpAddr::from(k.addr)
    }
}

fn direction(k: &PeerKey) -> Direction {
    if k.direction == DIR_SENT {
        Direction::Sent
    } else {
        Direction::Received
    }
}
