//! `secrets` detector: opens of secret files (cluster keys, SSH host and root keys):
//! `secret_read`, `secret_written`, `secret_created` (opened with O_CREAT: a key
//! appearing at a secret path, e.g. a copied authkey), `secret_moved_in` and
//! `secret_linked` (a key renamed or hard-linked into a watched path; fanotify route),
//! with the process, its origin and lineage. Reads by allowed processes are reported as allowed.

pub mod arrivals;
pub mod config;
pub mod fanotify;
pub mod identity;
pub mod kernel;
pub mod metrics;
pub mod report;
pub mod runtime;

use agent_common::{
    cstr_bytes,
    decode::Event,
    secrets::{SecretOpenEvent, VIA_INODE},
};
use serde::Serialize;

use super::Process;
use config::SecretsConfig;

pub const KINDS: &[&str] = &[
    "secret_read",
    "secret_written",
    "secret_created",
    "secret_moved_in",
    "secret_linked",
];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretFinding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    pub path: String,
    pub process: Process,
    /// The process is in `allowed_readers` and only read.
    pub allowed: bool,
    pub flags: u64,
    /// How the open was matched: `path` (as opened) or `inode` (the file itself, e.g.
    /// opened by a relative path, a symlink or a hard link); `directory` for a key
    /// renamed or linked into a watched path.
    pub via: &'static str,
    /// The process's command line (at most 256 bytes of it).
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
    /// fanotify route, a process that is not an allowed reader: `denied` (the open
    /// failed with EPERM) or `would_deny` (dry run, or a FUSE file whose opens are only
    /// notified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
}

const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;

pub struct SecretsDetector {
    /// Who may read secrets, and below which prefix (any secret when there is none).
    allowed: Vec<config::AllowedReader>,
}

impl SecretsDetector {
    pub fn new(config: &SecretsConfig) -> Self {
        SecretsDetector {
            allowed: config
                .allowed_readers
                .iter()
                .filter_map(|e| SecretsConfig::parse_reader(e).ok())
                .collect(),
        }
    }

    pub fn observe(&mut self, event: &Event) -> Option<SecretFinding> {
        let Event::SecretOpen(e) = event else {
            return None;
        };
        // A failed open read nothing and created nothing.
        if e.ret < 0 {
            return None;
        }
        Some(self.classify(e))
    }

    fn classify(&self, e: &SecretOpenEvent) -> SecretFinding {
        let mut f = self.classify_open(
            e.flags,
            String::from_utf8_lossy(cstr_bytes(&e.path)).into_owned(),
            Process::from(&e.proc),
            if e.via == VIA_INODE { "inode" } else { "path" },
            e.argv(),
        );
        f.flags = e.flags;
        f
    }

    /// One open of a watched file by `process`, with the open's flags: its kind, and
    /// whether the process is an allowed reader of that path.
    pub fn classify_open(
        &self,
        flags: u64,
        path: String,
        process: Process,
        via: &'static str,
        argv: Vec<String>,
    ) -> SecretFinding {
        let kind = if flags & O_CREAT != 0 {
            "secret_created"
        } else if flags & O_ACCMODE != 0 {
            "secret_written"
        } else {
            "secret_read"
        };
        let allowed = kind == "secret_read" && {
            let mine: Vec<&config::AllowedReader> = self
                .allowed
                .iter()
                .filter(|r| r.prefix.as_ref().is_none_or(|p| path.starts_with(p)))
                .collect();
            !mine.is_empty() && identity::is_one_of(process.pid, &mine)
        };
        SecretFinding {
            kind,
            path,
            process,
            allowed,
            flags,
            via,
            argv,
            lineage: Vec::new(),
            decision: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{
        event::{EventHeader, kind},
        fill_cstr,
        secrets::PATH_LEN,
    };

    use super::*;

    fn ev(comm: &[u8], flags: u64) -> Event {
        let mut e = SecretOpenEvent {
            header: EventHeader::new(
                kind::SECRET_OPEN,
                core::mem::size_of::<SecretOpenEvent>(),
                1,
            ),
            proc: Default::default(),
            flags,
            path_id: 0,
            via: agent_common::secrets::VIA_PATH,
            ret: 3,
            path: [0; PATH_LEN],
            args_len: 14,
            args_truncated: 0,
            args: [0; agent_common::secrets::ARGS_LEN],
        };
        fill_cstr(&mut e.proc.comm, comm);
        e.proc.pid = std::process::id();
        fill_cstr(&mut e.path, b"/etc/corosync/authkey");
        e.args[..14].copy_from_slice(b"scp\0-f\0/etc/x\0");
        Event::SecretOpen(e.into())
    }

    #[test]
    fn reads_writes_creates_and_allowed_readers() {
        let mut d = SecretsDetector::new(&SecretsConfig::default());
        let f = d.observe(&ev(b"scp", 0)).unwrap();
        assert_eq!(f.argv, ["scp", "-f", "/etc/x"]);
        assert_eq!(
            (f.kind, f.allowed, f.path.as_str()),
            ("secret_read", false, "/etc/corosync/authkey")
        );
        // A process named corosync is not corosync: the events carry this test's pid,
        // whose executable is the test binary.
        assert!(!d.observe(&ev(b"corosync", 0)).unwrap().allowed);
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        let only = SecretsConfig {
            allowed_readers: vec![format!("{}:/etc/corosync/", me.display())],
            ..Default::default()
        };
        let mut d2 = SecretsDetector::new(&only);
        assert!(d2.observe(&ev(b"anything", 0)).unwrap().allowed);
        let elsewhere = SecretsConfig {
            allowed_readers: vec![format!("{}:/etc/ssh/", me.display())],
            ..Default::default()
        };
        assert!(
            !SecretsDetector::new(&elsewhere)
                .observe(&ev(b"anything", 0))
                .unwrap()
                .allowed,
            "allowed below another prefix only"
        );
        assert!(
            !d2.observe(&ev(b"anything", 0o2)).unwrap().allowed,
            "allowed to read, not to write"
        );
        assert_eq!(
            d.observe(&ev(b"cp", 0o1 | 0o100 | 0o1000)).unwrap().kind,
            "secret_created"
        );
        assert_eq!(d.observe(&ev(b"vi", 0o2)).unwrap().kind, "secret_written");
        // A failed open is no finding.
        let Event::SecretOpen(failed) = ev(b"cat", 0) else {
            unreachable!()
        };
        let mut failed = failed.get();
        failed.ret = -13;
        assert!(d.observe(&Event::SecretOpen(failed.into())).is_none());
        // Matched by inode: the kind comes from the file's access mode.
        let Event::SecretOpen(by_inode) = ev(b"cat", 0) else {
            unreachable!()
        };
        let mut by_inode = by_inode.get();
        by_inode.via = VIA_INODE;
        let f = d.observe(&Event::SecretOpen(by_inode.into())).unwrap();
        assert_eq!((f.kind, f.via), ("secret_read", "inode"));
    }
}
