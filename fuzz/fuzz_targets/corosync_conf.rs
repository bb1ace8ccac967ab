//! corosync.conf as corosync, pvecm or an operator wrote it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = nodeward::detectors::corosync::conf::parse(text);
});
