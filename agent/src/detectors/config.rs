//! The `[detectors]` table: one section per detector, each defined in that detector's
//! folder (`detectors/<id>/config.rs`).

use agent_common::Detector;
use serde::{Deserialize, Serialize};

use super::{
    arp::config::ArpConfig, corosync::config::CorosyncConfig, martian::config::MartianConfig,
    reboot::config::RebootConfig, secrets::config::SecretsConfig, session::config::SessionConfig,
    tcp_reset::config::TcpResetConfig,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorsConfig {
    pub reboot: RebootConfig,
    pub session: SessionConfig,
    pub arp: ArpConfig,
    pub tcp_reset: TcpResetConfig,
    pub martian: MartianConfig,
    pub secrets: SecretsConfig,
    pub corosync: CorosyncConfig,
}

/// How a detector's kernel hooks are chosen (`[detectors.<id>] route`): `auto` takes
/// the route that costs the rest of the node nothing (no syscall tracepoint) wherever
/// this kernel allows it, and falls back on its own; `tracepoint` forces the syscall
/// tracepoints (every syscall on the node then takes the kernel's slow path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookRoute {
    #[default]
    Auto,
    Tracepoint,
}

impl DetectorsConfig {
    /// Whether `detector`'s hooks are forced to their syscall-tracepoint fallback.
    pub fn forced_fallback(&self, detector: &str) -> bool {
        match detector {
            "reboot" => self.reboot.route == HookRoute::Tracepoint,
            "session" => self.session.route == HookRoute::Tracepoint,
            "corosync" => self.corosync.route == HookRoute::Tracepoint,
            "secrets" => self.secrets.route == super::secrets::config::Route::Tracepoint,
            _ => false,
        }
    }

    /// Whether `detector` is enabled (`[detectors.<id>] enabled`).
    pub fn enabled(&self, detector: Detector) -> bool {
        match detector {
            Detector::Reboot => self.reboot.enabled,
            Detector::Session => self.session.enabled,
            Detector::Arp => self.arp.enabled,
            Detector::TcpReset => self.tcp_reset.enabled,
            Detector::Martian => self.martian.enabled,
            Detector::Secrets => self.secrets.enabled,
            Detector::Corosync => self.corosync.enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_section_per_detector_named_by_its_id() {
        let table = toml::Value::try_from(DetectorsConfig::default()).unwrap();
        let mut keys: Vec<&str> = table
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut ids = agent_common::DETECTORS.to_vec();
        keys.sort_unstable();
        ids.sort_unstable();
        assert_eq!(keys, ids);
        // `enabled` reads each detector's own section.
        for d in Detector::ALL {
            let mut c = DetectorsConfig::default();
            let on = c.enabled(*d);
            let section = toml::Value::try_from(&c).unwrap()[d.id()]["enabled"].clone();
            assert_eq!(section.as_bool(), Some(on), "{}", d.id());
            let mut v = toml::Value::try_from(&c).unwrap();
            v[d.id()]["enabled"] = toml::Value::Boolean(!on);
            c = v.try_into().unwrap();
            assert_eq!(c.enabled(*d), !on, "{}", d.id());
        }
    }
}
