//! Additional checksums on the wire: which algorithms a PUT or UploadPart asks for (headers
//! `x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm`, aws-chunked trailers named by
//! `x-amz-trailer`), their verification, and how values go back out.
//!
//! `s3s` 0.14.1 knows only five of S3's ten algorithms (its DTOs lack SHA512, MD5 and the
//! XXHASH family), so every value is read from the request's header map and trailers, and
//! written as response headers here, never through the DTO fields. In XML answers
//! (CompleteMultipartUpload, ListParts, GetObjectAttributes) a value of an algorithm s3s
//! lacks travels in the `ChecksumCRC32` field with a [`SENTINEL`] prefix, and the response
//! carries [`ExpandChecksumXml`], so that the server rewrites that element into its real
//! name ([`expand_xml`]) as the body goes out.

use s3s::dto::ChecksumAlgorithm;
use s3s::{S3Result, s3_error};

use crate::store::checksum::{Algorithm, ChecksumType, Hashers};

/// Headers of the `x-amz-checksum-` family that carry no value.
const NOT_VALUES: [&str; 3] = ["x-amz-checksum-mode", "x-amz-checksum-type", "x-amz-checksum-algorithm"];

/// The algorithm a PUT or UploadPart body is hashed with, and the values the client gave.
pub struct Requested {
    /// The hashers to run over the body (at most one algorithm, as S3 allows).
    pub hashers: Hashers,
    /// Values given in headers, `(algorithm, base64)`; trailers are added after the body.
    pub given: Vec<(Algorithm, String)>,
    /// Headers named in `x-amz-trailer` that must arrive after the body.
    pub trailers: Vec<Algorithm>,
}

/// The checksum a PUT or UploadPart asks for: a value header, the algorithm named by
/// `x-amz-sdk-checksum-algorithm`, a trailer named by `x-amz-trailer`, and `upload` (the
/// algorithm given at CreateMultipartUpload, applied to every part).
///
/// Errors (S3's): `InvalidRequest` for an unknown algorithm, a value that is not base64 of
/// the algorithm's digest length, more than one algorithm, or a part whose algorithm is
/// not the upload's.
pub fn requested(
    headers: &http::HeaderMap,
    sdk: Option<&ChecksumAlgorithm>,
    upload: Option<Algorithm>,
) -> S3Result<Requested> {
    let mut given = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if !n.starts_with("x-amz-checksum-") || NOT_VALUES.contains(&n) {
            continue;
        }
        let Some(a) = Algorithm::from_header(n) else {
            return Err(s3_error!(InvalidRequest, "The algorithm of the {n} header is not supported."));
        };
        let v = value.to_str().ok().filter(|v| a.decode(v).is_some()).ok_or_else(|| invalid_value(a))?;
        given.push((a, v.trim().to_owned()));
    }
    let mut trailers = Vec::new();
    if let Some(t) = headers.get("x-amz-trailer") {
        let t = t.to_str().map_err(|_| s3_error!(InvalidRequest, "The x-amz-trailer header is invalid."))?;
        for name in t.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let a = Algorithm::from_header(name)
                .ok_or_else(|| s3_error!(InvalidRequest, "The trailer {name} is not a supported checksum."))?;
            trailers.push(a);
        }
    }
    let named = match sdk {
        Some(s) => Some(
            Algorithm::from_name(s.as_str())
                .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm {} is not supported.", s.as_str()))?,
        ),
        None => None,
    };
    let mut algorithms: Vec<Algorithm> =
        given.iter().map(|(a, _)| *a).chain(trailers.iter().copied()).chain(named).collect();
    algorithms.sort();
    algorithms.dedup();
    if algorithms.len() > 1 {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ));
    }
    if let (Some(u), Some(&a)) = (upload, algorithms.first())
        && u != a
    {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            u.name().to_ascii_lowercase(),
            a.name().to_ascii_lowercase()
        ));
    }
    let mut hashers = Hashers::default();
    for a in algorithms.into_iter().chain(upload) {
        hashers.want(a);
    }
    Ok(Requested { hashers, given, trailers })
}

fn invalid_value(a: Algorithm) -> s3s::S3Error {
    s3_error!(InvalidRequest, "Value for {} header is invalid.", a.header())
}

