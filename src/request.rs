//! What one S3 request was, for its log line and its metrics.
//!
//! The server creates a [`RequestInfo`] per request and puts it into the request's
//! extensions; the access hook in `auth` fills in what only it knows (operation, access
//! key *name*, volume, key) through [`identify`]. The request body is wrapped in
//! [`RequestBody`] (counts bytes, fails a body that stalls) and the response body in
//! [`ResponseBody`], which logs and counts the request once when the body is finished or
//! dropped, so the duration and the bytes out cover the whole transfer.
//!
//! Never recorded: a secret, the Authorization header, or a query string (a presigned URL
//! carries its signature there).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant as TokioInstant, Sleep};
use tracing::info;

use crate::limits::RATE_WINDOW;
use crate::metrics::Metrics;

/// An error type any body error converts into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Operations that write into a volume: counted in `s3vol_volume_writes_in_flight`.
pub const WRITE_OPS: [&str; 5] = ["PutObject", "UploadPart", "CopyObject", "UploadPartCopy", "CompleteMultipartUpload"];

#[derive(Debug)]
struct Ident {
    op: String,
    key_name: Option<String>,
    volume: Option<String>,
    key: Option<String>,
}

/// The record of one request, shared by the server, the access hook and the body wrappers.
#[derive(Debug)]
pub struct RequestInfo {
    /// The `x-amz-request-id` (16 upper-case hex digits).
    pub id: String,
    method: http::Method,
    peer: std::net::SocketAddr,
    start: Instant,
    metrics: Arc<Metrics>,
    ident: OnceLock<Ident>,
    /// The bucket the request names ([`crate::s3::host::BucketResolver`]), logged when
    /// the access hook never ran (a CORS preflight, a refusal before `s3s`).
    bucket: OnceLock<String>,
    /// The upload counted in the volume's writes-in-flight gauge, if any.
    writing: OnceLock<String>,
    status: std::sync::atomic::AtomicU16,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    finished: AtomicBool,
    /// The access hook allowed the request (its body is then on the longer deadline).
    authorized: AtomicBool,
}

impl RequestInfo {
    /// A request that just arrived (counted as in flight from now on).
    pub fn new(id: String, method: http::Method, peer: std::net::SocketAddr, metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.request_started();
        Arc::new(Self {
            id,
            method,
            peer,
            start: Instant::now(),
            metrics,
            ident: OnceLock::new(),
            bucket: OnceLock::new(),
            writing: OnceLock::new(),
            status: 0.into(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            authorized: AtomicBool::new(false),
        })
    }

    /// Records the bucket the request names, as routing decided it.
    pub fn set_bucket(&self, bucket: Option<&str>) {
        if let Some(b) = bucket {
            let _ = self.bucket.set(b.to_owned());
        }
    }

    /// Records the response status (before the body is sent).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Logs the request and counts it in the metrics; only the first call does anything.
    pub fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let elapsed = self.start.elapsed();
        let status = self.status.load(Ordering::Relaxed);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let ident = self.ident.get();
        let op = ident.map_or("-", |i| i.op.as_str());
        if let Some(volume) = self.writing.get() {
            self.metrics.write_in_flight(volume, -1);
        }
        self.metrics.request_finished(op, status, elapsed.as_secs_f64(), bytes_in, bytes_out);
        let field = |f: fn(&Ident) -> &Option<String>| ident.and_then(|i| f(i).as_deref()).unwrap_or("-");
        info!(
            request_id = %self.id,
            peer = %self.peer,
            method = %self.method,
            access_key = field(|i| &i.key_name),
            op,
            volume = ident.and_then(|i| i.volume.as_deref()).or(self.bucket.get().map(String::as_str)).unwrap_or("-"),
            key = field(|i| &i.key),
            status,
            bytes_in,
            bytes_out,
            ms = elapsed.as_millis() as u64,
            "request"
        );
    }
}

