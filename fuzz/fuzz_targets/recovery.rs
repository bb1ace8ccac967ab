//! Restart recovery: a state file and an audit journal with arbitrary contents (torn,
//! corrupt or hostile) opened by the quarantine engine, which then reconciles and
//! sweeps. A corrupt state file is refused; anything else is recovered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward::{
    config::Config,
    quarantine::{
        engine::{Backend, Engine},
        journal, state,
        types::Quarantine,
    },
    time::Now,
};

struct Nothing;

impl Backend for Nothing {
    type Error = std::io::Error;
    fn apply(&mut self, _: &Quarantine, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn remove(&mut self, _: &Quarantine) -> Result<(), Self::Error> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 0xff byte separates the state file from the journal.
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (state_bytes, journal_bytes) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let parsed = state::State::parse(state_bytes);
    let records = journal::parse_records(journal_bytes);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(state::path(dir.path()), state_bytes).expect("write state");
    std::fs::write(dir.path().join(journal::FILE_NAME), journal_bytes).expect("write journal");
    let mut config = Config::default();
    config.agent.state_dir = dir.path().to_path_buf();
    match Engine::open(&config, Nothing) {
        Ok(mut engine) => {
            assert!(parsed.is_ok(), "a corrupt state file must be refused");
            let now = Now::system();
            engine.reconcile(now).expect("reconcile");
            engine.sweep(now).expect("sweep");
            // The journal now holds every complete record it held, plus the engine's.
            let after = journal::read_records(&dir.path().join(journal::FILE_NAME)).expect("read");
            assert!(after.len() >= records.len());
        }
        // The journal opens whatever it holds (a torn tail is cut): only a state file
        // that does not parse is refused.
        Err(e) => assert!(parsed.is_err(), "refused a good state file: {e}"),
    }
});
