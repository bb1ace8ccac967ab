//! The `[detectors.secrets]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub enabled: bool,
    /// Secret files, by absolute path (at most 63 bytes); watched whether or not they
    /// exist yet (a key appearing at one is `secret_created`). Content is never read.
    pub paths: Vec<PathBuf>,
    /// Processes whose reads are expected: `comm` (any secret) or `comm:/path/prefix`
    /// (only secrets below that prefix), e.g. `sshd:/etc/ssh/`.
    pub allowed_readers: Vec<String>,
    /// Ask the quarantine engine to block (kill on exec) the binary of a process that
    /// opened a secret without being an allowed reader, scoped to its cgroup, and to
    /// end that process (acts per `quarantine.block_exec` mode). Off by default: turn it
    /// on once the allowed readers of this node are known.
    pub quarantine: bool,
    /// How opens are seen: `fanotify` (permission events on the secret files and their
    /// directories: io_uring, handles and links included, and an open can be denied),
    /// `tracepoint` (the openat syscall tracepoints: every syscall on the node pays for
    /// them), or `auto` (fanotify where this kernel allows it).
    pub route: Route,
    /// What the fanotify route does with an open for reading by a process that is not
    /// an allowed reader (writes and creations are reported, never denied): `enforce` denies it (the opener gets EPERM before a byte is read),
    /// `dry_run` lets it through and journals the denial it would have made, `observe`
    /// only reports. Unset: `agent.mode`.
    pub mode: Option<crate::config::Mode>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    #[default]
    Auto,
    Fanotify,
    Tracepoint,
}

impl SecretsConfig {
    /// Whether opens are watched with fanotify (`auto`: when this kernel allows a
    /// permission group, probed once).
    pub fn uses_fanotify(&self) -> bool {
        match self.route {
            Route::Fanotify => true,
            Route::Tracepoint => false,
            Route::Auto => super::fanotify::available().is_ok(),
        }
    }

    /// `comm` or `comm:/path/prefix` (an entry of `detectors.secrets.allowed_readers`).
    pub fn parse_reader(entry: &str) -> (String, Option<String>) {
        match entry.split_once(":/") {
            Some((comm, rest)) => (comm.to_string(), Some(format!("/{rest}"))),
            None => (entry.to_string(), None),
        }
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: [
                "/etc/corosync/authkey",
                "/etc/pve/priv/*",
                "/etc/ssh/ssh_host_ed25519_key",
                "/etc/ssh/ssh_host_ecdsa_key",
                "/etc/ssh/ssh_host_rsa_key",
                "/root/.ssh/id_ed25519",
                "/root/.ssh/id_ecdsa",
                "/root/.ssh/id_rsa",
            ]
            .map(PathBuf::from)
            .to_vec(),
            allowed_readers: [
                "corosync:/etc/corosync/",
                "pmxcfs:/etc/pve/",
                "sshd:/etc/ssh/",
                "sshd-session:/etc/ssh/",
                // root's own SSH client (Proxmox nodes talk to each other over SSH)
                "ssh:/root/.ssh/",
                // Proxmox VE daemons and their workers (comm, 15 bytes at most)
                "pveproxy:/etc/pve/",
                "pveproxy worker:/etc/pve/",
                "pvedaemon:/etc/pve/",
                "pvedaemon worke:/etc/pve/",
                "pvescheduler:/etc/pve/",
                "pvestatd:/etc/pve/",
                "pve-ha-lrm:/etc/pve/",
                "pve-ha-crm:/etc/pve/",
                "spiceproxy:/etc/pve/",
            ]
            .map(String::from)
            .to_vec(),
            quarantine: false,
            route: Route::Auto,
            mode: None,
        }
    }
}
