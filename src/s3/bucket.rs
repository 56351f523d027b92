//! Bucket operations: ListBuckets, HeadBucket, GetBucketLocation, GetBucketVersioning,
//! CreateBucket and DeleteBucket (the last two only in `volumes_root` mode).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::convert::timestamp;
use crate::store::key::BucketName;
use crate::store::volume::VolumeState;

/// The owner of every bucket and object, as ListBuckets, the object listings
/// (`fetch-owner`, ListObjects v1) and the multipart listings name it.
///
/// One fixed owner, not one per access key or per file: a volume's files belong to the
/// service (pods and every key with access write them alike, and a file's uid says nothing
/// S3 clients know). A constant is what every node sharing a volume answers alike, with no
/// state of its own, so a listing paged across nodes names the same owner throughout.
pub(super) fn owner() -> Owner {
    Owner { display_name: Some(OWNER.into()), id: Some(OWNER.into()) }
}

/// [`owner`]'s ID and DisplayName (what ListBuckets has always answered).
const OWNER: &str = "s3vol";

/// S3 ListBuckets: `max-buckets` is 1 to 10000.
const MAX_BUCKETS: i32 = 10_000;

/// One ListBuckets page request: the names after `after` that start with `prefix`, at most
/// `max` of them (`None`: all, as S3 answers without `max-buckets`).
struct BucketPage {
    prefix: String,
    after: Option<String>,
    max: Option<usize>,
}

impl BucketPage {
    /// Errors: `InvalidArgument` for a `max-buckets` outside 1..=10000 or a token that is
    /// not one of ours.
    fn of(input: &ListBucketsInput) -> S3Result<Self> {
        let max = match input.max_buckets {
            None => None,
            Some(n) if (1..=MAX_BUCKETS).contains(&n) => Some(n as usize),
            Some(_) => return Err(s3_error!(InvalidArgument, "max-buckets must be an integer from 1 to 10000")),
        };
        let after = match input.continuation_token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                crate::store::list::decode_token(t)
                    .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
            ),
        };
        Ok(Self { prefix: input.prefix.clone().unwrap_or_default(), after, max })
    }
}

impl S3Vol {
    pub(super) async fn do_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let key = req.credentials.as_ref().and_then(|c| self.keys.get(&c.access_key));
        let input = req.input;
        let page = BucketPage::of(&input)?;
        let vols = self.volumes.clone();
        let mut all = blocking(move || Ok(vols.all())).await?;
        // S3 lists buckets by name; a page resumes after the token's name.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let mut visible: Vec<_> = all
            .into_iter()
            .filter(|(name, _)| key.as_ref().is_some_and(|k| k.may_use(name)))
            .filter(|(name, _)| name.starts_with(&page.prefix) && page.after.as_ref().is_none_or(|a| name > a))
            .collect();
        let truncated = page.max.is_some_and(|m| visible.len() > m);
        if let Some(m) = page.max {
            visible.truncate(m);
        }
        let next = if truncated { visible.last().map(|(n, _)| crate::store::list::encode_token(n)) } else { None };
        let buckets = visible
            .into_iter()
            .map(|(name, state)| {
                let created = match state {
                    VolumeState::Online(v) => v.created_ns,
                    VolumeState::Unavailable(..) => now,
                };
                Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(created)),
                    bucket_region: Some(self.region.clone()),
                }
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            continuation_token: next,
            prefix: input.prefix.filter(|p| !p.is_empty()),
        }))
    }

    pub(super) async fn do_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.volume(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.region.clone()), ..Default::default() }))
    }

    pub(super) async fn do_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.volume(&req.input.bucket)?;
        // S3 answers an empty LocationConstraint for us-east-1.
        let location = (self.region != "us-east-1").then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: location }))
    }

    pub(super) async fn do_get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.volume(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    pub(super) async fn do_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        // The access hook let an `admin` key through whatever its scope (see auth::decide):
        // the scope is judged here, where the bucket's existence is known.
        let may_use = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .is_some_and(|k| k.may_use(&req.input.bucket));
        let bucket = req.input.bucket;
        if !matches!(self.volumes.get(&bucket), Err(crate::store::Error::NoSuchBucket)) {
            return self.existing_bucket(bucket, may_use);
        }
        if !may_use {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        if !self.volumes.is_root_mode() {
            return Err(s3_error!(
                NotImplemented,
                "Buckets are configured volumes; CreateBucket works only in volumes_root mode"
            ));
        }
        let Some(name) = BucketName::parse(&bucket) else {
            return Err(s3_error!(InvalidBucketName, "The specified bucket is not valid."));
        };
        let vols = self.volumes.clone();
        match blocking(move || vols.create(&name)).await {
            Err(e) if e.code() == &s3s::S3ErrorCode::BucketAlreadyOwnedByYou => self.existing_bucket(bucket, may_use),
            Err(e) => Err(e),
            Ok(()) => Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) })),
        }
    }

    /// CreateBucket of a bucket that exists, as S3 answers it: for a key that may use it,
    /// 200 in us-east-1 (S3's legacy behaviour there) and `BucketAlreadyOwnedByYou` (409)
    /// in any other region; for a key that may not, `BucketAlreadyExists` (409).
    fn existing_bucket(&self, bucket: String, may_use: bool) -> S3Result<S3Response<CreateBucketOutput>> {
        if !may_use {
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the \
                 system. Please select a different name and try again."
            ));
        }
        if self.region == "us-east-1" {
            return Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }));
        }
        Err(s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ))
    }

    pub(super) async fn do_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        if !self.volumes.is_root_mode() {
            self.volume(&bucket)?;
            return Err(s3_error!(
                NotImplemented,
                "Buckets are configured volumes; DeleteBucket works only in volumes_root mode"
            ));
        }
        let vols = self.volumes.clone();
        blocking(move || vols.delete(&bucket)).await?;
        Ok(S3Response::with_status(DeleteBucketOutput::default(), http::StatusCode::NO_CONTENT))
    }
}
