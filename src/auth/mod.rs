//! Access keys: the credentials file, each key's volume scope and permissions, and the
//! `s3s` hooks that enforce them ([`S3Auth`] finds a secret, [`S3Access`] decides).
//!
//! Anonymous requests reach only volumes marked `public`, and only to read ([`PublicVolumes`]).
//!
//! Secrets never leave this module except into signature checks; nothing here logs one.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, GetObjectInput, PostObjectInput, UploadPartCopyInput};
use s3s::{S3Request, S3Result, s3_error};

use crate::guard::AuthParams;

mod keys;
pub use keys::*;

/// Volumes open to anonymous GET, HEAD and list (`public = true`).
#[derive(Debug, Clone, Default)]
pub struct PublicVolumes {
    names: HashSet<String>,
    /// Every volume is public (`[volume_defaults] public = true` in `volumes_root` mode).
    all: bool,
}

impl PublicVolumes {
    /// The explicit volumes in `names`, or every volume when `all`.
    pub fn new(names: impl IntoIterator<Item = String>, all: bool) -> Self {
        Self { names: names.into_iter().collect(), all }
    }

    /// True when `bucket` may be read anonymously.
    pub fn contains(&self, bucket: &str) -> bool {
        self.all || self.names.contains(bucket)
    }
}

/// The operations anyone may perform on a public volume, signed or not: read only.
pub const PUBLIC_OPS: &[&str] = &["GetObject", "HeadObject", "ListObjects", "ListObjectsV2", "HeadBucket"];

/// Presigned URLs may live at most this long (SPEC.md; as S3: 7 days, in seconds).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// The shared, reloadable key set: the `s3s` auth and access provider.
#[derive(Debug, Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Arc<KeySet>>>,
    /// With `strict_region`, the only region a request may be signed for.
    strict_region: Option<String>,
    /// Volumes readable without a key.
    public: Arc<PublicVolumes>,
    /// SigV2 accepted (config `sigv2`); checked here for browser forms, whose signature
    /// version only `s3s` sees (in the form's fields).
    sigv2: bool,
}

impl KeyRing {
    /// A ring holding `keys`, with no public volume.
    pub fn new(keys: KeySet, strict_region: Option<String>) -> Self {
        Self { inner: Arc::new(RwLock::new(Arc::new(keys))), strict_region, public: Arc::default(), sigv2: true }
    }

    /// The same ring, accepting SigV2 (`sigv2 = true`, the default) or not.
    pub fn with_sigv2(mut self, sigv2: bool) -> Self {
        self.sigv2 = sigv2;
        self
    }

    /// The same ring, with `public` open to anonymous reads.
    pub fn with_public(mut self, public: PublicVolumes) -> Self {
        self.public = Arc::new(public);
        self
    }

    /// True when `bucket` is a public volume.
    pub fn is_public(&self, bucket: &str) -> bool {
        self.public.contains(bucket)
    }

    /// Replaces the key set; a removed key fails from its next request on.
    pub fn replace(&self, keys: KeySet) {
        *self.inner.write().unwrap() = Arc::new(keys);
    }

    /// The key with access key id `ak`, if in force.
    pub fn get(&self, ak: &str) -> Option<Arc<KeyEntry>> {
        self.inner.read().unwrap().keys.get(ak).cloned()
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.get(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret_key.as_str())),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS access key Id you provided does not exist in our records."))
            }
        }
    }
}

