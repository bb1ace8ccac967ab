//! Metrics of the `session` detector.

use prometheus::IntCounter;

use crate::metrics::{Registry, counter};

pub struct SessionMetrics {
    ssh_accepts: IntCounter,
}

impl SessionMetrics {
    pub fn new(r: &Registry) -> SessionMetrics {
        SessionMetrics {
            ssh_accepts: counter(
                r,
                "nodeward_session_ssh_accepts_total",
                "SSH connections accepted by a watched sshd (each starts a tracked session).",
            ),
        }
    }

    pub fn record(&self) {
        self.ssh_accepts.inc();
    }
}
