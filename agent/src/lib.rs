//! nodeward agent library: everything except argument parsing lives here so that it
//! can be unit-tested.

pub mod btf;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod detectors;
pub mod events;
pub mod guard;
pub mod http;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod object;
pub mod pipeline;
pub mod probe;
pub mod programs;
pub mod quarantine;
pub mod run;
pub mod time;
pub mod verbs;
pub mod webhook;
