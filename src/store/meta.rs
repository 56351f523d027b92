//! The metadata attribute and the ETag rules (SPEC.md "Metadata and ETags").
//!
//! Each object written by s3vol carries one extended attribute, [`META_XATTR`], holding its
//! HTTP metadata, user metadata, ETag, checksums, part sizes and a fingerprint of the file
//! taken at write time. The attribute is trusted only while the fingerprint still matches;
//! a file written or changed by a pod gets a synthesized ETag instead.

use std::collections::BTreeMap;
use std::ffi::CStr;

use md5::{Digest, Md5};
use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};

use super::fsx;

/// The extended attribute that holds [`ObjectMeta`]: compact binary for a plain object,
/// else JSON (see [`ObjectMeta::to_bytes`]).
pub const META_XATTR: &CStr = c"user.s3vol.meta";
/// The extended attribute on directories s3vol created: `auto` (made as a parent of a key)
/// or `marker` (made or claimed by a `k/` PUT, so listed as an object).
pub const DIR_XATTR: &CStr = c"user.s3vol.dir";

/// What a file looked like when its metadata was written: (inode, size, mtime in ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Fingerprint {
    /// The fingerprint of a file as `fstat` sees it now.
    pub fn of(st: &FileStat) -> Self {
        Self { ino: st.st_ino, size: st.st_size as u64, mtime_ns: fsx::mtime_ns(st) }
    }
}

