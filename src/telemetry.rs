//! Logging through `tracing`, to stderr.
//!
//! `RUST_LOG` sets the filter (default `info`). The `s3s` target is always capped at `info`:
//! at debug level it prints whole requests, Authorization headers included, and s3vol never
//! logs a secret.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("s3s=info".parse().expect("static directive"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
