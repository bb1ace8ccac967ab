//! `tcp_reset` detector: reset storms per peer. Fed once a second with the kernel's
//! per-peer totals; a storm is `storm_threshold` resets within `window` with one peer
//! in one direction, and ends when the rate falls below it.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
};

use serde::Serialize;

use crate::config::TcpResetConfig;

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
    config: TcpResetConfig,
    /// (peer, direction) -> samples (time, running total).
    history: BTreeMap<(IpAddr, Direction), VecDeque<(u64, u64)>>,
    active: BTreeMap<(IpAddr, Direction), u64>,
}

impl ResetDetector {
    pub fn new(config: &TcpResetConfig) -> Self {
        ResetDetector { config: config.clone(), history: BTreeMap::new(), active: BTreeMap::new() }
    }

    /// Feed the running totals per peer (monotonic); returns storm starts and ends.
    pub fn sample(&mut self, now_ms: u64, totals: &[(IpAddr, Direction, u64)]) -> Vec<ResetFinding> {
        let window = self.config.window.as_millis() as u64;
        let mut out = Vec::new();
        for &(peer, dir, total) in totals {
            // The kernel's totals start at zero with the agent: a peer seen for the
            // first time had zero before (a burst between two samples still counts).
            let h = self.history.entry((peer, dir)).or_insert_with(|| VecDeque::from([(now_ms.saturating_sub(1), 0)]));
            h.push_back((now_ms, total));
            while h.len() > 1 && h.front().is_some_and(|(t, _)| now_ms.saturating_sub(*t) > window) {
                h.pop_front();
            }
        }
        // Peers that vanished from the kernel's LRU table count as quiet.
        self.history.retain(|k, h| totals.iter().any(|(p, d, _)| (*p, *d) == *k) || h.back().is_some_and(|(t, _)| now_ms.saturating_sub(*t) <= window));
        for (&(peer, direction), h) in &self.history {
            let (Some(first), Some(last)) = (h.front(), h.back()) else { continue };
            let count = last.1.saturating_sub(first.1);
            let storming = count >= self.config.storm_threshold;
            let was = self.active.contains_key(&(peer, direction));
            let window_s = self.config.window.as_secs();
            if storming && !was {
                self.active.insert((peer, direction), count);
                out.push(ResetFinding { kind: "reset_storm", peer, direction, count, window_s });
            } else if storming {
                self.active.insert((peer, direction), count);
            } else if was && count < self.config.storm_threshold / 2 {
                self.active.remove(&(peer, direction));
                out.push(ResetFinding { kind: "reset_storm_ended", peer, direction, count, window_s });
            }
        }
        out
    }

    /// Active storms, most resets first.
    pub fn active(&self) -> Vec<(IpAddr, Direction, u64)> {
        let mut v: Vec<_> = self.active.iter().map(|(&(p, d), &c)| (p, d, c)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2));
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn d() -> ResetDetector {
        ResetDetector::new(&TcpResetConfig { storm_threshold: 50, window: Duration::from_secs(10), ..Default::default() })
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
            kinds.extend(d.sample(s * 1000, &[(peer, Direction::Sent, total)]).into_iter().map(|f| (s, f.kind)));
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
        assert_eq!(f.first().map(|f| (f.kind, f.count)), Some(("reset_storm", 200)));
    }

    #[test]
    fn a_steady_trickle_is_not_a_storm() {
        let mut d = d();
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        for s in 0..120u64 {
            assert!(d.sample(s * 1000, &[(peer, Direction::Received, s * 2)]).is_empty(), "2/s is below 50 per 10 s");
        }
    }
}
