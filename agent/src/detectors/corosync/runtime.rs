//! `corosync` detector at run time: reads the cluster's configuration (re-read when it
//! changes), decides this node's role, keeps the kernel's ports/members/daemons maps in
//! step, samples the per-source counters once a second, and asks the quarantine engine
//! to drop rogue sources' cluster traffic.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::status::{Cluster, ClusterMember, Rogue};
use crate::{
    config::{ClusterRole, Config, CorosyncConfig, Mode},
    detectors::metrics::Metrics,
    detectors::{
        Finding,
        corosync::{
            CorosyncDetector, CorosyncFinding, Role, Sample,
            conf::{self, ClusterConf},
            kernel::{Counters, ReadFailed},
        },
        worker::Worker,
    },
    kernel::metrics::ReadErrors,
    quarantine::kernel::Guard,
    quarantine::{ActionKind, Request, Target, Trigger},
    time::{Now, now_ms},
};

/// `source` labels of failed reads of the cluster counters: the maps could not be
/// opened, the totals or the per-source counts could not be read.
const COUNTERS: &str = "corosync_counters";
const TOTALS: &str = "corosync_totals";
const SOURCES: &str = "corosync_sources";

/// What the kernel was last given.
#[derive(PartialEq)]
struct Applied {
    ports: Vec<u16>,
    members: BTreeMap<IpAddr, u32>,
    daemons: Vec<String>,
}

/// State of the cluster configuration file.
enum ConfState {
    /// Not read yet.
    Unknown,
    /// No file: no cluster here.
    Missing,
    Loaded(ClusterConf),
    /// Unreadable or malformed: the detector is down.
    Broken(String),
}

pub struct Runtime {
    config: CorosyncConfig,
    /// Last text read (to notice changes), and what it meant.
    last_text: Option<String>,
    state: ConfState,
    applied: Option<Applied>,
    detector: CorosyncDetector,
    counters: Option<Counters>,
    /// Which counter slot each member has in the kernel.
    slots: std::sync::Arc<std::sync::Mutex<super::kernel::MemberSlots>>,
    role_tx: watch::Sender<Option<Role>>,
    findings: mpsc::Sender<Finding>,
    /// The file is read on its own thread (it may live on pmxcfs, which hangs with the
    /// cluster).
    read: Worker<std::io::Result<String>>,
    slow_read_reported: bool,
}

/// Outcome of polling the file.
enum Polled {
    /// No new read result (in flight, or nothing changed).
    Nothing,
    Read(std::io::Result<String>),
}

