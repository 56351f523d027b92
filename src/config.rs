//! Configuration: the TOML file and command-line flags, merged (flags win) and checked in
//! one step, [`RawConfig::validate`], into [`Settings`]. `s3vol check-config` runs exactly
//! that. The file format is SPEC.md "Command line and files".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::PublicVolumes;
use crate::cors::{CorsRule, CorsRules, RawCorsRule};
use crate::limits::{self, Limits};
use crate::store::VolumeSettings;
use crate::store::key::BucketName;
use crate::store::quota::Limits as VolumeLimits;
pub use crate::telemetry::LogFormat;

/// Default listen address (SPEC.md): loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// Default interval between two scans of a volume (object counts, quota usage).
pub const DEFAULT_USAGE_RESCAN: &str = "10m";
/// Default ceiling of a volume scan, directory entries per second: a 10-million-file
/// volume takes about 17 minutes, leaving the disk to requests.
pub const DEFAULT_SCAN_RATE: u64 = 10_000;
/// Default interval between two looks at the credentials file (size, mtime, inode).
pub const DEFAULT_CREDENTIALS_CHECK: &str = "2s";
/// Region answered by GetBucketLocation when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Idle multipart uploads are swept after this long (SPEC.md: default 7 days), seconds.
pub const DEFAULT_MULTIPART_MAX_AGE_SECS: u64 = 7 * 86_400;

/// The config file as written. Every field is optional; unknown fields are errors.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the S3 listener, `ip:port` (default `127.0.0.1:9000`; port 0 picks one).
    pub listen: Option<String>,
    /// Address of the admin listener (`/health`, `/ready`, `/metrics`, `/status`), `ip:port`.
    /// Default: none (no admin listener). Keep it on loopback or a management network.
    pub admin_listen: Option<String>,
    /// Log line format on stderr: `text` (default; human-readable) or `json` (one JSON
    /// object per line, for journald and log shippers).
    pub log_format: Option<String>,
    /// After SIGTERM, how long in-flight requests may take to finish, e.g. `30s` (default).
    pub shutdown_grace: Option<String>,
    /// Time for a client to send a whole request head, e.g. `30s` (default); also how long
    /// an idle keep-alive connection is kept.
    pub header_read_timeout: Option<String>,
    /// A request body that receives nothing, or a response the client does not read, for
    /// this long fails the request and closes the connection, e.g. `60s` (default).
    pub idle_timeout: Option<String>,
    /// Most client connections open at once on the S3 listener (default 4096); more wait
    /// in the kernel's listen backlog.
    pub max_connections: Option<usize>,
    /// A request body slower than this is cut, bytes per second averaged over 20 s of
    /// waiting, e.g. `4KiB` (default); `0` turns the check off.
    pub min_body_rate: Option<String>,
    /// Longest time any request body may take, e.g. `12h` (default).
    pub max_body_time: Option<String>,
    /// Longest time a body read before its request is authorized (a browser form upload)
    /// may take, e.g. `60s` (default).
    pub unauthenticated_body_time: Option<String>,
    /// Serve HTTP/2 as well as HTTP/1.1 (default false: HTTP/1.1 only, as S3).
    pub http2: Option<bool>,
    /// Largest aws-chunked chunk accepted, e.g. `8MiB` (default; SDKs send 64 KiB-1 MiB).
    pub max_chunk_size: Option<String>,
    /// A file-system step of a request that a volume does not finish in this long answers
    /// 503 and marks the volume stalled until it answers again, e.g. `30s` (default).
    pub volume_timeout: Option<String>,
    /// Largest browser form upload (PostObject), e.g. `16MiB` (default). It is held in
    /// memory while read.
    pub max_form_upload_size: Option<String>,
    /// Form uploads read at once (default 4); more answer 503 SlowDown.
    pub max_form_uploads: Option<usize>,
    /// Accept AWS Signature Version 2 (header auth and presigned URLs; default true:
    /// boto3 presigns with it). Off: only SigV4.
    pub sigv2: Option<bool>,
    /// Base domain(s) for virtual-hosted-style requests: with `s3.example.com`, the host
    /// `vol-a.s3.example.com` names bucket `vol-a`. A string or a list; path style always
    /// works too. Default: none (path style only).
    pub domain: Option<OneOrMany>,
    /// Region returned by GetBucketLocation (default `us-east-1`).
    pub region: Option<String>,
    /// Reject requests signed for another region than `region` (default false: any region).
    pub strict_region: Option<bool>,
    /// Path of the credentials file (TOML, `[[key]]` tables; must not be group/other readable).
    pub credentials: Option<PathBuf>,
    /// How often the credentials file is looked at and reloaded when it changed, e.g.
    /// `2s` (default); `0s`: only on SIGHUP.
    pub credentials_check: Option<String>,
    /// PEM certificate chain for HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// A directory whose immediate subdirectories are volumes (bucket = directory name).
    pub volumes_root: Option<PathBuf>,
    /// Name of the per-volume internal directory (default `.s3vol`).
    pub internal_dir: Option<String>,
    /// Age after which idle multipart uploads are swept, e.g. `7d` (default 7 days).
    pub multipart_max_age: Option<String>,
    /// `uid:gid` for new files and directories.
    pub owner: Option<String>,
    /// Octal mode of new files (default `0644`).
    pub file_mode: Option<String>,
    /// Octal mode of new directories (default `0755`).
    pub dir_mode: Option<String>,
    /// Explicit volumes.
    #[serde(default)]
    pub volume: Vec<RawVolume>,
    /// Settings for every volume discovered under `volumes_root`.
    pub volume_defaults: Option<RawVolumeSettings>,
}

