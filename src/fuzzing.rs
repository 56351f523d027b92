//! Fuzz entry points: each takes arbitrary bytes and panics when an invariant of the
//! security boundary breaks. `cargo fuzz` drives them from `fuzz/` (nightly); the bounded
//! property tests below drive the same functions on stable, so `cargo test` always runs
//! them. Nothing here is used by the daemon.

use crate::guard::chunked::{ChunkFraming, FramingError};
use crate::store::key::{MAX_KEY_LEN, MAX_SEGMENT_LEN, ObjectKey};
use crate::store::list::{decode_token, encode_token};

/// The internal directory name the key target checks against.
pub const INTERNAL_DIR: &str = ".s3vol";

/// `ObjectKey::parse` on any input: an accepted key never holds an empty, `.` or `..`
/// segment, a NUL, a leading `/`, an overlong key or segment, or starts with the internal
/// directory; `path()` never starts with `/` and names the same segments.
pub fn object_key(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(k) = ObjectKey::parse(s, INTERNAL_DIR) else { return };
    assert_eq!(k.as_str(), s);
    assert!(s.len() <= MAX_KEY_LEN && !s.contains('\0') && !s.starts_with('/'), "{s:?}");
    let path = k.path();
    assert!(!path.is_empty() && !path.starts_with('/') && !path.ends_with('/'), "{s:?}");
    for (i, seg) in path.split('/').enumerate() {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
        assert!(seg.len() <= MAX_SEGMENT_LEN, "{s:?}");
        assert!(i > 0 || seg != INTERNAL_DIR, "{s:?}");
    }
    let (parent, name) = k.split_parent();
    assert!(!name.is_empty() && !name.contains('/'), "{s:?}");
    assert!(parent.is_empty() || path.starts_with(parent), "{s:?}");
    for a in k.ancestors() {
        assert!(!a.is_empty() && !a.starts_with('/') && !a.ends_with('/'), "{s:?}");
    }
}

/// `decode_token` on any input never panics, and what it decodes re-encodes to a token
/// that decodes to the same key; any valid key round-trips through `encode_token`.
pub fn continuation_token(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(last) = decode_token(s) {
            assert!(!last.is_empty() && last.len() <= MAX_KEY_LEN);
            assert_eq!(decode_token(&encode_token(&last)).as_deref(), Some(last.as_str()));
        }
        if !s.is_empty() && s.len() <= MAX_KEY_LEN {
            assert_eq!(decode_token(&encode_token(s)).as_deref(), Some(s));
        }
    }
    let lossy = String::from_utf8_lossy(data);
    let _ = decode_token(&lossy);
}

/// The cap the chunk-framing target guards (small, so that inputs cross it).
pub const CHUNK_CAP: u64 = 4096;

/// The aws-chunked framing guard on any input: feeding the bytes in one piece or split at
/// any point gives the same verdict; a chunk over [`CHUNK_CAP`] is never accepted (the
/// guard fails at that chunk's size digits, so no data beyond it counts as decoded);
/// and the decoded count never exceeds the input.
///
/// The input's first byte picks the split point; the rest is the body.
pub fn chunk_framing(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else { return };
    let whole = {
        let mut f = ChunkFraming::new(CHUNK_CAP);
        f.feed(body).map(|()| f.decoded())
    };
    let at = usize::from(split) * body.len() / 256;
    let parts = {
        let mut f = ChunkFraming::new(CHUNK_CAP);
        f.feed(&body[..at]).and_then(|()| f.feed(&body[at..])).map(|()| f.decoded())
    };
    assert_eq!(whole, parts, "split at {at} changes the verdict");
    match whole {
        Ok(decoded) => {
            assert!(decoded <= body.len() as u64);
            // Every size line that was read declared at most the cap.
            for size in declared_sizes(body) {
                assert!(size <= CHUNK_CAP, "a chunk of {size} bytes passed");
            }
        }
        Err(FramingError::TooLarge { size, cap }) => assert!(size > cap && cap == CHUNK_CAP),
        Err(FramingError::Malformed(_)) => {}
    }
}

