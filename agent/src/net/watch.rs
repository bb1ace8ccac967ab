//! Link changes of this network namespace as they happen (rtnetlink's link group): a
//! port that joins a bridge is known within milliseconds, not at the next poll.

use std::io;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use tokio::sync::mpsc;

/// Start a thread that signals `changed` on every link change (coalesced: one pending
/// signal stands for any number of changes). It ends when the receiver is dropped.
pub fn spawn(changed: mpsc::Sender<()>) -> io::Result<()> {
    let socket = super::links::socket()?;
    socket.add_membership(libc::RTNLGRP_LINK)?;
    std::thread::Builder::new()
        .name("nodeward-links".into())
        .spawn(move || {
            loop {
                let relevant = match socket.recv_from_full() {
                    Ok((datagram, _)) => super::links::messages(&datagram)
                        .map(|msgs| msgs.iter().any(is_link_change))
                        // Unparsable: resynchronise rather than miss a change.
                        .unwrap_or(true),
                    // ENOBUFS: changes were lost; resynchronise.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "link events lost: the rtnetlink socket failed; interfaces are rediscovered only by the periodic rescan");
                        return;
                    }
                };
                if relevant {
                    match changed.try_send(()) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                        Err(mpsc::error::TrySendError::Closed(())) => return,
                    }
                }
            }
        })?;
    Ok(())
}

fn is_link_change(m: &netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>) -> bool {
    matches!(
        m.payload,
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_)
        )
    )
}
