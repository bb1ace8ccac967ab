//! The active check: when an address changes hands by a gratuitous ARP or an
//! unsolicited neighbour advertisement, ask the previous owner whether it still holds it.
//! An answer (seen by the observer like any claim) makes the takeover a conflict at once
//! instead of whenever the old owner happens to speak again.
//!
//! Exactly what is sent, one frame per takeover, rate-limited: out of the interface the
//! previous owner was seen on, to its MAC (unicast), in its VLAN,
//! - IPv4: an ARP request with sender 0.0.0.0 (an RFC 5227 probe: no ARP cache learns
//!   anything from it), target hardware 00:00:00:00:00:00, target the address;
//! - IPv6: a neighbour solicitation from :: (duplicate address detection: no neighbour
//!   cache learns anything) to the address's solicited-node group, no options.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Instant,
};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder, VlanId,
};

use super::ArpFinding;
use crate::net::{Links, Mac};

/// What became of one active check (label `result` of
/// `nodeward_arp_active_checks_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    RateLimited,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Sent, Outcome::RateLimited, Outcome::Failed];
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::RateLimited => "rate_limited",
            Outcome::Failed => "failed",
        }
    }
}

/// The sender: a packet socket opened on first use and a token bucket.
pub struct ActiveCheck {
    rate: u32,
    tokens: f64,
    refilled: Instant,
    socket: Option<OwnedFd>,
}

impl ActiveCheck {
    pub fn new(rate: u32) -> ActiveCheck {
        ActiveCheck {
            rate,
            tokens: f64::from(rate),
            refilled: Instant::now(),
            socket: None,
        }
    }

    /// Whether `f` is a takeover worth checking: a gratuitous claim that replaced a
    /// previous owner who had been quiet (a live one is a conflict already).
    pub fn wanted(f: &ArpFinding) -> bool {
        f.kind == "mac_change" && f.gratuitous && f.old_mac.is_some() && f.old_ifindex.is_some()
    }

