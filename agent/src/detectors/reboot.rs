//! `reboot` detector: which records are an intent to reboot, halt, power off or kexec
//! the machine, and by which path.

use agent_common::{
    decode::Event,
    reboot::{
        EXEC_ARGS_TRUNCATED, EXEC_GUARD_BLOCKED, EXEC_GUARD_WOULD_BLOCK, ExecEvent,
        KEXEC_FILE_LOAD, KexecEvent, RebootSyscallEvent, class,
    },
};
use serde::Serialize;

use super::{Origin, Process, lossy};
use crate::config::RebootConfig;

/// The bounded set of paths a reboot intent can take (metric label `path`).
pub const PATHS: &[&str] = &["syscall", "kexec", "exec", "dbus", "sysrq"];

/// What the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Restart,
    Halt,
    PowerOff,
    Kexec,
    /// /proc/sysrq-trigger opened for writing: `b` reboots, `o` powers off, `c` crashes.
    Sysrq,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Halt => "halt",
            Action::PowerOff => "power_off",
            Action::Kexec => "kexec",
            Action::Sysrq => "sysrq",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebootIntent {
    /// One of [`PATHS`].
    pub path: &'static str,
    pub action: Action,
    pub process: Process,
    /// Executable path (exec paths only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// reboot(2) command (syscall path only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<u32>,
    /// reboot(2): whether the magic numbers were ones the kernel accepts. A call with
    /// bad magic fails with EINVAL but still shows the intent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub magic_valid: Option<bool>,
    /// Kernel boot-clock time of the record, in nanoseconds.
    pub ktime_ns: u64,
    /// Whether this reboot was expected, and why (allowed source, allowance window,
    /// local login, service) or why not.
    pub expected: bool,
    pub because: String,
    /// The reboot guard's action on this exec: `blocked` (killed before it ran) or
    /// `would_block` (dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<&'static str>,
    /// Ancestor names, farthest first, ending with this process (e.g. sshd, bash, reboot).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
}

impl RebootIntent {
    /// An intent with only what every path knows; the rest is filled by the path.
    fn new(
        path: &'static str,
        action: Action,
        proc: &agent_common::proc::ProcCtx,
        ktime_ns: u64,
    ) -> RebootIntent {
        RebootIntent {
            path,
            action,
            process: Process::from(proc),
            filename: None,
            argv: Vec::new(),
            argv_truncated: false,
            cmd: None,
            magic_valid: None,
            ktime_ns,
            expected: false,
            because: String::new(),
            guard: None,
            lineage: Vec::new(),
        }
    }
}

/// A window in which every reboot is expected (`nodeward allow-reboot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Allowance {
    pub until_ms: u64,
    pub reason: String,
    pub by: String,
}

/// Is this reboot expected? Pure: config, allowance and the process's origin.
pub fn expectation(
    config: &RebootConfig,
    allowance: Option<&Allowance>,
    now_ms: u64,
    origin: &Origin,
) -> (bool, String) {
    if let Some(a) = allowance.filter(|a| a.until_ms > now_ms) {
        return (true, format!("reboot allowance by {} ({})", a.by, a.reason));
    }
    match origin {
        Origin::Ssh { peer, .. } => {
            match config.allowed_sources.iter().find(|n| n.contains(peer)) {
                Some(net) => (true, format!("ssh from {peer}, in allowed_sources {net}")),
                None => (
                    false,
                    format!("ssh from {peer}, not in detectors.reboot.allowed_sources"),
                ),
            }
        }
        Origin::Local if config.local_expected => (true, "local login (local_expected)".into()),
        Origin::Local => (false, "local login, and local_expected is off".into()),
        Origin::Service if config.service_expected => {
            (true, "init system or service (service_expected)".into())
        }
        Origin::Service => (
            false,
            "init system or service, and service_expected is off".into(),
        ),
        Origin::Unknown => (false, "origin unknown (no login uid on this kernel)".into()),
    }
}

