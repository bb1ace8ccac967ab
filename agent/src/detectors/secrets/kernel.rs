//! Kernel maps and attachments of the `secrets` detector.

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
    kernel::maps::sync_hash,
};

impl Kernel {
    /// Secret paths as trie keys -> index in the configuration: an exact file with its
    /// terminating NUL, a `dir/*` entry as the `dir/` prefix.
    pub(crate) fn sync_secret_paths(&mut self, config: &Config) -> Result<(), LoadError> {
        use agent_common::secrets::{PATH_LEN, PREFIX_LEN, SECRET_PATHS, SECRET_PREFIXES};
        use aya::maps::lpm_trie::{Key, LpmTrie};
        let map = self
            .ebpf
            .map_mut(SECRET_PATHS)
            .ok_or(LoadError::MissingMap(SECRET_PATHS))?;
        let err = |source| LoadError::Map {
            name: SECRET_PATHS,
            source,
        };
        let mut prefixes: Vec<([u8; PREFIX_LEN], u32)> = Vec::new();
        let mut m: LpmTrie<_, [u8; PATH_LEN], u32> = LpmTrie::try_from(map).map_err(err)?;
        let old: Vec<Key<[u8; PATH_LEN]>> = m.keys().filter_map(Result::ok).collect();
        for k in old {
            m.remove(&k).map_err(err)?;
        }
        if config.detectors.secrets.enabled {
            for (i, p) in config.detectors.secrets.paths.iter().enumerate() {
                let text = p.to_string_lossy();
                let (bytes, bits) = match text.strip_suffix('*') {
                    Some(dir) => (dir.as_bytes(), dir.len() * 8),
                    None => (text.as_bytes(), (text.len() + 1) * 8),
                };
                let mut data = [0u8; PATH_LEN];
                let n = bytes.len().min(PATH_LEN - 2);
                data[..n].copy_from_slice(&bytes[..n]);
                m.insert(&Key::new(bits as u32, data), &(i as u32), 0)
                    .map_err(err)?;
                let mut head = [0u8; PREFIX_LEN];
                head.copy_from_slice(&data[..PREFIX_LEN]);
                if !prefixes.iter().any(|(h, _)| *h == head) {
                    prefixes.push((head, 1));
                }
            }
        }
        sync_hash(self, SECRET_PREFIXES, &prefixes)
    }
}
