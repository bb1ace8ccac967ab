//! Cgroup socket programs on the root of the cgroup v2 hierarchy (the session and
//! corosync detectors' default routes). On a hybrid machine the unified hierarchy is
//! mounted at /sys/fs/cgroup/unified and every process is in it too.

use std::path::{Path, PathBuf};

use aya::programs::{
    CgroupAttachMode, CgroupSock, CgroupSockAddr, cgroup_sock::CgroupSockLinkId,
    cgroup_sock_addr::CgroupSockAddrLinkId,
};

/// Where the unified (v2) cgroup hierarchy is mounted: /sys/fs/cgroup, or
/// /sys/fs/cgroup/unified on hybrid machines; `None` without one.
pub fn v2_root() -> Option<&'static Path> {
    static ROOT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        super::probe::mounts()
            .into_iter()
            .find_map(|(point, fstype)| (fstype == "cgroup2").then_some(point))
    })
    .as_deref()
}

/// Why a cgroup program is not attached.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted")]
    NoHierarchy,
    #[error("{0}: {1}")]
    Open(String, std::io::Error),
    #[error("program missing from the eBPF object")]
    Missing,
    #[error("not a cgroup socket program: {0}")]
    Type(aya::programs::ProgramError),
    #[error("load: {0}")]
    Load(String),
    #[error("attach to {0}: {1}")]
    Attach(String, String),
    #[error("detach: {0}")]
    Detach(aya::programs::ProgramError),
}

/// An attached cgroup program.
pub enum CgroupLink {
    SockAddr(CgroupSockAddrLinkId),
    Sock(CgroupSockLinkId),
}

/// Load (once) and attach `program` to the cgroup v2 root with a BPF link (links
/// always sit alongside other programs there; the kernel refuses attach flags on one).
pub fn attach(ebpf: &mut aya::Ebpf, program: &str) -> Result<CgroupLink, CgroupError> {
    let root = v2_root().ok_or(CgroupError::NoHierarchy)?;
    let dir =
        std::fs::File::open(root).map_err(|e| CgroupError::Open(root.display().to_string(), e))?;
    let prog = ebpf.program_mut(program).ok_or(CgroupError::Missing)?;
    let at = || root.display().to_string();
    // The error with its causes (aya's syscall errors keep the errno in the source).
    let first = |e: aya::programs::ProgramError| {
        crate::kernel::loader::first_line(&crate::kernel::loader::with_causes(&e))
    };
    if let Ok(p) = TryInto::<&mut CgroupSockAddr>::try_into(&mut *prog) {
        if p.fd().is_err() {
            p.load().map_err(|e| CgroupError::Load(first(e)))?;
        }
        return p
            .attach(&dir, CgroupAttachMode::Single)
            .map(CgroupLink::SockAddr)
            .map_err(|e| CgroupError::Attach(at(), first(e)));
    }
    let p: &mut CgroupSock = prog.try_into().map_err(CgroupError::Type)?;
    if p.fd().is_err() {
        p.load().map_err(|e| CgroupError::Load(first(e)))?;
    }
    p.attach(&dir, CgroupAttachMode::Single)
        .map(CgroupLink::Sock)
        .map_err(|e| CgroupError::Attach(at(), first(e)))
}

/// Detach `program`'s link (errors are logged by the caller).
pub fn detach(ebpf: &mut aya::Ebpf, program: &str, link: CgroupLink) -> Result<(), CgroupError> {
    let prog = ebpf.program_mut(program).ok_or(CgroupError::Missing)?;
    match link {
        CgroupLink::SockAddr(id) => TryInto::<&mut CgroupSockAddr>::try_into(prog)
            .map_err(CgroupError::Type)?
            .detach(id)
            .map_err(CgroupError::Detach),
        CgroupLink::Sock(id) => TryInto::<&mut CgroupSock>::try_into(prog)
            .map_err(CgroupError::Type)?
            .detach(id)
            .map_err(CgroupError::Detach),
    }
}
