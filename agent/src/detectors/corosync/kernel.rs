//! Kernel maps of the `corosync` detector: ports, members and daemons written from the
//! cluster configuration; per-source counters and totals read once a second.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::net::addr_key;

use agent_common::corosync::{
    COROSYNC_EXEC, COROSYNC_HOT, COROSYNC_HOT_SLOTS, COROSYNC_MEMBER_COUNTS, COROSYNC_MEMBER_INDEX,
    COROSYNC_MEMBER_INDEX_SLOTS, COROSYNC_MEMBERS, COROSYNC_MEMBERS_CAPACITY, COROSYNC_PORTS,
    COROSYNC_SOURCES, COROSYNC_TOTALS, ENTRY_SHARED, HotSource, MemberCount, MemberEntry,
    SourceCount, SourceKey, TOTAL_NON_MEMBER, TOTAL_SLOTS, member_index,
};
use agent_common::maps::ExecWatchKey;
use aya::maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};

use crate::kernel::{
    loader::{Kernel, LoadError},
    maps::sync_hash,
};

/// Counters of one source on one interface while it was (not) a member, summed over
/// CPUs.
#[derive(Debug)]
pub struct SourceRow {
    pub addr: [u8; 16],
    pub ifindex: u32,
    pub member: bool,
    pub packets: u64,
    pub dropped: u64,
}

/// Which part of a [`Counters::read`] failed.
#[derive(Debug)]
pub enum ReadFailed {
    Totals(MapError),
    Sources(MapError),
}

/// Read handles, taken once (the maps outlive the guard's borrows).
pub struct Counters {
    sources: PerCpuHashMap<MapData, SourceKey, SourceCount>,
    hot: PerCpuArray<MapData, HotSource>,
    /// The (slot, CPU) pairs of `hot` seen taken.
    claimed: BTreeSet<(u32, usize)>,
    members: PerCpuArray<MapData, MemberCount>,
    slots: Arc<Mutex<MemberSlots>>,
    totals: PerCpuArray<MapData, u64>,
}

impl Counters {
    /// One reading: the totals, with the hot slots' packets added to the non-member
    /// total (the program counts a packet it keeps in a hot slot there only), and the
    /// rows of [`Counters::sources`]. The totals are read first: both parts only grow,
    /// so the sum does too.
    pub fn read(&mut self) -> Result<([u64; TOTAL_SLOTS as usize], Vec<SourceRow>), ReadFailed> {
        let mut totals = self.totals().map_err(ReadFailed::Totals)?;
        let (rows, hot) = self.sources_and_hot().map_err(ReadFailed::Sources)?;
        totals[TOTAL_NON_MEMBER as usize] += hot;
        Ok((totals, rows))
    }

    /// Per (source, interface, membership): the hot slots, the per-source hash and the
    /// members' slots (a packet is counted in exactly one of them). An error (an array
    /// unreadable) means no sample this time: a partial one would make the sources left
    /// out look new, and their whole count one second's rate.
    #[cfg(test)]
    pub fn sources(&mut self) -> Result<Vec<SourceRow>, MapError> {
        Ok(self.sources_and_hot()?.0)
    }

