//! Configuration: TOML, every section defaulted, unknown fields and bad values rejected
//! with the dotted path of the offending field.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

mod alerting;

pub use crate::detectors::arp::config::ArpConfig;
pub use crate::detectors::config::DetectorsConfig;
pub use crate::detectors::corosync::config::{ClusterRole, CorosyncConfig};
pub use crate::detectors::martian::config::MartianConfig;
pub use crate::detectors::reboot::config::RebootConfig;
pub use crate::detectors::secrets::config::SecretsConfig;
pub use crate::detectors::session::config::SessionConfig;
pub use crate::detectors::tcp_reset::config::TcpResetConfig;
pub use alerting::{AlertingConfig, BasicAuth, PUSHABLE, TlsConfig};

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/nodeward/nodeward.toml";

/// Action kinds, each with its own policy (metric label `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    BlockExec,
    DropPackets,
}

impl ActionKind {
    pub const ALL: [ActionKind; 2] = [ActionKind::BlockExec, ActionKind::DropPackets];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::BlockExec => "block_exec",
            ActionKind::DropPackets => "drop_packets",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    pub http: HttpConfig,
    pub control: ControlConfig,
    pub quarantine: QuarantineConfig,
    pub alerting: AlertingConfig,
    pub detectors: DetectorsConfig,
}

/// What the agent does with a finding. Enforcement arrives with the quarantine engine;
/// until then `dry_run` and `enforce` only record what would be done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Observe,
    DryRun,
    Enforce,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Global mode: observe (default), dry_run or enforce.
    pub mode: Mode,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// Durable state (audit journal, boot records).
    pub state_dir: PathBuf,
    /// Capacity of the queue between the ring-buffer reader and the detectors.
    /// When full, records are dropped and counted (`queue_full`), never blocking the reader.
    pub event_queue: usize,
    /// Enable the kernel's eBPF run-time statistics (`nodeward_program_run*`) while the
    /// agent runs. Off by default: they cost two clock reads (+68 ns measured) per run
    /// of every eBPF program on the host, not only the agent's (restart to change).
    pub program_stats: bool,
    /// The eBPF programs' own diagnostics (map errors, unexpected packet shapes),
    /// forwarded to the agent's log at debug level. Off: the kernel prunes the
    /// diagnostics from the programs at load (no cost per event). Restart to change.
    pub ebpf_log: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Observe,
            log_format: LogFormat::Text,
            log_level: LogLevel::Info,
            state_dir: PathBuf::from("/var/lib/nodeward"),
            event_queue: 4096,
            program_stats: false,
            ebpf_log: false,
        }
    }
}

/// Default HTTP address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9744";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP server (/metrics, /healthz, /readyz, and the webhook).
    pub listen: SocketAddr,
    pub webhook: WebhookConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            webhook: WebhookConfig::default(),
        }
    }
}