/// Called by the access hook: the operation s3s resolved, the name of the access key
/// (None: anonymous or unknown key), and the volume and key the request names.
pub fn identify(ext: &http::Extensions, op: &str, key_name: Option<&str>, volume: Option<&str>, key: Option<&str>) {
    if let Some(info) = ext.get::<Arc<RequestInfo>>() {
        let _ = info.ident.set(Ident {
            op: op.to_owned(),
            key_name: key_name.map(str::to_owned),
            volume: volume.map(str::to_owned),
            key: key.map(str::to_owned),
        });
    }
}

/// Called by the access hook once a request is allowed: a write into a volume counts in
/// that volume's writes-in-flight gauge until the request finishes.
pub fn allowed(ext: &http::Extensions) {
    let Some(info) = ext.get::<Arc<RequestInfo>>() else { return };
    info.authorized.store(true, Ordering::Relaxed);
    let Some(ident) = info.ident.get() else { return };
    if let Some(volume) = &ident.volume
        && WRITE_OPS.contains(&ident.op.as_str())
        && info.writing.set(volume.clone()).is_ok()
    {
        info.metrics.write_in_flight(volume, 1);
    }
}

/// The limits one request body runs under (config keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Nothing received for this long while the server waits: cut.
    pub stall: Duration,
    /// Bytes per second averaged over [`RATE_WINDOW`] of waiting; 0: no check.
    pub min_rate: u64,
    /// The whole body within this, once the request is authorized.
    pub max_time: Duration,
    /// The whole body within this while the request is not yet authorized (a form upload).
    pub unauthenticated_time: Duration,
}

impl BodyLimits {
    /// The body limits of the listener's `limits`.
    pub fn of(l: &crate::limits::Limits) -> Self {
        Self {
            stall: l.idle_timeout,
            min_rate: l.min_body_rate,
            max_time: l.max_body_time,
            unauthenticated_time: l.unauthenticated_body_time,
        }
    }
}

/// A request body that counts its bytes and is cut when the client sends nothing for
/// `stall`, sends slower than `min_rate` while the server waits for it, or takes longer
/// than its deadline in all (shorter before the request is authorized): a slow or stuck
/// uploader cannot hold a request, a temp file and a connection slot for free.
pub struct RequestBody<B> {
    inner: B,
    info: Arc<RequestInfo>,
    limits: BodyLimits,
    started: TokioInstant,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the current wait for data began.
    waiting_since: Option<TokioInstant>,
    /// Time spent waiting for data, and bytes received, in the current rate window.
    waited: Duration,
    window_bytes: u64,
}

impl<B> RequestBody<B> {
    /// Wraps `inner`, counting into `info`.
    pub fn new(inner: B, info: Arc<RequestInfo>, limits: BodyLimits) -> Self {
        Self {
            inner,
            info,
            limits,
            started: TokioInstant::now(),
            timer: None,
            waiting_since: None,
            waited: Duration::ZERO,
            window_bytes: 0,
        }
    }

    /// The time by which the whole body must have arrived.
    fn deadline(&self) -> TokioInstant {
        let allowed = if self.info.authorized.load(Ordering::Relaxed) {
            self.limits.max_time
        } else {
            self.limits.unauthenticated_time
        };
        self.started + allowed
    }

    /// Accounts a frame of `n` bytes; an error when the window's rate was too low.
    fn arrived(&mut self, n: u64, now: TokioInstant) -> Result<(), BodyTooSlow> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now - since;
        }
        self.window_bytes += n;
        if self.waited >= RATE_WINDOW.min(self.limits.stall) {
            let needed = self.limits.min_rate.saturating_mul(self.waited.as_secs());
            if self.window_bytes < needed {
                return Err(BodyTooSlow::Rate(self.limits.min_rate));
            }
            self.waited = Duration::ZERO;
            self.window_bytes = 0;
        }
        Ok(())
    }
}

