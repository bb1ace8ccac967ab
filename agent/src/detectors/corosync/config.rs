//! The `[detectors.corosync]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// This node's part in the corosync cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// `member` when one of this node's addresses is in the nodelist, else `standalone`.
    Auto,
    Member,
    Standalone,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorosyncConfig {
    pub enabled: bool,
    /// The cluster's own configuration (nodelist, ports), re-read when it changes. A
    /// missing file means no cluster: no members, role standalone (under `auto`).
    pub config: PathBuf,
    pub role: ClusterRole,
    /// UDP ports of cluster traffic. Empty: the ports of corosync.conf (5405 default).
    pub ports: Vec<u16>,
    /// Interfaces whose ingress is watched. Empty: every interface but loopback,
    /// re-discovered every `detectors.arp.rescan_interval`.
    pub interfaces: Vec<String>,
    /// A source sending more packets per second than this (on one interface) floods.
    pub flood_rate: u64,
    /// A rogue or flood episode ends after this long without its traffic.
    #[serde(with = "crate::time::duration")]
    pub quiet_period: std::time::Duration,
    /// Cluster daemons (comm): their start on a standalone node is a finding.
    pub daemons: Vec<String>,
    /// Ask the quarantine engine to drop cluster traffic from rogue sources (subject to
    /// `quarantine.drop_packets` mode and safeguards).
    pub quarantine_rogues: bool,
    /// At most this many `nodeward_corosync_rogue_packets_per_second` series.
    pub max_rogue_series: usize,
    /// Kernel hooks: `auto` (no syscall tracepoint where this kernel allows it) or
    /// `tracepoint` (the syscall-tracepoint fallback; every syscall on the node pays).
    pub route: crate::detectors::config::HookRoute,
}

impl Default for CorosyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            config: PathBuf::from("/etc/corosync/corosync.conf"),
            role: ClusterRole::Auto,
            ports: Vec::new(),
            interfaces: Vec::new(),
            flood_rate: 2000,
            quiet_period: std::time::Duration::from_secs(30),
            daemons: vec!["corosync".into()],
            quarantine_rogues: true,
            max_rogue_series: 10,
            route: Default::default(),
        }
    }
}

impl CorosyncConfig {
    /// The interfaces cluster traffic is counted on: the configured ones, or every
    /// interface of `links` but `lo`; none when disabled.
    pub fn watched(&self, links: &crate::net::Links) -> Vec<String> {
        match self {
            c if !c.enabled => Vec::new(),
            c if c.interfaces.is_empty() => links
                .0
                .iter()
                .map(|l| l.name.clone())
                .filter(|n| n != "lo")
                .collect(),
            c => c.interfaces.clone(),
        }
    }
}
