//! Quarantine vocabulary: actions, targets, triggers, decisions.

use std::{fmt, net::IpAddr};

pub use crate::config::ActionKind;
use crate::net::Mac;

use serde::{Deserialize, Serialize};

/// What an action applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Kill any exec of a binary whose basename (comm) is `binary`, in the cgroup with
    /// id `cgroup_id` (0 = any cgroup, only if policy allows unscoped blocks).
    Exec {
        binary: String,
        #[serde(default)]
        cgroup_id: u64,
        /// The cgroup's path, for people reading the journal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup: Option<String>,
    },
    /// Drop everything from a source address on the given interfaces.
    SourceIp {
        addr: IpAddr,
        interfaces: Vec<String>,
    },
    /// Drop everything from a source MAC on the given interfaces.
    SourceMac { mac: Mac, interfaces: Vec<String> },
    /// Drop cluster (corosync) traffic from a source outside the nodelist, where the
    /// `corosync` detector counts it (a member's traffic is never dropped).
    ClusterSource {
        addr: IpAddr,
        interfaces: Vec<String>,
    },
    /// Drop ARP packets in which `mac` claims `ip` (the newcomer of an IP conflict).
    ArpClaim {
        ip: std::net::Ipv4Addr,
        mac: Mac,
        interfaces: Vec<String>,
    },
}

impl Target {
    pub fn action(&self) -> ActionKind {
        match self {
            Target::Exec { .. } => ActionKind::BlockExec,
            _ => ActionKind::DropPackets,
        }
    }

    pub fn interfaces(&self) -> &[String] {
        match self {
            Target::Exec { .. } => &[],
            Target::SourceIp { interfaces, .. }
            | Target::SourceMac { interfaces, .. }
            | Target::ClusterSource { interfaces, .. }
            | Target::ArpClaim { interfaces, .. } => interfaces,
        }
    }

    /// Same kernel entry (interfaces aside): two such quarantines would collide.
    pub fn same_key(&self, other: &Target) -> bool {
        match (self, other) {
            (
                Target::Exec {
                    binary: a,
                    cgroup_id: x,
                    ..
                },
                Target::Exec {
                    binary: b,
                    cgroup_id: y,
                    ..
                },
            ) => a == b && x == y,
            (Target::SourceIp { addr: a, .. }, Target::SourceIp { addr: b, .. }) => a == b,
            (Target::SourceMac { mac: a, .. }, Target::SourceMac { mac: b, .. }) => a == b,
            (Target::ClusterSource { addr: a, .. }, Target::ClusterSource { addr: b, .. }) => {
                a == b
            }
            (Target::ArpClaim { ip: a, mac: m, .. }, Target::ArpClaim { ip: b, mac: n, .. }) => {
                a == b && m == n
            }
            _ => false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Exec {
                binary,
                cgroup_id: 0,
                ..
            } => write!(f, "exec of {binary} (any cgroup)"),
            Target::Exec {
                binary,
                cgroup_id,
                cgroup,
                ..
            } => {
                write!(
                    f,
                    "exec of {binary} in cgroup {}",
                    cgroup.clone().unwrap_or_else(|| cgroup_id.to_string())
                )
            }
            Target::SourceIp { addr, interfaces } => {
                write!(f, "packets from {addr} on {}", interfaces.join(","))
            }
            Target::SourceMac { mac, interfaces } => {
                write!(f, "packets from {mac} on {}", interfaces.join(","))
            }
            Target::ClusterSource { addr, interfaces } => {
                write!(f, "cluster traffic from {addr} on {}", interfaces.join(","))
            }
            Target::ArpClaim {
                ip,
                mac,
                interfaces,
            } => write!(f, "ARP claims of {ip} by {mac} on {}", interfaces.join(",")),
        }
    }
}

/// Who or what asked for an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `manual`, `webhook`, or a detector id.
    pub source: String,
    /// Free text: the user and reason, the alert name, the finding.
    pub detail: String,
}

/// An action request, before safeguards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub target: Target,
    /// Seconds; `None` = the policy's default TTL.
    #[serde(default)]
    pub ttl_s: Option<u64>,
    pub trigger: Trigger,
}

/// An active quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub id: u64,
    pub target: Target,
    pub trigger: Trigger,
    /// Wall clock, milliseconds since the Unix epoch.
    pub applied_ms: u64,
    pub expires_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A proposed action waiting for `nodeward approve ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: u64,
    pub target: Target,
    pub trigger: Trigger,
    pub ttl_s: u64,
    pub proposed_ms: u64,
    /// The proposal itself lapses at this time.
    pub expires_ms: u64,
}

/// What the engine decided (metric label `result`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied { id: u64, expires_ms: u64 },
    Proposed { id: u64, expires_ms: u64 },
    DryRun { would: String },
    Refused { reason: Refusal, detail: String },
    Failed { id: u64, error: String },
}

/// Why a request was refused (part of the `result` label: `refused_<reason>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The target is a protected address, MAC or binary.
    Protected,
    RateLimit,
    Cap,
    /// The action's mode is observe.
    Observe,
    /// Malformed or not allowed by policy (e.g. TTL too long, unscoped exec block).
    Invalid,
    /// An identical quarantine is already active.
    Duplicate,
}

impl Refusal {
    pub fn result(self) -> &'static str {
        match self {
            Refusal::Protected => "refused_protected",
            Refusal::RateLimit => "refused_rate_limit",
            Refusal::Cap => "refused_cap",
            Refusal::Observe => "refused_observe",
            Refusal::Invalid => "refused_invalid",
            Refusal::Duplicate => "refused_duplicate",
        }
    }
}

/// Every value of the `result` label of `nodeward_quarantine_decisions_total`.
pub const RESULTS: &[&str] = &[
    "applied",
    "proposed",
    "approved",
    "dry_run",
    "refused_protected",
    "refused_rate_limit",
    "refused_cap",
    "refused_observe",
    "refused_invalid",
    "refused_duplicate",
    "failed",
    "expired",
    "released",
    "enforced",
];

impl Outcome {
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Proposed { .. } => "proposed",
            Outcome::DryRun { .. } => "dry_run",
            Outcome::Refused { reason, .. } => reason.result(),
            Outcome::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_json_is_tagged_and_strict() {
        let t: Target = serde_json::from_str(
            r#"{"kind":"source_ip","addr":"10.9.0.2","interfaces":["veth1"]}"#,
        )
        .unwrap();
        assert_eq!(t.action(), ActionKind::DropPackets);
        assert!(
            serde_json::from_str::<Target>(
                r#"{"kind":"source_ip","addr":"10.9.0.2","interfaces":[],"x":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<Target>(r#"{"kind":"nuke"}"#).is_err());
    }

    #[test]
    fn every_outcome_result_is_a_known_label() {
        for r in [
            Refusal::Protected,
            Refusal::RateLimit,
            Refusal::Cap,
            Refusal::Observe,
            Refusal::Invalid,
            Refusal::Duplicate,
        ] {
            assert!(RESULTS.contains(&r.result()));
        }
    }
}
