//! Control-socket lines: requests as the agent reads them, answers as the CLI reads
//! them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward::{
    control::{
        Request,
        reply::{self, List, Released},
    },
    quarantine::Outcome,
};

fuzz_target!(|line: &str| {
    if let Ok(request) = serde_json::from_str::<Request>(line) {
        // What the agent accepted survives its own wire format.
        let again = serde_json::to_string(&request).expect("encodes");
        assert_eq!(serde_json::from_str::<Request>(&again).ok(), Some(request));
    }
    let _ = reply::decode::<List>(line);
    let _ = reply::decode::<Outcome>(line);
    let _ = reply::decode::<Released>(line);
});
