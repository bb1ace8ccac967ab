//! The interfaces of this network namespace, their bridges and the bridges' forwarding
//! databases, read over rtnetlink (never /sys: under `nsenter --net` sysfs still shows the
//! namespace it was mounted in).

use std::{collections::BTreeMap, io};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{
        AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoData, InfoKind, LinkAttribute,
        LinkExtentMask, LinkInfo, LinkMessage,
    },
    neighbour::{NeighbourAttribute, NeighbourMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::Mac;

/// One interface of this network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// ifindex of the device this one is enslaved to (a bridge, a bond…), if any.
    pub master: Option<u32>,
    pub is_bridge: bool,
    /// A bridge that filters by VLAN (`vlan_filtering 1`): untagged frames on its ports
    /// belong to the port's PVID.
    pub vlan_filtering: bool,
    /// The port's (or a filtering bridge's own) PVID: the VLAN an untagged frame
    /// entering it is classified into. Read only when some bridge filters by VLAN.
    pub pvid: Option<u16>,
    pub mac: Option<Mac>,
}

/// Every interface of this network namespace, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links(pub Vec<Link>);

/// Where an interface sits at layer 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Port {
    pub ifindex: u32,
    /// ifindex of the bridge the interface is enslaved to; its own when it is a bridge
    /// or in none.
    pub domain: u32,
    pub is_bridge: bool,
    /// The VLAN of an untagged frame seen here: the PVID when the domain is a bridge
    /// that filters by VLAN, else 0 (untagged frames are VLAN 0 of the domain).
    pub pvid: u16,
}

impl Links {
    /// Read them now.
    pub fn dump() -> io::Result<Links> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Unspec;
        let mut links: Vec<Link> = dump(RouteNetlinkMessage::GetLink(msg))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect();
        if links.iter().any(|l| l.vlan_filtering) {
            // Without PVIDs untagged frames stay VLAN 0: worse attribution on
            // VLAN-filtering bridges, but every interface is still watched.
            match bridge_pvids() {
                Ok(pvids) => {
                    for l in &mut links {
                        l.pvid = pvids.get(&l.ifindex).copied();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the bridge ports' PVIDs (rtnetlink AF_BRIDGE dump): untagged frames on VLAN-filtering bridges are taken as VLAN 0");
                }
            }
        }
        links.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Links(links))
    }

    /// One interface by index (one RTM_GETLINK, not a dump), `None` if it is gone.
    pub fn get(ifindex: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        match request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.0.iter().find(|l| l.name == name)
    }

    pub fn by_index(&self, ifindex: u32) -> Option<&Link> {
        self.0.iter().find(|l| l.ifindex == ifindex)
    }

    fn is_bridge(&self, ifindex: u32) -> bool {
        self.by_index(ifindex).is_some_and(|l| l.is_bridge)
    }

    fn filters_vlans(&self, ifindex: u32) -> bool {
        self.by_index(ifindex)
            .is_some_and(|l| l.is_bridge && l.vlan_filtering)
    }

    /// Every bridge and every port of a bridge, by name: ports see what each guest
    /// claims, the bridge what reaches the host.
    pub fn bridges_and_ports(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|l| l.is_bridge || l.master.is_some_and(|m| self.is_bridge(m)))
            .map(|l| l.name.clone())
            .collect()
    }

    /// The L2 domain of interface `name`, `None` if it is not here.
    pub fn l2_port(&self, name: &str) -> Option<L2Port> {
        let l = self.by_name(name)?;
        let domain = l.master.filter(|m| self.is_bridge(*m)).unwrap_or(l.ifindex);
        let pvid = if self.filters_vlans(domain) {
            l.pvid.unwrap_or(0)
        } else {
            0
        };
        Some(L2Port {
            ifindex: l.ifindex,
            domain,
            is_bridge: l.is_bridge,
            pvid,
        })
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: l.header.index,
        name: String::new(),
        master: None,
        is_bridge: false,
        vlan_filtering: false,
        pvid: None,
        mac: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
            LinkAttribute::Address(a) => link.mac = mac_of(a),
            LinkAttribute::LinkInfo(infos) => {
                link.is_bridge = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)));
                link.vlan_filtering = infos.iter().any(|i| match i {
                    LinkInfo::Data(InfoData::Bridge(attrs)) => attrs
                        .iter()
                        .any(|a| matches!(a, InfoBridge::VlanFiltering(true))),
                    _ => false,
                });
            }
            _ => {}
        }
    }
    link
}

