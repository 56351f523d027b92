//! The daemon's Prometheus metrics (served by the admin listener's `/metrics`), kept in a
//! `prometheus-client` registry and encoded in the OpenMetrics text format.
//!
//! Request metrics are counted as requests finish ([`crate::request`]); per-volume gauges
//! are refreshed from a [`VolumeStatus`] snapshot just before each scrape, so a scrape
//! costs one `statvfs` and one directory read per volume. Names and label sets are a
//! contract with dashboards: see README.md "Operations".

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::store::status::VolumeStatus;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the request counter: the S3 operation (`-` when the request never got as
/// far as one, e.g. a bad signature) and the HTTP status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: String,
    pub status: u16,
}

/// Labels of the per-operation families.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

/// Labels of the per-volume gauges: the bucket name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabels {
    pub volume: String,
}

type HistogramFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

/// Every metric s3vol exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    bytes_in: Family<OpLabels, Counter>,
    bytes_out: Family<OpLabels, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    writes_in_flight: Family<VolumeLabels, Gauge>,
    volume_online: Family<VolumeLabels, Gauge>,
    volume_read_only: Family<VolumeLabels, Gauge>,
    volume_capacity: Family<VolumeLabels, Gauge>,
    volume_free: Family<VolumeLabels, Gauge>,
    volume_used: Family<VolumeLabels, Gauge>,
    volume_quota: Family<VolumeLabels, Gauge>,
    multipart_staged: Family<VolumeLabels, Gauge>,
    volume_objects: Family<VolumeLabels, Gauge>,
    volume_object_bytes: Family<VolumeLabels, Gauge>,
    scan_last_completed: Family<VolumeLabels, Gauge>,
    scan_last_duration: Family<VolumeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    scan_entries: Family<VolumeLabels, Gauge>,
    scan_running: Family<VolumeLabels, Gauge>,
    credentials_failures: Counter,
    credentials_keys: Gauge,
    credentials_last_success: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Request latency buckets: 5 ms doubling to about 164 s (16 buckets, then +Inf).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `s3vol_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("s3vol");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "S3 requests answered, by operation and HTTP status", requests.clone());
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from request head to the end of the response body, by operation",
            Unit::Seconds,
            duration.clone(),
        );
        let bytes_in = Family::<OpLabels, Counter>::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes received (as sent on the wire), by operation",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let bytes_out = Family::<OpLabels, Counter>::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent, by operation",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("requests_in_flight", "S3 requests being served now", in_flight.clone());
        let connections = Gauge::default();
        registry.register("connections", "Open client connections on the S3 listener", connections.clone());
        let writes_in_flight = Family::<VolumeLabels, Gauge>::default();
        registry.register(
            "volume_writes_in_flight",
            "Uploads (PutObject, UploadPart, CopyObject, UploadPartCopy, CompleteMultipartUpload) running now",
            writes_in_flight.clone(),
        );
        let mut volume = |name: &str, help: &str, unit: Option<Unit>| {
            let family = Family::<VolumeLabels, Gauge>::default();
            match unit {
                Some(u) => registry.register_with_unit(name, help, u, family.clone()),
                None => registry.register(name, help, family.clone()),
            }
            family
        };
        let volume_online = volume("volume_online", "1 when the volume is served, 0 when it answers 503", None);
        let volume_read_only = volume("volume_read_only", "1 when the volume's file system is read-only", None);
        let volume_capacity = volume("volume_capacity", "Size of the volume's file system", Some(Unit::Bytes));
        let volume_free =
            volume("volume_free", "Space available to s3vol on the volume (statvfs f_bavail)", Some(Unit::Bytes));
        let volume_used = volume("volume_used", "Space used on the volume's file system", Some(Unit::Bytes));
        let volume_quota =
            volume("volume_quota", "The volume's configured quota (absent when none)", Some(Unit::Bytes));
        let multipart_staged = volume(
            "multipart_uploads_staged",
            "Multipart uploads staged on the volume (started, not completed or aborted)",
            None,
        );
        let volume_objects = volume(
            "volume_objects",
            "Objects in the volume as ListObjects lists them (absent before the first scan)",
            None,
        );
        let volume_object_bytes =
            volume("volume_object", "Bytes of the volume's objects (absent before the first scan)", Some(Unit::Bytes));
        let scan_last_completed = volume(
            "volume_scan_last_completed_timestamp",
            "When the volume's last full scan completed, Unix time",
            Some(Unit::Seconds),
        );
        let scan_entries = volume(
            "volume_scan_entries",
            "Directory entries read so far by the volume scan running now (0 between scans)",
            None,
        );
        let scan_running = volume("volume_scan_running", "1 while a scan of the volume runs", None);
        let scan_last_duration = Family::<VolumeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "volume_scan_last_duration",
            "How long the volume's last full scan took",
            Unit::Seconds,
            scan_last_duration.clone(),
        );
        let credentials_failures = Counter::default();
        registry.register(
            "credentials_reload_failures",
            "Reloads of the credentials file that failed (the previous keys stayed in force)",
            credentials_failures.clone(),
        );
        let credentials_keys = Gauge::default();
        registry.register("credentials_keys", "Access keys in force", credentials_keys.clone());
        let credentials_last_success = Gauge::default();
        registry.register_with_unit(
            "credentials_last_success_timestamp",
            "When the credentials file was last loaded successfully, Unix time",
            Unit::Seconds,
            credentials_last_success.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            bytes_in,
            bytes_out,
            in_flight,
            connections,
            writes_in_flight,
            volume_online,
            volume_read_only,
            volume_capacity,
            volume_free,
            volume_used,
            volume_quota,
            multipart_staged,
            volume_objects,
            volume_object_bytes,
            scan_last_completed,
            scan_last_duration,
            scan_entries,
            scan_running,
            credentials_failures,
            credentials_keys,
            credentials_last_success,
        }
    }

    /// The credentials file was loaded: `keys` keys are in force since `at` (Unix seconds).
    pub fn credentials_loaded(&self, keys: usize, at: i64) {
        self.credentials_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.credentials_last_success.set(at);
    }

    /// A reload of the credentials file failed; the previous keys stay.
    pub fn credentials_failed(&self) {
        self.credentials_failures.inc();
    }

    /// A request began (before its operation is known).
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request finished: its response body was sent whole or the connection dropped it.
    pub fn request_finished(&self, op: &str, status: u16, seconds: f64, bytes_in: u64, bytes_out: u64) {
        self.in_flight.dec();
        let ol = OpLabels { op: op.to_owned() };
        self.requests.get_or_create(&RequestLabels { op: op.to_owned(), status }).inc();
        self.duration.get_or_create(&ol).observe(seconds);
        self.bytes_in.get_or_create(&ol).inc_by(bytes_in);
        self.bytes_out.get_or_create(&ol).inc_by(bytes_out);
    }

    /// A connection was accepted (+1) or closed (-1).
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// An upload into `volume` began (+1) or ended (-1).
    pub fn write_in_flight(&self, volume: &str, delta: i64) {
        self.writes_in_flight.get_or_create(&VolumeLabels { volume: volume.to_owned() }).inc_by(delta);
    }

    /// Uploads into `volume` running now.
    pub fn writes_in_flight(&self, volume: &str) -> i64 {
        self.writes_in_flight.get(&VolumeLabels { volume: volume.to_owned() }).map_or(0, |g| g.get())
    }

    /// Replaces the per-volume gauges with `volumes` (a volume that is gone disappears).
    pub fn set_volumes(&self, volumes: &[VolumeStatus]) {
        for f in [
            &self.volume_online,
            &self.volume_read_only,
            &self.volume_capacity,
            &self.volume_free,
            &self.volume_used,
            &self.volume_quota,
            &self.multipart_staged,
            &self.volume_objects,
            &self.volume_object_bytes,
            &self.scan_last_completed,
            &self.scan_entries,
            &self.scan_running,
        ] {
            f.clear();
        }
        self.scan_last_duration.clear();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for v in volumes {
            let l = VolumeLabels { volume: v.name.clone() };
            self.volume_online.get_or_create(&l).set(i64::from(v.online));
            self.volume_read_only.get_or_create(&l).set(i64::from(v.read_only));
            if let Some(c) = &v.capacity {
                self.volume_capacity.get_or_create(&l).set(clamp(c.total));
                self.volume_free.get_or_create(&l).set(clamp(c.free));
                self.volume_used.get_or_create(&l).set(clamp(c.used));
            }
            if let Some(q) = v.quota {
                self.volume_quota.get_or_create(&l).set(clamp(q));
            }
            if let Some(n) = v.multipart_uploads {
                self.multipart_staged.get_or_create(&l).set(clamp(n));
            }
            if let Some(c) = &v.census {
                if let (Some(n), Some(b)) = (c.objects, c.bytes) {
                    self.volume_objects.get_or_create(&l).set(clamp(n));
                    self.volume_object_bytes.get_or_create(&l).set(clamp(b));
                }
                if let Some(t) = c.last_completed {
                    self.scan_last_completed.get_or_create(&l).set(t);
                }
                if let Some(ms) = c.last_duration_ms {
                    self.scan_last_duration.get_or_create(&l).set(ms as f64 / 1000.0);
                }
                self.scan_entries.get_or_create(&l).set(clamp(c.entries_scanned));
                self.scan_running.get_or_create(&l).set(i64::from(c.running));
            }
        }
    }

    /// The OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
