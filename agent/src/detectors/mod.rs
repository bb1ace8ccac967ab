//! Detectors: pure state machines from kernel records to findings. No I/O here, so
//! every detector is unit-tested on constructed records without root.

pub mod reboot;

use agent_common::{cstr_bytes, decode::Event, proc::{ProcCtx, UNSET_ID}};
use serde::Serialize;

use crate::config::Config;

/// Every detector id, in the order they are reported. One id names a detector's files
/// in every crate, its config table, metric subsystem, dashboard row and alert group.
pub const ALL: &[&str] = &["reboot"];

/// A conclusion drawn by a detector.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    RebootIntent(reboot::RebootIntent),
}

impl Finding {
    pub fn detector(&self) -> &'static str {
        match self {
            Finding::RebootIntent(_) => "reboot",
        }
    }
}

/// The process a record came from, in userspace form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub loginuid: Option<u32>,
    pub sessionid: Option<u32>,
    pub cgroup_id: u64,
    pub comm: String,
}

impl From<&ProcCtx> for Process {
    fn from(p: &ProcCtx) -> Self {
        let id = |v: u32| (v != UNSET_ID).then_some(v);
        Process {
            pid: p.pid,
            tid: p.tid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            loginuid: id(p.loginuid),
            sessionid: id(p.sessionid),
            cgroup_id: p.cgroup_id,
            comm: lossy(&p.comm),
        }
    }
}

/// A NUL-terminated kernel buffer as a string (invalid UTF-8 replaced).
pub fn lossy(buf: &[u8]) -> String {
    String::from_utf8_lossy(cstr_bytes(buf)).into_owned()
}

/// All enabled detectors.
pub struct DetectorSet {
    reboot: Option<reboot::RebootDetector>,
}

impl DetectorSet {
    pub fn new(config: &Config) -> Self {
        let r = &config.detectors.reboot;
        DetectorSet { reboot: r.enabled.then(|| reboot::RebootDetector::new(r)) }
    }

    /// Feed one record; returns what it means.
    pub fn observe(&mut self, event: &Event) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(d) = &mut self.reboot {
            out.extend(d.observe(event).map(Finding::RebootIntent));
        }
        out
    }
}