/// The PVID of every bridge port (and bridge) that has one, by ifindex: one AF_BRIDGE
/// link dump with the bridge VLAN lists (`bridge vlan show`), compressed into ranges
/// (a trunk of 4094 VLANs is a few entries; the PVID is never inside a range).
pub fn bridge_pvids() -> io::Result<BTreeMap<u32, u16>> {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::BrvlanCompressed,
    ]));
    Ok(pvids_of(&dump(RouteNetlinkMessage::GetLink(msg))?))
}

fn pvids_of(answers: &[RouteNetlinkMessage]) -> BTreeMap<u32, u16> {
    let mut out = BTreeMap::new();
    for m in answers {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        for a in &l.attributes {
            let LinkAttribute::AfSpecBridge(spec) = a else {
                continue;
            };
            for s in spec {
                if let AfSpecBridge::VlanInfo(v) = s
                    && v.flags.contains(BridgeVlanInfoFlags::Pvid)
                {
                    out.insert(l.header.index, v.vid);
                }
            }
        }
    }
    out
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(bytes).ok().map(Mac)
}

/// Where a bridge learned a MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// On this member port (ifindex).
    Port(u32),
    /// The bridge's own address: the claimant is the host.
    Host,
}

/// The forwarding database entry of `mac` on bridge `bridge` in VLAN `vlan` (on a bridge
/// that does not filter by VLAN, its one entry), `None` when the bridge has not learned
/// it. One RTM_GETNEIGH (`bridge fdb get`), not a dump of the whole table.
pub fn fdb_lookup(bridge: u32, mac: Mac, vlan: u16) -> io::Result<Option<Learned>> {
    let vlans: &[Option<u16>] = if vlan == 0 {
        &[None]
    } else {
        &[Some(vlan), None]
    };
    for v in vlans {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
            NeighbourAttribute::Controller(bridge),
        ];
        if let Some(v) = v {
            msg.attributes.push(NeighbourAttribute::Vlan(*v));
        }
        match request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_REQUEST) {
            Ok(answers) => {
                if let Some(RouteNetlinkMessage::NewNeighbour(n)) = answers.into_iter().next() {
                    return Ok(Some(if n.header.ifindex == bridge {
                        Learned::Host
                    } else {
                        Learned::Port(n.header.ifindex)
                    }));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A netlink route socket, bound and connected to the kernel.
pub(super) fn socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

/// Send a dump request and collect every answer until the kernel says done.
fn dump(msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    request(msg, NLM_F_DUMP | NLM_F_REQUEST)
}

/// Send a request and collect its answers: until done for a dump, the first otherwise.
fn request(request: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let is_dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let socket = socket()?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut out = Vec::new();
    loop {
        let (datagram, _) = socket.recv_from_full()?;
        for msg in messages(&datagram)? {
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(io::Error::from_raw_os_error(-code.get()));
                    }
                    if !is_dump {
                        return Ok(out);
                    }
                }
                NetlinkPayload::InnerMessage(m) => {
                    out.push(m);
                    if !is_dump {
                        return Ok(out);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The netlink messages of one datagram.
pub(super) fn messages(datagram: &[u8]) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let msg: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::deserialize(&datagram[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = msg.header.length as usize;
        out.push(msg);
        if len == 0 {
            break;
        }
        offset += len.next_multiple_of(4);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_in_no_bridge() {
        let links = Links::dump().expect("rtnetlink dump");
        let lo = links.by_name("lo").expect("lo listed");
        assert_eq!(lo.ifindex, 1);
        assert!(!lo.is_bridge);
        assert_eq!(
            links.l2_port("lo"),
            Some(L2Port {
                ifindex: 1,
                domain: 1,
                is_bridge: false,
                pvid: 0,
            })
        );
        assert!(!links.bridges_and_ports().contains(&"lo".to_string()));
        assert_eq!(links.l2_port("no-such-if0"), None);
    }

    #[test]
    fn domains_follow_bridge_membership_only() {
        let link = |ifindex, name: &str, master, is_bridge| Link {
            ifindex,
            name: name.into(),
            master,
            is_bridge,
            vlan_filtering: false,
            pvid: None,
            mac: None,
        };
        let links = Links(vec![
            link(2, "bond0", None, false),
            link(3, "br0", None, true),
            link(4, "eth0", Some(2), false),
            link(5, "veth1", Some(3), false),
        ]);
        assert_eq!(links.l2_port("veth1").unwrap().domain, 3);
        assert_eq!(
            links.l2_port("eth0").unwrap().domain,
            4,
            "a bond is no bridge"
        );
        assert!(links.l2_port("br0").unwrap().is_bridge);
        assert_eq!(links.bridges_and_ports(), vec!["br0", "veth1"]);
    }

    fn bridge_link(index: u32, vlans: &[(u16, BridgeVlanInfoFlags)]) -> RouteNetlinkMessage {
        use netlink_packet_route::link::BridgeVlanInfo;
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::AfSpecBridge(
            vlans
                .iter()
                .map(|(vid, flags)| {
                    AfSpecBridge::VlanInfo(BridgeVlanInfo {
                        flags: *flags,
                        vid: *vid,
                    })
                })
                .collect(),
        ));
        RouteNetlinkMessage::NewLink(msg)
    }

    #[test]
    fn pvids_come_from_the_bridge_vlan_lists_as_the_kernel_sends_them() {
        let pvid = BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
        let trunk = BridgeVlanInfoFlags::empty();
        // Serialised and parsed back, as they arrive from the kernel.
        let mut datagram = Vec::new();
        for (seq, m) in [
            bridge_link(5, &[(64, pvid)]),
            bridge_link(6, &[(10, trunk), (65, pvid), (66, trunk)]),
            bridge_link(7, &[(64, trunk)]),
            bridge_link(3, &[(1, pvid | BridgeVlanInfoFlags::Brentry)]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut header = NetlinkHeader::default();
            header.sequence_number = seq as u32;
            let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(m));
            packet.finalize();
            let mut buf = vec![0; packet.buffer_len()];
            packet.serialize(&mut buf);
            datagram.extend(buf);
        }
        let parsed: Vec<RouteNetlinkMessage> = messages(&datagram)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m.payload {
                NetlinkPayload::InnerMessage(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(
            pvids_of(&parsed),
            BTreeMap::from([(3, 1), (5, 64), (6, 65)]),
            "a trunk port without PVID has none"
        );
    }

    #[test]
    fn untagged_frames_take_the_pvid_only_on_a_bridge_that_filters_vlans() {
        let link = |ifindex, name: &str, master, is_bridge, vlan_filtering, pvid| Link {
            ifindex,
            name: name.into(),
            master,
            is_bridge,
            vlan_filtering,
            pvid,
            mac: None,
        };
        let links = Links(vec![
            link(3, "vmbr0", None, true, true, Some(1)),
            link(4, "tap100i0", Some(3), false, false, Some(64)),
            link(5, "tap101i0", Some(3), false, false, None),
            link(6, "br1", None, true, false, Some(1)),
            link(7, "veth1", Some(6), false, false, Some(1)),
        ]);
        assert_eq!(links.l2_port("tap100i0").unwrap().pvid, 64);
        assert_eq!(links.l2_port("tap101i0").unwrap().pvid, 0, "no PVID");
        assert_eq!(links.l2_port("vmbr0").unwrap().pvid, 1, "the bridge's own");
        assert_eq!(
            links.l2_port("veth1").unwrap().pvid,
            0,
            "no VLAN filtering: untagged is VLAN 0"
        );
        assert_eq!(links.l2_port("br1").unwrap().pvid, 0);
    }

    #[test]
    fn the_bridge_vlan_dump_is_answered_by_this_kernel() {
        // Whatever bridges exist here, the AF_BRIDGE dump with VLAN lists must parse.
        bridge_pvids().expect("AF_BRIDGE link dump");
    }
}
