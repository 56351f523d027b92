//! The admin listener (`admin_listen`): plain HTTP/1.1 for operators and monitoring, apart
//! from the S3 port, with no authentication (bind it to loopback or a management network).
//!
//! | path       | answer |
//! |------------|--------|
//! | `/health`  | `200 ok`: the process runs and answers (liveness) |
//! | `/ready`   | `200 ready` when every volume is served and writable, else `503` naming the volumes that are not |
//! | `/metrics` | Prometheus/OpenMetrics text ([`crate::metrics`]) |
//! | `/status`  | JSON `{"volumes": [VolumeReport...]}` ([`VolumeReport`]: the store's view of each volume and this daemon's writes in flight) |
//!
//! Only GET and HEAD; anything else is 405, an unknown path 404.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::{self, Metrics};
use crate::store::Volumes;
use crate::store::status::{self, VolumeStatus};
use crate::store::volume::VolumeState;

/// How long a volume check (statvfs, probe file) may take before `/ready` and `/status`
/// give up: a hung network mount must not hang the health checks too.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub volumes: Arc<Volumes>,
    pub metrics: Arc<Metrics>,
    /// Volumes whose status check is running now (at most one per volume).
    pub busy: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The body of `/status`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub volumes: Vec<VolumeReport>,
}

/// One volume in `/status` (the JSON shape is a contract: docs/CONTRACT.md).
#[derive(Debug, Serialize)]
pub struct VolumeReport {
    /// The bucket name.
    pub name: String,
    /// The configured directory.
    pub path: String,
    /// Served (true) or answering 503 (false).
    pub online: bool,
    /// Why the volume is not served (only when `online` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The directory is a mount point now.
    pub mounted: bool,
    /// The file system is mounted read-only.
    pub read_only: bool,
    /// A probe file could be made and removed just now.
    pub writable: bool,
    /// `{"total", "free", "used"}` in bytes; null when statvfs failed.
    pub capacity: Option<CapacityReport>,
    /// The configured quota in bytes, if any.
    pub quota: Option<u64>,
    /// Multipart uploads staged on the volume (by every daemon sharing it).
    pub multipart_uploads: Option<u64>,
    /// Objects as ListObjects lists them: the last scan's count kept current by this
    /// daemon's writes and deletes; null until the first scan completes.
    pub objects: Option<u64>,
    /// Bytes of those objects; null until the first scan completes.
    pub bytes: Option<u64>,
    /// When the last scan completed, RFC 3339 UTC; null before the first.
    pub last_scan: Option<String>,
    /// The scan's progress.
    pub scan: Option<ScanReport>,
    /// Uploads into this volume running in this daemon now.
    pub writes_in_flight: i64,
}

/// File-system sizes of a volume, bytes.
#[derive(Debug, Serialize)]
pub struct CapacityReport {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// The volume scan's progress in `/status`.
#[derive(Debug, Serialize)]
pub struct ScanReport {
    /// A pass is running now.
    pub running: bool,
    /// Directory entries the running pass has read (0 when none runs).
    pub entries_scanned: u64,
    /// Directory entries the last completed pass read.
    pub last_entries: u64,
    /// How long the last completed pass took, seconds.
    pub last_duration_seconds: Option<f64>,
}

impl VolumeReport {
    /// The JSON view of `st`, with this daemon's `writes_in_flight`.
    pub fn new(st: &VolumeStatus, writes_in_flight: i64) -> Self {
        let census = st.census.unwrap_or_default();
        let rfc3339 = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        };
        Self {
            name: st.name.clone(),
            path: st.path.clone(),
            online: st.online,
            reason: st.reason.clone(),
            mounted: st.mounted,
            read_only: st.read_only,
            writable: st.writable,
            capacity: st.capacity.map(|c| CapacityReport { total: c.total, free: c.free, used: c.used }),
            quota: st.quota,
            multipart_uploads: st.multipart_uploads,
            objects: census.objects,
            bytes: census.bytes,
            last_scan: census.last_completed.and_then(rfc3339),
            scan: st.census.map(|c| ScanReport {
                running: c.running,
                entries_scanned: c.entries_scanned,
                last_entries: c.last_entries,
                last_duration_seconds: c.last_duration_ms.map(|ms| ms as f64 / 1000.0),
            }),
            writes_in_flight,
        }
    }
}

