//! The HTTP(S) server: accepts connections on a bound listener within the connection
//! limits, serves the S3 service with an `x-amz-request-id` on every response and one log
//! line per request ([`crate::request`]), answers CORS preflights and adds CORS headers
//! (rules in [`crate::cors`]), and stops gracefully when the shutdown future completes. The
//! TLS certificate is reloadable ([`ReloadableTls`]).
//!
//! `run` takes a bound listener and a shutdown future (as mini-redis does), so tests and
//! `main` drive the same code.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::S3Service;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::cors::{self, Preflight};
use crate::guard::chunked::ChunkGuard;
use crate::guard::{Guard, Refusal, form_policy};
use crate::limits::{ActiveRequest, Activity, Limits, MAX_HEAD_BUFFER, StallIo, TLS_HANDSHAKE_TIMEOUT};
use crate::metrics::Metrics;
use crate::request::{BodyLimits, RequestBody, RequestInfo, ResponseBody};
use crate::s3::complete_route::Routed;
use crate::s3::complete_xml::{CompleteBody, Held, StripBody, hold, listed_checksums};
use crate::s3::host::BucketResolver;
use crate::s3::post_object::{FormSniffer, PostForm, RequestOrigin, form_boundary};
use crate::store::volume::random_hex;

/// Loads a PEM certificate chain and private key into a TLS acceptor (HTTP/1.1 and h2).
///
/// Errors: unreadable files, no certificate, no key, or a key that does not match.
pub fn tls_acceptor(cert: &Path, key: &Path, http2: bool) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    cfg.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// What every connection of the S3 listener shares: the metrics, the limits and the guards.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Each volume's CORS rules, stored or configured (preflights and response headers).
    pub cors: Arc<crate::s3::bucket_cors::LiveCors>,
    /// The checks in front of `s3s` ([`crate::guard`]).
    pub guard: Arc<Guard>,
    /// Which bucket a request names: the same answer `s3s` routes by, for CORS and logs.
    pub buckets: BucketResolver,
}

/// The TLS certificate and key files and the acceptor made from them; [`reload`] swaps in
/// a new acceptor for new connections while open ones keep theirs.
///
/// [`reload`]: ReloadableTls::reload
#[derive(Clone)]
pub struct ReloadableTls {
    cert: PathBuf,
    key: PathBuf,
    http2: bool,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl ReloadableTls {
    /// Loads `cert` and `key` ([`tls_acceptor`]'s errors).
    pub fn load(cert: &Path, key: &Path, http2: bool) -> Result<Self, String> {
        let acceptor = tls_acceptor(cert, key, http2)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), http2, current: Arc::new(RwLock::new(acceptor)) })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again; on error the current certificate stays in force.
    pub fn reload(&self) -> Result<(), String> {
        let acceptor = tls_acceptor(&self.cert, &self.key, self.http2)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }
}

/// Serves `service` on `listener` until `shutdown` completes; then stops accepting (the
/// listener is closed), lets in-flight requests finish for up to `limits.shutdown_grace`,
/// and returns. Idle keep-alive connections are closed at once.
pub async fn run(
    listener: TcpListener,
    tls: Option<ReloadableTls>,
    service: S3Service,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let limits = opts.limits;
    let shared = Arc::new(Shared { svc: service, opts: opts.clone() });
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    if limits.http2 {
        // A peer that stops answering pings is dropped; streams per connection are bounded.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(64)
            .max_header_list_size(MAX_HEAD_BUFFER as u32);
    } else {
        // S3 speaks HTTP/1.1 only; h2c by prior knowledge would bypass every h1 timeout.
        builder = builder.http1_only();
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free connection slot first: beyond max_connections, clients wait in the backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses must not wait for a delayed ACK.
        let _ = socket.set_nodelay(true);
        let socket = StallIo::new(socket, limits.idle_timeout);
        let open = OpenConnection::new(slot, opts.metrics.clone());
        let activity = Activity::new();
        let idle = {
            let (activity, slots) = (activity.clone(), slots.clone());
            let max = limits.max_connections;
            activity.watch(limits.header_read_timeout, move || slots.available_permits() * 10 < max)
        };
        let shared = shared.clone();
        let https = tls.is_some();
        let handler = service_fn(move |req: http::Request<Incoming>| {
            let active = activity.begin();
            handle(shared.clone(), peer, https, req, active)
        });
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(socket), handler).into_owned());
                tokio::spawn(async move {
                    let _open = open;
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            debug!(%peer, error = %e, "connection ended with an error");
                        },
                        () = idle => debug!(%peer, "closed an idle connection"),
                    }
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _open = open;
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), handler).into_owned();
                    tokio::select! {
                        r = watcher.watch(conn) => if let Err(e) = r {
                            debug!(%peer, error = %e, "connection ended with an error");
                        },
                        () = idle => debug!(%peer, "closed an idle connection"),
                    }
                });
            }
        }
    }
    // Refuse new connections at once rather than leave them queued in the backlog.
    drop(listener);
    info!(grace = ?limits.shutdown_grace, "shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => warn!("grace period over; closing remaining connections"),
    }
}

