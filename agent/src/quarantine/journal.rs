//! Append-only audit journal: one JSON object per line, fsync'd before the decision it
//! records takes effect, rotated by size. A record is written with a single write(2)
//! on an O_APPEND file; a torn tail (crash mid-write) is cut off when the journal is
//! opened, so a torn record is never followed by a good one and never read back.

use std::os::unix::fs::OpenOptionsExt;
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const FILE_NAME: &str = "audit.jsonl";

pub struct Journal {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    seq: u64,
}

/// One decision, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Monotonic within a journal (continues across restarts and rotation).
    pub seq: u64,
    /// RFC 3339 UTC timestamp.
    pub time: String,
    /// proposed, approved, applied, dry_run, refused, expired, released, enforced, ...
    pub decision: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

/// Cut an unterminated last line; returns the resulting length.
fn repair(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Scan backwards in chunks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(keep)
}

/// Complete records of a journal file, in order. Unterminated or unparsable lines
/// (a torn tail) are skipped.
pub fn read_records(path: &Path) -> io::Result<Vec<Record>> {
    match fs::read(path) {
        Ok(text) => Ok(parse_records(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The complete records in a journal's bytes: everything after the last newline is a
/// torn tail; a line that is not a record is skipped.
pub fn parse_records(text: &[u8]) -> Vec<Record> {
    let Some(end) = text.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    text[..=end]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Journal files oldest first: audit.jsonl.N … audit.jsonl.1, audit.jsonl.
pub fn files(dir: &Path, keep: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|i| dir.join(format!("{FILE_NAME}.{i}")))
        .filter(|p| p.exists())
        .collect();
    v.push(dir.join(FILE_NAME));
    v
}

impl Journal {
    /// Open (creating) the journal in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            // The audit journal names users and hosts: owner only, whatever the umask.
            .mode(0o600)
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let size = repair(&mut file)?;
        let seq = files(dir, keep)
            .iter()
            .rev()
            .find_map(|p| read_records(p).ok().and_then(|r| r.last().map(|r| r.seq)))
            .unwrap_or(0);
        Ok(Journal {
            path,
            file,
            size,
            max_bytes,
            keep,
            seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number of the last record written (0 for an empty journal).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The complete records newer than `seq`, oldest first. Files are read newest
    /// first and only as far back as needed (a restart reads the tail, not every
    /// rotated file).
    pub fn records_after(&self, seq: u64) -> io::Result<Vec<Record>> {
        let dir = self.path.parent().expect("journal has a directory");
        let mut newest_first = Vec::new();
        for f in files(dir, self.keep).iter().rev() {
            let records = read_records(f)?;
            let reached = records.first().is_some_and(|r| r.seq <= seq);
            newest_first.push(records);
            if reached {
                break;
            }
        }
        Ok(newest_first
            .into_iter()
            .rev()
            .flatten()
            .filter(|r| r.seq > seq)
            .collect())
    }

    /// Append a record and fsync it. Returns it as written.
    pub fn append(
        &mut self,
        decision: &str,
        fields: serde_json::Map<String, Value>,
    ) -> io::Result<Record> {
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        let record = Record {
            seq: self.seq.saturating_add(1),
            time: crate::time::now_rfc3339(),
            decision: decision.to_string(),
            fields,
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write(2) of the whole line on an O_APPEND descriptor. When it fails part
        // way (a full disk), the partial line is cut so no record is ever torn in the
        // middle of the journal and the next one starts clean.
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += line.len() as u64;
        self.seq = record.seq;
        Ok(record)
    }

    /// Tests: every later write fails with ENOSPC (the journal writes to /dev/full)
    /// until [`Journal::disk_freed`].
    #[cfg(test)]
    pub(crate) fn disk_full(&mut self) {
        self.file = OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("/dev/full");
    }

    #[cfg(test)]
    pub(crate) fn disk_freed(&mut self) {
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .expect("journal");
    }

    fn rotate(&mut self) -> io::Result<()> {
        let dir = self
            .path
            .parent()
            .expect("journal has a directory")
            .to_path_buf();
        for i in (1..self.keep).rev() {
            let from = dir.join(format!("{FILE_NAME}.{i}"));
            if from.exists() {
                fs::rename(&from, dir.join(format!("{FILE_NAME}.{}", i + 1)))?;
            }
        }
        if self.keep > 0 {
            fs::rename(&self.path, dir.join(format!("{FILE_NAME}.1")))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        File::open(&dir)?.sync_all()?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(i: u64) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("action_id".into(), Value::from(i));
        m.insert("note".into(), Value::from("x".repeat((i % 7) as usize)));
        m
    }

    #[test]
    fn append_and_read_back_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20, 3).unwrap();
        for i in 0..5 {
            j.append("applied", fields(i)).unwrap();
        }
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20, 3).unwrap();
        j.append("released", fields(9)).unwrap();
        let r = read_records(&dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            r.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(r[5].decision, "released");
    }

    /// Simulate a crash at every byte of the last record: earlier records survive,
    /// the torn one is never read, and the next append lands on a clean line.
    #[test]
    fn survives_truncation_at_any_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20, 3).unwrap();
        for i in 0..4 {
            j.append("applied", fields(i)).unwrap();
        }
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let full = fs::read(&path).unwrap();
        let lines: Vec<usize> = full
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        for cut in 0..=full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let complete = lines.iter().filter(|&&end| end <= cut).count();
            assert_eq!(read_records(&path).unwrap().len(), complete, "cut at {cut}");
            let mut j = Journal::open(dir.path(), 1 << 20, 3).unwrap();
            j.append("released", fields(99)).unwrap();
            let after = read_records(&path).unwrap();
            assert_eq!(
                after.len(),
                complete + 1,
                "cut at {cut}: append after repair"
            );
            assert_eq!(after.last().unwrap().decision, "released");
            assert!(after.windows(2).all(|w| w[0].seq < w[1].seq));
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 300, 2).unwrap();
        for i in 0..20 {
            j.append("applied", fields(i)).unwrap();
        }
        let all: Vec<Record> = files(dir.path(), 2)
            .iter()
            .flat_map(|p| read_records(p).unwrap())
            .collect();
        assert!(dir.path().join(format!("{FILE_NAME}.1")).exists());
        assert!(!dir.path().join(format!("{FILE_NAME}.3")).exists());
        assert!(
            all.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
            "contiguous sequence across kept files"
        );
        assert_eq!(all.last().unwrap().seq, 20);
        // What a restart replays: everything after a sequence number, across files.
        let first = all.first().unwrap().seq;
        for after in [0, first, 15, 19, 20] {
            let want: Vec<u64> = all.iter().map(|r| r.seq).filter(|&s| s > after).collect();
            let got: Vec<u64> = j
                .records_after(after)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(got, want, "after {after}");
        }
        assert!(fs::metadata(dir.path().join(FILE_NAME)).unwrap().len() <= 300 + 200);
    }
}
