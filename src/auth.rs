//! Access keys: the credentials file, each key's volume scope and permissions, and the
//! `s3s` hooks that enforce them ([`S3Auth`] finds a secret, [`S3Access`] decides).
//!
//! Secrets never leave this module except into signature checks; nothing here logs one.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};
use serde::Deserialize;

/// What a key may do (SPEC.md "Authentication and access").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// ListBuckets, list, GET, HEAD.
    Read,
    /// PUT, copy into, multipart.
    Write,
    /// DeleteObject, DeleteObjects, AbortMultipartUpload.
    Delete,
    /// CreateBucket/DeleteBucket in `volumes_root` mode.
    Admin,
}

/// One `[[key]]` of the credentials file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// A name for logs (never the secret).
    pub name: String,
    pub access_key: String,
    pub secret_key: String,
    /// Volumes the key may use; `["*"]` for all.
    pub volumes: Vec<String>,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

impl KeyEntry {
    /// True when the key may use volume `bucket`.
    pub fn may_use(&self, bucket: &str) -> bool {
        self.volumes.iter().any(|v| v == "*" || v == bucket)
    }

    /// True when the key holds `p`.
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }
}

/// The keys in force, by access key id. Replaced whole on reload.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<KeyEntry>>,
}

impl KeySet {
    /// Parses credentials TOML. Errors name the problem (never a secret).
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: CredentialsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for k in f.key {
            if k.access_key.is_empty() || k.secret_key.is_empty() {
                return Err(format!("key {:?}: access_key and secret_key must not be empty", k.name));
            }
            if k.volumes.is_empty() {
                return Err(format!("key {:?}: volumes is empty (use [\"*\"] for all)", k.name));
            }
            let name = k.name.clone();
            if keys.insert(k.access_key.clone(), Arc::new(k)).is_some() {
                return Err(format!("key {name:?}: access_key is used twice"));
            }
        }
        Ok(Self { keys })
    }

    /// Loads a credentials file, refusing one that group or others may read or write.
    pub fn load(path: &Path) -> Result<Self, String> {
        let md = std::fs::metadata(path).map_err(|e| format!("cannot read credentials {}: {e}", path.display()))?;
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "credentials {} is accessible by other users (mode {mode:04o}); it holds secrets: chmod 600 it",
                path.display()
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read credentials {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("credentials {}: {e}", path.display()))
    }

    /// A set with a single key (the embedded development default).
    pub fn single(entry: KeyEntry) -> Self {
        let mut keys = HashMap::new();
        keys.insert(entry.access_key.clone(), Arc::new(entry));
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The shared, reloadable key set: the `s3s` auth and access provider.
#[derive(Debug, Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Arc<KeySet>>>,
    /// With `strict_region`, the only region a request may be signed for.
    strict_region: Option<String>,
}

impl KeyRing {
    pub fn new(keys: KeySet, strict_region: Option<String>) -> Self {
        Self { inner: Arc::new(RwLock::new(Arc::new(keys))), strict_region }
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

/// The permission an S3 operation needs; `None` for operations s3vol does not implement
/// (they answer NotImplemented to any valid key).
pub fn permission_for(op: &str) -> Option<Permission> {
    Some(match op {
        "ListBuckets"
        | "HeadBucket"
        | "GetBucketLocation"
        | "GetBucketVersioning"
        | "ListObjects"
        | "ListObjectsV2"
        | "GetObject"
        | "HeadObject"
        | "ListMultipartUploads"
        | "ListParts" => Permission::Read,
        "PutObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => Permission::Write,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" => Permission::Delete,
        "CreateBucket" | "DeleteBucket" => Permission::Admin,
        _ => return None,
    })
}

/// The region of a SigV4 credential scope in the Authorization header or presigned query.
fn signed_region(cx: &S3AccessContext<'_>) -> Option<String> {
    let scope = if let Some(auth) = cx.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        auth.split("Credential=").nth(1)?.split(',').next()?.to_owned()
    } else {
        let q = cx.uri().query()?;
        let raw = q.split('&').find_map(|kv| kv.strip_prefix("X-Amz-Credential="))?;
        urlencoding::decode(raw).ok()?.into_owned()
    };
    scope.split('/').nth(2).map(str::to_owned)
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
        self.decide(cx)?;
        crate::request::allowed(cx.extensions_mut());
        Ok(())
    }
}

impl KeyRing {
    /// The access decision for one request (SPEC.md "Authentication and access").
    fn decide(&self, cx: &S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed"));
        };
        let Some(key) = self.get(&creds.access_key) else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        if let Some(want) = &self.strict_region
            && let Some(got) = signed_region(cx)
            && &got != want
        {
            return Err(s3_error!(
                AuthorizationHeaderMalformed,
                "the request is signed for region {got}, expected {want}"
            ));
        }
        let Some(perm) = permission_for(cx.s3_op().name()) else {
            return Ok(());
        };
        if !key.has(perm) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        if let Some(bucket) = cx.s3_path().get_bucket_name()
            && !key.may_use(bucket)
        {
            return Err(s3_error!(AccessDenied, "Access Denied"));
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
    fn bad_credentials_files() {
        assert!(
            KeySet::parse("[[key]]\nname='x'\naccess_key='a'\nsecret_key=''\nvolumes=['*']\npermissions=[]").is_err()
        );
        assert!(
            KeySet::parse("[[key]]\nname='x'\naccess_key='a'\nsecret_key='s'\nvolumes=[]\npermissions=[]").is_err()
        );
        assert!(
            KeySet::parse("[[key]]\nname='x'\naccess_key='a'\nsecret_key='s'\nvolumes=['*']\npermissions=['fly']")
                .is_err()
        );
        let dup = "[[key]]\nname='x'\naccess_key='a'\nsecret_key='s'\nvolumes=['*']\npermissions=[]\n".repeat(2);
        assert!(KeySet::parse(&dup).is_err());
    }

    #[test]
    fn operations_need_their_permission() {
        assert_eq!(permission_for("GetObject"), Some(Permission::Read));
        assert_eq!(permission_for("UploadPart"), Some(Permission::Write));
        assert_eq!(permission_for("DeleteObjects"), Some(Permission::Delete));
        assert_eq!(permission_for("CreateBucket"), Some(Permission::Admin));
        assert_eq!(permission_for("PutObjectTagging"), None);
    }
}
