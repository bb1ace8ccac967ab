//! The configuration file: parsed and validated, or refused with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = nodeward::config::Config::parse(text, "fuzz.toml") {
        let _ = e.to_string();
    }
});
