//! Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::{self, blocking};
use super::checksum;
use super::convert::{self, etag, object_meta, refuse_unsupported_write_options, timestamp, unix_secs};
use super::read;
use crate::auth::Permission;
use crate::store::checksum::{Algorithm, ChecksumType};
use crate::store::cond::{self, Condition};
use crate::store::meta::ObjectInfo;
use crate::store::read::ObjectReader;
use crate::store::write::Writer;
use crate::store::{self, Volume};

/// S3 DeleteObjects: at most 1000 keys per request.
pub const MAX_DELETE_KEYS: usize = 1000;
/// Objects up to this size are read whole with the open, saving a thread hop per GET.
const SMALL_OBJECT: u64 = 256 * 1024;

/// Streams a request body into `writer`, then checks that it was exactly the declared
/// length (`IncompleteBody` otherwise) and verifies Content-MD5 and every checksum
/// (headers and trailers) before anything is committed. Returns the writer (ready to
/// commit) and the checksums to store.
pub async fn receive_verified(
    body: Option<StreamingBlob>,
    writer: Writer,
    mut requested: checksum::Requested,
    content_md5: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<(Writer, Vec<(Algorithm, String)>)> {
    let hashers = std::mem::take(&mut requested.hashers);
    let (writer, computed) = match body {
        Some(b) => body::receive(b, writer, hashers).await?,
        None => (writer, hashers.finish()),
    };
    // A body that ended short is reported as such, before the checksums it cannot match.
    writer.check_complete()?;
    checksum::add_trailers(&mut requested, trailers)?;
    let checksums = checksum::verify(&requested.given, computed)?;
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

/// The declared body size ([`declared_length`]), or `None` for a chunked body without a
/// length (`no_length`: the request carries [`crate::guard::NoLength`]).
///
/// Errors: `MissingContentLength` when neither.
pub fn declared_or_streamed(
    no_length: bool,
    headers: &http::HeaderMap,
    content_length: Option<i64>,
    aws_chunked: bool,
) -> S3Result<Option<u64>> {
    if no_length {
        return Ok(None);
    }
    declared_length(headers, content_length, aws_chunked)
        .map(Some)
        .ok_or_else(|| s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))
}

impl S3Vol {
    pub(super) async fn do_put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let no_length = req.extensions.get::<crate::guard::NoLength>().is_some();
        let input = req.input;
        refuse_unsupported_write_options!(input);
        if input.write_offset_bytes.is_some() {
            return Err(s3_error!(NotImplemented, "Appends (x-amz-write-offset-bytes) are not supported"));
        }
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        // S3: a PUT declares its size; an aws-chunked body declares the decoded size. A
        // chunked body without a length is streamed with its limits judged as it arrives.
        let declared = declared_or_streamed(no_length, &headers, input.content_length, trailers.is_some())?;
        if key.is_dir_marker() {
            if declared != Some(0) {
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
        let requested = match checksum::requested(&headers, input.checksum_algorithm.as_ref(), None) {
            Ok(r) => r,
            Err(e) => return Err(body::refuse(input.body, &headers, e).await),
        };
        let (v, k) = (vol.clone(), key.clone());
        let writer = match blocking(move || match declared {
            Some(n) => Writer::begin(v, k, n),
            None => Writer::begin_unsized(v, k, u64::MAX),
        })
        .await
        {
            Ok(w) => w,
            Err(e) => return Err(body::refuse(input.body, &headers, e).await),
        };
        let (writer, checksums) =
            receive_verified(input.body, writer, requested, input.content_md5.as_deref(), trailers.as_ref()).await?;
        let mut meta = meta;
        meta.checksums = checksum::to_stored(&checksums);
        // Judged again, atomically, at the commit: the check above only spares the body.
        let info = blocking(move || writer.commit_if(meta, &cond)).await?;
        let mut resp = S3Response::new(PutObjectOutput { e_tag: Some(etag(&info.meta.etag)), ..Default::default() });
        checksum::set_headers(&mut resp.headers, &checksums, Some(ChecksumType::FullObject));
        Ok(resp)
    }

    pub(super) async fn do_get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        read::check_part_number(input.part_number)?;
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
        let mut input = input;
        let overrides = read::overrides!(input);
        let a = read::answer(&info, input.range.as_ref(), input.part_number, input.checksum_mode.as_ref(), overrides)?;
        let (start, end) = a.range.as_ref().map_or((0, info.size), |r| (r.start, r.end));
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
        let mut resp = S3Response::new(GetObjectOutput { body: Some(body), ..a.output });
        resp.headers = a.headers;
        if a.range.is_some() {
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
        read::check_part_number(input.part_number)?;
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
        let mut input = input;
        let overrides = read::overrides!(input);
        let a = read::answer(&info, input.range.as_ref(), input.part_number, input.checksum_mode.as_ref(), overrides)?;
        let mut resp = S3Response::new(read::head_output(a.output));
        resp.headers = a.headers;
        if a.range.is_some() {
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
            return Err(not_modified(info));
        }
    } else if let Some(t) = if_modified_since
        && mtime <= unix_secs(t)
    {
        return Err(not_modified(info));
    }
    Ok(())
}

/// The 304 of a GET or HEAD whose condition held the object back: its `ETag` and
/// `Last-Modified` headers (RFC 9110 15.4.5, as S3 sends them) and no body (the server
/// drops the body of every 304).
fn not_modified(info: &ObjectInfo) -> s3s::S3Error {
    let mut e = s3s::S3Error::new(s3s::S3ErrorCode::NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", info.meta.etag)) {
        h.insert(http::header::ETAG, v);
    }
    if let Some(v) = convert::http_date(&timestamp(info.mtime_ns)).and_then(|d| http::HeaderValue::from_str(&d).ok()) {
        h.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(h);
    e
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
