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
    "prometheus", // promtool: check metrics, check/test rules
    "iproute2",   // ip netns, veth
    "util-linux", // unshare, nsenter
    "procps",
    "iputils-ping",   // traffic between test namespaces
    "iputils-arping", // ARP requests for the duplicate-address tests
    "python3-scapy",  // crafted martian-source packets (/usr/bin/python3)
    "openssh-server", // a real sshd for the reboot/session tests
    "openssh-client",
    "corosync", // a real corosync/knet ring and rogue members
    "nftables", // the member-side packet counter (its own kernel view)
];

pub struct Tools {
    /// Directory holding `bpf-linker`, to put first on PATH for the eBPF build.
    pub bpf_linker_bin: PathBuf,
}

pub fn setup(test_deps: bool) -> Result<Tools> {
    let sysroot = PathBuf::from(
        output(
            Command::new("rustc")
                .arg("--print")
                .arg("sysroot")
                .current_dir(root()),
        )?
        .trim(),
    );
    ensure_rust_src(&sysroot)?;
    let bpf_linker_bin = ensure_bpf_linker(&sysroot)?;
    if test_deps {
        ensure_packages(TEST_PACKAGES)?;
    }
    Ok(Tools { bpf_linker_bin })
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    step("installing rust-src for the pinned toolchain (needed by -Z build-std=core)");
    run(Command::new("rustup")
        .args(["component", "add", "rust-src"])
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