/// The permission an S3 operation needs; `None` denies it to every key (fail closed: an
/// operation this table does not name, such as one a later `s3s` adds, is refused before
/// it reaches the S3 implementation). Operations s3vol does not implement still need
/// their permission and then answer `NotImplemented`.
///
/// Reads of objects and bucket settings need `read`; writes of objects (PutObject and
/// PostObject, the browser form upload, alike) and of bucket settings s3vol does not
/// support `write`; removals of objects `delete`; creating or removing a volume and its
/// CORS rules `admin`.
pub fn permission_for(op: &str) -> Option<Permission> {
    use Permission::*;
    Some(match op {
        "ListBuckets"
        | "ListDirectoryBuckets"
        | "HeadBucket"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListObjectVersions"
        | "ListMultipartUploads"
        | "ListParts"
        | "GetObject"
        | "HeadObject"
        | "GetObjectAttributes"
        | "GetObjectAcl"
        | "GetObjectTagging"
        | "GetObjectLegalHold"
        | "GetObjectRetention"
        | "GetObjectTorrent"
        | "SelectObjectContent" => Read,
        // Bucket CORS is an admin setting (issue 14: Put/Get/DeleteBucketCors for admin keys).
        "GetBucketCors" => Admin,
        op if op.starts_with("GetBucket") || op.starts_with("ListBucket") => Read,
        "GetObjectLockConfiguration" | "GetPublicAccessBlock" => Read,
        "PutObject"
        | "PostObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "PutObjectAcl"
        | "PutObjectTagging"
        | "PutObjectLegalHold"
        | "PutObjectRetention"
        | "RestoreObject" => Write,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" | "DeleteObjectTagging" => Delete,
        // Creating and removing a volume, and the bucket CORS rules every node serves.
        "CreateBucket" | "DeleteBucket" | "PutBucketCors" | "DeleteBucketCors" => Admin,
        // Other bucket settings (tagging, versioning, ACLs, encryption, lifecycle, ...) are
        // unsupported by design: a writer gets NotImplemented, anyone less AccessDenied.
        "PutObjectLockConfiguration"
        | "PutPublicAccessBlock"
        | "DeletePublicAccessBlock"
        | "CreateBucketMetadataTableConfiguration" => Write,
        op if op.starts_with("PutBucket") || op.starts_with("DeleteBucket") => Write,
        // CreateSession (S3 Express sessions) and WriteGetObjectResponse (Object Lambda)
        // have no meaning here; anything unknown is denied.
        _ => return None,
    })
}

/// Decides whether `key` (`None`: anonymous) may perform operation `op` on `bucket`
/// (`None`: no bucket, i.e. ListBuckets).
///
/// A key may use only the volumes in its scope, and each operation needs its
/// [`permission_for`]; an operation without one is denied to every key. Anyone, signed or not, may perform the [`PUBLIC_OPS`] on a public
/// volume. A DeleteObjects by a key without `delete` passes here: the operation answers
/// `AccessDenied` for each of its keys, as S3 does.
///
/// Errors: `AccessDenied`.
pub fn decide(key: Option<&KeyEntry>, op: &str, bucket: Option<&str>, public: &PublicVolumes) -> S3Result<()> {
    let denied = || Err(s3_error!(AccessDenied, "Access Denied"));
    if let Some(b) = bucket
        && public.contains(b)
        && PUBLIC_OPS.contains(&op)
    {
        return Ok(());
    }
    let Some(key) = key else {
        return Err(s3_error!(AccessDenied, "Anonymous access is not allowed"));
    };
    // CreateBucket of a bucket outside the key's scope is judged by the operation, which
    // alone knows whether it exists: BucketAlreadyExists when it does (as S3 answers for
    // another owner's bucket), AccessDenied when it does not. It still needs `admin`.
    if let Some(b) = bucket
        && !key.may_use(b)
        && op != "CreateBucket"
    {
        return denied();
    }
    match permission_for(op) {
        None => denied(),
        Some(p) if key.has(p) => Ok(()),
        Some(Permission::Delete) if op == "DeleteObjects" => Ok(()),
        Some(_) => denied(),
    }
}

/// The request's authentication parameters as the guard decoded them (the same decoding
/// `s3s` used), or decoded here when the guard did not run (in-process callers).
fn auth_params(cx: &mut S3AccessContext<'_>) -> Option<AuthParams> {
    if let Some(p) = cx.extensions_mut().get::<AuthParams>() {
        return Some(p.clone());
    }
    let rules = crate::guard::AuthRules { sigv2: true, max_skew_secs: i64::MAX / 4 };
    crate::guard::auth_params::inspect(cx.method(), cx.uri(), cx.headers(), rules, 0).ok()
}

impl KeyRing {
    /// The key behind `creds`, if any and still in force.
    fn key_of(&self, creds: Option<&Credentials>) -> Option<Arc<KeyEntry>> {
        creds.and_then(|c| self.get(&c.access_key))
    }

