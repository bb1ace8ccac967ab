//! Structured logging (tracing): text or one JSON object per line, level reloadable.

use tracing_subscriber::{
    EnvFilter, Registry, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

use crate::config::{LogFormat, LogLevel};

pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

fn filter(level: LogLevel) -> EnvFilter {
    // RUST_LOG, when set, wins over the configured level (for debugging).
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

pub fn init(format: LogFormat, level: LogLevel) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter(level));
    let registry = tracing_subscriber::registry().with(filter);
    let res = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer()).try_init(),
    };
    if let Err(e) = res {
        eprintln!("nodeward: logging already initialised: {e}");
    }
    LogHandle(handle)
}

impl LogHandle {
    pub fn set_level(&self, level: LogLevel) {
        if let Err(e) = self.0.reload(filter(level)) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}
