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
    for line in route_lines(config, kernel.statuses()) {
        println!("{line}");
    }
    let s = &config.detectors.secrets;
    if s.enabled
        && s.route == Route::Fanotify
        && let Err(why) = crate::detectors::secrets::fanotify::available()
    {
        println!("secrets route: fanotify configured but unavailable (no permission group: {why})");
        code = 1;
    }
    let syscall_tps = kernel
        .statuses()
        .iter()
        .filter(|s| {
            s.status == Status::Attached
                && matches!(
                    s.spec.hook,
                    programs::Hook::TracePoint {
                        category: "syscalls",
                        ..
                    }
                )
        })
        .count();
    println!(
        "syscall tracepoints attached: {syscall_tps}{}",
        if syscall_tps > 0 {
            " (any one puts every syscall of every process on this node on the kernel's slow path)"
        } else {
            ""
        }
    );
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

/// One line per route group of an enabled detector: the route in use, and for a
/// fallback why and what it costs.
fn route_lines(config: &Config, statuses: &[programs::ProgramStatus]) -> Vec<String> {
    let mut out = Vec::new();
    for (group, preferred, fallback) in programs::ROUTE_GROUPS {
        let detector = group.split('.').next().unwrap_or(group);
        if !config.enabled_detectors().contains(&detector) {
            continue;
        }
        let in_use = crate::kernel::loader::route_in_use(statuses);
        let fallback_on = in_use.iter().any(|(g, fallback)| g == group && *fallback);
        if !fallback_on {
            let note = if *group == "reboot.sysrq"
                && !std::path::Path::new(crate::detectors::reboot::sysrq::TRIGGER).exists()
            {
                "; this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ unset): nothing to watch"
            } else {
                ""
            };
            // What the preferred route spares the node.
            let spared = if *group == "session.storage" {
                "no program on task exit"
            } else {
                "no syscall tracepoint"
            };
            out.push(format!("route {group}: {preferred} ({spared}{note})"));
            continue;
        }
        let why = statuses
            .iter()
            .filter(|s| s.spec.route == programs::Route::Preferred(group))
            .find(|s| s.status != Status::Attached)
            .map(|s| s.status.reason().to_string())
            .unwrap_or_else(|| {
                if config.detectors.forced_fallback(detector) {
                    format!("forced (detectors.{detector}.route = \"tracepoint\")")
                } else {
                    "the preferred route is unavailable on this machine".into()
                }
            });
        out.push(format!("route {group}: FALLBACK {fallback} (why: {why})"));
    }
    out
}
