//! The interfaces of this network namespace, their bridges and the bridges' forwarding
//! databases, read over rtnetlink (never /sys: under `nsenter --net` sysfs still shows the
//! namespace it was mounted in).

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
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
        Some(L2Port {
            ifindex: l.ifindex,
            domain,
            is_bridge: l.is_bridge,
        })
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: l.header.index,
        name: String::new(),
        master: None,
        is_bridge: false,
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
            }
            _ => {}
        }
    }
    link
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
                is_bridge: false
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
}
