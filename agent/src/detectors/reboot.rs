//! `reboot` detector: which records are an intent to reboot, halt, power off or kexec
//! the machine, and by which path.

pub mod argv;
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
    /// The kernel's walk of the ancestors at an exec (pid, comm; nearest first), from
    /// which `lineage` is made.
    #[serde(skip)]
    pub ancestors: Vec<(u32, String)>,
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
            ancestors: Vec::new(),
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
    /// The word table of the watched commands (the kernel guard's, [`argv`]).
    argv_rules: std::collections::HashMap<agent_common::reboot::argv::ArgvWordKey, u32>,
}

impl RebootDetector {
    pub fn new(config: &RebootConfig) -> Self {
        RebootDetector {
            config: config.clone(),
            allowance: None,
            argv_rules: argv::table(),
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
        let guard = if e.flags & EXEC_GUARD_BLOCKED != 0 {
            Some("blocked")
        } else if e.flags & EXEC_GUARD_WOULD_BLOCK != 0 {
            Some("would_block")
        } else {
            None
        };
        if e.class == class::DBUS && !self.config.watch_dbus_tools {
            return None;
        }
        // The kernel's guard reads argv the same way; a command it stopped is always
        // reported, even where the record's copy of argv was cut short.
        if guard.is_none() && !argv::reboots(&self.argv_rules, e.class, &argv) {
            return None;
        }
        let (path, action) = match e.class {
            class::POWER => ("exec", power_action(basename(&filename), &argv)),
            class::SYSTEMCTL => ("exec", systemctl_action(&argv)),
            class::TELINIT => ("exec", telinit_action(&argv)),
            class::KEXEC_TOOL => ("exec", Action::Kexec),
            class::DBUS => ("dbus", dbus_action(&argv)),
            _ => return None,
        };
        let ancestors = e
            .ancestors
            .iter()
            // A comm the kernel could not read ends the walk there (/proc goes on).
            .take_while(|a| a.pid != 0 && a.comm[0] != 0)
            .map(|a| (a.pid, lossy(&a.comm)))
            .collect();
        Some(RebootIntent {
            filename: Some(filename),
            argv,
            argv_truncated: e.flags & EXEC_ARGS_TRUNCATED != 0,
            guard,
            ancestors,
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

/// reboot / shutdown / poweroff / halt (whether it reboots at all: [`argv`]).
fn power_action(name: &str, argv: &[String]) -> Action {
    let has = |flags: &[&str]| argv.iter().skip(1).any(|a| flags.contains(&a.as_str()));
    match name {
        "reboot" => Action::Restart,
        "halt" if has(&["-p", "--poweroff"]) => Action::PowerOff,
        "halt" => Action::Halt,
        "shutdown" if has(&["-r", "--reboot"]) => Action::Restart,
        "shutdown" if has(&["-H", "--halt"]) => Action::Halt,
        _ => Action::PowerOff,
    }
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

/// What a systemctl command line that reboots does: its verb, or the target it starts.
fn systemctl_action(argv: &[String]) -> Action {
    argv.iter()
        .skip(1)
        .find_map(|a| match a.as_str() {
            "reboot" | "soft-reboot" => Some(Action::Restart),
            "poweroff" => Some(Action::PowerOff),
            "halt" => Some(Action::Halt),
            "kexec" => Some(Action::Kexec),
            other => target_action(other),
        })
        .unwrap_or(Action::Restart)
}

fn telinit_action(argv: &[String]) -> Action {
    if argv.iter().skip(1).any(|a| a == "0") {
        Action::PowerOff
    } else {
        Action::Restart
    }
}

/// The logind / systemd manager method called.
fn dbus_action(argv: &[String]) -> Action {
    argv.iter()
        .skip(1)
        .find_map(|a| match a.rsplit('.').next().unwrap_or(a) {
            "PowerOff" | "PowerOffWithFlags" => Some(Action::PowerOff),
            "Halt" | "HaltWithFlags" => Some(Action::Halt),
            "KExec" | "KExecWithFlags" => Some(Action::Kexec),
            "Reboot" | "RebootWithFlags" | "SoftReboot" => Some(Action::Restart),
            _ => None,
        })
        .unwrap_or(Action::Restart)
}

#[cfg(test)]
mod tests;
