//! The `[detectors.reboot]` configuration section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebootConfig {
    pub enabled: bool,
    /// Also watch busctl / dbus-send / gdbus calls of logind's Reboot/PowerOff/Halt
    /// methods (a script can ask logind directly; see README "known gaps").
    pub watch_dbus_tools: bool,
    /// SSH peers (CIDRs) whose reboots are expected.
    pub allowed_sources: Vec<ipnet::IpNet>,
    /// Reboots from a local login (console, tty: a login uid, no SSH) are expected.
    pub local_expected: bool,
    /// Reboots from the init system or a daemon (no login uid) are expected.
    pub service_expected: bool,
    /// This host must not be rebooted remotely by surprise: with
    /// `quarantine.block_exec.mode` (or `agent.mode`) = enforce, a reboot/shutdown/
    /// poweroff/halt exec from an SSH session whose peer is not in `allowed_sources`
    /// is killed before it runs (dry_run: recorded only).
    pub protected_host: bool,
    /// Kernel hooks: `auto` (no syscall tracepoint where this kernel allows it) or
    /// `tracepoint` (the syscall-tracepoint fallback; every syscall on the node pays).
    pub route: crate::detectors::config::HookRoute,
}

impl Default for RebootConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            watch_dbus_tools: true,
            allowed_sources: Vec::new(),
            local_expected: true,
            service_expected: true,
            protected_host: false,
            route: Default::default(),
        }
    }
}
