//! The `[detectors.session]` configuration section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub enabled: bool,
    /// Process names (comm) of SSH daemons whose accepted connections start a session.
    pub sshd_comms: Vec<String>,
    /// Kernel hooks: `auto` (no syscall tracepoint, and origins in task local storage,
    /// where this kernel allows it) or `tracepoint` (the fallbacks: accept(2) syscall
    /// tracepoints, which every syscall on the node pays for, and the pid table with
    /// its exit program).
    pub route: crate::detectors::config::HookRoute,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sshd_comms: vec!["sshd".into(), "sshd-session".into()],
            route: Default::default(),
        }
    }
}
