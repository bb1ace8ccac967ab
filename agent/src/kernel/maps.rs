//! Writing the programs' maps from the agent: a hash made to hold exactly a set of
//! entries, one array slot set, and the packet program's settings (`NET_CONFIG`),
//! written whole by their one writer.

use aya::maps::{Array, HashMap as BpfHashMap};

use agent_common::packet::{NET_CONFIG, NetConfig};

use crate::kernel::loader::{Kernel, LoadError};

/// Make hash map `name` hold exactly `wanted`: stale keys removed, wanted ones written
/// (never emptied in between, so the programs never see a blank map). An entry that
/// already holds its value is left alone: rewriting it would hand the element a program
/// may be reading to the next insert (the kernel recycles hash elements at once).
pub(crate) fn sync_hash<K, V>(
    kernel: &mut Kernel,
    name: &'static str,
    wanted: &[(K, V)],
) -> Result<(), LoadError>
where
    K: aya::Pod + PartialEq,
    V: aya::Pod + PartialEq,
{
    let map = kernel
        .ebpf_mut()
        .map_mut(name)
        .ok_or(LoadError::MissingMap(name))?;
    let err = |source| LoadError::Map { name, source };
    let mut m: BpfHashMap<_, K, V> = BpfHashMap::try_from(map).map_err(err)?;
    let stale: Vec<K> = m
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted.iter().any(|(w, _)| w == k))
        .collect();
    for k in stale {
        m.remove(&k).map_err(err)?;
    }
    for (k, v) in wanted {
        if m.get(k, 0).is_ok_and(|now| now == *v) {
            continue;
        }
        m.insert(k, v, 0).map_err(err)?;
    }
    Ok(())
}

impl Kernel {
    /// Change the packet program's settings (`NET_CONFIG`) with `change` and write them
    /// whole: the one writer of that value, so the quarantine's, the cluster counter's
    /// and the interfaces' parts never overwrite each other.
    pub(crate) fn write_net_config(
        &mut self,
        change: impl FnOnce(&mut NetConfig),
    ) -> Result<(), LoadError> {
        let mut next = self.net_config;
        change(&mut next);
        set_array(self, NET_CONFIG, 0, &next)?;
        self.net_config = next;
        Ok(())
    }
}

/// Set slot `index` of array map `name` to `value`.
pub(crate) fn set_array<V: aya::Pod>(
    kernel: &mut Kernel,
    name: &'static str,
    index: u32,
    value: &V,
) -> Result<(), LoadError> {
    let map = kernel
        .ebpf_mut()
        .map_mut(name)
        .ok_or(LoadError::MissingMap(name))?;
    let err = |source| LoadError::Map { name, source };
    Array::<_, V>::try_from(map)
        .map_err(err)?
        .set(index, value, 0)
        .map_err(err)
}
