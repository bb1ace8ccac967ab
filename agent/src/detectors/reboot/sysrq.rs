//! The `reboot` detector's sysrq route without a syscall tracepoint: a fanotify
//! notification mark on the inode of `/proc/sysrq-trigger` (procfs refuses permission
//! marks), so an open by any path spelling (relative, through /proc/self/root, a bind
//! mount) is seen. The event carries the opener's thread id, not its open flags: the
//! mode is read from the opener's descriptor table while it holds the file, or else
//! learnt from the close (`FAN_CLOSE_WRITE` / `FAN_CLOSE_NOWRITE`). A write-mode open is
//! reported as the same record the tracepoint route sends, into the same pipeline.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use agent_common::{
    decode::Event,
    event::{EventHeader, kind},
    proc::ProcCtx,
    reboot::SysrqOpenEvent,
};
use nix::sys::fanotify::{Fanotify, FanotifyEvent, MaskFlags};
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::detectors::procfs::{self, OriginLookup};

pub const TRIGGER: &str = "/proc/sysrq-trigger";
/// `SysrqOpenEvent::syscall` of a record made from a fanotify event.
pub const VIA_FANOTIFY: u32 = 3;
/// Opens whose mode is not known yet (the opener let go of the file before we looked),
/// waiting for their close. Beyond this many, the oldest is reported as it is.
const PENDING_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SysrqError {
    #[error(transparent)]
    Group(#[from] crate::kernel::probe::FanotifyProbeError),
    #[error("cannot start the sysrq thread: {0}")]
    Thread(std::io::Error),
}

fn group(path: &Path) -> Result<Fanotify, crate::kernel::probe::FanotifyProbeError> {
    crate::kernel::probe::fanotify_notify_group(
        path,
        MaskFlags::FAN_OPEN | MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_CLOSE_NOWRITE,
    )
}

/// Whether this kernel lets the agent watch /proc/sysrq-trigger with fanotify (probed
/// once). Without the file (a kernel without magic SysRq) there is nothing to watch.
pub fn available() -> Result<(), crate::kernel::probe::FanotifyProbeError> {
    crate::kernel::probe::sysrq_fanotify()
}

/// The watcher thread; stopped when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(
        events: mpsc::Sender<Event>,
        origin: OriginLookup,
        agent: Arc<crate::metrics::Agent>,
    ) -> Result<Watcher, SysrqError> {
        Watcher::start_on(Path::new(TRIGGER), events, origin, agent)
    }

    /// Watch `path` as if it were the trigger (the trigger itself, or a file a test
    /// owns on a kernel without magic SysRq).
    pub fn start_on(
        path: &Path,
        events: mpsc::Sender<Event>,
        origin: OriginLookup,
        agent: Arc<crate::metrics::Agent>,
    ) -> Result<Watcher, SysrqError> {
        let group = group(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let reader = Reader {
            group: Some(group),
            events,
            origin,
            agent,
            path: path.to_path_buf(),
            pending: HashMap::new(),
            reported: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("nodeward-sysrq".into())
            .spawn(move || reader.run(&flag))
            .map_err(SysrqError::Thread)?;
        info!(
            detector = "reboot",
            path = TRIGGER,
            "sysrq watched by fanotify"
        );
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reader {
    /// Taken by the loop while it runs.
    group: Option<Fanotify>,
    events: mpsc::Sender<Event>,
    origin: OriginLookup,
    agent: Arc<crate::metrics::Agent>,
    path: PathBuf,
    /// Opens of unknown mode, by thread id: the opener as seen at the open.
    pending: HashMap<u32, (u64, ProcCtx)>,
    /// Threads reported at the open, until their close (no second report).
    reported: HashMap<u32, u64>,
}

impl Reader {
    fn run(mut self, stop: &AtomicBool) {
        let group = self.group.take();
        let Some(group) = group else { return };
        crate::detectors::fanotify_loop::run(&group, stop, "reboot", "sysrq is", |event| {
            self.handle(event)
        });
    }

    fn handle(&mut self, event: &FanotifyEvent) {
        let mask = event.mask();
        if mask.contains(MaskFlags::FAN_Q_OVERFLOW) {
            self.agent.fanotify_lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let tid = event.pid().max(0) as u32;
        if mask.contains(MaskFlags::FAN_OPEN) {
            let ktime = crate::time::boot_ns();
            let ctx = procfs::proc_ctx(tid, |pid| (self.origin)(pid)).unwrap_or(ProcCtx {
                pid: tid,
                tid,
                ..Default::default()
            });
            match open_mode(ctx.pid, &self.path) {
                Some(flags) if flags & libc::O_ACCMODE as u64 != 0 => {
                    self.reported.insert(tid, ktime);
                    self.send(ktime, ctx, flags);
                }
                Some(_) => {} // read-only: harmless
                None => {
                    if self.pending.len() >= PENDING_MAX
                        && let Some((&old, _)) = self.pending.iter().min_by_key(|(_, (t, _))| *t)
                        && let Some((t, c)) = self.pending.remove(&old)
                    {
                        self.send(t, c, libc::O_WRONLY as u64);
                    }
                    self.pending.insert(tid, (ktime, ctx));
                }
            }
        }
        if mask.contains(MaskFlags::FAN_CLOSE_WRITE) {
            if let Some((ktime, ctx)) = self.pending.remove(&tid) {
                self.send(ktime, ctx, libc::O_WRONLY as u64);
            }
            self.reported.remove(&tid);
        }
        if mask.contains(MaskFlags::FAN_CLOSE_NOWRITE) {
            self.pending.remove(&tid);
            self.reported.remove(&tid);
        }
    }

    fn send(&self, ktime_ns: u64, proc: ProcCtx, flags: u64) {
        let record = SysrqOpenEvent {
            header: EventHeader::new(
                kind::SYSRQ_OPEN,
                core::mem::size_of::<SysrqOpenEvent>(),
                ktime_ns,
            ),
            proc,
            flags,
            syscall: VIA_FANOTIFY,
            _pad0: 0,
        };
        self.agent
            .record_event(agent_common::event::kind_name(kind::SYSRQ_OPEN));
        if self
            .events
            .try_send(Event::SysrqOpen(record.into()))
            .is_err()
        {
            self.agent.record_queue_full();
        }
    }
}

/// The open flags of `pid`'s descriptor on the trigger, if it holds one now.
fn open_mode(pid: u32, path: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for entry in dir.flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t == path) {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                entry.file_name().to_string_lossy()
            ))
            .ok()?;
            return parse_fdinfo_flags(&info);
        }
    }
    None
}

