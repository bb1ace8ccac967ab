//! The `[detectors.tcp_reset]` configuration section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpResetConfig {
    pub enabled: bool,
    /// A storm: at least this many resets with one peer (per direction) within `window`.
    pub storm_threshold: u64,
    #[serde(with = "crate::time::duration")]
    pub window: std::time::Duration,
    /// At most this many `nodeward_tcp_reset_storm_active` series.
    pub max_storm_series: usize,
}

impl Default for TcpResetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            storm_threshold: 100,
            window: std::time::Duration::from_secs(10),
            max_storm_series: 10,
        }
    }
}
