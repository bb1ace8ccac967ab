//! Ring-buffer records, as the kernel hands them to the reader, decoded, fed to every
//! detector, correlated, reported and turned into the alerts the agent pushes.
//!
//! The input is a stream of frames `tag, len (2 bytes LE), body`. A tag below the number
//! of record kinds frames a well-formed record of that kind (header written here, body
//! from the input) so the fuzzer spends its time in the detectors; any other tag hands
//! the body to the decoder as raw bytes, so malformed records are fuzzed too.
#![no_main]

use agent_common::event::{ABI_VERSION, EventHeader, KINDS};
use libfuzzer_sys::fuzz_target;
use nodeward::{
    config::{AlertingConfig, DetectorsConfig},
    daemon::push::alert_for,
    detectors::{DetectorSet, Finding, incident::Correlator, report::report},
};

fn record(tag: u8, body: &[u8], ktime_ns: u64) -> Vec<u8> {
    let Some(kind) = KINDS.get(usize::from(tag)) else {
        return body.to_vec();
    };
    let header = EventHeader {
        kind: kind.number,
        abi: ABI_VERSION,
        len: kind.size as u32,
        ktime_ns,
    };
    let mut out = agent_common::decode::encode(&header);
    out.extend(
        body.iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(kind.size - out.len()),
    );
    out
}

fuzz_target!(|data: &[u8]| {
    let mut set = DetectorSet::new(&DetectorsConfig::default());
    let mut incidents = Correlator::new(std::time::Duration::from_secs(60));
    let alerting = AlertingConfig::default();
    let mut rest = data;
    let mut now_ms = 1_000;
    while rest.len() >= 3 {
        let tag = rest[0];
        let n = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let (body, tail) = rest[3..].split_at(n);
        rest = tail;
        now_ms += 250;
        let bytes = record(tag, body, now_ms * 1_000_000);
        let event = match agent_common::decode::decode(&bytes) {
            Ok(event) => event,
            Err(e) => {
                assert!(
                    usize::from(tag) >= KINDS.len(),
                    "a well-formed record was refused: {e}"
                );
                continue;
            }
        };
        let mut findings = set.observe(&event, now_ms);
        findings.extend(set.tick(now_ms));
        for f in &findings {
            report(f);
            let _ = alert_for(f, &alerting);
            if let Some(i) = incidents.observe(f, now_ms) {
                let incident = Finding::Incident(i);
                report(&incident);
                let _ = alert_for(&incident, &alerting);
            }
        }
    }
});
