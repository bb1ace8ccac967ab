//! Kernel maps of the `corosync` detector: ports, members and daemons written from the
//! cluster configuration; per-source counters and totals read once a second.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::net::addr_key;

use agent_common::corosync::{
    COROSYNC_EXEC, COROSYNC_MEMBER_COUNTS, COROSYNC_MEMBERS, COROSYNC_MEMBERS_CAPACITY,
    COROSYNC_PORTS, COROSYNC_SOURCES, COROSYNC_TOTALS, MemberCount, SourceCount, SourceKey,
    TOTAL_SLOTS,
};
use agent_common::maps::ExecWatchKey;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};

use crate::kernel::loader::{Kernel, LoadError, sync_hash};

/// Counters of one source on one interface while it was (not) a member, summed over
/// CPUs.
pub struct SourceRow {
    pub addr: [u8; 16],
    pub ifindex: u32,
    pub member: bool,
    pub packets: u64,
    pub dropped: u64,
}

/// Read handles, taken once (the maps outlive the guard's borrows).
pub struct Counters {
    sources: PerCpuHashMap<MapData, SourceKey, SourceCount>,
    members: PerCpuArray<MapData, MemberCount>,
    slots: Arc<Mutex<MemberSlots>>,
    totals: PerCpuArray<MapData, u64>,
}

impl Counters {
    /// Per (source, interface, membership): the per-source hash and the members' slots.
    pub fn sources(&self) -> Vec<SourceRow> {
        let mut rows: BTreeMap<([u8; 16], u32, bool), (u64, u64)> = BTreeMap::new();
        for (key, per_cpu) in self.sources.iter().filter_map(Result::ok) {
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
            let Ok(per_cpu) = self.members.get(&slot, 0) else {
                continue;
            };
            // Each CPU's copy names the interface its packets entered.
            for c in per_cpu.iter().filter(|c| c.packets > 0) {
                rows.entry((addr, c.ifindex, true)).or_default().0 += c.packets;
            }
        }
        rows.into_iter()
            .map(|((addr, ifindex, member), (packets, dropped))| SourceRow {
                addr,
                ifindex,
                member,
                packets,
                dropped,
            })
            .collect()
    }

    /// The `TOTAL_*` slots, summed over CPUs.
    pub fn totals(&self) -> [u64; TOTAL_SLOTS as usize] {
        let mut out = [0u64; TOTAL_SLOTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.totals.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
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
        let mut bits = agent_common::packet::PortBits::default();
        for &p in ports {
            bits.set(p);
        }
        let name = agent_common::packet::COROSYNC_PORT_BITS;
        let map = self
            .ebpf_mut()
            .map_mut(name)
            .ok_or(LoadError::MissingMap(name))?;
        let err = |source| LoadError::Map { name, source };
        aya::maps::Array::<_, agent_common::packet::PortBits>::try_from(map)
            .map_err(err)?
            .set(0, &bits, 0)
            .map_err(err)?;
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
        let change =
            slots
                .lock()
                .expect("member slots")
                .assign(&wanted)
                .ok_or(LoadError::Capacity {
                    name: COROSYNC_MEMBERS,
                    capacity: COROSYNC_MEMBERS_CAPACITY,
                })?;
        for &slot in &change.added {
            self.zero_member_slot(slot)?;
        }
        let entries: Vec<([u8; 16], u32)> = change.table;
        sync_hash(self, COROSYNC_MEMBERS, &entries)?;
        for &slot in &change.freed {
            self.zero_member_slot(slot)?;
        }
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

/// Which counter slot each member has (the agent's side of `COROSYNC_MEMBERS`).
#[derive(Debug, Default)]
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
