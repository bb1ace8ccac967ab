//! nodeward agent library: everything except argument parsing lives here so that it
//! can be unit-tested.
//!
//! Imports run one way: `cli → daemon → {kernel, detectors, quarantine, control, http,
//! metrics} → {config, net, time} → agent-common` (ARCHITECTURE.md).

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod detectors;
pub mod http;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod quarantine;
pub mod time;
