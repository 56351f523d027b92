//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts and ListMultipartUploads, staged on the volume by
//! `store::multipart` and completed by `store::assemble`. UploadPartCopy is in `copy.rs`.

use std::time::Duration;

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::{blocking, checksum_from_meta};
use super::convert::{etag, object_meta, refuse_unsupported_write_options, timestamp, url_encode};
use super::list::{MAX_KEYS, encoding_url};
use super::object::{given_checksums, receive_verified};
use crate::store::assemble::{self, Completed, ListedPart};
use crate::store::multipart::{self, Manifest};

/// A Complete still assembling after this long answers `200 OK` at once and sends a space
/// every 100 ms (s3s's keep-alive body) until the result or an `<Error>` follows, as S3
/// does, so that proxies with idle timeouts do not cut a long assembly. Faster Completes
/// answer normally, with a real error status when they fail.
pub const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);

/// The checksum algorithm names s3vol knows, upper-case.
fn checksum_name(a: &ChecksumAlgorithm) -> String {
    a.as_str().to_ascii_uppercase()
}

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
        refuse_unsupported_write_options!(input);
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
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
        let manifest = Manifest {
            key: String::new(),
            meta,
            initiated: time::OffsetDateTime::now_utc().unix_timestamp(),
            owner,
            checksum_algorithm: input.checksum_algorithm.as_ref().map(checksum_name),
            checksum_type: input.checksum_type.as_ref().map(|t| t.as_str().to_ascii_uppercase()),
        };
        let k = key.clone();
        let id = blocking(move || multipart::create(&vol, &k, manifest)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: input.checksum_algorithm,
            checksum_type: input.checksum_type,
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
        let key = vol.key(&input.key)?;
        let number = u32::try_from(input.part_number).map_err(|_| crate::store::Error::InvalidPartNumber)?;
        let declared = super::object::declared_length(&headers, input.content_length, trailers.is_some())
            .ok_or_else(|| s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))?;
        // Judged on the declared size, which the writer then holds the bytes to.
        if declared > vol.settings.max_part_size {
            let e = part_too_large(vol.settings.max_part_size);
            return Err(super::body::refuse(input.body, &headers, e).await);
        }
        let id = input.upload_id.clone();
        let (writer, manifest) = match blocking(move || multipart::begin_part(vol, &id, &key, number, declared)).await {
            Ok(w) => w,
            Err(e) => return Err(super::body::refuse(input.body, &headers, e).await),
        };
        // The algorithm given at Create applies to every part, sent with a checksum or not.
        let algorithm = input
            .checksum_algorithm
            .or_else(|| manifest.checksum_algorithm.as_deref().map(|a| ChecksumAlgorithm::from(a.to_owned())));
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
            algorithm.as_ref(),
            input.content_md5.as_deref(),
            &headers,
            trailers.as_ref(),
        )
        .await?;
        let id = input.upload_id;
        let c = checksum_from_meta(&checksums.iter().cloned().collect());
        let part = blocking(move || multipart::commit_part(writer, &id, number, &checksums)).await?;
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
        let key = vol.key(&input.key)?;
        let cond = super::object::write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let mut listed = Vec::with_capacity(parts.len());
        for p in parts {
            let (Some(n), Some(e)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(MalformedXML, "Each part needs a PartNumber and an ETag"));
            };
            let n = u32::try_from(n).map_err(|_| s3_error!(InvalidPart, "invalid part number"))?;
            let checksums = [
                ("CRC32", p.checksum_crc32),
                ("CRC32C", p.checksum_crc32c),
                ("SHA1", p.checksum_sha1),
                ("SHA256", p.checksum_sha256),
                ("CRC64NVME", p.checksum_crc64nvme),
            ]
            .into_iter()
            .filter_map(|(a, v)| v.map(|v| (a.to_owned(), v)))
            .collect();
            listed.push(ListedPart { number: n, etag: e.into_value(), checksums });
        }
        let (bucket, object) = (input.bucket, input.key);
        let id = input.upload_id;
        let span = tracing::Span::current();
        // The assembly runs to its end even if the client goes away, so that the upload
        // is either completed (and recorded) or left for a retry, never half-done.
        let mut task =
            tokio::task::spawn_blocking(move || span.in_scope(|| assemble::complete(vol, &id, &key, &listed, &cond)));
        let output = move |done: Completed| complete_output(bucket, object, done);
        let joined = |r: Result<crate::store::Result<Completed>, tokio::task::JoinError>| match r {
            Ok(r) => r.map_err(S3Error::from),
            Err(e) => Err(S3Error::internal_error(e)),
        };
        match tokio::time::timeout(KEEP_ALIVE_AFTER, &mut task).await {
            Ok(r) => Ok(S3Response::new(output(joined(r)?))),
            Err(_) => {
                let fut = async move { joined(task.await).map(output) };
                Ok(S3Response::new(CompleteMultipartUploadOutput { future: Some(Box::pin(fut)), ..Default::default() }))
            }
        }
    }

    pub(super) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        let id = input.upload_id;
        blocking(move || multipart::abort(&vol, &id, &key)).await?;
        Ok(S3Response::with_status(AbortMultipartUploadOutput::default(), http::StatusCode::NO_CONTENT))
    }

    pub(super) async fn do_list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        let id = input.upload_id.clone();
        let (manifest, parts) = blocking(move || multipart::list_parts(&vol, &id, &key)).await?;
        let max = match input.max_parts {
            None => 1000,
            Some(m) if m < 0 => return Err(s3_error!(InvalidArgument, "max-parts must be a non-negative integer")),
            Some(m) => m.min(1000) as usize,
        };
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
            checksum_algorithm: manifest.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
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

    pub(super) async fn do_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let url = encoding_url(input.encoding_type.as_ref())?;
        let max = match input.max_uploads {
            None => MAX_KEYS,
            Some(m) if m < 0 => return Err(s3_error!(InvalidArgument, "max-uploads must be a non-negative integer")),
            Some(m) => (m as usize).min(MAX_KEYS),
        };
        let vol = self.volume(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let (delimiter, key_marker, id_marker) =
            (input.delimiter.clone(), input.key_marker.clone(), input.upload_id_marker.clone());
        let page = blocking(move || {
            multipart::list_uploads(
                &vol,
                &prefix,
                delimiter.as_deref(),
                key_marker.as_deref(),
                id_marker.as_deref(),
                max,
            )
        })
        .await?;
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc(u.key)),
                upload_id: Some(u.id),
                initiated: Some(timestamp(i128::from(u.initiated) * 1_000_000_000)),
                initiator: Some(Initiator { display_name: Some(u.owner.clone()), id: Some(u.owner.clone()) }),
                owner: Some(Owner { display_name: Some(u.owner.clone()), id: Some(u.owner) }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
                ..Default::default()
            })
            .collect();
        let prefixes = page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc(input.prefix.unwrap_or_default())),
            delimiter: input.delimiter.map(enc),
            key_marker: Some(enc(input.key_marker.unwrap_or_default())),
            upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
            next_key_marker: page.next_key_marker.map(enc),
            next_upload_id_marker: page.next_upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(page.truncated),
            encoding_type: input.encoding_type,
            uploads: Some(uploads),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }
}

/// `EntityTooLarge` for a part over the volume's `max_part_size` (bytes).
pub(super) fn part_too_large(max: u64) -> S3Error {
    S3Error::with_message(s3s::S3ErrorCode::EntityTooLarge, format!("A part may be at most {max} bytes on this volume"))
}

/// The Complete answer for a completed upload (also for a retried Complete).
fn complete_output(bucket: String, key: String, done: Completed) -> CompleteMultipartUploadOutput {
    let c = checksum_from_meta(&done.checksums);
    CompleteMultipartUploadOutput {
        location: Some(format!("/{bucket}/{key}")),
        bucket: Some(bucket),
        key: Some(key),
        e_tag: Some(etag(&done.etag)),
        checksum_crc32: c.checksum_crc32,
        checksum_crc32c: c.checksum_crc32c,
        checksum_sha1: c.checksum_sha1,
        checksum_sha256: c.checksum_sha256,
        checksum_crc64nvme: c.checksum_crc64nvme,
        checksum_type: done.checksum_type.map(ChecksumType::from),
        ..Default::default()
    }
}
