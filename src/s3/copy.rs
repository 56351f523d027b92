//! CopyObject: within and across volumes, COPY/REPLACE metadata directive, copy-source
//! conditions, and copy onto itself (REPLACE only, rewriting metadata in place); and
//! UploadPartCopy: a byte range of an object (any volume the key may read) as a part.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::convert::{etag, object_meta, refuse_unsupported_write_options, timestamp};
use super::object::check_read_conditions;
use std::sync::Arc;

use crate::store::meta::ObjectInfo;
use crate::store::read::ObjectReader;
use crate::store::write::{Writer, rewrite_meta};
use crate::store::{self, Volume, multipart};

/// Copy block size.
const COPY_BLOCK: usize = 1 << 20;

impl S3Vol {
    /// The volume and key a copy reads (`x-amz-copy-source`). Access points and versions
    /// are not supported.
    fn copy_source(&self, src: &CopySource) -> S3Result<(Arc<Volume>, store::ObjectKey)> {
        let CopySource::Bucket { bucket, key, version_id } = src else {
            return Err(s3_error!(NotImplemented, "Access points are not supported"));
        };
        if version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        let vol = self.volume(bucket)?;
        let key = vol.key(key)?;
        Ok((vol, key))
    }

    pub(super) async fn do_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        // Read on the source was checked with write on the destination (auth.rs).
        let (src_vol, src) = self.copy_source(&input.copy_source)?;
        refuse_unsupported_write_options!(input);
        let dst_vol = self.volume(&input.bucket)?;
        let dst = dst_vol.key(&input.key)?;
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let same = src_vol.name == dst_vol.name && src == dst;
        if same && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        if dst.is_dir_marker() || src.is_dir_marker() {
            return Err(s3_error!(InvalidRequest, "Directory keys ending with '/' cannot be copied"));
        }
        let (v, k) = (src_vol.clone(), src.clone());
        let (reader, info) = blocking(move || ObjectReader::open(&v, &k)).await?;
        check_copy_conditions(
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
            &info,
        )?;
        let meta = if replace {
            object_meta(
                input.content_type.map(|c| c.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
                input.metadata,
                dst.as_str(),
            )?
        } else {
            let mut m = info.meta.clone();
            m.etag.clear();
            m.parts.clear();
            m.part_checksums.clear();
            m.checksums.clear();
            m.fp = None;
            m
        };
        if replace {
            dst_vol.check_metadata(&meta)?;
        }
        let size = info.size;
        let out = if same {
            drop(reader);
            blocking(move || rewrite_meta(&dst_vol, &dst, meta)).await?
        } else {
            blocking(move || {
                let mut reader = reader;
                let mut w = Writer::begin(dst_vol, dst, size)?;
                while let Some(block) = reader.next_block(COPY_BLOCK)? {
                    w.write(&block)?;
                }
                w.commit(meta)
            })
            .await?
        };
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&out.meta.etag)),
                last_modified: Some(timestamp(out.mtime_ns)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn do_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        // Read on the source was checked with write on the destination (auth.rs).
        let (src_vol, src) = self.copy_source(&input.copy_source)?;
        if input.sse_customer_algorithm.is_some() || input.copy_source_sse_customer_algorithm.is_some() {
            return Err(s3_error!(NotImplemented, "Server-side encryption is not supported"));
        }
        let dst_vol = self.volume(&input.bucket)?;
        let dst = dst_vol.key(&input.key)?;
        if src.is_dir_marker() {
            return Err(s3_error!(InvalidRequest, "Directory keys ending with '/' cannot be copied"));
        }
        let number = u32::try_from(input.part_number).map_err(|_| crate::store::Error::InvalidPartNumber)?;
        let (v, k) = (src_vol.clone(), src.clone());
        let (mut reader, info) = blocking(move || ObjectReader::open(&v, &k)).await?;
        check_copy_conditions(
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
            &info,
        )?;
        let (start, end) = match &input.copy_source_range {
            None => (0, info.size),
            Some(r) => copy_range(r, info.size)?,
        };
        if crate::store::part_size::check_part(end - start, dst_vol.settings.max_part_size).is_err() {
            return Err(super::multipart::part_too_large(dst_vol.settings.max_part_size));
        }
        reader.set_range(start, end);
        let id = input.upload_id.clone();
        let (writer, manifest) =
            blocking(move || multipart::begin_part(dst_vol, &id, &dst, number, end - start)).await?;
        // The upload's algorithm applies to a copied part too.
        let mut hasher = crate::store::checksum::Hashers::default();
        if let Some(a) = manifest.checksum_algorithm.as_deref().and_then(crate::store::checksum::Algorithm::from_name) {
            hasher.want(a);
        }
        let id = input.upload_id;
        let (part, checksums) = blocking(move || {
            let mut w = writer;
            while let Some(block) = reader.next_block(COPY_BLOCK)? {
                hasher.update(&block);
                w.write(&block)?;
            }
            let checksums = hasher.finish();
            let part = multipart::commit_part(w, &id, number, &super::checksum::to_pairs(&checksums))?;
            Ok((part, checksums))
        })
        .await?;
        let mut result = CopyPartResult {
            e_tag: Some(etag(&part.etag)),
            last_modified: Some(timestamp(part.mtime_ns)),
            ..Default::default()
        };
        super::checksum::set_checksum_fields!(result, super::checksum::XmlFields::of(&checksums));
        let mut resp = S3Response::new(UploadPartCopyOutput { copy_part_result: Some(result), ..Default::default() });
        resp.extensions.insert(super::checksum::ExpandChecksumXml { unquote_etag: false });
        Ok(resp)
    }
}

/// `x-amz-copy-source-range: bytes=FIRST-LAST` (inclusive, both required, as S3) against a
/// source of `size` bytes → `start..end` (end exclusive).
///
/// Errors: `InvalidArgument` for another shape; `InvalidRange` past the end of the source.
fn copy_range(r: &str, size: u64) -> S3Result<(u64, u64)> {
    let bad = || s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last");
    let (first, last) = r.trim().strip_prefix("bytes=").and_then(|x| x.split_once('-')).ok_or_else(bad)?;
    let (first, last): (u64, u64) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
    }
    Ok((first, last + 1))
}

/// The `x-amz-copy-source-if-*` conditions: GET's rules, except that a copy answers a
/// would-be 304 with 412 PreconditionFailed (S3).
fn check_copy_conditions(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
    info: &ObjectInfo,
) -> S3Result<()> {
    check_read_conditions(if_match, if_none_match, if_modified_since, if_unmodified_since, info).map_err(|e| {
        if e.code() == &s3s::S3ErrorCode::NotModified {
            s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_ranges() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), (0, 10));
        assert_eq!(copy_range("bytes=5-5", 10).unwrap(), (5, 6));
        assert_eq!(copy_range("bytes=3-10", 10).unwrap_err().code().as_str(), "InvalidRange");
        for bad in ["0-9", "bytes=9-0", "bytes=-5", "bytes=5-", "bytes=a-b"] {
            assert_eq!(copy_range(bad, 10).unwrap_err().code().as_str(), "InvalidArgument", "{bad}");
        }
    }
}
