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
    poll_loop(group.as_fd(), stop, detector, what, || {
        match group.read_events() {
            Ok(events) => {
                for event in events {
                    handle(&event);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
}

/// As [`run`], for groups whose events carry information records (FID groups): each
/// read's raw bytes are handed on whole.
pub fn run_raw(
    group: &Fanotify,
    stop: &AtomicBool,
    detector: &'static str,
    what: &'static str,
    mut handle: impl FnMut(&[u8]),
) {
    let mut buf = vec![0u8; 16 * 1024];
    poll_loop(group.as_fd(), stop, detector, what, || {
        let n = nix::unistd::read(group.as_fd(), &mut buf)?;
        handle(&buf[..n]);
        Ok(())
    });
}

fn poll_loop(
    fd: std::os::fd::BorrowedFd<'_>,
    stop: &AtomicBool,
    detector: &'static str,
    what: &'static str,
    mut read: impl FnMut() -> nix::Result<()>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                error!(detector, error = %e, "fanotify poll failed; {what} no longer watched");
                return;
            }
        }
        match read() {
            Ok(()) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => {
                error!(detector, error = %e, "fanotify read failed; {what} no longer watched");
                return;
            }
        }
    }
}