    /// A copy reads its source: the caller needs `read` on the source volume (or the source
    /// volume is public), on top of `write` on the destination checked by [`decide`].
    fn check_copy_source(&self, creds: Option<&Credentials>, src: &CopySource) -> S3Result<()> {
        let CopySource::Bucket { bucket, .. } = src else {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        };
        decide(self.key_of(creds).as_deref(), "GetObject", Some(bucket), &self.public)
    }

    /// The access decision for one request (SPEC.md "Authentication and access").
    fn authorize(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let creds = cx.credentials().cloned();
        let (op, bucket) = (cx.s3_op().name().to_owned(), cx.s3_path().get_bucket_name().map(str::to_owned));
        self.authorize_with(creds.as_ref(), || auth_params(cx), &op, bucket.as_deref())
    }

    /// [`Self::authorize`] from its parts: `creds` as `s3s` verified them, `params` the
    /// request's authentication parameters (read only for a signed request).
    fn authorize_with(
        &self,
        creds: Option<&Credentials>,
        params: impl FnOnce() -> Option<AuthParams>,
        op: &str,
        bucket: Option<&str>,
    ) -> S3Result<()> {
        let key = match creds {
            None => None,
            Some(creds) => match self.get(&creds.access_key) {
                Some(k) => Some(k),
                // Removed by a reload between the signature check and now.
                None => return Err(s3_error!(InvalidAccessKeyId)),
            },
        };
        if key.is_some() {
            let Some(params) = params() else {
                return Err(s3_error!(AccessDenied, "Access Denied"));
            };
            if let Some(want) = &self.strict_region
                && let Some(got) = params.region()
                && got != want
            {
                return Err(s3_error!(
                    AuthorizationHeaderMalformed,
                    "the request is signed for region {got}, expected {want}"
                ));
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if params.presigned_lifetime(now).is_some_and(|e| e > MAX_PRESIGNED_EXPIRES_SECS) {
                return Err(s3_error!(
                    AuthorizationQueryParametersError,
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800"
                ));
            }
        }
        decide(key.as_deref(), op, bucket, &self.public)
    }

    /// The decision [`S3Access::check`] makes, for a request `s3s` hands to a custom route
    /// (which bypasses `S3Access`): operation `op` on `key` in `bucket`, with the request's
    /// log line identified and marked allowed as `check` does.
    ///
    /// Errors: as [`decide`], plus `InvalidAccessKeyId`, `AuthorizationHeaderMalformed` and
    /// `AuthorizationQueryParametersError` as `check` answers them.
    pub fn check_route<T>(&self, req: &S3Request<T>, op: &str, bucket: &str, key: &str) -> S3Result<()> {
        let creds = req.credentials.as_ref();
        let key_name = creds.and_then(|c| self.get(&c.access_key)).map(|k| k.name.clone());
        crate::request::identify(&req.extensions, op, key_name.as_deref(), Some(bucket), Some(key));
        let params = || {
            req.extensions.get::<AuthParams>().cloned().or_else(|| {
                let rules = crate::guard::AuthRules { sigv2: true, max_skew_secs: i64::MAX / 4 };
                crate::guard::auth_params::inspect(&req.method, &req.uri, &req.headers, rules, 0).ok()
            })
        };
        self.authorize_with(creds, params, op, Some(bucket))?;
        crate::request::allowed(&req.extensions);
        Ok(())
    }
}

#[async_trait::async_trait]
impl S3Access for KeyRing {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // For the request's log line: the key's *name*, never its secret.
        let key_name = cx.credentials().and_then(|c| self.get(&c.access_key)).map(|k| k.name.clone());
        let op = cx.s3_op().name().to_owned();
        let path = cx.s3_path();
        let (bucket, object) = (path.get_bucket_name().map(str::to_owned), path.get_object_key().map(str::to_owned));
        crate::request::identify(cx.extensions_mut(), &op, key_name.as_deref(), bucket.as_deref(), object.as_deref());
        self.authorize(cx)?;
        crate::request::allowed(cx.extensions_mut());
        Ok(())
    }

