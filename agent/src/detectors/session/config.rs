//! The `[detectors.session]` configuration section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub enabled: bool,
    /// Process names (comm) of SSH daemons whose accepted connections start a session.
    pub sshd_comms: Vec<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sshd_comms: vec!["sshd".into(), "sshd-session".into()],
        }
    }
}
