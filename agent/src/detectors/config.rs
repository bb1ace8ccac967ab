//! The `[detectors]` table: one section per detector, each defined in that detector's
//! folder (`detectors/<id>/config.rs`).

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
