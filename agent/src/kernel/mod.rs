//! The kernel side of the agent: probing what this kernel allows, loading and attaching
//! the eBPF object, reading its ring buffer, and the task that owns the loaded object.

pub mod btf;
pub mod cgroup;
pub mod ebpf_log;
pub mod events;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod object;
pub mod owner;
pub mod packet;
pub mod probe;
pub mod programs;
