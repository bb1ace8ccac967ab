//! Persisted engine state (active quarantines, pending proposals), written atomically
//! (temp file, fsync, rename, fsync dir) after every change so a restart keeps them.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::types::{Proposal, Quarantine};

pub const FILE_NAME: &str = "quarantine.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub next_id: u64,
    /// The last audit-journal record this state reflects (older state files: 0).
    #[serde(default)]
    pub journal_seq: u64,
    pub active: Vec<Quarantine>,
    pub proposals: Vec<Proposal>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

impl State {
    /// Load the state; a missing file is an empty state; a corrupt one is an error
    /// (the agent refuses to guess which quarantines were active).
    pub fn load(dir: &Path) -> io::Result<State> {
        match fs::read(path(dir)) {
            Ok(bytes) => State::parse(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path(dir).display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State {
                next_id: 1,
                ..State::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// The state in a state file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<State, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn save(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, path(dir))
        };
        if let Err(e) = write() {
            // The previous state file is untouched; no partial temporary is left.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(dir)?.sync_all()
    }
}
