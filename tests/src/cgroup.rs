//! A cgroup v2 of the test's own.

use std::{path::PathBuf, process::Command, time::Duration};

use crate::wait_for;

/// A cgroup v2 of the test's own: cgroup2 mounted on a temp dir (hosts with a v1 or
/// hybrid layout have no v2 at /sys/fs/cgroup), a child cgroup in it. Processes are
/// put in by PID; the cgroup is removed and the mount detached on drop.
pub struct TestCgroup {
    mount: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new() -> Result<TestCgroup, String> {
        let mount = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = std::ffi::CString::new(mount.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mount(2) with valid NUL-terminated strings.
        let r = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(format!(
                "cannot mount cgroup2: {}",
                std::io::Error::last_os_error()
            ));
        }
        let path = mount
            .path()
            .join(format!("nodeward-test-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&path) {
            // SAFETY: detach what we mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            return Err(format!("cannot create a cgroup: {e}"));
        }
        Ok(TestCgroup { mount, path })
    }

    /// A shell command line that moves itself into this cgroup, then execs `argv`.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.path.display()
            ))
            .args(argv);
        c
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = wait_for(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.path).ok()
        });
        let target =
            std::ffi::CString::new(self.mount.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: detach the cgroup2 mount this guard created.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
