//! The `fanotify` route of the `secrets` detector: no syscall tracepoint, every way of
//! opening a watched file seen (paths, relative paths, links, bind mounts, file
//! handles, io_uring), and an open by a process that is not an allowed reader denied
//! before a byte is read when the mode is `enforce`.
//!
//! Two groups, each read by its own thread: a permission group (`FAN_OPEN_PERM`) for
//! files on ordinary file systems, and a notification group (`FAN_OPEN`) for files on
//! FUSE (Proxmox's /etc/pve is pmxcfs, which hangs with the cluster: nothing may wait
//! on it). Marks are inode marks on the files present and directory marks (events on
//! children) on the directories that hold watched paths, so a key appearing there is
//! seen when it is opened. Never a mount or file-system mark. Marks are placed by a
//! third thread, so a path lookup that hangs never delays an answer. If the agent dies
//! while an open waits for its answer, the kernel lets the open through.

use std::{
    collections::HashMap,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::{SecretFinding, SecretsDetector};
use crate::detectors::procfs;
use crate::{
    config::{Config, Mode},
    detectors::{Finding, Process},
};

/// Whether `path` lies on a FUSE file system, from the mount table alone: nothing on
/// that file system is touched (a lookup on a hung pmxcfs would never return).
fn on_fuse(path: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for (point, fstype) in crate::kernel::probe::mounts() {
        let len = point.as_os_str().len();
        if path.starts_with(&point) && best.is_none_or(|(l, _)| len >= l) {
            best = Some((len, fstype == "fuse" || fstype.starts_with("fuse.")));
        }
    }
    best.is_some_and(|(_, fuse)| fuse)
}

use crate::kernel::probe::at_cwd as cwd;

/// Why the fanotify route cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    #[error("fanotify_init of a {0} group: {1}")]
    Init(&'static str, nix::errno::Errno),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// Whether this kernel gives this process a fanotify permission group (probed once).
pub fn available() -> Result<(), nix::errno::Errno> {
    static PROBE: std::sync::OnceLock<Result<(), nix::errno::Errno>> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| perm_group().map(drop))
}

fn perm_group() -> nix::Result<Fanotify> {
    Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_REPORT_TID,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
    )
}

fn notify_group() -> nix::Result<Fanotify> {
    Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_REPORT_TID,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
    )
}

/// What the marks cover now: the files present (by device and inode, with the path
/// they are watched under) and the configured paths and `dir/` prefixes.
#[derive(Default)]
struct Targets {
    by_inode: HashMap<(u64, u64), String>,
    paths: Vec<String>,
    prefixes: Vec<String>,
}

impl Targets {
    fn new(config: &Config, present: &[(PathBuf, u64, u64)]) -> Targets {
        let mut t = Targets::default();
        for p in &config.detectors.secrets.paths {
            let text = p.to_string_lossy().into_owned();
            match text.strip_suffix('*') {
                Some(dir) => t.prefixes.push(dir.to_string()),
                None => t.paths.push(text),
            }
        }
        for (path, dev, ino) in present {
            t.by_inode
                .insert((*dev, *ino), path.to_string_lossy().into_owned());
        }
        t
    }

    /// The watched path an opened file stands for, and how it was matched.
    fn matched(&self, dev: u64, ino: u64, opened: &str) -> Option<(String, &'static str)> {
        if let Some(p) = self.by_inode.get(&(dev, ino)) {
            return Some((p.clone(), "inode"));
        }
        self.watched(opened).then(|| (opened.to_string(), "path"))
    }

    /// Whether `path` is a watched path or in a watched directory.
    fn watched(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
            || self.prefixes.iter().any(|d| path.starts_with(d.as_str()))
    }

