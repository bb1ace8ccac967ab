//! The kernel backend: quarantines as entries of the enforcement maps (each carrying its
//! boot-clock expiry) and the packet program on the interfaces they name.

use std::net::IpAddr;

use agent_common::corosync::COROSYNC_DROP;
use agent_common::quarantine::{self as q, ArpClaimKey, BlockExecKey, MacKey, Rule};
use aya::maps::HashMap as BpfHashMap;

use super::{Backend, Quarantine, Target};
use crate::kernel::{
    loader::{Kernel, LoadError},
    maps::set_array,
    owner::Handle,
};

/// The quarantine engine on the kernel backend (the handle of the object's owner).
pub type Guard = super::Engine<Handle>;

fn comm_key(binary: &str) -> [u8; 16] {
    let mut comm = [0u8; 16];
    let n = binary.len().min(15);
    comm[..n].copy_from_slice(&binary.as_bytes()[..n]);
    comm
}

/// Why a quarantine could not take effect in the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelBackendError {
    #[error("map {0} missing")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("packet program on {iface}: {reason}")]
    Interface { iface: String, reason: String },
    #[error("the {0} program is not attached")]
    NotAttached(&'static str),
    #[error(transparent)]
    Load(LoadError),
}

/// A map write through the agent's map helpers: the same kinds as this engine's own.
impl From<LoadError> for KernelBackendError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::MissingMap(name) => KernelBackendError::MissingMap(name),
            LoadError::Map { name, source } => KernelBackendError::Map { name, source },
            other => KernelBackendError::Load(other),
        }
    }
}

impl KernelBackendError {
    /// The entry was not in the map (e.g. the agent restarted with fresh maps).
    fn is_absent(&self) -> bool {
        use aya::maps::MapError;
        match self {
            KernelBackendError::Map { source, .. } => match source {
                MapError::KeyNotFound => true,
                // bpf_map_delete_elem of a missing key: ENOENT.
                MapError::SyscallError(e) => e.io_error.kind() == std::io::ErrorKind::NotFound,
                _ => false,
            },
            _ => false,
        }
    }
}

macro_rules! map_op {
    ($kernel:expr, $name:expr, $k:ty, |$m:ident| $body:expr) => {{
        let name = $name;
        let map = $kernel
            .ebpf_mut()
            .map_mut(name)
            .ok_or(KernelBackendError::MissingMap(name))?;
        let mut $m: BpfHashMap<_, $k, Rule> =
            BpfHashMap::try_from(map).map_err(|source| KernelBackendError::Map { name, source })?;
        $body.map_err(|source| KernelBackendError::Map { name, source })
    }};
}

impl Kernel {
    /// How many entries the rule map `rules` holds (the packet program looks cluster
    /// drops up, and exec looks block rules up, only when there is one).
    fn count_rules<K: aya::Pod>(&mut self, rules: &'static str) -> Result<u32, KernelBackendError> {
        let map = self
            .ebpf_mut()
            .map_mut(rules)
            .ok_or(KernelBackendError::MissingMap(rules))?;
        let m: BpfHashMap<_, K, Rule> =
            BpfHashMap::try_from(map).map_err(|source| KernelBackendError::Map {
                name: rules,
                source,
            })?;
        Ok(m.keys().filter(Result::is_ok).count() as u32)
    }

    fn count_cluster_drops(&mut self) -> Result<(), KernelBackendError> {
        let n = self.count_rules::<[u8; 16]>(COROSYNC_DROP)?;
        Ok(self.write_net_config(|c| c.cluster_drop_rules = n)?)
    }

    fn count_exec_blocks(&mut self) -> Result<(), KernelBackendError> {
        let n = self.count_rules::<BlockExecKey>(q::BLOCK_EXEC)?;
        Ok(set_array(self, q::EXEC_BLOCKS, 0, &n)?)
    }

    /// The packet program on `iface`, dropping what the quarantine maps name there.
    fn ensure_tc(&mut self, iface: &str) -> Result<(), KernelBackendError> {
        self.quarantine_interface(iface)
            .map_err(|reason| KernelBackendError::Interface {
                iface: iface.to_string(),
                reason,
            })
    }

    fn map_insert(&mut self, target: &Target, rule: Rule) -> Result<(), KernelBackendError> {
        match target {
            Target::Exec {
                binary, cgroup_id, ..
            } => {
                let key = BlockExecKey {
                    comm: comm_key(binary),
                    cgroup_id: *cgroup_id,
                };
                map_op!(self, q::BLOCK_EXEC, BlockExecKey, |m| m
                    .insert(&key, &rule, 0))?;
                self.count_exec_blocks()
            }
            Target::SourceIp {
                addr: IpAddr::V4(a),
                ..
            } => map_op!(self, q::DROP_V4, [u8; 4], |m| m.insert(
                &a.octets(),
                &rule,
                0
            )),
            Target::SourceIp {
                addr: IpAddr::V6(a),
                ..
            } => map_op!(self, q::DROP_V6, [u8; 16], |m| m.insert(
                &a.octets(),
                &rule,
                0
            )),
            Target::SourceMac { mac, .. } => {
                let key = MacKey {
                    mac: mac.0,
                    _pad: [0; 2],
                };
                map_op!(self, q::DROP_MAC, MacKey, |m| m.insert(&key, &rule, 0))
            }
            Target::ClusterSource { addr, .. } => {
                let key = crate::net::addr_key(*addr);
                map_op!(self, COROSYNC_DROP, [u8; 16], |m| m.insert(&key, &rule, 0))?;
                self.count_cluster_drops()
            }
            Target::ArpClaim { ip, mac, .. } => {
                let key = ArpClaimKey {
                    ip: ip.octets(),
                    mac: mac.0,
                    _pad: [0; 2],
                };
                map_op!(self, q::DROP_ARP, ArpClaimKey, |m| m.insert(&key, &rule, 0))
            }
        }
    }

