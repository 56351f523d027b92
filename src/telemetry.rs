//! Logging through `tracing`, to stderr, as human-readable text or as one JSON object per
//! line (`log_format = "json"` / `--log-format json`, for journald and log shippers).
//!
//! `RUST_LOG` sets the filter (default `info`). The `s3s` target is always capped at `info`:
//! at debug level it prints whole requests, Authorization headers included, and s3vol never
//! logs a secret.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `timestamp LEVEL message key=value ...`; colours only on a terminal.
    #[default]
    Text,
    /// `{"timestamp":..,"level":..,"fields":{"message":..,..}}`, one object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format (text or json)")),
        }
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("s3s=info".parse().expect("static directive"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
    }
}
