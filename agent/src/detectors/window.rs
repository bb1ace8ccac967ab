//! Rate over a sliding window, on running totals sampled once a second: the shared
//! machinery of the flood/storm detectors (tcp_reset, martian).

use std::collections::{BTreeMap, VecDeque};

/// A key's state change: it crossed the threshold (`started`) or fell below half of
/// it (`ended`), with the count in the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing<K> {
    pub key: K,
    pub started: bool,
    pub count: u64,
}

pub struct Windowed<K: Ord + Clone> {
    window_ms: u64,
    threshold: u64,
    history: BTreeMap<K, VecDeque<(u64, u64)>>,
    active: BTreeMap<K, u64>,
}

impl<K: Ord + Clone> Windowed<K> {
    pub fn new(window: std::time::Duration, threshold: u64) -> Self {
        Windowed {
            window_ms: window.as_millis() as u64,
            threshold,
            history: BTreeMap::new(),
            active: BTreeMap::new(),
        }
    }

    /// Feed running totals (kernel counters, which start at zero with the agent).
    pub fn sample(&mut self, now_ms: u64, totals: &[(K, u64)]) -> Vec<Crossing<K>> {
        for (k, total) in totals {
            // A key seen for the first time had zero before: a burst between two
            // samples still counts.
            let h = self
                .history
                .entry(k.clone())
                .or_insert_with(|| VecDeque::from([(now_ms.saturating_sub(1), 0)]));
            h.push_back((now_ms, *total));
            while h.len() > 1
                && h.front()
                    .is_some_and(|(t, _)| now_ms.saturating_sub(*t) > self.window_ms)
            {
                h.pop_front();
            }
        }
        let window = self.window_ms;
        self.history.retain(|k, h| {
            totals.iter().any(|(t, _)| t == k)
                || h.back()
                    .is_some_and(|(t, _)| now_ms.saturating_sub(*t) <= window)
        });
        let mut out = Vec::new();
        for (k, h) in &self.history {
            let (Some(first), Some(last)) = (h.front(), h.back()) else {
                continue;
            };
            let count = last.1.saturating_sub(first.1);
            let was = self.active.contains_key(k);
            if count >= self.threshold {
                self.active.insert(k.clone(), count);
                if !was {
                    out.push(Crossing {
                        key: k.clone(),
                        started: true,
                        count,
                    });
                }
            } else if was && count < self.threshold / 2 {
                self.active.remove(k);
                out.push(Crossing {
                    key: k.clone(),
                    started: false,
                    count,
                });
            }
        }
        // Keys that vanished from the kernel's tables while active end too.
        let gone: Vec<K> = self
            .active
            .keys()
            .filter(|k| !self.history.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.active.remove(&k);
            out.push(Crossing {
                key: k,
                started: false,
                count: 0,
            });
        }
        out
    }

    /// Active keys with their window count, largest first.
    pub fn active(&self) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.active.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.1));
        v
    }
}
