//! Conversions between S3 wire values and store values: timestamps, ETags, HTTP metadata,
//! `encoding-type=url`, and the request checks shared by PUT, copy and multipart.

use std::collections::BTreeMap;

use s3s::dto::{ETag, Metadata, Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};

use crate::store::meta::ObjectMeta;

/// A Timestamp from ns since the epoch.
pub fn timestamp(ns: i128) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

/// Seconds since the epoch of a Timestamp (HTTP dates have one-second precision).
pub fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// The S3 ETag value for a stored (unquoted) ETag.
pub fn etag(s: &str) -> ETag {
    ETag::Strong(s.to_owned())
}

/// Formats `Expires` for storage as an HTTP date.
pub fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// Parses a stored `Expires` back.
pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// S3: user metadata (`x-amz-meta-*` names plus values, UTF-8 bytes) is at most 2 KB.
pub const MAX_USER_METADATA: usize = 2048;

/// The HTTP metadata of a PUT / CreateMultipartUpload / CopyObject(REPLACE), as stored.
/// `aws-chunked` is a transfer detail, never stored (SPEC.md).
///
/// Errors: `MetadataTooLarge` past [`MAX_USER_METADATA`] (checked before any body byte).
#[allow(clippy::too_many_arguments)]
pub fn object_meta(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    user: Option<Metadata>,
    key: &str,
) -> S3Result<ObjectMeta> {
    let user_bytes: usize = user.as_ref().map_or(0, |m| m.iter().map(|(k, v)| k.len() + v.len()).sum());
    if user_bytes > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size of 2 KB"
        ));
    }
    let content_encoding = content_encoding.and_then(|ce| {
        let kept: Vec<&str> =
            ce.split(',').map(str::trim).filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty()).collect();
        (!kept.is_empty()).then(|| kept.join(", "))
    });
    Ok(ObjectMeta {
        etag: String::new(),
        content_type: Some(content_type.unwrap_or_else(|| crate::store::meta::guess_content_type(key))),
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(http_date),
        user: user.map(|m| m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()).unwrap_or_default(),
        checksums: BTreeMap::new(),
        parts: Vec::new(),
        part_checksums: Vec::new(),
        fp: None,
    })
}

/// User metadata for a response.
pub fn user_metadata(m: &ObjectMeta) -> Option<Metadata> {
    (!m.user.is_empty()).then(|| m.user.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Runs [`check_acl`] and [`check_unsupported`] on a PutObject, CopyObject or
/// CreateMultipartUpload input: the three s3s input types carry the same header fields
/// but share no trait.
macro_rules! refuse_unsupported_write_options {
    ($input:expr) => {{
        let i = &$input;
        $crate::s3::convert::check_acl(
            i.acl.as_ref().map(|a| a.as_str()),
            i.grant_full_control.is_some()
                || i.grant_read.is_some()
                || i.grant_read_acp.is_some()
                || i.grant_write_acp.is_some(),
        )?;
        $crate::s3::convert::check_unsupported(
            i.server_side_encryption.is_some() || i.sse_customer_algorithm.is_some() || i.ssekms_key_id.is_some(),
            i.tagging.is_some(),
            i.object_lock_mode.is_some() || i.object_lock_legal_hold_status.is_some(),
            i.storage_class.as_ref().map(|s| s.as_str()),
        )?;
    }};
}
pub(crate) use refuse_unsupported_write_options;

/// Refuses the ACL and grant headers s3vol does not implement. `private` and
/// `bucket-owner-full-control` are accepted and ignored (SPEC.md).
pub fn check_acl(acl: Option<&str>, has_grants: bool) -> S3Result<()> {
    if has_grants {
        return Err(s3_error!(NotImplemented, "ACL grants are not supported"));
    }
    match acl {
        None | Some("private") | Some("bucket-owner-full-control") => Ok(()),
        Some(other) => Err(s3_error!(NotImplemented, "The canned ACL {other} is not supported; objects are private")),
    }
}

/// Refuses features that are unsupported by design when a request asks for them.
pub fn check_unsupported(sse: bool, tagging: bool, lock: bool, storage_class: Option<&str>) -> S3Result<()> {
    if sse {
        return Err(s3_error!(NotImplemented, "Server-side encryption is not supported"));
    }
    if tagging {
        return Err(s3_error!(NotImplemented, "Object tagging is not supported"));
    }
    if lock {
        return Err(s3_error!(NotImplemented, "Object lock is not supported"));
    }
    match storage_class {
        None | Some("STANDARD") => Ok(()),
        Some(_) => Err(s3_error!(InvalidStorageClass, "Only the STANDARD storage class is supported")),
    }
}

/// `encoding-type=url`: percent-encodes a key, keeping `/` readable (botocore decodes with
/// `unquote_plus`, so a literal `+` must be encoded, and is).
pub fn url_encode(s: &str) -> String {
    urlencoding::encode(s).replace("%2F", "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_never_stored() {
        let m = object_meta(None, Some("aws-chunked".into()), None, None, None, None, None, "x.txt").unwrap();
        assert_eq!(m.content_encoding, None);
        let m = object_meta(None, Some("aws-chunked, gzip".into()), None, None, None, None, None, "x.txt").unwrap();
        assert_eq!(m.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn user_metadata_is_capped_at_2_kb() {
        let meta = |n: usize| Some([("k".to_owned(), "v".repeat(n))].into_iter().collect::<Metadata>());
        assert!(object_meta(None, None, None, None, None, None, meta(2047), "x").is_ok());
        let e = object_meta(None, None, None, None, None, None, meta(2048), "x").unwrap_err();
        assert_eq!(e.code().as_str(), "MetadataTooLarge");
    }

    #[test]
    fn url_encoding_for_listings() {
        assert_eq!(url_encode("a b+c/d#é?"), "a%20b%2Bc/d%23%C3%A9%3F");
    }

    #[test]
    fn http_dates_round_trip() {
        let t = timestamp(1_700_000_000_000_000_000);
        let s = http_date(&t).unwrap();
        assert_eq!(unix_secs(&parse_http_date(&s).unwrap()), 1_700_000_000);
    }
}
