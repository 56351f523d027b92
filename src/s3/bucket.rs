//! Bucket operations: ListBuckets, HeadBucket, GetBucketLocation, GetBucketVersioning,
//! CreateBucket and DeleteBucket (the last two only in `volumes_root` mode).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;
use super::body::blocking;
use super::convert::timestamp;
use crate::store::key::BucketName;
use crate::store::volume::VolumeState;

impl S3Vol {
    pub(super) async fn do_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let key = req.credentials.as_ref().and_then(|c| self.keys.get(&c.access_key));
        let vols = self.volumes.clone();
        let all = blocking(move || Ok(vols.all())).await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let buckets = all
            .into_iter()
            .filter(|(name, _)| key.as_ref().is_some_and(|k| k.may_use(name)))
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
            owner: Some(Owner { display_name: Some("s3vol".into()), id: Some("s3vol".into()) }),
            ..Default::default()
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
        let bucket = req.input.bucket;
        if !self.volumes.is_root_mode() {
            return match self.volume(&bucket) {
                Ok(_) => Err(s3_error!(BucketAlreadyOwnedByYou, "The bucket exists: it is a configured volume")),
                Err(_) => Err(s3_error!(
                    NotImplemented,
                    "Buckets are configured volumes; CreateBucket works only in volumes_root mode"
                )),
            };
        }
        let Some(name) = BucketName::parse(&bucket) else {
            return Err(s3_error!(InvalidBucketName, "The specified bucket is not valid."));
        };
        let vols = self.volumes.clone();
        blocking(move || vols.create(&name)).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
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
