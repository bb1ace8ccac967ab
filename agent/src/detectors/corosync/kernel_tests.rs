//! `corosync` kernel side, tested on the real packet program: run by the kernel on
//! crafted frames (BPF_PROG_TEST_RUN).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::corosync::{TOTAL_MEMBER, TOTAL_NON_MEMBER, TOTAL_UNTRACKED};
use agent_common::packet::{NetPort, PORT_WATCH_COROSYNC};
use etherparse::PacketBuilder;

use super::*;
use crate::kernel::packet::{test_kernel, test_run};

/// An 80-byte cluster datagram (UDP to 5405) from `src`.
fn udp(src: IpAddr) -> Vec<u8> {
    let mut v = Vec::new();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match src {
        IpAddr::V4(a) => eth.ipv4(a.octets(), [10, 0, 0, 2], 64),
        IpAddr::V6(a) => eth.ipv6(a.octets(), Ipv6Addr::LOCALHOST.octets(), 64),
    };
    ip.udp(5405, 5405).write(&mut v, &[0; 38]).expect("frame");
    v
}

/// The address of a map key (IPv4-mapped keys as IPv4).
fn ip(k: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(k).to_canonical()
}

/// The program counts cluster traffic on loopback (the test run's device).
fn count_on_loopback(kernel: &mut Kernel) {
    let lo = NetPort {
        domain: 1,
        flags: PORT_WATCH_COROSYNC,
        ..Default::default()
    };
    kernel.write_ports([(1, lo)].into()).expect("ports");
}

/// A cluster packet on an interface whose settings do not count cluster traffic (an
/// ARP-only one) is not counted; once they do, it is.
/// Needs root and the built eBPF object (`cargo xtask test` runs it so).
#[test]
fn a_cluster_packet_counts_only_where_the_interface_says() {
    let Some(mut kernel) = test_kernel(
        "a_cluster_packet_counts_only_where_the_interface_says",
        true,
    ) else {
        return;
    };
    let slots = Arc::new(Mutex::new(MemberSlots::default()));
    kernel
        .sync_corosync(&[5405], &slots, &BTreeMap::new(), &[])
        .expect("ports");
    let arp_only = NetPort {
        domain: 1,
        flags: agent_common::packet::PORT_WATCH_ARP,
        ..Default::default()
    };
    kernel.write_ports([(1, arp_only)].into()).expect("ports");
    let src = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));
    test_run(&mut kernel, &udp(src), 3);
    let mut counters = kernel.corosync_counters(slots.clone()).expect("counters");
    let (totals, rows) = counters.read().expect("read");
    assert_eq!(
        totals[TOTAL_NON_MEMBER as usize], 0,
        "counted on an ARP-only interface"
    );
    assert!(rows.is_empty(), "{rows:?}");
    let counting = NetPort {
        flags: agent_common::packet::PORT_WATCH_ARP | PORT_WATCH_COROSYNC,
        ..arp_only
    };
    // Another interface counts, this one (lo, ifindex 1) still does not: the
    // packet is not counted.
    kernel
        .write_ports([(1, arp_only), (2, counting)].into())
        .expect("ports");
    test_run(&mut kernel, &udp(src), 1);
    let (totals, _) = counters.read().expect("read");
    assert_eq!(totals[TOTAL_NON_MEMBER as usize], 0, "counted on lo");
    kernel.write_ports([(1, counting)].into()).expect("ports");
    test_run(&mut kernel, &udp(src), 2);
    let (totals, rows) = counters.read().expect("read");
    assert_eq!(totals[TOTAL_NON_MEMBER as usize], 2);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].packets, 2);
}

