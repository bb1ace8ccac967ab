//! Building the eBPF object and the agent.

use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::{
    setup,
    util::{is_root, root, run, step},
};

/// Path of the compiled eBPF object.
pub fn ebpf_object() -> PathBuf {
    root().join("target/ebpf/bpfel-unknown-none/release/nodeward")
}

/// Build the eBPF programs with bpf-linker (stable toolchain, build-std scoped by
/// RUSTC_BOOTSTRAP to this one command).
pub fn build_ebpf() -> Result<PathBuf> {
    let tools = setup::setup(false)?;
    step("building eBPF programs (agent-ebpf, bpfel-unknown-none)");
    run(ebpf_cargo("build", "target/ebpf")
        .env("PATH", crate::util::path_with(&tools.bpf_linker_bin)))?;
    let obj = ebpf_object();
    if !obj.is_file() {
        bail!("eBPF object missing after build: {}", obj.display());
    }
    Ok(obj)
}

/// `cargo <verb>` on the eBPF crate for bpfel-unknown-none (release, build-std=core on
/// the pinned stable toolchain: RUSTC_BOOTSTRAP scoped to this one command).
fn ebpf_cargo(verb: &str, target_dir: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args([
        verb,
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ])
    .arg("--target-dir")
    .arg(root().join(target_dir))
    .current_dir(root().join("agent-ebpf"))
    .env("RUSTC_BOOTSTRAP", "1")
    .env_remove("RUSTFLAGS")
    // BTF in the object: the kernel wants function info for bpf_loop's callbacks.
    .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=--btf");
    cmd
}

/// A cargo command that embeds the real eBPF object into the agent.
pub fn cargo_with_object(obj: &PathBuf) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).env("NODEWARD_EBPF_OBJECT", obj);
    cmd
}

/// Build everything; returns the agent binary.
pub fn build(release: bool) -> Result<PathBuf> {
    let obj = build_ebpf()?;
    step("building the agent (nodeward) with the eBPF object embedded");
    let mut cmd = cargo_with_object(&obj);
    cmd.args(["build", "-p", "nodeward"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("nodeward"))
}

/// The release agent as one static binary (glibc linked in, no shared library needed):
/// what the Debian package installs and the container image holds.
pub fn build_static() -> Result<PathBuf> {
    let obj = build_ebpf()?;
    let target = host_target()?;
    step(&format!(
        "building the static release agent ({target}, crt-static) with the eBPF object embedded"
    ));
    let mut cmd = cargo_with_object(&obj);
    cmd.args(["build", "-p", "nodeward", "--release", "--target", &target])
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    run(&mut cmd)?;
    Ok(root().join("target").join(target).join("release/nodeward"))
}

fn host_target() -> Result<String> {
    let out = crate::util::output(Command::new("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("rustc -vV printed no host"))
}

/// `cargo xtask image`: target/image/ holds the static binary and the Containerfile
/// (FROM scratch), ready for `docker build` / `podman build`.
pub fn image() -> Result<PathBuf> {
    let bin = build_static()?;
    let dir = root().join("target/image");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&bin, dir.join("nodeward"))?;
    std::fs::copy(
        root().join("deploy/container/Containerfile"),
        dir.join("Containerfile"),
    )?;
    eprintln!(
        "    {}: build it with `docker build -t nodeward:{} {}` (or podman build)",
        dir.display(),
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    Ok(dir)
}

pub fn run_agent(release: bool, args: Vec<String>) -> Result<()> {
    let bin = build(release)?;
    let args = if args.is_empty() {
        vec!["run".to_string()]
    } else {
        args
    };
    if !is_root() {
        bail!(
            "nodeward loads eBPF programs and needs root: run `sudo -E cargo xtask run` (or as root)"
        );
    }
    step(&format!("{} {}", bin.display(), args.join(" ")));
    let status = Command::new(&bin).args(&args).status()?;
    std::process::exit(status.code().unwrap_or(1));
}

/// README's metrics reference from the agent's metric definitions (the unit test that
/// checks it rewrites it with UPDATE_DOCS=1).
pub fn docs() -> Result<()> {
    setup::ensure_toolchain()?;
    step("generating the README metrics reference from the agent's metric definitions");
    run(Command::new("cargo")
        .args([
            "test",
            "-p",
            "nodeward",
            "--lib",
            "readme_metrics_reference_is_generated_from_the_code",
        ])
        .env("UPDATE_DOCS", "1")
        .current_dir(root()))?;
    step("README.md metrics reference is up to date");
    Ok(())
}

pub fn lint() -> Result<()> {
    // rustfmt and clippy are components of the pinned toolchain: a missing one is
    // installed here, never reported as a lint failure.
    setup::ensure_toolchain()?;
    step("rustfmt --check (workspace and agent-ebpf)");
    run(Command::new("cargo")
        .args(["fmt", "--all", "--check"])
        .current_dir(root()))?;
    run(Command::new("cargo")
        .args(["fmt", "--check"])
        .current_dir(root().join("agent-ebpf")))?;
    step("clippy (warnings are errors)");
    run(Command::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root()))?;
    // The eBPF crate is outside the workspace (it builds only for bpfel-unknown-none):
    // linted with the same lints (its Cargo.toml repeats them), checked without
    // bpf-linker (clippy does not link).
    step("clippy on agent-ebpf (bpfel-unknown-none, warnings are errors)");
    run(ebpf_cargo("clippy", "target/ebpf-clippy").args(["--", "-D", "warnings"]))
}
