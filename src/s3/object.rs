//! Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::{self, blocking};
use super::convert::{self, etag, object_meta, refuse_unsupported_write_options, timestamp, unix_secs, user_metadata};
use crate::auth::Permission;
use crate::store::cond::{self, Condition};
use crate::store::meta::{ObjectInfo, ObjectMeta};
use crate::store::read::ObjectReader;
use crate::store::write::Writer;
use crate::store::{self, Volume};

/// S3 DeleteObjects: at most 1000 keys per request.
pub const MAX_DELETE_KEYS: usize = 1000;
/// Objects up to this size are read whole with the open, saving a thread hop per GET.
const SMALL_OBJECT: u64 = 256 * 1024;

/// Everything PUT-like shares: the checksum set a client sent, in one struct.
pub fn given_checksums(
    crc32: Option<String>,
    crc32c: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    crc64nvme: Option<String>,
) -> Checksum {
    Checksum {
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_crc64nvme: crc64nvme,
        ..Default::default()
    }
}

/// Streams a request body into `writer`, then checks that it was exactly the declared
/// length (`IncompleteBody` otherwise) and verifies Content-MD5 and every checksum
/// (headers and trailers) before anything is committed. Returns the writer (ready to
/// commit) and the checksums to store.
pub async fn receive_verified(
    body: Option<StreamingBlob>,
    writer: Writer,
    mut given: Checksum,
    algorithm: Option<&ChecksumAlgorithm>,
    content_md5: Option<&str>,
    headers: &http::HeaderMap,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<(Writer, Vec<(String, String)>)> {
    let hasher = body::hasher_for(&given, algorithm, headers)?;
    let (writer, computed) = match body {
        Some(b) => body::receive(b, writer, hasher).await?,
        None => (writer, hasher.finalize()),
    };
    // A body that ended short is reported as such, before the checksums it cannot match.
    writer.check_complete()?;
    body::add_trailers(&mut given, trailers);
    let checksums = body::verify(&given, &computed)?;
    body::verify_content_md5(content_md5, &writer.md5())?;
    Ok((writer, checksums))
}

/// The size a request body declares, in bytes: `x-amz-decoded-content-length` when the
/// body is aws-chunked, else `Content-Length`; `None` when that one is absent.
///
/// `aws_chunked` must be true only when s3s decoded the body as aws-chunked (a SigV4
/// `STREAMING-*` payload; the request then carries its trailing-headers handle). Anywhere
/// else the decoded length is a claim about nothing: S3 ignores it on a plain body, and
/// honouring it let a PUT reserve one byte and store gigabytes (issue 12). Whatever is
/// declared is then held to the bytes (see [`Writer::write`]).
pub fn declared_length(headers: &http::HeaderMap, content_length: Option<i64>, aws_chunked: bool) -> Option<u64> {
    let decoded =
        || headers.get("x-amz-decoded-content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    // s3s rewrites Content-Length to the decoded length of an aws-chunked body it decodes,
    // so the fallback agrees with the header.
    let from_header = if aws_chunked { decoded() } else { None };
    from_header.or_else(|| content_length.and_then(|n| u64::try_from(n).ok()))
}

/// Output checksums for a response, from stored pairs.
fn put_checksums(stored: &[(String, String)]) -> Checksum {
    body::checksum_from_meta(&stored.iter().cloned().collect())
}

impl S3Vol {
    pub(super) async fn do_put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        refuse_unsupported_write_options!(input);
        if input.write_offset_bytes.is_some() {
            return Err(s3_error!(NotImplemented, "Appends (x-amz-write-offset-bytes) are not supported"));
        }
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        // S3: a PUT declares its size; an aws-chunked body declares the decoded size.
        let declared = declared_length(&headers, input.content_length, trailers.is_some())
            .ok_or_else(|| s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))?;
        if key.is_dir_marker() {
            if declared > 0 {
                return Err(store::Error::MarkerWithBody.into());
            }
            let info = blocking(move || vol.put_marker(&key)).await?;
            return Ok(S3Response::new(PutObjectOutput { e_tag: Some(etag(&info.meta.etag)), ..Default::default() }));
        }
        let meta = object_meta(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.metadata,
            key.as_str(),
        )?;
        vol.check_metadata(&meta)?;
        let cond = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        if input.if_match.is_some() || input.if_none_match.is_some() {
            let (v, k) = (vol.clone(), key.clone());
            let current = blocking(move || match v.head(&k) {
                Ok(i) => Ok(Some(i)),
                Err(store::Error::NotFound) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
            check_write_conditions(input.if_match.as_ref(), input.if_none_match.as_ref(), current.as_ref())?;
        }
        if let Err(e) = vol.check_content_type(&meta) {
            return Err(body::refuse(input.body, &headers, e.into()).await);
        }
        let (v, k) = (vol.clone(), key.clone());
        let writer = match blocking(move || Writer::begin(v, k, declared)).await {
            Ok(w) => w,
            Err(e) => return Err(body::refuse(input.body, &headers, e).await),
        };
        let given = given_checksums(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_crc64nvme,
        );
        let (writer, checksums) = receive_verified(
            input.body,
            writer,
            given,
            input.checksum_algorithm.as_ref(),
            input.content_md5.as_deref(),
            &headers,
            trailers.as_ref(),
        )
        .await?;
        let mut meta = meta;
        meta.checksums = checksums.iter().cloned().collect();
        // Judged again, atomically, at the commit: the check above only spares the body.
        let info = blocking(move || writer.commit_if(meta, &cond)).await?;
        let c = put_checksums(&checksums);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&info.meta.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_crc64nvme: c.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    pub(super) async fn do_get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        // A small whole object is read with the open: on this thread when the lookup and
        // the bytes are cached on a local file system (as HEAD), else one trip to the
        // blocking pool.
        let whole = input.range.is_none() && input.part_number.is_none();
        let small = move |info: &ObjectInfo| whole && info.size <= SMALL_OBJECT;
        let (mut reader, info, early) = match ObjectReader::open_cached(&vol, &key) {
            Some(opened) => {
                let (mut reader, info) = opened?;
                let early = match small(&info).then(|| reader.next_block_cached(SMALL_OBJECT as usize)).flatten() {
                    Some(read) => Some(read?),
                    None => None,
                };
                (reader, info, early)
            }
            None => {
                let (v, k) = (vol.clone(), key.clone());
                blocking(move || {
                    let (mut reader, info) = ObjectReader::open(&v, &k)?;
                    let early = if small(&info) { Some(reader.next_block(SMALL_OBJECT as usize)?) } else { None };
                    Ok((reader, info, early))
                })
                .await?
            }
        };
        check_read_conditions(
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
            &info,
        )?;
        let (range, parts_count) = byte_range(input.range.as_ref(), input.part_number, &info)?;
        let content_range =
            range.as_ref().map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), info.size));
        let (start, end) = range.as_ref().map_or((0, info.size), |r| (r.start, r.end));
        reader.set_range(start, end);
        let len = end - start;
        let body = if let Some(data) = early {
            StreamingBlob::from(s3s::Body::from(data.unwrap_or_default()))
        } else if len <= SMALL_OBJECT {
            let data = blocking(move || {
                let mut out = bytes::BytesMut::with_capacity(len as usize);
                while let Some(b) = reader.next_block(body::READ_BLOCK)? {
                    out.extend_from_slice(&b);
                }
                Ok(out.freeze())
            })
            .await?;
            StreamingBlob::from(s3s::Body::from(data))
        } else {
            body::stream_out(reader)
        };
        let full = range.is_none();
        let checksums = if full && input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED") {
            body::checksum_from_meta(&info.meta.checksums)
        } else {
            Checksum::default()
        };
        let h = Described::new(&info);
        let output = GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            e_tag: Some(etag(&info.meta.etag)),
            last_modified: Some(timestamp(info.mtime_ns)),
            content_type: input.response_content_type.or(h.content_type),
            content_encoding: input.response_content_encoding.or(h.content_encoding),
            content_disposition: input.response_content_disposition.or(h.content_disposition),
            content_language: input.response_content_language.or(h.content_language),
            cache_control: input.response_cache_control.or(h.cache_control),
            expires: input.response_expires.or(h.expires),
            metadata: h.metadata,
            parts_count,
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        };
        let mut resp = S3Response::new(output);
        if range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    pub(super) async fn do_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        // Served on this thread when the lookup is cached on a local file system (one
        // blocking-pool hop costs more than the three syscalls): 22k -> 31k HEAD/s at 16.
        let info = match vol.head_cached(&key) {
            Some(r) => r?,
            None => blocking(move || vol.head(&key)).await?,
        };
        check_read_conditions(
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
            &info,
        )?;
        let (range, parts_count) = byte_range(input.range.as_ref(), input.part_number, &info)?;
        let len = range.as_ref().map_or(info.size, |r| r.end - r.start);
        let content_range =
            range.as_ref().map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), info.size));
        let checksums = if input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED") {
            body::checksum_from_meta(&info.meta.checksums)
        } else {
            Checksum::default()
        };
        let h = Described::new(&info);
        let output = HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            e_tag: Some(etag(&info.meta.etag)),
            last_modified: Some(timestamp(info.mtime_ns)),
            content_type: input.response_content_type.or(h.content_type),
            content_encoding: input.response_content_encoding.or(h.content_encoding),
            content_disposition: input.response_content_disposition.or(h.content_disposition),
            content_language: input.response_content_language.or(h.content_language),
            cache_control: input.response_cache_control.or(h.cache_control),
            expires: input.response_expires.or(h.expires),
            metadata: h.metadata,
            parts_count,
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        };
        let mut resp = S3Response::new(output);
        if range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    pub(super) async fn do_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        if input.if_match_last_modified_time.is_some() || input.if_match_size.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "x-amz-if-match-last-modified-time and x-amz-if-match-size are not supported"
            ));
        }
        // S3 (2025): If-Match deletes only the object with that ETag; 404 when there is none.
        let cond = write_condition(input.if_match.as_ref(), None)?;
        if cond == Condition::None {
            blocking(move || vol.delete(&key)).await?;
        } else {
            blocking(move || cond::delete_if(&vol, &key, &cond)).await?;
        }
        Ok(S3Response::with_status(DeleteObjectOutput::default(), http::StatusCode::NO_CONTENT))
    }

    pub(super) async fn do_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let objects = input.delete.objects;
        if objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(MalformedXML, "DeleteObjects accepts at most 1000 keys"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let vol = self.volume(&input.bucket)?;
        let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        // `S3Access` lets a key in scope but without `delete` through: as S3, the answer
        // is 200 with AccessDenied for every key, and nothing is deleted.
        let may_delete = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .is_some_and(|k| k.has(Permission::Delete));
        let results: Vec<(String, S3Result<()>)> = if may_delete {
            let done = blocking(move || Ok(delete_many(&vol, keys))).await?;
            done.into_iter().map(|(k, r)| (k, r.map_err(s3s::S3Error::from))).collect()
        } else {
            keys.into_iter().map(|k| (k, Err(s3_error!(AccessDenied, "Access Denied")))).collect()
        };
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, r) in results {
            match r {
                Ok(()) if !quiet => deleted.push(DeletedObject { key: Some(key), ..Default::default() }),
                Ok(()) => {}
                Err(e) => {
                    errors.push(Error {
                        code: Some(e.code().as_str().to_owned()),
                        key: Some(key),
                        message: e.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}

fn delete_many(vol: &Arc<Volume>, keys: Vec<String>) -> Vec<(String, store::Result<()>)> {
    keys.into_iter()
        .map(|k| {
            let r = vol.key(&k).and_then(|key| vol.delete(&key));
            (k, r)
        })
        .collect()
}

/// The HTTP metadata of an object as response fields.
struct Described {
    content_type: Option<ContentType>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
}

impl Described {
    fn new(info: &ObjectInfo) -> Self {
        let m: &ObjectMeta = &info.meta;
        Self {
            content_type: m.content_type.as_deref().and_then(|c| c.parse().ok()),
            content_encoding: m.content_encoding.clone(),
            content_disposition: m.content_disposition.clone(),
            content_language: m.content_language.clone(),
            cache_control: m.cache_control.clone(),
            expires: m.expires.as_deref().and_then(convert::parse_http_date),
            metadata: user_metadata(m),
        }
    }
}

/// GET/HEAD `Range` or `partNumber` → the byte range to serve (end exclusive) and, for
/// `partNumber`, the object's part count.
fn byte_range(
    range: Option<&Range>,
    part_number: Option<i32>,
    info: &ObjectInfo,
) -> S3Result<(Option<std::ops::Range<u64>>, Option<i32>)> {
    if let Some(n) = part_number {
        if range.is_some() {
            return Err(s3_error!(InvalidRequest, "Cannot specify both Range header and partNumber query parameter"));
        }
        let parts = &info.meta.parts;
        if parts.is_empty() {
            // A single-part object: partNumber=1 is the whole object.
            return if n == 1 { Ok((None, Some(1))) } else { Err(bad_part_number()) };
        }
        let idx = usize::try_from(n - 1).ok().filter(|i| *i < parts.len()).ok_or_else(bad_part_number)?;
        let start: u64 = parts[..idx].iter().sum();
        return Ok((Some(start..start + parts[idx]), Some(parts.len() as i32)));
    }
    match range {
        None => Ok((None, None)),
        Some(r) => match r.check(info.size) {
            Ok(rg) => Ok((Some(rg), None)),
            Err(_) => Err(s3_error!(InvalidRange, "The requested range is not satisfiable")),
        },
    }
}

/// RFC 7232 precedence, as S3: If-Match (412), else If-Unmodified-Since (412); then
/// If-None-Match (304), else If-Modified-Since (304).
pub fn check_read_conditions(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
    info: &ObjectInfo,
) -> S3Result<()> {
    let current = etag(&info.meta.etag);
    let mtime = (info.mtime_ns / 1_000_000_000) as i64;
    if let Some(c) = if_match {
        if !etag_matches(c, &current) {
            return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
        }
    } else if let Some(t) = if_unmodified_since
        && mtime > unix_secs(t)
    {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if let Some(c) = if_none_match {
        if etag_matches(c, &current) {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = if_modified_since
        && mtime <= unix_secs(t)
    {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

fn etag_matches(c: &ETagCondition, current: &ETag) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == current.value(),
    }
}

/// The condition a write commits under, from its `If-Match` / `If-None-Match` headers.
/// `If-None-Match` takes precedence (with both, the early check already refused one of
/// them); it supports only `*`, as S3.
pub fn write_condition(if_match: Option<&ETagCondition>, if_none_match: Option<&ETagCondition>) -> S3Result<Condition> {
    Ok(match (if_none_match, if_match) {
        (Some(ETagCondition::Any), _) => Condition::Absent,
        (Some(_), _) => return Err(s3_error!(NotImplemented, "If-None-Match on a write supports only '*'")),
        (None, Some(ETagCondition::Any)) => Condition::Exists,
        (None, Some(ETagCondition::ETag(e))) => Condition::Matches(e.value().to_owned()),
        (None, None) => Condition::None,
    })
}

/// Conditional writes (PutObject If-Match / If-None-Match: `*`): 412 when they do not hold.
fn check_write_conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    current: Option<&ObjectInfo>,
) -> S3Result<()> {
    let failed = || s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold");
    if let Some(c) = if_none_match {
        if !c.is_any() {
            return Err(s3_error!(NotImplemented, "If-None-Match on PUT supports only '*'"));
        }
        if current.is_some() {
            return Err(failed());
        }
    }
    if let Some(c) = if_match {
        let Some(info) = current else {
            return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
        };
        if !etag_matches(c, &etag(&info.meta.etag)) {
            return Err(failed());
        }
    }
    Ok(())
}

/// S3 answers an unsatisfiable `partNumber` with 416 InvalidPartNumber.
fn bad_part_number() -> s3s::S3Error {
    super::error::custom(
        "InvalidPartNumber",
        http::StatusCode::RANGE_NOT_SATISFIABLE,
        "The requested partnumber is not satisfiable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoded_length_counts_only_for_an_aws_chunked_body() {
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-decoded-content-length", http::HeaderValue::from_static("1"));
        assert_eq!(declared_length(&h, Some(5 << 20), false), Some(5 << 20), "a plain body: Content-Length");
        assert_eq!(declared_length(&h, Some(5 << 20), true), Some(1), "aws-chunked: the decoded length");
        assert_eq!(declared_length(&h, None, false), None);
        assert_eq!(declared_length(&http::HeaderMap::new(), Some(7), true), Some(7));
        assert_eq!(declared_length(&http::HeaderMap::new(), Some(-1), false), None);
    }
}