/// Adds the values of the trailers `req` declared (after the body, from `s3s`'s handle).
///
/// Errors: `InvalidRequest` when a declared trailer is missing or invalid, or a trailer
/// carries a checksum `x-amz-trailer` did not declare.
pub fn add_trailers(req: &mut Requested, trailers: Option<&s3s::TrailingHeaders>) -> S3Result<()> {
    let map = trailers.and_then(|t| t.take()).unwrap_or_default();
    for (name, value) in &map {
        let Some(a) = Algorithm::from_header(name.as_str()) else { continue };
        if !req.trailers.contains(&a) {
            return Err(s3_error!(InvalidRequest, "The trailer {} was not declared in x-amz-trailer.", a.header()));
        }
        let v = value.to_str().ok().filter(|v| a.decode(v).is_some()).ok_or_else(|| invalid_value(a))?;
        req.given.retain(|(g, _)| *g != a);
        req.given.push((a, v.trim().to_owned()));
    }
    for a in &req.trailers {
        if !req.given.iter().any(|(g, _)| g == a) {
            return Err(s3_error!(InvalidRequest, "The trailer {} declared in x-amz-trailer is missing.", a.header()));
        }
    }
    Ok(())
}

/// Compares the given values with the computed ones: `BadDigest` on a mismatch (S3's
/// message). Returns the computed values, to store with the object or part.
pub fn verify(given: &[(Algorithm, String)], computed: Vec<(Algorithm, String)>) -> S3Result<Vec<(Algorithm, String)>> {
    for (a, want) in given {
        if computed.iter().find(|(c, _)| c == a).is_some_and(|(_, got)| got != want) {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                a.header()
            ));
        }
    }
    Ok(computed)
}

/// Values as stored in the metadata: algorithm name → base64.
pub fn to_stored(values: &[(Algorithm, String)]) -> std::collections::BTreeMap<String, String> {
    values.iter().map(|(a, v)| (a.name().to_owned(), v.clone())).collect()
}

/// Values as `(ALGORITHM name, base64)` pairs, as the part store keeps them.
pub fn to_pairs(values: &[(Algorithm, String)]) -> Vec<(String, String)> {
    values.iter().map(|(a, v)| (a.name().to_owned(), v.clone())).collect()
}

/// Stored values back as typed pairs (names s3vol does not know are skipped).
pub fn from_stored(stored: &std::collections::BTreeMap<String, String>) -> Vec<(Algorithm, String)> {
    stored.iter().filter_map(|(k, v)| Algorithm::from_name(k).map(|a| (a, v.clone()))).collect()
}

/// Sets `x-amz-checksum-<alg>` for each value, and `x-amz-checksum-type` when given.
pub fn set_headers(h: &mut http::HeaderMap, values: &[(Algorithm, String)], ty: Option<ChecksumType>) {
    for (a, v) in values {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(a.header(), v);
        }
    }
    if let Some(t) = ty.filter(|_| !values.is_empty()) {
        h.insert("x-amz-checksum-type", http::HeaderValue::from_static(t.as_str()));
    }
}

/// Marks a value in the `ChecksumCRC32` element of an XML answer as belonging to another
/// algorithm: `<ChecksumCRC32>{SENTINEL}SHA512:<base64></ChecksumCRC32>`.
pub const SENTINEL: &str = "s3vol-checksum:";

/// A response extension: the XML body may hold [`SENTINEL`] values to expand, and (for
/// GetObjectAttributes, where S3 writes the ETag bare) an `<ETag>` to unquote.
#[derive(Debug, Clone, Copy)]
pub struct ExpandChecksumXml {
    pub unquote_etag: bool,
}

impl ExpandChecksumXml {
    /// The rewritten XML frame `data`; `None` when it needs no change.
    pub fn rewrite(self, data: &[u8]) -> Option<Vec<u8>> {
        let expanded = expand_xml(data);
        if !self.unquote_etag {
            return expanded;
        }
        let text = std::str::from_utf8(expanded.as_deref().unwrap_or(data)).ok()?;
        if !text.contains("<ETag>\"") {
            return expanded;
        }
        Some(text.replace("<ETag>\"", "<ETag>").replace("\"</ETag>", "</ETag>").into_bytes())
    }
}

/// The five checksum fields `s3s`'s XML DTOs have.
#[derive(Debug, Default)]
pub struct XmlFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    /// True when a value needs [`expand_xml`] (the response must carry [`ExpandChecksumXml`]).
    pub expand: bool,
}

