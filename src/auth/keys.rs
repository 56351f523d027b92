//! The credentials file: access keys, each key's volume scope and permissions
//! (SPEC.md "Authentication and access"). Parsed and checked whole; secrets never leave
//! this module except into signature checks, and parse errors never quote a value.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

    /// Loads a credentials file: [`read_file`], then [`KeySet::from_file_text`]. The one
    /// loader of start-up, `check-config`, `presign`, the periodic reload and SIGHUP.
    ///
    /// Errors: those of [`read_file`] and [`KeySet::from_file_text`], prefixed with the path.
    pub fn load(path: &Path) -> Result<Self, String> {
        let (text, _) = read_file(path)?;
        Self::from_file_text(&text).map_err(|e| format!("credentials {}: {e}", path.display()))
    }

    /// Parses the whole text of a credentials file. An empty or white-space-only file is
    /// refused (it is what a writer that truncates before writing leaves for a moment, or a
    /// template that failed to render; taken as "no keys" it would revoke every key of the
    /// fleet at once); a file with no `[[key]]` but something else (a comment) holds no key.
    ///
    /// Errors: the empty file, and those of [`KeySet::parse`].
    pub fn from_file_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the file is empty (taken as a file being written, not as \"no keys\": to revoke every key, leave a comment in it)".into());
        }
        Self::parse(text)
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

/// Largest credentials file read (bytes): a runaway file (or a device that never ends) is
/// refused, not read into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads the credentials file at `path` (links followed: a Kubernetes Secret is a link to
/// a link) whole, through one descriptor opened without blocking (`O_NONBLOCK`: a FIFO
/// must not hang start-up) and checked by `fstat` before any byte is read: a regular file,
/// not readable or writable by group or others, at most [`MAX_FILE_BYTES`]. Returns the
/// text (UTF-8) and the `fstat` taken before the read, so that a caller can tell whether
/// the file changed while it was read.
///
/// Errors: a message naming the path and the problem, never a byte of the file. Blocking.
pub fn read_file(path: &Path) -> Result<(String, std::fs::Metadata), String> {
    let shown = path.display();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read credentials {shown}: {e}"))?;
    let md = f.metadata().map_err(|e| format!("cannot read credentials {shown}: {e}"))?;
    if !md.file_type().is_file() {
        return Err(format!("credentials {shown}: not a regular file"));
    }
    let mode = md.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "credentials {shown} is accessible by other users (mode {mode:04o}); it holds secrets: chmod 600 it"
        ));
    }
    if md.size() > MAX_FILE_BYTES {
        return Err(format!("credentials {shown}: larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut text = String::new();
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read credentials {shown}: {e}"))?;
    // Grew past the cap while read (the size checked above was of an earlier moment).
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("credentials {shown}: larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok((text, md))
}

/// Field names of the credentials file: the only words of a TOML error that may be shown.
const FIELDS: &[&str] = &["key", "name", "access_key", "secret_key", "volumes", "permissions"];

/// A TOML error of the credentials file, told without any part of the file's text or of
/// the TOML library's message (both quote values, and a value may be a secret, one with a
/// quote or backtick in it too): the line and column, a fixed description of the kind of
/// error, and the field name on that line when it is one of [`FIELDS`].
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message();
    let kind = if msg.starts_with("unknown field") {
        "unknown field (a [[key]] holds name, access_key, secret_key, volumes, permissions)".to_owned()
    } else if msg.starts_with("unknown variant") {
        "unknown permission (read, write, delete, admin)".to_owned()
    } else if msg.starts_with("missing field") {
        // The field's name is taken from our list, never copied out of the message.
        match FIELDS.iter().find(|f| msg.contains(&format!("`{f}`"))) {
            Some(f) => format!("missing field {f}"),
            None => "missing field".to_owned(),
        }
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        "a value of the wrong type (strings in quotes; volumes and permissions are lists of strings)".to_owned()
    } else if msg.contains("duplicate") {
        "a field or table given twice".to_owned()
    } else {
        "invalid TOML".to_owned()
    };
    let Some(span) = e.span() else { return kind };
    let at = span.start.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let line_text = text[line_start..].split('\n').next().unwrap_or("");
    let field = line_text.split('=').next().map(str::trim).filter(|f| FIELDS.contains(f));
    match field {
        Some(f) => format!("line {line}, column {column} (field {f}): {kind}"),
        None => format!("line {line}, column {column}: {kind}"),
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

    /// A secret pasted where it does not belong, holding a quote or a backtick, never
    /// reaches the error (attack finding F2: quote-eliding got out of step).
    #[test]
    fn toml_errors_show_no_part_of_a_value_with_quotes_or_backticks() {
        let head = "[[key]]\nname = \"k\"\naccess_key = \"AK1\"\nsecret_key = \"s\"\nvolumes = [\"*\"]\n";
        let cases = [
            (format!("{head}permissions = [\"wJalr`XUtnFEMI/K7MDENG\"]\n"), "unknown permission"),
            (format!("{head}permissions = ['wJalr\"XUtnFEMI/K7MDENG']\n"), "unknown permission"),
            (format!("{head}permissions = [\"wJalr'XUtnFEMI/K7MDENG\"]\n"), "unknown permission"),
            (format!("{head}permissions = [\"read\"]\n\"x`XUtnFEMI/K7MDENG\" = 1\n"), "unknown field"),
            (format!("{head}permissions = [\"read\"]\nXUtnFEMI = 1\n"), "unknown field"),
            (format!("{head}permissions = \"wJalr`XUtnFEMI/K7MDENG\"\n"), "wrong type"),
            (format!("{head}permissions = [\"read\"]\nsecret_key = \"XUtnFEMI/K7MDENG\"\n"), "line 7"),
            (format!("{head}permissions = [\"read\"\nXUtnFEMI/K7MDENG\n"), "invalid TOML"),
        ];
        for (text, want) in cases {
            let e = KeySet::parse(&text).unwrap_err();
            assert!(!e.contains("XUtnFEMI") && !e.contains("K7MDENG"), "{e}");
            assert!(e.contains(want), "{want:?} in {e}");
        }
        let e =
            KeySet::parse("[[key]]\nname = 'k'\nsecret_key = 's'\nvolumes = ['*']\npermissions = []\n").unwrap_err();
        assert!(e.contains("missing field access_key"), "{e}");
    }
}