/// True for a request with `Expect: 100-continue` and an empty body.
///
/// hyper sends `100 Continue` only when a handler reads the body, so an empty body never
/// gets one. botocore (boto/botocore#3755) then misreads the *next* response on that pooled
/// connection and stalls until its read timeout. Closing such a connection after the
/// response keeps the poisoned connection out of the client's pool.
fn expects_continue_without_body(h: &http::HeaderMap) -> bool {
    let expects = h.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let empty = h.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
    expects && empty
}

/// True when the request declares a body (non-zero Content-Length, or chunked).
fn carries_body(h: &http::HeaderMap) -> bool {
    let chunked = h.get(http::header::TRANSFER_ENCODING).is_some();
    chunked || h.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
}

/// What every request handler of the listener shares.
struct Shared {
    svc: S3Service,
    opts: ServeOptions,
}

/// One open connection: holds its slot under `max_connections` and counts in the
/// connections gauge until dropped.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.connection(1);
        Self { _slot: slot, metrics }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection(-1);
    }
}

/// One request: a request id, CORS (preflights answered here, headers added to S3
/// answers), the S3 service, and (through [`RequestInfo`]) one log line and the metrics when
/// the response body is done.
async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    https: bool,
    req: http::Request<Incoming>,
    active: ActiveRequest,
) -> Result<http::Response<ResponseBody<s3s::Body>>, s3s::HttpError> {
    let (svc, cors, guard, limits) = (&shared.svc, &shared.opts.cors, &shared.opts.guard, shared.opts.limits);
    let metrics = shared.opts.metrics.clone();
    let id = random_hex(8).to_ascii_uppercase();
    let method = req.method().clone();
    let info = RequestInfo::new(id.clone(), method.clone(), peer, metrics);
    let (bucket, names_key) = shared.opts.buckets.target(req.version(), req.uri(), req.headers());
    info.set_bucket(bucket.as_deref());
    let close_after = expects_continue_without_body(req.headers());
    let has_body = carries_body(req.headers());
    // CompleteMultipartUpload (POST ?uploadId=): see ResponseBody::strip_late_xml_declaration.
    let completes = method == http::Method::POST && req.uri().query().is_some_and(|q| q.contains("uploadId="));
    // The rules are looked up (on the volume) only for what a browser sends.
    let browser = method == http::Method::OPTIONS || req.headers().contains_key(http::header::ORIGIN);
    let rules = if browser { cors.rules(bucket.as_deref()).await } else { Arc::from([]) };
    let mut resp = if method == http::Method::OPTIONS {
        preflight_response(cors::preflight(&rules, req.headers()), &id)
    } else if xml_body_too_large(&method, req.headers()) {
        let too_big =
            Refusal::new(http::StatusCode::BAD_REQUEST, "MaxMessageLengthExceeded", "Your request was too big.");
        refusal_response(&too_big, &id)
    } else {
        let cors_headers = cors::actual(&rules, &method, req.headers());
        // A browser form upload: S3's answers to a failed POST policy (guard::form_policy).
        let is_form = method == http::Method::POST
            && req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"));
        let (mut parts, body) = req.into_parts();
        let complete = CompleteBody::default();
        match guard.admit(&parts, names_key, time::OffsetDateTime::now_utc().unix_timestamp()) {
            Err(refusal) => refusal_response(&refusal, &id),
            Ok(admitted) => {
                parts.extensions.insert(info.clone());
                parts.extensions.insert(admitted.params);
                if admitted.no_length {
                    crate::guard::mark_no_length(&mut parts);
                }
                let body = RequestBody::new(body, info.clone(), BodyLimits::of(&limits));
                // A form upload: its file's name is read as the body streams, what it stored
                // is answered as S3 does (s3::post_object).
                let form = is_form.then(|| (PostForm::default(), RequestOrigin::of(&parts, https)));
                let boundary = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| form_boundary(v.as_bytes()));
                let body: Result<s3s::Body, Refusal> = if admitted.aws_chunked {
                    Ok(s3s::Body::http_body(ChunkGuard::new(body, guard.max_chunk)))
                } else if completes && !is_form {
                    // s3s refuses the part checksums of five algorithms (s3::complete_xml).
                    let unsigned = parts.headers.get("x-amz-content-sha256").is_none_or(|v| v == "UNSIGNED-PAYLOAD");
                    if unsigned {
                        parts.extensions.insert(complete.clone());
                        Ok(s3s::Body::http_body(StripBody::new(body, complete.clone())))
                    } else if let Some(_preread) = PreRead::take() {
                        // Signed: held whole and passed unchanged; one listing them goes to
                        // the custom route (s3::complete_route), which verifies the hash.
                        // This read comes before s3s checks the signature, so only
                        // PRE_READS of them run at once: a client stalling them can only send
                        // later signed Completes the usual way (see PreRead), never hold
                        // the XML budget other requests need.
                        match hold(body).await {
                            // Cut by the body limits (too slow, past its deadline): S3's
                            // answer to a slow body, as elsewhere, not s3s's 500.
                            Held::Partial(replay) if replay.failed() => Err(request_timeout()),
                            Held::Whole(bytes) => {
                                let lists = listed_checksums(&bytes).is_ok_and(|(_, spans)| !spans.is_empty());
                                let target = shared.opts.buckets.object(parts.version, &parts.uri, &parts.headers);
                                if let (true, Some((bucket, key))) = (lists, target) {
                                    parts.extensions.insert(Routed { bucket, key });
                                }
                                Ok(s3s::Body::from(bytes))
                            }
                            Held::Partial(replay) => Ok(s3s::Body::http_body(replay)),
                        }
                    } else {
                        Ok(s3s::Body::http_body(body))
                    }
                } else if let (Some((slot, _)), Some(boundary)) = (&form, boundary) {
                    parts.extensions.insert(slot.clone());
                    Ok(s3s::Body::http_body(FormSniffer::new(body, &boundary, slot.clone())))
                } else {
                    Ok(s3s::Body::http_body(body))
                };
                // A form upload keeps its slot until s3s has answered it.
                let _form_slot = admitted.form_slot;
                match body {
                    Err(r) => {
                        let mut resp = refusal_response(&r, &id);
                        resp.headers_mut().extend(cors_headers);
                        resp
                    }
                    Ok(body) => match svc.call(http::Request::from_parts(parts, body)).await {
                        Ok(mut resp) => {
                            if let Some((slot, origin)) = &form
                                && let Some(stored) = slot.stored()
                            {
                                resp = stored.response(origin);
                            } else if is_form
                                && let Some(r) =
                                    resp.body().bytes().and_then(|b| form_policy::refusal(resp.status(), &b))
                            {
                                resp = refusal_response(&r, &id);
                            }
                            resp.headers_mut().extend(cors_headers);
                            resp
                        }
                        Err(e) => {
                            info.set_status(500);
                            info.finish();
                            return Err(e);
                        }
                    },
                }
            }
        }
    };
    if resp.status() == http::StatusCode::NOT_MODIFIED {
        // A 304 has no body (RFC 9110); s3s 0.14.1 serializes one for its NotModified error.
        *resp.body_mut() = s3s::Body::empty();
        resp.headers_mut().remove(http::header::CONTENT_TYPE);
    }
    crate::ids::stamp(&mut resp, &id, &crate::ids::host_id());
    // An error may be answered before the body was read (a refused PUT, a failed
    // signature). hyper would then drain the rest before reading the next request, and a
    // client that sent `Expect: 100-continue` never sends it: the client's next request on
    // the connection would be swallowed as that body. Close instead.
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    if close_after || (has_body && failed) {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    info.set_status(resp.status().as_u16());
    let rewrite = resp.extensions().get::<crate::s3::checksum::ExpandChecksumXml>().copied();
    Ok(resp.map(|b| {
        let body = ResponseBody::new(b, info).holding(active).rewriting_xml(rewrite);
        if completes { body.strip_late_xml_declaration() } else { body }
    }))
}