// include/uapi/linux/reboot.h
const MAGIC1: u32 = 0xfee1_dead;
const MAGIC2: [u32; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
const CMD_RESTART: u32 = 0x0123_4567;
const CMD_HALT: u32 = 0xCDEF_0123;
const CMD_POWER_OFF: u32 = 0x4321_FEDC;
const CMD_RESTART2: u32 = 0xA1B2_C3D4;
const CMD_KEXEC: u32 = 0x4558_4543;
// kexec flags that do not lead to a reboot.
const KEXEC_ON_CRASH: u64 = 0x1;
const KEXEC_FILE_UNLOAD: u64 = 0x1;
const KEXEC_FILE_ON_CRASH: u64 = 0x2;

/// Basenames watched in the kernel, with their class.
pub fn watched_binaries(config: &RebootConfig) -> Vec<(&'static str, u32)> {
    let mut v = vec![
        ("reboot", class::POWER),
        ("shutdown", class::POWER),
        ("poweroff", class::POWER),
        ("halt", class::POWER),
        ("systemctl", class::SYSTEMCTL),
        ("telinit", class::TELINIT),
        ("init", class::TELINIT),
        ("kexec", class::KEXEC_TOOL),
    ];
    if config.watch_dbus_tools {
        v.extend([
            ("busctl", class::DBUS),
            ("dbus-send", class::DBUS),
            ("gdbus", class::DBUS),
        ]);
    }
    v
}

pub struct RebootDetector {
    config: RebootConfig,
    allowance: Option<Allowance>,
}

impl RebootDetector {
    pub fn new(config: &RebootConfig) -> Self {
        RebootDetector {
            config: config.clone(),
            allowance: None,
        }
    }

    pub fn set_allowance(&mut self, allowance: Option<Allowance>) {
        self.allowance = allowance;
    }

    pub fn observe(&mut self, event: &Event, now_ms: u64) -> Option<RebootIntent> {
        let mut intent = match event {
            Event::RebootSyscall(e) => syscall(e),
            Event::Kexec(e) => kexec(e),
            Event::Exec(e) => self.exec(e),
            Event::SysrqOpen(e) => Some(RebootIntent {
                filename: Some("/proc/sysrq-trigger".into()),
                ..RebootIntent::new("sysrq", Action::Sysrq, &e.proc, e.header.ktime_ns)
            }),
            Event::ExecBlocked(_)
            | Event::SshAccept(_)
            | Event::Arp(_)
            | Event::SecretOpen(_)
            | Event::CorosyncLocal(_) => None,
        }?;
        let (expected, because) = expectation(
            &self.config,
            self.allowance.as_ref(),
            now_ms,
            &intent.process.origin,
        );
        intent.expected = expected;
        intent.because = because;
        Some(intent)
    }

    fn exec(&self, e: &ExecEvent) -> Option<RebootIntent> {
        let argv = e.argv();
        let filename = lossy(&e.filename);
        let (path, action) = match e.class {
            class::POWER => ("exec", power_binary(basename(&filename), &argv)?),
            class::SYSTEMCTL => ("exec", systemctl(&argv)?),
            class::TELINIT => ("exec", telinit(&argv)?),
            class::KEXEC_TOOL => ("exec", kexec_tool(&argv)?),
            class::DBUS if self.config.watch_dbus_tools => ("dbus", dbus(&argv)?),
            _ => return None,
        };
        Some(RebootIntent {
            filename: Some(filename),
            argv,
            argv_truncated: e.flags & EXEC_ARGS_TRUNCATED != 0,
            guard: if e.flags & EXEC_GUARD_BLOCKED != 0 {
                Some("blocked")
            } else if e.flags & EXEC_GUARD_WOULD_BLOCK != 0 {
                Some("would_block")
            } else {
                None
            },
            ..RebootIntent::new(path, action, &e.proc, e.header.ktime_ns)
        })
    }
}

fn syscall(e: &RebootSyscallEvent) -> Option<RebootIntent> {
    let action = match e.cmd {
        CMD_RESTART | CMD_RESTART2 => Action::Restart,
        CMD_HALT => Action::Halt,
        CMD_POWER_OFF => Action::PowerOff,
        CMD_KEXEC => Action::Kexec,
        // CAD on/off (systemd sets it at boot), suspend: not a reboot.
        _ => return None,
    };
    Some(RebootIntent {
        cmd: Some(e.cmd),
        magic_valid: Some(e.magic1 == MAGIC1 && MAGIC2.contains(&e.magic2)),
        ..RebootIntent::new("syscall", action, &e.proc, e.header.ktime_ns)
    })
}

fn kexec(e: &KexecEvent) -> Option<RebootIntent> {
    let harmless = if e.syscall == KEXEC_FILE_LOAD {
        e.flags & (KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH) != 0
    } else {
        e.flags & KEXEC_ON_CRASH != 0
    };
    if harmless {
        return None;
    }
    Some(RebootIntent::new(
        "kexec",
        Action::Kexec,
        &e.proc,
        e.header.ktime_ns,
    ))
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn asks_for_help(argv: &[String]) -> bool {
    argv.iter()
        .skip(1)
        .any(|a| a == "--help" || a == "-h" || a == "--version")
}

/// reboot / shutdown / poweroff / halt.
fn power_binary(name: &str, argv: &[String]) -> Option<Action> {
    if asks_for_help(argv) {
        return None;
    }
    let has = |flags: &[&str]| argv.iter().skip(1).any(|a| flags.contains(&a.as_str()));
    match name {
        "reboot" => Some(Action::Restart),
        "poweroff" => Some(Action::PowerOff),
        "halt" if has(&["-p", "--poweroff"]) => Some(Action::PowerOff),
        "halt" => Some(Action::Halt),
        "shutdown" => {
            // -c cancels a pending shutdown; -k only sends the warning.
            if has(&["-c", "-k"]) {
                None
            } else if has(&["-r", "--reboot"]) {
                Some(Action::Restart)
            } else if has(&["-H", "--halt"]) {
                Some(Action::Halt)
            } else {
                Some(Action::PowerOff)
            }
        }
        _ => None,
    }
}

/// systemctl options that take their value as the next argument.
const SYSTEMCTL_VALUE_OPTS: &[&str] = &[
    "-H",
    "--host",
    "-M",
    "--machine",
    "-t",
    "--type",
    "-p",
    "--property",
    "-s",
    "--signal",
    "--root",
    "-n",
    "--lines",
    "-o",
    "--output",
    "--message",
    "--when",
    "--job-mode",
    "--kill-whom",
    "--boot-loader-entry",
    "--boot-loader-menu",
    "--reboot-argument",
];

/// Positional arguments of a command line, skipping options and their values.
fn positionals<'a>(argv: &'a [String], value_opts: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in argv.iter().skip(1) {
        if skip_next {
            skip_next = false;
        } else if a == "--" {
            continue;
        } else if a.starts_with('-') {
            skip_next = value_opts.contains(&a.as_str());
        } else {
            out.push(a.as_str());
        }
    }
    out
}

fn target_action(unit: &str) -> Option<Action> {
    match unit.trim_end_matches(".target") {
        "reboot" | "ctrl-alt-del" | "soft-reboot" => Some(Action::Restart),
        "poweroff" => Some(Action::PowerOff),
        "halt" => Some(Action::Halt),
        "kexec" => Some(Action::Kexec),
        _ => None,
    }
}

fn systemctl(argv: &[String]) -> Option<Action> {
    if asks_for_help(argv) {
        return None;
    }
    // `systemctl -H host reboot` reboots another machine, not this one.
    if argv
        .iter()
        .any(|a| a == "-H" || a == "--host" || a.starts_with("--host="))
    {
        return None;
    }
    let pos = positionals(argv, SYSTEMCTL_VALUE_OPTS);
    let (verb, rest) = pos.split_first()?;
    match *verb {
        "reboot" | "soft-reboot" => Some(Action::Restart),
        "poweroff" => Some(Action::PowerOff),
        "halt" => Some(Action::Halt),
        "kexec" => Some(Action::Kexec),
        "isolate" | "start" | "restart" => rest.iter().find_map(|u| target_action(u)),
        _ => None,
    }
}

fn telinit(argv: &[String]) -> Option<Action> {
    match positionals(argv, &[]).first().copied()? {
        "0" => Some(Action::PowerOff),
        "6" => Some(Action::Restart),
        _ => None,
    }
}

fn kexec_tool(argv: &[String]) -> Option<Action> {
    if asks_for_help(argv) {
        return None;
    }
    let has = |flags: &[&str]| argv.iter().skip(1).any(|a| flags.contains(&a.as_str()));
    if has(&["-e", "--exec"]) {
        return Some(Action::Kexec);
    }
    // Loading, unloading or loading a crash kernel does not reboot by itself.
    if has(&[
        "-l",
        "--load",
        "-p",
        "--load-panic",
        "-u",
        "--unload",
        "-S",
        "--status",
    ]) {
        return None;
    }
    Some(Action::Kexec)
}

/// logind / systemd manager methods that reboot or power off.
fn dbus(argv: &[String]) -> Option<Action> {
    let service = argv
        .iter()
        .any(|a| a.contains("login1") || a.contains("systemd1"));
    if !service {
        return None;
    }
    argv.iter().skip(1).find_map(|a| {
        let member = a.rsplit('.').next().unwrap_or(a);
        match member {
            "Reboot" | "RebootWithFlags" | "SoftReboot" => Some(Action::Restart),
            "PowerOff" | "PowerOffWithFlags" => Some(Action::PowerOff),
            "Halt" | "HaltWithFlags" => Some(Action::Halt),
            "KExec" | "KExecWithFlags" => Some(Action::Kexec),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use agent_common::{
        event::{EventHeader, kind},
        fill_cstr,
        proc::ProcCtx,
        reboot::{ARGS_LEN, FILENAME_LEN, KEXEC_LOAD},
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
        let mut e = ExecEvent {
            header: EventHeader::new(kind::EXEC, core::mem::size_of::<ExecEvent>(), 1),
            proc: proc(),
            class,
            args_len: 0,
            flags: 0,
            _pad0: 0,
            filename: [0; FILENAME_LEN],
            args: [0; ARGS_LEN],
        };
        fill_cstr(&mut e.filename, filename.as_bytes());
        let block: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
        e.args[..block.len()].copy_from_slice(&block);
        e.args_len = block.len() as u32;
        Event::Exec(Box::new(e))
    }

    fn reboot_call(magic2: u32, cmd: u32) -> Event {
        Event::RebootSyscall(RebootSyscallEvent {
            header: EventHeader::new(kind::REBOOT_SYSCALL, 88, 2),
            proc: proc(),
            magic1: MAGIC1,
            magic2,
            cmd,
            _pad0: 0,
        })
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
            Event::Kexec(KexecEvent {
                header: EventHeader::new(kind::KEXEC, 88, 3),
                proc: proc(),
                syscall,
                _pad0: 0,
                flags,
            })
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
        let e = Event::SysrqOpen(SysrqOpenEvent {
            header: EventHeader::new(kind::SYSRQ_OPEN, core::mem::size_of::<SysrqOpenEvent>(), 1),
            proc: proc(),
            flags: 1,
            syscall: 1,
            _pad0: 0,
        });
        let i = detector().observe(&e, 0).unwrap();
        assert_eq!((i.path, i.action), ("sysrq", Action::Sysrq));
    }

    #[test]
    fn guard_flags_are_reported() {
        let Event::Exec(mut e) = exec("/usr/sbin/reboot", class::POWER, &["reboot"]) else {
            unreachable!()
        };
        e.flags = EXEC_GUARD_BLOCKED;
        let i = detector().observe(&Event::Exec(e.clone()), 0).unwrap();
        assert_eq!(i.guard, Some("blocked"));
        e.flags = EXEC_GUARD_WOULD_BLOCK;
        assert_eq!(
            detector().observe(&Event::Exec(e), 0).unwrap().guard,
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
}
