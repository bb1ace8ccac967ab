//! Embeds the eBPF object when `cargo xtask` built one (NODEWARD_EBPF_OBJECT), and an
//! empty stub otherwise, so `cargo check`, `clippy` and unit tests need no bpf-linker.
//! The agent refuses a stub at start-up with a clear message.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=NODEWARD_EBPF_OBJECT");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("nodeward.bpf.o");
    match env::var_os("NODEWARD_EBPF_OBJECT") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            fs::copy(&path, &out)
                .unwrap_or_else(|e| panic!("copy eBPF object {}: {e}", path.display()));
        }
        _ => fs::write(&out, b"").expect("write stub eBPF object"),
    }
}
