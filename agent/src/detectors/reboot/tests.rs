//! Tests of the `reboot` detector on constructed events.

use agent_common::{
    event::{EventHeader, kind},
    fill_cstr,
    proc::ProcCtx,
    reboot::{ANCESTORS, ARGS_LEN, Ancestor, FILENAME_LEN, KEXEC_LOAD},
};

use super::*;

fn detector() -> RebootDetector {
    RebootDetector::new(&RebootConfig::default())
}

fn proc() -> ProcCtx {
    let mut p = ProcCtx {
        pid: 100,
        tid: 100,
        ppid: 99,
        loginuid: 0,
        sessionid: 7,
        ..Default::default()
    };
    fill_cstr(&mut p.comm, b"test");
    p
}

fn exec(filename: &str, class: u32, args: &[&str]) -> Event {
    Event::Exec(exec_event(filename, class, args).into())
}

fn exec_event(filename: &str, class: u32, args: &[&str]) -> ExecEvent {
    let mut e = ExecEvent {
        header: EventHeader::new(kind::EXEC, core::mem::size_of::<ExecEvent>(), 1),
        proc: proc(),
        class,
        args_len: 0,
        flags: 0,
        _pad0: 0,
        filename: [0; FILENAME_LEN],
        args: [0; ARGS_LEN],
        ancestors: Default::default(),
    };
    fill_cstr(&mut e.filename, filename.as_bytes());
    let block: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    e.args[..block.len()].copy_from_slice(&block);
    e.args_len = block.len() as u32;
    e
}

fn reboot_call(magic2: u32, cmd: u32) -> Event {
    Event::RebootSyscall(
        RebootSyscallEvent {
            header: EventHeader::new(kind::REBOOT_SYSCALL, 88, 2),
            proc: proc(),
            magic1: MAGIC1,
            magic2,
            cmd,
            _pad0: 0,
        }
        .into(),
    )
}

fn action_of(e: Event) -> Option<Action> {
    detector().observe(&e, 0).map(|i| i.action)
}

#[test]
fn reboot_syscall_is_an_intent_even_with_bad_magic() {
    let i = detector().observe(&reboot_call(1, CMD_RESTART), 0).unwrap();
    assert_eq!(
        (i.path, i.action, i.magic_valid),
        ("syscall", Action::Restart, Some(false))
    );
    assert_eq!(i.process.sessionid, Some(7));
    let i = detector()
        .observe(&reboot_call(MAGIC2[0], CMD_POWER_OFF), 0)
        .unwrap();
    assert_eq!((i.action, i.magic_valid), (Action::PowerOff, Some(true)));
}

#[test]
fn the_kernel_s_ancestor_walk_ends_at_the_first_empty_or_unreadable_entry() {
    let mut e = exec_event("/tmp/x/reboot", class::POWER, &["reboot"]);
    let mut walk = [Ancestor::default(); ANCESTORS];
    walk[0].pid = 100;
    fill_cstr(&mut walk[0].comm, b"sshd");
    walk[1].pid = 50;
    fill_cstr(&mut walk[1].comm, b"sshd");
    walk[2].pid = 40; // comm unreadable: the walk ends before it
    walk[3].pid = 1;
    fill_cstr(&mut walk[3].comm, b"systemd");
    e.ancestors = walk;
    let i = detector().observe(&Event::Exec(e.into()), 0).unwrap();
    assert_eq!(
        i.ancestors,
        [(100, "sshd".to_string()), (50, "sshd".to_string())]
    );
}

#[test]
fn cad_and_suspend_are_not_intents() {
    assert_eq!(action_of(reboot_call(MAGIC2[0], 0)), None);
    assert_eq!(action_of(reboot_call(MAGIC2[0], 0x89AB_CDEF)), None);
    assert_eq!(action_of(reboot_call(MAGIC2[0], 0xD000_FCE2)), None);
}

