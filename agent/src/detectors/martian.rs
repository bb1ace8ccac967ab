//! `martian` detector: floods of packets the kernel drops for an impossible source
//! (rp_filter, invalid, local or loopback source), per interface and reason, with
//! the top sources.

pub mod config;
pub mod kernel;
pub mod metrics;
pub mod proc;
pub mod report;
pub mod sampler;

use std::net::Ipv4Addr;

use serde::Serialize;

use config::MartianConfig;

/// A flood's key: (interface, reason).
pub type FloodKey = (String, String);

/// A flood (interface, reason) and its top sources with their drops.
pub type FloodTop = ((String, String), Vec<(Ipv4Addr, u64)>);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MartianFinding {
    /// `martian_flood` or `martian_flood_ended`.
    pub kind: &'static str,
    pub interface: String,
    pub reason: String,
    /// Drops within the window.
    pub count: u64,
    pub window_s: u64,
    /// Top sources (address, drops within the window), most first: a source that
    /// stopped before the window is not named.
    pub top_sources: Vec<(Ipv4Addr, u64)>,
}

pub struct MartianDetector {
    config: MartianConfig,
    floods: super::window::Windowed<(String, String)>,
    /// Drops per (interface, reason, source) within the window.
    sources: super::window::Deltas<(FloodKey, Ipv4Addr)>,
}

impl MartianDetector {
    pub fn new(config: &MartianConfig) -> Self {
        MartianDetector {
            config: config.clone(),
            floods: super::window::Windowed::new(config.window, config.flood_threshold),
            sources: super::window::Deltas::new(config.window),
        }
    }

    /// `totals`: running drops per (interface, reason); `sources`: running drops per
    /// (interface, reason, source).
    pub fn sample(
        &mut self,
        now_ms: u64,
        totals: &[((String, String), u64)],
        sources: &[((String, String), Ipv4Addr, u64)],
    ) -> Vec<MartianFinding> {
        let per_source: Vec<((FloodKey, Ipv4Addr), u64)> = sources
            .iter()
            .map(|(k, a, n)| ((k.clone(), *a), *n))
            .collect();
        self.sources.sample(now_ms, &per_source);
        self.floods
            .sample(now_ms, totals)
            .into_iter()
            .map(|c| {
                let top = self.top(&c.key);
                MartianFinding {
                    kind: if c.started {
                        "martian_flood"
                    } else {
                        "martian_flood_ended"
                    },
                    interface: c.key.0,
                    reason: c.key.1,
                    count: c.count,
                    window_s: self.config.window.as_secs(),
                    top_sources: top,
                }
            })
            .collect()
    }

    /// The sources of a flood with the most drops within the window (none that was
    /// quiet for the whole window).
    pub fn top(&self, key: &(String, String)) -> Vec<(Ipv4Addr, u64)> {
        let mut top: Vec<(Ipv4Addr, u64)> = self
            .sources
            .counts()
            .filter(|((k, _), n)| k == key && *n > 0)
            .map(|((_, a), n)| (*a, n))
            .collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        top.truncate(self.config.top_sources);
        top
    }

    pub fn active(&self) -> Vec<((String, String), u64)> {
        self.floods.active()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_slow_flood_is_named_after_the_sources_inside_its_window() {
        let cfg = MartianConfig {
            flood_threshold: 100,
            window: Duration::from_secs(10),
            top_sources: 3,
            ..Default::default()
        };
        let mut d = MartianDetector::new(&cfg);
        let k = ("eth0".to_string(), "ip_rpfilter".to_string());
        let (old, new) = (Ipv4Addr::new(192, 0, 2, 5), Ipv4Addr::new(192, 0, 2, 6));
        // An old burst of 90 from `old` (below the threshold), then 20 s of silence.
        let mut found = Vec::new();
        for t in 0..=20u64 {
            let src = [(k.clone(), old, 90)];
            found.extend(d.sample(t * 1000, &[(k.clone(), 90)], &src));
        }
        assert!(found.is_empty(), "{found:?}");
        // A slow flood from `new`: 12 packets/s for 10 s.
        for s in 1..=10u64 {
            let src = [(k.clone(), old, 90), (k.clone(), new, 12 * s)];
            found.extend(d.sample((20 + s) * 1000, &[(k.clone(), 90 + 12 * s)], &src));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "martian_flood");
        assert_eq!(
            found[0].top_sources,
            [(new, 108)],
            "the stopped source is not named"
        );
    }

    #[test]
    fn a_flood_names_its_top_sources() {
        let cfg = MartianConfig {
            flood_threshold: 20,
            window: Duration::from_secs(5),
            top_sources: 2,
            ..Default::default()
        };
        let mut d = MartianDetector::new(&cfg);
        let k = ("eth0".to_string(), "ip_rpfilter".to_string());
        let src = |n: u64| {
            vec![
                (k.clone(), Ipv4Addr::new(192, 168, 77, 7), n),
                (k.clone(), Ipv4Addr::new(192, 168, 77, 8), n / 2),
                (k.clone(), Ipv4Addr::new(192, 168, 77, 9), 1),
            ]
        };
        assert!(d.sample(0, &[(k.clone(), 5)], &src(5)).is_empty());
        let f = d.sample(1000, &[(k.clone(), 40)], &src(40));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind, f[0].count), ("martian_flood", 40));
        assert_eq!(
            f[0].top_sources,
            [
                (Ipv4Addr::new(192, 168, 77, 7), 40),
                (Ipv4Addr::new(192, 168, 77, 8), 20)
            ]
        );
        let mut last = Vec::new();
        for s in 2..12 {
            last.extend(d.sample(s * 1000, &[(k.clone(), 40)], &src(40)));
        }
        assert_eq!(
            last.iter().map(|f| f.kind).collect::<Vec<_>>(),
            ["martian_flood_ended"]
        );
    }
}
