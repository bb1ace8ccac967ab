//! `tcp_reset` detector: reset storms per peer. Fed once a second with the kernel's
//! per-peer totals; a storm is `storm_threshold` resets within `window` with one peer
//! in one direction, and ends when the rate falls below it.

pub mod config;
pub mod kernel;
pub mod metrics;
pub mod report;
pub mod sampler;

use std::net::IpAddr;

use serde::Serialize;

use config::TcpResetConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This host sent the resets (e.g. connections to a closed port, or to sockets it
    /// no longer has: the other side of a duplicate IP).
    Sent,
    /// This host received them.
    Received,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResetFinding {
    /// `reset_storm` or `reset_storm_ended`.
    pub kind: &'static str,
    pub peer: IpAddr,
    pub direction: Direction,
    /// Resets with the peer within the window.
    pub count: u64,
    pub window_s: u64,
}

pub struct ResetDetector {
    window_s: u64,
    storms: super::window::Windowed<(IpAddr, Direction)>,
}

impl ResetDetector {
    pub fn new(config: &TcpResetConfig) -> Self {
        ResetDetector {
            window_s: config.window.as_secs(),
            storms: super::window::Windowed::new(config.window, config.storm_threshold),
        }
    }

    /// Feed the running totals per peer (monotonic); returns storm starts and ends.
    pub fn sample(
        &mut self,
        now_ms: u64,
        totals: &[(IpAddr, Direction, u64)],
    ) -> Vec<ResetFinding> {
        let totals: Vec<((IpAddr, Direction), u64)> =
            totals.iter().map(|&(p, d, t)| ((p, d), t)).collect();
        self.storms
            .sample(now_ms, &totals)
            .into_iter()
            .map(|c| ResetFinding {
                kind: if c.started {
                    "reset_storm"
                } else {
                    "reset_storm_ended"
                },
                peer: c.key.0,
                direction: c.key.1,
                count: c.count,
                window_s: self.window_s,
            })
            .collect()
    }

    /// Active storms, most resets first.
    pub fn active(&self) -> Vec<(IpAddr, Direction, u64)> {
        self.storms
            .active()
            .into_iter()
            .map(|((p, d), c)| (p, d, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn d() -> ResetDetector {
        ResetDetector::new(&TcpResetConfig {
            storm_threshold: 50,
            window: Duration::from_secs(10),
            ..Default::default()
        })
    }

    #[test]
    fn a_storm_starts_over_threshold_and_ends_when_quiet() {
        let mut d = d();
        let peer: IpAddr = "10.8.64.2".parse().unwrap();
        let mut total = 0;
        let mut kinds = Vec::new();
        for s in 0..30u64 {
            if (5..12).contains(&s) {
                total += 20; // 20 resets a second for 7 s
            }
            kinds.extend(
                d.sample(s * 1000, &[(peer, Direction::Sent, total)])
                    .into_iter()
                    .map(|f| (s, f.kind)),
            );
        }
        assert_eq!(kinds.first().map(|k| k.1), Some("reset_storm"));
        assert!(kinds[0].0 <= 8, "detected at {}s", kinds[0].0);
        assert_eq!(kinds.last().map(|k| k.1), Some("reset_storm_ended"));
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(d.active().is_empty());
    }

    #[test]
    fn a_burst_between_two_samples_counts() {
        let mut d = d();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let f = d.sample(1000, &[(peer, Direction::Sent, 200)]);
        assert_eq!(
            f.first().map(|f| (f.kind, f.count)),
            Some(("reset_storm", 200))
        );
    }

    #[test]
    fn a_steady_trickle_is_not_a_storm() {
        let mut d = d();
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        for s in 0..120u64 {
            assert!(
                d.sample(s * 1000, &[(peer, Direction::Received, s * 2)])
                    .is_empty(),
                "2/s is below 50 per 10 s"
            );
        }
    }
}
