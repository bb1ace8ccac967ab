//! Who a process is, for `allowed_readers`: the executable it runs (device and inode of
//! /proc/PID/exe, compared with the configured path's) or the systemd unit whose cgroup
//! it is in. Never its `comm`, which any process sets for itself (a copy of `cat`
//! named `corosync` is not corosync). A process that has gone (the tracepoint route
//! reads after the fact) matches nothing: its read is reported as not allowed.

use std::os::unix::fs::MetadataExt;

use super::config::{AllowedReader, Reader};

fn dev_ino(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The systemd unit of `pid`: the last component of its cgroup path (the unified
/// hierarchy's, or systemd's own on a v1/hybrid machine) when it names a unit.
fn unit(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| *p != "/")
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })?;
    let last = path.rsplit('/').next()?;
    [".service", ".scope"]
        .iter()
        .any(|s| last.ends_with(s))
        .then(|| last.to_string())
}

/// Whether process `pid` is one of `readers`.
pub fn is_one_of(pid: u32, readers: &[&AllowedReader]) -> bool {
    if pid == 0 {
        return false;
    }
    let exe = dev_ino(&format!("/proc/{pid}/exe"));
    let unit = std::cell::OnceCell::new();
    readers.iter().any(|r| match &r.who {
        Reader::Exe(path) => exe.is_some() && exe == dev_ino(&path.to_string_lossy()),
        Reader::Unit(name) => unit.get_or_init(|| self::unit(pid)).as_deref() == Some(name),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn exe(path: &str) -> AllowedReader {
        AllowedReader {
            who: Reader::Exe(PathBuf::from(path)),
            prefix: None,
        }
    }

    /// This test process runs the test binary: it is that executable, and not `cat`;
    /// a copy of the binary under another path is another file.
    #[test]
    fn a_process_is_its_executable_not_a_copy_or_its_name() {
        let me = std::process::id();
        let bin = std::fs::read_link("/proc/self/exe").unwrap();
        let mine = exe(&bin.to_string_lossy());
        assert!(is_one_of(me, &[&mine]));
        assert!(!is_one_of(me, &[&exe("/bin/cat")]));
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy");
        std::fs::copy(&bin, &copy).unwrap();
        assert!(!is_one_of(me, &[&exe(&copy.to_string_lossy())]));
        assert!(!is_one_of(0, &[&mine]), "no process, no identity");
    }
}
