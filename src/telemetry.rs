//! Logging through `tracing`, to stderr, as human-readable text or as one JSON object per
//! line (`log_format = "json"` / `--log-format json`, for journald and log shippers).
//!
//! `RUST_LOG` sets the filter (default `info`). Below that, a second filter that `RUST_LOG`
//! cannot lift ([`secret_safe`]) drops every event and span under `info` from the libraries
//! that see requests whole: `s3s` prints computed signatures, canonical requests and POST
//! forms at debug level; `hyper`, `h2` and `rustls` see headers and key material. s3vol
//! never logs a secret, a signature, an Authorization header or a presigned query string.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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

/// Targets whose events below `info` may carry secrets (module paths start with these).
const QUIET_TARGETS: [&str; 5] = ["s3s", "hyper", "h2", "rustls", "tokio_rustls"];

/// True when an event or span from `target` at `level` may be logged at all, whatever
/// `RUST_LOG` says: nothing below `info` from [`QUIET_TARGETS`].
pub fn secret_safe(target: &str, level: &Level) -> bool {
    let quiet =
        QUIET_TARGETS.iter().any(|t| target == *t || target.strip_prefix(t).is_some_and(|rest| rest.starts_with("::")));
    !quiet || *level <= Level::INFO
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = env.and(filter_fn(|meta| secret_safe(meta.target(), meta.level())));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let layer = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_current_span(false).with_span_list(false).with_filter(filter).boxed(),
    };
    // `init` also routes the `log` crate (rustls) through the same filter.
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_debug_events_never_pass() {
        for target in ["s3s", "s3s::ops::signature", "hyper::proto::h1", "h2::codec", "rustls::server"] {
            assert!(!secret_safe(target, &Level::DEBUG), "{target}");
            assert!(!secret_safe(target, &Level::TRACE), "{target}");
            assert!(secret_safe(target, &Level::WARN), "{target}");
        }
        assert!(secret_safe("s3vol::request", &Level::DEBUG));
        assert!(secret_safe("s3sfoo", &Level::DEBUG), "only the crate itself");
    }
}