/// Largest XML request body (DeleteObjects, CompleteMultipartUpload), bytes; `s3s`'s
/// `xml_max_body_size` is set to it. 1000 keys of 1024 bytes, or 10000 parts with their
/// checksums, fit in well under half of it; `s3s` holds the whole body in memory.
pub const XML_MAX_BODY: u64 = 8 * 1024 * 1024;

/// True for a POST (an XML body, unless it is a browser form upload) that declares more
/// than [`XML_MAX_BODY`]. `s3s` 0.14.1 answers that with a 500 after reading the limit;
/// refusing it up front is a 400 and reads nothing.
fn xml_body_too_large(method: &http::Method, h: &http::HeaderMap) -> bool {
    let form = crate::guard::auth_params::is_form_upload(method, h);
    let len = h.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    method == http::Method::POST && !form && len.is_some_and(|n| n > XML_MAX_BODY)
}

/// Signed CompleteMultipartUpload bodies read whole before `s3s` checks the signature (see
/// `handle`) at once, at most: the read is opportunistic, and when every slot is taken a
/// Complete goes to `s3s` unread, as any request does. So clients that stall such reads
/// hold at most `PRE_READS` x 8 MiB of the buffered-XML budget and delay no one else
/// (found by the outside attack pass: stalled anonymous reads held the whole budget).
const PRE_READS: usize = 2;