/// Everything s3vol keeps about an object besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The ETag without quotes: 32 hex digits, or `<hex>-N` for a multipart object.
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires` as an HTTP date string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix, lower-case names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// Additional checksums by algorithm name ([`super::checksum::Algorithm::name`]), base64
    /// as S3 returns them; a composite multipart value ends `-N`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// Part sizes in bytes, for an object assembled from a multipart upload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// For a multipart object with a checksum: each part's value of the upload's
    /// algorithm, base64, in part order (HEAD/GET `partNumber`, GetObjectAttributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<String>,
    /// The file at write time; set by the writer, never by callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<Fingerprint>,
}

/// Tag byte of the compact encoding (JSON always starts with `{`).
const COMPACT: u8 = 1;
/// Length of the compact encoding: tag, content-type code, MD5, inode, size, mtime ns.
const COMPACT_LEN: usize = 2 + 16 + 8 + 8 + 8;
/// Content types the compact encoding names by their index (code 0: none stored).
const COMPACT_TYPES: [&str; 11] = [
    "application/octet-stream",
    "binary/octet-stream",
    "text/plain",
    "application/json",
    "application/x-tar",
    "application/gzip",
    "application/zip",
    "image/jpeg",
    "image/png",
    "text/csv",
    "text/html",
];

impl ObjectMeta {
    /// Encodes for the attribute.
    ///
    /// A plain object (single-part MD5 ETag, at most a common Content-Type, nothing else)
    /// takes 42 bytes of binary, small enough for ext4 to keep the attribute inside a
    /// 256-byte inode; as JSON (~145 bytes) it needs a 4 KiB attribute block per file, one
    /// more block to read for every HEAD, GET and listed key. Anything else is JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_compact().unwrap_or_else(|| serde_json::to_vec(self).expect("ObjectMeta serializes"))
    }

    fn to_compact(&self) -> Option<Vec<u8>> {
        let fp = self.fp?;
        let plain = self.content_encoding.is_none()
            && self.content_disposition.is_none()
            && self.content_language.is_none()
            && self.cache_control.is_none()
            && self.expires.is_none()
            && self.user.is_empty()
            && self.checksums.is_empty()
            && self.parts.is_empty()
            && self.part_checksums.is_empty();
        let etag = self.etag.as_bytes();
        if !plain || etag.len() != 32 || !etag.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let ct = match &self.content_type {
            None => 0,
            Some(t) => 1 + COMPACT_TYPES.iter().position(|c| c == t)? as u8,
        };
        let mtime = i64::try_from(fp.mtime_ns).ok()?;
        let mut out = Vec::with_capacity(COMPACT_LEN);
        out.extend_from_slice(&[COMPACT, ct]);
        out.extend_from_slice(&hex_simd::decode_to_vec(etag).ok()?);
        out.extend_from_slice(&fp.ino.to_le_bytes());
        out.extend_from_slice(&fp.size.to_le_bytes());
        out.extend_from_slice(&mtime.to_le_bytes());
        Some(out)
    }

    /// Decodes an attribute value (either encoding); `None` when it is not ours or is damaged.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.first() != Some(&COMPACT) {
            return serde_json::from_slice(b).ok();
        }
        if b.len() != COMPACT_LEN {
            return None;
        }
        let content_type = match b[1] {
            0 => None,
            c => Some((*COMPACT_TYPES.get(usize::from(c) - 1)?).to_owned()),
        };
        let word = |at: usize| <[u8; 8]>::try_from(&b[at..at + 8]).expect("8 bytes");
        let fp = Fingerprint {
            ino: u64::from_le_bytes(word(18)),
            size: u64::from_le_bytes(word(26)),
            mtime_ns: i128::from(i64::from_le_bytes(word(34))),
        };
        Some(Self { etag: hex_lower(&b[2..18]), content_type, fp: Some(fp), ..Self::default() })
    }
}

/// What the store knows about an object on disk.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch (S3 LastModified).
    pub mtime_ns: i128,
    /// The metadata: from the attribute when its fingerprint matches, else synthesized.
    pub meta: ObjectMeta,
    /// True when `meta` came from a valid attribute written by s3vol.
    pub from_xattr: bool,
}

impl ObjectInfo {
    /// The ETag in quotes, as HTTP carries it.
    pub fn quoted_etag(&self) -> String {
        format!("\"{}\"", self.meta.etag)
    }
}

/// The MD5 of an object's content, fed in order (the single-part ETag rule).
#[derive(Default, Clone)]
pub struct Md5Hasher(Md5);

impl Md5Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// MD5 of the empty string: the ETag of a directory marker object.
pub const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The ETag of a file s3vol did not write (or that changed since): a stable hash of
/// (inode, size, mtime ns) written as `<32 hex>-1`, so it changes when the file changes
/// and no client mistakes it for an MD5 of the content (SPEC.md). Never reads data.
///
/// Not the device: each mount of a network file system has its own device number, so the
/// nodes behind one endpoint would give one file different ETags (the aws CLI's ranged
/// download, whose ranges land on different nodes, then refuses the object).
pub fn synthesized_etag(st: &FileStat) -> String {
    let mut h = Md5::new();
    h.update(st.st_ino.to_le_bytes());
    h.update((st.st_size as u64).to_le_bytes());
    h.update(fsx::mtime_ns(st).to_le_bytes());
    format!("{}-1", hex_lower(&h.finalize()))
}

/// The multipart ETag: MD5 of the concatenated binary part MD5s, then `-N` (S3's rule).
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex_lower(&h.finalize()), part_md5s.len())
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    hex_simd::encode_to_string(bytes, hex_simd::AsciiCase::Lower)
}

/// Content-Type guessed from the key's extension, for files without metadata.
pub fn guess_content_type(key: &str) -> String {
    mime_guess::from_path(key).first_or_octet_stream().essence_str().to_owned()
}

/// Reads an object's metadata from the open file `fd` whose `fstat` is `st`.
///
/// The attribute is used only when its fingerprint equals `st`'s; otherwise (absent,
/// damaged, stale, or attributes unsupported) the ETag is synthesized and the content type
/// guessed from `key`.
pub fn load(fd: std::os::fd::BorrowedFd<'_>, st: &FileStat, key: &str, xattrs: bool) -> ObjectInfo {
    let size = st.st_size as u64;
    let mtime_ns = fsx::mtime_ns(st);
    if xattrs
        && let Ok(Some(raw)) = fsx::get_xattr(fd, META_XATTR)
        && let Some(meta) = ObjectMeta::from_bytes(&raw)
        && meta.fp == Some(Fingerprint::of(st))
    {
        return ObjectInfo { size, mtime_ns, meta, from_xattr: true };
    }
    let meta =
        ObjectMeta { etag: synthesized_etag(st), content_type: Some(guess_content_type(key)), ..ObjectMeta::default() };
    ObjectInfo { size, mtime_ns, meta, from_xattr: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(dev: u64, ino: u64, size: i64, mtime: i64, nsec: i64) -> FileStat {
        // SAFETY: FileStat is a plain C struct; all-zero is a valid value.
        let mut st: FileStat = unsafe { std::mem::zeroed() };
        st.st_dev = dev;
        st.st_ino = ino;
        st.st_size = size;
        st.st_mtime = mtime;
        st.st_mtime_nsec = nsec;
        st.st_mode = libc::S_IFREG | 0o644;
        st
    }

    #[test]
    fn plain_metadata_is_compact_and_round_trips() {
        let fp = Some(Fingerprint { ino: 835_940, size: 1 << 40, mtime_ns: 1_795_260_164_430_847_810 });
        let plain = ObjectMeta {
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: Some("binary/octet-stream".into()),
            fp,
            ..ObjectMeta::default()
        };
        let b = plain.to_bytes();
        assert_eq!(b.len(), COMPACT_LEN, "fits in an ext4 inode's attribute space");
        assert_eq!(ObjectMeta::from_bytes(&b), Some(plain.clone()));
        let untyped = ObjectMeta { content_type: None, ..plain.clone() };
        assert_eq!(ObjectMeta::from_bytes(&untyped.to_bytes()), Some(untyped));

        // Anything the compact form cannot hold stays JSON, and JSON written before still reads.
        let mut user = BTreeMap::new();
        user.insert("k".to_owned(), "v".to_owned());
        for m in [
            ObjectMeta { content_type: Some("text/x-rare".into()), ..plain.clone() },
            ObjectMeta { user, ..plain.clone() },
            ObjectMeta { etag: multipart_etag(&[[1; 16], [2; 16]]), parts: vec![5, 5], ..plain.clone() },
            ObjectMeta { cache_control: Some("no-cache".into()), ..plain.clone() },
            ObjectMeta { fp: fp.map(|f| Fingerprint { mtime_ns: i128::MAX, ..f }), ..plain.clone() },
            ObjectMeta { fp: None, ..plain.clone() },
        ] {
            let b = m.to_bytes();
            assert_eq!(b[0], b'{', "{m:?}");
            assert_eq!(ObjectMeta::from_bytes(&b), Some(m));
        }
        assert_eq!(ObjectMeta::from_bytes(&serde_json::to_vec(&plain).unwrap()), Some(plain));

        // Damaged or foreign values are not ours.
        for bad in [&b[..COMPACT_LEN - 1], &[COMPACT, 200, 0, 0][..], b"", b"not json"] {
            assert_eq!(ObjectMeta::from_bytes(bad), None);
        }
        let mut bad_type = b.clone();
        bad_type[1] = COMPACT_TYPES.len() as u8 + 1;
        assert_eq!(ObjectMeta::from_bytes(&bad_type), None);
    }

    #[test]
    fn synthesized_etag_shape_and_sensitivity() {
        let base = synthesized_etag(&stat_of(1, 2, 3, 4, 5));
        assert_eq!(base.len(), 34);
        assert!(base.ends_with("-1"));
        assert!(base[..32].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(base, synthesized_etag(&stat_of(1, 2, 3, 4, 5)), "stable");
        assert_eq!(base, synthesized_etag(&stat_of(9, 2, 3, 4, 5)), "the same file on another node's mount");
        for other in [stat_of(1, 9, 3, 4, 5), stat_of(1, 2, 9, 4, 5), stat_of(1, 2, 3, 9, 5), stat_of(1, 2, 3, 4, 9)] {
            assert_ne!(base, synthesized_etag(&other), "each field of the file's identity changes the ETag");
        }
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts, "a" and "b": known S3 result computed independently.
        let a: [u8; 16] = Md5::digest(b"a").into();
        let b: [u8; 16] = Md5::digest(b"b").into();
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        let want = format!("{}-2", hex_lower(&Md5::digest(&cat)));
        assert_eq!(multipart_etag(&[a, b]), want);
        assert_eq!(hex_lower(&Md5::digest(b"")), EMPTY_MD5);
    }

    #[test]
    fn meta_round_trip_and_guessing() {
        let mut m = ObjectMeta { etag: "abc".into(), content_type: Some("text/plain".into()), ..Default::default() };
        m.user.insert("name".into(), "Grüße, 世界".into());
        m.fp = Some(Fingerprint { ino: 1, size: 2, mtime_ns: 3 });
        assert_eq!(ObjectMeta::from_bytes(&m.to_bytes()), Some(m));
        assert_eq!(ObjectMeta::from_bytes(b"not json"), None);
        assert_eq!(guess_content_type("a/b.json"), "application/json");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
    }
}