/// A TOML value given as one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// One `[[volume]]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    /// Bucket name (S3 rules: 3–63 chars of `a-z 0-9 - .`).
    pub name: String,
    /// The mounted directory.
    pub path: PathBuf,
    #[serde(flatten)]
    pub settings: RawVolumeSettings,
}

/// Per-volume settings (in `[[volume]]` or `[volume_defaults]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolumeSettings {
    /// fsync data and directories before acknowledging a write (default true).
    pub fsync: Option<bool>,
    /// Refuse to serve unless the path is a mount point (default false).
    pub require_mount: Option<bool>,
    /// Anonymous GET, HEAD and list on this volume, nothing else (default false).
    pub public: Option<bool>,
    /// Bytes the volume's files may use, e.g. `500GiB`, for volumes that share a file system.
    pub quota: Option<String>,
    /// Largest object (or part) accepted, e.g. `4TiB`.
    pub max_object_size: Option<String>,
    /// Largest multipart part accepted, e.g. `5GiB` (the default, as S3).
    pub max_part_size: Option<String>,
    /// Smallest multipart part but the last, judged at CompleteMultipartUpload, e.g.
    /// `5MiB` (the default, as S3); `0` allows any size.
    pub min_part_size: Option<String>,
    /// Content types accepted on PUT, e.g. `["image/png"]`; empty or absent: any.
    pub allowed_content_types: Option<Vec<String>>,
    /// How often the volume is scanned again (object counts, and the usage a quota is
    /// judged on), from the end of one scan to the start of the next, e.g. `10m` (default;
    /// pods write directly, so s3vol's own bookkeeping drifts between scans).
    pub scan_interval: Option<String>,
    /// The older name of `scan_interval` (accepted; not both).
    pub usage_rescan: Option<String>,
    /// Directory entries the scan reads per second at most (default 10000); 0: no limit.
    pub scan_rate: Option<u64>,
    /// CORS rules (`[[volume.cors]]`), first match wins.
    pub cors: Option<Vec<RawCorsRule>>,
}

/// Checked settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The admin listener, when configured.
    pub admin_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Base domains for virtual-hosted-style addressing (checked, lower case; may be empty).
    pub domains: Vec<String>,
    pub region: String,
    pub strict_region: bool,
    /// SigV2 (header and presigned) accepted.
    pub sigv2: bool,
    /// The credentials file; `None` only for the embedded default (dev key generated).
    pub credentials: Option<PathBuf>,
    /// Seconds between two looks at the credentials file for a change; 0: SIGHUP only.
    pub credentials_check_secs: u64,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Explicit volumes: name, path, settings.
    pub volumes: Vec<(String, PathBuf, VolumeSettings)>,
    pub volumes_root: Option<(PathBuf, VolumeSettings)>,
    /// Multipart uploads idle for longer than this (seconds) are removed by the sweep.
    pub multipart_max_age_secs: u64,
    /// Volumes open to anonymous reads.
    pub public: PublicVolumes,
    /// Each volume's CORS rules.
    pub cors: CorsRules,
}

