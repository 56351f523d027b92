//! The credentials file: access keys, each key's volume scope and permissions
//! (SPEC.md "Authentication and access"). Parsed and checked whole; secrets never leave
//! this module except into signature checks, and parse errors never quote a value.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

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
    /// The access key id clients sign with.
    pub access_key: String,
    /// The secret; it leaves this module only into signature checks and `s3vol presign`.
    pub secret_key: String,
    /// Volumes the key may use; `["*"]` for all.
    pub volumes: Vec<String>,
    /// What the key may do on those volumes.
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
    pub(super) keys: HashMap<String, Arc<KeyEntry>>,
}

impl KeySet {
    /// Parses credentials TOML. Errors name the problem (never a secret).
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: CredentialsFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
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

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key named `name` (the `name` field, not the access key id).
    pub fn by_name(&self, name: &str) -> Option<Arc<KeyEntry>> {
        self.keys.values().find(|k| k.name == name).cloned()
    }
}

/// A TOML error of the credentials file without the file's text: the line number and the
/// message, every quoted value in it elided unless it is a field or permission name (the
/// TOML library quotes the offending line, and a value, which may be a secret).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    const NAMES: &[&str] = &["key", "name", "access_key", "secret_key", "volumes", "permissions"];
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let mut out = String::new();
    let mut quote: Option<(char, String)> = None;
    for c in e.message().chars() {
        match &mut quote {
            None if c == '`' || c == '"' || c == '\'' => quote = Some((c, String::new())),
            None => out.push(c),
            Some((q, inner)) if c == *q => {
                let known =
                    NAMES.contains(&inner.as_str()) || ["read", "write", "delete", "admin"].contains(&inner.as_str());
                out.push(*q);
                out.push_str(if known { inner } else { "..." });
                out.push(*q);
                quote = None;
            }
            Some((_, inner)) => inner.push(c),
        }
    }
    if quote.is_some() {
        out.push_str("...");
    }
    match line {
        Some(l) => format!("line {l}: {}", out.trim()),
        None => out.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
