//! Network vocabulary shared by every layer: MAC addresses, the 16-byte address keys of
//! the kernel maps, interface names and labels; the namespace's interfaces, bridges and
//! forwarding databases over rtnetlink (`links`) and their changes (`watch`). A leaf: it
//! imports nothing of the crate.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

pub mod links;
pub mod watch;

pub use links::{L2Port, Learned, Links};

/// A MAC address (`aa:bb:cc:dd:ee:ff`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Text that is not a MAC address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a MAC address (aa:bb:cc:dd:ee:ff)")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(MacParseError(s.to_string()));
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError(s.to_string()))?;
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// IPv4-mapped IPv6 as IPv4; everything else as is.
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The 16-byte map key of an address (IPv4 mapped).
pub fn addr_key(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address of a map key (IPv4-mapped keys as IPv4).
pub fn key_addr(k: [u8; 16]) -> IpAddr {
    canonical(IpAddr::from(k))
}

/// Interface name of an index (or the number, if it is gone).
pub fn ifname(ifindex: u32) -> String {
    nix::net::if_::if_indextoname(ifindex)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("if{ifindex}"))
}

/// Inode of this process's network namespace (to label foreign interfaces).
pub fn own_netns() -> u32 {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|p| {
            p.to_string_lossy()
                .trim_start_matches("net:[")
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// An interface label: its name in the agent's namespace, else `if<index>@netns<inode>`.
pub fn iface_label(ifindex: u32, netns: u32, own: u32) -> String {
    if netns == 0 || netns == own {
        ifname(ifindex)
    } else {
        format!("if{ifindex}@netns{netns}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let m: Mac = "02:AB:cd:00:11:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert!("02:ab:cd:00:11".parse::<Mac>().is_err());
        assert!("zz:ab:cd:00:11:22".parse::<Mac>().is_err());
    }

    #[test]
    fn keys_round_trip_both_families() {
        for a in ["10.1.2.3", "fd00::7"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(key_addr(addr_key(ip)), ip);
        }
        assert_eq!(
            addr_key("10.1.2.3".parse().unwrap()),
            agent_common::corosync::v4_key([10, 1, 2, 3])
        );
    }
}