/// The chunk sizes a well-formed prefix of `body` declares, read independently of the
/// guard (the reference for [`chunk_framing`]): size lines `HEX[;...]\r\n`, data, CRLF.
fn declared_sizes(body: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else { return out };
        let line = &rest[..nl];
        let digits: Vec<u8> = line.iter().copied().take_while(u8::is_ascii_hexdigit).collect();
        let Ok(size) = u64::from_str_radix(std::str::from_utf8(&digits).unwrap_or("x"), 16) else { return out };
        out.push(size);
        let after = nl + 1;
        let Some(end) = usize::try_from(size).ok().and_then(|n| after.checked_add(n)?.checked_add(2)) else {
            return out;
        };
        if size == 0 || end > rest.len() {
            return out;
        }
        rest = &rest[end..];
    }
}

/// A well-formed aws-chunked body (signed or not) of random chunk sizes, some over
/// [`CHUNK_CAP`], with random trailers: the generator for the bounded stable run.
pub fn chunked_body(rng: &mut Rng) -> Vec<u8> {
    let signed = rng.next_u64().is_multiple_of(2);
    let mut out = vec![(rng.next_u64() % 256) as u8];
    for _ in 0..rng.next_u64() % 6 {
        let size = match rng.next_u64() % 10 {
            0 => CHUNK_CAP + 1 + rng.next_u64() % 10,
            1 => rng.next_u64() % 0x1_0000_0000,
            _ => rng.next_u64() % 3000,
        };
        out.extend_from_slice(format!("{size:x}").as_bytes());
        if signed {
            out.extend_from_slice(b";chunk-signature=");
            out.extend(std::iter::repeat_n(b'a', 64));
        }
        out.extend_from_slice(b"\r\n");
        out.extend(std::iter::repeat_n(b'z', size.min(5000) as usize));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if rng.next_u64().is_multiple_of(2) {
        out.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // Now and then, noise in the middle.
    if rng.next_u64().is_multiple_of(4) && out.len() > 2 {
        let at = 1 + (rng.next_u64() as usize) % (out.len() - 1);
        out[at] = (rng.next_u64() % 256) as u8;
    }
    out
}

/// A small deterministic PRNG (xorshift64*) for the bounded stable runs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Bytes built from pieces that matter to paths and tokens, plus random bytes.
    pub fn input(&mut self) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"/",
            b".",
            b"..",
            b"a",
            b"b",
            b"\0",
            b".s3vol",
            b"%2e",
            b"%2F",
            b"\\",
            b"\xc3\xa9",
            b"\xff",
            b"1",
            b"=",
            b"-",
            b"_",
            b"+",
            b" ",
            b"\n",
        ];
        let n = (self.next_u64() % 24) as usize;
        let mut out = Vec::new();
        for _ in 0..n {
            let r = self.next_u64();
            match r % 8 {
                0 => out.extend(std::iter::repeat_n(b'x', (r >> 8) as usize % 300)),
                1 => out.push((r >> 8) as u8),
                _ => out.extend_from_slice(PIECES[(r >> 8) as usize % PIECES.len()]),
            }
        }
        out
    }
}

/// Iterations of the bounded stable runs: `S3VOL_FUZZ_ITERS`, default 20,000.
pub fn iterations() -> u64 {
    std::env::var("S3VOL_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_key_bounded() {
        let mut rng = Rng::new(1);
        for _ in 0..iterations() {
            object_key(&rng.input());
        }
    }

    #[test]
    fn chunk_framing_bounded() {
        let mut rng = Rng::new(3);
        for _ in 0..iterations() / 4 {
            chunk_framing(&chunked_body(&mut rng));
            chunk_framing(&rng.input());
        }
    }

    #[test]
    fn continuation_token_bounded() {
        let mut rng = Rng::new(2);
        for _ in 0..iterations() {
            let raw = rng.input();
            continuation_token(&raw);
            // and real tokens with noise, so that decode gets past base64
            let tok = encode_token(&String::from_utf8_lossy(&raw));
            continuation_token(tok.as_bytes());
        }
    }
}