    /// [`Counters::sources`], and the packets counted in hot slots.
    fn sources_and_hot(&mut self) -> Result<(Vec<SourceRow>, u64), MapError> {
        let mut hot = 0u64;
        let mut rows: BTreeMap<([u8; 16], u32, bool), (u64, u64)> = BTreeMap::new();
        for slot in 0..COROSYNC_HOT_SLOTS {
            let first = self.hot.get(&slot, 0)?;
            let taken: Vec<bool> = first.iter().map(|h| h.count.packets > 0).collect();
            // A slot found taken for the first time may have been read while its
            // source's key was being written (the program writes the key, then the
            // count that marks the slot taken): it is read again, and only the CPUs
            // taken in the first read are counted (one taken since waits for the next
            // sample). A taken slot's key never changes.
            let fresh: Vec<(u32, usize)> = (0..taken.len())
                .filter(|&cpu| taken[cpu] && !self.claimed.contains(&(slot, cpu)))
                .map(|cpu| (slot, cpu))
                .collect();
            let read = if fresh.is_empty() {
                first
            } else {
                self.hot.get(&slot, 0)?
            };
            self.claimed.extend(fresh);
            for (cpu, h) in read.iter().enumerate() {
                if !taken.get(cpu).copied().unwrap_or(false) {
                    continue;
                }
                let row = rows
                    .entry((h.key.addr, h.key.ifindex, h.key.member == 1))
                    .or_default();
                row.0 += h.count.packets;
                row.1 += h.count.dropped;
                hot += h.count.packets;
            }
        }
        // Iterating an LRU map that evicts meanwhile may restart and yield a key again:
        // each key is counted once. A key evicted between listing and lookup is skipped.
        let mut listed: HashSet<SourceKey> = HashSet::new();
        for (key, per_cpu) in self.sources.iter().filter_map(Result::ok) {
            if !listed.insert(key) {
                continue;
            }
            let row = rows
                .entry((key.addr, key.ifindex, key.member == 1))
                .or_default();
            for c in per_cpu.iter() {
                row.0 += c.packets;
                row.1 += c.dropped;
            }
        }
        let slots = self.slots.lock().expect("member slots").by_slot();
        for (slot, addr) in slots {
            let per_cpu = self.members.get(&slot, 0)?;
            // Each CPU's copy names the interface its packets entered.
            for c in per_cpu.iter().filter(|c| c.packets > 0) {
                rows.entry((addr, c.ifindex, true)).or_default().0 += c.packets;
            }
        }
        let rows = rows
            .into_iter()
            .map(|((addr, ifindex, member), (packets, dropped))| SourceRow {
                addr,
                ifindex,
                member,
                packets,
                dropped,
            })
            .collect();
        Ok((rows, hot))
    }

