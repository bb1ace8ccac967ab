//! The packet program (`net_tc`): one TC ingress program per interface, attached to
//! every interface a packet detector watches or a quarantine names, told per interface
//! what to do by the `NET_PORTS` array (L2 domain, bridge or not, ARP and/or cluster
//! traffic, quarantine drops).

use std::collections::BTreeMap;

use agent_common::packet::{
    NET_PORTS, NET_PORTS_CAPACITY, NET_PORTS_HIGH, NetPort, PORT_BRIDGE, PORT_QUARANTINE,
    PORT_WATCH_ARP, PORT_WATCH_COROSYNC,
};

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
    kernel::maps::sync_hash,
    net::Links,
};

/// The packet program's name in the eBPF object.
pub const NET_TC: &str = "net_tc";
/// An empty classifier, never attached: the floor `nodeward check --packet-cost`
/// measures beside the packet program.
pub const NET_FLOOR: &str = "net_floor";

/// Attachments of one detector's interfaces after a [`Kernel::sync_packet_interfaces`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// Interfaces it watches.
    pub attached: usize,
    /// Interfaces it should watch but does not (absent, or the attach failed).
    pub failing: usize,
}

#[derive(Debug, Default)]
pub struct PacketSync {
    pub arp: Watched,
    pub corosync: Watched,
    /// Failures not reported before.
    pub new_errors: Vec<String>,
}

impl Kernel {
    /// Attach the packet program to every interface the ARP observer or the cluster
    /// counter should watch (their config sections say which), and write each one's
    /// settings.
    pub fn sync_packet_interfaces(&mut self, config: &Config, links: &Links) -> PacketSync {
        self.packet_watch = (
            config.detectors.arp.watched(links),
            config.detectors.corosync.watched(links),
        );
        self.sync_packet(links)
    }

    /// Attach the packet program to `iface` for a quarantine's drops too (it stays for
    /// as long as the agent runs); the reason when it cannot be.
    pub fn quarantine_interface(&mut self, iface: &str) -> Result<(), String> {
        if let Some(Ok(tc)) = self
            .ebpf_mut()
            .program_mut(NET_TC)
            .map(TryInto::<&mut aya::programs::SchedClassifier>::try_into)
            && tc.fd().is_err()
        {
            tc.load().map_err(|e| format!("load {NET_TC}: {e}"))?;
        }
        if self.quarantine_ifaces.insert(iface.to_string()) {
            let links = Links::dump().map_err(|e| format!("interfaces: {e}"))?;
            for e in self.sync_packet(&links).new_errors {
                tracing::warn!(error = %e, "packet program");
            }
        }
        let on = self
            .tc_attached
            .get(NET_TC)
            .and_then(|on| on.get(iface))
            .and_then(|i| self.packet_ports.get(i));
        match on {
            Some(p) if p.flags & PORT_QUARANTINE != 0 => Ok(()),
            _ => Err(self
                .tc_failed
                .get(&(NET_TC, iface.to_string()))
                .cloned()
                .unwrap_or_else(|| "not attached".to_string())),
        }
    }

    fn sync_packet(&mut self, links: &Links) -> PacketSync {
        let (arp, corosync) = self.packet_watch.clone();
        let mut wanted: Vec<String> = arp
            .iter()
            .chain(&corosync)
            .chain(&self.quarantine_ifaces)
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        let sync = self.sync_tc(NET_TC, wanted, links);
        let mut new_errors = sync.new_errors;
        let on = self.tc_attached.get(NET_TC).cloned().unwrap_or_default();
        let mut ports = BTreeMap::new();
        for (name, ifindex) in &on {
            let Some(l2) = links.l2_port(name) else {
                continue;
            };
            let mut flags = if l2.is_bridge { PORT_BRIDGE } else { 0 };
            if arp.contains(name) {
                flags |= PORT_WATCH_ARP;
            }
            if corosync.contains(name) {
                flags |= PORT_WATCH_COROSYNC;
            }
            if self.quarantine_ifaces.contains(name) {
                flags |= PORT_QUARANTINE;
            }
            ports.insert(
                *ifindex,
                NetPort {
                    domain: l2.domain,
                    flags,
                    pvid: l2.pvid,
                    _pad: 0,
                },
            );
        }
        if let Err(e) = self.write_ports(ports) {
            new_errors.push(format!(
                "interface settings of the packet program not written: {e}"
            ));
        }
        let watched = |list: &[String]| Watched {
            attached: list.iter().filter(|n| on.contains_key(*n)).count(),
            failing: list.iter().filter(|n| !on.contains_key(*n)).count(),
        };
        PacketSync {
            arp: watched(&arp),
            corosync: watched(&corosync),
            new_errors,
        }
    }

