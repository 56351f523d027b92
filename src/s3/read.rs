//! What GET and HEAD answer about an object, built once for both ([`answer`]): ETag,
//! Last-Modified, the content headers (with the `response-*` overrides), user metadata,
//! the part count and byte range of `partNumber` or `Range`, and, with
//! `x-amz-checksum-mode: ENABLED`, the stored checksum and its type.

use std::ops::Range as Bytes;

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use super::checksum;
use super::convert::{self, etag, timestamp, user_metadata};
use crate::store::checksum::ChecksumType;
use crate::store::meta::ObjectInfo;

/// S3: a part number is 1..=10000.
pub const MAX_PART_NUMBER: i32 = 10_000;

/// The `response-*` query overrides of GET and HEAD.
#[derive(Default)]
pub struct Overrides {
    pub content_type: Option<ContentType>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<Timestamp>,
}

/// The [`Overrides`] of a `GetObjectInput` or `HeadObjectInput` (same field names).
macro_rules! overrides {
    ($input:expr) => {
        $crate::s3::read::Overrides {
            content_type: $input.response_content_type.take(),
            content_encoding: $input.response_content_encoding.take(),
            content_disposition: $input.response_content_disposition.take(),
            content_language: $input.response_content_language.take(),
            cache_control: $input.response_cache_control.take(),
            expires: $input.response_expires.take(),
        }
    };
}
pub(crate) use overrides;

/// The answer to a GET or HEAD, without the body.
pub struct Answer {
    /// Every output field GET and HEAD share (the body is left out).
    pub output: GetObjectOutput,
    /// Headers s3s's DTOs cannot carry: the checksum (any of the ten algorithms) and its type.
    pub headers: http::HeaderMap,
    /// The bytes to serve (end exclusive); `None` for the whole object (status 200, else 206).
    pub range: Option<Bytes<u64>>,
}

/// S3 GET/HEAD: `partNumber` must be 1..=10000, else 400 InvalidArgument (a non-numeric one
/// is refused the same way by s3s's query parser).
pub fn check_part_number(n: Option<i32>) -> S3Result<()> {
    match n {
        Some(n) if !(1..=MAX_PART_NUMBER).contains(&n) => {
            Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"))
        }
        _ => Ok(()),
    }
}

/// Builds what GET and HEAD answer for `info`.
///
/// `partNumber` (S3): on a multipart object the part's bytes with `x-amz-mp-parts-count`;
/// on any other object part 1 is the whole object (no parts count), and a part past the
/// last is 416 InvalidPartNumber; with `Range` too, 400 InvalidRequest. With checksum mode
/// the checksum is the whole object's, or the part's for `partNumber` on a multipart
/// object; a plain `Range` gets none (it would not match the bytes).
pub fn answer(
    info: &ObjectInfo,
    range: Option<&Range>,
    part_number: Option<i32>,
    checksum_mode: Option<&ChecksumMode>,
    o: Overrides,
) -> S3Result<Answer> {
    check_part_number(part_number)?;
    let meta = &info.meta;
    let (range, parts_count, part) = match (part_number, range) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(InvalidRequest, "Cannot specify both Range header and partNumber query parameter"));
        }
        (Some(n), None) if meta.parts.is_empty() => {
            if n != 1 {
                return Err(bad_part_number());
            }
            (None, None, None)
        }
        (Some(n), None) => {
            let idx = usize::try_from(n - 1).ok().filter(|i| *i < meta.parts.len()).ok_or_else(bad_part_number)?;
            let start: u64 = meta.parts[..idx].iter().sum();
            (Some(start..start + meta.parts[idx]), Some(meta.parts.len() as i32), Some(idx))
        }
        (None, Some(r)) => match r.check(info.size) {
            Ok(rg) => (Some(rg), None, None),
            Err(_) => return Err(s3_error!(InvalidRange, "The requested range is not satisfiable")),
        },
        (None, None) => (None, None, None),
    };
    let mut headers = http::HeaderMap::new();
    if checksum_mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED) {
        let whole = checksum::from_stored(&meta.checksums);
        match part {
            Some(idx) => {
                let alg = whole.first().map(|(a, _)| *a);
                if let (Some(a), Some(v)) = (alg, meta.part_checksums.get(idx)) {
                    checksum::set_headers(&mut headers, &[(a, v.clone())], None);
                }
            }
            None if range.is_none() => {
                let ty = whole.first().map(|(_, v)| ChecksumType::of_value(v));
                checksum::set_headers(&mut headers, &whole, ty);
            }
            None => {}
        }
    }
    let content_range = range.as_ref().map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), info.size));
    let len = range.as_ref().map_or(info.size, |r| r.end - r.start);
    let output = GetObjectOutput {
        accept_ranges: Some("bytes".into()),
        content_length: Some(len as i64),
        content_range,
        e_tag: Some(etag(&meta.etag)),
        last_modified: Some(timestamp(info.mtime_ns)),
        content_type: o.content_type.or_else(|| meta.content_type.as_deref().and_then(|c| c.parse().ok())),
        content_encoding: o.content_encoding.or_else(|| meta.content_encoding.clone()),
        content_disposition: o.content_disposition.or_else(|| meta.content_disposition.clone()),
        content_language: o.content_language.or_else(|| meta.content_language.clone()),
        cache_control: o.cache_control.or_else(|| meta.cache_control.clone()),
        expires: o.expires.or_else(|| meta.expires.as_deref().and_then(convert::parse_http_date)),
        metadata: user_metadata(meta),
        parts_count,
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    };
    Ok(Answer { output, headers, range })
}

/// The HEAD output of an [`Answer`]: the same fields.
pub fn head_output(g: GetObjectOutput) -> HeadObjectOutput {
    HeadObjectOutput {
        accept_ranges: g.accept_ranges,
        content_length: g.content_length,
        content_range: g.content_range,
        e_tag: g.e_tag,
        last_modified: g.last_modified,
        content_type: g.content_type,
        content_encoding: g.content_encoding,
        content_disposition: g.content_disposition,
        content_language: g.content_language,
        cache_control: g.cache_control,
        expires: g.expires,
        metadata: g.metadata,
        parts_count: g.parts_count,
        storage_class: g.storage_class,
        ..Default::default()
    }
}

/// S3 answers an unsatisfiable `partNumber` with 416 InvalidPartNumber.
fn bad_part_number() -> s3s::S3Error {
    super::error::custom(
        "InvalidPartNumber",
        http::StatusCode::RANGE_NOT_SATISFIABLE,
        "The requested partnumber is not satisfiable",
    )
}