    /// The `TOTAL_*` slots as the program counts them, summed over CPUs (the
    /// non-member total without the hot slots' packets: [`Counters::read`] adds them).
    fn totals(&self) -> Result<[u64; TOTAL_SLOTS as usize], MapError> {
        let mut out = [0u64; TOTAL_SLOTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.totals.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

impl Kernel {
    /// Ports, members and daemons of the cluster, as the programs should see them.
    pub fn sync_corosync(
        &mut self,
        ports: &[u16],
        slots: &Mutex<MemberSlots>,
        members: &BTreeMap<IpAddr, u32>,
        daemons: &[String],
    ) -> Result<(), LoadError> {
        let mut next = self.net_config;
        if !next.set_cluster_ports(ports) {
            return Err(LoadError::Capacity {
                name: COROSYNC_PORTS,
                capacity: agent_common::packet::CLUSTER_PORTS_MAX as u32,
            });
        }
        self.write_net_config(|c| *c = next)?;
        let ports: Vec<(u16, u32)> = ports.iter().map(|&p| (p, 1)).collect();
        sync_hash(self, COROSYNC_PORTS, &ports)?;
        self.sync_members(slots, members)?;
        let daemons: Vec<(ExecWatchKey, u32)> = daemons
            .iter()
            .filter_map(|d| ExecWatchKey::new(d.as_bytes()).map(|k| (k, 1)))
            .collect();
        sync_hash(self, COROSYNC_EXEC, &daemons)
    }

    /// The member list, each member in its counter slot: a member keeps its slot while
    /// it stays; a slot is zeroed before a new member takes it and after one leaves,
    /// and a freed slot is reused last.
    fn sync_members(
        &mut self,
        slots: &Mutex<MemberSlots>,
        members: &BTreeMap<IpAddr, u32>,
    ) -> Result<(), LoadError> {
        let wanted: Vec<[u8; 16]> = members.keys().map(|a| addr_key(*a)).collect();
        // Planned on a copy, kept only once the kernel holds it: a sync that fails is
        // planned again from the last one that held (its slots zeroed again, none freed).
        let mut planned = slots.lock().expect("member slots").clone();
        let change = planned.assign(&wanted).ok_or(LoadError::Capacity {
            name: COROSYNC_MEMBERS,
            capacity: COROSYNC_MEMBERS_CAPACITY,
        })?;
        for &slot in &change.added {
            self.zero_member_slot(slot)?;
        }
        // The member index is read only while the table holds a member: cleared after
        // the last one leaves (below), set once the first one is in.
        if change.table.is_empty() {
            self.write_net_config(|c| c.has_members = 0)?;
        }
        // The hash first, then the index: a packet that reads an entry half-rewritten
        // is sent to the hash (MemberEntry), which already holds the new table. Every
        // entry is compared, so one left wrong by a failed sync is put right by the next.
        sync_hash(self, COROSYNC_MEMBERS, &change.table)?;
        let want = index_entries(&change.table);
        let name = COROSYNC_MEMBER_INDEX;
        let err = |source| LoadError::Map { name, source };
        let map = self
            .ebpf_mut()
            .map_mut(name)
            .ok_or(LoadError::MissingMap(name))?;
        let mut index = Array::<_, MemberEntry>::try_from(map).map_err(err)?;
        for i in 0..COROSYNC_MEMBER_INDEX_SLOTS {
            let end = want.get(&i).copied().unwrap_or_default();
            if index.get(&i, 0).map_err(err)? != end {
                index.set(i, &end, 0).map_err(err)?;
            }
        }
        if !change.table.is_empty() {
            self.write_net_config(|c| c.has_members = 1)?;
        }
        for &slot in &change.freed {
            self.zero_member_slot(slot)?;
        }
        *slots.lock().expect("member slots") = planned;
        Ok(())
    }

    fn zero_member_slot(&mut self, slot: u32) -> Result<(), LoadError> {
        let name = COROSYNC_MEMBER_COUNTS;
        let map = self
            .ebpf_mut()
            .map_mut(name)
            .ok_or(LoadError::MissingMap(name))?;
        let err = |source| LoadError::Map { name, source };
        let mut counts = PerCpuArray::<_, MemberCount>::try_from(map).map_err(err)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| err(aya::maps::MapError::IoError(e)))?;
        let zeros = PerCpuValues::try_from(vec![MemberCount::default(); cpus.get() as usize])
            .map_err(|e| err(aya::maps::MapError::IoError(e)))?;
        counts.set(slot, zeros, 0).map_err(err)
    }

    /// `slots`: the member slots [`Kernel::sync_corosync`] keeps.
    pub fn corosync_counters(&self, slots: Arc<Mutex<MemberSlots>>) -> Result<Counters, LoadError> {
        let handle = |name| self.map_handle(name);
        Ok(Counters {
            members: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(handle(
                COROSYNC_MEMBER_COUNTS,
            )?))
            .map_err(|source| LoadError::Map {
                name: COROSYNC_MEMBER_COUNTS,
                source,
            })?,
            slots,
            sources: PerCpuHashMap::try_from(aya::maps::Map::PerCpuLruHashMap(handle(
                COROSYNC_SOURCES,
            )?))
            .map_err(|source| LoadError::Map {
                name: COROSYNC_SOURCES,
                source,
            })?,
            hot: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(handle(COROSYNC_HOT)?))
                .map_err(|source| LoadError::Map {
                    name: COROSYNC_HOT,
                    source,
                })?,
            claimed: BTreeSet::new(),
            totals: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(handle(COROSYNC_TOTALS)?))
                .map_err(|source| LoadError::Map {
                    name: COROSYNC_TOTALS,
                    source,
                })?,
        })
    }

    /// Whether the cluster-traffic counter (which also enforces cluster drops) is on
    /// at least one interface.
    pub fn cluster_counter_attached(&self) -> bool {
        self.packet_ports
            .values()
            .any(|p| p.flags & agent_common::packet::PORT_WATCH_COROSYNC != 0)
    }
}

