//! Alertmanager webhook receiver: a firing alert carrying a `nodeward_action` label
//! becomes a quarantine request (proposed, or applied only where that action's policy
//! is enforce without approval). Labels:
//!
//! - `nodeward_action`: `drop_packets` or `block_exec`
//! - drop_packets: `nodeward_source_ip`, or `nodeward_source_mac`, or both
//!   `nodeward_claimed_ip` + `nodeward_source_mac` (ARP claim); `nodeward_interfaces`
//!   (comma-separated)
//! - block_exec: `nodeward_binary`, `nodeward_cgroup` (cgroup v2 path)
//! - optional `nodeward_ttl` (e.g. `10m`)

use std::{collections::BTreeMap, os::unix::fs::MetadataExt};

use serde::Deserialize;

use crate::{
    net::MacParseError,
    quarantine::{Request, Target, Trigger},
};

#[derive(Debug, Deserialize)]
pub struct Payload {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub fingerprint: String,
}

/// A cgroup path that does not name a cgroup here.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// cgroup v2 id of a cgroup path (the inode number of its directory).
pub fn cgroup_id(path: &str) -> Result<u64, CgroupError> {
    // An existing absolute path is used as is (cgroup2 may be mounted elsewhere than
    // /sys/fs/cgroup on hybrid hosts); anything else is relative to /sys/fs/cgroup.
    let full = if path.starts_with('/') && std::path::Path::new(path).is_dir() {
        path.to_string()
    } else {
        format!("/sys/fs/cgroup/{}", path.trim_start_matches('/'))
    };
    std::fs::metadata(&full)
        .map(|m| m.ino())
        .map_err(|source| CgroupError { path: full, source })
}

