//! Start-up probe of the running kernel: mounts the pseudo-filesystems the programs
//! need, reads BTF facts and finds which program types this kernel accepts, by loading.

use std::path::Path;

use agent_common::offsets::KernelOffsets;
use aya::programs::ProgramType;
use nix::mount::{MsFlags, mount};

use crate::kernel::btf;

pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const BPFFS: &str = "/sys/fs/bpf";

/// Program types probed at start-up (metric label `type`). `fentry` and `tp_btf` are both
/// of the kernel's type `tracing`, probed apart: a kernel can take one and refuse the other.
pub const PROGRAM_TYPES: &[&str] = &[
    "tracepoint",
    "raw_tracepoint",
    "sched_cls",
    "xdp",
    "cgroup_skb",
    "fentry",
    "tp_btf",
    "lsm",
];

/// What the probe found.
#[derive(Clone, Debug)]
pub struct KernelFacts {
    pub release: String,
    pub offsets: KernelOffsets,
    /// Offsets this kernel's BTF does not have (the matching fields stay unset).
    pub offsets_missing: Vec<&'static str>,
    /// Why BTF could not be read, if it could not.
    pub btf_error: Option<String>,
    /// Pseudo-filesystems the probe had to mount.
    pub mounted: Vec<&'static str>,
    /// Problems mounting them.
    pub mount_errors: Vec<String>,
    /// Program types that were probed, with the outcome.
    pub program_types: Vec<ProgramTypeSupport>,
    /// `enum sk_rst_reason` value -> name (lower case, prefix stripped).
    pub rst_reasons: std::collections::HashMap<u32, String>,
    /// `enum skb_drop_reason` value -> name (lower case, prefix stripped).
    pub drop_reasons: std::collections::HashMap<u32, String>,
}

#[derive(Clone, Debug)]
pub struct ProgramTypeSupport {
    /// Bounded label: tracepoint, raw_tracepoint, tracing, lsm, sched_cls, xdp, cgroup_skb.
    pub name: &'static str,
    pub supported: bool,
    pub detail: String,
}

fn is_mounted(target: &str, fstype: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                let (_, dir, ty) = (f.next(), f.next(), f.next());
                dir == Some(target) && ty == Some(fstype)
            })
        })
        .unwrap_or(false)
}

fn ensure_mounted(target: &'static str, fstype: &'static str, facts: &mut KernelFacts) {
    if is_mounted(target, fstype) {
        return;
    }
    if !Path::new(target).is_dir() {
        facts
            .mount_errors
            .push(format!("{target}: mount point missing"));
        return;
    }
    match mount(
        Some("none"),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => facts.mounted.push(target),
        Err(e) => facts
            .mount_errors
            .push(format!("mount {fstype} on {target}: {e}")),
    }
}

/// Mount what is missing and read the kernel's facts. Never fails: what cannot be
/// found is recorded and reported.
pub fn probe() -> KernelFacts {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mut facts = KernelFacts {
        release,
        offsets: KernelOffsets::ABSENT,
        offsets_missing: Vec::new(),
        btf_error: None,
        mounted: Vec::new(),
        mount_errors: Vec::new(),
        program_types: Vec::new(),
        rst_reasons: Default::default(),
        drop_reasons: Default::default(),
    };
    ensure_mounted(TRACEFS, "tracefs", &mut facts);
    ensure_mounted(BPFFS, "bpf", &mut facts);
    match btf_rs::Btf::from_file(btf::VMLINUX) {
        Ok(b) => {
            let (offsets, missing) = btf::kernel_offsets(&b);
            facts.offsets = offsets;
            facts.offsets_missing = missing;
            facts.rst_reasons = btf::enum_names(&b, "sk_rst_reason", "SK_RST_REASON_");
            facts.drop_reasons = btf::enum_names(&b, "skb_drop_reason", "SKB_DROP_REASON_");
        }
        Err(e) => facts.btf_error = Some(format!("{}: {e}", btf::VMLINUX)),
    }
    for (name, ty) in [
        ("tracepoint", ProgramType::TracePoint),
        ("raw_tracepoint", ProgramType::RawTracePoint),
        ("sched_cls", ProgramType::SchedClassifier),
        ("xdp", ProgramType::Xdp),
        ("cgroup_skb", ProgramType::CgroupSkb),
    ] {
        let (supported, detail) = match aya::sys::is_program_supported(ty) {
            Ok(true) => (true, "loads".to_string()),
            Ok(false) => (false, "refused by the kernel".to_string()),
            Err(e) => (false, format!("probe failed: {e}")),
        };
        facts.program_types.push(ProgramTypeSupport {
            name,
            supported,
            detail,
        });
    }
    facts
}

/// Whether a tracepoint exists on this kernel.
pub fn tracepoint_exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .is_dir()
}

/// Offset of a field in a tracepoint's record, from its tracefs `format` file.
pub fn tracepoint_field_offset(category: &str, name: &str, field: &str) -> Option<u32> {
    let text = std::fs::read_to_string(
        Path::new(TRACEFS)
            .join("events")
            .join(category)
            .join(name)
            .join("format"),
    )
    .ok()?;
    parse_field_offset(&text, field)
}

fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|l| {
        let l = l.trim();
        let decl = l.strip_prefix("field:")?.split(';').next()?;
        let ident = decl.split_whitespace().last()?.split('[').next()?;
        if ident != field {
            return None;
        }
        l.split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|o| o.parse().ok())
    })
}

