//! Safeguards, all in one place: what may never be acted on, TTL bounds, rate limit.

use std::{collections::VecDeque, net::IpAddr, time::Duration};

use super::types::{Refusal, Target};
use crate::config::QuarantineConfig;

pub type Verdict = Result<(), (Refusal, String)>;

fn invalid(msg: impl Into<String>) -> Verdict {
    Err((Refusal::Invalid, msg.into()))
}

fn protected(msg: impl Into<String>) -> Verdict {
    Err((Refusal::Protected, msg.into()))
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && !name.contains(['/', ' ', '\0'])
        && name != "."
        && name != ".."
}

/// Is `addr` covered by a protected CIDR?
pub fn address_protected(cfg: &QuarantineConfig, addr: IpAddr) -> bool {
    cfg.protected_addresses
        .iter()
        .any(|net| net.contains(&addr))
}

/// Check a target against the safeguards that do not depend on state.
pub fn check_target(cfg: &QuarantineConfig, target: &Target) -> Verdict {
    for i in target.interfaces() {
        if !valid_ifname(i) {
            return invalid(format!("`{i}` is not an interface name"));
        }
    }
    if !matches!(target, Target::Exec { .. }) && target.interfaces().is_empty() {
        return invalid("a packet drop needs at least one interface");
    }
    match target {
        Target::Exec {
            binary, cgroup_id, ..
        } => {
            if binary.is_empty() || binary.len() > 15 || binary.contains(['/', '\0']) {
                return invalid(format!(
                    "`{binary}` must be a basename of 1 to 15 bytes (the kernel's comm)"
                ));
            }
            if cfg
                .block_exec
                .protected_binaries
                .iter()
                .any(|b| b == binary)
            {
                return protected(format!(
                    "{binary} is in quarantine.block_exec.protected_binaries"
                ));
            }
            if *cgroup_id == 0 && !cfg.block_exec.allow_unscoped {
                return invalid(
                    "an exec block must be scoped to a cgroup (quarantine.block_exec.allow_unscoped is off)",
                );
            }
            Ok(())
        }
        Target::SourceIp { addr, .. } | Target::ClusterSource { addr, .. } => {
            if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
                return invalid(format!("{addr} cannot be a quarantine source"));
            }
            if address_protected(cfg, *addr) {
                return protected(format!("{addr} is in quarantine.protected_addresses"));
            }
            Ok(())
        }
        Target::SourceMac { mac, .. } | Target::ArpClaim { mac, .. } => {
            if mac.0 == [0; 6] || mac.0 == [0xff; 6] || mac.0[0] & 1 == 1 {
                return invalid(format!("{mac} is not a unicast MAC"));
            }
            if cfg.protected_macs.contains(mac) {
                return protected(format!("{mac} is in quarantine.protected_macs"));
            }
            if let Target::ArpClaim { ip, .. } = target
                && (ip.is_unspecified() || ip.is_broadcast())
            {
                return invalid(format!("{ip} cannot be claimed"));
            }
            Ok(())
        }
    }
}

/// The TTL to use: the request's, bounded, or the default. Never zero, never infinite.
pub fn ttl(
    cfg: &QuarantineConfig,
    requested_s: Option<u64>,
) -> Result<Duration, (Refusal, String)> {
    match requested_s {
        None => Ok(cfg.default_ttl),
        Some(0) => Err((Refusal::Invalid, "TTL must be longer than zero".into())),
        Some(s) if Duration::from_secs(s) > cfg.max_ttl => Err((
            Refusal::Invalid,
            format!(
                "TTL {s}s exceeds quarantine.max_ttl ({}s)",
                cfg.max_ttl.as_secs()
            ),
        )),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

/// Sliding-window limit on applied actions.
#[derive(Debug, Default)]
pub struct RateLimiter {
    applied_ms: VecDeque<u64>,
}

impl RateLimiter {
    pub fn allows(&mut self, cfg: &QuarantineConfig, now_ms: u64) -> bool {
        let window = cfg.window.as_millis() as u64;
        while self
            .applied_ms
            .front()
            .is_some_and(|&t| t + window <= now_ms)
        {
            self.applied_ms.pop_front();
        }
        self.applied_ms.len() < cfg.max_actions as usize
    }

    pub fn record(&mut self, now_ms: u64) {
        self.applied_ms.push_back(now_ms);
    }
}