    fn map_remove(&mut self, target: &Target) -> Result<(), KernelBackendError> {
        match target {
            Target::Exec {
                binary, cgroup_id, ..
            } => {
                let key = BlockExecKey {
                    comm: comm_key(binary),
                    cgroup_id: *cgroup_id,
                };
                let removed = map_op!(self, q::BLOCK_EXEC, BlockExecKey, |m| m.remove(&key));
                self.count_exec_blocks()?;
                removed
            }
            Target::SourceIp {
                addr: IpAddr::V4(a),
                ..
            } => map_op!(self, q::DROP_V4, [u8; 4], |m| m.remove(&a.octets())),
            Target::SourceIp {
                addr: IpAddr::V6(a),
                ..
            } => map_op!(self, q::DROP_V6, [u8; 16], |m| m.remove(&a.octets())),
            Target::SourceMac { mac, .. } => {
                let key = MacKey {
                    mac: mac.0,
                    _pad: [0; 2],
                };
                map_op!(self, q::DROP_MAC, MacKey, |m| m.remove(&key))
            }
            Target::ClusterSource { addr, .. } => {
                let key = crate::net::addr_key(*addr);
                map_op!(self, COROSYNC_DROP, [u8; 16], |m| m.remove(&key))?;
                self.count_cluster_drops()
            }
            Target::ArpClaim { ip, mac, .. } => {
                let key = ArpClaimKey {
                    ip: ip.octets(),
                    mac: mac.0,
                    _pad: [0; 2],
                };
                map_op!(self, q::DROP_ARP, ArpClaimKey, |m| m.remove(&key))
            }
        }
    }
}

impl Backend for Handle {
    type Error = KernelBackendError;

    fn apply(
        &mut self,
        quarantine: &Quarantine,
        expires_boot_ns: u64,
    ) -> Result<(), KernelBackendError> {
        let q = quarantine.clone();
        self.call(move |k| k.apply_quarantine(&q, expires_boot_ns))
    }

    fn remove(&mut self, quarantine: &Quarantine) -> Result<(), KernelBackendError> {
        let q = quarantine.clone();
        self.call(move |k| k.remove_quarantine(&q))
    }
}

impl Kernel {
    /// Enforce `quarantine` until `expires_boot_ns` (map entry, TC attach if needed).
    pub fn apply_quarantine(
        &mut self,
        quarantine: &Quarantine,
        expires_boot_ns: u64,
    ) -> Result<(), KernelBackendError> {
        // The kill-on-exec program must be attached whatever the reboot detector does.
        if let Target::Exec { .. } = quarantine.target
            && !self.exec_guard_attached()
        {
            return Err(KernelBackendError::NotAttached("kill-on-exec (exec_sched)"));
        }
        if let Target::ClusterSource { .. } = quarantine.target {
            // Enforced by the corosync counter itself, on the interfaces it watches.
            if !self.cluster_counter_attached() {
                return Err(KernelBackendError::NotAttached("cluster-traffic (net_tc)"));
            }
        } else {
            for iface in quarantine.target.interfaces() {
                self.ensure_tc(iface)?;
            }
        }
        self.map_insert(
            &quarantine.target,
            Rule {
                expires_boot_ns,
                id: quarantine.id,
            },
        )
    }

    /// Stop enforcing `quarantine`; removing what is already gone is not an error.
    pub fn remove_quarantine(&mut self, quarantine: &Quarantine) -> Result<(), KernelBackendError> {
        match self.map_remove(&quarantine.target) {
            // Already gone (e.g. the agent restarted with fresh maps): nothing to undo.
            Err(e) if e.is_absent() => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use aya::{maps::MapError, sys::SyscallError};

    use super::KernelBackendError;

    #[test]
    fn a_missing_entry_is_absent_other_failures_are_not() {
        let enoent = KernelBackendError::Map {
            name: "x",
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_delete_elem",
                io_error: std::io::Error::from_raw_os_error(2),
            }),
        };
        assert!(enoent.is_absent(), "{enoent}");
        let eperm = KernelBackendError::Map {
            name: "x",
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_delete_elem",
                io_error: std::io::Error::from_raw_os_error(1),
            }),
        };
        assert!(!eperm.is_absent(), "{eperm}");
        assert!(!KernelBackendError::MissingMap("x").is_absent());
    }
}