/// A base domain for virtual-hosted requests: dot-separated labels of letters, digits and
/// `-` (1–63 bytes each, not starting or ending with `-`; RFC 1035 section 2.3.1 and RFC
/// 1123 section 2.1), at most 253 bytes, not an IP address, no port.
pub fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.parse::<std::net::IpAddr>().is_err()
        && d.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl RawConfig {
    /// Reads and parses a config file. Errors name the file and the TOML problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// True when nothing names a volume or credentials: the embedded default applies.
    pub fn is_empty_of_volumes(&self) -> bool {
        self.volume.is_empty() && self.volumes_root.is_none() && self.credentials.is_none()
    }

    /// Turns raw settings into checked [`Settings`]; every problem is listed, one per line.
    pub fn validate(&self) -> Result<Settings, String> {
        let mut errs = Vec::new();
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| errs.push(format!("listen: {listen:?} is not an ip:port address")))
            .ok();
        let admin_listen = self.admin_listen.as_deref().and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| errs.push(format!("admin_listen: {a:?} is not an ip:port address")))
                .ok()
        });
        if let (Some(a), Some(l)) = (admin_listen, listen)
            && a == l
            && a.port() != 0
        {
            errs.push(format!("admin_listen: {a} is also the S3 listen address"));
        }
        let log_format = match self.log_format.as_deref().map(str::parse::<LogFormat>) {
            None => LogFormat::Text,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                errs.push(format!("log_format: {e}"));
                LogFormat::Text
            }
        };
        let mut duration = |field: &str, v: &Option<String>, default: std::time::Duration| match v {
            None => default,
            Some(s) => match parse_duration_secs(s) {
                Some(n) if n > 0 => std::time::Duration::from_secs(n),
                _ => {
                    errs.push(format!("{field}: {s:?} is not a positive duration like 30s, 5m or 1h"));
                    default
                }
            },
        };
        let mut limits = Limits {
            shutdown_grace: duration("shutdown_grace", &self.shutdown_grace, limits::DEFAULT_SHUTDOWN_GRACE),
            header_read_timeout: duration(
                "header_read_timeout",
                &self.header_read_timeout,
                limits::DEFAULT_HEADER_READ_TIMEOUT,
            ),
            idle_timeout: duration("idle_timeout", &self.idle_timeout, limits::DEFAULT_IDLE_TIMEOUT),
            max_connections: self.max_connections.unwrap_or(limits::DEFAULT_MAX_CONNECTIONS),
            max_body_time: duration("max_body_time", &self.max_body_time, limits::DEFAULT_MAX_BODY_TIME),
            unauthenticated_body_time: duration(
                "unauthenticated_body_time",
                &self.unauthenticated_body_time,
                limits::DEFAULT_UNAUTHENTICATED_BODY_TIME,
            ),
            http2: self.http2.unwrap_or(false),
            min_body_rate: limits::DEFAULT_MIN_BODY_RATE,
            max_chunk_size: crate::guard::chunked::DEFAULT_MAX_CHUNK_SIZE,
            max_form_upload_size: crate::guard::DEFAULT_MAX_FORM_UPLOAD,
            max_form_uploads: self.max_form_uploads.unwrap_or(crate::guard::DEFAULT_MAX_FORM_UPLOADS),
            volume_timeout: duration("volume_timeout", &self.volume_timeout, limits::DEFAULT_VOLUME_TIMEOUT),
        };
        if limits.max_connections == 0 {
            errs.push("max_connections: must be at least 1".into());
        }
        if limits.max_form_uploads == 0 {
            errs.push("max_form_uploads: must be at least 1".into());
        }
        let mut edge_size = |field: &str, v: &Option<String>, default: u64, min: u64| match v {
            None => default,
            Some(s) => match parse_size(s) {
                Some(n) if n >= min => n,
                _ => {
                    errs.push(format!("{field}: {s:?} is not a size of at least {min} bytes, like 8MiB"));
                    default
                }
            },
        };
        limits.min_body_rate = edge_size("min_body_rate", &self.min_body_rate, limits::DEFAULT_MIN_BODY_RATE, 0);
        // A chunk cap below what SDKs send (64 KiB) would refuse every aws-chunked upload.
        limits.max_chunk_size =
            edge_size("max_chunk_size", &self.max_chunk_size, crate::guard::chunked::DEFAULT_MAX_CHUNK_SIZE, 64 << 10);
        limits.max_form_upload_size =
            edge_size("max_form_upload_size", &self.max_form_upload_size, crate::guard::DEFAULT_MAX_FORM_UPLOAD, 1);
        let internal_dir = self.internal_dir.clone().unwrap_or_else(|| ".s3vol".into());
        if internal_dir.is_empty() || internal_dir.contains('/') || internal_dir == "." || internal_dir == ".." {
            errs.push(format!("internal_dir: {internal_dir:?} must be a single directory name"));
        }
        let check = self.credentials_check.as_deref().unwrap_or(DEFAULT_CREDENTIALS_CHECK);
        let credentials_check_secs = parse_duration_secs(check).unwrap_or_else(|| {
            errs.push(format!("credentials_check: {check:?} is not a duration like 2s (0s: SIGHUP only)"));
            2
        });
        let multipart_max_age_secs = match &self.multipart_max_age {
            None => DEFAULT_MULTIPART_MAX_AGE_SECS,
            Some(age) => match parse_duration_secs(age) {
                Some(secs) if secs > 0 => secs,
                _ => {
                    errs.push(format!("multipart_max_age: {age:?} is not a duration like 7d, 12h, 30m or 3600s"));
                    DEFAULT_MULTIPART_MAX_AGE_SECS
                }
            },
        };
        let owner = self.owner.as_deref().and_then(|o| {
            let parsed = o.split_once(':').and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
            if parsed.is_none() {
                errs.push(format!("owner: {o:?} must be uid:gid (numbers)"));
            }
            parsed
        });
        let mut mode = |field: &str, v: &Option<String>, default: u32| match v {
            None => default,
            Some(s) => match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o7777 => m,
                _ => {
                    errs.push(format!("{field}: {s:?} must be an octal mode like 0644"));
                    default
                }
            },
        };
        let file_mode = mode("file_mode", &self.file_mode, 0o644);
        let dir_mode = mode("dir_mode", &self.dir_mode, 0o755);
        let base = VolumeSettings {
            internal_dir,
            fsync: true,
            owner,
            file_mode,
            dir_mode,
            require_mount: false,
            limits: VolumeLimits::default(),
            max_part_size: crate::store::volume::DEFAULT_MAX_PART_SIZE,
            min_part_size: crate::store::part_size::DEFAULT_MIN_PART_SIZE,
        };
        let apply = |raw: &RawVolumeSettings, errs: &mut Vec<String>, what: &str| {
            let mut size = |field: &str, v: &Option<String>| {
                v.as_ref().and_then(|v| {
                    let n = parse_size(v);
                    if n.is_none() {
                        errs.push(format!("{what}: {field} {v:?} is not a size like 500GiB"));
                    }
                    n
                })
            };
            let quota = size("quota", &raw.quota);
            let max_object_size = size("max_object_size", &raw.max_object_size);
            let max_part_size = size("max_part_size", &raw.max_part_size).unwrap_or(base.max_part_size);
            // Unset, the minimum follows a lower maximum, so that a config from before
            // min_part_size existed (max_part_size under 5 MiB) still starts.
            let min_part_size =
                size("min_part_size", &raw.min_part_size).unwrap_or(base.min_part_size.min(max_part_size));
            if min_part_size > max_part_size {
                errs.push(format!(
                    "{what}: min_part_size ({min_part_size} bytes) is larger than max_part_size ({max_part_size} bytes)"
                ));
            }
            if raw.scan_interval.is_some() && raw.usage_rescan.is_some() {
                errs.push(format!("{what}: scan_interval and usage_rescan (its older name) are both set"));
            }
            let rescan = raw.scan_interval.as_deref().or(raw.usage_rescan.as_deref()).unwrap_or(DEFAULT_USAGE_RESCAN);
            let rescan_secs = parse_duration_secs(rescan).unwrap_or_else(|| {
                errs.push(format!("{what}: scan_interval {rescan:?} is not a duration like 10m"));
                600
            });
            let limits = VolumeLimits {
                quota,
                max_object_size,
                allowed_content_types: raw.allowed_content_types.clone().unwrap_or_default(),
                rescan_secs,
                scan_rate: raw.scan_rate.unwrap_or(DEFAULT_SCAN_RATE),
            };
            VolumeSettings {
                fsync: raw.fsync.unwrap_or(true),
                require_mount: raw.require_mount.unwrap_or(false),
                limits,
                max_part_size,
                min_part_size,
                ..base.clone()
            }
        };
        let cors_rules = |raw: &RawVolumeSettings, errs: &mut Vec<String>, what: &str| {
            let mut rules = Vec::new();
            for (i, r) in raw.cors.iter().flatten().enumerate() {
                match CorsRule::from_raw(r) {
                    Ok(rule) => rules.push(rule),
                    Err(e) => errs.push(format!("{what}: cors rule {}: {e}", i + 1)),
                }
            }
            rules
        };
        let mut public = Vec::new();
        let mut cors = std::collections::HashMap::new();
        let mut volumes = Vec::new();
        let mut names = std::collections::HashSet::new();
        for v in &self.volume {
            let what = format!("volume {:?}", v.name);
            if !BucketName::is_valid(&v.name) {
                errs.push(format!("{what}: not a valid bucket name (3-63 chars of a-z, 0-9, '-', '.')"));
            }
            if !names.insert(v.name.clone()) {
                errs.push(format!("{what}: defined twice"));
            }
            if !v.path.is_absolute() && !v.path.starts_with(".") && v.path.components().count() == 0 {
                errs.push(format!("{what}: path is empty"));
            }
            let s = apply(&v.settings, &mut errs, &what);
            if v.settings.public == Some(true) {
                public.push(v.name.clone());
            }
            cors.insert(v.name.clone(), cors_rules(&v.settings, &mut errs, &what));
            volumes.push((v.name.clone(), v.path.clone(), s));
        }
        let mut defaults_public = false;
        let mut default_cors = Vec::new();
        let volumes_root = self.volumes_root.as_ref().map(|root| {
            let d = self.volume_defaults.clone().unwrap_or_default();
            defaults_public = d.public == Some(true);
            default_cors = cors_rules(&d, &mut errs, "volume_defaults");
            (root.clone(), apply(&d, &mut errs, "volume_defaults"))
        });
        if volumes.is_empty() && volumes_root.is_none() {
            errs.push("no volumes: give [[volume]] entries, --volume NAME=PATH, or volumes_root".into());
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                errs.push("tls_cert and tls_key go together".into());
                None
            }
        };
        if self.credentials.is_none() {
            errs.push("credentials: no credentials file given".into());
        }
        let domains: Vec<String> = self
            .domain
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default()
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        for (i, d) in domains.iter().enumerate() {
            if !valid_domain(d) {
                errs.push(format!("domain: {d:?} is not a domain name like s3.example.com (no port, not an IP)"));
            } else if domains[..i].contains(d) {
                errs.push(format!("domain: {d:?} is given twice"));
            }
        }
        let region = self.region.clone().unwrap_or_else(|| DEFAULT_REGION.into());
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            errs.push(format!("region: {region:?} is not a region name"));
        }
        if !errs.is_empty() {
            return Err(errs.join("\n"));
        }
        Ok(Settings {
            listen: listen.expect("checked above"),
            admin_listen,
            log_format,
            limits,
            domains,
            region,
            strict_region: self.strict_region.unwrap_or(false),
            sigv2: self.sigv2.unwrap_or(true),
            credentials: self.credentials.clone(),
            credentials_check_secs,
            tls,
            volumes,
            volumes_root,
            multipart_max_age_secs,
            public: PublicVolumes::new(public, defaults_public),
            cors: CorsRules::new(cors, default_cors),
        })
    }
}

