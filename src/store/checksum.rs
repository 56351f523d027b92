//! The additional checksums of S3 (`x-amz-checksum-*`): the ten algorithms, their names,
//! header names and digest lengths, which multipart checksum types each allows, hashing,
//! and the multipart rules (`COMPOSITE`: the checksum of the concatenated binary part
//! checksums, then `-N`; `FULL_OBJECT`: the CRCs of the parts combined into the CRC of the
//! whole). Source: S3 "Checking object integrity" and the S3 API model (botocore 1.43:
//! `ChecksumAlgorithm` has CRC32, CRC32C, SHA1, SHA256, CRC64NVME, SHA512, MD5, XXHASH64,
//! XXHASH3, XXHASH128). Values travel as base64 of the big-endian digest.

use md5::Digest as _;

/// One S3 checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    Sha512,
    Md5,
    Xxhash64,
    Xxhash3,
    Xxhash128,
}

impl Algorithm {
    /// Every algorithm, in the order of the S3 API model.
    pub const ALL: [Algorithm; 10] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Sha1,
        Self::Sha256,
        Self::Crc64Nvme,
        Self::Sha512,
        Self::Md5,
        Self::Xxhash64,
        Self::Xxhash3,
        Self::Xxhash128,
    ];

    /// The S3 name (`x-amz-sdk-checksum-algorithm`, `ChecksumAlgorithm`), upper case.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
            Self::Md5 => "MD5",
            Self::Xxhash64 => "XXHASH64",
            Self::Xxhash3 => "XXHASH3",
            Self::Xxhash128 => "XXHASH128",
        }
    }

    /// The algorithm of an S3 name, in any case; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The header (and trailer) that carries a value: `x-amz-checksum-crc32`, ...
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
            Self::Sha512 => "x-amz-checksum-sha512",
            Self::Md5 => "x-amz-checksum-md5",
            Self::Xxhash64 => "x-amz-checksum-xxhash64",
            Self::Xxhash3 => "x-amz-checksum-xxhash3",
            Self::Xxhash128 => "x-amz-checksum-xxhash128",
        }
    }

    /// The algorithm whose value a header or trailer name carries (any case).
    pub fn from_header(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    /// The XML element that carries a value (`ChecksumCRC32`, ...).
    pub fn xml_element(self) -> String {
        format!("Checksum{}", self.name())
    }

    /// Length of the binary digest, bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme | Self::Xxhash64 | Self::Xxhash3 => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
            Self::Md5 | Self::Xxhash128 => 16,
        }
    }

    /// The CRC parameters of a CRC algorithm: only those combine into a `FULL_OBJECT`
    /// checksum of a multipart object.
    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Self::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Self::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Self::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }

    /// True when a multipart upload may use `type` with this algorithm. S3: CRC64NVME is
    /// full-object only; CRC32 and CRC32C either; the digests (SHA*, MD5, XXHASH*), which
    /// cannot be combined from the parts' values, composite only.
    pub fn allows(self, ty: ChecksumType) -> bool {
        match ty {
            ChecksumType::FullObject => self.crc().is_some(),
            ChecksumType::Composite => self != Self::Crc64Nvme,
        }
    }

    /// The multipart checksum type S3 uses when CreateMultipartUpload names none.
    pub fn default_type(self) -> ChecksumType {
        if self == Self::Crc64Nvme { ChecksumType::FullObject } else { ChecksumType::Composite }
    }

    /// A hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        Hasher {
            algorithm: self,
            state: match self {
                Self::Crc32 | Self::Crc32c | Self::Crc64Nvme => {
                    State::Crc(crc_fast::Digest::new(self.crc().expect("a CRC")))
                }
                Self::Sha1 => State::Sha1(sha1::Sha1::default()),
                Self::Sha256 => State::Sha256(sha2::Sha256::default()),
                Self::Sha512 => State::Sha512(Box::default()),
                Self::Md5 => State::Md5(md5::Md5::default()),
                Self::Xxhash64 => State::Xxh64(Box::new(xxhash_rust::xxh64::Xxh64::new(0))),
                Self::Xxhash3 | Self::Xxhash128 => State::Xxh3(Box::default()),
            },
        }
    }

    /// The binary digest of `data` (whole, in one go).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish_raw()
    }

    /// The raw digest of a base64 value of this algorithm; `None` when it is not base64
    /// of exactly [`Self::digest_len`] bytes.
    pub fn decode(self, b64: &str) -> Option<Vec<u8>> {
        let raw = base64_simd::STANDARD.decode_to_vec(b64.trim().as_bytes()).ok()?;
        (raw.len() == self.digest_len()).then_some(raw)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the checksum of a multipart object derives from its parts' (`x-amz-checksum-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumType {
    /// The checksum of the concatenated binary part checksums, written `<base64>-N`.
    Composite,
    /// The checksum of the whole object's bytes (CRCs only).
    FullObject,
}

