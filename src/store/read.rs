//! Reading objects: open once, then positional reads of large blocks.

use std::fs::File;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};

use super::key::ObjectKey;
use super::meta::{self, ObjectInfo};
use super::volume::Volume;
use super::{Error, Result};

/// An open object and the byte range still to be read.
pub struct ObjectReader {
    file: File,
    pos: u64,
    end: u64,
}

impl ObjectReader {
    /// Opens the regular file at `key` and loads its metadata.
    ///
    /// Errors: [`Error::NotFound`] for a missing key, a directory, a FIFO or device, or a
    /// link that leaves the volume.
    pub fn open(vol: &Volume, key: &ObjectKey) -> Result<(Self, ObjectInfo)> {
        if key.is_dir_marker() {
            let info = vol.head(key)?;
            let file = File::from(super::fsx::open_dir(vol.root(), key.path())?);
            return Ok((Self { file, pos: 0, end: 0 }, info));
        }
        let (fd, st) = vol.open_regular(key)?;
        let info = meta::load(std::os::fd::AsFd::as_fd(&fd), &st, key.as_str(), vol.xattrs);
        let end = info.size;
        Ok((Self { file: File::from(fd), pos: 0, end }, info))
    }

    /// Restricts reading to `start..end` (bytes, end exclusive, already checked against the size).
    pub fn set_range(&mut self, start: u64, end: u64) {
        self.pos = start;
        self.end = end;
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Reads the next block of at most `max` bytes; `None` at the end of the range.
    ///
    /// Errors: I/O errors, and [`Error::NotFound`] if the file shrank under us (a pod
    /// truncated it): the response must end short rather than invent bytes.
    pub fn next_block(&mut self, max: usize) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX).min(max);
        // Read into the buffer's spare capacity: no zeroing of each block before the kernel
        // overwrites it.
        let mut buf = BytesMut::with_capacity(want);
        let fd = self.file.as_raw_fd();
        while buf.len() < want {
            let (len, off) = (buf.len(), (self.pos + buf.len() as u64) as libc::off_t);
            let spare = buf.spare_capacity_mut();
            // SAFETY: `spare` is writable memory of at least `want - len` bytes that pread
            // fills; only the bytes it reports written are then exposed by `set_len`.
            let n = unsafe { libc::pread(fd, spare.as_mut_ptr().cast(), want - len, off) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            if n == 0 {
                return Err(Error::NotFound);
            }
            // SAFETY: pread initialised exactly `n` more bytes.
            unsafe { buf.set_len(buf.len() + n as usize) };
        }
        self.pos += want as u64;
        Ok(Some(buf.freeze()))
    }
}