/// Why a fanotify notification mark cannot be placed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FanotifyProbeError {
    #[error("fanotify_init of a notification group: {0}")]
    Init(nix::errno::Errno),
    #[error("fanotify mark on {0}: {1}")]
    Mark(String, nix::errno::Errno),
}

/// A fanotify notification group (thread ids reported, non-blocking) with an inode
/// mark for `mask` on `path`; a missing path gets no mark (nothing to watch is not a
/// failure).
pub fn fanotify_notify_group(
    path: &std::path::Path,
    mask: nix::sys::fanotify::MaskFlags,
) -> Result<nix::sys::fanotify::Fanotify, FanotifyProbeError> {
    use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags};
    let group = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_REPORT_TID,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(FanotifyProbeError::Init)?;
    if path.exists() {
        group
            .mark(MarkFlags::FAN_MARK_ADD, mask, at_cwd(), Some(path))
            .map_err(|e| FanotifyProbeError::Mark(path.display().to_string(), e))?;
    }
    Ok(group)
}

/// Whether the sysrq trigger can be watched by fanotify (probed once).
pub fn sysrq_fanotify() -> Result<(), FanotifyProbeError> {
    static PROBE: std::sync::OnceLock<Result<(), FanotifyProbeError>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            fanotify_notify_group(
                std::path::Path::new("/proc/sysrq-trigger"),
                nix::sys::fanotify::MaskFlags::FAN_OPEN,
            )
            .map(drop)
        })
        .clone()
}

/// The `dirfd` of a call by absolute path (AT_FDCWD; ignored by the kernel then).
pub fn at_cwd() -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a constant the kernel reads as "the working directory", never
    // a descriptor that could be closed.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// The mount table of this process's mount namespace: (mount point, file system type)
/// per mount, in mount order (read from /proc/self/mountinfo; nothing mounted is
/// touched).
pub fn mounts() -> Vec<(std::path::PathBuf, String)> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    // Fields: id parent major:minor root mountpoint options... - fstype source ...
    table
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?.replace("\\040", " ");
            Some((point.into(), right.split(' ').next()?.to_string()))
        })
        .collect()
}

/// fentry, tp_btf and BPF LSM: only a real load tells (KERNEL.md: fentry and LSM
/// EPERM here although `bpf` is in the LSM list; tp_btf, the same program type as
/// fentry, loads on some of these kernels, so it is probed on its own). The probe
/// programs are unloaded right away.
pub(super) fn btf_program_types(ebpf: &mut aya::Ebpf) -> Vec<ProgramTypeSupport> {
    use aya::programs::{BtfTracePoint, FEntry, Lsm};

    use crate::kernel::loader::Refused;

    let btf = match aya::Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            let detail = format!("no kernel BTF: {e}");
            return ["fentry", "tp_btf", "lsm"]
                .map(|name| ProgramTypeSupport {
                    name,
                    supported: false,
                    detail: detail.clone(),
                })
                .to_vec();
        }
    };
    let missing = || Err(Refused("probe program missing from the object".into()));
    let fentry = match ebpf
        .program_mut("probe_fentry")
        .map(TryInto::<&mut FEntry>::try_into)
    {
        Some(Ok(p)) => p
            .load("do_sys_openat2", &btf)
            .and_then(|()| p.unload())
            .map_err(Refused::from_error),
        _ => missing(),
    };
    let tp_btf = match ebpf
        .program_mut("probe_tp_btf")
        .map(TryInto::<&mut BtfTracePoint>::try_into)
    {
        // Loaded and attached for a moment (an empty program on task exit): some
        // kernels that load a program type still refuse its attachment. Unloaded
        // whatever step failed (a load that failed leaves nothing).
        Some(Ok(p)) => match p.load("sched_process_exit", &btf) {
            Err(e) => Err(Refused::from_error(e)),
            Ok(()) => {
                let tried = p.attach().and_then(|link| p.detach(link));
                let unloaded = p.unload();
                tried.and(unloaded).map_err(Refused::from_error)
            }
        },
        _ => missing(),
    };
    let lsm = match ebpf
        .program_mut("probe_lsm")
        .map(TryInto::<&mut Lsm>::try_into)
    {
        Some(Ok(p)) => p
            .load("bprm_check_security", &btf)
            .and_then(|()| p.unload())
            .map_err(Refused::from_error),
        _ => missing(),
    };
    vec![
        support("fentry", "loads", fentry),
        support("tp_btf", "loads and attaches", tp_btf),
        support("lsm", "loads", lsm),
    ]
}

fn support(
    name: &'static str,
    works: &str,
    r: Result<(), crate::kernel::loader::Refused>,
) -> ProgramTypeSupport {
    match r {
        Ok(()) => ProgramTypeSupport {
            name,
            supported: true,
            detail: works.into(),
        },
        Err(e) => ProgramTypeSupport {
            name,
            supported: false,
            detail: e.0,
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_tracefs_format_offsets() {
        let fmt = "name: sched_process_fork\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(super::parse_field_offset(fmt, "child_pid"), Some(20));
        assert_eq!(super::parse_field_offset(fmt, "parent_comm"), Some(8));
        assert_eq!(super::parse_field_offset(fmt, "nope"), None);
        let old = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(super::parse_field_offset(old, "parent_comm"), Some(8));
        assert_eq!(super::parse_field_offset(old, "child_pid"), Some(44));
    }
}