static PRE_READING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`PRE_READS`] slots, given back on drop.
struct PreRead;

impl PreRead {
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering;
        PRE_READING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < PRE_READS).then_some(n + 1))
            .ok()
            .map(|_| PreRead)
    }
}

impl Drop for PreRead {
    fn drop(&mut self) {
        PRE_READING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// S3's answer to a request body that came too slowly or not in time.
fn request_timeout() -> Refusal {
    Refusal::new(
        http::StatusCode::BAD_REQUEST,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the timeout period.",
    )
}

/// The S3 error response of a refusal answered before `s3s` (a guard's, a CORS
/// preflight's, an oversized XML body's), with its extra element and the request id.
fn refusal_response(r: &Refusal, request_id: &str) -> http::Response<s3s::Body> {
    let extra = r.extra.as_ref().map(|(tag, v)| format!("<{tag}>{}</{tag}>", xml_escape(v))).unwrap_or_default();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>{extra}<RequestId>{request_id}</RequestId></Error>",
        r.code,
        xml_escape(&r.message)
    );
    let mut resp = http::Response::new(s3s::Body::from(xml));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    resp
}

/// Escapes text for an XML element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The response to a preflight `OPTIONS`: 200 with the CORS headers, or an S3 error.
fn preflight_response(p: Preflight, request_id: &str) -> http::Response<s3s::Body> {
    match p {
        Preflight::Allowed(h) => {
            let mut resp = http::Response::new(s3s::Body::empty());
            *resp.headers_mut() = h;
            resp
        }
        Preflight::Refused(status, code, message) => refusal_response(&Refusal::new(status, code, message), request_id),
    }
}
