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
    /// Processes whose reads are expected, never by process name (`comm`, which any
    /// process sets for itself): `/path/of/executable` or `unit:NAME.service`, each
    /// optionally `:/path/prefix` (only secrets below it), e.g.
    /// `/usr/sbin/sshd:/etc/ssh/` ([`SecretsConfig::parse_reader`]).
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

    /// An entry of `detectors.secrets.allowed_readers`: `/path/of/executable` or
    /// `unit:NAME.service` (a systemd unit), each optionally followed by
    /// `:/path/prefix` (only secrets below that prefix).
    pub fn parse_reader(entry: &str) -> Result<AllowedReader, ReaderError> {
        let (who, rest) = match entry.strip_prefix("unit:") {
            Some(unit) => {
                let (name, prefix) = split_prefix(unit);
                if name.is_empty() || name.contains('/') {
                    return Err(ReaderError::Unit(entry.to_string()));
                }
                (Reader::Unit(name.to_string()), prefix)
            }
            None if entry.starts_with('/') => {
                let (exe, prefix) = split_prefix(entry);
                (Reader::Exe(PathBuf::from(exe)), prefix)
            }
            None => return Err(ReaderError::Comm(entry.to_string())),
        };
        if entry.ends_with(':') {
            return Err(ReaderError::Prefix(entry.to_string()));
        }
        Ok(AllowedReader { who, prefix: rest })
    }
}

/// Who an allowed reader is: never a process name (`comm`), which any process sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    /// The executable the process runs (matched by device and inode, so a copy or a
    /// hard link elsewhere under the same name is not it; re-read at each match, so an
    /// upgrade that replaces the file is followed).
    Exe(PathBuf),
    /// A systemd unit: the process's cgroup is the unit's (only root moves processes
    /// between cgroups). For interpreted daemons (Proxmox's are Perl), whose
    /// executable is the interpreter.
    Unit(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedReader {
    pub who: Reader,
    /// Only secrets below this path prefix (any secret when `None`).
    pub prefix: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReaderError {
    #[error(
        "\"{0}\" is a process name, which any process can give itself: name the executable by absolute path (e.g. \"/usr/sbin/{0}\") or its systemd unit (\"unit:NAME.service\")"
    )]
    Comm(String),
    #[error("\"{0}\": a unit is named `unit:NAME.service`")]
    Unit(String),
    #[error("\"{0}\": the path prefix after `:` is empty")]
    Prefix(String),
}

/// `thing:/prefix` -> (`thing`, `Some("/prefix")`); the first `:/` separates them.
fn split_prefix(entry: &str) -> (&str, Option<String>) {
    match entry.split_once(":/") {
        Some((who, rest)) => (who, Some(format!("/{rest}"))),
        None => (entry, None),
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
                "/usr/sbin/corosync:/etc/corosync/",
                "/usr/bin/pmxcfs:/etc/pve/",
                "/usr/sbin/sshd:/etc/ssh/",
                "/usr/lib/openssh/sshd-session:/etc/ssh/",
                // root's own SSH client (Proxmox nodes talk to each other over SSH)
                "/usr/bin/ssh:/root/.ssh/",
                // Proxmox VE daemons and their workers: Perl, so by systemd unit
                "unit:pveproxy.service:/etc/pve/",
                "unit:pvedaemon.service:/etc/pve/",
                "unit:pvescheduler.service:/etc/pve/",
                "unit:pvestatd.service:/etc/pve/",
                "unit:pve-ha-lrm.service:/etc/pve/",
                "unit:pve-ha-crm.service:/etc/pve/",
                "unit:spiceproxy.service:/etc/pve/",
            ]
            .map(String::from)
            .to_vec(),
            quarantine: false,
            route: Route::Auto,
            mode: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_executables_or_units_never_names() {
        let r = SecretsConfig::parse_reader("/usr/sbin/corosync:/etc/corosync/").unwrap();
        assert_eq!(r.who, Reader::Exe(PathBuf::from("/usr/sbin/corosync")));
        assert_eq!(r.prefix.as_deref(), Some("/etc/corosync/"));
        let r = SecretsConfig::parse_reader("unit:pveproxy.service:/etc/pve/").unwrap();
        assert_eq!(r.who, Reader::Unit("pveproxy.service".into()));
        assert_eq!(r.prefix.as_deref(), Some("/etc/pve/"));
        assert_eq!(
            SecretsConfig::parse_reader("/usr/bin/ssh").unwrap().prefix,
            None
        );
        let e = SecretsConfig::parse_reader("corosync:/etc/corosync/").unwrap_err();
        assert!(e.to_string().contains("/usr/sbin/corosync"), "{e}");
        assert!(SecretsConfig::parse_reader("unit:a/b").is_err());
        assert!(SecretsConfig::parse_reader("/usr/bin/ssh:").is_err());
        for r in &SecretsConfig::default().allowed_readers {
            SecretsConfig::parse_reader(r).unwrap();
        }
    }
}
