//! Command-line flags (SPEC.md "Command line and files"), each defined once, and their
//! merge over the config file: flags win.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::RawConfig;

/// s3vol: an S3 API over POSIX network volumes.
#[derive(Debug, Parser)]
#[command(name = "s3vol", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the S3 API. With no config, volume or credentials given, runs the embedded
    /// default: volume `demo` at ./demo-volume and a generated development key.
    Serve(ServeArgs),
    /// Validate the configuration and credentials, print `config ok` and exit 0, or print
    /// what is wrong and exit 2.
    CheckConfig(ServeArgs),
    /// Print one SigV4 presigned URL (GET or PUT) for a key of the credentials file; exit 2
    /// on any error (e.g. an expiry over 7 days).
    Presign(PresignArgs),
}

/// Flags of `s3vol presign`.
#[derive(Debug, Clone, Args)]
pub struct PresignArgs {
    /// Credentials file (TOML, as for `serve`).
    #[arg(long, value_name = "FILE")]
    pub credentials: PathBuf,
    /// The `name` of the key to sign with.
    #[arg(long, value_name = "NAME")]
    pub key_name: String,
    /// GET (download) or PUT (upload).
    #[arg(long, value_name = "GET|PUT", default_value = "GET")]
    pub method: String,
    /// Lifetime in seconds, at most 604800 (7 days).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub expires: u64,
    /// The server's base URL, e.g. https://s3.example.com:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// Region of the signature's credential scope.
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_REGION)]
    pub region: String,
    /// Bucket (volume) name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

/// Flags shared by `serve` and `check-config`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address, ip:port (default 127.0.0.1:9000; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A volume, NAME=PATH; repeat for more. Replaces the config file's [[volume]] list.
    #[arg(long = "volume", value_name = "NAME=PATH")]
    pub volumes: Vec<String>,
    /// A directory whose subdirectories are volumes.
    #[arg(long, value_name = "DIR")]
    pub volumes_root: Option<PathBuf>,
    /// Credentials file (TOML; must be readable by the service only).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Base domain for virtual-hosted-style requests (BUCKET.DOMAIN); repeat for more.
    /// Replaces the config file's `domain`.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Region reported to clients.
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,
    /// PEM certificate chain for HTTPS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Admin listener address, ip:port: /health, /ready, /metrics, /status (default: none).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log format on stderr: text (default) or json (one object per line, for journald).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl ServeArgs {
    /// Reads the config file (if any) and lays the flags over it.
    ///
    /// Errors: an unreadable or invalid config file, or a `--volume` without `=`.
    pub fn merged(&self) -> Result<RawConfig, String> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::load(path)?,
            None => RawConfig::default(),
        };
        if let Some(v) = &self.listen {
            raw.listen = Some(v.clone());
        }
        if !self.volumes.is_empty() {
            raw.volume = self
                .volumes
                .iter()
                .map(|spec| {
                    let (name, path) =
                        spec.split_once('=').ok_or_else(|| format!("--volume {spec:?}: expected NAME=PATH"))?;
                    Ok(crate::config::RawVolume {
                        name: name.to_owned(),
                        path: PathBuf::from(path),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, String>>()?;
        }
        if let Some(v) = &self.volumes_root {
            raw.volumes_root = Some(v.clone());
        }
        if let Some(v) = &self.credentials {
            raw.credentials = Some(v.clone());
        }
        if !self.domains.is_empty() {
            raw.domain = Some(crate::config::OneOrMany::Many(self.domains.clone()));
        }
        if let Some(v) = &self.region {
            raw.region = Some(v.clone());
        }
        if let Some(v) = &self.tls_cert {
            raw.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            raw.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.admin_listen {
            raw.admin_listen = Some(v.clone());
        }
        if let Some(v) = &self.log_format {
            raw.log_format = Some(v.clone());
        }
        Ok(raw)
    }
}