impl Admin {
    /// Every volume's status; None when the list of volumes could not be had within
    /// [`CHECK_TIMEOUT`].
    ///
    /// Each volume is checked in its own blocking task with its own [`CHECK_TIMEOUT`], and
    /// at most one such task per volume runs at a time: a volume whose file system hangs is
    /// reported offline ("does not answer") while the others are reported as they are.
    pub async fn volume_status(&self) -> Option<Vec<VolumeStatus>> {
        let volumes = self.volumes.clone();
        let list = match tokio::time::timeout(CHECK_TIMEOUT, tokio::task::spawn_blocking(move || volumes.all())).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                warn!(error = %e, "volume status check failed");
                return None;
            }
            Err(_) => {
                warn!(timeout = ?CHECK_TIMEOUT, "listing the volumes timed out (a hung volumes_root?)");
                return None;
            }
        };
        let checks = list.into_iter().map(|(name, state)| {
            let busy = self.busy.clone();
            async move {
                let path = match &state {
                    VolumeState::Online(v) => v.path.display().to_string(),
                    VolumeState::Unavailable(_, p) => p.display().to_string(),
                };
                if !busy.lock().unwrap().insert(name.clone()) {
                    return status::unanswered(&name, &path); // the last check has not returned
                }
                let n = name.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let st = status::of_state(&n, &state);
                    busy.lock().unwrap().remove(&n);
                    st
                });
                match tokio::time::timeout(CHECK_TIMEOUT, task).await {
                    Ok(Ok(st)) => st,
                    Ok(Err(e)) => {
                        warn!(volume = %name, error = %e, "volume status check failed");
                        status::unanswered(&name, &path)
                    }
                    Err(_) => {
                        warn!(volume = %name, timeout = ?CHECK_TIMEOUT, "volume status check timed out (a hung mount?)");
                        status::unanswered(&name, &path)
                    }
                }
            }
        });
        Some(futures::future::join_all(checks).await)
    }

    /// Answers one admin request.
    pub async fn respond(&self, method: &Method, path: &str) -> Response<s3s::Body> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        }
        match path {
            "/health" => text(StatusCode::OK, "ok\n".into()),
            "/ready" => match self.volume_status().await {
                None => text(StatusCode::SERVICE_UNAVAILABLE, "volume checks timed out\n".into()),
                Some(all) => {
                    let not_ready: Vec<String> = all
                        .iter()
                        .filter(|v| !v.ready())
                        .map(|v| {
                            let why = if !v.online {
                                "unavailable"
                            } else if v.read_only {
                                "read-only"
                            } else {
                                "not writable"
                            };
                            format!("{}: {why}\n", v.name)
                        })
                        .collect();
                    if all.is_empty() {
                        text(StatusCode::SERVICE_UNAVAILABLE, "no volumes\n".into())
                    } else if not_ready.is_empty() {
                        text(StatusCode::OK, "ready\n".into())
                    } else {
                        text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{}", not_ready.concat()))
                    }
                }
            },
            "/metrics" => {
                if let Some(all) = self.volume_status().await {
                    self.metrics.set_volumes(&all);
                }
                body(StatusCode::OK, metrics::CONTENT_TYPE, self.metrics.encode())
            }
            "/status" => match self.volume_status().await {
                None => text(StatusCode::SERVICE_UNAVAILABLE, "volume checks timed out\n".into()),
                Some(all) => {
                    let volumes =
                        all.iter().map(|v| VolumeReport::new(v, self.metrics.writes_in_flight(&v.name))).collect();
                    let json = serde_json::to_string_pretty(&StatusReport { volumes }).expect("status serializes");
                    body(StatusCode::OK, "application/json", json + "\n")
                }
            },
            _ => text(StatusCode::NOT_FOUND, "not found: /health, /ready, /metrics, /status\n".into()),
        }
    }
}

fn text(status: StatusCode, s: String) -> Response<s3s::Body> {
    body(status, "text/plain; charset=utf-8", s)
}

fn body(status: StatusCode, content_type: &str, s: String) -> Response<s3s::Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(s3s::Body::from(s))
        .expect("static response parts are valid")
}

/// Serves the admin endpoints on `listener` until `shutdown` completes. Admin requests
/// are short, so connections still open then are simply dropped.
pub async fn run(listener: TcpListener, admin: Admin, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: http::Request<Incoming>| {
                let admin = admin.clone();
                async move {
                    let mut resp = admin.respond(req.method(), req.uri().path()).await;
                    if req.method() == Method::HEAD {
                        *resp.body_mut() = s3s::Body::empty();
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
            if let Err(e) = builder.serve_connection(TokioIo::new(socket), handler).await {
                debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}
