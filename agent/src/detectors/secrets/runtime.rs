//! `secrets` detector at run time: a secret opened by a process that is not an allowed
//! reader becomes a quarantine request (block its binary on exec, scoped to its cgroup)
//! and, once the engine applied it, the process itself is ended.

use std::{os::unix::fs::MetadataExt, path::Path};

use agent_common::secrets::{
    InodeKey, InodeWatch, PATH_LEN, SECRET_INODES, SECRET_INODES_CAPACITY,
};
use tracing::{error, info, warn};

use crate::{
    config::{Config, Mode},
    detectors::metrics::Metrics,
    detectors::secrets::SecretFinding,
    detectors::worker::Worker,
    kernel::owner::Handle,
    quarantine::kernel::Guard,
    quarantine::{ActionKind, Outcome, Request, Target, Trigger},
    time::Now,
};

/// The kernel's `dev_t` encoding (major << 20 | minor) of a userspace `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    (major << 20) | minor
}

fn watch_entry(path: &Path, path_id: u32) -> Option<(InodeKey, InodeWatch)> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= PATH_LEN {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut watch = InodeWatch {
        path_id,
        _pad: 0,
        path: [0; PATH_LEN],
    };
    watch.path[..bytes.len()].copy_from_slice(bytes);
    Some((
        InodeKey {
            dev: kernel_dev(meta.dev()),
            _pad: 0,
            ino: meta.ino(),
        },
        watch,
    ))
}

/// Files below `dir` (a few levels deep, symlinks not followed).
fn walk(dir: &Path, path_id: u32, depth: usize, out: &mut Vec<(InodeKey, InodeWatch)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if out.len() >= SECRET_INODES_CAPACITY as usize {
            return;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 3 => walk(&e.path(), path_id, depth + 1, out),
            Ok(t) if t.is_file() => out.extend(watch_entry(&e.path(), path_id)),
            _ => {}
        }
    }
}

/// The secret files of one configured entry (`i`: its index): the file itself, or the
/// files in a `dir/*` directory.
fn present_entry(i: usize, p: &Path) -> Vec<(InodeKey, InodeWatch)> {
    let mut out = Vec::new();
    let text = p.to_string_lossy();
    if let Some(dir) = text.strip_suffix("/*") {
        walk(Path::new(dir), i as u32, 0, &mut out);
    } else {
        out.extend(watch_entry(p, i as u32));
    }
    out
}

/// Keep the kernel's inode watch list equal to `wanted` (from [`scan`]).
pub fn sync_inodes(kernel: &Handle, wanted: Vec<(InodeKey, InodeWatch)>, metrics: &Metrics) {
    let n = wanted.len();
    match kernel.call(move |k| crate::kernel::maps::sync_hash(k, SECRET_INODES, &wanted)) {
        Ok(()) => metrics.secrets.set_files(n),
        Err(e) => {
            error!(detector = "secrets", error = %e, "cannot update the watched secret inodes")
        }
    }
}

/// The walks of one configured entry, on its own thread.
struct EntryWalk {
    worker: Worker<Vec<(InodeKey, InodeWatch)>>,
    warned: bool,
    /// What the last finished walk found (kept while a new one hangs).
    last: Vec<(InodeKey, InodeWatch)>,
}

/// Every second, the secret files present. Each configured entry is walked on its own
/// long-lived thread (a [`Worker`]): /etc/pve is pmxcfs, a FUSE file system that hangs
/// when the cluster does, and neither the run loop nor the other entries may hang with
/// it. An entry whose walk has not returned gets no second walk, keeps its last result,
/// and is reported once after 5 s.
pub async fn scan(
    mut config: tokio::sync::watch::Receiver<std::sync::Arc<Config>>,
    out: tokio::sync::mpsc::Sender<Vec<(InodeKey, InodeWatch)>>,
) {
    let mut walks: std::collections::HashMap<(usize, std::path::PathBuf), EntryWalk> =
        Default::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut over_capacity = false;
    loop {
        tick.tick().await;
        let c = config.borrow_and_update().clone();
        let entries: Vec<(usize, std::path::PathBuf)> = if c.detectors.secrets.enabled {
            c.detectors
                .secrets
                .paths
                .iter()
                .cloned()
                .enumerate()
                .collect()
        } else {
            Vec::new()
        };
        walks.retain(|k, _| entries.contains(k));
        for (i, path) in entries {
            let w = walks.entry((i, path.clone())).or_insert_with(|| EntryWalk {
                worker: Worker::new("secrets-scan", move || present_entry(i, &path)),
                warned: false,
                last: Vec::new(),
            });
            if let Err(e) = w.worker.start() {
                error!(detector = "secrets", error = %e, "cannot start the secret file listing")
            }
        }
        // Most walks take microseconds: collect what finished within a short grace.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for ((_, path), w) in walks.iter_mut() {
            match w.worker.result(std::time::Duration::ZERO) {
                Some(found) => {
                    if w.warned {
                        info!(detector = "secrets", path = %path.display(), "secret path answers again");
                    }
                    w.last = found;
                    w.warned = false;
                }
                None => {
                    if !w.warned && w.worker.busy_for() > Some(std::time::Duration::from_secs(5)) {
                        warn!(detector = "secrets", path = %path.display(), "listing this secret path takes longer than 5 s (a hung file system such as pmxcfs?); its files keep their last known inodes, the other paths are watched as usual");
                        w.warned = true;
                    }
                }
            }
        }
        let mut found: Vec<(InodeKey, InodeWatch)> = walks
            .values()
            .flat_map(|w| w.last.iter().copied())
            .collect();
        found.sort_by_key(|(_, w)| w.path_id);
        let cap = SECRET_INODES_CAPACITY as usize;
        if found.len() > cap && !over_capacity {
            warn!(
                detector = "secrets",
                files = found.len(),
                capacity = cap,
                "more secret files than the kernel's inode table holds; the files of the last configured paths are watched by path only"
            );
        }
        over_capacity = found.len() > cap;
        found.truncate(cap);
        if out.send(found).await.is_err() {
            return;
        }
    }
}

