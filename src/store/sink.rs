//! The buffered file end of a [`Writer`](super::write::Writer): large aligned blocks,
//! written with `O_DIRECT` when the object is large and the file system takes it.
//!
//! A buffered `write` copies every byte once more into the page cache, and on a busy node
//! the dirty-page throttling of a long stream slows the writer to a fraction of the disk
//! (seen here: `dd` 1 GiB at 344 MB/s buffered with dirty pages around, 1.4-1.7 GB/s with
//! `oflag=direct`). A large object's bytes are not going to be read back from the cache
//! soon (the client just had them), so they bypass it: whole 512 KiB blocks from an aligned
//! buffer go straight to the device, and only the unaligned tail is written through the
//! page cache (`O_DIRECT` turned off with `fcntl` for it). Any refusal of direct I/O
//! (EINVAL from a file system without it, tmpfs, FUSE) turns it off for the rest of the
//! file; the bytes are the same either way.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Direct I/O alignment of memory, file offsets and lengths (the largest logical block
/// size in use; 512-byte devices accept it too).
const ALIGN: usize = 4096;

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

/// Buffer of a buffered write (small objects, or direct I/O refused).
pub const BUFFERED: usize = 256 << 10;
/// Buffer of a direct write: one device write per 512 KiB (as fast as 1 MiB writes on the
/// bench disk, `dd oflag=direct`: 1.3 GB/s either way, and half the memory per upload).
pub const DIRECT: usize = 512 << 10;

/// A file written through an aligned buffer, with `O_DIRECT` while it is on.
pub struct Sink {
    file: File,
    buf: Vec<Block>,
    len: usize,
    direct: bool,
}

impl Sink {
    /// Wraps `file`; tries `O_DIRECT` when `direct` is asked (`false` when refused). The
    /// buffer is zeroed memory, so it is no larger than `size_hint` (the declared body
    /// length) needs: a 4 KiB PUT touches one block, not 64.
    pub fn new(file: File, direct: bool, size_hint: Option<u64>) -> Self {
        let direct = direct && set_direct(&file, true).is_ok();
        let cap = if direct { DIRECT } else { BUFFERED };
        let want = size_hint.map_or(cap, |n| usize::try_from(n).unwrap_or(cap).clamp(1, cap));
        let blocks = want.div_ceil(ALIGN);
        Self { file, buf: vec![Block([0; ALIGN]); blocks], len: 0, direct }
    }

    /// True while writes bypass the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: Block is a plain, padding-free array of bytes (repr(C), size == align), so
        // the Vec's storage is buf.len() * ALIGN initialised bytes, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), self.buf.len() * ALIGN) }
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let cap = self.buf.len() * ALIGN;
        while !data.is_empty() {
            // Buffered and nothing pending: a large slice goes to the kernel as is.
            if !self.direct && self.len == 0 && data.len() >= cap {
                return self.file.write_all(data);
            }
            let n = (cap - self.len).min(data.len());
            let at = self.len;
            self.bytes()[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == cap {
                self.drain()?;
            }
        }
        Ok(())
    }

    /// Writes out whatever is buffered (the file is complete up to here afterwards). An
    /// unaligned remainder ends direct I/O for this file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.keep_direct_if(self.len.is_multiple_of(ALIGN))?;
        self.drain()
    }

    fn drain(&mut self) -> io::Result<()> {
        let (mut done, len) = (0, self.len);
        while done < len {
            match (&self.file).write(&self.bytes_ref()[done..len]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused as direct I/O (or a short direct write left the rest unaligned):
                // the rest goes through the page cache.
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => self.keep_direct_if(false)?,
                Err(e) => {
                    self.len = 0;
                    return Err(e);
                }
            }
            self.keep_direct_if(done.is_multiple_of(ALIGN))?;
        }
        self.len = 0;
        Ok(())
    }

    fn bytes_ref(&self) -> &[u8] {
        // SAFETY: as in `bytes`, shared borrow.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.buf.len() * ALIGN) }
    }

    /// The file, for calls at explicit offsets. Call [`Sink::flush`] first.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Moves the file position (after a clone or copy at explicit offsets). Buffered bytes
    /// are written first; direct I/O ends unless `pos` is aligned.
    pub fn seek(&mut self, pos: u64) -> io::Result<()> {
        self.flush()?;
        self.keep_direct_if(pos.is_multiple_of(ALIGN as u64))?;
        self.file.seek(SeekFrom::Start(pos)).map(drop)
    }

    /// Flushes and returns the file, with `O_DIRECT` off.
    pub fn into_inner(mut self) -> io::Result<File> {
        self.flush()?;
        self.keep_direct_if(false)?;
        Ok(self.file)
    }

    /// Ends direct I/O for the rest of the file unless `aligned` (the next write's offset or
    /// length is a multiple of [`ALIGN`]); the bytes are the same either way.
    fn keep_direct_if(&mut self, aligned: bool) -> io::Result<()> {
        if self.direct && !aligned {
            self.direct = false;
            set_direct(&self.file, false)?;
        }
        Ok(())
    }
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(file.as_fd(), FcntlArg::F_GETFL)?);
    let flags = if on { flags | OFlag::O_DIRECT } else { flags - OFlag::O_DIRECT };
    fcntl(file.as_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Writes `sizes` slices of a known pattern through a sink and reads the file back.
    fn round_trip(dir: &std::path::Path, direct: bool, sizes: &[usize]) -> bool {
        let path = dir.join(format!("sink-{direct}-{}", sizes.len()));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let total: usize = sizes.iter().sum();
        let hint = sizes.len().is_multiple_of(2).then_some(total as u64 / 3);
        let mut sink = Sink::new(file, direct, hint);
        let was_direct = sink.is_direct();
        let mut want = Vec::new();
        let mut x = 1u32;
        for &n in sizes {
            let chunk: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            sink.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        let mut file = sink.into_inner().unwrap();
        let mut got = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "contents differ (direct {direct}, sizes {sizes:?})");
        std::fs::remove_file(&path).unwrap();
        was_direct
    }

    #[test]
    fn every_byte_lands_in_order_direct_or_not() {
        // On disk (not tmpfs) so that O_DIRECT is really taken where the kernel allows it.
        let dir = crate::store::scratch::Scratch::on_disk("sink-test");
        let shapes: [&[usize]; 5] = [
            &[1, 4095, 4096, 65_536, 1_000_000, 3, 2 << 20, 77],
            &[DIRECT; 3],
            &[DIRECT * 2 + 1],
            &[0, 5],
            &[BUFFERED - 1, 1, BUFFERED, BUFFERED + 1],
        ];
        // ext4 and xfs take direct I/O: make sure that path really ran there.
        let st = nix::sys::statfs::statfs(&*dir).unwrap();
        let takes_direct = [0xEF53, 0x5846_5342].map(nix::sys::statfs::FsType).contains(&st.filesystem_type());
        for direct in [false, true] {
            for sizes in shapes {
                let was = round_trip(&dir, direct, sizes);
                assert!(!was || direct, "direct I/O only when asked");
                assert!(was || !direct || !takes_direct, "ext4/xfs refused O_DIRECT");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