/// The error a stalled request body ends with. Its text starts with `RequestTimeout`,
/// which `s3::error::body_error` maps to S3's error of that name.
#[derive(Debug, thiserror::Error)]
#[error("RequestTimeout: the client sent no request body data for {0:?}")]
pub struct BodyStalled(pub Duration);

/// The error a too slow request body ends with.
#[derive(Debug, thiserror::Error)]
pub enum BodyTooSlow {
    #[error("RequestTimeout: the request body arrived slower than {0} bytes per second")]
    Rate(u64),
    #[error("RequestTimeout: the request body was not complete within {0:?}")]
    Deadline(Duration),
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                let now = TokioInstant::now();
                if let Some(Ok(frame)) = &r
                    && let Some(data) = frame.data_ref()
                {
                    let n = data.len() as u64;
                    this.info.bytes_in.fetch_add(n, Ordering::Relaxed);
                    if now > this.deadline() {
                        let allowed = this.deadline() - this.started;
                        return Poll::Ready(Some(Err(Box::new(BodyTooSlow::Deadline(allowed)))));
                    }
                    if this.limits.min_rate > 0
                        && let Err(e) = this.arrived(n, now)
                    {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                } else {
                    this.waiting_since = None;
                }
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = TokioInstant::now();
                this.waiting_since.get_or_insert(now);
                let stall_at = now + this.limits.stall;
                let deadline = this.deadline();
                let timer =
                    this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(stall_at.min(deadline))));
                if timer.as_mut().poll(cx).is_ready() {
                    this.timer = None;
                    let err: BoxError = if TokioInstant::now() >= deadline {
                        Box::new(BodyTooSlow::Deadline(deadline - this.started))
                    } else {
                        Box::new(BodyStalled(this.limits.stall))
                    };
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its bytes and finishes the request (log line, metrics)
/// at its end, or when hyper drops it (client gone, shutdown).
pub struct ResponseBody<B> {
    inner: B,
    info: Arc<RequestInfo>,
    /// Drop an XML declaration that starts a frame after the first (see
    /// [`ResponseBody::strip_late_xml_declaration`]).
    strip_late_decl: bool,
    /// Rewrites of XML frames s3s cannot write itself (see `s3::checksum`).
    rewrite_xml: Option<crate::s3::checksum::ExpandChecksumXml>,
    sent: bool,
    /// The request counts as in flight on its connection until the body is done.
    _active: Option<crate::limits::ActiveRequest>,
}

impl<B> ResponseBody<B> {
    /// Wraps `inner`; `info` must already carry the status.
    pub fn new(inner: B, info: Arc<RequestInfo>) -> Self {
        Self { inner, info, strip_late_decl: false, rewrite_xml: None, sent: false, _active: None }
    }

    /// Holds `active` (the connection's in-flight mark) until the body is dropped.
    pub fn holding(mut self, active: crate::limits::ActiveRequest) -> Self {
        self._active = Some(active);
        self
    }

    /// For CompleteMultipartUpload answered with keep-alive spaces: s3s 0.14.1 writes the
    /// XML declaration first and, when the assembly then fails, an `<Error>` document with
    /// a declaration of its own, which makes the body invalid XML that botocore cannot
    /// read. This drops a declaration that starts any frame after the first one.
    pub fn strip_late_xml_declaration(mut self) -> Self {
        self.strip_late_decl = true;
        self
    }

    /// Applies `rewrite` to each data frame (s3s writes an XML answer in one frame).
    pub fn rewriting_xml(mut self, rewrite: Option<crate::s3::checksum::ExpandChecksumXml>) -> Self {
        self.rewrite_xml = rewrite;
        self
    }
}

/// The length of a leading `<?xml ... ?>` declaration in `data`, if it has one.
fn xml_declaration_len(data: &[u8]) -> Option<usize> {
    if !data.starts_with(b"<?xml") {
        return None;
    }
    data.windows(2).position(|w| w == b"?>").map(|i| i + 2)
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let mut r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(rw) = this.rewrite_xml
            && let Poll::Ready(Some(Ok(frame))) = &mut r
            && let Some(data) = frame.data_mut()
            && let Some(new) = rw.rewrite(data)
        {
            *data = Bytes::from(new);
        }
        if this.strip_late_decl
            && let Poll::Ready(Some(Ok(frame))) = &mut r
            && let Some(data) = frame.data_mut()
        {
            if this.sent
                && let Some(n) = xml_declaration_len(data)
            {
                *data = data.slice(n..);
            }
            this.sent |= !data.is_empty();
        }
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.info.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => this.info.finish(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.rewrite_xml.is_some() {
            // A rewrite changes the length: the body goes out chunked.
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl<B> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        self.info.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn xml_declarations_are_found() {
        assert_eq!(xml_declaration_len(br#"<?xml version="1.0" encoding="UTF-8"?><Error/>"#), Some(38));
        assert_eq!(xml_declaration_len(b"   "), None);
        assert_eq!(xml_declaration_len(b"<Error/>"), None);
    }

    fn info() -> Arc<RequestInfo> {
        RequestInfo::new("ID".into(), http::Method::PUT, "127.0.0.1:1".parse().unwrap(), Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn bodies_count_bytes_and_finish_once() {
        let info = info();
        let mut ext = http::Extensions::new();
        ext.insert(info.clone());
        identify(&ext, "PutObject", Some("ci"), Some("vol-a"), Some("k"));
        allowed(&ext);
        assert_eq!(info.metrics.writes_in_flight("vol-a"), 1);
        let body = RequestBody::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            info.clone(),
            limits(Duration::from_secs(5)),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        info.set_status(200);
        let out = ResponseBody::new(http_body_util::Full::new(Bytes::from_static(b"abc")), info.clone());
        out.collect().await.unwrap();
        assert!(info.finished.load(Ordering::Relaxed));
        assert_eq!(info.metrics.writes_in_flight("vol-a"), 0);
        let text = info.metrics.encode();
        assert!(text.contains(r#"s3vol_requests_total{op="PutObject",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"s3vol_request_body_bytes_total{op="PutObject"} 5"#), "{text}");
        assert!(text.contains(r#"s3vol_response_body_bytes_total{op="PutObject"} 3"#), "{text}");
        assert!(text.contains("s3vol_requests_in_flight 0"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails() {
        let (_tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = http_body_util::StreamBody::new(rx);
        let body = RequestBody::new(stream, info(), limits(Duration::from_secs(3)));
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("no request body data"), "{err}");
    }

    fn limits(stall: Duration) -> BodyLimits {
        BodyLimits {
            stall,
            min_rate: 1000,
            max_time: Duration::from_secs(3600),
            unauthenticated_time: Duration::from_secs(60),
        }
    }

    /// A body that sends one byte every `every`, `n` times, then ends.
    fn trickle(every: Duration, n: usize) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let s = futures::stream::unfold(0usize, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        http_body_util::StreamBody::new(Box::pin(s))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_by_the_rate() {
        let info = info();
        info.authorized.store(true, Ordering::Relaxed);
        // One byte every 2 s never stalls for the 10 s idle limit, but is far below 1000 B/s.
        let body = RequestBody::new(trickle(Duration::from_secs(2), 100), info, limits(Duration::from_secs(10)));
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("slower than 1000 bytes per second"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unauthorized_body_has_the_short_deadline() {
        let mut l = limits(Duration::from_secs(30));
        l.min_rate = 0;
        let body = RequestBody::new(trickle(Duration::from_secs(5), 100), info(), l);
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("not complete within 60s"), "{err}");
        // Once authorized, the same body may take longer.
        let info = info();
        info.authorized.store(true, Ordering::Relaxed);
        let body = RequestBody::new(trickle(Duration::from_secs(5), 20), info, l);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 20);
    }
}
