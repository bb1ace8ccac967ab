//! Metrics of the `secrets` detector.

use prometheus::{IntCounterVec, IntGauge};

use super::{KINDS, SecretFinding};
use crate::metrics::{Registry, counter_vec, gauge};

pub struct SecretsMetrics {
    opens: IntCounterVec,
    files: IntGauge,
}

impl SecretsMetrics {
    pub fn new(r: &Registry) -> SecretsMetrics {
        let m = SecretsMetrics {
            opens: counter_vec(
                r,
                "nodeward_secrets_opens_total",
                "Opens of watched secret files: secret_read, secret_written, secret_created; allowed=true for reads by detectors.secrets.allowed_readers.",
                &["kind", "allowed"],
            ),
            files: gauge(
                r,
                "nodeward_secrets_files_present",
                "Secret files that exist now and are watched by inode (opens through relative paths, symlinks, hard links and bind mounts are seen too).",
            ),
        };
        for k in KINDS {
            for a in ["true", "false"] {
                m.opens.with_label_values(&[k, a]);
            }
        }
        m
    }

    pub fn record(&self, f: &SecretFinding) {
        self.opens
            .with_label_values(&[f.kind, if f.allowed { "true" } else { "false" }])
            .inc();
    }

    pub fn set_files(&self, n: usize) {
        self.files.set(n as i64);
    }
}
