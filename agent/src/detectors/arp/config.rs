//! The `[detectors.arp]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArpConfig {
    pub enabled: bool,
    /// Interfaces to watch. Empty: every bridge and bridge port, re-discovered on each
    /// rtnetlink link event (and every `rescan_interval`, a backstop).
    pub interfaces: Vec<String>,
    #[serde(with = "crate::time::duration")]
    pub rescan_interval: std::time::Duration,
    /// Two MACs claiming one address within this window are both live (a conflict).
    #[serde(with = "crate::time::duration")]
    pub conflict_window: std::time::Duration,
    /// A conflict ends when only one MAC has been seen for this long.
    #[serde(with = "crate::time::duration")]
    pub quiet_period: std::time::Duration,
    /// At most this many `nodeward_arp_conflict_active` series (the rest are counted
    /// in `nodeward_arp_conflicts_active` and logged).
    pub max_conflict_series: usize,
    /// IPAM lease file (JSON or CSV, see README), re-read when it changes: live
    /// addresses free in IPAM or held by another MAC than the lease's are findings.
    pub leases: Option<PathBuf>,
    /// When an address changes hands by a gratuitous ARP or unsolicited NA, ask the
    /// previous owner whether it still holds it (one unicast ARP probe or DAD neighbour
    /// solicitation; it changes no cache): an answer is a conflict at once.
    pub active_check: bool,
    /// At most this many active-check frames a second (and in a burst).
    pub active_check_rate: u32,
}

impl Default for ArpConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            enabled: true,
            interfaces: Vec::new(),
            rescan_interval: Duration::from_secs(30),
            conflict_window: Duration::from_millis(500),
            quiet_period: Duration::from_secs(60),
            max_conflict_series: 10,
            leases: None,
            active_check: true,
            active_check_rate: 5,
        }
    }
}

impl ArpConfig {
    /// The interfaces the observer should watch: the configured ones, or every bridge
    /// and bridge port of `links`; none when disabled.
    pub fn watched(&self, links: &crate::net::Links) -> Vec<String> {
        match self {
            c if !c.enabled => Vec::new(),
            c if c.interfaces.is_empty() => links.bridges_and_ports(),
            c => c.interfaces.clone(),
        }
    }
}
