//! Connection limits and timeouts, so that slow or stuck clients cannot exhaust the daemon
//! (file descriptors, tasks, temp files): the settings, and [`StallIo`], a connection
//! wrapper that fails writes to a client that stopped reading.
//!
//! Where each limit is enforced: `max_connections` by a semaphore before `accept`
//! (further clients wait in the kernel's backlog); `header_read_timeout` by hyper (the
//! whole request head must arrive within it, counted from when the connection is ready
//! for a request, so it is also the keep-alive idle timeout); `idle_timeout` here for
//! writes and in [`crate::request::RequestBody`] for request bodies; `shutdown_grace` by
//! the server after SIGTERM.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Default `max_connections`: open client connections on the S3 listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `header_read_timeout` (also the keep-alive idle timeout).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `idle_timeout`: no body progress in either direction for this long ends a request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `shutdown_grace`: how long in-flight requests may take after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `min_body_rate`: a request body slower than this, bytes per second averaged over
/// [`RATE_WINDOW`] of waiting, is cut (a trickle cannot hold a connection slot).
pub const DEFAULT_MIN_BODY_RATE: u64 = 4096;
/// The span of waiting for body bytes over which `min_body_rate` is measured (or
/// `idle_timeout`, when that is shorter).
pub const RATE_WINDOW: Duration = Duration::from_secs(20);
/// Default `max_body_time`: no request body may take longer than this in all.
pub const DEFAULT_MAX_BODY_TIME: Duration = Duration::from_secs(12 * 3600);
/// Default `unauthenticated_body_time`: a body read before its request is authorized (a
/// browser form upload, whose signature is inside the body) must arrive within this.
pub const DEFAULT_UNAUTHENTICATED_BODY_TIME: Duration = Duration::from_secs(60);
/// Largest header block of an HTTP/2 request, bytes (an HTTP/1.1 head is bounded by
/// hyper's read buffer, ~400 KiB).
pub const MAX_HEAD_BUFFER: usize = 128 * 1024;

/// The checked limits the S3 listener runs with (config keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time for a whole request head, from when the connection is ready for one.
    pub header_read_timeout: Duration,
    /// A request body that receives nothing, or a response the client does not read,
    /// for this long fails the request and closes the connection.
    pub idle_timeout: Duration,
    /// After SIGTERM, how long in-flight requests may take before connections are closed.
    pub shutdown_grace: Duration,
    /// A request body that arrives slower than this (bytes per second, over
    /// [`RATE_WINDOW`] of waiting) is cut; 0 turns the check off.
    pub min_body_rate: u64,
    /// Longest time a request body may take in all.
    pub max_body_time: Duration,
    /// Longest time a body read before the request is authorized may take.
    pub unauthenticated_body_time: Duration,
    /// Serve HTTP/2 too (h2 over TLS by ALPN, h2c by prior knowledge). Off: HTTP/1.1 only,
    /// as S3 itself.
    pub http2: bool,
    /// Largest aws-chunked chunk accepted, bytes ([`crate::guard::chunked`]).
    pub max_chunk_size: u64,
    /// Largest browser form upload (PostObject) file, bytes.
    pub max_form_upload_size: u64,
    /// Form uploads read at once; more answer 503 SlowDown.
    pub max_form_uploads: usize,
    /// Longest wait for one file-system step of a request on a volume (a turn on its
    /// blocking threads, then the work): past it the request answers 503 and the volume
    /// is reported stalled, so a hung mount holds its own requests only.
    pub volume_timeout: Duration,
}

/// Default [`Limits::volume_timeout`]: 30 s.
pub const DEFAULT_VOLUME_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            max_body_time: DEFAULT_MAX_BODY_TIME,
            unauthenticated_body_time: DEFAULT_UNAUTHENTICATED_BODY_TIME,
            http2: false,
            max_chunk_size: crate::guard::chunked::DEFAULT_MAX_CHUNK_SIZE,
            max_form_upload_size: crate::guard::DEFAULT_MAX_FORM_UPLOAD,
            max_form_uploads: crate::guard::DEFAULT_MAX_FORM_UPLOADS,
            volume_timeout: DEFAULT_VOLUME_TIMEOUT,
        }
    }
}

/// How long a connection with no request in flight may stay open while the listener is
/// short of slots (fewer than a tenth of `max_connections` free): idle keep-alive
/// connections and connections still sending a request head go first.
pub const IDLE_UNDER_PRESSURE: Duration = Duration::from_secs(2);

/// Requests in flight on one connection and when it was last active, for the idle
/// watchdog ([`Activity::watch`]).
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `base` at the last request start or end.
    last_ms: AtomicU64,
    base: tokio::time::Instant,
}

/// One request in flight on a connection; its end counts as activity.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// A connection that just opened (active now).
    pub fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(0), base: tokio::time::Instant::now() })
    }

    fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// A request starts; it counts until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        ActiveRequest(self.clone())
    }

    /// Completes when the connection has had no request in flight for `idle` (or for
    /// [`IDLE_UNDER_PRESSURE`] while `pressure()` is true); the server then drops it.
    /// This is the only idle limit of an HTTP/2 connection, and for HTTP/1.1 it sheds idle
    /// connections early when slots run short.
    pub async fn watch(self: Arc<Self>, idle: Duration, pressure: impl Fn() -> bool) {
        let tick = Duration::from_secs(1);
        loop {
            tokio::time::sleep(tick).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let quiet = self.base.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Acquire)));
            let limit = if pressure() { IDLE_UNDER_PRESSURE.min(idle) } else { idle };
            if quiet >= limit {
                return;
            }
        }
    }
}

/// A connection whose writes fail with `TimedOut` once they have made no progress for
/// `stall` (the peer's receive window stayed full). Reads pass through: request heads
/// and bodies have their own timeouts.
pub struct StallIo<S> {
    inner: S,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> StallIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, stall: Duration) -> Self {
        Self { inner, stall, timer: None }
    }

    /// Maps a write-side poll: Ready resets the clock, Pending starts it or checks it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let stall = self.stall;
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.timer = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {stall:?}"),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_sooner_under_pressure() {
        let a = Activity::new();
        let started = tokio::time::Instant::now();
        a.clone().watch(Duration::from_secs(30), || false).await;
        assert!(started.elapsed() >= Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        a.clone().watch(Duration::from_secs(30), || true).await;
        assert!(started.elapsed() <= IDLE_UNDER_PRESSURE + Duration::from_secs(1));
        // A request in flight is never idle, however long it takes.
        let req = a.begin();
        let held =
            tokio::time::timeout(Duration::from_secs(120), a.clone().watch(Duration::from_secs(5), || true)).await;
        assert!(held.is_err());
        drop(req);
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_times_out_the_writer() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = StallIo::new(a, Duration::from_millis(200));
        let err = io.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
