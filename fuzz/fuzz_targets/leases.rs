//! IPAM lease files (JSON or CSV) that another tool writes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = nodeward::detectors::arp::Leases::parse(text);
});
