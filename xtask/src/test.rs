//! `cargo xtask test`: the whole suite, with one closing summary line.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    build, dashboards, setup,
    util::{is_root, root, step},
};

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<String>,
    skips: Vec<String>,
}

impl Tally {
    fn check(&mut self, name: &str, r: Result<()>) {
        match r {
            Ok(()) => {
                eprintln!("check {name} ... ok");
                self.passed += 1;
            }
            Err(e) => {
                eprintln!("check {name} ... FAILED: {e:#}");
                self.failed += 1;
                self.failures.push(name.to_string());
            }
        }
    }

    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("check {name} ... SKIPPED: {why}");
        self.skipped += 1;
        self.skips.push(format!("{name}: {why}"));
    }

    /// Run a cargo test command, streaming its output and adding its counts.
    fn cargo_test(&mut self, label: &str, cmd: &mut Command) -> Result<()> {
        step(label);
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (mut p, mut f, mut seen) = (0, 0, false);
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                seen = true;
                p += count(rest, " passed");
                f += count(rest, " failed");
            }
        }
        let status = child.wait()?;
        self.passed += p;
        self.failed += f;
        if !status.success() && f == 0 {
            // Compilation failure or a crash: no per-test result to count.
            self.failed += 1;
            self.failures.push(format!("{label}: {status}"));
        } else if f > 0 {
            self.failures.push(format!("{label}: {f} failed"));
        }
        if !seen && status.success() {
            bail!("{label}: no test results printed");
        }
        Ok(())
    }
}

