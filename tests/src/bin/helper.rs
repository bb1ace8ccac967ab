//! Test helper and stand-in binary. Named `reboot` (or any reboot-family name) it acts
//! as the stand-in: it makes a reboot(2) call that the kernel REJECTS (invalid magic2,
//! EINVAL) so the real hooks fire without any risk, writes a marker file when asked,
//! and exits. It never reboots anything (LAB.md SAFETY RULES).

use std::path::Path;

const MAGIC1: libc::c_long = 0xfee1_dead;
/// Not one of the four values the kernel accepts, so reboot(2) fails with EINVAL.
const INVALID_MAGIC2: libc::c_long = 0x0bad_0bad;
const VALID_MAGIC2: [libc::c_long; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
const _: () = {
    let mut i = 0;
    while i < VALID_MAGIC2.len() {
        assert!(
            VALID_MAGIC2[i] != INVALID_MAGIC2,
            "the stand-in must never pass a valid magic"
        );
        i += 1;
    }
};
const CMD_RESTART: libc::c_long = 0x0123_4567;

/// Calls reboot(2) with an invalid magic: returns the errno (EINVAL expected).
fn invalid_reboot() -> i32 {
    // SAFETY: with an invalid magic2 the kernel returns EINVAL before doing anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_reboot,
            MAGIC1,
            INVALID_MAGIC2,
            CMD_RESTART,
            0 as libc::c_long,
        )
    };
    if r == 0 {
        // Unreachable by construction; never continue as if nothing happened.
        eprintln!("reboot(2) with an invalid magic returned 0");
        std::process::exit(99);
    }
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = Path::new(&args[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match name {
        "reboot" | "shutdown" | "poweroff" | "halt" | "telinit" | "systemctl" | "busctl" => {
            if let Some(marker) = std::env::var_os("NODEWARD_TEST_MARKER") {
                std::fs::write(marker, args.join(" ")).expect("write marker");
            }
            let errno = invalid_reboot();
            println!("stand-in {name}: reboot(2) refused with errno {errno}");
        }
        _ => match args.get(1).map(String::as_str) {
            Some("bad-reboot") => {
                // `bad-reboot --set-loginuid N`: become a login session first (as
                // pam_loginuid does for a console login), so the origin is `local`.
                if args.get(2).map(String::as_str) == Some("--set-loginuid") {
                    let uid = args.get(3).cloned().unwrap_or_default();
                    if let Err(e) = std::fs::write("/proc/self/loginuid", &uid) {
                        let current =
                            std::fs::read_to_string("/proc/self/loginuid").unwrap_or_default();
                        if current.trim() == "4294967295" {
                            eprintln!("cannot set loginuid: {e}");
                            std::process::exit(3);
                        }
                    }
                }
                let errno = invalid_reboot();
                println!("{errno}");
                std::process::exit(if errno == libc::EINVAL { 0 } else { 1 });
            }
            // Opens /proc/sysrq-trigger and closes it WITHOUT writing: only a write
            // acts, so this is safe; the open alone is the intent nodeward reports.
            Some("open-sysrq") => {
                let write = args.get(2).map(String::as_str) == Some("--write-mode");
                let f = std::fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .open("/proc/sysrq-trigger");
                if args.iter().any(|a| a == "--hold") {
                    // Held until stdin closes (the test decides when).
                    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                }
                drop(f);
            }
            // Read a file by other routes than open(2)/openat(2): prints the bytes read,
            // or exits 1 with the error (EPERM when a watcher denied the open).
            Some("uring-read") => exit_with(uring_read(&args[2])),
            Some("handle-read") => exit_with(handle_read(&args[2])),
            _ => {
                eprintln!(
                    "usage: nodeward-test-helper bad-reboot | uring-read PATH | handle-read PATH  (or run it under a reboot-family name)"
                );
                std::process::exit(2);
            }
        },
    }
}

fn exit_with(r: std::io::Result<usize>) {
    match r {
        Ok(n) => println!("{n}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// Open and read `path` through io_uring (IORING_OP_OPENAT, then IORING_OP_READ).
fn uring_read(path: &str) -> std::io::Result<usize> {
    use io_uring::{IoUring, opcode, types};
    let mut ring = IoUring::new(4)?;
    let name = std::ffi::CString::new(path).expect("path without NUL");
    let mut run = |entry: io_uring::squeue::Entry| -> std::io::Result<i32> {
        // SAFETY: the entry's buffers (name, buf) outlive the submission, which is
        // waited for before this returns.
        unsafe { ring.submission().push(&entry) }.expect("room in the queue");
        ring.submit_and_wait(1)?;
        let cqe = ring.completion().next().expect("a completion");
        if cqe.result() < 0 {
            return Err(std::io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(cqe.result())
    };
    let fd = run(
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr())
            .flags(libc::O_RDONLY)
            .build(),
    )?;
    let mut buf = [0u8; 256];
    let n = run(opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build())?;
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    Ok(n as usize)
}

/// Open `path` by file handle (name_to_handle_at, then open_by_handle_at on its
/// directory's mount) and read it.
fn handle_read(path: &str) -> std::io::Result<usize> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    const MAX_HANDLE: usize = 128;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; MAX_HANDLE],
    }
    let mut h = Handle {
        bytes: MAX_HANDLE as u32,
        kind: 0,
        data: [0; MAX_HANDLE],
    };
    let name = std::ffi::CString::new(path).expect("path without NUL");
    let mut mount_id = 0;
    // SAFETY: `h` is a file_handle with room for MAX_HANDLE bytes, as declared.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            name.as_ptr(),
            (&raw mut h).cast(),
            &mut mount_id,
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
    let mount = std::fs::File::open(dir)?;
    // SAFETY: as above; the returned descriptor is owned by the File below.
    let fd =
        unsafe { libc::open_by_handle_at(mount.as_raw_fd(), (&raw mut h).cast(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
}