/// 600 non-member sources (more than the 256 hot slots, so some share a slot and
/// are counted in the LRU hash), a member alone in its index entry and a non-member
/// sharing that entry, two members sharing one entry (the hash decides) and a
/// non-member sharing theirs: every source's count is exact, and membership is
/// decided by the table.
/// Needs root and the built eBPF object (`cargo xtask test` runs it so).
#[test]
fn every_cluster_source_is_counted_exactly_in_its_hot_slot_or_the_table() {
    let Some(mut kernel) = test_kernel(
        "every_cluster_source_is_counted_exactly_in_its_hot_slot_or_the_table",
        true,
    ) else {
        return;
    };
    let member = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let twin = ip(super::tests::index_twins(addr_key(member), 1)[0]);
    let pair = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8));
    let pair_twins = super::tests::index_twins(addr_key(pair), 2);
    let (pair2, outsider) = (ip(pair_twins[0]), ip(pair_twins[1]));
    let members = [member, pair, pair2];
    let slots = Arc::new(Mutex::new(MemberSlots::default()));
    let nodelist = members.iter().map(|m| (*m, 7)).collect();
    kernel
        .sync_corosync(&[5405], &slots, &nodelist, &[])
        .expect("members");
    count_on_loopback(&mut kernel);
    let mut want: BTreeMap<([u8; 16], bool), u64> = BTreeMap::new();
    let mut sends: Vec<(IpAddr, u32)> = (0..600u32)
        .map(|i| {
            (
                Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8).into(),
                i % 3 + 1,
            )
        })
        .collect();
    sends.extend([(member, 5), (twin, 4), (pair, 3), (pair2, 2), (outsider, 6)]);
    for &(src, n) in &sends {
        let frame = udp(src);
        test_run(&mut kernel, &frame, n);
        *want
            .entry((addr_key(src), members.contains(&src)))
            .or_default() += u64::from(n);
    }
    let mut counters = kernel.corosync_counters(slots).expect("counters");
    let by_source = |rows: Vec<SourceRow>| -> BTreeMap<([u8; 16], bool), u64> {
        rows.into_iter()
            .map(|r| ((r.addr, r.member), r.packets))
            .collect()
    };
    // The first read finds the hot slots taken (and reads them again), the second
    // knows them: both see every count.
    assert_eq!(
        by_source(counters.sources().expect("read")),
        want,
        "per-source counts"
    );
    assert_eq!(
        by_source(counters.sources().expect("read")),
        want,
        "per-source counts, read again"
    );
    let (totals, rows) = counters.read().expect("read");
    assert_eq!(
        by_source(rows),
        want,
        "per-source counts, read with the totals"
    );
    assert_eq!(totals[TOTAL_MEMBER as usize], 5 + 3 + 2);
    let others: u64 = sends
        .iter()
        .filter(|s| !members.contains(&s.0))
        .map(|s| u64::from(s.1))
        .sum();
    // The hot slots' packets (added by the agent) and the table's (counted by the
    // program) make the non-member total: each packet once.
    assert_eq!(totals[TOTAL_NON_MEMBER as usize], others);
    let raw = counters.totals().expect("totals");
    assert!(
        raw[TOTAL_NON_MEMBER as usize] < others,
        "the program's own non-member total counts only packets outside the hot slots"
    );
    assert_eq!(totals[TOTAL_UNTRACKED as usize], 0);
    // Both homes were used: the hot slots and, for sources whose slot was taken,
    // the LRU hash.
    let in_table = counters.sources.iter().filter_map(Result::ok).count();
    assert!(
        (1..600).contains(&in_table),
        "{in_table} of 601 non-member sources in the LRU hash"
    );
}

