//! Metrics of the `secrets` detector.

use prometheus::{IntCounterVec, IntGauge};

use super::{KINDS, SecretFinding};
use crate::metrics::{Registry, counter_vec, gauge};

pub struct SecretsMetrics {
    opens: IntCounterVec,
    files: IntGauge,
    decisions: IntCounterVec,
    mark_errors: prometheus::IntCounter,
    route: prometheus::IntGaugeVec,
}

/// How opens of secret files are seen.
pub const ROUTES: &[&str] = &["fanotify", "tracepoint"];

impl SecretsMetrics {
    pub fn new(r: &Registry) -> SecretsMetrics {
        let m = SecretsMetrics {
            opens: counter_vec(
                r,
                "nodeward_secrets_opens_total",
                "Opens of watched secret files (secret_read, secret_written, secret_created) and keys renamed or hard-linked into a watched path (secret_moved_in, secret_linked; fanotify route); allowed=true for reads by detectors.secrets.allowed_readers.",
                &["kind", "allowed"],
            ),
            files: gauge(
                r,
                "nodeward_secrets_files_present",
                "Secret files that exist now and are watched by inode (opens through relative paths, symlinks, hard links and bind mounts are seen too).",
            ),
            decisions: counter_vec(
                r,
                "nodeward_secrets_decisions_total",
                "fanotify route, opens for reading by processes that are not allowed readers: denied (the opener got EPERM; mode enforce) or would_deny (mode dry_run, or a FUSE file, whose opens are only notified).",
                &["decision"],
            ),
            mark_errors: crate::metrics::counter(
                r,
                "nodeward_secrets_mark_errors_total",
                "fanotify route: paths that could not be watched (no such directory yet, or refused by the kernel; the reason is logged except for missing paths).",
            ),
            route: crate::metrics::gauge_vec(
                r,
                "nodeward_secrets_route",
                "1 for the route by which opens of secret files are seen (detectors.secrets.route, probed at start-up): fanotify or tracepoint.",
                &["route"],
            ),
        };
        for d in ["denied", "would_deny"] {
            m.decisions.with_label_values(&[d]);
        }
        for r in ROUTES {
            m.route.with_label_values(&[r]).set(0);
        }
        for k in KINDS {
            for a in ["true", "false"] {
                m.opens.with_label_values(&[k, a]);
            }
        }
        m
    }

    pub fn mark_error(&self) {
        self.mark_errors.inc();
    }

    pub fn set_route(&self, fanotify: bool) {
        self.route
            .with_label_values(&["fanotify"])
            .set(fanotify.into());
        self.route
            .with_label_values(&["tracepoint"])
            .set((!fanotify).into());
    }

    pub fn record(&self, f: &SecretFinding) {
        if let Some(d) = f.decision {
            self.decisions.with_label_values(&[d]).inc();
        }
        self.opens
            .with_label_values(&[f.kind, if f.allowed { "true" } else { "false" }])
            .inc();
    }

    pub fn set_files(&self, n: usize) {
        self.files.set(n as i64);
    }
}
