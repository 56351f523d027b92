//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload and ListParts, staged on the volume by `store::multipart`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::convert::{check_acl, check_unsupported, etag, object_meta, timestamp};
use super::error::to_s3;
use super::object::{given_checksums, receive_verified};
use crate::store::multipart;

impl S3Vol {
    pub(super) async fn do_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let owner = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .map(|k| k.name.clone())
            .unwrap_or_default();
        let input = req.input;
        check_acl(
            input.acl.as_ref().map(|a| a.as_str()),
            input.grant_full_control.is_some()
                || input.grant_read.is_some()
                || input.grant_read_acp.is_some()
                || input.grant_write_acp.is_some(),
        )?;
        check_unsupported(
            input.server_side_encryption.is_some()
                || input.sse_customer_algorithm.is_some()
                || input.ssekms_key_id.is_some(),
            input.tagging.is_some(),
            input.object_lock_mode.is_some() || input.object_lock_legal_hold_status.is_some(),
            input.storage_class.as_ref().map(|s| s.as_str()),
        )?;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key).map_err(to_s3)?;
        let meta = object_meta(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.metadata,
            key.as_str(),
        );
        if !vol.xattrs && !meta.user.is_empty() {
            return Err(to_s3(crate::store::Error::MetadataUnsupported));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let k = key.clone();
        let id = blocking(move || multipart::create(&vol, &k, meta, &owner, now)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    pub(super) async fn do_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key).map_err(to_s3)?;
        let number = u32::try_from(input.part_number).map_err(|_| to_s3(crate::store::Error::InvalidPartNumber))?;
        let id = input.upload_id.clone();
        let declared = super::object::declared_length(&headers, input.content_length)
            .ok_or_else(|| s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))?;
        let writer = match blocking(move || multipart::begin_part(vol, &id, &key, number, declared)).await {
            Ok(w) => w,
            Err(e) => return Err(super::body::refuse(input.body, &headers, e).await),
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
        let id = input.upload_id;
        let part = blocking(move || multipart::commit_part(writer, &id, number)).await?;
        let c = super::body::checksum_from_meta(&checksums.into_iter().collect());
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_crc64nvme: c.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    pub(super) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key).map_err(to_s3)?;
        let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let mut listed = Vec::with_capacity(parts.len());
        for p in parts {
            let (Some(n), Some(e)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(MalformedXML, "Each part needs a PartNumber and an ETag"));
            };
            let n = u32::try_from(n).map_err(|_| s3_error!(InvalidPart, "invalid part number"))?;
            listed.push((n, e.into_value()));
        }
        let id = input.upload_id;
        let k = key.clone();
        let info = blocking(move || multipart::complete(vol, &id, &k, &listed)).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&info.meta.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key).map_err(to_s3)?;
        let id = input.upload_id;
        blocking(move || multipart::abort(&vol, &id, &key)).await?;
        Ok(S3Response::with_status(AbortMultipartUploadOutput::default(), http::StatusCode::NO_CONTENT))
    }

    pub(super) async fn do_list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key).map_err(to_s3)?;
        let id = input.upload_id.clone();
        let (manifest, parts) = blocking(move || multipart::list_parts(&vol, &id, &key)).await?;
        let max = input.max_parts.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let after: Vec<_> = parts.into_iter().filter(|p| i64::from(p.number) > i64::from(marker)).collect();
        let truncated = after.len() > max;
        let page: Vec<_> = after.into_iter().take(max).collect();
        let next = if truncated { page.last().map(|p| p.number as i32) } else { None };
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            initiator: Some(Initiator { display_name: Some(manifest.owner.clone()), id: Some(manifest.owner.clone()) }),
            owner: Some(Owner { display_name: Some(manifest.owner.clone()), id: Some(manifest.owner) }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(
                page.into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number as i32),
                        e_tag: Some(etag(&p.etag)),
                        size: Some(p.size as i64),
                        last_modified: Some(timestamp(p.mtime_ns)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}
