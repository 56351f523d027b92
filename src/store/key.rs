//! Key → path: the security boundary.
//!
//! This module alone turns a client-supplied object key into a relative path beneath a
//! volume root, and a bucket name into the name of a directory in `volumes_root`. It owns
//! the rejection rules of SPEC.md "Keys are paths" and S3's bucket naming rules; it does
//! no I/O. Every other module receives an [`ObjectKey`] or a [`BucketName`] and never
//! builds a path from a raw string.

use super::Error;

/// S3: a key is at most 1024 bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;
/// POSIX `NAME_MAX`: one path segment is at most 255 bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// A validated object key: a relative path of one or more non-empty segments.
///
/// Shape: `seg(/seg)*` for a file, or `seg(/seg)*/` for a directory marker (a key that
/// ends with `/`). No segment is empty, `.` or `..`, none holds a NUL, none is longer than
/// 255 bytes, and the first is never the volume's internal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    key: String,
}

impl ObjectKey {
    /// Validates `key` against SPEC.md's key rules.
    ///
    /// Errors: [`Error::KeyTooLong`] past 1024 bytes; [`Error::InvalidKey`] for an empty
    /// key, a NUL byte, a leading `/`, an empty segment (`a//b`), a `.` or `..` segment, a
    /// segment over 255 bytes, or a first segment equal to `internal_dir`.
    pub fn parse(key: &str, internal_dir: &str) -> Result<Self, Error> {
        if key.is_empty() {
            return Err(Error::InvalidKey("the key is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLong);
        }
        if key.as_bytes().contains(&0) {
            return Err(Error::InvalidKey("the key contains a NUL byte"));
        }
        if key.starts_with('/') {
            return Err(Error::InvalidKey("the key starts with '/'"));
        }
        let body = key.strip_suffix('/').unwrap_or(key);
        for (i, seg) in body.split('/').enumerate() {
            match seg {
                "" => return Err(Error::InvalidKey("the key has an empty path segment")),
                "." | ".." => return Err(Error::InvalidKey("the key has a '.' or '..' segment")),
                _ if seg.len() > MAX_SEGMENT_LEN => {
                    return Err(Error::InvalidKey("a path segment of the key is longer than 255 bytes"));
                }
                _ if i == 0 && seg == internal_dir => {
                    return Err(Error::InvalidKey("the key names the reserved internal directory"));
                }
                _ => {}
            }
        }
        Ok(Self { key: key.to_owned() })
    }

    /// The key as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// True for a directory marker key (`k/`).
    pub fn is_dir_marker(&self) -> bool {
        self.key.ends_with('/')
    }

    /// The relative path without a trailing `/`: `a/b` for both `a/b` and `a/b/`.
    pub fn path(&self) -> &str {
        self.key.strip_suffix('/').unwrap_or(&self.key)
    }

    /// The parent directory's relative path (`""` for the volume root) and the last segment.
    pub fn split_parent(&self) -> (&str, &str) {
        let p = self.path();
        match p.rfind('/') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => ("", p),
        }
    }

    /// The relative paths of every ancestor directory, shallowest first: `a`, `a/b` for `a/b/c`.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let p = self.path();
        p.match_indices('/').map(move |(i, _)| &p[..i])
    }
}

/// A bucket name that follows S3's naming rules for general purpose buckets (AWS S3 User
/// Guide, "General purpose bucket naming rules"). In `volumes_root` mode it becomes the
/// name of a directory, so it is a path rule too: no `/`, no `.` or `..`, no NUL.
///
/// The rules checked, each from that page:
/// - 3 to 63 characters long;
/// - only lower-case letters, digits, `.` and `-`;
/// - begins and ends with a letter or digit;
/// - no two adjacent periods (`..`);
/// - not formatted as an IPv4 address (`192.168.5.4`).
///
/// Together they exclude `.`, `..`, `/` and NUL: the name is always one plain path segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// Validates `name` against the rules above; `None` when it breaks one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::is_valid(name).then(|| Self(name.to_owned()))
    }

    /// True when `name` follows every rule above.
    pub fn is_valid(name: &str) -> bool {
        let b = name.as_bytes();
        (3..=63).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && !name.contains("..")
            && name.parse::<std::net::Ipv4Addr>().is_err()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BucketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "vol-123", "a.b.c", "x".repeat(63).as_str()] {
            assert!(BucketName::is_valid(ok), "{ok}");
            assert_eq!(BucketName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in
            ["ab", "Abc", "a_b", "-ab", "ab-", "a..b", "192.168.1.1", "x".repeat(64).as_str(), "a/b", "..", "a\0bc"]
        {
            assert!(!BucketName::is_valid(bad), "{bad}");
            assert!(BucketName::parse(bad).is_none(), "{bad}");
        }
    }

    fn check(key: &str) -> Result<ObjectKey, Error> {
        ObjectKey::parse(key, ".s3vol")
    }

    #[test]
    fn key_table() {
        let ok = [
            "a",
            "a/b/c.txt",
            "dir/",
            "a b/#c%d+e?f.txt",
            "données/é ü.txt",
            "a\\b",
            "..a",
            "a..",
            ".hidden",
            ".s3volx/a",
            "x/.s3vol/y",
            "%2e%2e",
        ];
        for k in ok {
            assert!(check(k).is_ok(), "{k:?} should be accepted");
        }
        let long_seg = "x".repeat(256);
        let bad = [
            "",
            "/a",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            ".",
            "../etc/passwd",
            "a/..",
            "a/b/../..",
            "a\0b",
            ".s3vol/tmp/x",
            ".s3vol",
            ".s3vol/",
            "//",
            "/",
            "a//",
            long_seg.as_str(),
        ];
        for k in bad {
            assert!(matches!(check(k), Err(Error::InvalidKey(_))), "{k:?} should be rejected");
        }
        let max_seg = "y".repeat(255);
        assert!(check(&max_seg).is_ok());
        let too_long = "a/".repeat(512) + "b";
        assert!(matches!(check(&too_long), Err(Error::KeyTooLong)));
        let exact = "a".repeat(200)
            + "/"
            + &"b".repeat(200)
            + "/"
            + &"c".repeat(200)
            + "/"
            + &"d".repeat(200)
            + "/"
            + &"e".repeat(220);
        assert_eq!(exact.len(), 1024);
        assert!(check(&exact).is_ok());
    }

    #[test]
    fn parts_of_a_key() {
        let k = check("a/b/c").unwrap();
        assert_eq!(k.split_parent(), ("a/b", "c"));
        assert_eq!(k.ancestors().collect::<Vec<_>>(), ["a", "a/b"]);
        let d = check("a/b/").unwrap();
        assert!(d.is_dir_marker());
        assert_eq!(d.path(), "a/b");
        assert_eq!(d.split_parent(), ("a", "b"));
        let top = check("top").unwrap();
        assert_eq!(top.split_parent(), ("", "top"));
        assert_eq!(top.ancestors().count(), 0);
    }
}
