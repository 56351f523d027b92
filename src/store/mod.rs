//! POSIX storage for s3vol: volumes, keys as paths, atomic writes, metadata, listing and
//! multipart staging.
//!
//! This half of the crate speaks files and knows nothing about HTTP or S3 wire types. All
//! its operations are blocking; the protocol adapter runs them on the blocking pool.

pub mod assemble;
pub mod bucket_cors;
pub mod checksum;
pub mod cond;
pub mod dircache;
mod fsx;
pub mod key;
pub mod list;
pub mod meta;
pub mod multipart;
pub mod part_size;
pub mod quota;
pub mod read;
pub mod resolve;
pub mod scan;
mod sink;
pub mod status;
pub mod sweep;
pub mod volume;
pub mod write;

pub use key::ObjectKey;
pub use volume::{Volume, VolumeSettings, Volumes};

use std::io;

/// The blocking path of work that is not one request's (the sweep, the liveness check,
/// rescans, reloads): runs `f` on tokio's blocking pool inside `span`, so that no
/// file-system call runs on an async worker and its logs carry their context. Requests
/// take `s3::body::blocking`, which adds the per-volume bound on top of this.
pub fn spawn_blocking<T: Send + 'static>(
    span: tracing::Span,
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// Errors of the storage layer, by domain. The S3 adapter maps each to one S3 error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key breaks a rule of SPEC.md "Keys are paths"; the text says which.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The key is longer than 1024 bytes, or the file system says ENAMETOOLONG.
    #[error("the key is too long")]
    KeyTooLong,
    /// No regular file at that key (missing, a FIFO or device, or a symlink that leaves the volume).
    #[error("no such key")]
    NotFound,
    /// No such volume.
    #[error("no such bucket")]
    NoSuchBucket,
    /// The volume could not be served (directory missing, unreadable, or not mounted).
    #[error("the volume is unavailable")]
    Unavailable,
    /// A parent of the key is a file (ENOTDIR).
    #[error("a parent of the key is a file")]
    ParentIsFile,
    /// The key names an existing directory (EISDIR).
    #[error("the key names an existing directory")]
    IsDirectory,
    /// A directory marker (`k/`) PUT carried a body.
    #[error("a directory marker key cannot have content")]
    MarkerWithBody,
    /// ENOSPC while writing.
    #[error("no space left on the volume")]
    NoSpace,
    /// EDQUOT while writing.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The declared size is over the volume's maximum object size.
    #[error("the object is larger than this volume accepts")]
    EntityTooLarge,
    /// A Complete names a part, not the last, smaller than `min_part_size` (bytes).
    #[error("part {part} is {size} bytes, under the minimum part size of {min}")]
    EntityTooSmall {
        /// The first part under the minimum.
        part: u32,
        /// Its size, bytes.
        size: u64,
        /// The volume's `min_part_size`, bytes.
        min: u64,
    },
    /// A body did not carry the number of bytes it declared, more or fewer, so nothing was
    /// committed (SPEC.md: limits hold on the bytes received, not on a header). `received`
    /// is the count when this was noticed: for a body that runs over, the first count past
    /// `declared`, not its whole length.
    #[error("the body is not its declared length: {declared} bytes declared, {received} received")]
    BodyLength {
        /// Bytes the request declared (`Content-Length`, or `x-amz-decoded-content-length`
        /// for an aws-chunked body).
        declared: u64,
        /// Bytes received when the mismatch was found.
        received: u64,
    },
    /// The Content-Type is not on the volume's allowed list.
    #[error("the content type is not allowed on this volume")]
    ContentTypeNotAllowed,
    /// EACCES or EPERM from the file system.
    #[error("permission denied by the file system")]
    PermissionDenied,
    /// EROFS: the volume is mounted read-only.
    #[error("the volume is read-only")]
    ReadOnly,
    /// The volume's file system has no user extended attributes, so user metadata cannot be kept.
    #[error("this volume cannot store user metadata (no extended attributes)")]
    MetadataUnsupported,
    /// A write target is a symlink that leaves the volume.
    #[error("the key is a link that leaves the volume")]
    EscapingLink,
    /// A write or delete whose key leads into the volume's internal directory through a
    /// link made inside the volume (`self/.s3vol/...`, `link/...` with `link -> .s3vol`).
    /// Reads answer [`Error::NotFound`] instead: they see nothing of it.
    #[error("the key leads into the volume's internal directory")]
    InternalDir,
    /// DeleteBucket on a volume that still holds objects.
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    /// CreateBucket of a volume that exists.
    #[error("the bucket already exists")]
    BucketExists,
    /// No multipart upload with that id for that key.
    #[error("no such upload")]
    NoSuchUpload,
    /// A part listed in Complete was not uploaded or its ETag differs.
    #[error("invalid part: {0}")]
    InvalidPart(String),
    /// The object checksum (or checksum type) a Complete states differs from the one its
    /// parts make, or cannot be checked; the text says which.
    #[error("bad digest: {0}")]
    BadDigest(String),
    /// Parts listed in Complete are not in ascending order.
    #[error("the parts are not in ascending order")]
    InvalidPartOrder,
    /// A part number outside 1..=10000.
    #[error("invalid part number")]
    InvalidPartNumber,
    /// A conditional write or delete whose condition does not hold (`If-None-Match: *`
    /// on an existing key, `If-Match` with another ETag): S3's 412.
    #[error("a precondition does not hold")]
    PreconditionFailed,
    /// A conditional write could not get its turn on the key within a deadline (another
    /// conditional write or delete of it kept it busy): S3's 409 ConditionalRequestConflict.
    #[error("a conflicting conditional operation is in progress")]
    ConditionalConflict,
    /// Any other I/O error.
    #[error("i/o error: {0}")]
    Io(io::Error),
}

