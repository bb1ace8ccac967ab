//! `reboot` detector: which records are an intent to reboot, halt, power off or kexec
//! the machine, and by which path.

pub mod config;
pub mod history;
pub mod kernel;
pub mod metrics;
pub mod report;
pub mod sysrq;

use agent_common::{
    decode::Event,
    reboot::{
        EXEC_ARGS_TRUNCATED, EXEC_GUARD_BLOCKED, EXEC_GUARD_WOULD_BLOCK, ExecEvent,
        KEXEC_FILE_LOAD, KexecEvent, RebootSyscallEvent, class,
    },
};
use serde::Serialize;

use super::{Origin, Process, lossy};
use config::RebootConfig;

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
mod tests;