/// m1 alone in its entry, p and p2 sharing one, m6 (IPv6) alone; then m1 and p2
/// leave, m1's index twin joins (m1's entry now names it), p is alone, and q joins
/// m6's entry (now shared). Departed members' slots are zeroed; every other count
/// is exact, and m1 counts as a non-member once it has left.
#[test]
fn members_that_come_and_go_are_counted_in_their_own_slots() {
    let name = "members_that_come_and_go_are_counted_in_their_own_slots";
    let Some(mut kernel) = test_kernel(name, true) else {
        return;
    };
    let m1 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let twin = ip(super::tests::index_twins(addr_key(m1), 1)[0]);
    let p = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8));
    let p2 = ip(super::tests::index_twins(addr_key(p), 1)[0]);
    let m6 = IpAddr::V6("2001:db8::6".parse().unwrap());
    let q = ip(super::tests::index_twins(addr_key(m6), 1)[0]);
    let slots = Arc::new(Mutex::new(MemberSlots::default()));
    count_on_loopback(&mut kernel);
    let sync = |k: &mut Kernel, members: &[IpAddr]| {
        let list = members.iter().map(|m| (*m, 1)).collect();
        k.sync_corosync(&[5405], &slots, &list, &[])
            .expect("members");
    };
    sync(&mut kernel, &[m1, p, p2, m6]);
    for (src, n) in [(m1, 2), (p, 3), (p2, 1), (m6, 4)] {
        test_run(&mut kernel, &udp(src), n);
    }
    let slot_of = |a: IpAddr| {
        let slots = slots.lock().unwrap().by_slot();
        slots
            .iter()
            .find(|(_, m)| *m == addr_key(a))
            .expect("a slot")
            .0
    };
    let departed = [slot_of(m1), slot_of(p2)];
    sync(&mut kernel, &[twin, p, m6, q]);
    // p's entry went from shared to p's own, m6's from its own to shared; the
    // departed members' slots were zeroed.
    let entry = |k: &mut Kernel, a: IpAddr| -> MemberEntry {
        let map = k.ebpf_mut().map(COROSYNC_MEMBER_INDEX).expect("index");
        let index = Array::<_, MemberEntry>::try_from(map).expect("array");
        index.get(&member_index(&addr_key(a)), 0).expect("entry")
    };
    assert_eq!(
        entry(&mut kernel, p),
        MemberEntry::one(addr_key(p), slot_of(p))
    );
    assert_eq!(entry(&mut kernel, m6).tag, ENTRY_SHARED);
    {
        let map = kernel
            .ebpf_mut()
            .map(COROSYNC_MEMBER_COUNTS)
            .expect("counts");
        let counts = PerCpuArray::<_, MemberCount>::try_from(map).expect("per-CPU");
        for s in departed {
            let c = counts.get(&s, 0).expect("slot");
            assert!(c.iter().all(|c| c.packets == 0), "slot {s} not zeroed");
        }
    }
    for (src, n) in [(m1, 1), (twin, 4), (p, 5), (m6, 6), (q, 2)] {
        test_run(&mut kernel, &udp(src), n);
    }
    let mut counters = kernel.corosync_counters(slots.clone()).expect("counters");
    let got: BTreeMap<(IpAddr, bool), u64> = counters
        .sources()
        .expect("read")
        .into_iter()
        .map(|r| ((ip(r.addr), r.member), r.packets))
        .collect();
    let want: BTreeMap<(IpAddr, bool), u64> = [
        ((m1, false), 1),
        ((twin, true), 4),
        ((p, true), 3 + 5),
        ((m6, true), 4 + 6),
        ((q, true), 2),
    ]
    .into();
    assert_eq!(got, want);
    let (totals, _) = counters.read().expect("read");
    assert_eq!(totals[TOTAL_MEMBER as usize], 2 + 3 + 1 + 4 + 4 + 5 + 6 + 2);
    assert_eq!(totals[TOTAL_NON_MEMBER as usize], 1);
    // The last member gone, the member index is no longer read and p counts as a
    // non-member; back in the table, p is a member again.
    sync(&mut kernel, &[]);
    test_run(&mut kernel, &udp(p), 3);
    sync(&mut kernel, &[p]);
    test_run(&mut kernel, &udp(p), 2);
    let rows = counters.sources().expect("read");
    let of = |member: bool| {
        rows.iter()
            .find(|r| ip(r.addr) == p && r.member == member)
            .map(|r| r.packets)
    };
    assert_eq!((of(false), of(true)), (Some(3), Some(2)), "{rows:?}");
}
