//! Keys that arrive at a watched path without being opened there: moved into place with
//! rename(2) (`secret_moved_in`) or hard-linked there with link(2) (`secret_linked`).
//! A fanotify group that reports directory file handles and entry names
//! (FAN_REPORT_DFID_NAME), marked on the directories that hold watched paths, sees the
//! directory entry appear, with the thread that made it. Creations by open(2) are
//! reported by the open route already (`secret_created`), so a FAN_CREATE is reported
//! only when the new entry is a second link to an existing file.
//!
//! The directories are known by their file handles (name_to_handle_at when the mark is
//! placed), so an event's directory is found without opening anything. File systems
//! that cannot encode handles (FUSE such as pmxcfs) refuse the mark: counted in
//! `nodeward_secrets_mark_errors_total` and logged.

use std::{
    collections::HashMap,
    ffi::CString,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use nix::sys::fanotify::{Fanotify, MarkFlags, MaskFlags};

/// The directories marked, by the key of their handle ([`dir_key`]).
pub type Dirs = Arc<RwLock<HashMap<Vec<u8>, PathBuf>>>;

/// A notification group reporting the directory and name of each entry event, and a
/// pidfd of the process that made it (FAN_REPORT_PIDFD, Linux 5.15); where the kernel
/// has no pidfd reporting, the thread id (FAN_REPORT_TID).
/// The `bool` says whether its events carry pidfds.
pub fn group() -> nix::Result<(Fanotify, bool)> {
    let base =
        libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
    match init(base | libc::FAN_REPORT_PIDFD) {
        Ok(g) => Ok((g, true)),
        Err(e) => {
            tracing::info!(detector = "secrets", error = %e, "no pidfd in fanotify events (FAN_REPORT_PIDFD): renames and links are attributed by thread id only");
            init(base | libc::FAN_REPORT_TID).map(|g| (g, false))
        }
    }
}

fn init(flags: libc::c_uint) -> nix::Result<Fanotify> {
    // SAFETY: a plain system call; the result is checked before use.
    let fd = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_CLOEXEC) as u32) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `fd` was just returned by fanotify_init and is owned by nothing else.
    Ok(unsafe { Fanotify::from_owned_fd(OwnedFd::from_raw_fd(fd)) })
}

/// What an event says of its process beyond the pid.
#[derive(Debug, Default)]
pub enum PidRef {
    /// No pidfd reported (a group without FAN_REPORT_PIDFD).
    #[default]
    NotReported,
    /// The process had exited and been reaped before the event was read: its pid may
    /// already name another process.
    Gone,
    /// The kernel could not make a pidfd (FAN_EPIDFD).
    Failed,
    /// A pidfd of the process: /proc read under its pid is that process's as long as
    /// the pidfd still says it is alive after the read.
    Held(OwnedFd),
}

impl PidRef {
    /// Whether /proc/<pid> read just now described this event's process: `false` when
    /// it had exited before the event was read or exited (and its pid may have been
    /// reused) by now. Without a pidfd nothing can be verified: `true`.
    pub fn still_alive(&self) -> bool {
        match self {
            PidRef::NotReported | PidRef::Failed => true,
            PidRef::Gone => false,
            PidRef::Held(fd) => {
                use std::os::fd::AsRawFd;
                // A pidfd polls readable once its process has exited (no privilege
                // needed, unlike a signal).
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd, no wait.
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                !(r > 0 && p.revents & libc::POLLIN != 0)
            }
        }
    }
}

/// Mark `dir` for entries created in it or moved into it, and remember its handle.
pub fn mark(group: &Fanotify, dirs: &Dirs, dir: &Path) -> nix::Result<()> {
    let key = dir_key(dir)?;
    let mask = MaskFlags::FAN_CREATE | MaskFlags::FAN_MOVED_TO;
    group.mark(
        MarkFlags::FAN_MARK_ADD,
        mask,
        crate::kernel::probe::at_cwd(),
        Some(dir),
    )?;
    dirs.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, dir.to_path_buf());
    Ok(())
}

