//! Request and response bodies: streaming into a store writer on a blocking thread while
//! the async side keeps receiving, streaming reads out, and the additional checksums
//! (`x-amz-checksum-*`, in headers or aws-chunked trailers) verified before any commit.

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3Result, s3_error};
use tokio::sync::mpsc;

use super::error::body_error;
use crate::store::checksum::{Algorithm, Hashers};
use crate::store::meta::Md5Hasher;
use crate::store::read::ObjectReader;
use crate::store::volume::RECHECK;
use crate::store::write::Writer;
use crate::store::{Error as StoreError, Volume};
use std::sync::Arc;

/// Batches queued between the network and each of the writer and hasher threads (bounds
/// memory per upload: QUEUE x BATCH).
const QUEUE: usize = 4;
/// Bytes gathered before a hand-off to the writer and hasher threads.
const BATCH: usize = 256 * 1024;
/// Chunks smaller than this are copied into one buffer rather than queued one by one: a
/// body of tiny chunks (1-byte aws-chunked or `Transfer-Encoding: chunked` frames) would
/// otherwise queue a `Bytes` per byte, each holding on to the network buffer it was cut
/// from (about 12 MiB per upload, found by the outside attack pass).
const SMALL_CHUNK: usize = 16 * 1024;
/// Response block size for streamed GETs.
pub const READ_BLOCK: usize = 512 * 1024;

tokio::task_local! {
    /// The volume of the request being served ([`super::S3Vol`] sets it around each
    /// operation): [`blocking`] runs its work within that volume's bounds.
    pub static VOLUME: Arc<Volume>;
}

/// How often a waiting request looks whether its volume was marked stalled.
const STALL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs a blocking store operation on the blocking pool, in the current tracing span.
///
/// Within a request on a volume ([`VOLUME`]) the work first takes one of the volume's
/// [`Volume::gate`] permits and holds it until the work really ends, so a file system that
/// stops answering ties up at most its own threads; and the request gives up with 503
/// ServiceUnavailable as soon as the volume is marked stalled (its liveness check did not
/// return within `volume_timeout`), while waiting for a permit or for the work. A merely
/// slow operation on a volume that still answers its checks is waited for.
///
/// Errors that may mean the volume changed under the request (read-only, gone, stale)
/// wake the liveness check ([`RECHECK`]).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> crate::store::Result<T> + Send + 'static) -> S3Result<T> {
    let span = tracing::Span::current();
    let Ok(vol) = VOLUME.try_with(Arc::clone) else {
        return match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
            Ok(r) => r.map_err(S3Error::from),
            Err(e) => Err(S3Error::internal_error(e)),
        };
    };
    let permit = tokio::select! {
        p = vol.gate.clone().acquire_owned() => p.map_err(S3Error::internal_error)?,
        () = stalled(&vol) => return Err(StoreError::Unavailable.into()),
    };
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        span.in_scope(f)
    });
    let r = tokio::select! {
        r = task => r.map_err(S3Error::internal_error)?,
        () = stalled(&vol) => return Err(StoreError::Unavailable.into()),
    };
    if let Err(e) = &r
        && may_mean_changed(e)
    {
        RECHECK.notify_one();
    }
    r.map_err(S3Error::from)
}

/// Completes once `vol` is marked stalled.
async fn stalled(vol: &Volume) {
    while !vol.is_stalled() {
        tokio::time::sleep(STALL_POLL).await;
    }
}

/// Errors after which the volume's liveness is checked at once: the file system went
/// read-only, the directory went away or became stale, the device or the connection is gone.
fn may_mean_changed(e: &StoreError) -> bool {
    match e {
        StoreError::ReadOnly | StoreError::Unavailable => true,
        StoreError::Io(e) => {
            matches!(e.raw_os_error(), Some(libc::ESTALE | libc::EIO | libc::ENOTCONN | libc::ENODEV | libc::ENXIO))
        }
        _ => false,
    }
}

