//! SSH sessions that existed before the agent started: the kernel hooks only see new
//! connections, so at start-up every sshd (by comm) holding an established TCP socket
//! is found in /proc, its peer read from its own network namespace's socket table, and
//! the origin written to the kernel's origin table for it and every descendant (that has
//! none yet). Later forks inherit it in the kernel as for any session. Done at each
//! apply of the configuration, and twice when the table in use changes
//! (`Kernel::sync_origins`).

use std::collections::{HashMap, HashSet};

use agent_common::session::{AF_INET, AF_INET6, ORIGIN_SSH, Origin};

/// One TCP socket of a socket table: local port, peer address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Conn {
    family: u16,
    local_port: u16,
    peer_addr: [u8; 16],
    peer_port: u16,
}

/// Established sockets of a /proc/net/tcp{,6} table, by socket inode.
fn parse_table(text: &str, family: u16) -> HashMap<u64, Conn> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        if f.len() < 10 || f[3] != "01" {
            continue; // not ESTABLISHED
        }
        let (Some(local), Some(peer), Ok(inode)) = (addr(f[1]), addr(f[2]), f[9].parse::<u64>())
        else {
            continue;
        };
        out.insert(
            inode,
            Conn {
                family,
                local_port: local.1,
                peer_addr: peer.0,
                peer_port: peer.1,
            },
        );
    }
    out
}

/// `HEXADDR:HEXPORT` as the kernel prints it: the address in 32-bit words in host
/// order, the port in hex.
fn addr(field: &str) -> Option<([u8; 16], u16)> {
    let (a, p) = field.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let mut out = [0u8; 16];
    if a.len() != 8 && a.len() != 32 {
        return None;
    }
    for (i, chunk) in a.as_bytes().chunks(8).enumerate() {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some((out, port))
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The established TCP connection `pid` holds, if any (the first found).
fn connection(pid: u32) -> Option<Conn> {
    let mut sockets = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if let Some(ino) = t
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            sockets.insert(ino);
        }
    }
    for (table, family) in [("tcp", AF_INET), ("tcp6", AF_INET6)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        let conns = parse_table(&text, family);
        if let Some(c) = sockets.iter().find_map(|i| conns.get(i)) {
            return Some(*c);
        }
    }
    None
}

/// The origins of the SSH sessions alive now: (pid, origin) for each sshd holding a
/// connection and each of its descendants.
pub fn find(sshd_comms: &[String], now_ns: u64) -> Vec<(u32, Origin)> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &p in &pids {
        if let Some(pp) = ppid(p) {
            children.entry(pp).or_default().push(p);
        }
    }
    let mut out: HashMap<u32, Origin> = HashMap::new();
    // Parents before children (lower pids first is not guaranteed): an sshd's own
    // connection wins over one inherited from an ancestor sshd.
    let mut sshds: Vec<(u32, Origin)> = pids
        .iter()
        .filter(|&&p| comm(p).is_some_and(|c| sshd_comms.contains(&c)))
        .filter_map(|&p| {
            let c = connection(p)?;
            Some((
                p,
                Origin {
                    kind: ORIGIN_SSH,
                    family: c.family,
                    peer_port: c.peer_port,
                    local_port: c.local_port,
                    _pad0: 0,
                    sshd_pid: p,
                    peer_addr: c.peer_addr,
                    since_ns: now_ns,
                },
            ))
        })
        .collect();
    sshds.sort_by_key(|(p, _)| *p);
    for (sshd, origin) in sshds {
        let mut stack = vec![sshd];
        while let Some(p) = stack.pop() {
            let mine = p == sshd;
            if mine || !out.contains_key(&p) {
                out.insert(p, origin);
            }
            stack.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort_by_key(|(p, _)| *p);
    v
}

/// Write the sessions alive now into `route`'s table: each process found, and on the
/// task-storage route each of its other threads (storage is per task). Origins a task
/// already has are kept. Returns how many tasks were given one.
pub fn restore(
    table: &mut super::table::OriginTable,
    route: super::table::Route,
    sshd_comms: &[String],
) -> Result<usize, aya::maps::MapError> {
    use super::table::Route;
    let mut n = 0;
    for (pid, origin) in find(sshd_comms, crate::time::boot_ns()) {
        n += usize::from(table.insert_new(route, pid, false, &origin)?);
        if route != Route::TaskStorage {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // gone since
        };
        for tid in tasks
            .flatten()
            .filter_map(|t| t.file_name().to_str()?.parse::<u32>().ok())
        {
            if tid != pid {
                n += usize::from(table.insert_new(route, tid, true, &origin)?);
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_sockets_are_read_with_their_peer() {
        // 10.0.0.1:22 <- 10.0.0.2:40000 (ESTABLISHED), and a listener.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
   1: 0100000A:0016 0200000A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n";
        let t = parse_table(v4, AF_INET);
        assert_eq!(t.len(), 1, "only the established socket");
        let c = t[&222];
        assert_eq!(c.local_port, 22);
        assert_eq!(c.peer_port, 40000);
        assert_eq!(&c.peer_addr[..4], &[10, 0, 0, 2]);
        let v6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000001000000:0016 0000000000000000FFFF00000200000A:9C41 01 00000000:00000000 00:00000000 00000000     0        0 333 1\n";
        let c = parse_table(v6, AF_INET6)[&333];
        assert_eq!(c.peer_port, 40001);
        assert_eq!(&c.peer_addr[10..], &[0xff, 0xff, 10, 0, 0, 2]);
    }
}
