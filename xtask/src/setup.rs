//! `cargo xtask setup`: everything the build and the tests need, installed by the
//! project itself, idempotently (TOOLCHAIN.md).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{cache_dir, is_root, output, root, run, step};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the end-to-end tests and rule checks use.
pub const TEST_PACKAGES: &[&str] = &[
    "prometheus",              // promtool: check metrics, check/test rules
    "prometheus-alertmanager", // a real Alertmanager for the last-gasp push
    "iproute2",                // ip netns, veth
    "util-linux",              // unshare, nsenter
    "procps",
    "iputils-ping",   // traffic between test namespaces
    "iputils-arping", // ARP requests for the duplicate-address tests
    "python3-scapy",  // crafted martian-source packets (/usr/bin/python3)
    "tcpdump",        // brings libpcap, which scapy's capture filters need (corosync flood replay)
    "openssh-server", // a real sshd for the reboot/session tests
    "openssh-client",
    "corosync",          // a real corosync/knet ring and rogue members
    "nftables",          // the member-side packet counter (its own kernel view)
    "debootstrap",       // a fresh Debian 12 root for the package test
    "systemd-container", // systemd-nspawn --boot: the packaged service under a real systemd
    "binutils",          // objdump: the package's libc6 dependency from the binary's symbols
    "g++",               // libFuzzer (C++), built by libfuzzer-sys for `cargo xtask fuzz`
];

#[derive(Clone)]
pub struct Tools {
    /// Directory holding `bpf-linker`, to put first on PATH for the eBPF build.
    pub bpf_linker_bin: PathBuf,
}

/// What this xtask run has already checked (test builds, lints and runs in one process:
/// each check once).
static TOOLS: std::sync::OnceLock<Tools> = std::sync::OnceLock::new();
static TOOLCHAIN: std::sync::OnceLock<()> = std::sync::OnceLock::new();
static PACKAGES: std::sync::OnceLock<()> = std::sync::OnceLock::new();

pub fn setup(test_deps: bool) -> Result<Tools> {
    if test_deps && PACKAGES.get().is_none() {
        ensure_packages(TEST_PACKAGES)?;
        let _ = PACKAGES.set(());
    }
    if let Some(t) = TOOLS.get() {
        return Ok(t.clone());
    }
    step("checking what the build needs (installing what is missing)");
    ensure_toolchain()?;
    let sysroot = PathBuf::from(
        output(
            Command::new("rustc")
                .arg("--print")
                .arg("sysroot")
                .current_dir(root()),
        )?
        .trim(),
    );
    let tools = Tools {
        bpf_linker_bin: ensure_bpf_linker(&sysroot)?,
    };
    Ok(TOOLS.get_or_init(|| tools).clone())
}

/// The toolchain `rust-toolchain.toml` pins: its channel and components.
pub struct Pinned {
    pub channel: String,
    pub components: Vec<String>,
}

pub fn pinned() -> Result<Pinned> {
    let path = root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let t = doc
        .get("toolchain")
        .and_then(|t| t.as_table())
        .with_context(|| format!("{}: no [toolchain] table", path.display()))?;
    let channel = t
        .get("channel")
        .and_then(|c| c.as_str())
        .with_context(|| format!("{}: no toolchain.channel", path.display()))?
        .to_string();
    let components = t
        .get("components")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Pinned {
        channel,
        components,
    })
}

/// The pinned toolchain with every component it lists. On these machines
/// RUSTUP_AUTO_INSTALL=0, and `rustup toolchain install X` without the toml does not
/// add the components, so both are checked here (idempotent, quick when present).
pub fn ensure_toolchain() -> Result<()> {
    if TOOLCHAIN.get().is_some() {
        return Ok(());
    }
    check_toolchain()?;
    let _ = TOOLCHAIN.set(());
    Ok(())
}

fn check_toolchain() -> Result<()> {
    let p = pinned()?;
    let listed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !listed.lines().any(|l| l.starts_with(&p.channel)) {
        step(&format!(
            "installing the pinned toolchain {} with {} (rustup toolchain install)",
            p.channel,
            p.components.join(", ")
        ));
        // With no argument, rustup reads rust-toolchain.toml: channel and components.
        run(Command::new("rustup")
            .args(["toolchain", "install"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(root()))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &p.channel,
    ]))?;
    let missing: Vec<&str> = p
        .components
        .iter()
        .map(String::as_str)
        .filter(|c| {
            !installed
                .lines()
                .any(|l| l.starts_with(&format!("{c}-")) || l == *c)
        })
        .collect();
    if missing.is_empty() {
        eprintln!(
            "    toolchain {} with {}: present",
            p.channel,
            p.components.join(", ")
        );
        return Ok(());
    }
    step(&format!(
        "adding components to toolchain {}: {}",
        p.channel,
        missing.join(", ")
    ));
    run(Command::new("rustup")
        .args(["component", "add", "--toolchain", &p.channel])
        .args(&missing)
        .current_dir(root()))
}

/// The toolchain's own shared libLLVM and its major version.
fn toolchain_llvm(sysroot: &Path) -> Result<(PathBuf, String)> {
    let verbose = output(
        Command::new("rustc")
            .arg("--version")
            .arg("--verbose")
            .current_dir(root()),
    )?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc --version --verbose shows no LLVM version")?
        .to_string();
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    found.sort();
    let Some(path) = found.pop() else {
        bail!(
            "no libLLVM.so.* in {}: this toolchain does not ship a shared LLVM",
            lib.display()
        );
    };
    Ok((path, major))
}

fn ensure_bpf_linker(sysroot: &Path) -> Result<PathBuf> {
    let (libllvm, major) = toolchain_llvm(sysroot)?;
    let lib_name = libllvm
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let prefix = cache_dir()
        .join("bpf-linker")
        .join(format!("{BPF_LINKER_VERSION}-{lib_name}"));
    let bin = prefix.join("bin");
    let linker = bin.join("bpf-linker");
    if linker.is_file()
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "    bpf-linker {BPF_LINKER_VERSION} (LLVM {major}): present in {}",
            bin.display()
        );
        return Ok(bin);
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM {major} into {} (about a minute, once)",
        prefix.display()
    ));
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    // A copy, not a link: it survives toolchain updates (bpf-linker's RUNPATH points here).
    fs::copy(&libllvm, prefix_lib.join(&lib_name))
        .with_context(|| format!("copying {}", libllvm.display()))?;
    let so = prefix_lib.join("libLLVM.so");
    let _ = fs::remove_file(&so);
    std::os::unix::fs::symlink(&lib_name, &so)?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .arg("--features")
        .arg(format!("llvm-{major}"))
        .arg("--root")
        .arg(&prefix)
        .env("LLVM_PREFIX", &prefix)
        .current_dir(root()))?;
    if !linker.is_file() {
        bail!("bpf-linker was not installed at {}", linker.display());
    }
    Ok(bin)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Install missing Debian packages without letting their services start.
pub fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!(
            "    Debian packages for the tests ({}): present",
            pkgs.len()
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages missing: {} (run `cargo xtask setup --test-deps` as root)",
            missing.join(" ")
        );
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        // Keep packaged daemons (prometheus, ...) from starting on install.
        fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let result = run(Command::new("apt-get").args(["update", "-q"])).and_then(|()| {
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    });
    if ours {
        let _ = fs::remove_file(policy);
    }
    result
}
