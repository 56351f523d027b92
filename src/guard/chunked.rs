//! The aws-chunked framing guard. `s3s` 0.14 buffers each aws-chunked chunk whole before
//! it checks the chunk's signature, and a chunk may declare up to 4 GiB (eight hex
//! digits): one request could make the daemon hold gigabytes. [`ChunkFraming`] follows
//! the framing as the bytes pass through, before `s3s` sees them, and refuses a chunk
//! whose declared size is over the cap as soon as its size digits arrive, so none of
//! its data is read.
//!
//! The framing, as `s3s` parses it (`http/aws_chunked_stream.rs`): a size line
//! `HEX[;chunk-signature=SIG]\r\n` of at most 1024 bytes, that many data bytes, `\r\n`,
//! the next size line; after the size-0 line, trailers up to the end of the body
//! (`s3s` caps them at 16 KiB). The guard is stricter than `s3s` where `s3s` is lax: the
//! size must be 1 to 8 hex digits followed by `;` or `\r` (s3s would read `1g` as 1).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::request::BoxError;

/// Default cap on one aws-chunked chunk, bytes (config `max_chunk_size`). SDKs send 64 KiB
/// (the CRT, Go, Rust) to 1 MiB (botocore); the cap leaves room above the largest.
pub const DEFAULT_MAX_CHUNK_SIZE: u64 = 8 << 20;

/// `s3s`'s limit on one chunk's size line, bytes (`MAX_CHUNK_META_SIZE`).
const MAX_META: usize = 1024;
/// `s3s`'s limit on the trailer block, bytes (`MAX_TRAILERS_SIZE`), plus its final CRLF.
const MAX_TRAILERS: usize = 16 * 1024 + 2;

/// Why the guard stopped a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A chunk declared more than the cap (bytes).
    #[error("ChunkTooLarge: an aws-chunked chunk declares {size} bytes, over this server's limit of {cap}")]
    TooLarge { size: u64, cap: u64 },
    /// The framing is not aws-chunked.
    #[error("ChunkMalformed: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size digits of a size line.
    Size { value: u64, digits: u32, len: usize },
    /// Past the digits, up to the line's `\n`.
    Ext { value: u64, len: usize },
    /// Data bytes still to come.
    Data(u64),
    /// The `\r\n` after a chunk's data (`0`: expecting `\r`, `1`: expecting `\n`).
    Crlf(u8),
    /// After the size-0 line: trailers up to the end.
    Trailers(usize),
    /// An error was reported; nothing more is accepted.
    Failed,
}

/// The aws-chunked framing state, fed with the body's bytes in order.
#[derive(Debug, Clone)]
pub struct ChunkFraming {
    state: State,
    cap: u64,
    /// Data bytes seen (the decoded length so far).
    decoded: u64,
}

impl ChunkFraming {
    /// A framing that refuses chunks over `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self { state: State::Size { value: 0, digits: 0, len: 0 }, cap, decoded: 0 }
    }

    /// Data bytes (decoded payload) seen so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// True once the size-0 chunk was seen (only trailers may follow).
    pub fn at_end(&self) -> bool {
        matches!(self.state, State::Trailers(_))
    }

    /// Follows `data`. Errors: the first violation; later calls repeat a generic one.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), FramingError> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                State::Failed => return Err(FramingError::Malformed("the body already failed")),
                State::Size { value, digits, len } => {
                    let len = len + 1;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let d = u64::from((b as char).to_digit(16).expect("hex digit"));
                            let value = value * 16 + d;
                            if digits == 8 {
                                return self.fail(FramingError::Malformed("a chunk size has more than 8 hex digits"));
                            }
                            if value > self.cap {
                                return self.fail(FramingError::TooLarge { size: value, cap: self.cap });
                            }
                            State::Size { value, digits: digits + 1, len }
                        }
                        b';' | b'\r' if digits > 0 => State::Ext { value, len },
                        _ => {
                            return self
                                .fail(FramingError::Malformed("a chunk size line does not start with hex digits"));
                        }
                    }
                }
                State::Ext { value, len } => {
                    let len = len + 1;
                    if len > MAX_META {
                        return self.fail(FramingError::Malformed("a chunk size line is longer than 1024 bytes"));
                    }
                    match b {
                        b'\n' if value == 0 => State::Trailers(0),
                        b'\n' => State::Data(value),
                        _ => State::Ext { value, len },
                    }
                }
                State::Data(left) => {
                    let take = (data.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.decoded += take as u64;
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::Crlf(0) } else { State::Data(left) };
                    continue;
                }
                State::Crlf(0) if b == b'\r' => State::Crlf(1),
                State::Crlf(1) if b == b'\n' => State::Size { value: 0, digits: 0, len: 0 },
                State::Crlf(_) => return self.fail(FramingError::Malformed("a chunk's data is not followed by CRLF")),
                State::Trailers(n) => {
                    let n = n + (data.len() - i);
                    if n > MAX_TRAILERS {
                        return self.fail(FramingError::Malformed("the trailers are larger than 16 KiB"));
                    }
                    self.state = State::Trailers(n);
                    return Ok(());
                }
            };
            i += 1;
        }
        Ok(())
    }

    fn fail(&mut self, e: FramingError) -> Result<(), FramingError> {
        self.state = State::Failed;
        Err(e)
    }
}

