//! The `corosync` detector's view of the cluster, as `nodeward status` shows it.

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::Role;

/// The `corosync` detector's view of the cluster (only `enabled` when it is off).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cluster {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<ClusterMember>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rogues: Vec<Rogue>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterMember {
    pub addr: IpAddr,
    pub node_id: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rogue {
    pub addr: IpAddr,
    pub packets_per_second: u64,
}