impl XmlFields {
    /// The DTO fields for `values`; an algorithm s3s lacks goes into the free CRC32 field
    /// behind [`SENTINEL`].
    pub fn of(values: &[(Algorithm, String)]) -> Self {
        let mut f = Self::default();
        for (a, v) in values {
            let slot = match a {
                Algorithm::Crc32 => &mut f.crc32,
                Algorithm::Crc32c => &mut f.crc32c,
                Algorithm::Crc64Nvme => &mut f.crc64nvme,
                Algorithm::Sha1 => &mut f.sha1,
                Algorithm::Sha256 => &mut f.sha256,
                _ => {
                    if f.crc32.is_none() {
                        f.crc32 = Some(format!("{SENTINEL}{}:{v}", a.name()));
                        f.expand = true;
                    }
                    continue;
                }
            };
            *slot = Some(v.clone());
        }
        f
    }
}

/// Fills the five `checksum_*` fields of an `s3s` DTO from [`XmlFields`].
macro_rules! set_checksum_fields {
    ($dto:expr, $f:expr) => {{
        let f: &$crate::s3::checksum::XmlFields = &$f;
        $dto.checksum_crc32 = f.crc32.clone();
        $dto.checksum_crc32c = f.crc32c.clone();
        $dto.checksum_crc64nvme = f.crc64nvme.clone();
        $dto.checksum_sha1 = f.sha1.clone();
        $dto.checksum_sha256 = f.sha256.clone();
    }};
}
pub(crate) use set_checksum_fields;

/// Rewrites each `<ChecksumCRC32>{SENTINEL}NAME:value</ChecksumCRC32>` in an XML body into
/// `<ChecksumNAME>value</ChecksumNAME>`; `None` when there is none. Only a known algorithm
/// name is written out.
pub fn expand_xml(data: &[u8]) -> Option<Vec<u8>> {
    const OPEN: &str = "<ChecksumCRC32>";
    const CLOSE: &str = "</ChecksumCRC32>";
    let text = std::str::from_utf8(data).ok()?;
    let marker = format!("{OPEN}{SENTINEL}");
    if !text.contains(&marker) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        let inner = &after[..end];
        match inner.split_once(':').and_then(|(n, v)| Algorithm::from_name(n).map(|a| (a, v))) {
            Some((a, v)) => {
                let el = a.xml_element();
                out.push_str(&format!("<{el}>{v}</{el}>"));
            }
            None => out.push_str(&rest[at..at + marker.len() + end + CLOSE.len()]),
        }
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn one_algorithm_per_body_with_valid_values() {
        let ok = requested(&headers(&[("x-amz-checksum-xxhash64", "RLws9a13CZk=")]), None, None).unwrap();
        assert_eq!(ok.hashers.algorithms(), vec![Algorithm::Xxhash64]);
        let code = |h: &[(&str, &str)], up| requested(&headers(h), None, up).err().unwrap().code().as_str().to_owned();
        assert_eq!(code(&[("x-amz-checksum-sha512", "AAAA")], None), "InvalidRequest", "wrong length");
        assert_eq!(
            code(&[("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-checksum-md5", "kAFQmDzST7DWlj99KOF/cg==")], None),
            "InvalidRequest"
        );
        assert_eq!(code(&[("x-amz-checksum-whirlpool", "AAAA")], None), "InvalidRequest");
        assert_eq!(code(&[("x-amz-trailer", "x-amz-checksum-crc16")], None), "InvalidRequest");
        assert_eq!(code(&[("x-amz-checksum-crc32", "NSRBwg==")], Some(Algorithm::Sha256)), "InvalidRequest");
        let part = requested(&headers(&[]), None, Some(Algorithm::Md5)).unwrap();
        assert_eq!(part.hashers.algorithms(), vec![Algorithm::Md5], "the upload's algorithm applies to every part");
    }

    #[test]
    fn xml_values_of_algorithms_s3s_lacks_are_expanded() {
        let f = XmlFields::of(&[(Algorithm::Sha512, "q+/=".into())]);
        assert!(f.expand);
        let body = format!("<Part><ChecksumCRC32>{}</ChecksumCRC32><Size>3</Size></Part>", f.crc32.unwrap());
        let out = String::from_utf8(expand_xml(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(out, "<Part><ChecksumSHA512>q+/=</ChecksumSHA512><Size>3</Size></Part>");
        assert_eq!(expand_xml(b"<ChecksumCRC32>NSRBwg==</ChecksumCRC32>"), None);
        let f = XmlFields::of(&[(Algorithm::Crc32, "NSRBwg==".into())]);
        assert!(!f.expand);
        assert_eq!(f.crc32.as_deref(), Some("NSRBwg=="));
    }
}