#[test]
fn power_binaries() {
    assert_eq!(
        action_of(exec("/tmp/x/reboot", class::POWER, &["reboot"])),
        Some(Action::Restart)
    );
    assert_eq!(
        action_of(exec("/sbin/poweroff", class::POWER, &["poweroff"])),
        Some(Action::PowerOff)
    );
    assert_eq!(
        action_of(exec("/sbin/halt", class::POWER, &["halt"])),
        Some(Action::Halt)
    );
    assert_eq!(
        action_of(exec("/sbin/halt", class::POWER, &["halt", "-p"])),
        Some(Action::PowerOff)
    );
    assert_eq!(
        action_of(exec(
            "/sbin/shutdown",
            class::POWER,
            &["shutdown", "-r", "now"]
        )),
        Some(Action::Restart)
    );
    assert_eq!(
        action_of(exec("/sbin/shutdown", class::POWER, &["shutdown", "now"])),
        Some(Action::PowerOff)
    );
    assert_eq!(
        action_of(exec("/sbin/shutdown", class::POWER, &["shutdown", "-c"])),
        None
    );
    assert_eq!(
        action_of(exec("/sbin/reboot", class::POWER, &["reboot", "--help"])),
        None
    );
}

#[test]
fn systemctl_verbs() {
    let s = |args: &[&str]| action_of(exec("/usr/bin/systemctl", class::SYSTEMCTL, args));
    assert_eq!(s(&["systemctl", "reboot"]), Some(Action::Restart));
    assert_eq!(
        s(&["systemctl", "--no-wall", "poweroff"]),
        Some(Action::PowerOff)
    );
    assert_eq!(
        s(&["systemctl", "--message", "x y", "halt"]),
        Some(Action::Halt)
    );
    assert_eq!(s(&["systemctl", "kexec"]), Some(Action::Kexec));
    assert_eq!(
        s(&["systemctl", "isolate", "reboot.target"]),
        Some(Action::Restart)
    );
    assert_eq!(
        s(&["systemctl", "start", "poweroff.target"]),
        Some(Action::PowerOff)
    );
    assert_eq!(s(&["systemctl", "status", "reboot.target"]), None);
    assert_eq!(s(&["systemctl", "restart", "nginx"]), None);
    assert_eq!(s(&["systemctl", "-H", "otherhost", "reboot"]), None);
    assert_eq!(s(&["systemctl"]), None);
}

#[test]
fn telinit_and_init() {
    assert_eq!(
        action_of(exec("/sbin/telinit", class::TELINIT, &["telinit", "6"])),
        Some(Action::Restart)
    );
    assert_eq!(
        action_of(exec("/sbin/init", class::TELINIT, &["init", "0"])),
        Some(Action::PowerOff)
    );
    assert_eq!(
        action_of(exec("/sbin/init", class::TELINIT, &["/sbin/init"])),
        None
    );
    assert_eq!(
        action_of(exec("/sbin/telinit", class::TELINIT, &["telinit", "3"])),
        None
    );
}

#[test]
fn kexec_tool_and_syscalls() {
    assert_eq!(
        action_of(exec("/sbin/kexec", class::KEXEC_TOOL, &["kexec", "-e"])),
        Some(Action::Kexec)
    );
    assert_eq!(
        action_of(exec(
            "/sbin/kexec",
            class::KEXEC_TOOL,
            &["kexec", "-l", "vmlinuz"]
        )),
        None
    );
    assert_eq!(
        action_of(exec(
            "/sbin/kexec",
            class::KEXEC_TOOL,
            &["kexec", "-p", "vmlinuz"]
        )),
        None
    );
    let k = |syscall, flags| {
        Event::Kexec(
            KexecEvent {
                header: EventHeader::new(kind::KEXEC, 88, 3),
                proc: proc(),
                syscall,
                _pad0: 0,
                flags,
            }
            .into(),
        )
    };
    assert_eq!(
        detector().observe(&k(KEXEC_LOAD, 0), 0).map(|i| i.path),
        Some("kexec")
    );
    assert_eq!(action_of(k(KEXEC_LOAD, KEXEC_ON_CRASH)), None);
    assert_eq!(action_of(k(KEXEC_FILE_LOAD, 0)), Some(Action::Kexec));
    assert_eq!(action_of(k(KEXEC_FILE_LOAD, KEXEC_FILE_UNLOAD)), None);
}

