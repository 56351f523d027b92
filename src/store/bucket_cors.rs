//! A volume's bucket CORS configuration as a file in its internal directory
//! (`<internal>/bucket-cors.json`), so that every node sharing the volume serves the rules
//! the last PutBucketCors stored, at once (SPEC.md "Authentication and access").
//!
//! The bytes are opaque here (the CORS layer encodes and decodes them); this module owns
//! only how they reach the file system. A pod can write in the internal directory too, so
//! nothing is reached through a path: the internal directory is opened `O_NOFOLLOW` from
//! the root handle and must be the very directory the volume opened (its identity), the
//! file is opened `O_NOFOLLOW` (a planted link is never followed: ELOOP, treated as
//! "none stored"), must be a regular file, and is read to at most [`MAX_STORED`] bytes.
//! Writes go to a temp file in `<internal>/tmp` and are renamed over the name, so a reader
//! on any node sees the old or the new configuration, never a torn one.
//!
//! Blocking; the S3 adapter runs these on the volume's bounded blocking path.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;

use super::volume::{Volume, random_hex};
use super::{Error, Result, fsx};

/// Name of the stored configuration inside the internal directory.
pub const FILE_NAME: &str = "bucket-cors.json";

/// Largest stored configuration, bytes. S3 caps a CORS configuration at 64 KB; the
/// adapter refuses a larger one before it gets here, and a larger file (a pod's) is
/// ignored rather than read whole.
pub const MAX_STORED: u64 = 64 * 1024;

/// What identifies one version of the stored file: `(st_dev, st_ino, size, mtime ns,
/// ctime ns)`. Every PutBucketCors renames a new inode into place, so a changed file has
/// a changed signature on every node; a reader re-reads only then.
pub type Signature = (u64, u64, i64, i128, i128);

/// The stored configuration as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No configuration (also: a link, a non-regular or an oversized file a pod put there).
    Absent,
    /// Same signature as the caller already holds.
    Unchanged,
    /// The bytes and their signature.
    Bytes(Signature, Vec<u8>),
}

impl Volume {
    /// The internal directory, opened without following a link and checked to be the one
    /// this volume opened. Errors: [`Error::Unavailable`] when it was replaced or the
    /// volume has none (read-only without one).
    fn internal_dir(&self) -> Result<OwnedFd> {
        let Some(id) = self.fence().forbidden.first().copied() else {
            return Err(Error::Unavailable);
        };
        let dir = fsx::open_child_dir(self.root(), self.settings.internal_dir.as_str())?;
        if fsx::identity(dir.as_fd())? != id {
            return Err(Error::Unavailable);
        }
        Ok(dir)
    }

    /// Reads the stored CORS configuration; `known` is the signature the caller holds
    /// (then [`Stored::Unchanged`] when it is still the same file).
    pub fn read_bucket_cors(&self, known: Option<Signature>) -> Result<Stored> {
        let dir = match self.internal_dir() {
            Ok(d) => d,
            Err(Error::Unavailable) if self.fence().forbidden.is_empty() => return Ok(Stored::Absent),
            Err(e) => return Err(e),
        };
        let fd = match fsx::open_child(dir.as_fd(), FILE_NAME, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            // ELOOP: a link planted by a pod, never followed.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)) => {
                return Ok(Stored::Absent);
            }
            Err(e) => return Err(e.into()),
        };
        let st = fsx::fstat(fd.as_fd())?;
        if !fsx::is_regular(&st) || st.st_size < 0 || st.st_size as u64 > MAX_STORED {
            tracing::warn!(volume = %self.name, "the stored bucket CORS file is not a small regular file: ignored");
            return Ok(Stored::Absent);
        }
        let sig = (st.st_dev, st.st_ino, st.st_size, fsx::mtime_ns(&st), fsx::ctime_ns(&st));
        if known == Some(sig) {
            return Ok(Stored::Unchanged);
        }
        let mut bytes = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(fd).take(MAX_STORED + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_STORED {
            return Ok(Stored::Absent);
        }
        Ok(Stored::Bytes(sig, bytes))
    }

    /// Stores `bytes` as the configuration: written to a temp file, synced, and renamed
    /// over [`FILE_NAME`] (replacing whatever entry is there, a link included, never
    /// writing through it). Errors: [`Error::EntityTooLarge`] above [`MAX_STORED`], the
    /// volume's write errors.
    pub fn write_bucket_cors(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > MAX_STORED {
            return Err(Error::EntityTooLarge);
        }
        self.check_writable()?;
        let dir = self.internal_dir()?;
        let tmp_name = format!("cors-{}", random_hex(12));
        let fd = fsx::create_excl(self.tmp_dir(), &tmp_name, OFlag::O_WRONLY | OFlag::O_NOFOLLOW, 0o600)?;
        let written = (|| -> io::Result<()> {
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes)?;
            fsx::fsync(f.as_fd())
        })()
        .and_then(|()| fsx::rename_at(self.tmp_dir(), &tmp_name, dir.as_fd(), FILE_NAME));
        if let Err(e) = written {
            let _ = fsx::unlink_at(self.tmp_dir(), &tmp_name, false);
            return Err(e.into());
        }
        // The rename is durable once the directory is.
        let _ = fsx::fsync(dir.as_fd());
        Ok(())
    }

    /// Removes the stored configuration (the config's rules apply again). Removing none is
    /// success; the entry is unlinked, whatever it is, never what it points to.
    pub fn delete_bucket_cors(&self) -> Result<()> {
        self.check_writable()?;
        let dir = self.internal_dir()?;
        match fsx::unlink_at(dir.as_fd(), FILE_NAME, false) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map_err(Into::into),
        }
    }
}
