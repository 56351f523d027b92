//! GetObjectAttributes: the attributes named in `x-amz-object-attributes` (ETag, Checksum,
//! ObjectParts, StorageClass, ObjectSize) and Last-Modified, from the same metadata HEAD
//! reads: for an object written by s3vol in one part or assembled from a multipart upload,
//! and for a file a pod wrote (no checksum; the ETag HEAD gives).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::checksum::{self, XmlFields, set_checksum_fields};
use super::convert::timestamp;
use crate::store::checksum::ChecksumType as Type;

/// S3 GetObjectAttributes: `x-amz-max-parts` defaults to, and caps at, 1000.
const MAX_PARTS: i32 = 1000;

impl S3Vol {
    pub(super) async fn do_get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "Versioning is not supported"));
        }
        // The header is one comma-separated list (s3s hands it over as one item).
        let named: Vec<&str> = input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let known = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];
        if named.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
            ));
        }
        if let Some(bad) = named.iter().find(|a| !known.contains(a)) {
            return Err(s3_error!(InvalidArgument, "Invalid attribute name specified: {bad}"));
        }
        let wanted = |name: &str| named.contains(&name);
        let max = match input.max_parts {
            None => MAX_PARTS,
            Some(m) if m < 0 => return Err(s3_error!(InvalidArgument, "max-parts must be a non-negative integer")),
            Some(m) => m.min(MAX_PARTS),
        };
        let marker = match input.part_number_marker {
            Some(m) if m < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument part-number-marker must be an integer between 0 and 2147483647"
                ));
            }
            m => m.unwrap_or(0),
        };
        let vol = self.volume(&input.bucket)?;
        let key = vol.key(&input.key)?;
        let info = match vol.head_cached(&key) {
            Some(r) => r?,
            None => blocking(move || vol.head(&key)).await?,
        };
        let meta = &info.meta;
        let stored = checksum::from_stored(&meta.checksums);
        let mut out = GetObjectAttributesOutput { last_modified: Some(timestamp(info.mtime_ns)), ..Default::default() };
        if wanted("ETag") {
            out.e_tag = Some(ETag::Strong(meta.etag.clone()));
        }
        if wanted("StorageClass") {
            out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if wanted("ObjectSize") {
            out.object_size = Some(info.size as i64);
        }
        if wanted("Checksum")
            && let Some((a, v)) = stored.first()
        {
            // S3 gives a composite value here without its `-N` (the count is in ObjectParts).
            let ty = Type::of_value(v);
            let bare = v.split('-').next().unwrap_or(v).to_owned();
            let mut c =
                Checksum { checksum_type: Some(ChecksumType::from(ty.as_str().to_owned())), ..Default::default() };
            set_checksum_fields!(c, XmlFields::of(&[(*a, bare)]));
            out.checksum = Some(c);
        }
        if wanted("ObjectParts") && !meta.parts.is_empty() {
            let mut parts =
                GetObjectAttributesParts { total_parts_count: Some(meta.parts.len() as i32), ..Default::default() };
            // S3 lists the parts only of an object uploaded with a checksum.
            if let Some((a, _)) = stored.first()
                && meta.part_checksums.len() == meta.parts.len()
            {
                let after: Vec<(usize, u64)> =
                    meta.parts.iter().copied().enumerate().filter(|(i, _)| *i as i64 + 1 > i64::from(marker)).collect();
                let truncated = after.len() > max as usize;
                let page: Vec<ObjectPart> = after
                    .into_iter()
                    .take(max as usize)
                    .map(|(i, size)| {
                        let mut p = ObjectPart {
                            part_number: Some(i as i32 + 1),
                            size: Some(size as i64),
                            ..Default::default()
                        };
                        set_checksum_fields!(p, XmlFields::of(&[(*a, meta.part_checksums[i].clone())]));
                        p
                    })
                    .collect();
                parts.next_part_number_marker = page.last().and_then(|p| p.part_number).filter(|_| truncated);
                parts.part_number_marker = Some(marker);
                parts.max_parts = Some(max);
                parts.is_truncated = Some(truncated);
                parts.parts = Some(page);
            }
            out.object_parts = Some(parts);
        }
        let mut resp = S3Response::new(out);
        resp.extensions.insert(checksum::ExpandChecksumXml { unquote_etag: true });
        Ok(resp)
    }
}