    /// Make `NET_PORTS` (and `NET_PORTS_HIGH`) hold exactly `ports`.
    pub(crate) fn write_ports(&mut self, ports: BTreeMap<u32, NetPort>) -> Result<(), LoadError> {
        let stale: Vec<u32> = self
            .packet_ports
            .keys()
            .filter(|i| **i < NET_PORTS_CAPACITY && !ports.contains_key(i))
            .copied()
            .collect();
        {
            let map = self
                .ebpf_mut()
                .map_mut(NET_PORTS)
                .ok_or(LoadError::MissingMap(NET_PORTS))?;
            let err = |source| LoadError::Map {
                name: NET_PORTS,
                source,
            };
            let mut array: aya::maps::Array<_, NetPort> =
                aya::maps::Array::try_from(map).map_err(err)?;
            for i in stale {
                array.set(i, &NetPort::default(), 0).map_err(err)?;
            }
            for (i, p) in ports.range(..NET_PORTS_CAPACITY) {
                array.set(*i, p, 0).map_err(err)?;
            }
        }
        let high: Vec<(u32, NetPort)> = ports
            .range(NET_PORTS_CAPACITY..)
            .map(|(i, p)| (*i, *p))
            .collect();
        sync_hash(self, NET_PORTS_HIGH, &high)?;
        let quarantined = ports
            .values()
            .filter(|p| p.flags & PORT_QUARANTINE != 0)
            .count() as u32;
        self.write_net_config(|c| c.quarantine_ports = quarantined)?;
        self.packet_ports = ports;
        Ok(())
    }
}

/// `config` with only the packet program's detectors on, watching loopback (where a
/// BPF_PROG_TEST_RUN skb is): `arp`, and `corosync` when `corosync` is set; every other
/// detector off.
pub fn loopback_only(config: &Config, corosync: bool) -> Config {
    let mut config = config.clone();
    let d = &mut config.detectors;
    d.session.enabled = false;
    d.reboot.enabled = false;
    d.secrets.enabled = false;
    d.martian.enabled = false;
    d.tcp_reset.enabled = false;
    d.arp.enabled = true;
    d.arp.interfaces = vec!["lo".into()];
    d.corosync.enabled = corosync;
    if corosync {
        d.corosync.interfaces = vec!["lo".into()];
    }
    config
}

/// For tests that run the real packet program (BPF_PROG_TEST_RUN): the object loaded
/// with [`loopback_only`], nothing attached; `None`, said out loud, without root or the
/// built eBPF object (`cargo xtask test` has both).
#[cfg(test)]
pub fn test_kernel(test: &str, corosync: bool) -> Option<Kernel> {
    if crate::kernel::object::object().is_err() || !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root and the eBPF object (cargo xtask test)");
        return None;
    }
    let config = loopback_only(&Config::default(), corosync);
    let mut facts = crate::kernel::probe::probe();
    Some(Kernel::load(&mut facts, &config).expect("load"))
}

/// Run the packet program `repeat` times on `frame` (BPF_PROG_TEST_RUN; its return
/// value).
#[cfg(test)]
pub fn test_run(kernel: &mut Kernel, frame: &[u8], repeat: u32) -> i32 {
    use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
    let prog: &mut SchedClassifier = kernel
        .ebpf_mut()
        .program_mut(NET_TC)
        .expect("net_tc")
        .try_into()
        .expect("classifier");
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    };
    prog.test_run(opts).expect("BPF_PROG_TEST_RUN").return_value as i32
}