/// The identity of a directory as fanotify reports it: the file system id, then the
/// handle's type and bytes.
pub fn dir_key(dir: &Path) -> nix::Result<Vec<u8>> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // struct file_handle: handle_bytes (u32), handle_type (i32), then the handle.
    let mut raw = [0u8; 8 + 128];
    raw[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a file_handle with room for 128 handle bytes, as announced in its
    // first field; `path` is NUL-terminated.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            path.as_ptr(),
            raw.as_mut_ptr().cast(),
            &mut mount_id,
            0,
        )
    };
    if r != 0 {
        return Err(nix::errno::Errno::last());
    }
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: statfs fills the struct it is given; `path` is NUL-terminated.
    if unsafe { libc::statfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: zero-initialised and filled by statfs above.
    let st = unsafe { st.assume_init() };
    // SAFETY: f_fsid is two ints (8 bytes) whose fields libc keeps private.
    let fsid: [u8; 8] = unsafe { std::mem::transmute(st.f_fsid) };
    let len = u32::from_ne_bytes(raw[..4].try_into().expect("4 bytes")) as usize;
    let mut key = fsid.to_vec();
    key.extend_from_slice(&raw[4..8 + len.min(128)]);
    Ok(key)
}

/// One entry event: what happened, by which process (the thread in a group without
/// pidfds), in which directory, to which name.
#[derive(Debug)]
pub struct Arrival {
    pub mask: u64,
    /// The process id in a group with pidfds, else the thread id.
    pub tid: i32,
    pub pidfd: PidRef,
    /// The directory, as [`dir_key`] names it.
    pub dir: Vec<u8>,
    pub name: Vec<u8>,
}

