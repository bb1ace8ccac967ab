//! Least privilege: the capabilities the agent keeps, why, and dropping the rest.
//!
//! The agent needs the same capabilities to load its programs as to keep them useful
//! (a reload may attach programs and open fanotify groups; a new bridge port needs its
//! packet program), so the whole set is known before anything starts. `daemon::run`
//! drops everything else before the first thread exists: capabilities are per thread,
//! and every thread inherits the reduced set. Under systemd the unit's
//! `CapabilityBoundingSet=` and `AmbientCapabilities=` are this same list (a unit test
//! checks it), and so is the DaemonSet's `capabilities.add` (`cargo xtask test`).

use caps::{CapSet, Capability, CapsHashSet};

/// What each kept capability is for (measured: see docs/least-privilege.md).
pub const KEPT: &[(Capability, &str)] = &[
    (
        Capability::CAP_SYS_ADMIN,
        "fanotify permission and FID groups (secrets: deny before read, renames and links; sysrq), \
         mounting a missing tracefs when started by hand; it also passes the kernel's bpf_capable() and \
         perfmon_capable() checks (loading programs, attaching tracepoints), so CAP_BPF and \
         CAP_PERFMON would add nothing",
    ),
    (
        Capability::CAP_NET_ADMIN,
        "clsact qdisc and tc filter on each watched interface (also ports that appear later), \
         quarantine drops",
    ),
    (
        Capability::CAP_NET_RAW,
        "the active duplicate-address check (AF_PACKET: one unicast ARP or NS to the previous owner)",
    ),
    (
        Capability::CAP_SYS_PTRACE,
        "/proc/<pid>/exe, fd, mem and syscall of other users' processes (attribution, SSH origins, \
         sysrq openers)",
    ),
    (
        Capability::CAP_DAC_READ_SEARCH,
        "fanotify marks need read permission on each watched file; lease files and keys owned by \
         other users",
    ),
    (
        Capability::CAP_KILL,
        "kill-on-exec and secrets enforce mode signal processes of other users",
    ),
];

/// The kept set.
pub fn kept() -> CapsHashSet {
    KEPT.iter().map(|(c, _)| *c).collect()
}

/// What [`drop_unneeded`] did.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Capabilities that were permitted and are no longer.
    pub permitted: Vec<Capability>,
    /// Whether the bounding set was reduced too (needs CAP_SETPCAP, which root has;
    /// under systemd the unit's bounding set is already this list).
    pub bounding: bool,
    /// Kept capabilities this process does not have: the detectors that need them
    /// fall back or report themselves down.
    pub missing: Vec<Capability>,
}

/// Drop every capability not in [`KEPT`] from this thread's bounding, inheritable,
/// ambient, permitted and effective sets. Call before any thread is started.
pub fn drop_unneeded() -> Result<Dropped, caps::errors::CapsError> {
    let keep = kept();
    let permitted = caps::read(None, CapSet::Permitted)?;
    let mut out = Dropped {
        missing: sorted(keep.difference(&permitted).copied()),
        permitted: sorted(permitted.difference(&keep).copied()),
        bounding: false,
    };
    // The bounding set first: dropping from it needs CAP_SETPCAP, itself not kept.
    // Best effort: the permitted and effective sets below are what bounds the agent.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        out.bounding = caps::read(None, CapSet::Bounding).is_ok_and(|b| {
            b.difference(&keep)
                .all(|cap| caps::drop(None, CapSet::Bounding, *cap).is_ok())
        });
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let now: CapsHashSet = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &now)?;
    caps::set(None, CapSet::Permitted, &now)?;
    Ok(out)
}

fn sorted(caps: impl Iterator<Item = Capability>) -> Vec<Capability> {
    let mut v: Vec<Capability> = caps.collect();
    v.sort_by_key(|c| c.index());
    v
}

/// Names as systemd and capabilities(7) spell them, in a stable order.
pub fn names(caps: &[Capability]) -> Vec<String> {
    caps.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_capabilities_are_distinct_and_explained() {
        assert_eq!(kept().len(), KEPT.len(), "a capability is listed twice");
        for (cap, why) in KEPT {
            assert!(why.len() > 20, "{cap} needs a reason");
        }
        assert!(
            !kept().contains(&Capability::CAP_SYS_BOOT),
            "the agent never reboots"
        );
        assert!(!kept().contains(&Capability::CAP_SYS_MODULE));
    }

    /// The packaged unit's bounding set is this list, exactly.
    #[test]
    fn the_systemd_unit_bounds_the_service_to_the_kept_capabilities() {
        let unit = include_str!("../../../deploy/systemd/nodeward.service");
        let mut kept = names(&KEPT.iter().map(|(c, _)| *c).collect::<Vec<_>>());
        kept.sort();
        for key in ["CapabilityBoundingSet=", "AmbientCapabilities="] {
            let line = unit
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("the unit sets no {key}"));
            let mut listed: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            listed.sort();
            assert_eq!(listed, kept, "deploy/systemd/nodeward.service {key}");
        }
        for (cap, _) in KEPT {
            assert!(
                unit.contains(&format!("#   {cap}")),
                "the unit does not say why {cap}"
            );
        }
    }

    /// The drop for real, in a child process of its own (this test binary run again
    /// for this test alone), so no other test loses a capability.
    #[test]
    fn a_root_process_keeps_exactly_the_listed_capabilities() {
        if std::env::var_os("NODEWARD_PRIVILEGES_CHILD").is_some() {
            let dropped = drop_unneeded().expect("drop");
            assert!(
                dropped.bounding && dropped.missing.is_empty(),
                "{dropped:?}"
            );
            for set in [CapSet::Effective, CapSet::Permitted, CapSet::Bounding] {
                assert_eq!(caps::read(None, set).expect("read"), kept(), "{set:?}");
            }
            assert!(
                caps::read(None, CapSet::Inheritable)
                    .expect("read")
                    .is_empty()
            );
            return;
        }
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: not root: nothing to drop");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "--nocapture",
                "daemon::privileges::tests::a_root_process_keeps_exactly_the_listed_capabilities",
            ])
            .env("NODEWARD_PRIVILEGES_CHILD", "1")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }
}
