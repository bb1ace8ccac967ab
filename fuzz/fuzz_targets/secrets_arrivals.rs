//! A read of the secrets detector's fanotify FID group (creations, renames and links
//! into watched directories): variable-length events with info records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward::detectors::secrets::arrivals::parse_with;

fuzz_target!(|data: &[u8]| {
    let (arrivals, overflows) = parse_with(data, |_fd| None);
    // Every arrival lies inside the buffer it was read from.
    assert!(
        arrivals
            .iter()
            .map(|a| a.name.len() + a.dir.len())
            .sum::<usize>()
            <= data.len()
    );
    assert!(overflows as usize <= data.len() / 24);
});
