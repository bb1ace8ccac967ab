//! `cargo xtask fuzz`: every cargo-fuzz (libFuzzer) target in fuzz/, each for a set
//! time, seeded from fuzz/seeds/<target>/; cargo-fuzz installed on first use into the
//! cache. A crash or a leak fails the run and names the input that caused it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    setup,
    util::{cache_dir, path_with, root, run, step},
};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// One target's run, from libFuzzer's final statistics.
pub struct Outcome {
    pub target: String,
    pub execs: u64,
    pub execs_per_sec: u64,
    /// Coverage points (edges) reached, and the corpus size at the end.
    pub cov: u64,
    pub corpus: u64,
    pub peak_rss_mb: u64,
}

/// The targets fuzz/Cargo.toml declares, in its order.
pub fn targets() -> Result<Vec<String>> {
    let manifest = fs::read_to_string(root().join("fuzz/Cargo.toml"))?;
    let doc: toml::Table = manifest.parse().context("fuzz/Cargo.toml")?;
    let bins = doc
        .get("bin")
        .and_then(|b| b.as_array())
        .context("fuzz/Cargo.toml declares no [[bin]] targets")?;
    Ok(bins
        .iter()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_string))
        .collect())
}

/// Build every target once, then run each for `secs` seconds (all when `only` is
/// empty); fails when any target fails, after running the others.
pub fn fuzz(secs: u64, only: &[String]) -> Result<()> {
    let results = each(secs, only)?;
    let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let ok: Vec<Outcome> = ok.into_iter().filter_map(|(_, r)| r.ok()).collect();
    eprintln!("\n{}", table(&ok));
    let summary = root().join("target/fuzz/summary.md");
    fs::write(&summary, table(&ok))?;
    eprintln!("(also in {})", summary.display());
    if !failed.is_empty() {
        for (t, r) in &failed {
            if let Err(e) = r {
                eprintln!("fuzz target {t} FAILED: {e:#}");
            }
        }
        let names: Vec<&str> = failed.iter().map(|(t, _)| t.as_str()).collect();
        bail!("fuzz targets failed: {}", names.join(", "));
    }
    Ok(())
}

/// Build the targets once, then run each; one result per target.
pub fn each(secs: u64, only: &[String]) -> Result<Vec<(String, Result<Outcome>)>> {
    setup::ensure_toolchain()?;
    let cargo_fuzz = ensure_cargo_fuzz()?;
    let all = targets()?;
    for t in only {
        if !all.contains(t) {
            bail!("no fuzz target `{t}`; the targets are: {}", all.join(", "));
        }
    }
    let chosen: Vec<String> = if only.is_empty() { all } else { only.to_vec() };
    step(&format!(
        "building {} fuzz targets (AddressSanitizer, debug assertions; a few minutes the first time)",
        chosen.len()
    ));
    run(&mut fuzz_cmd(&cargo_fuzz, "build"))?;
    Ok(chosen
        .into_iter()
        .map(|target| {
            step(&format!("fuzzing {target} for {secs} s"));
            let r = run_one(&cargo_fuzz, &target, secs);
            if let Ok(o) = &r {
                eprintln!(
                    "    {} executions, {} edges covered, corpus {}",
                    o.execs, o.cov, o.corpus
                );
            }
            (target, r)
        })
        .collect())
}

/// `cargo fuzz <verb>` on the pinned toolchain: libFuzzer's instrumentation needs
/// unstable rustc flags, allowed for this one command only (TOOLCHAIN.md).
fn fuzz_cmd(cargo_fuzz: &Path, verb: &str) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root())
        .env("PATH", path_with(cargo_fuzz))
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "fuzz",
            verb,
            "--fuzz-dir",
            "fuzz",
            "--target-dir",
            "target/fuzz",
        ]);
    if verb == "build" {
        c.arg("--sanitizer=address");
    }
    c
}

fn run_one(cargo_fuzz: &Path, target: &str, secs: u64) -> Result<Outcome> {
    let root = root();
    let corpus = root.join("target/fuzz/corpus").join(target);
    let artifacts = root.join("target/fuzz/artifacts").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(&artifacts)?;
    if !seeds.is_dir() {
        bail!(
            "fuzz target {target} has no seed corpus at {}",
            seeds.display()
        );
    }
    let out = fuzz_cmd(cargo_fuzz, "run")
        .arg("--sanitizer=address")
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .arg("-max_len=65536")
        .arg("-rss_limit_mb=2048")
        .output()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({}); the input is in {}:\n{}",
            out.status,
            artifacts.display(),
            tail.join("\n")
        );
    }
    parse(target, &log).with_context(|| format!("no final statistics from {target}:\n{log}"))
}

/// libFuzzer's closing lines: `#N DONE cov: C ft: F corp: K/...` and `stat::...`.
fn parse(target: &str, log: &str) -> Option<Outcome> {
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let last = log.lines().rfind(|l| l.contains(" cov: "))?;
    let field = |name: &str| {
        let rest = last.split(&format!(" {name}: ")).nth(1)?;
        rest.split(['/', ' ']).next()?.parse::<u64>().ok()
    };
    Some(Outcome {
        target: target.to_string(),
        execs: stat("number_of_executed_units")?,
        execs_per_sec: stat("average_exec_per_sec")?,
        cov: field("cov")?,
        corpus: field("corp")?,
        peak_rss_mb: stat("peak_rss_mb")?,
    })
}

fn table(out: &[Outcome]) -> String {
    let mut s = String::from(
        "| target | executions | exec/s | coverage (edges) | corpus | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for o in out {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            o.target, o.execs, o.execs_per_sec, o.cov, o.corpus, o.peak_rss_mb
        ));
    }
    s
}

/// cargo-fuzz from crates.io into the cache (about 30 s, once).
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let prefix = cache_dir().join("cargo-fuzz").join(CARGO_FUZZ_VERSION);
    let bin = prefix.join("bin");
    if bin.join("cargo-fuzz").is_file() {
        eprintln!(
            "    cargo-fuzz {CARGO_FUZZ_VERSION}: present in {}",
            bin.display()
        );
        return Ok(bin);
    }
    step(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (about 30 s, once)",
        prefix.display()
    ));
    run(Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ])
        .arg("--root")
        .arg(&prefix)
        // In the project root: built by the pinned toolchain; with its own lock file.
        .current_dir(root()))?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_statistics() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 3/40b exec/s: 0 rss: 40Mb\n\
                   #144247\tDONE   cov: 812 ft: 2210 corp: 95/3412b lim: 4096 exec/s: 13113 rss: 61Mb\n\
                   Done 144247 runs in 11 second(s)\n\
                   stat::number_of_executed_units: 144247\nstat::average_exec_per_sec:     13113\n\
                   stat::new_units_added:          92\nstat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              61\n";
        let o = parse("t", log).unwrap();
        assert_eq!(
            (o.execs, o.execs_per_sec, o.cov, o.corpus, o.peak_rss_mb),
            (144247, 13113, 812, 95, 61)
        );
        assert!(parse("t", "crashed before any stats").is_none());
    }

    #[test]
    fn every_target_has_a_source_and_seeds() {
        let targets = targets().unwrap();
        assert!(targets.len() >= 8, "{targets:?}");
        for t in targets {
            assert!(
                root().join(format!("fuzz/fuzz_targets/{t}.rs")).is_file(),
                "{t}"
            );
            let seeds = fs::read_dir(root().join("fuzz/seeds").join(&t))
                .unwrap()
                .count();
            assert!(seeds > 0, "{t} has no seeds");
        }
    }
}
