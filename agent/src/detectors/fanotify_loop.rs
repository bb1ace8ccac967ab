//! The read loop of a fanotify group, shared by the detectors' fanotify routes
//! (secrets, reboot's sysrq): poll with a short timeout so a stop request is seen,
//! read a batch, hand each event on. A failing group is logged once and the loop ends.

use std::{
    os::fd::AsFd,
    sync::atomic::{AtomicBool, Ordering},
};

use nix::sys::fanotify::{Fanotify, FanotifyEvent};
use tracing::error;

/// Read `group` until `stop` is set; `what` names what is no longer watched if the
/// group fails (for the log, with `detector`).
pub fn run(
    group: &Fanotify,
    stop: &AtomicBool,
    detector: &'static str,
    what: &'static str,
    mut handle: impl FnMut(&FanotifyEvent),
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(group.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                error!(detector, error = %e, "fanotify poll failed; {what} no longer watched");
                return;
            }
        }
        let events = match group.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                error!(detector, error = %e, "fanotify read failed; {what} no longer watched");
                return;
            }
        };
        for event in events {
            handle(&event);
        }
    }
}
