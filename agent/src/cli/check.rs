//! `nodeward check`: probe the kernel, load, verify and attach every enabled program,
//! print a table, exit non-zero if an enabled detector cannot run.

use crate::detectors::secrets::config::Route;
use crate::{
    config::Config,
    detectors,
    kernel::loader::Kernel,
    kernel::probe,
    kernel::programs::{self, Status},
};

/// Returns the process exit code.
pub fn check(config: &Config) -> i32 {
    let mut facts = probe::probe();
    println!("kernel {}", facts.release);
    for m in &facts.mounted {
        println!("mounted {m}");
    }
    for e in &facts.mount_errors {
        println!("warning: {e}");
    }
    match &facts.btf_error {
        Some(e) => println!("BTF: unavailable ({e})"),
        None if facts.offsets_missing.is_empty() => println!("BTF: all struct offsets resolved"),
        None => println!("BTF: missing {}", facts.offsets_missing.join(", ")),
    }
    let kernel = match Kernel::load(&mut facts, config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("nodeward check: {e}");
            return 1;
        }
    };
    println!();
    println!("{:<16} {:<8} DETAIL", "PROGRAM TYPE", "LOADS");
    for t in &facts.program_types {
        println!(
            "{:<16} {:<8} {}",
            t.name,
            if t.supported { "yes" } else { "no" },
            t.detail
        );
    }
    println!();
    println!(
        "{:<10} {:<24} {:<46} {:<12} REASON",
        "DETECTOR", "PROGRAM", "HOOK", "STATUS"
    );
    for s in kernel.statuses() {
        println!(
            "{:<10} {:<24} {:<46} {:<12} {}",
            s.spec.detector,
            s.spec.name,
            s.spec.hook.to_string(),
            s.status.label(),
            s.status.reason()
        );
    }
    println!();
    let mut code = 0;
    for d in detectors::ALL {
        match programs::detector_state(d, kernel.statuses()) {
            Ok(()) => println!("detector {d}: up"),
            Err(reason) => {
                let enabled = config.enabled_detectors().contains(d);
                println!(
                    "detector {d}: {} ({reason})",
                    if enabled { "DOWN" } else { "off" }
                );
                if enabled {
                    code = 1;
                }
            }
        }
    }
    println!();
    let s = &config.detectors.secrets;
    match (s.route, crate::detectors::secrets::fanotify::available()) {
        (_, _) if !s.enabled => {}
        (Route::Tracepoint, _) => println!(
            "secrets route: tracepoint (configured; the openat syscall tracepoints put every syscall on this node on the slow path)"
        ),
        (_, Ok(())) => println!(
            "secrets route: fanotify (permission events on the secret files and their directories; no syscall tracepoint)"
        ),
        (Route::Auto, Err(why)) => println!(
            "secrets route: tracepoint (fallback: no fanotify permission group: {why}; every syscall on this node takes the slow path)"
        ),
        (Route::Fanotify, Err(why)) => {
            println!(
                "secrets route: fanotify configured but unavailable (no permission group: {why})"
            );
            code = 1;
        }
    }
    let failed = kernel
        .statuses()
        .iter()
        .filter(|s| matches!(s.status, Status::Failed(_)))
        .count();
    if failed > 0 {
        println!("{failed} program(s) failed");
        code = 1;
    }
    code
}