/// fanotify_event_metadata is 24 bytes; an information record starts with a 4-byte
/// header, then (for FID records) the 8-byte fsid and the file handle.
const META_LEN: usize = 24;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_ne_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// The events in one read of a FID group (and how many overflow markers it held).
/// Every descriptor an event carries is owned: a pidfd by its [`Arrival`], any other
/// closed at once.
pub fn parse(buf: &[u8]) -> (Vec<Arrival>, u64) {
    parse_with(buf, |fd| {
        // SAFETY: the kernel opened this descriptor for us with the event.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// [`parse`], with each descriptor an event carries taken by `own` (the fuzzer's bytes
/// name no descriptor of ours, so it owns none).
pub fn parse_with(buf: &[u8], mut own: impl FnMut(i32) -> Option<OwnedFd>) -> (Vec<Arrival>, u64) {
    let mut out = Vec::new();
    let mut overflows = 0;
    let mut off = 0;
    while off + META_LEN <= buf.len() {
        let event_len = u32_at(buf, off);
        let metadata_len = u16_at(buf, off + 6);
        if event_len < META_LEN || off + event_len > buf.len() || metadata_len < META_LEN {
            break;
        }
        let ev = &buf[off..off + event_len];
        let mask = u64::from_ne_bytes(ev[8..16].try_into().expect("8 bytes"));
        let fd = i32::from_ne_bytes(ev[16..20].try_into().expect("4 bytes"));
        let tid = i32::from_ne_bytes(ev[20..24].try_into().expect("4 bytes"));
        if fd >= 0 {
            drop(own(fd));
        }
        if mask & libc::FAN_Q_OVERFLOW != 0 {
            overflows += 1;
        }
        // The pidfd record follows the FID records: read them all first.
        let mut pidfd = PidRef::NotReported;
        let mut found = Vec::new();
        let mut i = metadata_len;
        while i + 4 <= ev.len() {
            let (kind, len) = (ev[i], u16_at(ev, i + 2));
            if len < 4 || i + len > ev.len() {
                break;
            }
            if kind == libc::FAN_EVENT_INFO_TYPE_PIDFD && len >= 8 {
                let raw = i32::from_ne_bytes(ev[i + 4..i + 8].try_into().expect("4 bytes"));
                pidfd = match raw {
                    libc::FAN_NOPIDFD => PidRef::Gone,
                    fd if fd >= 0 => own(fd).map_or(PidRef::Failed, PidRef::Held),
                    _ => PidRef::Failed,
                };
            }
            if kind == libc::FAN_EVENT_INFO_TYPE_DFID_NAME && len >= 20 {
                let rec = &ev[i..i + len];
                let handle_bytes = u32_at(rec, 12);
                let handle_end = 20 + handle_bytes;
                if handle_end <= rec.len() {
                    let mut dir = rec[4..12].to_vec();
                    dir.extend_from_slice(&rec[16..handle_end]);
                    let name = &rec[handle_end..];
                    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                    found.push((dir, name.to_vec()));
                }
            }
            i += len;
        }
        // One event has one entry record; should there be more, the pidfd goes with
        // the first.
        for (dir, name) in found {
            out.push(Arrival {
                mask,
                tid,
                pidfd: std::mem::take(&mut pidfd),
                dir,
                name,
            });
        }
        off += event_len;
    }
    (out, overflows)
}

/// What an arrival at a watched path is: `secret_moved_in`, `secret_linked` (a second
/// link to an existing file), or nothing (a file created by open(2), which the open
/// route reports).
pub fn kind(mask: u64, path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    if mask & libc::FAN_MOVED_TO != 0 {
        return Some("secret_moved_in");
    }
    let meta = std::fs::symlink_metadata(path).ok()?;
    (mask & libc::FAN_CREATE != 0 && meta.is_file() && meta.nlink() > 1).then_some("secret_linked")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FID group marked on a temporary directory, and a key in another one.
    struct Lab {
        g: Fanotify,
        watched: tempfile::TempDir,
        elsewhere: tempfile::TempDir,
        dirs: Dirs,
        src: PathBuf,
    }

    impl Lab {
        fn new() -> Option<Lab> {
            let Ok((g, pidfds)) = group() else {
                eprintln!("SKIP: no fanotify FID group for this process (not root?)");
                return None;
            };
            if !pidfds {
                eprintln!("SKIP: this kernel reports no pidfds in fanotify events (before 5.15)");
                return None;
            }
            let watched = tempfile::tempdir().unwrap();
            let elsewhere = tempfile::tempdir().unwrap();
            let dirs: Dirs = Default::default();
            mark(&g, &dirs, watched.path()).unwrap();
            let src = elsewhere.path().join("key");
            std::fs::write(&src, b"k").unwrap();
            Some(Lab {
                g,
                watched,
                elsewhere,
                dirs,
                src,
            })
        }
    }

    /// A real FID group on a temporary directory: a rename into it and a hard link into
    /// it are read back with the directory's key and the entry's name.
    #[test]
    fn renames_and_links_into_a_marked_directory_are_read_with_dir_and_name() {
        let Some(Lab {
            g,
            watched,
            elsewhere,
            dirs,
            src,
        }) = Lab::new()
        else {
            return;
        };
        std::fs::hard_link(&src, watched.path().join("linked")).unwrap();
        std::fs::write(elsewhere.path().join("k2"), b"k").unwrap();
        std::fs::rename(elsewhere.path().join("k2"), watched.path().join("moved")).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = nix::unistd::read(&g, &mut buf).unwrap();
        let (events, overflows) = parse(&buf[..n]);
        assert_eq!(overflows, 0);
        let key = dir_key(watched.path()).unwrap();
        assert!(dirs.read().unwrap().contains_key(&key));
        let seen: Vec<(&[u8], Option<&str>)> = events
            .iter()
            .map(|a| {
                assert_eq!(a.dir, key);
                // With pidfds the event names the process (the test's own), alive.
                assert_eq!(a.tid as u32, std::process::id());
                assert!(matches!(a.pidfd, PidRef::Held(_)), "{:?}", a.pidfd);
                assert!(a.pidfd.still_alive());
                let path = watched.path().join(std::ffi::OsStr::from_bytes(&a.name));
                (a.name.as_slice(), kind(a.mask, &path))
            })
            .collect();
        assert_eq!(
            seen,
            [
                (&b"linked"[..], Some("secret_linked")),
                (&b"moved"[..], Some("secret_moved_in"))
            ]
        );
    }

    /// A rename by a process that has exited and been reaped before the event is read
    /// comes with no pidfd: the pid is not trusted to name it any more.
    #[test]
    fn a_process_gone_before_its_event_is_read_is_known_to_be_gone() {
        let Some(Lab {
            g,
            watched,
            elsewhere: _elsewhere,
            dirs: _dirs,
            src,
        }) = Lab::new()
        else {
            return;
        };
        let status = std::process::Command::new("mv")
            .arg(&src)
            .arg(watched.path().join("moved"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut buf = vec![0u8; 8192];
        let n = nix::unistd::read(&g, &mut buf).unwrap();
        let (events, _) = parse(&buf[..n]);
        assert_eq!(events.len(), 1, "{events:?}");
        let a = &events[0];
        assert_eq!(a.name, b"moved");
        assert_ne!(a.tid as u32, std::process::id(), "the event is mv's");
        assert!(matches!(a.pidfd, PidRef::Gone), "{:?}", a.pidfd);
        assert!(!a.pidfd.still_alive());
    }
}
