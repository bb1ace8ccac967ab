//! Alertmanager webhook requests: the bearer token header and the JSON body, each
//! alert's labels turned into a quarantine request (or refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward::http::webhook::{Payload, to_request, token_ok};

fuzz_target!(|data: &[u8]| {
    // The first line is the Authorization header, the rest the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = std::str::from_utf8(&data[..split]).ok();
    assert!(!token_ok(header, ""), "an empty token never authorizes");
    if let Some(h) = header {
        let presented = h.strip_prefix("Bearer ").map(str::trim);
        assert_eq!(token_ok(header, "s3cret"), presented == Some("s3cret"));
    }
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(payload) = serde_json::from_slice::<Payload>(body) {
        for alert in &payload.alerts {
            if let Err(e) = to_request(alert) {
                let _ = e.to_string();
            }
        }
    }
});
