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
        "reboot" | "shutdown" | "poweroff" | "halt" | "telinit" | "systemctl" => {
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
                drop(f);
            }
            _ => {
                eprintln!(
                    "usage: nodeward-test-helper bad-reboot  (or run it under a reboot-family name)"
                );
                std::process::exit(2);
            }
        },
    }
}
