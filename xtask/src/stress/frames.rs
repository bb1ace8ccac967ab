//! The flood frames of `cargo xtask stress`, built byte by byte: Ethernet + IPv4 + UDP
//! (valid header checksum, so the receiver drops them for the reason meant and not as
//! corrupt), and gratuitous ARP requests.

use std::net::Ipv4Addr;

/// What a flood sends; frame `i` of a flood differs from the others by its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    /// UDP to the discard port from `100.64.0.0 + i` (no route back: rp_filter drops).
    Martian,
    /// UDP to the corosync port from `10.96.0.0 + i` (outside the nodelist: rogue).
    Corosync,
    /// A gratuitous ARP request claiming `10.112.0.0 + i` from MAC `02:5e:<i>`.
    Arp,
}

impl Flood {
    pub fn parse(s: &str) -> Option<Flood> {
        match s {
            "martian" => Some(Flood::Martian),
            "corosync" => Some(Flood::Corosync),
            "arp" => Some(Flood::Arp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flood::Martian => "martian",
            Flood::Corosync => "corosync",
            Flood::Arp => "arp",
        }
    }

    /// The distinct sources a flood can have.
    pub fn max_count(self) -> u32 {
        match self {
            // 100.64.0.0/10
            Flood::Martian => 1 << 22,
            // 10.96.0.0/12 and 10.112.0.0/12
            Flood::Corosync | Flood::Arp => 1 << 20,
        }
    }

    fn base(self) -> u32 {
        match self {
            Flood::Martian => u32::from(Ipv4Addr::new(100, 64, 0, 0)),
            Flood::Corosync => u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            Flood::Arp => u32::from(Ipv4Addr::new(10, 112, 0, 0)),
        }
    }

    /// The source address of frame `i`.
    pub fn source(self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + i % self.max_count())
    }

    /// Frame `i`, from `src_mac` (ignored by ARP, whose claimants each have their own
    /// MAC) to `dst_mac`/`dst`.
    pub fn frame(self, i: u32, src_mac: [u8; 6], dst_mac: [u8; 6], dst: Ipv4Addr) -> Vec<u8> {
        match self {
            Flood::Martian => udp(src_mac, dst_mac, self.source(i), dst, 9),
            Flood::Corosync => udp(src_mac, dst_mac, self.source(i), dst, 5405),
            Flood::Arp => garp(claimant_mac(i), self.source(i)),
        }
    }
}

/// A locally administered unicast MAC per claimant.
pub fn claimant_mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x5e, b[0], b[1], b[2], b[3]]
}

/// The IPv4 header checksum (RFC 791: one's complement of the one's complement sum).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    const PAYLOAD: &[u8] = b"nodeward stress";
    let udp_len = 8 + PAYLOAD.len() as u16;
    let mut f = Vec::with_capacity(14 + 20 + udp_len as usize);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(20 + udp_len).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // id, DF, ttl, udp, checksum
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let sum = ipv4_checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(PAYLOAD);
    f
}

fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, 6-byte MACs, 4-byte addresses, request.
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn udp_frames_carry_a_valid_header_checksum_and_distinct_sources() {
        let dst = Ipv4Addr::new(10, 213, 88, 2);
        let f0 = Flood::Martian.frame(0, A, B, dst);
        let f1 = Flood::Martian.frame(70_000, A, B, dst);
        // The checksum over a header that includes it is 0.
        assert_eq!(ipv4_checksum(&f0[14..34]), 0);
        assert_eq!(ipv4_checksum(&f1[14..34]), 0);
        assert_eq!(&f0[26..30], &[100, 64, 0, 0]);
        assert_eq!(&f1[26..30], &[100, 65, 17, 112]);
        assert_eq!(&f0[30..34], &dst.octets());
        assert_eq!(u16::from_be_bytes([f0[36], f0[37]]), 9);
        let c = Flood::Corosync.frame(1, A, B, dst);
        assert_eq!(u16::from_be_bytes([c[36], c[37]]), 5405);
        assert_eq!(&c[26..30], &[10, 96, 0, 1]);
        assert_eq!(u16::from_be_bytes([c[16], c[17]]) as usize, c.len() - 14);
    }

    #[test]
    fn arp_claims_name_their_own_mac_and_address() {
        let f = Flood::Arp.frame(258, A, B, Ipv4Addr::UNSPECIFIED);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &claimant_mac(258));
        assert_eq!(&f[22..28], &claimant_mac(258));
        assert_eq!(&f[28..32], &[10, 112, 1, 2]);
        assert_eq!(&f[38..42], &[10, 112, 1, 2]);
        assert_ne!(claimant_mac(1), claimant_mac(2));
    }

    #[test]
    fn macs_parse_or_are_refused() {
        assert_eq!(parse_mac("02:00:00:00:00:01\n"), Some(A));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:01"), None);
    }
}
