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
            let file = File::from(vol.open_dir_path(key.path()).map_err(|_| Error::NotFound)?);
            return Ok((Self { file, pos: 0, end: 0 }, info));
        }
        let (fd, st) = vol.open_regular(key)?;
        let info = meta::load(std::os::fd::AsFd::as_fd(&fd), &st, key.as_str(), vol.xattrs);
        let end = info.size;
        Ok((Self { file: File::from(fd), pos: 0, end }, info))
    }

    /// [`ObjectReader::open`] for the async threads: `None` when it could wait on a device
    /// or a server (see [`Volume::open_regular_cached`]).
    pub fn open_cached(vol: &Volume, key: &ObjectKey) -> Option<Result<(Self, ObjectInfo)>> {
        let opened = vol.open_regular_cached(key)?;
        Some(opened.map(|(fd, st)| {
            let info = meta::load(std::os::fd::AsFd::as_fd(&fd), &st, key.as_str(), vol.xattrs);
            let end = info.size;
            (Self { file: File::from(fd), pos: 0, end }, info)
        }))
    }

    /// [`ObjectReader::next_block`] for the async threads: reads only what the page cache
    /// holds (`preadv2` with `RWF_NOWAIT`). `None`, with nothing consumed, when any of the
    /// block would have to come from the disk (or the file system cannot tell).
    pub fn next_block_cached(&mut self, max: usize) -> Option<Result<Option<Bytes>>> {
        if self.pos >= self.end {
            return Some(Ok(None));
        }
        let want = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX).min(max);
        let mut buf = BytesMut::with_capacity(want);
        let spare = buf.spare_capacity_mut();
        let iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want };
        // SAFETY: `iov` describes `want` writable bytes of `buf`'s spare capacity, which
        // preadv2 fills; only the bytes it reports written are exposed by `set_len`.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, self.pos as libc::off_t, libc::RWF_NOWAIT) };
        match n {
            0 => Some(Err(Error::NotFound)), // the file shrank under us
            n if n as usize == want => {
                // SAFETY: preadv2 initialised exactly `want` bytes.
                unsafe { buf.set_len(want) };
                self.pos += want as u64;
                Some(Ok(Some(buf.freeze())))
            }
            // Short (the rest is not cached), EAGAIN, EOPNOTSUPP, EINTR: the blocking path.
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_reads_return_the_bytes_or_defer() {
        // On disk (not tmpfs) so that pages can be evicted.
        let root = crate::store::scratch::Scratch::on_disk("read-test");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("obj"), &body).unwrap();
        let vol = Volume::open("t", &root, Default::default()).unwrap();
        let key = vol.key("obj").unwrap();
        assert!(vol.local, "the target directory is on a local file system");

        // Just written: cached, so read on this thread, whole.
        let (_, _) = ObjectReader::open(&vol, &key).unwrap();
        let (mut r, info) = ObjectReader::open_cached(&vol, &key).expect("cached lookup").unwrap();
        assert_eq!(info.size, body.len() as u64);
        let got = r.next_block_cached(1 << 20).expect("in the page cache").unwrap().unwrap();
        assert_eq!(&got[..], &body[..]);
        assert!(matches!(r.next_block_cached(1 << 20), Some(Ok(None))), "end of the object");

        // Evicted: a cached read defers to the blocking path, consuming nothing.
        let f = File::open(root.join("obj")).unwrap();
        f.sync_all().unwrap(); // only clean pages can be dropped
        // SAFETY: plain advice on an open descriptor.
        assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
        let (mut r, _) = ObjectReader::open_cached(&vol, &key).expect("the lookup is still cached").unwrap();
        let on_tmpfs = nix::sys::statfs::statfs(&*root).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC;
        match r.next_block_cached(1 << 20) {
            None => assert_eq!(r.remaining(), body.len() as u64, "nothing consumed"),
            Some(read) => {
                assert!(on_tmpfs, "evicted pages were read without waiting");
                assert_eq!(&read.unwrap().unwrap()[..], &body[..]);
            }
        }
        let got = r.next_block(1 << 20).unwrap().unwrap();
        assert_eq!(&got[..], &body[..]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
