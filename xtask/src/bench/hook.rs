//! The kernel's TC hook alone, for the packet workloads' fourth side: an empty
//! classifier (`return TCX_NEXT`) attached with tcx at ingress on the interfaces the
//! agent's packet program takes in the bench network, and no agent. Its ratio is what
//! any TC program on those interfaces costs on this machine before doing any work: the
//! floor under the agent's own packet ratio.
//!
//! Two bpf(2) calls with a fixed two-instruction program: loading the agent's eBPF
//! object for its empty `net_floor` would create every one of the agent's maps too.

use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{Result, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD (the kernel takes a
/// shorter attribute whose missing tail is zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The leading fields of `union bpf_attr` for BPF_LINK_CREATE with a tcx target
/// (no relative program, no expected revision: appended last).
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    /// The kernel's `expected_revision` is a __u64: 8-byte aligned, at offset 24.
    _pad: u32,
    expected_revision: u64,
}

// The layouts the kernel reads (include/uapi/linux/bpf.h).
const _: () = assert!(std::mem::size_of::<ProgLoad>() == 64);
const _: () = assert!(std::mem::offset_of!(ProgLoad, prog_name) == 48);
const _: () = assert!(std::mem::offset_of!(LinkCreate, expected_revision) == 24);

fn bpf<T>(cmd: libc::c_long, attr: &mut T, what: &str) -> Result<OwnedFd> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of union bpf_attr whose
    // size is passed with it; the kernel reads only that many bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD or BPF_LINK_CREATE returns a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An empty TC program attached at ingress on each interface; detached when dropped
/// (the links are not pinned: closing their descriptors detaches them).
pub struct EmptyHook {
    _prog: OwnedFd,
    _links: Vec<OwnedFd>,
}

impl EmptyHook {
    pub fn attach(interfaces: &[&str]) -> Result<Self> {
        // r0 = -1 (TCX_NEXT: carry on as if nothing were attached); exit. Each
        // instruction is 8 bytes: opcode, registers, 16-bit offset, 32-bit immediate
        // (little-endian: these programs run on x86-64 and arm64 hosts).
        let insns: [[u8; 8]; 2] = [
            [0xb7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..10].copy_from_slice(b"bench_hook");
        let mut load = ProgLoad {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        let prog = bpf(BPF_PROG_LOAD, &mut load, "loading the empty TC program")?;
        let mut links = Vec::new();
        for iface in interfaces {
            let c = std::ffi::CString::new(*iface)?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                bail!(
                    "empty TC program: interface {iface}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let mut link = LinkCreate {
                prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
                target_ifindex: ifindex,
                attach_type: BPF_TCX_INGRESS,
                ..Default::default()
            };
            links.push(bpf(
                BPF_LINK_CREATE,
                &mut link,
                &format!(
                    "attaching the empty TC program to {iface} (tcx ingress, kernel 6.6 or later)"
                ),
            )?);
        }
        Ok(Self {
            _prog: prog,
            _links: links,
        })
    }
}