impl ChecksumType {
    /// `COMPOSITE` or `FULL_OBJECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Composite => "COMPOSITE",
            Self::FullObject => "FULL_OBJECT",
        }
    }

    /// The type of an S3 name, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Composite, Self::FullObject].into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The type of a stored value: a composite value ends `-N`.
    pub fn of_value(v: &str) -> Self {
        if v.contains('-') { Self::Composite } else { Self::FullObject }
    }
}

/// The running state of one algorithm over a stream of bytes.
pub struct Hasher {
    algorithm: Algorithm,
    state: State,
}

enum State {
    Crc(crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(Box<sha2::Sha512>),
    Md5(md5::Md5),
    Xxh64(Box<xxhash_rust::xxh64::Xxh64>),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3Default>),
}

impl Hasher {
    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc(d) => d.update(data),
            State::Sha1(d) => sha1::Digest::update(d, data),
            State::Sha256(d) => sha2::Digest::update(d, data),
            State::Sha512(d) => sha2::Digest::update(d.as_mut(), data),
            State::Md5(d) => d.update(data),
            State::Xxh64(d) => d.update(data),
            State::Xxh3(d) => d.update(data),
        }
    }

    /// The big-endian binary digest.
    pub fn finish_raw(self) -> Vec<u8> {
        let width = self.algorithm.digest_len();
        match self.state {
            State::Crc(d) => d.finalize().to_be_bytes()[8 - width..].to_vec(),
            State::Sha1(d) => sha1::Digest::finalize(d).to_vec(),
            State::Sha256(d) => sha2::Digest::finalize(d).to_vec(),
            State::Sha512(d) => sha2::Digest::finalize(*d).to_vec(),
            State::Md5(d) => d.finalize().to_vec(),
            State::Xxh64(d) => d.digest().to_be_bytes().to_vec(),
            State::Xxh3(d) if self.algorithm == Algorithm::Xxhash128 => d.digest128().to_be_bytes().to_vec(),
            State::Xxh3(d) => d.digest().to_be_bytes().to_vec(),
        }
    }

    /// The digest in base64, as S3 carries it.
    pub fn finish(self) -> String {
        base64_simd::STANDARD.encode_to_string(self.finish_raw())
    }
}

/// The hashers of one request body: every algorithm it asks for.
#[derive(Default)]
pub struct Hashers(Vec<Hasher>);

impl Hashers {
    /// Adds `a` unless it is there already.
    pub fn want(&mut self, a: Algorithm) {
        if !self.0.iter().any(|h| h.algorithm == a) {
            self.0.push(a.hasher());
        }
    }

    /// The algorithms asked for.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.0.iter().map(|h| h.algorithm).collect()
    }

    /// Feeds the next bytes to every hasher.
    pub fn update(&mut self, data: &[u8]) {
        for h in &mut self.0 {
            h.update(data);
        }
    }

    /// Each algorithm with its base64 value.
    pub fn finish(self) -> Vec<(Algorithm, String)> {
        self.0.into_iter().map(|h| (h.algorithm, h.finish())).collect()
    }
}

