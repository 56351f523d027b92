//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts and ListMultipartUploads, staged on the volume by
//! `store::multipart` and completed by `store::assemble`. UploadPartCopy is in `copy.rs`.

use std::time::Duration;

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::checksum::{self as wire, XmlFields, from_stored, set_checksum_fields};
use super::complete_xml::CompleteBody;
use super::convert::{etag, object_meta, refuse_unsupported_write_options, timestamp, url_encode};
use super::list::{MAX_KEYS, encoding_url};
use super::object::receive_verified;
use crate::store::assemble::{self, Completed, ListedPart, StatedChecksum};
use crate::store::checksum::{self, Algorithm};
use crate::store::multipart::{self, Manifest};
use crate::store::part_size;

/// A Complete still assembling after this long answers `200 OK` at once and sends a space
/// every 100 ms (s3s's keep-alive body) until the result or an `<Error>` follows, as S3
/// does, so that proxies with idle timeouts do not cut a long assembly. Faster Completes
/// answer normally, with a real error status when they fail.
pub const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);

/// The checksum algorithm and type of a CreateMultipartUpload (S3's rules, see
/// [`Algorithm::allows`]): the type defaults to the algorithm's; a type needs an algorithm.
///
/// Errors: `InvalidRequest` for an unknown algorithm or type, a type without an algorithm,
/// or a combination S3 refuses (CRC64NVME composite, a digest full-object).
fn upload_checksum(
    algorithm: Option<&ChecksumAlgorithm>,
    ty: Option<&ChecksumType>,
) -> S3Result<Option<(Algorithm, checksum::ChecksumType)>> {
    let Some(a) = algorithm else {
        return match ty {
            Some(_) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )),
            None => Ok(None),
        };
    };
    let a = Algorithm::from_name(a.as_str())
        .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm {} is not supported.", a.as_str()))?;
    let t = match ty {
        Some(t) => checksum::ChecksumType::parse(t.as_str())
            .ok_or_else(|| s3_error!(InvalidRequest, "Value for x-amz-checksum-type header is invalid."))?,
        None => a.default_type(),
    };
    if !a.allows(t) {
        return Err(s3_error!(
            InvalidRequest,
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            t.as_str().to_ascii_lowercase(),
            a.name().to_ascii_lowercase()
        ));
    }
    Ok(Some((a, t)))
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
        let chosen = upload_checksum(input.checksum_algorithm.as_ref(), input.checksum_type.as_ref())?;
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
            checksum_algorithm: chosen.map(|(a, _)| a.name().to_owned()),
            checksum_type: chosen.map(|(_, t)| t.as_str().to_owned()),
        };
        let k = key.clone();
        let id = blocking(move || multipart::create(&vol, &k, manifest)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: chosen.map(|(a, _)| ChecksumAlgorithm::from(a.name().to_owned())),
            checksum_type: chosen.map(|(_, t)| ChecksumType::from(t.as_str().to_owned())),
            ..Default::default()
        }))
    }

    pub(super) async fn do_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let no_length = req.extensions.get::<crate::guard::NoLength>().is_some();
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        let number = u32::try_from(input.part_number).map_err(|_| crate::store::Error::InvalidPartNumber)?;
        let declared =
            super::object::declared_or_streamed(no_length, &headers, input.content_length, trailers.is_some())?;
        // Judged on the declared size, which the writer then holds the bytes to; a part
        // without a length is held to max_part_size as its bytes arrive.
        if let Some(n) = declared
            && part_size::check_part(n, vol.settings.max_part_size).is_err()
        {
            let e = part_too_large(vol.settings.max_part_size);
            return Err(super::body::refuse(input.body, &headers, e).await);
        }
        let id = input.upload_id.clone();
        let begin = move || match declared {
            Some(n) => multipart::begin_part(vol, &id, &key, number, n),
            None => multipart::begin_part_unsized(vol, &id, &key, number),
        };
        let (writer, manifest) = match blocking(begin).await {
            Ok(w) => w,
            Err(e) => return Err(super::body::refuse(input.body, &headers, e).await),
        };
        // The algorithm given at Create applies to every part, sent with a checksum or not.
        let upload = manifest.checksum_algorithm.as_deref().and_then(Algorithm::from_name);
        let requested = match wire::requested(&headers, input.checksum_algorithm.as_ref(), upload) {
            Ok(r) => r,
            Err(e) => return Err(super::body::refuse(input.body, &headers, e).await),
        };
        let (writer, checksums) =
            receive_verified(input.body, writer, requested, input.content_md5.as_deref(), trailers.as_ref()).await?;
        let id = input.upload_id;
        let pairs = wire::to_pairs(&checksums);
        let part = blocking(move || multipart::commit_part(writer, &id, number, &pairs)).await?;
        let mut resp = S3Response::new(UploadPartOutput { e_tag: Some(etag(&part.etag)), ..Default::default() });
        wire::set_headers(&mut resp.headers, &checksums, None);
        Ok(resp)
    }

    pub(super) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        // s3s does not parse the part checksums of five algorithms: the server took them out
        // of the XML (absent when the service is called without the server, as in tests).
        let unparsed = req.extensions.get::<CompleteBody>().map(CompleteBody::listed).unwrap_or_default();
        let stated = stated_checksum(&req.headers, req.input.checksum_type.as_ref())?;
        let input = req.input;
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        let cond = super::object::write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        // The values s3s could not parse, by part number: each part takes its own, so the
        // work is linear in the body (a part listed many times once fanned out P x U).
        let mut by_part: std::collections::HashMap<u32, Vec<(Algorithm, String)>> = std::collections::HashMap::new();
        for (n, a, v) in unparsed {
            by_part.entry(n).or_default().push((a, v));
        }
        let mut listed = Vec::with_capacity(parts.len());
        let mut previous = 0u32;
        for p in parts {
            let (Some(n), Some(e)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(MalformedXML, "Each part needs a PartNumber and an ETag"));
            };
            let n = u32::try_from(n).map_err(|_| s3_error!(InvalidPart, "invalid part number"))?;
            // S3: ascending and each number once (checked again by the store).
            if n <= previous && !listed.is_empty() {
                return Err(crate::store::Error::InvalidPartOrder.into());
            }
            previous = n;
            let checksums = [
                (Algorithm::Crc32, p.checksum_crc32),
                (Algorithm::Crc32c, p.checksum_crc32c),
                (Algorithm::Sha1, p.checksum_sha1),
                (Algorithm::Sha256, p.checksum_sha256),
                (Algorithm::Crc64Nvme, p.checksum_crc64nvme),
            ]
            .into_iter()
            .filter_map(|(a, v)| v.map(|v| (a.name().to_owned(), v)))
            .chain(by_part.remove(&n).unwrap_or_default().into_iter().map(|(a, v)| (a.name().to_owned(), v)))
            .collect();
            listed.push(ListedPart { number: n, etag: e.into_value(), checksums });
        }
        let (bucket, object) = (input.bucket, input.key);
        let id = input.upload_id;
        let span = tracing::Span::current();
        // The assembly runs to its end even if the client goes away, so that the upload
        // is either completed (and recorded) or left for a retry, never half-done.
        let mut task = tokio::task::spawn_blocking(move || {
            span.in_scope(|| assemble::complete(vol, &id, &key, &listed, &stated, &cond))
        });
        let output = move |done: Completed| complete_output(bucket, object, done);
        let joined = |r: Result<crate::store::Result<Completed>, tokio::task::JoinError>| match r {
            Ok(r) => r.map_err(S3Error::from),
            Err(e) => Err(S3Error::internal_error(e)),
        };
        let mut resp = match tokio::time::timeout(KEEP_ALIVE_AFTER, &mut task).await {
            Ok(r) => S3Response::new(output(joined(r)?)),
            Err(_) => {
                let fut = async move { joined(task.await).map(output) };
                S3Response::new(CompleteMultipartUploadOutput { future: Some(Box::pin(fut)), ..Default::default() })
            }
        };
        resp.extensions.insert(wire::ExpandChecksumXml { unquote_etag: false });
        Ok(resp)
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
        let after: Vec<_> = parts.into_iter().filter(|(p, _)| i64::from(p.number) > i64::from(marker)).collect();
        let truncated = after.len() > max;
        let page: Vec<_> = after.into_iter().take(max).collect();
        let next = if truncated { page.last().map(|(p, _)| p.number as i32) } else { None };
        let mut resp = S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            initiator: Some(Initiator { display_name: Some(manifest.owner.clone()), id: Some(manifest.owner.clone()) }),
            // The initiator is the key that created the upload (its manifest, so every node
            // agrees); the owner is the one owner of everything (bucket::owner).
            owner: Some(super::bucket::owner()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: manifest.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
            checksum_type: manifest.checksum_algorithm.as_deref().and_then(Algorithm::from_name).map(|a| {
                let t = manifest.checksum_type.as_deref().and_then(checksum::ChecksumType::parse);
                ChecksumType::from(t.unwrap_or(a.default_type()).as_str().to_owned())
            }),
            parts: Some(
                page.into_iter()
                    .map(|(p, c)| {
                        let mut part = Part {
                            part_number: Some(p.number as i32),
                            e_tag: Some(etag(&p.etag)),
                            size: Some(p.size as i64),
                            last_modified: Some(timestamp(p.mtime_ns)),
                            ..Default::default()
                        };
                        set_checksum_fields!(part, XmlFields::of(&from_stored(&c)));
                        part
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        resp.extensions.insert(wire::ExpandChecksumXml { unquote_etag: false });
        Ok(resp)
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
                owner: Some(super::bucket::owner()),
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

/// The object checksum a CompleteMultipartUpload states: one `x-amz-checksum-<alg>` header
/// (any of the ten algorithms, read from the header map: the DTO has five) and
/// `x-amz-checksum-type`; compared with the assembled object's by the store.
///
/// Errors: `InvalidRequest` for an unknown algorithm or type, a value that is not base64
/// of the algorithm's digest length, or more than one algorithm.
fn stated_checksum(headers: &http::HeaderMap, ty: Option<&ChecksumType>) -> S3Result<StatedChecksum> {
    // Only the value headers count here: x-amz-sdk-checksum-algorithm names how the SDK
    // checks this request's own body, and Complete's XML body is not stored.
    // A composite value may carry its `-N`: the digest before it is what is validated.
    let mut bare = headers.clone();
    for a in Algorithm::ALL {
        if let Some(v) = headers.get(a.header()).and_then(|v| v.to_str().ok())
            && let Some((d, n)) = v.rsplit_once('-')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && let Ok(d) = http::HeaderValue::from_str(d)
        {
            bare.insert(a.header(), d);
        }
    }
    let mut given = wire::requested(&bare, None, None)?.given;
    for (a, v) in &mut given {
        // Compared as sent: StatedChecksum::check takes a value with or without `-N`.
        if let Some(sent) = headers.get(a.header()).and_then(|v| v.to_str().ok()) {
            *v = sent.trim().to_owned();
        }
    }
    let ty = match ty {
        Some(t) => Some(
            checksum::ChecksumType::parse(t.as_str())
                .ok_or_else(|| s3_error!(InvalidRequest, "Value for x-amz-checksum-type header is invalid."))?,
        ),
        None => None,
    };
    Ok(StatedChecksum { value: given.into_iter().next(), ty })
}

/// `EntityTooLarge` for a part over the volume's `max_part_size` (bytes).
pub(super) fn part_too_large(max: u64) -> S3Error {
    S3Error::with_message(s3s::S3ErrorCode::EntityTooLarge, format!("A part may be at most {max} bytes on this volume"))
}

/// The Complete answer for a completed upload (also for a retried Complete).
fn complete_output(bucket: String, key: String, done: Completed) -> CompleteMultipartUploadOutput {
    let mut out = CompleteMultipartUploadOutput {
        location: Some(format!("/{bucket}/{key}")),
        bucket: Some(bucket),
        key: Some(key),
        e_tag: Some(etag(&done.etag)),
        checksum_type: done.checksum_type.map(ChecksumType::from),
        ..Default::default()
    };
    set_checksum_fields!(out, XmlFields::of(&from_stored(&done.checksums)));
    out
}
