//! The table of every eBPF program nodeward loads: which detector owns it, where it
//! attaches, and whether the detector can run without it.

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint (no tracefs needed; arguments instead of a record, about half
    /// the per-run cost of a classic tracepoint here).
    RawTracePoint { name: &'static str },
    /// BPF LSM hook (needs a kernel that loads BPF LSM programs).
    Lsm { hook: &'static str },
    /// A BTF-typed tracepoint (`tp_btf`): arguments are typed kernel pointers, usable
    /// with task local storage.
    BtfTracePoint { name: &'static str },
    /// TC ingress on interfaces chosen at run time (loaded here, attached per interface).
    TcIngress,
    /// A cgroup socket hook (`getpeername4`, `post_bind6`...) on the root of the cgroup
    /// v2 hierarchy: every socket of every process in it.
    Cgroup { hook: &'static str },
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::RawTracePoint { name } => write!(f, "raw_tracepoint/{name}"),
            Hook::Lsm { hook } => write!(f, "lsm/{hook}"),
            Hook::BtfTracePoint { name } => write!(f, "tp_btf/{name}"),
            Hook::TcIngress => write!(f, "tc/ingress (per interface)"),
            Hook::Cgroup { hook } => write!(f, "cgroup/{hook} (cgroup v2 root)"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub detector: &'static str,
    /// Function name in the eBPF object.
    pub name: &'static str,
    pub hook: Hook,
    /// A detector is up only when all its required programs are attached. An optional
    /// program whose hook does not exist on this kernel is `unavailable`, not failed:
    /// e.g. no kexec tracepoints on a kernel built without kexec (nothing to watch).
    pub required: bool,
    pub route: Route,
}

/// How a program takes part in its detector's choice of hooks (issue: no syscall
/// tracepoint by default). A route group is named `<detector>.<route>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Attached whenever its detector is enabled.
    Always,
    /// The group's default route: attached unless the detector's `route` setting
    /// forces the fallback; when it cannot attach, the group's fallback is used.
    Preferred(&'static str),
    /// Attached only when the group's preferred route is not in use (forced by the
    /// configuration, or unavailable on this kernel). Some groups' preferred route is
    /// in userspace (fanotify), with no program of its own.
    Fallback(&'static str),
}

impl ProgramSpec {
    const fn preferred(mut self, group: &'static str) -> ProgramSpec {
        self.route = Route::Preferred(group);
        self.required = false;
        self
    }

    const fn fallback(mut self, group: &'static str) -> ProgramSpec {
        self.route = Route::Fallback(group);
        self
    }
}

const fn cgroup(detector: &'static str, name: &'static str, hook: &'static str) -> ProgramSpec {
    ProgramSpec {
        detector,
        name,
        hook: Hook::Cgroup { hook },
        required: false,
        route: Route::Always,
    }
}

/// Route groups, with what their preferred route is and what the fallback costs (for
/// `nodeward check`).
pub const ROUTE_GROUPS: &[(&str, &str, &str)] = &[
    (
        "reboot.capability",
        "cap_capable (raw tracepoint) filtered on CAP_SYS_BOOT (syscall and arguments from the task's registers)",
        "syscalls:sys_enter_reboot/kexec_load/kexec_file_load: every syscall on the node takes the slow path",
    ),
    (
        "reboot.sysrq",
        "fanotify notification mark on /proc/sysrq-trigger (any path spelling)",
        "syscalls:sys_enter_openat/openat2: every syscall on the node takes the slow path",
    ),
    (
        "session.cgroup",
        "cgroup getpeername4/6 on the cgroup v2 root (sshd asks for its peer)",
        "syscalls:sys_enter/exit_accept(4) and sock:inet_sock_set_state: every syscall on the node takes the slow path",
    ),
    (
        "session.storage",
        "tp_btf sched_process_fork and task local storage (an origin lives and dies with its task)",
        "sched:sched_process_fork/exit tracepoints and a pid-keyed LRU table: a program on every task exit, origins evicted when the table is full",
    ),
    (
        "corosync.cgroup",
        "cgroup post_bind4/6 on the cgroup v2 root",
        "syscalls:sys_enter_bind: every syscall on the node takes the slow path",
    ),
    (
        "secrets.fanotify",
        "fanotify permission events on the secret files and their directories",
        "syscalls:sys_enter/exit_open(at,at2), creat: every syscall on the node takes the slow path; reads are killed after they happen",
    ),
];

const fn tp(
    detector: &'static str,
    name: &'static str,
    category: &'static str,
    tp: &'static str,
    required: bool,
) -> ProgramSpec {
    ProgramSpec {
        detector,
        name,
        hook: Hook::TracePoint { category, name: tp },
        required,
        route: Route::Always,
    }
}

/// A raw tracepoint program: `tracepoint` is the kernel's tracepoint name.
const fn raw_tp(
    detector: &'static str,
    name: &'static str,
    tracepoint: &'static str,
    required: bool,
) -> ProgramSpec {
    ProgramSpec {
        detector,
        name,
        hook: Hook::RawTracePoint { name: tracepoint },
        required,
        route: Route::Always,
    }
}

/// The one sched_process_exec program (quarantine's kill-on-exec, reboot's watched
/// commands, corosync's daemons), listed under each; attached while any of them is on.
pub const EXEC_SCHED: &str = "exec_sched";

const fn exec_sched(detector: &'static str) -> ProgramSpec {
    tp(detector, EXEC_SCHED, "sched", "sched_process_exec", true)
}

pub const PROGRAMS: &[ProgramSpec] = &[
    exec_sched("reboot"),
    exec_sched("corosync"),
    exec_sched("quarantine"),
    raw_tp("reboot", "reboot_capable", "cap_capable", true).preferred("reboot.capability"),
    tp(
        "reboot",
        "reboot_sys_enter",
        "syscalls",
        "sys_enter_reboot",
        true,
    )
    .fallback("reboot.capability"),
    tp(
        "reboot",
        "reboot_kexec_load",
        "syscalls",
        "sys_enter_kexec_load",
        false,
    )
    .fallback("reboot.capability"),
    tp(
        "reboot",
        "reboot_kexec_file_load",
        "syscalls",
        "sys_enter_kexec_file_load",
        false,
    )
    .fallback("reboot.capability"),
    tp(
        "reboot",
        "reboot_sysrq_openat",
        "syscalls",
        "sys_enter_openat",
        true,
    )
    .fallback("reboot.sysrq"),
    tp(
        "reboot",
        "reboot_sysrq_openat2",
        "syscalls",
        "sys_enter_openat2",
        false,
    )
    .fallback("reboot.sysrq"),
    cgroup("session", "session_getpeername4", "getpeername4").preferred("session.cgroup"),
    cgroup("session", "session_getpeername6", "getpeername6").preferred("session.cgroup"),
    tp(
        "session",
        "session_accept",
        "syscalls",
        "sys_enter_accept",
        true,
    )
    .fallback("session.cgroup"),
    tp(
        "session",
        "session_accept4",
        "syscalls",
        "sys_enter_accept4",
        true,
    )
    .fallback("session.cgroup"),
    tp(
        "session",
        "session_accept_exit",
        "syscalls",
        "sys_exit_accept",
        true,
    )
    .fallback("session.cgroup"),
    tp(
        "session",
        "session_accept4_exit",
        "syscalls",
        "sys_exit_accept4",
        true,
    )
    .fallback("session.cgroup"),
    tp(
        "session",
        "session_sock_state",
        "sock",
        "inet_sock_set_state",
        true,
    )
    .fallback("session.cgroup"),
    ProgramSpec {
        detector: "session",
        name: "session_fork_btf",
        hook: Hook::BtfTracePoint {
            name: "sched_process_fork",
        },
        required: false,
        route: Route::Always,
    }
    .preferred("session.storage"),
    tp(
        "session",
        "session_fork",
        "sched",
        "sched_process_fork",
        true,
    )
    .fallback("session.storage"),
    tp(
        "session",
        "session_exit",
        "sched",
        "sched_process_exit",
        true,
    )
    .fallback("session.storage"),
    tp(
        "secrets",
        "secrets_openat",
        "syscalls",
        "sys_enter_openat",
        true,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_openat2",
        "syscalls",
        "sys_enter_openat2",
        false,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_openat_exit",
        "syscalls",
        "sys_exit_openat",
        true,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_openat2_exit",
        "syscalls",
        "sys_exit_openat2",
        false,
    )
    .fallback("secrets.fanotify"),
    // open(2) and creat(2): absent on architectures that only have openat.
    tp(
        "secrets",
        "secrets_open",
        "syscalls",
        "sys_enter_open",
        false,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_open_exit",
        "syscalls",
        "sys_exit_open",
        false,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_creat",
        "syscalls",
        "sys_enter_creat",
        false,
    )
    .fallback("secrets.fanotify"),
    tp(
        "secrets",
        "secrets_creat_exit",
        "syscalls",
        "sys_exit_creat",
        false,
    )
    .fallback("secrets.fanotify"),
    raw_tp("martian", "martian_drop", "kfree_skb", true),
    tp("tcp_reset", "tcp_reset_send", "tcp", "tcp_send_reset", true),
    tp(
        "tcp_reset",
        "tcp_reset_receive",
        "tcp",
        "tcp_receive_reset",
        true,
    ),
    // The packet program, shared: ARP/ND observation and cluster counting in one TC
    // program per interface (kernel::packet). Listed under both detectors.
    ProgramSpec {
        detector: "arp",
        name: crate::kernel::packet::NET_TC,
        hook: Hook::TcIngress,
        required: true,
        route: Route::Always,
    },
    ProgramSpec {
        detector: "corosync",
        name: crate::kernel::packet::NET_TC,
        hook: Hook::TcIngress,
        required: true,
        route: Route::Always,
    },
    cgroup("corosync", "corosync_post_bind4", "post_bind4").preferred("corosync.cgroup"),
    cgroup("corosync", "corosync_post_bind6", "post_bind6").preferred("corosync.cgroup"),
    tp(
        "corosync",
        "corosync_bind",
        "syscalls",
        "sys_enter_bind",
        true,
    )
    .fallback("corosync.cgroup"),
    // Preferred block_exec backend where BPF LSM loads; optional (the tracepoint
    // kill-on-exec above is the fallback and always attached with it).
    ProgramSpec {
        detector: "quarantine",
        name: "quarantine_lsm_exec",
        hook: Hook::Lsm {
            hook: "bprm_check_security",
        },
        required: false,
        route: Route::Always,
    },
];

/// Components that own programs but are not detectors.
pub const COMPONENTS: &[&str] = &["quarantine"];

/// Outcome of loading and attaching one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Attached,
    /// Detector disabled in the configuration.
    Disabled,
    /// Optional hook absent on this kernel.
    Unavailable(String),
    /// Load, verification or attach failed.
    Failed(String),
    /// Not loaded: the detector watches this through another route (named), e.g. the
    /// secrets detector through fanotify instead of syscall tracepoints.
    Replaced(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Attached => "attached",
            Status::Disabled => "disabled",
            Status::Unavailable(_) => "unavailable",
            Status::Failed(_) => "FAILED",
            Status::Replaced(_) => "replaced",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Status::Attached | Status::Disabled => "",
            Status::Unavailable(r) | Status::Failed(r) => r,
            Status::Replaced(by) => by,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProgramStatus {
    pub spec: ProgramSpec,
    pub status: Status,
}

/// Why a detector is down.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Down {
    #[error("disabled in configuration")]
    Disabled,
    /// Required programs that are not attached, each with its reason.
    #[error("{}", .0.join("; "))]
    Programs(Vec<String>),
}

/// Whether a detector is up given its programs' statuses, and if not, why.
pub fn detector_state(detector: &str, statuses: &[ProgramStatus]) -> Result<(), Down> {
    let mine: Vec<_> = statuses
        .iter()
        .filter(|s| s.spec.detector == detector)
        .collect();
    if mine.iter().all(|s| s.status == Status::Disabled) {
        return Err(Down::Disabled);
    }
    let failed: Vec<String> = mine
        .iter()
        .filter(|s| s.spec.required && !matches!(s.status, Status::Attached | Status::Replaced(_)))
        .map(|s| format!("{}: {}", s.spec.name, s.status.reason()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Down::Programs(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::DETECTORS;

    #[test]
    fn every_program_belongs_to_a_known_detector_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for p in PROGRAMS {
            assert!(
                DETECTORS.contains(&p.detector) || COMPONENTS.contains(&p.detector),
                "{} has unknown owner {}",
                p.name,
                p.detector
            );
            // The packet and exec programs are shared: once per detector that uses them.
            let shared = p.name == crate::kernel::packet::NET_TC || p.name == EXEC_SCHED;
            assert!(
                shared || p.name.starts_with(p.detector),
                "{} should be prefixed by its detector id",
                p.name
            );
            assert!(
                names.insert((p.name, p.detector))
                    && (shared || !names.iter().any(|(n, d)| *n == p.name && *d != p.detector)),
                "duplicate program {}",
                p.name
            );
        }
    }

    #[test]
    fn detector_is_down_when_a_required_program_fails_but_not_for_unavailable_optional() {
        let st = |name: &str, status: Status| ProgramStatus {
            spec: *PROGRAMS.iter().find(|p| p.name == name).unwrap(),
            status,
        };
        let ok = vec![
            st("exec_sched", Status::Attached),
            st("reboot_capable", Status::Unavailable("absent".into())),
        ];
        assert_eq!(detector_state("reboot", &ok), Ok(()));
        let bad = vec![st("exec_sched", Status::Failed("EPERM".into()))];
        let Err(Down::Programs(why)) = detector_state("reboot", &bad) else {
            panic!("a failed required program must take the detector down")
        };
        assert!(why.iter().any(|w| w.contains("EPERM")), "{why:?}");
        let off = vec![st("exec_sched", Status::Disabled)];
        assert_eq!(detector_state("reboot", &off), Err(Down::Disabled));
    }
}