/// The checksum of a multipart object of `ty` from its parts' raw digests and sizes (in
/// part order), base64 (composite values end `-N`). `None` when `ty` is not allowed for
/// `a` or a part digest has the wrong length.
pub fn multipart(a: Algorithm, ty: ChecksumType, parts: &[(Vec<u8>, u64)]) -> Option<String> {
    if !a.allows(ty) || parts.iter().any(|(raw, _)| raw.len() != a.digest_len()) {
        return None;
    }
    match ty {
        ChecksumType::Composite => {
            let cat: Vec<u8> = parts.iter().flat_map(|(r, _)| r.iter().copied()).collect();
            Some(format!("{}-{}", base64_simd::STANDARD.encode_to_string(a.digest(&cat)), parts.len()))
        }
        ChecksumType::FullObject => {
            let crc = a.crc()?;
            let width = a.digest_len();
            let mut acc: Option<u64> = None;
            for (raw, size) in parts {
                let mut b = [0u8; 8];
                b[8 - width..].copy_from_slice(raw);
                let v = u64::from_be_bytes(b);
                acc = Some(match acc {
                    None => v,
                    Some(prev) => crc_fast::checksum_combine(crc, prev, v, *size),
                });
            }
            Some(base64_simd::STANDARD.encode_to_string(&acc?.to_be_bytes()[8 - width..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> String {
        base64_simd::STANDARD.encode_to_string(raw)
    }

    #[test]
    fn names_headers_and_lengths_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(&a.name().to_ascii_lowercase()), Some(a));
            assert_eq!(Algorithm::from_header(a.header()), Some(a));
            assert_eq!(a.header(), format!("x-amz-checksum-{}", a.name().to_ascii_lowercase()));
            assert_eq!(a.digest(b"abc").len(), a.digest_len(), "{a}");
        }
        assert_eq!(Algorithm::from_name("CRC16"), None);
        assert_eq!(Algorithm::from_header("x-amz-checksum-mode"), None);
    }

    #[test]
    fn digests_match_known_values() {
        // Reference values for "abc": Python hashlib and zlib, and awscrt (what the SDKs send).
        let want = [
            (Algorithm::Crc32, "NSRBwg=="),
            (Algorithm::Md5, "kAFQmDzST7DWlj99KOF/cg=="),
            (Algorithm::Sha1, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="),
            (Algorithm::Xxhash64, "RLws9a13CZk="),
            (Algorithm::Xxhash3, "eK9flIkvOVA="),
            (Algorithm::Xxhash128, "BrBatnM6YYV4r1+UiS85UA=="),
        ];
        for (a, v) in want {
            assert_eq!(b64(&a.digest(b"abc")), v, "{a}");
        }
    }

    #[test]
    fn full_object_crc_is_the_crc_of_the_whole() {
        let (x, y) = (b"hello, ".as_slice(), b"multipart world".as_slice());
        for a in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let parts = vec![(a.digest(x), x.len() as u64), (a.digest(y), y.len() as u64)];
            let whole = b64(&a.digest(&[x, y].concat()));
            assert_eq!(multipart(a, ChecksumType::FullObject, &parts).unwrap(), whole, "{a}");
        }
        let parts = vec![(Algorithm::Sha256.digest(x), 7)];
        assert_eq!(multipart(Algorithm::Sha256, ChecksumType::FullObject, &parts), None);
    }

    #[test]
    fn composite_is_the_digest_of_the_part_digests() {
        for a in Algorithm::ALL.into_iter().filter(|a| a.allows(ChecksumType::Composite)) {
            let (p1, p2) = (a.digest(b"a"), a.digest(b"b"));
            let want = format!("{}-2", b64(&a.digest(&[p1.clone(), p2.clone()].concat())));
            assert_eq!(multipart(a, ChecksumType::Composite, &[(p1, 1), (p2, 1)]).unwrap(), want, "{a}");
        }
        assert!(!Algorithm::Crc64Nvme.allows(ChecksumType::Composite));
        assert_eq!(ChecksumType::of_value("abc=-2"), ChecksumType::Composite);
        assert_eq!(ChecksumType::of_value("abc="), ChecksumType::FullObject);
    }
}