    /// Ask the previous owner of `f`'s address (a [`ActiveCheck::wanted`] finding).
    pub fn ask(&mut self, f: &ArpFinding) -> Outcome {
        let (Some(old_mac), Some(ifindex)) = (f.old_mac, f.old_ifindex) else {
            return Outcome::Failed;
        };
        if !self.take_token() {
            tracing::info!(address = %f.addr, "active check not sent: rate limit (detectors.arp.active_check_rate)");
            return Outcome::RateLimited;
        }
        match self.send(f.addr, old_mac, ifindex, f.vlan) {
            Ok(()) => {
                tracing::info!(address = %f.addr, to = %old_mac, interface = %crate::net::ifname(ifindex), vlan = f.vlan, "active check: asked the previous owner whether it still holds the address");
                Outcome::Sent
            }
            Err(e) => {
                tracing::warn!(address = %f.addr, to = %old_mac, error = %e, "active check not sent");
                Outcome::Failed
            }
        }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.rate);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn send(&mut self, addr: IpAddr, to: Mac, ifindex: u32, vlan: u16) -> std::io::Result<()> {
        let from = Links::get(ifindex)?.and_then(|l| l.mac).ok_or_else(|| {
            std::io::Error::other(format!("interface {ifindex} gone or without a MAC address"))
        })?;
        // On an access port of a VLAN-filtering bridge the owner speaks untagged in the
        // port's PVID: ask it untagged too (the frame leaves by the port, not the bridge).
        let vlan = if vlan != 0 && access_vlan(ifindex) == vlan {
            0
        } else {
            vlan
        };
        let frame = match addr {
            IpAddr::V4(a) => arp_probe(from, to, vlan, a),
            IpAddr::V6(a) => dad_solicitation(from, to, vlan, a),
        }
        .map_err(std::io::Error::other)?;
        let fd = match &self.socket {
            Some(fd) => fd,
            None => self.socket.insert(packet_socket()?),
        };
        // SAFETY: a zeroed sockaddr_ll filled field by field; the frame outlives the call.
        let sent = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&to.0);
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The PVID untagged frames of port `ifindex` belong to (0 when none applies, or
/// when the interfaces cannot be read: the probe is then sent tagged).
fn access_vlan(ifindex: u32) -> u16 {
    let Ok(links) = Links::dump() else { return 0 };
    links
        .by_index(ifindex)
        .and_then(|l| links.l2_port(&l.name))
        .map_or(0, |p| p.pvid)
}

/// A raw packet socket that receives nothing (protocol 0): for sending only.
fn packet_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

type Built = Result<Vec<u8>, String>;

/// An RFC 5227 ARP probe for `addr`, unicast to `to`.
pub fn arp_probe(from: Mac, to: Mac, vlan: u16, addr: Ipv4Addr) -> Built {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &from.0,
        &[0; 4],
        &[0; 6],
        &addr.octets(),
    )
    .map_err(|e| e.to_string())?;
    let eth = PacketBuilder::ethernet2(from.0, to.0);
    let mut out = Vec::new();
    if vlan == 0 {
        eth.arp(arp).write_to_vec(&mut out)
    } else {
        eth.single_vlan(VlanId::try_new(vlan).map_err(|e| e.to_string())?)
            .arp(arp)
            .write_to_vec(&mut out)
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A duplicate-address-detection neighbour solicitation for `addr` (source ::, to its
/// solicited-node group, no link-layer option), unicast at layer 2 to `to`.
pub fn dad_solicitation(from: Mac, to: Mac, vlan: u16, addr: Ipv6Addr) -> Built {
    let t = addr.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let eth = PacketBuilder::ethernet2(from.0, to.0);
    let mut out = Vec::new();
    if vlan == 0 {
        eth.ipv6([0; 16], group.octets(), 255)
            .icmpv6(Icmpv6Type::NeighborSolicitation)
            .write_to_vec(&mut out, &t)
    } else {
        eth.single_vlan(VlanId::try_new(vlan).map_err(|e| e.to_string())?)
            .ipv6([0; 16], group.octets(), 255)
            .icmpv6(Icmpv6Type::NeighborSolicitation)
            .write_to_vec(&mut out, &t)
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const TO: Mac = Mac([2, 0, 0, 0, 0, 2]);

    #[test]
    fn arp_probe_is_unicast_and_teaches_nothing() {
        let f = arp_probe(FROM, TO, 0, Ipv4Addr::new(10, 8, 64, 2)).unwrap();
        assert_eq!(&f[0..6], &TO.0, "unicast to the previous owner");
        assert_eq!(&f[6..12], &FROM.0);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let arp = &f[14..];
        assert_eq!(&arp[6..8], &[0, 1], "request");
        assert_eq!(&arp[8..14], &FROM.0);
        assert_eq!(&arp[14..18], &[0; 4], "sender 0.0.0.0: a probe");
        assert_eq!(&arp[18..24], &[0; 6]);
        assert_eq!(&arp[24..28], &[10, 8, 64, 2]);
    }

    #[test]
    fn tagged_probe_carries_the_vlan() {
        let f = arp_probe(FROM, TO, 64, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        assert_eq!(&f[12..16], &[0x81, 0x00, 0, 64]);
        assert_eq!(&f[16..18], &[0x08, 0x06]);
        assert!(
            arp_probe(FROM, TO, 4096, Ipv4Addr::LOCALHOST).is_err(),
            "4096 is no VLAN id"
        );
    }

    #[test]
    fn dad_solicitation_shape_and_checksum() {
        let target: Ipv6Addr = "fd00::1:2:3".parse().unwrap();
        let f = dad_solicitation(FROM, TO, 0, target).unwrap();
        let ip = &f[14..];
        assert_eq!(&f[0..6], &TO.0);
        assert_eq!(ip[6], 58, "ICMPv6");
        assert_eq!(ip[7], 255, "hop limit 255");
        assert_eq!(&ip[8..24], &[0; 16], "source ::");
        let group: Ipv6Addr = "ff02::1:ff02:3".parse().unwrap();
        assert_eq!(&ip[24..40], &group.octets());
        let icmp = &ip[40..];
        assert_eq!(icmp.len(), 24, "no options");
        assert_eq!(icmp[0], 135);
        assert_eq!(&icmp[8..24], &target.octets());
        // The checksum over the pseudo-header and the message folds to 0xffff.
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&ip[8..40]);
        add(&(icmp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn bucket_allows_the_rate_then_refuses() {
        let mut c = ActiveCheck::new(2);
        assert!(c.take_token());
        assert!(c.take_token());
        assert!(
            !c.take_token(),
            "a third frame within the same instant is refused"
        );
    }
}
