//! `nodeward check --program-cost SECS`: what each of the running agent's eBPF programs
//! costs on this node, sampled on demand. The kernel's run-time statistics
//! (`kernel.bpf_stats_enabled`, two clock reads per run of every program on the host)
//! are switched on for the sampling window only (BPF_ENABLE_STATS: off again when the
//! descriptor closes, also if this command is killed), so the agent can run without
//! them (`agent.program_stats = false`, the default).

use std::{collections::BTreeMap, time::Duration};

use aya::programs::loaded_programs;

use crate::kernel::programs::PROGRAMS;

/// The kernel keeps 15 bytes of a program's name.
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// (runs, nanoseconds) of every loaded program named like one of ours, by id.
fn sample() -> BTreeMap<u32, (String, u64, u64)> {
    // Names that share their first 15 bytes (session_getpeername4/6) show as the
    // kernel's name with an ellipsis.
    let mut ours: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in PROGRAMS {
        let names = ours.entry(kernel_name(p.name)).or_default();
        if !names.contains(&p.name) {
            names.push(p.name);
        }
    }
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let kname = info.name_as_str()?;
            let name = match ours.get(kname)?.as_slice() {
                [one] => one.to_string(),
                _ => format!("{kname}…"),
            };
            Some((
                info.id(),
                (name, info.run_count(), info.run_time().as_nanos() as u64),
            ))
        })
        .collect()
}

pub fn run(secs: u64) -> i32 {
    let stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!(
                "nodeward check --program-cost: cannot enable the kernel's run-time statistics: {e}"
            );
            return 1;
        }
    };
    let before = sample();
    if before.is_empty() {
        eprintln!(
            "nodeward check --program-cost: no nodeward program is loaded (is the agent running?)"
        );
        return 1;
    }
    eprintln!(
        "sampling {} programs for {secs} s (bpf_stats on for this window only)…",
        before.len()
    );
    std::thread::sleep(Duration::from_secs(secs));
    let after = sample();
    drop(stats);
    println!(
        "{:<24} {:>8} {:>12} {:>10}",
        "PROGRAM", "ID", "RUNS", "NS/RUN"
    );
    let mut total_ns = 0u64;
    for (id, (name, runs, ns)) in &after {
        let Some((_, runs0, ns0)) = before.get(id) else {
            continue; // loaded during the window
        };
        let (runs, ns) = (runs.saturating_sub(*runs0), ns.saturating_sub(*ns0));
        total_ns += ns;
        let per = ns
            .checked_div(runs)
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        println!("{name:<24} {id:>8} {runs:>12} {per:>10}");
    }
    println!(
        "eBPF CPU over the window: {:.3} % of one CPU (the statistics themselves add two clock reads per run)",
        total_ns as f64 / (secs.max(1) as f64 * 1e9) * 100.0
    );
    0
}
