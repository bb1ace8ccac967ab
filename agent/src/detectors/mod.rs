//! Detectors: pure state machines from kernel records to findings. No I/O here, so
//! every detector is unit-tested on constructed records without root.

pub mod arp;
pub mod config;
pub mod corosync;
pub mod fanotify_loop;
pub mod incident;
pub mod martian;
pub mod metrics;
pub mod procfs;
pub mod reboot;
pub mod report;
pub mod secrets;
pub mod session;
pub mod tcp_reset;
pub mod window;
pub mod worker;

use agent_common::{
    Detector, cstr_bytes,
    decode::Event,
    proc::{ProcCtx, UNSET_ID},
};
use serde::Serialize;

use config::DetectorsConfig;

/// Every detector id, in the order they are reported (the one list, in agent-common).
pub use agent_common::DETECTORS as ALL;

/// A conclusion drawn by a detector.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    RebootIntent(reboot::RebootIntent),
    SshSession(session::SshSession),
    Arp(arp::ArpFinding),
    TcpReset(tcp_reset::ResetFinding),
    Martian(martian::MartianFinding),
    Incident(incident::Incident),
    Secret(secrets::SecretFinding),
    Corosync(corosync::CorosyncFinding),
}

impl Finding {
    pub fn detector(&self) -> &'static str {
        match self {
            Finding::RebootIntent(_) => Detector::Reboot.id(),
            Finding::SshSession(_) => Detector::Session.id(),
            Finding::Arp(_) => Detector::Arp.id(),
            Finding::TcpReset(_) => Detector::TcpReset.id(),
            Finding::Martian(_) => Detector::Martian.id(),
            Finding::Incident(_) => "incident",
            Finding::Secret(_) => Detector::Secrets.id(),
            Finding::Corosync(_) => Detector::Corosync.id(),
        }
    }
}

/// The process a record came from, in userspace form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub loginuid: Option<u32>,
    pub sessionid: Option<u32>,
    pub cgroup_id: u64,
    pub comm: String,
    pub origin: Origin,
}

/// Where a process came from (the `session` detector).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Descends from an SSH connection accepted by `sshd_pid`.
    Ssh {
        peer: std::net::IpAddr,
        peer_port: u16,
        local_port: u16,
        sshd_pid: u32,
    },
    /// A login session that is not SSH (console, tty), by its audit login uid.
    Local,
    /// Started by the init system or a daemon (no login uid).
    Service,
    /// Not SSH, and the login uid could not be read on this kernel.
    Unknown,
}

impl Origin {
    /// Bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Origin::Ssh { .. } => "ssh",
            Origin::Local => "local",
            Origin::Service => "service",
            Origin::Unknown => "unknown",
        }
    }

    pub fn from_kernel(
        o: &agent_common::session::Origin,
        loginuid: Option<u32>,
        flags: u32,
    ) -> Origin {
        use agent_common::session::{AF_INET, ORIGIN_SSH};
        if o.kind == ORIGIN_SSH {
            let peer = if o.family == AF_INET {
                std::net::IpAddr::from([
                    o.peer_addr[0],
                    o.peer_addr[1],
                    o.peer_addr[2],
                    o.peer_addr[3],
                ])
            } else {
                std::net::IpAddr::from(o.peer_addr)
            };
            return Origin::Ssh {
                peer,
                peer_port: o.peer_port,
                local_port: o.local_port,
                sshd_pid: o.sshd_pid,
            };
        }
        if flags & agent_common::proc::PROC_LOGINUID_UNKNOWN != 0 {
            return Origin::Unknown;
        }
        if loginuid.is_some() {
            Origin::Local
        } else {
            Origin::Service
        }
    }
}