    /// A browser form upload: `s3s` checked its signature from the form's fields, which the
    /// guard cannot see. SigV4 forms carry the region of their credential scope, SigV2
    /// forms none: so `sigv2 = false` and `strict_region` are applied here.
    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        if req.credentials.is_none() {
            return Ok(()); // anonymous: `check` already decided
        }
        match req.region.as_ref().map(|r| r.as_str().to_owned()) {
            None if !self.sigv2 => Err(s3_error!(
                InvalidRequest,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
            )),
            Some(got) if self.strict_region.as_ref().is_some_and(|want| *want != got) => {
                Err(s3_error!(AuthorizationHeaderMalformed, "the request is signed for region {got}, expected another"))
            }
            _ => Ok(()),
        }
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_copy_source(req.credentials.as_ref(), &req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_copy_source(req.credentials.as_ref(), &req.input.copy_source)
    }

    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        let i = &req.input;
        let overrides = i.response_cache_control.is_some()
            || i.response_content_disposition.is_some()
            || i.response_content_encoding.is_some()
            || i.response_content_language.is_some()
            || i.response_content_type.is_some()
            || i.response_expires.is_some();
        if req.credentials.is_none() && overrides {
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_scope() {
        let ks = KeySet::parse(
            r#"
            [[key]]
            name = "ci"
            access_key = "AK1"
            secret_key = "s1"
            volumes = ["vol-a"]
            permissions = ["read", "write"]
            [[key]]
            name = "ops"
            access_key = "AK2"
            secret_key = "s2"
            volumes = ["*"]
            permissions = ["read", "delete", "admin"]
            "#,
        )
        .unwrap();
        assert_eq!(ks.len(), 2);
        let ring = KeyRing::new(ks, None);
        let ci = ring.get("AK1").unwrap();
        assert!(ci.may_use("vol-a") && !ci.may_use("vol-b"));
        assert!(ci.has(Permission::Write) && !ci.has(Permission::Delete));
        assert!(ring.get("AK2").unwrap().may_use("anything"));
        ring.replace(KeySet::default());
        assert!(ring.get("AK1").is_none(), "a removed key stops working at once");
    }

    #[test]
    fn operations_need_their_permission() {
        assert_eq!(permission_for("GetObject"), Some(Permission::Read));
        assert_eq!(permission_for("UploadPart"), Some(Permission::Write));
        assert_eq!(permission_for("DeleteObjects"), Some(Permission::Delete));
        assert_eq!(permission_for("CreateBucket"), Some(Permission::Admin));
        assert_eq!(permission_for("PostObject"), Some(Permission::Write));
        assert_eq!(permission_for("PutBucketCors"), Some(Permission::Admin));
        assert_eq!(permission_for("GetBucketCors"), Some(Permission::Admin));
        assert_eq!(permission_for("SomethingNew"), None);
    }

    /// Every operation `s3s` can dispatch, read from its source: each maps to a
    /// permission or is deliberately denied, and none reaches the S3 implementation by
    /// default (an operation a later `s3s` adds is denied until this table names it).
    #[test]
    fn every_s3s_operation_is_decided() {
        // The s3s source cargo built against: its version from Cargo.lock, in the registry.
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"s3s\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .expect("s3s in Cargo.lock");
        let home = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
        let generated = std::fs::read_dir(home.join("registry/src"))
            .unwrap()
            .filter_map(|d| {
                std::fs::read_to_string(d.ok()?.path().join(format!("s3s-{version}/src/ops/generated.rs"))).ok()
            })
            .next()
            .expect("the s3s source in the cargo registry");
        // `impl super::Operation for X { fn name(&self) -> &'static str { "X" } ...`
        let names: Vec<&str> = generated
            .split("fn name(&self) -> &'static str {")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .collect();
        assert!(names.len() > 90, "found only {} operations in s3s", names.len());
        const DENIED: [&str; 2] = ["CreateSession", "WriteGetObjectResponse"];
        let all = key(&["*"], &[Permission::Read, Permission::Write, Permission::Delete, Permission::Admin]);
        let none = key(&["*"], &[]);
        for op in &names {
            let p = permission_for(op);
            assert_eq!(p.is_none(), DENIED.contains(op), "{op}: {p:?}");
            // DeleteObjects answers AccessDenied per key inside the operation, as S3 does.
            let per_key = *op == "DeleteObjects";
            assert_eq!(allowed(Some(&none), op, Some("vol-a"), &PublicVolumes::default()), per_key, "{op}");
            assert_eq!(allowed(Some(&all), op, Some("vol-a"), &PublicVolumes::default()), p.is_some(), "{op}");
        }
        assert!(names.contains(&"PostObject") && names.contains(&"PutObject"));
    }

    fn key(volumes: &[&str], perms: &[Permission]) -> KeyEntry {
        KeyEntry {
            name: "k".into(),
            access_key: "AK".into(),
            secret_key: "s".into(),
            volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
            permissions: perms.to_vec(),
        }
    }

    fn allowed(key: Option<&KeyEntry>, op: &str, bucket: Option<&str>, public: &PublicVolumes) -> bool {
        decide(key, op, bucket, public).is_ok()
    }

    #[test]
    fn scope_and_permission_table() {
        use Permission::*;
        let none = PublicVolumes::default();
        let reader = key(&["vol-a"], &[Read]);
        let writer = key(&["vol-a"], &[Write]);
        let all = key(&["*"], &[Read, Write, Delete, Admin]);
        // (key, op, bucket, allowed)
        let table: &[(&KeyEntry, &str, Option<&str>, bool)] = &[
            (&reader, "ListBuckets", None, true),
            (&reader, "GetObject", Some("vol-a"), true),
            (&reader, "ListObjectsV2", Some("vol-a"), true),
            (&reader, "GetObject", Some("vol-b"), false),
            (&reader, "PutObject", Some("vol-a"), false),
            (&reader, "DeleteObject", Some("vol-a"), false),
            (&reader, "AbortMultipartUpload", Some("vol-a"), false),
            (&reader, "CreateBucket", Some("vol-a"), false),
            (&reader, "CreateBucket", Some("vol-b"), false),
            // answered per key by the operation
            (&reader, "DeleteObjects", Some("vol-a"), true),
            (&reader, "DeleteObjects", Some("vol-b"), false),
            (&reader, "PutBucketCors", Some("vol-b"), false),
            (&reader, "PutBucketCors", Some("vol-a"), false),
            (&writer, "PutBucketCors", Some("vol-a"), false),
            (&writer, "PutBucketTagging", Some("vol-a"), true),
            (&reader, "PostObject", Some("vol-a"), false),
            (&reader, "PutObjectTagging", Some("vol-a"), false),
            (&writer, "PostObject", Some("vol-a"), true),
            (&writer, "PutObject", Some("vol-a"), true),
            (&writer, "UploadPart", Some("vol-a"), true),
            (&writer, "GetObject", Some("vol-a"), false),
            (&writer, "ListBuckets", None, false),
            (&all, "DeleteBucket", Some("anything"), true),
            (&all, "PutBucketCors", Some("vol-a"), true),
        ];
        for (k, op, b, want) in table {
            assert_eq!(allowed(Some(k), op, *b, &none), *want, "{op} on {b:?} by {:?}", k.permissions);
        }
    }

    #[test]
    fn anonymous_only_reads_public_volumes() {
        let public = PublicVolumes::new(["pub".to_owned()], false);
        for op in PUBLIC_OPS {
            assert!(allowed(None, op, Some("pub"), &public), "{op}");
            assert!(!allowed(None, op, Some("vol-a"), &public), "{op}");
        }
        for op in [
            "PutObject",
            "DeleteObject",
            "DeleteObjects",
            "CopyObject",
            "CreateMultipartUpload",
            "ListMultipartUploads",
            "GetBucketLocation",
            "CreateBucket",
            "DeleteBucket",
            "PutBucketCors",
        ] {
            assert!(!allowed(None, op, Some("pub"), &public), "{op}");
        }
        assert!(!allowed(None, "ListBuckets", None, &public));
        // a key out of scope still reads what anyone may read
        let other = key(&["vol-a"], &[]);
        assert!(allowed(Some(&other), "GetObject", Some("pub"), &public));
        assert!(!allowed(Some(&other), "PutObject", Some("pub"), &public));
        let everything = PublicVolumes::new([], true);
        assert!(allowed(None, "GetObject", Some("any"), &everything));
        assert!(!allowed(None, "PutObject", Some("any"), &everything));
    }
}
