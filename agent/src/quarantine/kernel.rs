//! The kernel backend: quarantines as entries of the enforcement maps (each carrying its
//! boot-clock expiry) and the TC program attached to the interfaces they name.

use std::{ffi::CString, net::IpAddr};

use agent_common::corosync::COROSYNC_DROP;
use agent_common::quarantine::{self as q, ArpClaimKey, BlockExecKey, MacKey, Rule};
use aya::{
    maps::HashMap as BpfHashMap,
    programs::{SchedClassifier, TcAttachType},
};
use tracing::info;

use super::{Backend, Quarantine, Target};
use crate::loader::Kernel;

/// Name of the TC program in the object.
pub use crate::programs::QUARANTINE_TC as TC_PROGRAM;

/// The quarantine engine on the kernel backend.
pub type Guard = super::Engine<Kernel>;

fn comm_key(binary: &str) -> [u8; 16] {
    let mut comm = [0u8; 16];
    let n = binary.len().min(15);
    comm[..n].copy_from_slice(&binary.as_bytes()[..n]);
    comm
}

macro_rules! map_op {
    ($kernel:expr, $name:expr, $k:ty, |$m:ident| $body:expr) => {{
        let map = $kernel
            .ebpf_mut()
            .map_mut($name)
            .ok_or_else(|| format!("map {} missing", $name))?;
        let mut $m: BpfHashMap<_, $k, Rule> =
            BpfHashMap::try_from(map).map_err(|e| format!("map {}: {e}", $name))?;
        $body.map_err(|e| format!("map {}: {e}", $name))
    }};
}

impl Kernel {
    fn ensure_tc(&mut self, iface: &str) -> Result<(), String> {
        if self.tc_ifaces.contains(iface) {
            return Ok(());
        }
        let name = CString::new(iface).map_err(|_| format!("bad interface name {iface:?}"))?;
        let prog = self
            .ebpf_mut()
            .program_mut(TC_PROGRAM)
            .ok_or("TC program missing from the object")?;
        let tc: &mut SchedClassifier = prog.try_into().map_err(|e| format!("{TC_PROGRAM}: {e}"))?;
        if tc.fd().is_err() {
            tc.load().map_err(|e| format!("load {TC_PROGRAM}: {e}"))?;
        }
        tc.attach(&name, TcAttachType::Ingress)
            .map_err(|e| format!("attach TC ingress on {iface}: {e}"))?;
        info!(
            interface = iface,
            "quarantine TC program attached (ingress)"
        );
        self.tc_ifaces.insert(iface.to_string());
        Ok(())
    }

    fn map_insert(&mut self, target: &Target, rule: Rule) -> Result<(), String> {
        match target {
            Target::Exec {
                binary, cgroup_id, ..
            } => {
                let key = BlockExecKey {
                    comm: comm_key(binary),
                    cgroup_id: *cgroup_id,
                };
                map_op!(self, q::BLOCK_EXEC, BlockExecKey, |m| m
                    .insert(&key, &rule, 0))
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
                map_op!(self, COROSYNC_DROP, [u8; 16], |m| m.insert(&key, &rule, 0))
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

    fn map_remove(&mut self, target: &Target) -> Result<(), String> {
        match target {
            Target::Exec {
                binary, cgroup_id, ..
            } => {
                let key = BlockExecKey {
                    comm: comm_key(binary),
                    cgroup_id: *cgroup_id,
                };
                map_op!(self, q::BLOCK_EXEC, BlockExecKey, |m| m.remove(&key))
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
                map_op!(self, COROSYNC_DROP, [u8; 16], |m| m.remove(&key))
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

impl Backend for Kernel {
    fn apply(&mut self, quarantine: &Quarantine, expires_boot_ns: u64) -> Result<(), String> {
        // The kill-on-exec program must be attached whatever the reboot detector does.
        if let Target::Exec { .. } = quarantine.target
            && !self.exec_guard_attached()
        {
            return Err("the kill-on-exec program (quarantine_exec) is not attached".into());
        }
        if let Target::ClusterSource { .. } = quarantine.target {
            // Enforced by the corosync counter itself, on the interfaces it watches.
            if !self.corosync_tc_attached() {
                return Err("the cluster-traffic program (corosync_tc) is not attached".into());
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

    fn remove(&mut self, quarantine: &Quarantine) -> Result<(), String> {
        match self.map_remove(&quarantine.target) {
            // Already gone (e.g. the agent restarted with fresh maps): nothing to undo.
            Err(e) if e.contains("not found") || e.contains("No such file") => Ok(()),
            other => other,
        }
    }
}
