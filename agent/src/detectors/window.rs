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

/// Running totals per key turned into counts within the last window.
pub struct Deltas<K: Ord + Clone> {
    window_ms: u64,
    history: BTreeMap<K, VecDeque<(u64, u64)>>,
}

impl<K: Ord + Clone> Deltas<K> {
    pub fn new(window: std::time::Duration) -> Self {
        Deltas {
            window_ms: window.as_millis() as u64,
            history: BTreeMap::new(),
        }
    }

    /// Feed running totals (kernel counters, which start at zero with the agent).
    pub fn sample(&mut self, now_ms: u64, totals: &[(K, u64)]) {
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
    }

    /// Every key still tracked, with its count within the window.
    pub fn counts(&self) -> impl Iterator<Item = (&K, u64)> {
        self.history.iter().filter_map(|(k, h)| {
            let (first, last) = (h.front()?, h.back()?);
            Some((k, last.1.saturating_sub(first.1)))
        })
    }

    pub fn contains(&self, k: &K) -> bool {
        self.history.contains_key(k)
    }
}

pub struct Windowed<K: Ord + Clone> {
    threshold: u64,
    deltas: Deltas<K>,
    active: BTreeMap<K, u64>,
}

impl<K: Ord + Clone> Windowed<K> {
    pub fn new(window: std::time::Duration, threshold: u64) -> Self {
        Windowed {
            threshold,
            deltas: Deltas::new(window),
            active: BTreeMap::new(),
        }
    }

    /// Feed running totals (kernel counters, which start at zero with the agent).
    pub fn sample(&mut self, now_ms: u64, totals: &[(K, u64)]) -> Vec<Crossing<K>> {
        self.deltas.sample(now_ms, totals);
        let mut out = Vec::new();
        for (k, count) in self.deltas.counts() {
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
            .filter(|k| !self.deltas.contains(k))
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