    /// Directories to mark (events on children): the parents of watched files and
    /// the `dir/*` directories.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .paths
            .iter()
            .filter_map(|p| Path::new(p).parent().map(Path::to_path_buf))
            .chain(self.prefixes.iter().map(PathBuf::from))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The running watcher: dropped, it stops its threads (a thread stuck on a hung file
/// system is left behind, never waited for).
pub struct Watcher {
    stop: Arc<AtomicBool>,
    present: std::sync::mpsc::Sender<Vec<(PathBuf, u64, u64)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Start the groups and their threads. `origin` looks up the session detector's
    /// record of a process (pid → origin).
    pub fn start(
        config: watch::Receiver<Arc<Config>>,
        findings: mpsc::Sender<Finding>,
        metrics: Arc<crate::detectors::metrics::Metrics>,
        origin: Arc<dyn Fn(u32) -> Option<agent_common::session::Origin> + Send + Sync>,
    ) -> Result<Watcher, FanotifyError> {
        let perm = Arc::new(perm_group().map_err(|e| FanotifyError::Init("permission", e))?);
        let notify = Arc::new(notify_group().map_err(|e| FanotifyError::Init("notification", e))?);
        // Renames and links into watched directories: optional (a kernel without FID
        // reporting still has the open routes).
        let fid = match super::arrivals::group() {
            Ok((g, _pidfds)) => Some((Arc::new(g), super::arrivals::Dirs::default())),
            Err(e) => {
                warn!(detector = "secrets", error = %e, "no fanotify FID group: keys renamed or linked into a watched path are seen only when opened");
                None
            }
        };
        let targets = Arc::new(RwLock::new(Targets::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (present_tx, present_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        let mut readers = vec![
            ("secrets-perm", perm.clone(), true, None),
            ("secrets-fuse", notify.clone(), false, None),
        ];
        if let Some((g, dirs)) = &fid {
            readers.push(("secrets-arrivals", g.clone(), false, Some(dirs.clone())));
        }
        for (name, group, permission, arrivals) in readers {
            let reader = Reader {
                group,
                permission,
                arrivals,
                targets: targets.clone(),
                config: config.clone(),
                findings: findings.clone(),
                metrics: metrics.clone(),
                origin: origin.clone(),
            };
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || reader.run(&stop))
                    .map_err(|e| FanotifyError::Thread(name, e))?,
            );
        }
        let marker = Marker {
            perm,
            notify,
            fid,
            targets,
            config,
            metrics,
            placed: Vec::new(),
            fuse_busy: Arc::new(AtomicBool::new(false)),
            fuse_done: std::sync::mpsc::channel(),
        };
        let stop2 = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("secrets-marks".into())
                .spawn(move || marker.run(present_rx, &stop2))
                .map_err(|e| FanotifyError::Thread("secrets-marks", e))?,
        );
        info!(
            detector = "secrets",
            route = "fanotify",
            "secret files watched with fanotify (permission events; FUSE files with notification events)"
        );
        Ok(Watcher {
            stop,
            present: present_tx,
            threads,
        })
    }

    /// The secret files present now (path, device, inode), from the periodic scan.
    pub fn set_present(&self, present: Vec<(PathBuf, u64, u64)>) {
        let _ = self.present.send(present);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            // Readers poll every 200 ms; a thread stuck on FUSE is not waited for.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Places the marks (its own thread: a lookup on a hung FUSE mount blocks only it).
struct Marker {
    perm: Arc<Fanotify>,
    notify: Arc<Fanotify>,
    /// The group that sees entries renamed or linked into the watched directories.
    fid: Option<(Arc<Fanotify>, super::arrivals::Dirs)>,
    targets: Arc<RwLock<Targets>>,
    config: watch::Receiver<Arc<Config>>,
    metrics: Arc<crate::detectors::metrics::Metrics>,
    /// What is marked now (files and directories), to mark only what changed.
    placed: Vec<PathBuf>,
    /// FUSE paths are marked by a helper thread, one at a time: a lookup on a hung
    /// FUSE file system blocks that helper only. It sends back what it marked.
    fuse_busy: Arc<AtomicBool>,
    fuse_done: (
        std::sync::mpsc::Sender<PathBuf>,
        std::sync::mpsc::Receiver<PathBuf>,
    ),
}

impl Marker {
    fn run(
        mut self,
        present: std::sync::mpsc::Receiver<Vec<(PathBuf, u64, u64)>>,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let files = match present.recv_timeout(Duration::from_millis(200)) {
                Ok(f) => f,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(_) => return,
            };
            let config = self.config.borrow().clone();
            let new = Targets::new(&config, &files);
            let mut wanted: Vec<PathBuf> = files.iter().map(|(p, ..)| p.clone()).collect();
            let dirs = new.dirs();
            wanted.extend(dirs.iter().cloned());
            wanted.sort();
            wanted.dedup();
            // The map first, so an event for a new mark finds its target.
            *self.targets.write().unwrap_or_else(|e| e.into_inner()) = new;
            if wanted == self.placed {
                continue;
            }
            // Something left (a key deleted or renamed away): start over; else add.
            let gone = self.placed.iter().any(|p| !wanted.contains(p));
            if gone {
                let fid = self.fid.as_ref().map(|(g, _)| g);
                for g in [&self.perm, &self.notify].into_iter().chain(fid) {
                    let _ = g.mark::<_, Path>(
                        MarkFlags::FAN_MARK_FLUSH,
                        MaskFlags::empty(),
                        cwd(),
                        None,
                    );
                }
                if let Some((_, dirs)) = &self.fid {
                    dirs.write().unwrap_or_else(|e| e.into_inner()).clear();
                }
                self.placed.clear();
            }
            self.placed.extend(self.fuse_done.1.try_iter());
            let mut fuse = Vec::new();
            for p in &wanted {
                if self.placed.contains(p) {
                    continue;
                }
                if on_fuse(p) {
                    fuse.push((p.clone(), dirs.contains(p)));
                    continue;
                }
                let is_dir = dirs.contains(p);
                if let Err(e) = self.mark(p, is_dir) {
                    self.metrics.secrets.mark_error();
                    if e != nix::errno::Errno::ENOENT {
                        warn!(detector = "secrets", path = %p.display(), error = %e, "cannot watch this path with fanotify");
                    }
                    continue;
                }
                if is_dir
                    && let Some((g, dirs)) = &self.fid
                    && let Err(e) = super::arrivals::mark(g, dirs, p)
                {
                    self.metrics.secrets.mark_error();
                    warn!(detector = "secrets", path = %p.display(), error = %e, "cannot watch this directory for keys renamed or linked into it");
                }
                self.placed.push(p.clone());
            }
            if !fuse.is_empty() && !self.fuse_busy.swap(true, Ordering::AcqRel) {
                self.mark_fuse(fuse);
            }
        }
    }

    /// Notification marks on FUSE paths, on a helper thread (left behind if the file
    /// system hangs; no second helper starts until it returns).
    fn mark_fuse(&self, paths: Vec<(PathBuf, bool)>) {
        let (notify, busy, done) = (
            self.notify.clone(),
            self.fuse_busy.clone(),
            self.fuse_done.0.clone(),
        );
        let metrics = self.metrics.clone();
        let spawned = std::thread::Builder::new()
            .name("secrets-fuse-marks".into())
            .spawn(move || {
                for (p, dir) in paths {
                    let mut mask = MaskFlags::FAN_OPEN;
                    if dir {
                        mask |= MaskFlags::FAN_EVENT_ON_CHILD;
                    }
                    match notify.mark(MarkFlags::FAN_MARK_ADD, mask, cwd(), Some(&p)) {
                        Ok(()) => {
                            let _ = done.send(p);
                        }
                        Err(e) => {
                            metrics.secrets.mark_error();
                            if e != nix::errno::Errno::ENOENT {
                                warn!(detector = "secrets", path = %p.display(), error = %e, "cannot watch this FUSE path with fanotify");
                            }
                        }
                    }
                }
                busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.fuse_busy.store(false, Ordering::Release);
            error!(detector = "secrets", error = %e, "cannot start the FUSE mark helper");
        }
    }

    /// A permission mark (the path is on an ordinary file system: [`on_fuse`]).
    fn mark(&self, path: &Path, dir: bool) -> nix::Result<()> {
        let mut mask = MaskFlags::FAN_OPEN_PERM;
        if dir {
            mask |= MaskFlags::FAN_EVENT_ON_CHILD;
        }
        self.perm
            .mark(MarkFlags::FAN_MARK_ADD, mask, cwd(), Some(path))
    }
}

/// Reads one group's events and answers the permission ones.
struct Reader {
    group: Arc<Fanotify>,
    permission: bool,
    /// The FID group's reader: entries renamed or linked into marked directories.
    arrivals: Option<super::arrivals::Dirs>,
    targets: Arc<RwLock<Targets>>,
    config: watch::Receiver<Arc<Config>>,
    findings: mpsc::Sender<Finding>,
    metrics: Arc<crate::detectors::metrics::Metrics>,
    origin: Arc<dyn Fn(u32) -> Option<agent_common::session::Origin> + Send + Sync>,
}

impl Reader {
    fn run(self, stop: &AtomicBool) {
        if let Some(dirs) = &self.arrivals {
            crate::detectors::fanotify_loop::run_raw(
                &self.group,
                stop,
                "secrets",
                "keys renamed or linked into watched paths are",
                |buf| self.arrived(dirs, buf),
            );
            return;
        }
        crate::detectors::fanotify_loop::run(
            &self.group,
            stop,
            "secrets",
            "secret opens are",
            |event| self.handle(event),
        );
    }

    fn handle(&self, event: &FanotifyEvent) {
        let Some(fd) = event.fd() else {
            if event.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                self.metrics
                    .agent
                    .fanotify_lost
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let finding = self.judge(fd.as_raw_fd(), event.pid().max(0) as u32);
        let deny = finding
            .as_ref()
            .is_some_and(|f| f.decision == Some("denied"));
        if self.permission {
            let answer = if deny {
                Response::FAN_DENY
            } else {
                Response::FAN_ALLOW
            };
            if let Err(e) = self.group.write_response(FanotifyResponse::new(fd, answer)) {
                error!(detector = "secrets", error = %e, "cannot answer a fanotify permission event");
            }
        }
        let Some(f) = finding else { return };
        if self.findings.try_send(Finding::Secret(f)).is_err() {
            self.metrics.agent.record_queue_full();
        }
    }

    /// Entries renamed or linked into a marked directory: a finding for each that lands
    /// on a watched path.
    fn arrived(&self, dirs: &super::arrivals::Dirs, buf: &[u8]) {
        let (events, overflows) = super::arrivals::parse(buf);
        if overflows > 0 {
            self.metrics
                .agent
                .fanotify_lost
                .fetch_add(overflows, Ordering::Relaxed);
        }
        for a in events {
            let Some(dir) = dirs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&a.dir)
                .cloned()
            else {
                continue;
            };
            let path = dir.join(std::ffi::OsStr::from_bytes(&a.name));
            let text = path.to_string_lossy().into_owned();
            if !self
                .targets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .watched(&text)
            {
                continue;
            }
            let Some(kind) = super::arrivals::kind(a.mask, &path) else {
                continue;
            };
            let tid = a.tid.max(0) as u32;
            // `mv` and `ln` are often gone before their event is read: the pid stays.
            // What /proc says under that pid is kept only if the event's pidfd shows the
            // process still alive after the read (else the pid may name another one).
            // Everything /proc says is read first, then the liveness checked once.
            let verified = procfs::proc_ctx(tid, |pid| (self.origin)(pid))
                .map(|ctx| (procfs::argv(ctx.pid), procfs::lineage(ctx.ppid), ctx))
                .filter(|_| a.pidfd.still_alive());
            let (argv, mut lineage, process) = match verified {
                Some((argv, lineage, ctx)) => (argv, lineage, Process::from(&ctx)),
                None => {
                    // Say so rather than leave the process blank.
                    let mut process = Process::from(&agent_common::proc::ProcCtx {
                        pid: tid,
                        tid,
                        ..Default::default()
                    });
                    process.comm = "(exited before its event was read)".into();
                    (Vec::new(), Vec::new(), process)
                }
            };
            lineage.push(process.comm.clone());
            let f = SecretFinding {
                kind,
                path: text,
                process,
                allowed: false,
                flags: 0,
                via: "directory",
                argv,
                lineage,
                decision: None,
            };
            if self.findings.try_send(Finding::Secret(f)).is_err() {
                self.metrics.agent.record_queue_full();
            }
        }
    }

    /// The finding for one open (`None`: not a watched file), with the decision made.
    fn judge(&self, fd: i32, tid: u32) -> Option<SecretFinding> {
        let opened = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        // SAFETY: `fd` is the event's descriptor, open until the event is dropped (after
        // this call returns).
        let stat =
            nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).ok()?;
        let (path, via) = self
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .matched(stat.st_dev, stat.st_ino, &opened.to_string_lossy())?;
        // A notification arrives after the open: the thread has moved on, its syscall
        // is no longer the open.
        let flags = if self.permission {
            procfs::open_flags(tid)
        } else {
            procfs::FLAGS_UNKNOWN
        };
        let ctx = procfs::proc_ctx(tid, |pid| (self.origin)(pid)).unwrap_or_default();
        let process = Process::from(&ctx);
        let config = self.config.borrow().clone();
        let detector = SecretsDetector::new(&config.detectors.secrets);
        let mut f = detector.classify_open(flags, path, process, via, procfs::argv(ctx.pid));
        let mut chain = procfs::lineage(f.process.ppid);
        chain.push(f.process.comm.clone());
        f.lineage = chain;
        // Only reads are refused: a write or a creation (a key rotation by the cluster's
        // own tools, which are not readers) is reported, never denied.
        if f.kind == "secret_read" && !f.allowed && ctx.pid != std::process::id() {
            f.decision = match config.detectors.secrets.mode.unwrap_or(config.agent.mode) {
                Mode::Enforce if self.permission => Some("denied"),
                Mode::Enforce | Mode::DryRun => Some("would_deny"),
                Mode::Observe => None,
            };
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_match_by_inode_first_then_by_watched_path() {
        let mut config = Config::default();
        config.detectors.secrets.paths =
            vec![PathBuf::from("/k/authkey"), PathBuf::from("/k/priv/*")];
        let t = Targets::new(&config, &[(PathBuf::from("/k/authkey"), 7, 42)]);
        // The key itself, whatever path it was opened by (a hard link here).
        assert_eq!(
            t.matched(7, 42, "/elsewhere/link"),
            Some(("/k/authkey".into(), "inode"))
        );
        // A file that appeared at a watched path or in a watched directory.
        assert_eq!(
            t.matched(7, 43, "/k/authkey"),
            Some(("/k/authkey".into(), "path"))
        );
        assert_eq!(
            t.matched(7, 44, "/k/priv/new.key"),
            Some(("/k/priv/new.key".into(), "path"))
        );
        // A neighbour of the key in its directory (the directory is marked) is not.
        assert_eq!(t.matched(7, 45, "/k/corosync.conf"), None);
        assert_eq!(t.dirs(), [PathBuf::from("/k"), PathBuf::from("/k/priv/")]);
    }
}