fn count(summary: &str, what: &str) -> usize {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(what.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The flood sizes of `cargo xtask stress` in `cargo xtask test` (× the bench's).
const STRESS_SCALE: f64 = 0.2;

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECS: u64 = 5;

pub fn test(unit_only: bool, filter: Option<String>) -> Result<()> {
    let root = root();
    let privileged = !unit_only && is_root();
    let mut t = Tally::default();

    if !unit_only {
        setup::setup(true)?;
    }
    // Unit tests: with the real object when we will need it anyway (one agent build).
    let object = if privileged {
        Some(build::build_ebpf()?)
    } else {
        None
    };
    let mut unit = match &object {
        Some(obj) => build::cargo_with_object(obj),
        None => {
            let mut c = Command::new("cargo");
            c.current_dir(&root);
            c
        }
    };
    unit.args([
        "test",
        "-p",
        "agent-common",
        "-p",
        "nodeward",
        "-p",
        "xtask",
    ]);
    t.cargo_test("unit tests (agent-common, nodeward, xtask)", &mut unit)?;

    // Style and lints are part of green: rustfmt --check and clippy -D warnings.
    t.check("rustfmt and clippy (cargo xtask lint)", build::lint());

    let golden = root.join("agent/testdata/metrics.golden.prom");
    match promtool() {
        Some(promtool) => {
            t.check(
                "promtool check metrics (golden exposition)",
                promtool_check_metrics(&promtool, &golden),
            );
            let rules = dashboards::rule_files(&root)?;
            t.check(
                "promtool check rules",
                run_ok(
                    Command::new(&promtool)
                        .args(["check", "rules"])
                        .args(&rules),
                ),
            );
            let tests = dashboards::rule_test_files(&root)?;
            t.check(
                "promtool test rules",
                run_ok(Command::new(&promtool).args(["test", "rules"]).args(&tests)),
            );
        }
        None => {
            for name in [
                "promtool check metrics",
                "promtool check rules",
                "promtool test rules",
            ] {
                t.skip(
                    name,
                    "promtool not installed (`cargo xtask setup --test-deps` installs it)",
                );
            }
        }
    }
    t.check(
        "shape: one id per detector in every crate, rules and dashboard; metric names; pure state machines; files <= 800 lines",
        crate::shape::check(&root),
    );
    t.check(
        "dashboards and rules reference only exported metrics",
        dashboards::check(&root, &golden),
    );
    t.check(
        "Grafana dashboards match Grafana's schema (@grafana/schema, TypeScript)",
        crate::grafana::check(&root),
    );
    t.check(
        "deploy/kubernetes: generated manifests current, capabilities = the systemd unit's, kubernetes-validate --strict, PrometheusRule by promtool",
        crate::kubernetes::check(&root, promtool().as_deref()),
    );
    t.check(
        "every alert links a runbook section in docs/runbooks",
        crate::runbooks::check(&root),
    );

    // Every parser of outside input, fuzzed briefly: a regression in a parser fails here.
    if unit_only {
        t.skip("fuzz targets (5 s each)", "--unit-only");
    } else {
        match crate::fuzz::each(FUZZ_SECS, &[]) {
            Ok(results) => {
                for (target, r) in results {
                    t.check(
                        &format!("fuzz {target} ({FUZZ_SECS} s, AddressSanitizer)"),
                        r.map(|_| ()),
                    );
                }
            }
            Err(e) => t.check("fuzz targets build", Err(e)),
        }
    }

    if privileged {
        let obj = object.expect("built above");
        step("building the agent for the privileged tests");
        let mut b = build::cargo_with_object(&obj);
        crate::util::run(b.args(["build", "-p", "nodeward"]))?;
        let bin = root.join("target/debug/nodeward");
        t.check(
            "nodeward check (every enabled program loads and attaches here)",
            nodeward_check(&bin),
        );
        let skip_log = root.join("target/e2e-skips.log");
        let _ = std::fs::remove_file(&skip_log);
        let mut e2e = build::cargo_with_object(&obj);
        e2e.args(["test", "-p", "nodeward-tests", "--", "--test-threads=1"])
            .env("NODEWARD_BIN", &bin)
            .env("NODEWARD_SKIP_LOG", &skip_log);
        // The Debian package (twice: install, then upgrade) and a fresh Debian root.
        let packaged = crate::package::for_tests(&root);
        t.check(
            "cargo xtask package and a debootstrap Debian 12 root (for the package test)",
            packaged
                .as_ref()
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e:#}")),
        );
        if let Ok(p) = &packaged {
            e2e.env("NODEWARD_DEB", &p.deb)
                .env("NODEWARD_DEB_UPGRADE", &p.upgrade)
                .env("NODEWARD_DEBOOTSTRAP", &p.root);
        }
        if let Some(f) = &filter {
            e2e.arg(f);
        }
        t.cargo_test("end-to-end tests (root, real kernel hooks)", &mut e2e)?;
        // Floods at a fifth of the bench's size against the static release agent: the
        // memory bound and the exact overflow accounting hold, both interfaces answer.
        t.check(
            "cargo xtask stress --scale 0.2 (RSS under 64 MiB, overflow counted exactly)",
            crate::build::build_static()
                .and_then(|b| crate::stress::stress(STRESS_SCALE, Some(b), false)),
        );
        if let Ok(skips) = std::fs::read_to_string(&skip_log) {
            for line in skips.lines().filter(|l| !l.is_empty()) {
                // A skipped end-to-end test returns early and was counted as passed.
                t.passed = t.passed.saturating_sub(1);
                let (name, why) = line.split_once('\t').unwrap_or((line, ""));
                t.skip(name, why);
            }
        }
    } else {
        let why = if unit_only {
            "--unit-only"
        } else {
            "not root: eBPF programs cannot be loaded"
        };
        t.skip("nodeward check", why);
        t.skip("end-to-end tests (all)", why);
    }

    eprintln!();
    for s in &t.skips {
        eprintln!("skipped: {s}");
    }
    for f in &t.failures {
        eprintln!("failed: {f}");
    }
    println!(
        "summary: {} passed, {} failed, {} skipped",
        t.passed, t.failed, t.skipped
    );
    if t.failed > 0 {
        bail!("{} failed", t.failed);
    }
    Ok(())
}

pub fn promtool() -> Option<std::path::PathBuf> {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn promtool_check_metrics(promtool: &Path, golden: &Path) -> Result<()> {
    let text =
        std::fs::File::open(golden).with_context(|| format!("opening {}", golden.display()))?;
    run_ok(
        Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(text),
    )
}

fn nodeward_check(bin: &Path) -> Result<()> {
    let out = Command::new(bin).arg("check").output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_cargo_test_summaries() {
        let ok = "ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (7, 0));
        let bad =
            "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (3, 2));
    }
}
