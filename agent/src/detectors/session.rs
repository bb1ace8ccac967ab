//! `session` detector: SSH connections accepted by sshd. The kernel side marks every
//! descendant with the connection's origin; other detectors read it from
//! [`super::Process::origin`]. Here, each accepted connection is reported once.

pub mod config;
pub mod kernel;
pub mod metrics;
pub mod preexisting;
pub mod report;
pub mod table;

use agent_common::decode::Event;
use serde::Serialize;

use super::{Origin, Process};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SshSession {
    /// The sshd that accepted the connection.
    pub sshd: Process,
    pub origin: Origin,
    pub ktime_ns: u64,
}

#[derive(Default)]
pub struct SessionDetector;

impl SessionDetector {
    pub fn observe(&mut self, event: &Event) -> Option<SshSession> {
        let Event::SshAccept(e) = event else {
            return None;
        };
        let sshd = Process::from(&e.proc);
        let origin = Origin::from_kernel(&e.origin, None, 0);
        Some(SshSession {
            sshd,
            origin,
            ktime_ns: e.header.ktime_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{
        event::{EventHeader, kind},
        session::{AF_INET, AF_INET6, ORIGIN_SSH, SshAcceptEvent},
    };

    use super::*;

    fn accept(family: u16, addr: [u8; 16]) -> Event {
        let mut e = SshAcceptEvent {
            header: EventHeader::new(kind::SSH_ACCEPT, core::mem::size_of::<SshAcceptEvent>(), 1),
            proc: Default::default(),
            origin: agent_common::session::Origin {
                kind: ORIGIN_SSH,
                family,
                peer_port: 40000,
                local_port: 2222,
                sshd_pid: 77,
                peer_addr: addr,
                ..Default::default()
            },
        };
        e.proc.pid = 77;
        Event::SshAccept(e.into())
    }

    #[test]
    fn accepted_connections_carry_the_peer() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[100, 64, 0, 18]);
        let s = SessionDetector.observe(&accept(AF_INET, a)).unwrap();
        assert_eq!(
            s.origin,
            Origin::Ssh {
                peer: "100.64.0.18".parse().unwrap(),
                peer_port: 40000,
                local_port: 2222,
                sshd_pid: 77
            }
        );
        let v6: std::net::Ipv6Addr = "fd00::18".parse().unwrap();
        let s = SessionDetector
            .observe(&accept(AF_INET6, v6.octets()))
            .unwrap();
        assert!(matches!(s.origin, Origin::Ssh { peer: std::net::IpAddr::V6(p), .. } if p == v6));
    }

    #[test]
    fn origin_without_ssh_is_local_or_service() {
        let none = agent_common::session::Origin::default();
        assert_eq!(Origin::from_kernel(&none, Some(1000), 0), Origin::Local);
        assert_eq!(Origin::from_kernel(&none, None, 0), Origin::Service);
        assert_eq!(
            Origin::from_kernel(&none, None, agent_common::proc::PROC_LOGINUID_UNKNOWN),
            Origin::Unknown
        );
    }
}
