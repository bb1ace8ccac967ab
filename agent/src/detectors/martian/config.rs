//! The `[detectors.martian]` configuration section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MartianConfig {
    pub enabled: bool,
    /// skb drop reasons counted, by name (resolved from the running kernel's BTF).
    pub reasons: Vec<String>,
    /// A flood: at least this many drops per interface and reason within `window`.
    pub flood_threshold: u64,
    #[serde(with = "crate::time::duration")]
    pub window: std::time::Duration,
    /// Sources named in a flood finding and as series while it lasts.
    pub top_sources: usize,
    /// At most this many `nodeward_martian_flood_active` series.
    pub max_flood_series: usize,
}

impl Default for MartianConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reasons: [
                "ip_rpfilter",
                "ip_invalid_source",
                "ip_local_source",
                "ip_localnet",
                "ip_invalid_dest",
            ]
            .map(String::from)
            .to_vec(),
            flood_threshold: 100,
            window: std::time::Duration::from_secs(10),
            top_sources: 5,
            max_flood_series: 10,
        }
    }
}