/// Parses a size: bytes, or a number with B/KiB/MiB/GiB/TiB (also KB/MB/GB/TB as powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        "TiB" | "TB" | "T" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a duration: `<n>s`, `<n>m`, `<n>h` or `<n>d`; returns seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_settings_and_their_defaults() {
        let raw: RawConfig = toml::from_str(
            r#"
            credentials = "/c"
            [[volume]]
            name = "vol-a"
            path = "/tmp"
            "#,
        )
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!((s.admin_listen, s.log_format, s.limits), (None, LogFormat::Text, Limits::default()));
        let raw: RawConfig = toml::from_str(
            r#"
            admin_listen = "127.0.0.1:9001"
            log_format = "json"
            shutdown_grace = "2m"
            header_read_timeout = "10s"
            idle_timeout = "90s"
            max_connections = 100
            min_body_rate = "1KiB"
            max_body_time = "2h"
            unauthenticated_body_time = "30s"
            http2 = true
            max_chunk_size = "1MiB"
            max_form_upload_size = "5MiB"
            max_form_uploads = 2
            sigv2 = false
            credentials = "/c"
            [[volume]]
            name = "vol-a"
            path = "/tmp"
            quota = "1GiB"
            "#,
        )
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.admin_listen, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Json);
        let secs = std::time::Duration::from_secs;
        assert_eq!(
            s.limits,
            Limits {
                shutdown_grace: secs(120),
                header_read_timeout: secs(10),
                idle_timeout: secs(90),
                max_connections: 100,
                min_body_rate: 1024,
                max_body_time: secs(7200),
                unauthenticated_body_time: secs(30),
                http2: true,
                max_chunk_size: 1 << 20,
                max_form_upload_size: 5 << 20,
                max_form_uploads: 2,
                volume_timeout: limits::DEFAULT_VOLUME_TIMEOUT,
            }
        );
        assert!(!s.sigv2);
        let bad: RawConfig =
            toml::from_str("credentials = '/c'\nmax_chunk_size = '1KiB'\n[[volume]]\nname = 'vol-a'\npath = '/tmp'")
                .unwrap();
        assert!(bad.validate().unwrap_err().contains("max_chunk_size"));
        assert_eq!(s.volumes[0].2.limits.quota, Some(1 << 30));
    }

    #[test]
    fn domains() {
        for ok in ["s3.example.com", "localhost", "s3-eu.x.y", "a"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in ["", "s3.example.com.", ".x", "a..b", "-a.b", "a_b.c", "127.0.0.1", "x:9000", "*.x"] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("500GiB"), Some(500 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("4TiB"), Some(4 << 40));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_duration_secs("7d"), Some(7 * 86400));
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("7w"), None);
    }

    #[test]
    fn validate_reports_every_problem() {
        let raw: RawConfig = toml::from_str(
            r#"
            listen = "nowhere"
            owner = "me"
            [[volume]]
            name = "Bad_Name"
            path = "/tmp"
            "#,
        )
        .unwrap();
        let err = raw.validate().unwrap_err();
        for needle in ["listen", "owner", "Bad_Name", "credentials"] {
            assert!(err.contains(needle), "{err}");
        }
        let raw: RawConfig = toml::from_str(
            r#"
            admin_listen = "127.0.0.1:9000"
            log_format = "xml"
            shutdown_grace = "soon"
            max_connections = 0
            credentials = "/c"
            [[volume]]
            name = "vol-a"
            path = "/tmp"
            "#,
        )
        .unwrap();
        let err = raw.validate().unwrap_err();
        for needle in ["admin_listen", "log_format", "shutdown_grace", "max_connections"] {
            assert!(err.contains(needle), "{err}");
        }
        assert!(toml::from_str::<RawConfig>("bogus = 1").unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn public_volumes_and_cors_rules() {
        let raw: RawConfig = toml::from_str(
            r#"
            credentials = "/dev/null"
            [[volume]]
            name = "pub"
            path = "/tmp"
            public = true
            [[volume.cors]]
            allowed_origins = ["http://app.test"]
            allowed_methods = ["GET", "PUT"]
            allowed_headers = ["*"]
            expose_headers = ["ETag"]
            max_age_seconds = 60
            [[volume]]
            name = "private"
            path = "/tmp"
            "#,
        )
        .unwrap();
        let s = raw.validate().unwrap();
        assert!(s.public.contains("pub") && !s.public.contains("private"));
        assert!(!s.cors.is_empty());
        let bad: RawConfig = toml::from_str(
            r#"
            credentials = "/dev/null"
            [[volume]]
            name = "vol"
            path = "/tmp"
            [[volume.cors]]
            allowed_origins = ["*"]
            allowed_methods = ["PATCH"]
            "#,
        )
        .unwrap();
        let err = bad.validate().unwrap_err();
        assert!(err.contains("volume \"vol\": cors rule 1") && err.contains("PATCH"), "{err}");
        let unknown =
            "[[volume]]\nname='v'\npath='/'\n[[volume.cors]]\nallowed_origins=['*']\nallowed_methods=['GET']\nfly=1\n";
        assert!(toml::from_str::<RawConfig>(unknown).is_err());
    }

    #[test]
    fn domain_is_one_or_many_and_checked() {
        let base = "credentials = \"/c\"\n[[volume]]\nname = \"vol-a\"\npath = \"/tmp\"\n";
        let parse = |d: &str| toml::from_str::<RawConfig>(&format!("{d}\n{base}")).unwrap().validate();
        assert_eq!(parse("").unwrap().domains, Vec::<String>::new());
        assert_eq!(parse("domain = \"S3.Example.com\"").unwrap().domains, ["s3.example.com"]);
        assert_eq!(parse("domain = [\"s3.a.com\", \"s3.b.com\"]").unwrap().domains, ["s3.a.com", "s3.b.com"]);
        for bad in ["domain = \"s3.example.com:9000\"", "domain = \"127.0.0.1\"", "domain = [\"a.b\", \"A.b\"]"] {
            assert!(parse(bad).unwrap_err().contains("domain"), "{bad}");
        }
    }
}