/// The `flags:` line of a /proc/PID/fdinfo/FD file (octal).
fn parse_fdinfo_flags(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 8).ok())
}

/// The route in the run loop: the watcher runs while the reboot detector is enabled and
/// its route is not forced to the tracepoint fallback (which then watches openat).
pub struct SysrqRoute {
    watcher: Option<Watcher>,
    events: mpsc::Sender<Event>,
    origin: OriginLookup,
}

impl SysrqRoute {
    pub fn new(
        kernel: &crate::kernel::owner::Handle,
        events: mpsc::Sender<Event>,
        agent: &crate::metrics::Agent,
    ) -> SysrqRoute {
        SysrqRoute {
            watcher: None,
            events,
            origin: procfs::origin_lookup(kernel, "reboot", agent),
        }
    }

    pub fn configure(
        &mut self,
        config: &crate::config::Config,
        agent: &Arc<crate::metrics::Agent>,
    ) {
        let d = &config.detectors;
        let want = d.reboot.enabled && !d.forced_fallback("reboot") && available().is_ok();
        if !want {
            self.watcher = None;
        } else if self.watcher.is_none() {
            match Watcher::start(self.events.clone(), self.origin.clone(), agent.clone()) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => {
                    error!(detector = "reboot", error = %e, "sysrq cannot be watched by fanotify (set detectors.reboot.route = \"tracepoint\")");
                    agent.set_detector_up("reboot", false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real fanotify on a file this test owns (this kernel has no /proc/sysrq-trigger):
    /// a read-only open is not reported; a write-mode open is, with the opener's pid,
    /// whether the mode is read while the file is held or learnt from the close.
    #[test]
    fn write_mode_opens_are_reported_read_only_ones_are_not() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!(
                "SKIP write_mode_opens_are_reported_read_only_ones_are_not: fanotify needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigger");
        std::fs::write(&path, b"").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let agent = Arc::new(crate::metrics::Agent::new(
            &["reboot"],
            &[],
            &["sysrq_open"],
        ));
        let _w = Watcher::start_on(&path, tx, Arc::new(|_| None), agent).unwrap();
        let open = |write: bool, hold: bool| {
            let mut c = std::process::Command::new("sh");
            let redirect = if write { ">>" } else { "<" };
            let script = if hold {
                format!("exec 3{redirect}'{}'; read _; exec 3>&-", path.display())
            } else {
                format!("exec 3{redirect}'{}'; exec 3>&-", path.display())
            };
            c.args(["-c", &script]).stdin(std::process::Stdio::piped());
            c.spawn().unwrap()
        };
        let next = |rx: &mut mpsc::Receiver<Event>| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match rx.try_recv() {
                    Ok(Event::SysrqOpen(e)) => return e.proc.pid,
                    Ok(_) => {}
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(e) => panic!("no sysrq record: {e}"),
                }
            }
        };
        // Held: the mode is read from the opener's descriptor while it waits.
        let mut ro = open(false, true);
        let mut wo = open(true, true);
        assert_eq!(
            next(&mut rx),
            wo.id(),
            "the write-mode open, not the read-only one"
        );
        drop(ro.stdin.take());
        drop(wo.stdin.take());
        ro.wait().unwrap();
        wo.wait().unwrap();
        // Not held: learnt from the close; a read-only one in between is dropped.
        let mut quick_ro = open(false, false);
        quick_ro.wait().unwrap();
        let mut quick_wo = open(true, false);
        quick_wo.wait().unwrap();
        assert_eq!(next(&mut rx), quick_wo.id());
        assert!(rx.try_recv().is_err(), "one record per write-mode open");
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        let info = "pos:\t0\nflags:\t0100001\nmnt_id:\t22\nino:\t4026532\n";
        assert_eq!(parse_fdinfo_flags(info), Some(0o100001));
        assert_eq!(parse_fdinfo_flags(info).unwrap() & 3, 1);
        assert_eq!(parse_fdinfo_flags("pos:\t0\n"), None);
    }
}
