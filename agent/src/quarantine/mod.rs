//! The quarantine engine: every enforcement action goes through here, so every action
//! is checked by the same safeguards and recorded in the same audit journal
//! (MISSION.md: the guard must never become the hazard).

pub mod engine;
pub mod journal;
pub mod kernel;
pub mod metrics;
pub mod policy;
pub mod replay;
pub mod state;
pub mod types;

pub use engine::{Backend, Engine};
pub use types::*;
