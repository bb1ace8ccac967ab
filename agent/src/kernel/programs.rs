//! The table of every eBPF program nodeward loads: which detector owns it, where it
//! attaches, and whether the detector can run without it.

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// BPF LSM hook (needs a kernel that loads BPF LSM programs).
    Lsm { hook: &'static str },
    /// TC ingress on interfaces chosen at run time (loaded here, attached per interface).
    TcIngress,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::Lsm { hook } => write!(f, "lsm/{hook}"),
            Hook::TcIngress => write!(f, "tc/ingress (per interface)"),
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
}

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
    }
}

pub const PROGRAMS: &[ProgramSpec] = &[
    tp(
        "reboot",
        "reboot_sys_enter",
        "syscalls",
        "sys_enter_reboot",
        true,
    ),
    tp(
        "reboot",
        "reboot_kexec_load",
        "syscalls",
        "sys_enter_kexec_load",
        false,
    ),
    tp(
        "reboot",
        "reboot_kexec_file_load",
        "syscalls",
        "sys_enter_kexec_file_load",
        false,
    ),
    tp(
        "reboot",
        "reboot_sched_exec",
        "sched",
        "sched_process_exec",
        true,
    ),
    tp(
        "reboot",
        "reboot_sysrq_openat",
        "syscalls",
        "sys_enter_openat",
        true,
    ),
    tp(
        "reboot",
        "reboot_sysrq_openat2",
        "syscalls",
        "sys_enter_openat2",
        false,
    ),
    tp(
        "session",
        "session_accept",
        "syscalls",
        "sys_enter_accept",
        true,
    ),
    tp(
        "session",
        "session_accept4",
        "syscalls",
        "sys_enter_accept4",
        true,
    ),
    tp(
        "session",
        "session_accept_exit",
        "syscalls",
        "sys_exit_accept",
        true,
    ),
    tp(
        "session",
        "session_accept4_exit",
        "syscalls",
        "sys_exit_accept4",
        true,
    ),
    tp(
        "session",
        "session_sock_state",
        "sock",
        "inet_sock_set_state",
        true,
    ),
    tp(
        "session",
        "session_fork",
        "sched",
        "sched_process_fork",
        true,
    ),
    tp(
        "session",
        "session_exit",
        "sched",
        "sched_process_exit",
        true,
    ),
    tp(
        "secrets",
        "secrets_openat",
        "syscalls",
        "sys_enter_openat",
        true,
    ),
    tp(
        "secrets",
        "secrets_openat2",
        "syscalls",
        "sys_enter_openat2",
        false,
    ),
    tp(
        "secrets",
        "secrets_openat_exit",
        "syscalls",
        "sys_exit_openat",
        true,
    ),
    tp(
        "secrets",
        "secrets_openat2_exit",
        "syscalls",
        "sys_exit_openat2",
        false,
    ),
    // open(2) and creat(2): absent on architectures that only have openat.
    tp(
        "secrets",
        "secrets_open",
        "syscalls",
        "sys_enter_open",
        false,
    ),
    tp(
        "secrets",
        "secrets_open_exit",
        "syscalls",
        "sys_exit_open",
        false,
    ),
    tp(
        "secrets",
        "secrets_creat",
        "syscalls",
        "sys_enter_creat",
        false,
    ),
    tp(
        "secrets",
        "secrets_creat_exit",
        "syscalls",
        "sys_exit_creat",
        false,
    ),
    tp("martian", "martian_drop", "skb", "kfree_skb", true),
    tp("tcp_reset", "tcp_reset_send", "tcp", "tcp_send_reset", true),
    tp(
        "tcp_reset",
        "tcp_reset_receive",
        "tcp",
        "tcp_receive_reset",
        true,
    ),
    tp(
        "quarantine",
        "quarantine_exec",
        "sched",
        "sched_process_exec",
        true,
    ),
    // Preferred block_exec backend where BPF LSM loads; optional (the tracepoint
    // kill-on-exec above is the fallback and always attached with it).
    // The packet program, shared: ARP/ND observation and cluster counting in one TC
    // program per interface (kernel::packet). Listed under both detectors.
    ProgramSpec {
        detector: "arp",
        name: crate::kernel::packet::NET_TC,
        hook: Hook::TcIngress,
        required: true,
    },
    ProgramSpec {
        detector: "corosync",
        name: crate::kernel::packet::NET_TC,
        hook: Hook::TcIngress,
        required: true,
    },
    tp(
        "corosync",
        "corosync_exec",
        "sched",
        "sched_process_exec",
        true,
    ),
    tp(
        "corosync",
        "corosync_bind",
        "syscalls",
        "sys_enter_bind",
        true,
    ),
    ProgramSpec {
        detector: "quarantine",
        name: "quarantine_lsm_exec",
        hook: Hook::Lsm {
            hook: "bprm_check_security",
        },
        required: false,
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
    Replaced(&'static str),
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
            // The packet program is shared (kernel::packet): once per packet detector.
            let shared = p.name == crate::kernel::packet::NET_TC;
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
            st("reboot_sys_enter", Status::Attached),
            st("reboot_kexec_load", Status::Unavailable("absent".into())),
        ];
        assert_eq!(detector_state("reboot", &ok), Ok(()));
        let bad = vec![st("reboot_sys_enter", Status::Failed("EPERM".into()))];
        let Err(Down::Programs(why)) = detector_state("reboot", &bad) else {
            panic!("a failed required program must take the detector down")
        };
        assert!(why.iter().any(|w| w.contains("EPERM")), "{why:?}");
        let off = vec![st("reboot_sys_enter", Status::Disabled)];
        assert_eq!(detector_state("reboot", &off), Err(Down::Disabled));
    }
}