/// Alertmanager webhook receiver (POST /alertmanager): a firing alert with a
/// `nodeward_action` label becomes a quarantine request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub enabled: bool,
    /// File holding the bearer token Alertmanager sends (read at start and on SIGHUP).
    pub token_file: PathBuf,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_file: PathBuf::from("/etc/nodeward/webhook.token"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Unix socket for the CLI verbs (root only: peer credentials are checked).
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/nodeward/control.sock"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// TTL of an action that does not name one.
    #[serde(with = "crate::time::duration")]
    pub default_ttl: std::time::Duration,
    /// Longest TTL accepted. Nothing is ever infinite.
    #[serde(with = "crate::time::duration")]
    pub max_ttl: std::time::Duration,
    /// How long a proposal waits for `nodeward approve` before it lapses.
    #[serde(with = "crate::time::duration")]
    pub proposal_ttl: std::time::Duration,
    /// Rate limit: at most `max_actions` applied per `window`.
    pub max_actions: u32,
    #[serde(with = "crate::time::duration")]
    pub window: std::time::Duration,
    /// Cap on concurrently active quarantines.
    pub max_active: usize,
    /// How often expired quarantines and proposals are swept from state (the kernel
    /// ignores expired entries by itself; this only tidies and records `expired`).
    #[serde(with = "crate::time::duration")]
    pub sweep_interval: std::time::Duration,
    /// Addresses (CIDRs) never acted on.
    pub protected_addresses: Vec<ipnet::IpNet>,
    /// MAC addresses never acted on.
    pub protected_macs: Vec<crate::net::Mac>,
    /// Audit journal rotation: size of one file, and how many rotated files to keep.
    pub journal_max_bytes: u64,
    pub journal_keep: usize,
    pub block_exec: BlockExecPolicy,
    pub drop_packets: DropPacketsPolicy,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            default_ttl: Duration::from_secs(15 * 60),
            max_ttl: Duration::from_secs(24 * 3600),
            proposal_ttl: Duration::from_secs(30 * 60),
            max_actions: 10,
            window: Duration::from_secs(60),
            max_active: 64,
            sweep_interval: Duration::from_secs(5),
            protected_addresses: Vec::new(),
            protected_macs: Vec::new(),
            journal_max_bytes: 64 << 20,
            journal_keep: 5,
            block_exec: BlockExecPolicy::default(),
            drop_packets: DropPacketsPolicy::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockExecPolicy {
    /// observe / dry_run / enforce; unset = `agent.mode`.
    pub mode: Option<Mode>,
    /// Every block waits for `nodeward approve ID`.
    pub require_approval: bool,
    /// Binaries (basenames) never blocked, whatever asks.
    pub protected_binaries: Vec<String>,
    /// Allow blocks not scoped to a cgroup (host-wide). Off by default.
    pub allow_unscoped: bool,
}

impl Default for BlockExecPolicy {
    fn default() -> Self {
        Self {
            mode: None,
            require_approval: false,
            protected_binaries: [
                "systemd",
                "init",
                "sshd",
                "sshd-session",
                "nodeward",
                "dbus-daemon",
                "systemd-journal",
            ]
            .map(String::from)
            .to_vec(),
            allow_unscoped: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropPacketsPolicy {
    /// observe / dry_run / enforce; unset = `agent.mode`.
    pub mode: Option<Mode>,
    pub require_approval: bool,
}

/// A configuration error, with the dotted path of the field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: field `{field}`: {message}")]
    Field {
        origin: String,
        field: String,
        message: String,
    },
    #[error("config {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error(
        "{what} {path} is writable by every user (mode {mode:04o}): anyone could change what the agent does; refusing it (fix: chmod o-w {path})"
    )]
    WorldWritable {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
}

impl ConfigError {
    /// Exit code for a bad configuration (usage error).
    pub const EXIT_CODE: i32 = 2;
}

/// Refuse a file or directory every user may write (a directory with the sticky bit,
/// like /tmp, only lets owners replace their own entries: accepted). A path that does
/// not exist is not refused here.
pub fn refuse_world_writable(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky_dir {
        return Err(ConfigError::WorldWritable {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

impl Config {
    /// Parse and validate a TOML document. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().message().trim_end().to_string();
            if field == "." {
                ConfigError::Syntax {
                    origin: origin.to_string(),
                    message,
                }
            } else {
                ConfigError::Field {
                    origin: origin.to_string(),
                    field,
                    message,
                }
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Load from a file; `None` means the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(path) => {
                refuse_world_writable("config file", path)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    refuse_world_writable("config directory", dir)?;
                }
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::parse(&text, &path.display().to_string())
            }
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: &str| ConfigError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            message: message.to_string(),
        };
        if !(16..=1 << 20).contains(&self.agent.event_queue) {
            return Err(bad("agent.event_queue", "must be between 16 and 1048576"));
        }
        if !self.agent.state_dir.is_absolute() {
            return Err(bad("agent.state_dir", "must be an absolute path"));
        }
        if !self.control.socket.is_absolute() {
            return Err(bad("control.socket", "must be an absolute path"));
        }
        if let Some((field, message)) = self.alerting.problem() {
            return Err(bad(&field, &message));
        }
        let q = &self.quarantine;
        if q.default_ttl.is_zero() {
            return Err(bad("quarantine.default_ttl", "must be longer than zero"));
        }
        if q.default_ttl > q.max_ttl {
            return Err(bad(
                "quarantine.default_ttl",
                "must not exceed quarantine.max_ttl",
            ));
        }
        if q.proposal_ttl.is_zero() || q.window.is_zero() || q.sweep_interval.is_zero() {
            return Err(bad(
                "quarantine",
                "proposal_ttl, window and sweep_interval must be longer than zero",
            ));
        }
        if q.max_actions == 0 || q.max_active == 0 {
            return Err(bad(
                "quarantine",
                "max_actions and max_active must be at least 1",
            ));
        }
        // Every active quarantine is one entry in a kernel rule map: never more than
        // the maps hold, so an apply is not refused by a full map.
        let rules = agent_common::quarantine::RULES_CAPACITY as usize;
        if q.max_active > rules {
            return Err(bad(
                "quarantine.max_active",
                &format!("must be at most {rules} (the kernel's rule maps hold {rules} entries)"),
            ));
        }
        for (i, c) in self.detectors.session.sshd_comms.iter().enumerate() {
            if c.is_empty() || c.len() > 15 {
                return Err(bad(
                    &format!("detectors.session.sshd_comms[{i}]"),
                    "must be 1 to 15 bytes (a process comm)",
                ));
            }
        }
        for (i, p) in self.detectors.secrets.paths.iter().enumerate() {
            let text = p.to_string_lossy();
            let glob_ok = !text.contains('*')
                || (text.ends_with("/*") && text.matches('*').count() == 1 && text.len() > 2);
            let watched_len = text.trim_end_matches('*').len();
            if !p.is_absolute()
                || p.as_os_str().len() >= agent_common::secrets::PATH_LEN
                || watched_len < agent_common::secrets::PREFIX_LEN
                || !glob_ok
            {
                return Err(bad(
                    &format!("detectors.secrets.paths[{i}]"),
                    "must be an absolute path of 8 to 63 bytes (a final `/*` watches every file below that directory)",
                ));
            }
        }
        for (i, r) in self.detectors.secrets.allowed_readers.iter().enumerate() {
            if let Err(e) = SecretsConfig::parse_reader(r) {
                return Err(bad(
                    &format!("detectors.secrets.allowed_readers[{i}]"),
                    &e.to_string(),
                ));
            }
        }
        let mr = &self.detectors.martian;
        if mr.flood_threshold == 0 || mr.window.is_zero() {
            return Err(bad(
                "detectors.martian",
                "flood_threshold and window must be above zero",
            ));
        }
        let tr = &self.detectors.tcp_reset;
        if tr.storm_threshold == 0 || tr.window.is_zero() {
            return Err(bad(
                "detectors.tcp_reset",
                "storm_threshold and window must be above zero",
            ));
        }
        let arp = &self.detectors.arp;
        if arp.quiet_period.is_zero() || arp.rescan_interval.is_zero() {
            return Err(bad(
                "detectors.arp",
                "quiet_period and rescan_interval must be longer than zero",
            ));
        }
        for (i, name) in arp.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(bad(
                    &format!("detectors.arp.interfaces[{i}]"),
                    "not an interface name",
                ));
            }
        }
        let cs = &self.detectors.corosync;
        if cs.flood_rate == 0 || cs.quiet_period.is_zero() {
            return Err(bad(
                "detectors.corosync",
                "flood_rate and quiet_period must be above zero",
            ));
        }
        if cs.ports.contains(&0)
            || cs.ports.len() > agent_common::corosync::COROSYNC_PORTS_CAPACITY as usize
        {
            return Err(bad(
                "detectors.corosync.ports",
                "ports are 1-65535, at most 16 of them",
            ));
        }
        for (i, d) in cs.daemons.iter().enumerate() {
            if d.is_empty() || d.len() > 15 {
                return Err(bad(
                    &format!("detectors.corosync.daemons[{i}]"),
                    "must be 1 to 15 bytes (a process comm)",
                ));
            }
        }
        for (i, name) in cs.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(bad(
                    &format!("detectors.corosync.interfaces[{i}]"),
                    "not an interface name",
                ));
            }
        }
        if q.journal_max_bytes < 4096 {
            return Err(bad("quarantine.journal_max_bytes", "must be at least 4096"));
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
    }

    /// Ids of the enabled detectors.
    /// Effective mode of an action kind.
    pub fn action_mode(&self, kind: ActionKind) -> Mode {
        match kind {
            ActionKind::BlockExec => self.quarantine.block_exec.mode,
            ActionKind::DropPackets => self.quarantine.drop_packets.mode,
        }
        .unwrap_or(self.agent.mode)
    }

    pub fn enabled_detectors(&self) -> Vec<&'static str> {
        agent_common::Detector::ALL
            .iter()
            .filter(|d| self.detectors.enabled(**d))
            .map(|d| d.id())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_error(text: &str) -> (String, String) {
        match Config::parse(text, "test") {
            Err(ConfigError::Field { field, message, .. }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(Config::parse("", "test").unwrap(), Config::default());
        let d = Config::default();
        assert_eq!(d.agent.mode, Mode::Observe);
        assert!(d.http.listen.ip().is_loopback());
        assert!(d.detectors.reboot.enabled);
    }

    #[test]
    fn example_config_parses_and_equals_what_it_documents() {
        let text = include_str!("../../deploy/nodeward.example.toml");
        let config = Config::parse(text, "deploy/nodeward.example.toml").unwrap();
        // The example spells out the defaults; it must not drift from them.
        assert_eq!(config, Config::default());
    }

    #[test]
    fn dump_round_trips() {
        let mut c = Config::default();
        c.agent.mode = Mode::DryRun;
        c.detectors.reboot.watch_dbus_tools = false;
        assert_eq!(Config::parse(&c.to_toml(), "dump").unwrap(), c);
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        let (field, message) = field_error("[detectors.reboot]\nenabeld = true\n");
        assert_eq!(field, "detectors.reboot.enabeld");
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn quarantine_values_are_checked() {
        assert_eq!(
            field_error("[quarantine]\ndefault_ttl = \"forever\"\n").0,
            "quarantine.default_ttl"
        );
        assert_eq!(
            field_error("[quarantine]\ndefault_ttl = \"48h\"\n").0,
            "quarantine.default_ttl"
        );
        assert_eq!(
            field_error("[quarantine]\nprotected_addresses = [\"10.0.0.300/24\"]\n").0,
            "quarantine.protected_addresses[0]"
        );
        assert_eq!(
            field_error("[quarantine]\nprotected_macs = [\"nope\"]\n").0,
            "quarantine.protected_macs[0]"
        );
        assert_eq!(
            field_error("[quarantine.block_exec]\nmode = \"maybe\"\n").0,
            "quarantine.block_exec.mode"
        );
        let c = Config::parse("[quarantine]\ndefault_ttl = \"90s\"\nprotected_addresses = [\"10.1.0.0/16\", \"fd00::1/128\"]\n", "t").unwrap();
        assert_eq!(c.quarantine.default_ttl, std::time::Duration::from_secs(90));
        assert_eq!(c.quarantine.protected_addresses.len(), 2);
    }

    #[test]
    fn unknown_section_is_rejected() {
        let (field, _) = field_error("[detectors.nope]\nenabled = true\n");
        assert_eq!(field, "detectors.nope");
    }

    #[test]
    fn bad_values_are_rejected_with_their_path() {
        assert_eq!(field_error("[agent]\nmode = \"yolo\"\n").0, "agent.mode");
        assert_eq!(
            field_error("[http]\nlisten = \"localhost\"\n").0,
            "http.listen"
        );
        assert_eq!(
            field_error("[agent]\nevent_queue = 1\n").0,
            "agent.event_queue"
        );
        assert_eq!(
            field_error("[agent]\nevent_queue = -1\n").0,
            "agent.event_queue"
        );
        assert_eq!(
            field_error("[agent]\nstate_dir = \"rel\"\n").0,
            "agent.state_dir"
        );
        assert_eq!(
            field_error("[detectors.reboot]\nenabled = \"yes\"\n").0,
            "detectors.reboot.enabled"
        );
        // More active quarantines than the kernel's rule maps hold.
        assert_eq!(
            field_error("[quarantine]\nmax_active = 1025\n").0,
            "quarantine.max_active"
        );
        assert!(Config::parse("[quarantine]\nmax_active = 1024\n", "test").is_ok());
    }

    #[test]
    fn syntax_error_is_reported() {
        assert!(matches!(
            Config::parse("[agent\n", "test"),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load(Some(Path::new("/nonexistent/nodeward.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn world_writable_files_and_directories_are_refused_but_sticky_directories_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodeward.toml");
        std::fs::write(&file, "").unwrap();
        mode(&file, 0o644);
        assert!(Config::load(Some(&file)).is_ok());
        mode(&file, 0o646);
        let err = Config::load(Some(&file)).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::WorldWritable {
                    what: "config file",
                    mode: 0o646,
                    ..
                }
            ),
            "{err}"
        );
        mode(&file, 0o644);
        mode(dir.path(), 0o777);
        assert!(matches!(
            Config::load(Some(&file)),
            Err(ConfigError::WorldWritable {
                what: "config directory",
                ..
            })
        ));
        mode(dir.path(), 0o1777);
        assert!(
            Config::load(Some(&file)).is_ok(),
            "a sticky directory (like /tmp) is fine"
        );
        mode(dir.path(), 0o700);
    }
}
