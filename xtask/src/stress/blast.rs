//! The flood sender (hidden subcommand `stress-blast`, run inside the stress lab's
//! sending namespace): `count` frames of one flood through an AF_PACKET socket bound
//! to `eth0`, as fast as the namespace takes them. Prints the frames sent.

use std::{net::Ipv4Addr, time::Instant};

use anyhow::{Context, Result, bail};

use super::frames::{Flood, parse_mac};

pub fn blast(flood: &str, count: u32, dst_mac: &str, dst: &str) -> Result<()> {
    let flood = Flood::parse(flood).with_context(|| format!("unknown flood {flood:?}"))?;
    if count > flood.max_count() {
        bail!(
            "{} floods have at most {} distinct sources",
            flood.name(),
            flood.max_count()
        );
    }
    let dst_mac = parse_mac(dst_mac).with_context(|| format!("bad MAC {dst_mac:?}"))?;
    let dst: Ipv4Addr = dst
        .parse()
        .with_context(|| format!("bad address {dst:?}"))?;
    let src_mac = parse_mac(&std::fs::read_to_string("/sys/class/net/eth0/address")?)
        .context("eth0's MAC")?;
    let ifindex: i32 = std::fs::read_to_string("/sys/class/net/eth0/ifindex")?
        .trim()
        .parse()?;
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed sockaddr_ll is a valid value; the fields set are plain integers.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex;
    addr.sll_halen = 6;
    let started = Instant::now();
    let mut sent: u64 = 0;
    for i in 0..count {
        let frame = flood.frame(i, src_mac, dst_mac, dst);
        loop {
            // SAFETY: frame and addr outlive the call; lengths are theirs.
            let r = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r >= 0 {
                sent += 1;
                break;
            }
            let e = std::io::Error::last_os_error();
            // A full device queue: wait for it rather than lose the frame.
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN) {
                std::thread::yield_now();
                continue;
            }
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
            bail!("sendto: {e}");
        }
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    println!("{sent} {:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