/// The member index of `table` (address -> slot): the entries that are not empty.
pub fn index_entries(table: &[([u8; 16], u32)]) -> BTreeMap<u32, MemberEntry> {
    let mut index: BTreeMap<u32, MemberEntry> = BTreeMap::new();
    for &(addr, slot) in table {
        index
            .entry(member_index(&addr))
            .and_modify(|e| {
                *e = MemberEntry {
                    tag: ENTRY_SHARED,
                    ..Default::default()
                }
            })
            .or_insert_with(|| MemberEntry::one(addr, slot));
    }
    index
}

/// Which counter slot each member has (the agent's side of `COROSYNC_MEMBERS`).
#[derive(Debug, Default, Clone)]
pub struct MemberSlots {
    by_addr: BTreeMap<[u8; 16], u32>,
    /// Freed slots, oldest first (reused in that order, after never-used ones).
    free: VecDeque<u32>,
    next: u32,
}

/// What [`MemberSlots::assign`] changed.
pub struct SlotChange {
    /// The whole member table (address -> slot).
    pub table: Vec<([u8; 16], u32)>,
    /// Slots given to new members (zero them before they are published).
    pub added: Vec<u32>,
    /// Slots of members that left (zero them once they are unpublished).
    pub freed: Vec<u32>,
}

impl MemberSlots {
    /// Give every member of `wanted` a slot; `None` when they do not fit.
    pub fn assign(&mut self, wanted: &[[u8; 16]]) -> Option<SlotChange> {
        let gone: Vec<[u8; 16]> = self
            .by_addr
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        let mut freed = Vec::new();
        for a in gone {
            if let Some(s) = self.by_addr.remove(&a) {
                freed.push(s);
            }
        }
        let mut added = Vec::new();
        for a in wanted {
            if self.by_addr.contains_key(a) {
                continue;
            }
            let slot = if self.next < COROSYNC_MEMBERS_CAPACITY {
                self.next += 1;
                self.next - 1
            } else {
                self.free.pop_front()?
            };
            self.by_addr.insert(*a, slot);
            added.push(slot);
        }
        // Freed now, reusable from the next change on (never in the same one).
        self.free.extend(&freed);
        Some(SlotChange {
            table: self.by_addr.iter().map(|(a, s)| (*a, *s)).collect(),
            added,
            freed,
        })
    }

