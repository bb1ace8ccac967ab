//! The eBPF object embedded at build time (see build.rs and `cargo xtask build`).

/// The object, or an empty stub when the agent was built without bpf-linker
/// (plain `cargo build` / `cargo check` / `cargo test`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nodeward.bpf.o"));

#[derive(Debug, thiserror::Error)]
#[error(
    "this nodeward binary was built without its eBPF programs (stub object): build it with \
     `cargo xtask build` or start it with `cargo xtask run`"
)]
pub struct StubObject;

pub fn object() -> Result<&'static [u8], StubObject> {
    if OBJECT.is_empty() {
        Err(StubObject)
    } else {
        Ok(OBJECT)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_is_a_stub_exactly_when_built_without_one() {
        match option_env!("NODEWARD_EBPF_OBJECT") {
            None => {
                let err = super::object().unwrap_err().to_string();
                assert!(err.contains("cargo xtask"), "{err}");
            }
            Some(_) => {
                let obj = super::object().expect("real object embedded");
                assert_eq!(&obj[..4], b"\x7fELF", "embedded object is not ELF");
            }
        }
    }
}
