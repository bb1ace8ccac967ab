//! Kernel maps and attachments of the `arp` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::kernel::loader::Kernel;

impl Kernel {
    /// A read-only handle on the ARP bindings map.
    pub fn arp_bindings(
        &self,
    ) -> Option<BpfHashMap<MapData, agent_common::arp::BindingKey, agent_common::arp::Binding>>
    {
        let data = self.map_handle(agent_common::arp::ARP_BINDINGS).ok()?;
        BpfHashMap::try_from(aya::maps::Map::LruHashMap(data)).ok()
    }
}

#[cfg(test)]
mod tests {
    use agent_common::packet::{NetPort, PORT_WATCH_ARP};
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

    use crate::kernel::packet::{test_kernel, test_run};

    /// A gratuitous ARP reply for `addr` from `mac`, tagged with `vlan` in the frame
    /// when it is not 0.
    fn garp(mac: [u8; 6], addr: [u8; 4], vlan: u16) -> Vec<u8> {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REPLY,
            &mac,
            &addr,
            &[0xff; 6],
            &addr,
        )
        .unwrap();
        let eth = PacketBuilder::ethernet2(mac, [0xff; 6]);
        let mut out = Vec::new();
        if vlan == 0 {
            eth.arp(arp).write_to_vec(&mut out).unwrap();
        } else {
            eth.single_vlan(VlanId::try_new(vlan).unwrap())
                .arp(arp)
                .write_to_vec(&mut out)
                .unwrap();
        }
        out
    }

    /// The real packet program (BPF_PROG_TEST_RUN on loopback's settings): an untagged
    /// claim on an access port is bound in the port's PVID, a tagged one in its tag.
    /// Needs root and the built eBPF object (`cargo xtask test` runs it so).
    #[test]
    fn untagged_claims_on_an_access_port_are_bound_in_its_pvid() {
        let Some(mut kernel) = test_kernel(
            "untagged_claims_on_an_access_port_are_bound_in_its_pvid",
            false,
        ) else {
            return;
        };
        let lo = NetPort {
            domain: 1,
            flags: PORT_WATCH_ARP,
            pvid: 64,
            _pad: 0,
        };
        kernel.write_ports([(1, lo)].into()).expect("ports");
        for frame in [
            garp([2, 0, 0, 0, 0, 1], [10, 0, 0, 1], 0),
            garp([2, 0, 0, 0, 0, 2], [10, 0, 0, 2], 65),
        ] {
            test_run(&mut kernel, &frame, 1);
        }
        let bindings = kernel.arp_bindings().expect("bindings map");
        let mut seen: Vec<([u8; 4], u16, u32, u16)> = bindings
            .iter()
            .filter_map(Result::ok)
            .map(|(k, b)| {
                (
                    [k.addr[0], k.addr[1], k.addr[2], k.addr[3]],
                    k.vlan,
                    k.domain,
                    b.vlan,
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![([10, 0, 0, 1], 64, 1, 64), ([10, 0, 0, 2], 65, 1, 65)],
            "untagged: the PVID; tagged: the tag"
        );
    }
}
