//! Metrics of the `reboot` detector: intents, blocked reboots, and the reboots of this
//! node across agent restarts (from the state directory).

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

use super::{PATHS, RebootIntent, history};
use crate::metrics::{Registry, Totals, counter, counter_vec, gauge_vec};

pub struct RebootMetrics {
    intents: IntCounterVec,
    blocked: IntCounter,
    reboots: Arc<Totals>,
    last: IntGaugeVec,
}

impl RebootMetrics {
    pub fn new(r: &Registry) -> RebootMetrics {
        let m = RebootMetrics {
            intents: counter_vec(
                r,
                "nodeward_reboot_intents_total",
                "Intents to reboot, halt, power off or kexec this machine, by path, origin (ssh, local, service) and whether expected.",
                &["path", "origin", "expected"],
            ),
            blocked: counter(
                r,
                "nodeward_reboot_blocked_total",
                "Reboot-family execs the reboot guard killed before they ran (protected host, enforce).",
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
        }
    }
}
