//! Metrics of the quarantine engine: decisions, active quarantines, backends. (The
//! kernel programs' enforcement counters are read at scrape time by `kernel::metrics`.)

use prometheus::{IntCounterVec, IntGaugeVec};

use super::{Backend, Engine, RESULTS};
use crate::{
    config::ActionKind,
    metrics::{Registry, counter_vec, gauge_vec},
};

pub struct QuarantineMetrics {
    active: IntGaugeVec,
    decisions: IntCounterVec,
    backend: IntGaugeVec,
    write_errors: IntCounterVec,
}

impl QuarantineMetrics {
    pub fn new(r: &Registry) -> QuarantineMetrics {
        let m = QuarantineMetrics {
            active: gauge_vec(
                r,
                "nodeward_quarantine_active",
                "Quarantines currently in force, by action.",
                &["action"],
            ),
            decisions: counter_vec(
                r,
                "nodeward_quarantine_decisions_total",
                "Every engine decision: applied, proposed, approved, dry_run, refused_protected, refused_rate_limit, refused_cap, refused_observe, refused_invalid, refused_duplicate, failed, expired, released, enforced.",
                &["action", "result"],
            ),
            backend: gauge_vec(
                r,
                "nodeward_enforcement_backend_info",
                "The backend enforcing each action here (sched_exec_kill, tc, or none).",
                &["action", "backend"],
            ),
            write_errors: counter_vec(
                r,
                "nodeward_quarantine_write_errors_total",
                "Failed writes to the state directory, by file: journal (the audit journal; the decision is not taken, the caller gets the error) or state (the state file; the journal still holds the decision and a restart replays it). A full disk shows here and in the log.",
                &["file"],
            ),
        };
        for f in ["journal", "state"] {
            m.write_errors.with_label_values(&[f]);
        }
        for k in ActionKind::ALL {
            m.active.with_label_values(&[k.as_str()]).set(0);
            for r in RESULTS {
                m.decisions.with_label_values(&[k.as_str(), r]);
            }
        }
        m
    }

    /// Take the engine's new decisions into the counters and set the active gauges.
    pub fn sync<B: Backend>(&self, engine: &mut Engine<B>) {
        for file in engine.take_write_errors() {
            self.write_errors.with_label_values(&[file]).inc();
        }
        for (action, result) in engine.take_decisions() {
            self.decisions
                .with_label_values(&[action.as_str(), result])
                .inc();
        }
        for k in ActionKind::ALL {
            let n = engine
                .active()
                .iter()
                .filter(|q| q.target.action() == k)
                .count();
            self.active.with_label_values(&[k.as_str()]).set(n as i64);
        }
    }

    /// Replace the backend info series (one per action).
    pub fn set_backends(&self, backends: &[(ActionKind, &str)]) {
        self.backend.reset();
        for (action, backend) in backends {
            self.backend
                .with_label_values(&[action.as_str(), backend])
                .set(1);
        }
    }
}
