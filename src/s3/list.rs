//! ListObjects (v1) and ListObjectsV2 over the store's ordered walk.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::convert::{etag, timestamp, url_encode};
use crate::store::list::{self, FsTree, Item, Listed, Query};

/// S3 ListObjects: max-keys defaults to and caps at 1000.
pub const MAX_KEYS: usize = 1000;

/// The max-keys a request may use: default 1000, capped at 1000, negative is an error.
pub fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be a non-negative integer")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

/// One page: the raw items and the described objects.
struct PageOut {
    objects: Vec<Listed>,
    prefixes: Vec<String>,
    truncated: bool,
    last: Option<String>,
}

impl S3Vol {
    async fn page(
        &self,
        bucket: &str,
        prefix: String,
        delimiter: Option<String>,
        after: Option<String>,
        max: usize,
    ) -> S3Result<PageOut> {
        let vol = self.volume(bucket)?;
        blocking(move || {
            let q = Query { prefix: &prefix, delimiter: delimiter.as_deref(), after: after.as_deref(), max_keys: max };
            let page = list::walk(&mut FsTree::new(&vol), &q)?;
            // A volume whose directory was removed, renamed away or unmounted since its
            // last check lists as empty from its old handle: never answer that (SPEC.md).
            if page.items.is_empty() {
                vol.check_path()?;
            }
            let last = page.items.last().map(|i| i.name().to_owned());
            let prefixes = page
                .items
                .iter()
                .filter_map(|i| if let Item::Prefix(p) = i { Some(p.clone()) } else { None })
                .collect();
            let objects = list::describe(&vol, &page.items);
            Ok(PageOut { objects, prefixes, truncated: page.truncated, last })
        })
        .await
    }

    pub(super) async fn do_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = encoding_url(input.encoding_type.as_ref())?;
        // An empty `continuation-token=` is no token, as S3 treats it.
        let token = input.continuation_token.clone().filter(|t| !t.is_empty());
        let token_key = match &token {
            Some(t) => Some(
                list::decode_token(t)
                    .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
            ),
            None => None,
        };
        let after = [input.start_after.clone().filter(|s| !s.is_empty()), token_key].into_iter().flatten().max();
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let p = self.page(&input.bucket, prefix.clone(), delimiter.clone(), after, max).await?;
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let key_count = (p.objects.len() + p.prefixes.len()) as i32;
        let next = if p.truncated { p.last.as_deref().map(list::encode_token) } else { None };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            is_truncated: Some(p.truncated),
            continuation_token: token,
            next_continuation_token: next,
            start_after: input.start_after.map(enc),
            encoding_type: input.encoding_type,
            contents: Some(contents(p.objects, url, input.fetch_owner == Some(true))),
            common_prefixes: Some(common_prefixes(p.prefixes, url)),
            ..Default::default()
        }))
    }

    pub(super) async fn do_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = encoding_url(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let after = input.marker.clone().filter(|m| !m.is_empty());
        let p = self.page(&input.bucket, prefix.clone(), delimiter.clone(), after, max).await?;
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let next_marker = if p.truncated { p.last.map(enc) } else { None };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            marker: Some(input.marker.map(enc).unwrap_or_default()),
            next_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(p.truncated),
            encoding_type: input.encoding_type,
            // ListObjects v1 always names the owner, as S3 does.
            contents: Some(contents(p.objects, url, true)),
            common_prefixes: Some(common_prefixes(p.prefixes, url)),
            ..Default::default()
        }))
    }
}

pub(super) fn encoding_url(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(|e| e.as_str()) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request")),
    }
}

/// The listed objects, each with the one owner ([`super::bucket::owner`]) when `owned`.
fn contents(objects: Vec<Listed>, url: bool, owned: bool) -> Vec<Object> {
    objects
        .into_iter()
        .map(|o| Object {
            key: Some(if url { url_encode(&o.key) } else { o.key }),
            size: Some(o.size as i64),
            last_modified: Some(timestamp(o.mtime_ns)),
            e_tag: Some(etag(&o.etag)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            owner: owned.then(super::bucket::owner),
            ..Default::default()
        })
        .collect()
}

fn common_prefixes(prefixes: Vec<String>, url: bool) -> Vec<CommonPrefix> {
    prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(if url { url_encode(&p) } else { p }) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_keys_rules() {
        assert_eq!(max_keys(None).unwrap(), 1000);
        assert_eq!(max_keys(Some(5000)).unwrap(), 1000);
        assert_eq!(max_keys(Some(0)).unwrap(), 0);
        assert!(max_keys(Some(-1)).is_err());
    }
}