/// Result of a storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<io::Error> for Error {
    /// The one errno classifier (SPEC.md "Errors": ENOENT 404, EACCES 403, ENOSPC 507,
    /// EDQUOT 403, EROFS 403, ENAMETOOLONG KeyTooLong, EISDIR/ENOTDIR 409). EXDEV and ELOOP
    /// come from `RESOLVE_BENEATH` refusing a path that leaves the volume: not found.
    fn from(e: io::Error) -> Self {
        if resolve::reaches_internal(&e) {
            return Error::InternalDir;
        }
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::EXDEV | libc::ELOOP) => Error::NotFound,
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied,
            Some(libc::ENOSPC) => Error::NoSpace,
            Some(libc::EDQUOT) => Error::QuotaExceeded,
            Some(libc::EROFS) => Error::ReadOnly,
            Some(libc::ENAMETOOLONG) => Error::KeyTooLong,
            Some(libc::EISDIR) => Error::IsDirectory,
            Some(libc::ENOTDIR) => Error::ParentIsFile,
            _ => Error::Io(e),
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        io::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases = [
            (libc::ENOENT, "no such key"),
            (libc::EXDEV, "no such key"),
            (libc::ELOOP, "no such key"),
            (libc::EACCES, "permission denied by the file system"),
            (libc::EPERM, "permission denied by the file system"),
            (libc::ENOSPC, "no space left on the volume"),
            (libc::EDQUOT, "quota exceeded"),
            (libc::EROFS, "the volume is read-only"),
            (libc::ENAMETOOLONG, "the key is too long"),
            (libc::EISDIR, "the key names an existing directory"),
            (libc::ENOTDIR, "a parent of the key is a file"),
        ];
        for (errno, text) in cases {
            let e = Error::from(io::Error::from_raw_os_error(errno));
            assert_eq!(e.to_string(), text, "errno {errno}");
        }
        assert!(matches!(Error::from(io::Error::from_raw_os_error(libc::EIO)), Error::Io(_)));
        assert!(matches!(Error::from(resolve::refusal()), Error::InternalDir));
    }
}

#[cfg(test)]
pub(crate) mod scratch {
    //! Temporary directories for unit tests: removed when dropped, also when an assertion
    //! fails, so a failed run leaves nothing behind (`tempfile` guards, not pid-named
    //! directories).

    use std::path::{Path, PathBuf};

    /// A temporary directory, dereferencing to its path.
    pub struct Scratch(tempfile::TempDir);

    impl Scratch {
        /// A new directory under the system's temporary directory, named after `tag`.
        pub fn new(tag: &str) -> Self {
            Self(tempfile::Builder::new().prefix(&format!("s3vol-{tag}-")).tempdir().unwrap())
        }

        /// A new directory under `target/` of the crate: on the disk the build uses, not
        /// a tmpfs, for tests that need page eviction or `O_DIRECT`.
        pub fn on_disk(tag: &str) -> Self {
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
            std::fs::create_dir_all(&target).unwrap();
            Self(tempfile::Builder::new().prefix(&format!("{tag}-")).tempdir_in(target).unwrap())
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            self.0.path()
        }
    }

    impl AsRef<Path> for Scratch {
        fn as_ref(&self) -> &Path {
            self.0.path()
        }
    }
}