    /// Slot -> member address.
    pub fn by_slot(&self) -> Vec<(u32, [u8; 16])> {
        self.by_addr.iter().map(|(a, s)| (*s, *a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> [u8; 16] {
        let mut k = [0; 16];
        k[15] = n;
        k
    }

    /// `n` IPv4 addresses of 10.3/16 whose index entry is `of`'s.
    pub(crate) fn index_twins(of: [u8; 16], n: usize) -> Vec<[u8; 16]> {
        let twins: Vec<[u8; 16]> = (0..=u16::MAX)
            .map(|i| addr_key(std::net::Ipv4Addr::new(10, 3, (i >> 8) as u8, i as u8).into()))
            .filter(|a| *a != of && member_index(a) == member_index(&of))
            .take(n)
            .collect();
        assert_eq!(twins.len(), n, "addresses sharing the entry");
        twins
    }

    /// What a packet from `a` decides, as the kernel's `member_slot`, from entry `e`.
    fn decide(e: &MemberEntry, hash: &BTreeMap<[u8; 16], u32>, a: &[u8; 16]) -> Option<u32> {
        agent_common::corosync::entry_says(e, a).unwrap_or_else(|| hash.get(a).copied())
    }

    /// Every mix of the old and the new entry's six words (what a packet may read
    /// while the agent rewrites an entry).
    fn torn(old: MemberEntry, new: MemberEntry) -> Vec<MemberEntry> {
        let words = |e: MemberEntry| -> [u32; 6] {
            let mut w = [0; 6];
            for (i, c) in e.addr.chunks(4).enumerate() {
                w[i] = u32::from_ne_bytes(c.try_into().unwrap());
            }
            (w[4], w[5]) = (e.slot, e.tag);
            w
        };
        let (o, n) = (words(old), words(new));
        (0..64u32)
            .map(|pick| {
                let w: Vec<u32> = (0..6)
                    .map(|i| if pick >> i & 1 == 1 { n[i] } else { o[i] })
                    .collect();
                let mut addr = [0; 16];
                for i in 0..4 {
                    addr[4 * i..4 * i + 4].copy_from_slice(&w[i].to_ne_bytes());
                }
                MemberEntry {
                    addr,
                    slot: w[4],
                    tag: w[5],
                }
            })
            .collect()
    }

    /// The member table changes (members leave, join, come to share an entry or stop
    /// sharing it, IPv4 and IPv6); the agent writes the hash, then the index. A packet
    /// that reads any entry half-rewritten, from any source (members, others, and the
    /// half-written address itself), decides as the old or the new table.
    #[test]
    fn the_member_index_never_misleads_a_packet_while_it_changes() {
        let six = |n: u8| {
            let mut k = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n];
            k[9] = n.wrapping_mul(37);
            k
        };
        let (x, y, z) = (a(1), a(2), six(3));
        let (xs, ys) = (index_twins(x, 2), index_twins(y, 2));
        let zs = index_twins(z, 1);
        // x alone -> x's twin alone; y and its twin shared -> y's twin alone; z alone
        // -> z shared with its twin; six(4) leaves, six(5) joins.
        let old: BTreeMap<[u8; 16], u32> = [(x, 0), (y, 1), (ys[0], 2), (z, 3), (six(4), 4)].into();
        let new: BTreeMap<[u8; 16], u32> =
            [(xs[0], 5), (ys[0], 2), (z, 3), (zs[0], 6), (six(5), 7)].into();
        let table =
            |t: &BTreeMap<[u8; 16], u32>| t.iter().map(|(a, s)| (*a, *s)).collect::<Vec<_>>();
        let (before, after) = (index_entries(&table(&old)), index_entries(&table(&new)));
        let mut probe: Vec<[u8; 16]> = old.keys().chain(new.keys()).copied().collect();
        probe.extend([xs[1], ys[1], a(9), six(9)]);
        let indexes: BTreeSet<u32> = before.keys().chain(after.keys()).copied().collect();
        let mut rewritten = 0;
        for i in indexes {
            let (o, n) = (
                before.get(&i).copied().unwrap_or_default(),
                after.get(&i).copied().unwrap_or_default(),
            );
            if o == n {
                continue;
            }
            rewritten += 1;
            for e in torn(o, n) {
                for p in probe.iter().chain([&e.addr]) {
                    if member_index(p) != i {
                        continue;
                    }
                    // The hash holds the new table before any entry is rewritten.
                    let d = decide(&e, &new, p);
                    assert!(
                        d == decide(&o, &old, p) || d == decide(&n, &new, p),
                        "{p:?} decided {d:?} from {e:?} ({o:?} -> {n:?})"
                    );
                }
            }
        }
        assert!(rewritten >= 5, "{rewritten} entries rewritten");
        // Each table decides exactly: members in their slots, nobody else.
        for (t, index) in [(&old, &before), (&new, &after)] {
            for p in &probe {
                let e = index.get(&member_index(p)).copied().unwrap_or_default();
                assert_eq!(decide(&e, t, p), t.get(p).copied(), "{p:?}");
            }
        }
    }

    #[test]
    fn a_member_keeps_its_slot_and_a_freed_slot_is_reused_last() {
        let mut s = MemberSlots::default();
        let c = s.assign(&[a(1), a(2)]).unwrap();
        assert_eq!(c.added, [0, 1]);
        let c = s.assign(&[a(2), a(3)]).unwrap();
        assert_eq!(
            (c.added.as_slice(), c.freed.as_slice()),
            (&[2][..], &[0][..])
        );
        assert_eq!(c.table, [(a(2), 1), (a(3), 2)]);
        // Never-used slots first, then the oldest freed one.
        s.next = COROSYNC_MEMBERS_CAPACITY;
        let c = s.assign(&[a(2), a(3), a(4)]).unwrap();
        assert_eq!(c.added, [0]);
        assert!(s.assign(&[a(2), a(3), a(4), a(5)]).is_none(), "full");
    }
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod test_run;
