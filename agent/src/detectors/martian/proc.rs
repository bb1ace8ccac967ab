//! The kernel's own martian counters (fallback for kernels without skb drop reasons,
//! and a cross-check): `in_martian_src` from /proc/net/stat/rt_cache (hex, one line
//! per CPU) and `IPReversePathFilter` from the TcpExt section of /proc/net/netstat.

use std::path::Path;

/// (in_martian_src summed over CPUs, IPReversePathFilter), each if readable.
pub fn counters() -> (Option<u64>, Option<u64>) {
    counters_in(Path::new("/proc"))
}

pub fn counters_in(proc: &Path) -> (Option<u64>, Option<u64>) {
    let rt = std::fs::read_to_string(proc.join("net/stat/rt_cache"))
        .ok()
        .and_then(|t| column_sum_hex(&t, "in_martian_src"));
    let rp = std::fs::read_to_string(proc.join("net/netstat"))
        .ok()
        .and_then(|t| netstat(&t, "TcpExt", "IPReversePathFilter"));
    (rt, rp)
}

fn column_sum_hex(text: &str, column: &str) -> Option<u64> {
    let mut lines = text.lines();
    let idx = lines.next()?.split_whitespace().position(|c| c == column)?;
    Some(
        lines
            .filter_map(|l| l.split_whitespace().nth(idx))
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .sum(),
    )
}

fn netstat(text: &str, section: &str, field: &str) -> Option<u64> {
    let prefix = format!("{section}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let names = rows.next()?;
    let values = rows.next()?;
    let idx = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rt_cache_and_netstat() {
        let rt = "entries  in_hit in_slow_tot in_slow_mc in_no_route in_brd in_martian_dst in_martian_src\n\
                  00000001  00000000 00000005 00000000 00000000 00000000 00000000 0000000a\n\
                  00000001  00000000 00000005 00000000 00000000 00000000 00000000 00000003\n";
        assert_eq!(column_sum_hex(rt, "in_martian_src"), Some(13));
        let ns = "TcpExt: SyncookiesSent IPReversePathFilter TW\nTcpExt: 0 7 1\nIpExt: InNoRoutes\nIpExt: 4\n";
        assert_eq!(netstat(ns, "TcpExt", "IPReversePathFilter"), Some(7));
        assert_eq!(netstat(ns, "TcpExt", "Nope"), None);
    }
}