/// This node's addresses (in the agent's network namespace).
fn local_addrs() -> BTreeSet<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|ifa| {
                    let sa = ifa.address?;
                    if let Some(v4) = sa.as_sockaddr_in() {
                        Some(IpAddr::V4(v4.ip()))
                    } else {
                        sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The role from configuration, or inferred from the nodelist and local addresses.
pub fn decide_role(
    wanted: ClusterRole,
    path: &Path,
    conf: Option<&ClusterConf>,
    local: &BTreeSet<IpAddr>,
) -> Role {
    match wanted {
        ClusterRole::Member => Role {
            standalone: false,
            reason: "detectors.corosync.role = \"member\"".into(),
        },
        ClusterRole::Standalone => Role {
            standalone: true,
            reason: "detectors.corosync.role = \"standalone\"".into(),
        },
        ClusterRole::Auto => match conf {
            None => Role {
                standalone: true,
                reason: format!("no cluster configuration at {}", path.display()),
            },
            Some(c) => {
                let members = c.member_addrs();
                match local.iter().find_map(|a| members.get(a).map(|id| (a, id))) {
                    Some((a, id)) => Role {
                        standalone: false,
                        reason: format!("local address {a} is node {id} in {}", path.display()),
                    },
                    None => Role {
                        standalone: true,
                        reason: format!(
                            "no local address is in the nodelist of {}",
                            path.display()
                        ),
                    },
                }
            }
        },
    }
}

impl Runtime {
    pub fn new(
        config: &Config,
        role_tx: watch::Sender<Option<Role>>,
        findings: mpsc::Sender<Finding>,
    ) -> Runtime {
        Runtime {
            config: config.detectors.corosync.clone(),
            last_text: None,
            state: ConfState::Unknown,
            applied: None,
            detector: CorosyncDetector::new(&config.detectors.corosync),
            counters: None,
            slots: Default::default(),
            role_tx,
            findings,
            read: {
                let path = config.detectors.corosync.config.clone();
                Worker::new("corosync-conf", move || std::fs::read_to_string(&path))
            },
            slow_read_reported: false,
        }
    }

    /// The latest read of the file, waiting at most `wait` for one in flight.
    fn read_file(&mut self, wait: std::time::Duration) -> Polled {
        if let Err(e) = self.read.start() {
            return Polled::Read(Err(e));
        }
        match self.read.result(wait) {
            Some(r) => {
                self.slow_read_reported = false;
                Polled::Read(r)
            }
            None => {
                if self.read.busy_for() > Some(std::time::Duration::from_secs(5))
                    && !self.slow_read_reported
                {
                    warn!(detector = "corosync", file = %self.path().display(), "reading the cluster configuration takes longer than 5 s (a hung file system such as pmxcfs?); keeping the last one");
                    self.slow_read_reported = true;
                }
                Polled::Nothing
            }
        }
    }

    /// A new agent configuration (SIGHUP).
    pub fn reconfigure(&mut self, config: &Config) {
        if config.detectors.corosync != self.config {
            *self = Runtime::new(config, self.role_tx.clone(), self.findings.clone());
        }
    }

    fn path(&self) -> PathBuf {
        self.config.config.clone()
    }

    /// Re-read the cluster configuration if it changed.
    fn poll_file(&mut self, metrics: &Metrics, wait: std::time::Duration) {
        let path = self.path();
        let read = match self.read_file(wait) {
            Polled::Nothing => return,
            Polled::Read(r) => r,
        };
        let text = match read {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", path.display());
                if !matches!(&self.state, ConfState::Broken(m) if *m == msg) {
                    error!(detector = "corosync", file = %path.display(), error = %e, "cluster configuration unreadable; detector down");
                    metrics.corosync.config_loaded(false);
                }
                self.state = ConfState::Broken(msg);
                self.last_text = None;
                return;
            }
        };
        if !matches!(self.state, ConfState::Unknown) && text == self.last_text {
            return;
        }
        self.state = match &text {
            None => {
                info!(detector = "corosync", file = %path.display(), "no cluster configuration: no members, every cluster source is a rogue");
                metrics.corosync.config_loaded(true);
                ConfState::Missing
            }
            Some(t) => match conf::parse(t) {
                Ok(c) => {
                    info!(
                        detector = "corosync",
                        file = %path.display(),
                        members = c.members.len(),
                        ports = ?c.ports,
                        transport = c.transport.as_deref().unwrap_or("knet"),
                        crypto_cipher = c.crypto_cipher.as_deref().unwrap_or("none"),
                        "cluster configuration loaded"
                    );
                    for u in &c.unresolved {
                        warn!(detector = "corosync", address = %u, "nodelist address does not resolve; not counted as a member");
                    }
                    metrics.corosync.config_loaded(true);
                    ConfState::Loaded(c)
                }
                Err(e) => {
                    error!(detector = "corosync", file = %path.display(), error = %e, "cluster configuration malformed; detector down until it is fixed");
                    metrics.corosync.config_loaded(false);
                    ConfState::Broken(format!("{}: {e}", path.display()))
                }
            },
        };
        self.last_text = text;
    }

    /// For `nodeward status`: configuration state, role, members, active rogues.
    pub fn status(&self) -> Cluster {
        if !self.config.enabled {
            return Cluster::default();
        }
        let (state, error) = match &self.state {
            ConfState::Unknown => ("not read yet", None),
            ConfState::Missing => ("absent (no cluster)", None),
            ConfState::Loaded(_) => ("loaded", None),
            ConfState::Broken(e) => ("broken", Some(e.clone())),
        };
        Cluster {
            enabled: true,
            config: Some(self.config.config.clone()),
            config_state: Some(state.into()),
            config_error: error,
            role: self.role_tx.borrow().clone(),
            members: self.applied.as_ref().map(|a| {
                a.members
                    .iter()
                    .map(|(ip, id)| ClusterMember {
                        addr: *ip,
                        node_id: *id,
                    })
                    .collect()
            }),
            ports: self.applied.as_ref().map(|a| a.ports.clone()),
            rogues: self
                .detector
                .active_rogues()
                .iter()
                .map(|r| Rogue {
                    addr: r.addr,
                    packets_per_second: r.rate,
                })
                .collect(),
        }
    }

    /// Why the detector is down, if it is (besides its programs).
    pub fn down_reason(&self) -> Option<&str> {
        match &self.state {
            ConfState::Broken(m) => Some(m),
            _ => None,
        }
    }

    /// Once a second: configuration, kernel maps, counters, findings, quarantines.
    /// `wait`: how long to wait for the configuration file (at start only; the run loop
    /// passes zero and takes the result at a later tick).
    pub fn tick(&mut self, guard: &mut Guard, metrics: &Metrics, wait: std::time::Duration) {
        if !self.config.enabled {
            return;
        }
        self.poll_file(metrics, wait);
        let conf = match &self.state {
            ConfState::Loaded(c) => Some(c.clone()),
            ConfState::Missing => None,
            ConfState::Unknown => return,
            ConfState::Broken(_) => {
                metrics.set_corosync_state(false, 0, None);
                return;
            }
        };
        let role = decide_role(
            self.config.role,
            &self.path(),
            conf.as_ref(),
            &local_addrs(),
        );
        let mut changed = None;
        self.role_tx.send_if_modified(|r| {
            if r.as_ref() == Some(&role) {
                return false;
            }
            info!(detector = "corosync", standalone = role.standalone, reason = %role.reason, "cluster role");
            changed = crate::detectors::corosync::role_change(r.as_ref(), &role);
            *r = Some(role.clone());
            true
        });
        if let Some(f) = changed
            && self.findings.try_send(Finding::Corosync(f)).is_err()
        {
            error!(
                detector = "corosync",
                "finding dropped: the pipeline queue is full"
            );
        }
        let members = conf
            .as_ref()
            .map(ClusterConf::member_addrs)
            .unwrap_or_default();
        let ports = if !self.config.ports.is_empty() {
            self.config.ports.clone()
        } else {
            conf.as_ref()
                .map(|c| c.ports.clone())
                .unwrap_or_else(|| vec![conf::DEFAULT_PORT])
        };
        let want = Applied {
            ports,
            members,
            daemons: self.config.daemons.clone(),
        };
        if self.applied.as_ref() != Some(&want) {
            let (ports, members, daemons, slots) = (
                want.ports.clone(),
                want.members.clone(),
                want.daemons.clone(),
                self.slots.clone(),
            );
            match guard
                .backend()
                .call(move |k| k.sync_corosync(&ports, &slots, &members, &daemons))
            {
                Ok(()) => {
                    self.detector.set_members(want.members.clone());
                    self.applied = Some(want);
                }
                Err(e) => {
                    error!(detector = "corosync", error = %e, "cannot load the cluster members into the kernel");
                    return;
                }
            }
        }
        let n_members = self.applied.as_ref().map_or(0, |a| a.members.len());
        metrics.set_corosync_state(true, n_members, Some(role.standalone));
        if self.counters.is_none() {
            metrics
                .agent
                .preset_read_errors(&[COUNTERS, TOTALS, SOURCES]);
            let slots = self.slots.clone();
            let opened = guard
                .backend()
                .call(move |k| k.corosync_counters(slots))
                .map_err(|e| (COUNTERS, e));
            match record_read(metrics, opened) {
                Some(c) => self.counters = Some(c),
                None => return,
            }
        }
        let counters = self.counters.as_mut().expect("set above");
        let read = counters.read().map_err(|e| match e {
            ReadFailed::Totals(e) => (TOTALS, e),
            ReadFailed::Sources(e) => (SOURCES, e),
        });
        let Some((totals, rows)) = record_read(metrics, read) else {
            return;
        };
        metrics.corosync.totals(&totals);
        let samples: Vec<Sample> = rows
            .into_iter()
            .map(|r| Sample {
                addr: crate::net::key_addr(r.addr),
                interface: crate::net::ifname(r.ifindex),
                member: r.member,
                packets: r.packets,
                dropped: r.dropped,
            })
            .collect();
        let found = self.detector.sample(now_ms(), &samples);
        metrics.corosync.rogues(
            &self.detector.active_rogues(),
            self.detector.flooding(),
            self.config.max_rogue_series,
        );
        for f in found {
            if self.findings.try_send(Finding::Corosync(f)).is_err() {
                error!(
                    detector = "corosync",
                    "finding dropped: the pipeline queue is full"
                );
            }
        }
    }
}

/// Apply one read of the kernel's cluster counters to the metrics. A failure is counted
/// by source (`nodeward_kernel_read_errors_total`) and takes the detector down — it sees
/// nothing meanwhile — until a read succeeds; never a silent 0 or a partial sample.
pub(crate) fn record_read<T, E: std::fmt::Display>(
    metrics: &Metrics,
    read: Result<T, (&'static str, E)>,
) -> Option<T> {
    let ok = read.is_ok();
    if metrics.corosync.reads_ok.swap(ok, Ordering::Relaxed) != ok {
        metrics.refresh_corosync_up();
    }
    match read {
        Ok(v) => Some(v),
        Err((source, e)) => {
            ReadErrors::new(&metrics.agent).failed(source, e);
            None
        }
    }
}

/// A `rogue_member` finding, after it was logged and counted: ask the engine to drop the
/// rogue's cluster traffic (unless observe mode or `quarantine_rogues = false`). Called
/// by the run loop, which owns the engine (the same order as every finding: log, metrics,
/// journal, quarantine request).
pub fn quarantine(guard: &mut Guard, config: &Config, metrics: &Metrics, f: &CorosyncFinding) {
    if f.kind == "rogue_member"
        && config.detectors.corosync.quarantine_rogues
        && config.action_mode(ActionKind::DropPackets) != Mode::Observe
        && let Some(addr) = f.addr
    {
        let request = Request {
            target: Target::ClusterSource {
                addr,
                interfaces: f.interfaces.clone(),
            },
            ttl_s: None,
            trigger: Trigger {
                source: "corosync".into(),
                detail: format!(
                    "rogue_member: {addr} sends cluster traffic ({} packets/s) and is not in the nodelist",
                    f.rate_pps.unwrap_or(0)
                ),
            },
        };
        match guard.request(request, Now::system()) {
            Ok(outcome) => {
                info!(detector = "corosync", address = %addr, outcome = ?outcome, "quarantine requested for a rogue cluster source")
            }
            Err(e) => {
                error!(detector = "corosync", address = %addr, error = %e, "quarantine request failed")
            }
        }
        metrics.quarantine.sync(guard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_is_inferred_from_local_addresses_unless_configured() {
        let conf = conf::parse("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n")
            .unwrap();
        let p = Path::new("/etc/corosync/corosync.conf");
        let here: BTreeSet<IpAddr> = ["10.0.0.1".parse().unwrap()].into();
        let elsewhere: BTreeSet<IpAddr> = ["10.0.0.9".parse().unwrap()].into();
        assert!(!decide_role(ClusterRole::Auto, p, Some(&conf), &here).standalone);
        let r = decide_role(ClusterRole::Auto, p, Some(&conf), &elsewhere);
        assert!(r.standalone);
        assert!(r.reason.contains("nodelist"), "{}", r.reason);
        assert!(decide_role(ClusterRole::Auto, p, None, &here).standalone);
        assert!(!decide_role(ClusterRole::Member, p, None, &elsewhere).standalone);
        assert!(decide_role(ClusterRole::Standalone, p, Some(&conf), &here).standalone);
    }
}