impl From<&ProcCtx> for Process {
    fn from(p: &ProcCtx) -> Self {
        let id = |v: u32| (v != UNSET_ID).then_some(v);
        Process {
            pid: p.pid,
            tid: p.tid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            loginuid: id(p.loginuid),
            sessionid: id(p.sessionid),
            cgroup_id: p.cgroup_id,
            comm: lossy(&p.comm),
            origin: Origin::from_kernel(&p.origin, id(p.loginuid), p.flags),
        }
    }
}

/// A NUL-terminated kernel buffer as a string (invalid UTF-8 replaced).
pub fn lossy(buf: &[u8]) -> String {
    String::from_utf8_lossy(cstr_bytes(buf)).into_owned()
}

/// All enabled detectors.
pub struct DetectorSet {
    reboot: Option<reboot::RebootDetector>,
    session: Option<session::SessionDetector>,
    arp: Option<arp::ArpDetector>,
    secrets: Option<secrets::SecretsDetector>,
    /// The `corosync` detector's local side: this node's role (once known) and network
    /// namespace. Its wire side runs with the kernel counters (detectors::corosync::runtime).
    corosync_role: Option<corosync::Role>,
    corosync_enabled: bool,
    own_netns: u32,
}

impl DetectorSet {
    pub fn new(config: &DetectorsConfig) -> Self {
        let r = &config.reboot;
        DetectorSet {
            reboot: r.enabled.then(|| reboot::RebootDetector::new(r)),
            session: config
                .session
                .enabled
                .then(session::SessionDetector::default),
            arp: config
                .arp
                .enabled
                .then(|| arp::ArpDetector::new(&config.arp)),
            secrets: config
                .secrets
                .enabled
                .then(|| secrets::SecretsDetector::new(&config.secrets)),
            corosync_role: None,
            corosync_enabled: config.corosync.enabled,
            own_netns: crate::net::own_netns(),
        }
    }

    /// Time passes (for findings that end by silence).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Finding> {
        self.arp
            .as_mut()
            .map(|d| d.tick(now_ms).into_iter().map(Finding::Arp).collect())
            .unwrap_or_default()
    }

    /// New IPAM leases (or none).
    pub fn set_arp_leases(&mut self, leases: Option<arp::Leases>) -> Vec<Finding> {
        self.arp
            .as_mut()
            .map(|d| d.set_leases(leases).into_iter().map(Finding::Arp).collect())
            .unwrap_or_default()
    }

    /// Addresses diverging from IPAM, by kind.
    pub fn arp_drift(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.arp
            .as_ref()
            .map(arp::ArpDetector::drift_counts)
            .unwrap_or_default()
    }

    /// Active ARP conflicts (for metrics and `nodeward bindings`).
    pub fn arp_conflicts(&self) -> Vec<arp::ActiveConflict> {
        self.arp
            .as_ref()
            .map(arp::ArpDetector::active_conflicts)
            .unwrap_or_default()
    }

    /// This node's cluster role changed (decided by the corosync runtime).
    pub fn set_corosync_role(&mut self, role: Option<corosync::Role>) {
        self.corosync_role = role;
    }

    /// A reboot allowance window changed (`nodeward allow-reboot`).
    pub fn set_reboot_allowance(&mut self, a: Option<reboot::Allowance>) {
        if let Some(d) = &mut self.reboot {
            d.set_allowance(a);
        }
    }

    /// Feed one record; returns what it means.
    pub fn observe(&mut self, event: &Event, now_ms: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(d) = &mut self.reboot {
            out.extend(d.observe(event, now_ms).map(Finding::RebootIntent));
        }
        if let Some(d) = &mut self.session {
            out.extend(d.observe(event).map(Finding::SshSession));
        }
        if let Some(d) = &mut self.arp {
            out.extend(d.observe(event, now_ms).into_iter().map(Finding::Arp));
        }
        if let Some(d) = &mut self.secrets {
            out.extend(d.observe(event).map(Finding::Secret));
        }
        if self.corosync_enabled
            && let Some(role) = &self.corosync_role
        {
            out.extend(corosync::local(event, role, self.own_netns).map(Finding::Corosync));
        }
        out
    }
}