/// Streams `body` into `writer`. Two blocking threads overlap: one writes, the other
/// hashes (the MD5 for the ETag and the requested checksums), so a single stream is bound
/// by the slower of disk and MD5, not their sum.
///
/// The bytes are counted as they arrive: a body that runs past the size the writer was
/// admitted for (`Writer::declared`) stops at the first chunk over it, whatever its
/// headers said, and the writer refuses such bytes too.
///
/// Errors: the body's own error (hash or signature mismatch, cut off) with the writer
/// dropped, so its temp file is gone; `IncompleteBody` for a body longer than declared,
/// and a store error (no space, ...), each after draining what the client still sends
/// (at most the rest of its declared length, or `DRAIN_LIMIT` past it) so that it reads
/// the error instead of a broken pipe. A body shorter than declared is the caller's to
/// refuse (`Writer::check_complete`).
pub async fn receive(
    body: StreamingBlob,
    writer: Writer,
    mut hasher: Hashers,
) -> S3Result<(Writer, Vec<(Algorithm, String)>)> {
    let declared = writer.declared().unwrap_or(u64::MAX);
    let (wtx, mut wrx) = mpsc::channel::<Batch>(QUEUE);
    let (htx, mut hrx) = mpsc::channel::<Batch>(QUEUE);
    let span = tracing::Span::current();
    let write_task = tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let mut writer = writer;
        while let Some(batch) = wrx.blocking_recv() {
            for chunk in batch.iter() {
                writer.write_unhashed(chunk)?;
            }
        }
        Ok::<_, crate::store::Error>(writer)
    });
    let hash_task = tokio::task::spawn_blocking(move || {
        let mut md5 = Md5Hasher::default();
        while let Some(batch) = hrx.blocking_recv() {
            for chunk in batch.iter() {
                md5.update(chunk);
                hasher.update(chunk);
            }
        }
        (md5.finish(), hasher)
    });
    let mut body = body;
    let mut failure = None;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut small = bytes::BytesMut::new();
    let mut received = 0u64;
    let mut overrun = false;
    // On a volume that stops answering, the writer thread hangs: the request gives up with
    // 503 once the volume is marked stalled instead of waiting with it.
    let vol = VOLUME.try_with(Arc::clone).ok();
    let send = async |batch: Vec<Bytes>| -> bool {
        // One shared batch for both threads: each hand-off wakes a thread, so chunks go
        // over in batches of about BATCH bytes rather than one by one.
        let batch = Batch::new(batch);
        let hand_off = async { htx.send(batch.clone()).await.is_ok() && wtx.send(batch).await.is_ok() };
        match &vol {
            Some(v) => tokio::select! {
                ok = hand_off => ok,
                () = stalled(v) => false,
            },
            None => hand_off.await,
        }
    };
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                received += chunk.len() as u64;
                if received > declared {
                    // Longer than declared (an aws-chunked body can be: s3s 0.14 does not
                    // hold it to x-amz-decoded-content-length). Not one byte more is
                    // handed to the writer.
                    overrun = true;
                    break;
                }
                batched += chunk.len();
                if chunk.len() < SMALL_CHUNK {
                    small.extend_from_slice(&chunk);
                    if small.len() >= SMALL_CHUNK {
                        batch.push(small.split().freeze());
                    }
                } else {
                    if !small.is_empty() {
                        batch.push(small.split().freeze());
                    }
                    batch.push(chunk);
                }
                if batched >= BATCH {
                    batched = 0;
                    if !small.is_empty() {
                        batch.push(small.split().freeze());
                    }
                    if !send(std::mem::take(&mut batch)).await {
                        break; // the writer stopped on an error: it is reported below
                    }
                }
            }
            Some(Err(e)) => {
                failure = Some(body_error(e.as_ref()));
                break;
            }
            None => {
                if !small.is_empty() {
                    batch.push(small.split().freeze());
                }
                if !batch.is_empty() {
                    send(std::mem::take(&mut batch)).await;
                }
                break;
            }
        }
    }
    drop(wtx);
    drop(htx);
    let written = match &vol {
        Some(v) => tokio::select! {
            r = write_task => r.map_err(S3Error::internal_error)?,
            () = stalled(v) => return Err(StoreError::Unavailable.into()),
        },
        None => write_task.await.map_err(S3Error::internal_error)?,
    };
    let (md5, hasher) = hash_task.await.map_err(S3Error::internal_error)?;
    if let Some(e) = failure {
        return Err(e); // `written` (and its temp file) is dropped here
    }
    if overrun {
        drop(written); // and its temp file
        let e = S3Error::from(crate::store::Error::BodyLength { declared, received });
        return Err(refuse(Some(body), &http::HeaderMap::new(), e).await);
    }
    match written {
        Ok(mut w) => {
            w.set_md5(md5);
            Ok((w, hasher.finish()))
        }
        // Drain what the client still sends (bounded: a body without a length may never
        // end): an honest client then reads the error; one sending more is cut (the server
        // closes the connection after an error answer to a request with a body).
        Err(e) => Err(refuse(Some(body), &http::HeaderMap::new(), e.into()).await),
    }
}

/// Chunks handed to the writing and hashing threads together.
type Batch = std::sync::Arc<Vec<Bytes>>;

/// Most of a refused body that is read and discarded so the client sees the error rather
/// than a broken pipe; past this the connection is closed instead.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Refuses a write before any byte of its body is stored. Unless the client is waiting
/// for `100 Continue` (it has sent no body yet), the body is read and discarded, up to
/// [`DRAIN_LIMIT`] bytes and 30 seconds, so the client reads the error (SPEC.md).
/// (The server closes the connection after any error answer to a request with a body, so
/// an undrained body never reaches the next request: see `server.rs`.)
pub async fn refuse(body: Option<StreamingBlob>, headers: &http::HeaderMap, err: S3Error) -> S3Error {
    let waiting = headers.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if let (false, Some(mut body)) = (waiting, body) {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
    }
    err
}

/// A response body that reads `reader` in large blocks on a blocking thread.
pub fn stream_out(mut reader: ObjectReader) -> StreamingBlob {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        loop {
            match reader.next_block(READ_BLOCK) {
                Ok(Some(b)) => {
                    if tx.blocking_send(Ok(b)).is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
    });
    StreamingBlob::wrap(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Checks `Content-MD5` (base64 of the MD5) against the MD5 the writer computed.
pub fn verify_content_md5(content_md5: Option<&str>, md5: &[u8; 16]) -> S3Result<()> {
    let Some(given) = content_md5 else {
        return Ok(());
    };
    let raw = base64_simd::STANDARD
        .decode_to_vec(given.trim())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if raw.as_slice() != md5 {
        return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."));
    }
    Ok(())
}