/// A request body whose bytes pass through a [`ChunkFraming`]: the frame that would
/// cross the cap is not handed on; an error is, which `s3s` reports as the body's error
/// (mapped to an S3 error in `s3::error::body_error`).
pub struct ChunkGuard<B> {
    inner: B,
    framing: ChunkFraming,
}

impl<B> ChunkGuard<B> {
    /// Guards `inner` with chunks of at most `cap` bytes.
    pub fn new(inner: B, cap: u64) -> Self {
        Self { inner, framing: ChunkFraming::new(cap) }
    }
}

impl<B> Body for ChunkGuard<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r
            && let Some(data) = frame.data_ref()
            && let Err(e) = this.framing.feed(data)
        {
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(cap: u64, parts: &[&[u8]]) -> Result<ChunkFraming, FramingError> {
        let mut f = ChunkFraming::new(cap);
        for p in parts {
            f.feed(p)?;
        }
        Ok(f)
    }

    #[test]
    fn signed_and_unsigned_framings_pass_in_any_split() {
        let sig = "a".repeat(64);
        let body = format!("5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n");
        let unsigned = b"5\r\nhello\r\n3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n".to_vec();
        for b in [body.as_bytes().to_vec(), unsigned] {
            for split in 0..b.len() {
                let f = feed_all(16, &[&b[..split], &b[split..]]).unwrap();
                assert!(f.at_end());
                assert!(f.decoded() == 5 || f.decoded() == 8);
            }
        }
    }

    #[test]
    fn a_chunk_over_the_cap_is_refused_at_its_size_digits() {
        let mut f = ChunkFraming::new(1 << 20);
        // "100000" = 1 MiB passes, "100001" does not, and it fails before any data.
        assert!(f.feed(b"100000\r\n").is_ok());
        let mut f = ChunkFraming::new(1 << 20);
        assert_eq!(f.feed(b"10000"), Ok(()));
        assert_eq!(f.feed(b"1"), Err(FramingError::TooLarge { size: 0x100001, cap: 1 << 20 }));
        assert!(f.feed(b"\r\n").is_err(), "nothing is accepted after a failure");
        let mut f = ChunkFraming::new(u64::MAX);
        assert!(matches!(f.feed(b"ffffffff0;"), Err(FramingError::Malformed(_))));
    }

    #[test]
    fn malformed_framings_fail() {
        for bad in [&b"g\r\n"[..], b";x\r\n", b"5\r\nhelloXY", b"\r\n"] {
            assert!(matches!(feed_all(100, &[bad]), Err(FramingError::Malformed(_))), "{bad:?}");
        }
        let long = format!("5;{}\r\n", "x".repeat(2000));
        assert!(feed_all(100, &[long.as_bytes()]).is_err());
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend(std::iter::repeat_n(b'x', 20_000));
        assert!(feed_all(100, &[&trailer]).is_err());
    }
}
