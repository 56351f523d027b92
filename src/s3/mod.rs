//! The S3 protocol adapter: the only place `s3s` request and response types appear.
//!
//! [`S3Vol`] implements `s3s::S3`; each operation family lives in its own file and calls
//! the blocking store on the blocking pool. Operations not implemented here fall through to
//! `s3s`'s default, `NotImplemented`.

mod attributes;
mod body;
mod bucket;
pub mod bucket_cors;
pub mod checksum;
pub mod complete_route;
pub mod complete_xml;
mod convert;
mod copy;
pub mod error;
pub mod host;
mod list;
mod multipart;
mod object;
pub mod post_object;
mod read;

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use tracing::instrument;

use crate::auth::KeyRing;
use crate::store::{Volume, Volumes};

/// The S3 service over a set of volumes.
#[derive(Clone)]
pub struct S3Vol {
    volumes: Arc<Volumes>,
    keys: KeyRing,
    region: String,
}

impl S3Vol {
    /// `region` is what GetBucketLocation and HeadBucket report.
    pub fn new(volumes: Arc<Volumes>, keys: KeyRing, region: String) -> Self {
        Self { volumes, keys, region }
    }

    fn volume(&self, bucket: &str) -> S3Result<Arc<Volume>> {
        self.volumes.get(bucket).map_err(s3s::S3Error::from)
    }

    /// Runs one operation on `bucket` with its volume as [`body::VOLUME`], so that its
    /// blocking work stays within the volume's bounds (a hung volume stalls only itself).
    /// An unknown or unavailable bucket runs as is: the operation reports it.
    ///
    /// A bucket not known yet in `volumes_root` mode (another node's CreateBucket) is
    /// looked up first ([`Volumes::discover`], one `lstat`) on the blocking pool:
    /// [`Volumes::get`] never touches the file system on an async thread.
    async fn on<T>(&self, bucket: &str, op: impl std::future::Future<Output = S3Result<T>>) -> S3Result<T> {
        if self.volumes.may_discover(bucket) {
            let (vols, name) = (self.volumes.clone(), bucket.to_owned());
            body::blocking(move || {
                vols.discover(&name);
                Ok(())
            })
            .await?;
        }
        match self.volumes.get(bucket) {
            Ok(vol) => body::VOLUME.scope(vol, op).await,
            Err(_) => op.await,
        }
    }
}

#[async_trait::async_trait]
impl S3 for S3Vol {
    #[instrument(skip_all, fields(op = "ListBuckets"))]
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.do_list_buckets(req).await
    }

    #[instrument(skip_all, fields(op = "PutBucketCors", bucket = %req.input.bucket))]
    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_put_bucket_cors(req)).await
    }

    #[instrument(skip_all, fields(op = "GetBucketCors", bucket = %req.input.bucket))]
    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_get_bucket_cors(req)).await
    }

    #[instrument(skip_all, fields(op = "DeleteBucketCors", bucket = %req.input.bucket))]
    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_delete_bucket_cors(req)).await
    }

    #[instrument(skip_all, fields(op = "HeadBucket", bucket = %req.input.bucket))]
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_head_bucket(req)).await
    }

    #[instrument(skip_all, fields(op = "GetBucketLocation", bucket = %req.input.bucket))]
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_get_bucket_location(req)).await
    }

    #[instrument(skip_all, fields(op = "GetBucketVersioning", bucket = %req.input.bucket))]
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_get_bucket_versioning(req)).await
    }

    #[instrument(skip_all, fields(op = "CreateBucket", bucket = %req.input.bucket))]
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_create_bucket(req)).await
    }

    #[instrument(skip_all, fields(op = "DeleteBucket", bucket = %req.input.bucket))]
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_delete_bucket(req)).await
    }

    #[instrument(skip_all, fields(op = "ListObjects", bucket = %req.input.bucket))]
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_list_objects(req)).await
    }

    #[instrument(skip_all, fields(op = "ListObjectsV2", bucket = %req.input.bucket))]
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_list_objects_v2(req)).await
    }

    #[instrument(skip_all, fields(op = "PutObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_put_object(req)).await
    }

    #[instrument(skip_all, fields(op = "PostObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn post_object(&self, req: S3Request<PostObjectInput>) -> S3Result<S3Response<PostObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_post_object(req)).await
    }

    #[instrument(skip_all, fields(op = "GetObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_get_object(req)).await
    }

    #[instrument(skip_all, fields(op = "GetObjectAttributes", bucket = %req.input.bucket))]
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_get_object_attributes(req)).await
    }

    #[instrument(skip_all, fields(op = "HeadObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_head_object(req)).await
    }

    #[instrument(skip_all, fields(op = "DeleteObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_delete_object(req)).await
    }

    #[instrument(skip_all, fields(op = "DeleteObjects", bucket = %req.input.bucket))]
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_delete_objects(req)).await
    }

    #[instrument(skip_all, fields(op = "CopyObject", bucket = %req.input.bucket, key = %req.input.key))]
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_copy_object(req)).await
    }

    #[instrument(skip_all, fields(op = "CreateMultipartUpload", bucket = %req.input.bucket, key = %req.input.key))]
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_create_multipart_upload(req)).await
    }

    #[instrument(skip_all, fields(op = "UploadPart", bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_upload_part(req)).await
    }

    #[instrument(skip_all, fields(op = "CompleteMultipartUpload", bucket = %req.input.bucket, key = %req.input.key))]
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_complete_multipart_upload(req)).await
    }

    #[instrument(skip_all, fields(op = "AbortMultipartUpload", bucket = %req.input.bucket, key = %req.input.key))]
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_abort_multipart_upload(req)).await
    }

    #[instrument(skip_all, fields(op = "UploadPartCopy", bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_upload_part_copy(req)).await
    }

    #[instrument(skip_all, fields(op = "ListMultipartUploads", bucket = %req.input.bucket))]
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_list_multipart_uploads(req)).await
    }

    #[instrument(skip_all, fields(op = "ListParts", bucket = %req.input.bucket, key = %req.input.key))]
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let bucket = req.input.bucket.clone();
        self.on(&bucket, self.do_list_parts(req)).await
    }
}