#[test]
fn dbus_calls_to_logind() {
    let busctl = exec(
        "/usr/bin/busctl",
        class::DBUS,
        &[
            "busctl",
            "call",
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "Reboot",
            "b",
            "false",
        ],
    );
    let i = detector().observe(&busctl, 0).unwrap();
    assert_eq!((i.path, i.action), ("dbus", Action::Restart));
    let send = exec(
        "/usr/bin/dbus-send",
        class::DBUS,
        &[
            "dbus-send",
            "--system",
            "--dest=org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager.PowerOff",
            "boolean:true",
        ],
    );
    assert_eq!(action_of(send), Some(Action::PowerOff));
    let other = exec(
        "/usr/bin/busctl",
        class::DBUS,
        &[
            "busctl",
            "call",
            "org.freedesktop.login1",
            "/",
            "x",
            "ListSessions",
        ],
    );
    assert_eq!(action_of(other), None);
    let mut no_dbus = RebootDetector::new(&RebootConfig {
        watch_dbus_tools: false,
        ..Default::default()
    });
    let busctl = exec(
        "/usr/bin/busctl",
        class::DBUS,
        &["busctl", "call", "org.freedesktop.login1", "Reboot"],
    );
    assert!(no_dbus.observe(&busctl, 0).is_none());
}

#[test]
fn exec_intent_carries_attribution() {
    let i = detector()
        .observe(&exec("/tmp/t/reboot", class::POWER, &["reboot", "-f"]), 0)
        .unwrap();
    assert_eq!(i.filename.as_deref(), Some("/tmp/t/reboot"));
    assert_eq!(i.argv, vec!["reboot", "-f"]);
    assert_eq!(i.process.pid, 100);
    assert_eq!(i.process.ppid, 99);
    assert_eq!(i.process.loginuid, Some(0));
    assert_eq!(i.process.comm, "test");
}

#[test]
fn expected_or_not() {
    let ssh = |ip: &str| Origin::Ssh {
        peer: ip.parse().unwrap(),
        peer_port: 1,
        local_port: 22,
        sshd_pid: 1,
    };
    let mut c = RebootConfig {
        allowed_sources: vec!["10.42.0.0/24".parse().unwrap()],
        ..Default::default()
    };
    assert!(expectation(&c, None, 0, &ssh("10.42.0.7")).0);
    let (ok, why) = expectation(&c, None, 0, &ssh("100.64.0.18"));
    assert!(!ok && why.contains("100.64.0.18"), "{why}");
    assert!(expectation(&c, None, 0, &Origin::Local).0);
    assert!(expectation(&c, None, 0, &Origin::Service).0);
    c.local_expected = false;
    c.service_expected = false;
    assert!(!expectation(&c, None, 0, &Origin::Local).0);
    assert!(!expectation(&c, None, 0, &Origin::Service).0);
    let a = Allowance {
        until_ms: 1000,
        reason: "kernel update".into(),
        by: "uid=0".into(),
    };
    let (ok, why) = expectation(&c, Some(&a), 999, &ssh("100.64.0.18"));
    assert!(ok && why.contains("kernel update"));
    assert!(
        !expectation(&c, Some(&a), 1000, &ssh("100.64.0.18")).0,
        "the window has ended"
    );
}

#[test]
fn sysrq_open_for_write_is_an_intent() {
    use agent_common::reboot::SysrqOpenEvent;
    let e = Event::SysrqOpen(
        SysrqOpenEvent {
            header: EventHeader::new(kind::SYSRQ_OPEN, core::mem::size_of::<SysrqOpenEvent>(), 1),
            proc: proc(),
            flags: 1,
            syscall: 1,
            _pad0: 0,
        }
        .into(),
    );
    let i = detector().observe(&e, 0).unwrap();
    assert_eq!((i.path, i.action), ("sysrq", Action::Sysrq));
}

#[test]
fn guard_flags_are_reported() {
    let Event::Exec(e) = exec("/usr/sbin/reboot", class::POWER, &["reboot"]) else {
        unreachable!()
    };
    let mut e = e.get();
    e.flags = EXEC_GUARD_BLOCKED;
    let i = detector().observe(&Event::Exec(e.into()), 0).unwrap();
    assert_eq!(i.guard, Some("blocked"));
    e.flags = EXEC_GUARD_WOULD_BLOCK;
    assert_eq!(
        detector().observe(&Event::Exec(e.into()), 0).unwrap().guard,
        Some("would_block")
    );
}

#[test]
fn watched_binaries_fit_the_kernel_key() {
    for (name, _) in watched_binaries(&RebootConfig::default()) {
        assert!(
            agent_common::maps::ExecWatchKey::new(name.as_bytes()).is_some(),
            "{name}"
        );
    }
    let without = watched_binaries(&RebootConfig {
        watch_dbus_tools: false,
        ..Default::default()
    });
    assert!(!without.iter().any(|(n, _)| *n == "busctl"));
}
