//! Metrics of the `reboot` detector: intents, blocked reboots, and the reboots of this
//! node across agent restarts (from the state directory).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

use super::{PATHS, RebootIntent, history};
use crate::detectors::Origin;
use crate::metrics::{Registry, Totals, counter, counter_vec, gauge_vec};

pub struct RebootMetrics {
    intents: IntCounterVec,
    blocked: IntCounter,
    reboots: Arc<Totals>,
    last: IntGaugeVec,
    sources: IntGaugeVec,
    /// Source → Unix seconds of its last unexpected intent (the series shown).
    seen: Mutex<BTreeMap<String, i64>>,
}

/// SSH sources with unexpected reboot intents kept as series (the oldest forgotten).
pub const MAX_SOURCE_SERIES: usize = 32;

impl RebootMetrics {
    pub fn new(r: &Registry) -> RebootMetrics {
        let m = RebootMetrics {
            intents: counter_vec(
                r,
                "nodeward_reboot_intents_total",
                "Reboot/halt/power-off/kexec intents by path (syscall, kexec, exec, dbus, sysrq), origin (ssh, local, service) and whether expected (true/false).",
                &["path", "origin", "expected"],
            ),
            blocked: counter(
                r,
                "nodeward_reboot_blocked_total",
                "Reboot command lines (reboot family, systemctl, telinit/init, kexec, D-Bus tools) the reboot guard killed before they ran (protected host, enforce).",
            ),
            reboots: Totals::registered(
                r,
                "nodeward_reboots_total",
                "Reboots of this node seen across agent restarts (boot id changes), by the cause nodeward recorded before it (ssh, local, service, unknown) and whether it was expected (true, false, unknown). Persisted in the state directory.",
                &["cause", "expected"],
            ),
            last: gauge_vec(
                r,
                "nodeward_last_reboot_info",
                "The last reboot of this node (one series): cause, expected, and the SSH source address if any.",
                &["cause", "expected", "source"],
            ),
            sources: gauge_vec(
                r,
                "nodeward_reboot_unexpected_ssh_source_timestamp_seconds",
                "Unix time of the last unexpected reboot intent over SSH from each source address (the fleet rule counts nodes per source; at most 32 sources, the oldest forgotten).",
                &["source"],
            ),
            seen: Mutex::new(BTreeMap::new()),
        };
        for p in PATHS {
            for o in ["ssh", "local", "service", "unknown"] {
                for e in ["true", "false"] {
                    m.intents.with_label_values(&[p, o, e]);
                }
            }
        }
        for c in history::CAUSES {
            for e in ["true", "false", "unknown"] {
                m.reboots.preset(&[c, e]);
            }
        }
        m
    }

    pub fn record(&self, i: &RebootIntent) {
        let expected = if i.expected { "true" } else { "false" };
        self.intents
            .with_label_values(&[i.path, i.process.origin.label(), expected])
            .inc();
        if i.guard == Some("blocked") {
            self.blocked.inc();
        }
        if let (false, Origin::Ssh { peer, .. }) = (i.expected, &i.process.origin) {
            self.unexpected_source(&peer.to_string(), crate::time::now_ms() as i64 / 1000);
        }
    }

    fn unexpected_source(&self, source: &str, unix_secs: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(source.to_string(), unix_secs);
        while seen.len() > MAX_SOURCE_SERIES {
            let Some(oldest) = seen.iter().min_by_key(|(_, t)| **t).map(|(s, _)| s.clone()) else {
                break;
            };
            seen.remove(&oldest);
            let _ = self.sources.remove_label_values(&[&oldest]);
        }
        self.sources.with_label_values(&[source]).set(unix_secs);
    }

    /// Reboot history from the state directory (counts and the last one).
    pub fn set_history(&self, h: &history::History) {
        for (key, n) in &h.reboots {
            if let Some((cause, expected)) = key.split_once('/') {
                self.reboots.set(&[cause, expected], *n as f64);
            }
        }
        self.last.reset();
        if let Some(last) = &h.last {
            self.last
                .with_label_values(&[&last.cause, &last.expected, &last.source])
                .set(1);
            // The unexpected intent that took the node down counts for the fleet rule
            // after the reboot too (the series died with the host before any scrape).
            let when = humantime::parse_rfc3339(&last.intent_time)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            if let (("ssh", "false"), Some(when)) =
                ((last.cause.as_str(), last.expected.as_str()), when)
                && !last.source.is_empty()
            {
                self.unexpected_source(&last.source, when.as_secs() as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_sources_only() {
        let r = Registry::default();
        let m = RebootMetrics::new(&r);
        for n in 0..(MAX_SOURCE_SERIES as i64 + 3) {
            m.unexpected_source(&format!("10.0.0.{n}"), 1000 + n);
        }
        // 0..=2 are gone; 3 is the oldest left until it is seen again.
        m.unexpected_source("10.0.0.3", 5000);
        m.unexpected_source("10.0.0.99", 5001);
        let shown: Vec<String> = r
            .gather()
            .into_iter()
            .filter(|f| f.name() == "nodeward_reboot_unexpected_ssh_source_timestamp_seconds")
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| m.get_label()[0].value().to_string())
            .collect();
        assert_eq!(shown.len(), MAX_SOURCE_SERIES);
        let has = |s: &str| shown.iter().any(|x| x == s);
        assert!(!has("10.0.0.0"), "oldest forgotten");
        assert!(has("10.0.0.3"), "seen again: kept");
        assert!(!has("10.0.0.4"), "then the next oldest goes");
        assert!(has("10.0.0.99") && has("10.0.0.34"));
    }

    #[test]
    fn an_unexpected_reboot_keeps_its_source_after_the_restart() {
        let r = Registry::default();
        let m = RebootMetrics::new(&r);
        let h = history::History {
            last: Some(history::LastReboot {
                cause: "ssh".into(),
                expected: "false".into(),
                source: "100.64.0.18".into(),
                intent_time: "2026-11-26T06:00:00.000Z".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        m.set_history(&h);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap();
        assert!(
            text.contains("nodeward_reboot_unexpected_ssh_source_timestamp_seconds{source=\"100.64.0.18\"} 1795672800"),
            "{text}"
        );
    }
}