/// Why an alert's labels do not make a request.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{label}: {message}")]
    Label {
        label: &'static str,
        message: String,
    },
    #[error("{0}")]
    Missing(&'static str),
    #[error("unknown nodeward_action `{0}`")]
    UnknownAction(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

fn bad(label: &'static str) -> impl Fn(String) -> AlertError {
    move |message| AlertError::Label { label, message }
}

/// The request an alert asks for; `Ok(None)` for alerts that ask for nothing.
pub fn to_request(alert: &Alert) -> Result<Option<Request>, AlertError> {
    if alert.status != "firing" {
        return Ok(None);
    }
    let Some(action) = alert.labels.get("nodeward_action") else {
        return Ok(None);
    };
    let label = |k: &str| alert.labels.get(k).map(String::as_str);
    let interfaces: Vec<String> = label("nodeward_interfaces")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let target = match action.as_str() {
        "drop_packets" => match (
            label("nodeward_source_ip"),
            label("nodeward_source_mac"),
            label("nodeward_claimed_ip"),
        ) {
            (Some(ip), None, None) if label("nodeward_cluster_only") == Some("true") => {
                Target::ClusterSource {
                    addr: ip.parse().map_err(|e: std::net::AddrParseError| {
                        bad("nodeward_source_ip")(e.to_string())
                    })?,
                    interfaces,
                }
            }
            (Some(ip), None, None) => Target::SourceIp {
                addr: ip.parse().map_err(|e: std::net::AddrParseError| {
                    bad("nodeward_source_ip")(e.to_string())
                })?,
                interfaces,
            },
            (None, Some(mac), None) => Target::SourceMac {
                mac: mac
                    .parse()
                    .map_err(|e: MacParseError| bad("nodeward_source_mac")(e.to_string()))?,
                interfaces,
            },
            (None, Some(mac), Some(ip)) => Target::ArpClaim {
                ip: ip.parse().map_err(|e: std::net::AddrParseError| {
                    bad("nodeward_claimed_ip")(e.to_string())
                })?,
                mac: mac
                    .parse()
                    .map_err(|e: MacParseError| bad("nodeward_source_mac")(e.to_string()))?,
                interfaces,
            },
            _ => {
                return Err(AlertError::Missing(
                    "drop_packets needs nodeward_source_ip, nodeward_source_mac, or nodeward_claimed_ip + nodeward_source_mac",
                ));
            }
        },
        "block_exec" => {
            let binary = label("nodeward_binary")
                .ok_or(AlertError::Missing("block_exec needs nodeward_binary"))?
                .to_string();
            let (cgroup_id, cgroup) = match label("nodeward_cgroup") {
                Some(p) => (cgroup_id(p)?, Some(p.to_string())),
                None => (0, None),
            };
            Target::Exec {
                binary,
                cgroup_id,
                cgroup,
            }
        }
        other => return Err(AlertError::UnknownAction(other.to_string())),
    };
    let ttl_s = match label("nodeward_ttl") {
        Some(t) => Some(
            humantime::parse_duration(t)
                .map_err(|e| bad("nodeward_ttl")(e.to_string()))?
                .as_secs(),
        ),
        None => None,
    };
    let name = label("alertname").unwrap_or("unnamed");
    Ok(Some(Request {
        target,
        ttl_s,
        trigger: Trigger {
            source: "webhook".into(),
            detail: format!("alert {name} {}", alert.fingerprint),
        },
    }))
}

/// Whether the Authorization header presents the token, compared in constant time
/// (`subtle`): the time taken says nothing about how much of a guess was right.
pub fn token_ok(header: Option<&str>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    !token.is_empty() && bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            status: "firing".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fingerprint: "f1".into(),
        }
    }

    #[test]
    fn alerts_become_requests() {
        let r = to_request(&alert(&[
            ("alertname", "Flood"),
            ("nodeward_action", "drop_packets"),
            ("nodeward_source_ip", "10.9.0.2"),
            ("nodeward_interfaces", "veth1, veth2"),
            ("nodeward_ttl", "2m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(r.ttl_s, Some(120));
        assert_eq!(
            r.target,
            Target::SourceIp {
                addr: "10.9.0.2".parse().unwrap(),
                interfaces: vec!["veth1".into(), "veth2".into()]
            }
        );
        assert_eq!(r.trigger.source, "webhook");
        let arp = to_request(&alert(&[
            ("nodeward_action", "drop_packets"),
            ("nodeward_source_mac", "02:00:00:00:00:09"),
            ("nodeward_claimed_ip", "10.9.0.2"),
            ("nodeward_interfaces", "br0"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(arp.target, Target::ArpClaim { .. }));
        let cluster = to_request(&alert(&[
            ("nodeward_action", "drop_packets"),
            ("nodeward_source_ip", "10.9.0.3"),
            ("nodeward_cluster_only", "true"),
            ("nodeward_interfaces", "vmbr0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            cluster.target,
            Target::ClusterSource {
                addr: "10.9.0.3".parse().unwrap(),
                interfaces: vec!["vmbr0".into()]
            }
        );
    }

    #[test]
    fn alerts_without_action_or_resolved_ask_nothing_and_bad_ones_are_errors() {
        assert!(to_request(&alert(&[("alertname", "X")])).unwrap().is_none());
        let mut resolved = alert(&[
            ("nodeward_action", "drop_packets"),
            ("nodeward_source_ip", "10.9.0.2"),
        ]);
        resolved.status = "resolved".into();
        assert!(to_request(&resolved).unwrap().is_none());
        assert!(to_request(&alert(&[("nodeward_action", "reboot_it")])).is_err());
        assert!(
            to_request(&alert(&[
                ("nodeward_action", "drop_packets"),
                ("nodeward_source_ip", "not-an-ip")
            ]))
            .is_err()
        );
        assert!(to_request(&alert(&[("nodeward_action", "drop_packets")])).is_err());
    }

    #[test]
    fn bearer_token_check() {
        assert!(token_ok(Some("Bearer s3cret"), "s3cret"));
        assert!(!token_ok(Some("Bearer s3cret"), "other"));
        assert!(!token_ok(Some("s3cret"), "s3cret"));
        assert!(!token_ok(None, "s3cret"));
        assert!(!token_ok(Some("Bearer "), ""));
    }
}