/// The cgroup v2 path of a process ("/system.slice/x.service"), if readable.
fn cgroup_path(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Why the process that opened a secret was not ended.
#[derive(Debug, thiserror::Error)]
enum NotEnded {
    #[error("already gone ({0})")]
    Gone(std::io::Error),
    #[error("pid {pid} is now {now} (not {comm}): left alone")]
    Reused { pid: u32, now: String, comm: String },
    #[error("kill: {0}")]
    Signal(nix::errno::Errno),
}

/// SIGKILL `pid` if it is still the process that opened the secret (same comm).
fn end_process(pid: u32, comm: &str) -> Result<(), NotEnded> {
    let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).map_err(NotEnded::Gone)?;
    if now.trim_end() != comm {
        return Err(NotEnded::Reused {
            pid,
            now: now.trim_end().to_string(),
            comm: comm.to_string(),
        });
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(NotEnded::Signal)
}

/// A secret opened by a process that is not an allowed reader.
pub fn quarantine(guard: &mut Guard, config: &Config, metrics: &Metrics, f: SecretFinding) {
    // The fanotify route's decision, journaled whatever the quarantine does next.
    if let Some(decision) = f.decision {
        let p = &f.process;
        let note = serde_json::json!({
            "path": f.path, "kind": f.kind, "pid": p.pid, "comm": p.comm, "uid": p.uid,
            "origin": p.origin, "argv": f.argv, "lineage": f.lineage,
        });
        let what = if decision == "denied" {
            "secrets_open_denied"
        } else {
            "secrets_open_would_deny"
        };
        if let Err(e) = guard.note(what, note) {
            error!(error = %e, "cannot journal a secret open decision");
        }
    }
    if !config.detectors.secrets.quarantine
        || config.action_mode(ActionKind::BlockExec) == Mode::Observe
    {
        return;
    }
    let p = &f.process;
    // cgroup id 1 is the root of the v2 hierarchy: a block there would not be scoped.
    if p.cgroup_id <= 1 {
        warn!(detector = "secrets", pid = p.pid, comm = %p.comm, "not quarantined: the process is in the root cgroup, an exec block would not be scoped");
        return;
    }
    let target = Target::Exec {
        binary: p.comm.clone(),
        cgroup_id: p.cgroup_id,
        cgroup: cgroup_path(p.pid),
    };
    if guard.active().iter().any(|q| q.target.same_key(&target)) {
        return; // already blocked there: the exec that got through was before it
    }
    let request = Request {
        target,
        ttl_s: None,
        trigger: Trigger {
            source: "secrets".into(),
            detail: format!(
                "{} of {} by {}[{}] (uid {}, origin {})",
                f.kind,
                f.path,
                p.comm,
                p.pid,
                p.uid,
                serde_json::to_string(&p.origin).unwrap_or_default()
            ),
        },
    };
    match guard.request(request, Now::system()) {
        Ok(Outcome::Applied { id, .. }) => {
            let ended = end_process(p.pid, &p.comm);
            match &ended {
                Ok(()) => {
                    warn!(detector = "secrets", id, pid = p.pid, comm = %p.comm, path = %f.path, "quarantined: exec of {} blocked in its cgroup, process {} ended", p.comm, p.pid)
                }
                Err(why) => {
                    warn!(detector = "secrets", id, pid = p.pid, comm = %p.comm, path = %f.path, "quarantined: exec of {} blocked in its cgroup; process not ended: {why}", p.comm)
                }
            }
            let note = serde_json::json!({
                "quarantine_id": id, "pid": p.pid, "comm": p.comm, "path": f.path,
                "ended": ended.is_ok(), "why": ended.err().map(|e| e.to_string()),
            });
            if let Err(e) = guard.note("secrets_process_ended", note) {
                error!(error = %e, "cannot journal the end of a process");
            }
        }
        Ok(outcome) => {
            info!(detector = "secrets", pid = p.pid, comm = %p.comm, outcome = ?outcome, "quarantine requested for a secret reader")
        }
        Err(e) => error!(detector = "secrets", error = %e, "quarantine request failed"),
    }
    metrics.quarantine.sync(guard);
}

/// The session detector's record of a process (pid → origin), looked up by the
/// fanotify route.
use crate::detectors::procfs::OriginLookup;

/// The fanotify route of the detector: started when the configuration asks for it
/// (and this kernel allows it), stopped when it no longer does.
pub struct FanotifyRoute {
    watcher: Option<super::fanotify::Watcher>,
    origin: OriginLookup,
    /// The files present at the last scan (path, device, inode).
    present: Vec<(std::path::PathBuf, u64, u64)>,
}

impl FanotifyRoute {
    pub fn new(kernel: &Handle, agent: &crate::metrics::Agent) -> FanotifyRoute {
        let origin = crate::detectors::procfs::origin_lookup(kernel, "secrets", agent);
        FanotifyRoute {
            watcher: None,
            origin,
            present: Vec::new(),
        }
    }

    /// Start or stop the watcher for `config` (at start-up and on each reload).
    pub fn configure(
        &mut self,
        config: &Config,
        updates: &tokio::sync::watch::Receiver<std::sync::Arc<Config>>,
        findings: &tokio::sync::mpsc::Sender<crate::detectors::Finding>,
        metrics: &std::sync::Arc<Metrics>,
    ) {
        let s = &config.detectors.secrets;
        let fanotify = s.uses_fanotify();
        metrics.secrets.set_route(fanotify);
        let want = s.enabled && fanotify;
        if !want {
            self.watcher = None;
            return;
        }
        if self.watcher.is_none() {
            match super::fanotify::Watcher::start(
                updates.clone(),
                findings.clone(),
                metrics.clone(),
                self.origin.clone(),
            ) {
                Ok(w) => {
                    w.set_present(self.present.clone());
                    self.watcher = Some(w);
                }
                Err(e) => {
                    error!(detector = "secrets", error = %e, "the fanotify route cannot start: secret opens are not watched (set detectors.secrets.route = \"tracepoint\")");
                    metrics.agent.set_detector_up("secrets", false);
                }
            }
        }
    }

    /// The secret files present now (from [`scan`]).
    pub fn set_present(&mut self, found: &[(InodeKey, InodeWatch)]) {
        self.present = found
            .iter()
            .map(|(k, w)| {
                let path = String::from_utf8_lossy(agent_common::cstr_bytes(&w.path)).into_owned();
                // The kernel's dev_t back to userspace's encoding.
                let dev = libc::makedev(k.dev >> 20, k.dev & 0xf_ffff);
                (std::path::PathBuf::from(path), dev, k.ino)
            })
            .collect();
        if let Some(w) = &self.watcher {
            w.set_present(self.present.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_files_include_directory_entries_and_skip_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let priv_dir = dir.path().join("priv");
        std::fs::create_dir(&priv_dir).unwrap();
        std::fs::write(priv_dir.join("authkey.key"), b"k").unwrap();
        std::fs::write(priv_dir.join("authorized_keys"), b"k").unwrap();
        std::fs::create_dir(priv_dir.join("subdir")).unwrap();
        let single = dir.path().join("authkey");
        std::fs::write(&single, b"k").unwrap();
        let mut config = Config::default();
        config.detectors.secrets.paths = vec![
            single.clone(),
            priv_dir.join("*"),
            dir.path().join("not-there"),
        ];
        let found: Vec<_> = config
            .detectors
            .secrets
            .paths
            .iter()
            .enumerate()
            .flat_map(|(i, p)| present_entry(i, p))
            .collect();
        let mut paths: Vec<(u32, String)> = found
            .iter()
            .map(|(_, w)| {
                (
                    w.path_id,
                    String::from_utf8_lossy(agent_common::cstr_bytes(&w.path)).into_owned(),
                )
            })
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(paths[0], (0, single.display().to_string()));
        assert!(paths[1..].iter().all(|(id, _)| *id == 1));
        let meta = std::fs::metadata(&single).unwrap();
        let key = found.iter().find(|(_, w)| w.path_id == 0).unwrap().0;
        assert_eq!(key.ino, meta.ino());
        assert_eq!(key.dev, kernel_dev(meta.dev()));
    }
}
