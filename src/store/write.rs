//! Atomic, durable object writes (SPEC.md "Writes are atomic and durable").
//!
//! A [`Writer`] streams into a temporary file on the volume's own file system (`O_TMPFILE`
//! in the internal `tmp` directory, or a named temp file there when the file system lacks
//! `O_TMPFILE`), hashing MD5 on the same thread as it writes. [`Writer::commit`] writes the
//! metadata attribute with the file's fingerprint, fsyncs, renames over the target and
//! fsyncs the parent. Dropping a writer without committing removes the temp file, so a
//! failed or cancelled PUT leaves the old object untouched and nothing behind.
//! [`Writer::commit_if`] commits under `If-None-Match: *` (a link or rename that never
//! replaces) or `If-Match` (the key's lock across comparison and rename), see [`super::cond`].
//! The committing half, with its verification and retries, is in [`commit`].

mod commit;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use md5::{Digest, Md5};
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use super::cond::{Condition, KeyLock};
use super::key::ObjectKey;
use super::meta::{self, Fingerprint, META_XATTR, ObjectInfo, ObjectMeta};
use super::quota::Reservation;
use super::sink::Sink;
use super::volume::{Volume, random_hex};
use super::{Error, Result, fsx};

/// Declared sizes from which a write bypasses the page cache (see [`Sink`]): a large
/// object's bytes are not read back soon, small ones are (and are cheaper buffered).
const DIRECT_FROM: u64 = 8 << 20;

enum TempName {
    /// `O_TMPFILE`: nameless until linked at commit.
    Anonymous,
    /// A named temp file in the internal `tmp` directory.
    Named(String),
    /// A named file in an upload directory (a resumable multipart assembly): it outlives
    /// the writer, so that a Complete cut by a crash or ENOSPC resumes from it.
    Staged(OwnedFd, String),
}

/// How many times a commit makes the key's parent again when a concurrent delete removed
/// it (an empty directory s3vol made, perhaps just now for this very write) between its
/// creation and the link or rename into it.
const PARENT_RETRIES: usize = 16;

/// An object (or a multipart part) being written. Not visible until committed.
pub struct Writer {
    pub(super) vol: Arc<Volume>,
    key: ObjectKey,
    out: Option<Sink>,
    temp: TempName,
    md5: Md5,
    /// The content MD5 when the caller hashed it elsewhere.
    md5_given: Option<[u8; 16]>,
    written: u64,
    /// The exact size, in bytes, of the body being received: [`Writer::write`] refuses a
    /// byte past it and the commit refuses fewer, so that every limit judged on it when
    /// the write was admitted (quota, free space, object and part size) holds for the
    /// bytes themselves. `None` for an assembly, whose parts were admitted when staged.
    declared: Option<u64>,
    /// Room admitted for this write (at least `declared` bytes); released when the writer ends.
    reservation: Option<Reservation>,
    /// A body without a declared length: the most bytes it may have (`EntityTooLarge`
    /// past it); its room is admitted as it grows ([`Writer::begin_unsized`]).
    unsized_cap: Option<u64>,
}

/// Room an unsized write asks for at a time: one admission per this many bytes.
const GROW_STEP: u64 = 8 << 20;

/// Copy block for assembling parts when the kernel cannot copy for us.
const COPY_BUF: usize = 1 << 20;
/// Bytes per `copy_file_range` call: small enough that a cancelled or failing copy stops soon.
const COPY_CHUNK: usize = 64 << 20;

impl Writer {
    /// Starts a write of `key` on `vol` whose body declares `declared` bytes: exactly that
    /// many must be written before the commit (see [`Writer::write`]).
    ///
    /// Refuses early, before any byte is received, what the commit would refuse:
    /// [`Error::ParentIsFile`], [`Error::IsDirectory`], [`Error::EscapingLink`],
    /// [`Error::ReadOnly`]; and what does not fit: [`Error::EntityTooLarge`],
    /// [`Error::QuotaExceeded`], [`Error::NoSpace`].
    pub fn begin(vol: Arc<Volume>, key: ObjectKey, declared: u64) -> Result<Self> {
        vol.check_writable()?;
        precheck_target(&vol, &key)?;
        // Under a quota an overwrite needs only its growth: the object it replaces goes.
        let replacing = match vol.space.limits.quota {
            Some(_) => vol.open_regular(&key).map_or(0, |(_, st)| st.st_size as u64),
            None => 0,
        };
        Self::open_replacing(vol, key, Some(declared), replacing)
    }

    /// Starts a write of `key` whose body declares no length (`Transfer-Encoding: chunked`
    /// without Content-Length): nothing is admitted up front, and each step of
    /// [`GROW_STEP`] bytes is admitted as the bytes arrive, against `max_object_size`, the
    /// quota and free space as a declared size would be; past `cap` bytes the write fails
    /// with [`Error::EntityTooLarge`]. So a body that never ends stops at the first limit.
    ///
    /// Errors: as [`Writer::begin`] (size limits then come from [`Writer::write`]).
    pub fn begin_unsized(vol: Arc<Volume>, key: ObjectKey, cap: u64) -> Result<Self> {
        vol.check_writable()?;
        precheck_target(&vol, &key)?;
        let replacing = match vol.space.limits.quota {
            Some(_) => vol.open_regular(&key).map_or(0, |(_, st)| st.st_size as u64),
            None => 0,
        };
        Self::open_unsized(vol, key, cap, replacing)
    }

    /// A write of at most `cap` bytes with no declared length, admitted as it grows.
    pub(super) fn open_unsized(vol: Arc<Volume>, key: ObjectKey, cap: u64, replacing: u64) -> Result<Self> {
        let mut w = Self::open_with(vol, key, None, replacing, true)?;
        w.unsized_cap = Some(cap);
        Ok(w)
    }

    /// Admits room for `n` more bytes of an unsized write (see [`Writer::begin_unsized`]):
    /// a step of [`GROW_STEP`] when it fits, else exactly what these bytes need, so that a
    /// body ending just under a limit still fits.
    fn grow_for(&mut self, n: u64, cap: u64) -> Result<()> {
        let end = self.written.saturating_add(n);
        if end > cap {
            return Err(Error::EntityTooLarge);
        }
        let r = self.reservation.as_mut().expect("an unsized write holds a reservation");
        if end <= r.admitted() {
            return Ok(());
        }
        let need = end - r.admitted();
        let step = need.max(GROW_STEP).min(cap - r.admitted());
        let (space, root) = (&self.vol.space, self.vol.root());
        space.grow(r, root, step).or_else(|_| space.grow(r, root, need))
    }

    /// Starts the assembly of a multipart object at `key`: the same early refusals as
    /// [`Writer::begin`], room for nothing (each part was admitted when it was staged; the
    /// caller judges the room a copy needs), and no declared size, since the parts are
    /// appended with [`Writer::reflink_file`] and [`Writer::copy_file`].
    pub fn begin_assembly(vol: Arc<Volume>, key: ObjectKey) -> Result<Self> {
        vol.check_writable()?;
        precheck_target(&vol, &key)?;
        Self::open(vol, key, None)
    }

    /// Resumes an assembly kept in `dir` as `name` (see [`Writer::stage_as`]): the file is
    /// cut back to `len` bytes (what its journal says is whole; anything after is a partial
    /// append of an interrupted attempt) and the next part is appended there.
    ///
    /// Errors: as [`Writer::begin_assembly`]; [`Error::NotFound`] when the file is gone.
    pub(super) fn resume_assembly(
        vol: Arc<Volume>,
        key: ObjectKey,
        dir: BorrowedFd<'_>,
        name: &str,
        len: u64,
    ) -> Result<Self> {
        vol.check_writable()?;
        precheck_target(&vol, &key)?;
        let reservation = Some(vol.space.reserve(vol.root(), 0)?);
        let fd = nix::fcntl::openat(dir, name, OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())?;
        let file = File::from(fd);
        file.set_len(len)?;
        let mut out = Sink::new(file, false, None);
        out.seek(len)?;
        let temp = TempName::Staged(dir.try_clone_to_owned()?, name.to_owned());
        Ok(Self {
            vol,
            key,
            out: Some(out),
            temp,
            md5: Md5::new(),
            md5_given: None,
            written: len,
            declared: None,
            reservation,
            unsized_cap: None,
        })
    }

    /// Gives the file being written the name `name` in `dir` (an upload directory), where it
    /// stays when the writer ends without a commit: what is appended from now on survives a
    /// crash, and [`Writer::resume_assembly`] continues it. Used by append-and-delete
    /// assembly, which consumes parts and so must never lose what it took from them.
    ///
    /// Errors: I/O errors (EEXIST when `name` exists: the caller removes a stale one first).
    pub(super) fn stage_as(&mut self, dir: BorrowedFd<'_>, name: &str) -> Result<()> {
        let out = self.out.as_mut().expect("writer is open");
        out.flush()?;
        match &self.temp {
            TempName::Anonymous => fsx::link_tmpfile(out.get_ref().as_fd(), dir, name)?,
            TempName::Named(tmp) => fsx::rename_at(self.vol.tmp_dir(), tmp, dir, name)?,
            TempName::Staged(..) => return Ok(()),
        }
        self.temp = TempName::Staged(dir.try_clone_to_owned()?, name.to_owned());
        if self.vol.settings.fsync {
            fsx::fsync(dir)?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (flush, then `fsync` of the file, also when
    /// the volume's `fsync` is off: the caller is about to delete the bytes' only other
    /// copy, and a power cut must not take both).
    pub(super) fn sync_all(&mut self) -> Result<()> {
        let out = self.out.as_mut().expect("writer is open");
        out.flush()?;
        fsx::fsync(out.get_ref().as_fd())?;
        Ok(())
    }

    /// Starts a write whose destination is decided at commit (a staged part) of exactly
    /// `declared` bytes, admitted first.
    pub(super) fn begin_unchecked(vol: Arc<Volume>, key: ObjectKey, declared: u64) -> Result<Self> {
        Self::open(vol, key, Some(declared))
    }

    /// Admits `declared` bytes (nothing for an assembly), then creates the temp file.
    fn open(vol: Arc<Volume>, key: ObjectKey, declared: Option<u64>) -> Result<Self> {
        Self::open_replacing(vol, key, declared, 0)
    }

    fn open_replacing(vol: Arc<Volume>, key: ObjectKey, declared: Option<u64>, replacing: u64) -> Result<Self> {
        Self::open_with(vol, key, declared, replacing, false)
    }

    fn open_with(
        vol: Arc<Volume>,
        key: ObjectKey,
        declared: Option<u64>,
        replacing: u64,
        no_length: bool,
    ) -> Result<Self> {
        let size = declared.unwrap_or(0);
        let reservation = Some(vol.space.reserve_replacing(vol.root(), size, replacing)?);
        let (fd, temp) = create_temp(&vol)?;
        // Direct I/O only where the kernel is the file system (not NFS or FUSE, whose
        // O_DIRECT means an uncached round trip per write).
        let direct = vol.local && size >= DIRECT_FROM;
        // An unsized body gets the full buffer: its length is unknown.
        let hint = if no_length { None } else { Some(size) };
        let out = Some(Sink::new(File::from(fd), direct, hint));
        Ok(Self {
            vol,
            key,
            out,
            temp,
            md5: Md5::new(),
            md5_given: None,
            written: 0,
            declared,
            reservation,
            unsized_cap: None,
        })
    }

    /// Appends the first `len` bytes of `src` by reflink (`FICLONERANGE`): the blocks are
    /// shared with `src`, nothing is copied and no space is used. Not hashed (multipart
    /// assembly knows the part MD5s).
    ///
    /// Returns `Ok(false)`, with nothing appended, where the file system cannot clone (no
    /// reflink support, another file system, or the current length is not block-aligned);
    /// the caller then copies. Errors: other I/O errors (ENOSPC for metadata, ...).
    pub fn reflink_file(&mut self, src: &File, len: u64) -> Result<bool> {
        let out = self.out.as_mut().expect("writer is open");
        out.flush()?;
        if len == 0 {
            return Ok(true);
        }
        match fsx::clone_range(src.as_fd(), 0, len, out.get_ref().as_fd(), self.written) {
            Ok(()) => {}
            // FICLONE adds its own refusals: ENOTTY (not an ioctl of this file system),
            // EPERM and ETXTBSY (a file it will not share extents with).
            Err(e)
                if e.raw_os_error().is_some_and(|n| {
                    fsx::is_no_offload(n) || matches!(n, libc::ENOTTY | libc::EPERM | libc::ETXTBSY)
                }) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.written += len;
        // The ioctl does not move the file position; later writes must land after the clone.
        out.seek(self.written)?;
        Ok(true)
    }

    /// Appends the first `len` bytes of `src` without hashing them (multipart assembly knows
    /// the part MD5s). Uses `copy_file_range` at explicit offsets (the kernel copies, or
    /// shares blocks where it can), falling back to a read/write loop where the file system
    /// has no `copy_file_range` (FUSE, older NFS).
    ///
    /// Errors: [`Error::NotFound`] if `src` is shorter than `len` (a part shrank); I/O errors.
    pub fn copy_file(&mut self, src: &File, len: u64) -> Result<()> {
        let out = self.out.as_mut().expect("writer is open");
        out.flush()?;
        let dst = out.get_ref();
        let base = self.written;
        let mut done = 0u64;
        let mut kernel = true;
        let mut buf = Vec::new();
        while done < len {
            let want = usize::try_from(len - done).unwrap_or(usize::MAX).min(COPY_CHUNK);
            if kernel {
                let mut off_in = done as i64;
                let mut off_out = (base + done) as i64;
                match nix::fcntl::copy_file_range(src.as_fd(), Some(&mut off_in), dst.as_fd(), Some(&mut off_out), want)
                {
                    Ok(0) => return Err(Error::NotFound), // the part shrank
                    Ok(n) => {
                        done += n as u64;
                        continue;
                    }
                    Err(e) if done == 0 && fsx::is_no_offload(e as i32) => kernel = false,
                    Err(e) => return Err(e.into()),
                }
            }
            buf.resize(COPY_BUF.min(want), 0);
            let n = std::os::unix::fs::FileExt::read_at(src, &mut buf, done)?;
            if n == 0 {
                return Err(Error::NotFound);
            }
            std::os::unix::fs::FileExt::write_all_at(dst, &buf[..n], base + done)?;
            done += n as u64;
        }
        self.written += len;
        out.seek(self.written)?;
        Ok(())
    }

    /// Appends `data` and folds it into the MD5.
    ///
    /// Errors: [`Error::BodyLength`], with nothing of `data` written, when it would take
    /// the write past its declared size; I/O errors ([`Error::NoSpace`], ...).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.md5.update(data);
        self.write_unhashed(data)
    }

    /// Appends `data` without folding it into the MD5: the caller hashes the same bytes on
    /// another thread, overlapping hashing with the write, and hands the digest over with
    /// [`Writer::set_md5`] before committing. Errors as [`Writer::write`].
    pub fn write_unhashed(&mut self, data: &[u8]) -> Result<()> {
        let n = data.len() as u64;
        // One compare per chunk keeps every byte within the room admitted for it: a body
        // may not outgrow the size its quota, space and size limits were judged on.
        if let Some(declared) = self.declared
            && self.written + n > declared
        {
            return Err(Error::BodyLength { declared, received: self.written + n });
        }
        if let Some(cap) = self.unsized_cap {
            self.grow_for(n, cap)?;
        }
        self.out.as_mut().expect("writer is open").write_all(data)?;
        self.written += n;
        if let Some(r) = self.reservation.as_mut() {
            r.consume(n);
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The size the body declared (bytes); `None` for an assembly.
    pub fn declared(&self) -> Option<u64> {
        self.declared
    }

    /// Checks that the whole declared body was written. The commits check it too; calling
    /// it first lets a short body be reported as such rather than as a checksum mismatch.
    ///
    /// Errors: [`Error::BodyLength`] when fewer bytes than declared were written.
    pub fn check_complete(&self) -> Result<()> {
        match self.declared {
            Some(declared) if declared != self.written => Err(Error::BodyLength { declared, received: self.written }),
            _ => Ok(()),
        }
    }

    /// The MD5 of everything written so far.
    pub fn md5(&self) -> [u8; 16] {
        self.md5_given.unwrap_or_else(|| self.md5.clone().finalize().into())
    }

    /// The MD5 of everything written, computed by the caller (see [`Writer::write_unhashed`]).
    pub fn set_md5(&mut self, digest: [u8; 16]) {
        self.md5_given = Some(digest);
    }

    /// The key being written.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }
}

impl Writer {
    /// The directory and name of a named temp file; `None` for an `O_TMPFILE` one.
    fn temp_at(&self) -> Option<(BorrowedFd<'_>, &str)> {
        match &self.temp {
            TempName::Anonymous => None,
            TempName::Named(name) => Some((self.vol.tmp_dir(), name)),
            TempName::Staged(dir, name) => Some((dir.as_fd(), name)),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A staged assembly stays for the retry that resumes it (see `stage_as`).
        if let TempName::Named(name) = &self.temp {
            let _ = fsx::unlink_at(self.vol.tmp_dir(), name, false);
        }
    }
}

fn create_temp(vol: &Volume) -> Result<(OwnedFd, TempName)> {
    let mode = Mode::from_bits_truncate(0o600);
    if vol.tmpfile() {
        match nix::fcntl::openat(vol.tmp_dir(), ".", OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, mode) {
            Ok(fd) => return Ok((fd, TempName::Anonymous)),
            // Kernels before 3.11 answer EISDIR: they take O_TMPFILE for O_DIRECTORY.
            Err(e) if fsx::is_unsupported(e as i32) || e == nix::Error::EISDIR => {}
            Err(e) => return Err(e.into()),
        }
    }
    let name = format!("w-{}", random_hex(12));
    let fd = nix::fcntl::openat(
        vol.tmp_dir(),
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        mode,
    )?;
    Ok((fd, TempName::Named(name)))
}

/// Fails early when the commit could not succeed: a parent is a file, the key is a
/// directory, or the key is a link that leaves the volume.
fn precheck_target(vol: &Volume, key: &ObjectKey) -> Result<()> {
    let (pdir, leaf) = match vol.open_parent(key) {
        Ok(d) => d,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(()), // made at commit
                Some(libc::EXDEV | libc::ELOOP) => Err(Error::EscapingLink),
                _ => Err(e.into()),
            };
        }
    };
    match fsx::lstat_at(pdir.as_fd(), leaf.as_ref()) {
        Ok(st) => match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Err(Error::IsDirectory),
            libc::S_IFLNK => match vol.open_path(key.path(), OFlag::O_PATH) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ELOOP)) => Err(Error::EscapingLink),
                Err(e) if super::resolve::reaches_internal(&e) => Err(Error::InternalDir),
                Ok(fd) if fsx::fstat(fd.as_fd()).is_ok_and(|s| fsx::is_dir(&s)) => Err(Error::IsDirectory),
                _ => Ok(()),
            },
            _ => Ok(()),
        },
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// CopyObject onto itself with `REPLACE`: rewrites the metadata attribute in place, keeps
/// the content and its ETag, and moves LastModified to now (as S3 does).
///
/// A file with more than one link (a pod's hard link, perhaps to a file outside the
/// volume on the same file system) is never changed in place: its content is copied to a
/// new file that replaces the key, so the other names keep their inode untouched.
///
/// Errors: [`Error::NotFound`]; [`Error::MetadataUnsupported`] when user metadata is given
/// on a volume without extended attributes.
pub fn rewrite_meta(vol: &Arc<Volume>, key: &ObjectKey, mut meta: ObjectMeta) -> Result<ObjectInfo> {
    vol.check_writable()?;
    if !vol.xattrs && !meta.user.is_empty() {
        return Err(Error::MetadataUnsupported);
    }
    let (fd, st) = vol.open_regular(key)?;
    let old = meta::load(fd.as_fd(), &st, key.as_str(), vol.xattrs);
    meta.etag = old.meta.etag;
    meta.parts = old.meta.parts;
    meta.part_checksums = old.meta.part_checksums;
    meta.checksums = old.meta.checksums;
    if st.st_nlink > 1 {
        if !old.from_xattr {
            meta.etag.clear(); // a synthesized ETag names the old inode: hash the content
        }
        let mut src = std::fs::File::from(fd);
        let mut w = Writer::begin(vol.clone(), key.clone(), st.st_size as u64)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut src, &mut buf)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        return w.commit(meta);
    }
    let now = nix::sys::time::TimeSpec::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
    );
    // Timestamps may be set by the owner even on a descriptor opened read-only.
    nix::sys::stat::futimens(fd.as_fd(), &nix::sys::time::TimeSpec::UTIME_OMIT, &now)?;
    let st = fsx::fstat(fd.as_fd())?;
    meta.fp = Some(Fingerprint::of(&st));
    if vol.xattrs {
        fsx::set_xattr(fd.as_fd(), META_XATTR, &meta.to_bytes())?;
    }
    if vol.settings.fsync {
        fsx::fsync(fd.as_fd())?;
    }
    Ok(ObjectInfo { size: st.st_size as u64, mtime_ns: fsx::mtime_ns(&st), meta, from_xattr: vol.xattrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str) -> (crate::store::scratch::Scratch, Arc<Volume>) {
        let root = crate::store::scratch::Scratch::new(&format!("write-{name}"));
        let settings = super::super::VolumeSettings { fsync: false, ..Default::default() };
        let vol = Arc::new(Volume::open(name, &root, settings).unwrap());
        (root, vol)
    }

    fn nothing_left(root: &std::path::Path, vol: &Volume) {
        assert!(!root.join("k").exists(), "nothing committed");
        assert_eq!(std::fs::read_dir(root.join(".s3vol/tmp")).unwrap().count(), 0, "no temp file left");
        let r = vol.space_report().unwrap();
        assert_eq!((r.reserved, r.inflight_writes), (0, 0), "reservation released");
    }

    #[test]
    fn a_body_is_held_to_its_declared_size() {
        let (root, vol) = volume("longer");
        let key = vol.key("k").unwrap();
        let mut w = Writer::begin(vol.clone(), key.clone(), 10).unwrap();
        w.write(b"123456").unwrap();
        // One byte over: refused whole, before it reaches the file.
        let e = w.write(b"78901").unwrap_err();
        assert!(matches!(e, Error::BodyLength { declared: 10, received: 11 }), "{e:?}");
        assert_eq!(w.written(), 6);
        assert!(matches!(w.check_complete(), Err(Error::BodyLength { declared: 10, received: 6 })));
        // Short: the commit refuses it and the temp file goes with the writer.
        assert!(matches!(w.commit(ObjectMeta::default()), Err(Error::BodyLength { .. })));
        nothing_left(&root, &vol);

        // Exactly the declared size commits.
        let mut w = Writer::begin(vol.clone(), key, 10).unwrap();
        w.write(b"1234567890").unwrap();
        w.check_complete().unwrap();
        assert_eq!(w.commit(ObjectMeta::default()).unwrap().size, 10);
        assert_eq!(std::fs::read(root.join("k")).unwrap(), b"1234567890");
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A writer whose temp file is a named one, as on file systems without `O_TMPFILE`
    /// (NFS, most FUSE ones), holding `body`.
    fn named_writer(vol: &Arc<Volume>, key: &str, body: &[u8]) -> Writer {
        let mut w = Writer::begin(vol.clone(), vol.key(key).unwrap(), body.len() as u64).unwrap();
        let name = format!("w-{}", random_hex(12));
        let fd = fsx::create_excl(vol.tmp_dir(), &name, OFlag::O_RDWR, 0o600).unwrap();
        w.out = Some(Sink::new(File::from(fd), false, Some(body.len() as u64)));
        w.temp = TempName::Named(name);
        w.write(body).unwrap();
        w
    }

    #[test]
    fn a_named_temp_file_commits_if_none_match_without_replacing() {
        let (root, vol) = volume("noreplace");
        let first = named_writer(&vol, "d/k", b"first");
        let second = named_writer(&vol, "d/k", b"second");
        first.commit_if(ObjectMeta::default(), &Condition::Absent).unwrap();
        let e = second.commit_if(ObjectMeta::default(), &Condition::Absent).unwrap_err();
        assert!(matches!(e, Error::PreconditionFailed), "{e:?}");
        assert_eq!(std::fs::read(root.join("d/k")).unwrap(), b"first");
        // A directory at the key is the usual conflict, not a failed condition.
        std::fs::create_dir(root.join("dir")).unwrap();
        let mut w = named_writer(&vol, "x", b"x");
        w.key = vol.key("dir").unwrap();
        assert!(matches!(w.commit_if(ObjectMeta::default(), &Condition::Absent), Err(Error::IsDirectory)));
        assert_eq!(std::fs::read_dir(root.join(".s3vol/tmp")).unwrap().count(), 0, "no temp or lock file left");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn if_match_swaps_only_the_etag_it_names() {
        let (root, vol) = volume("cas");
        let key = vol.key("k").unwrap();
        let mut w = Writer::begin(vol.clone(), key.clone(), 2).unwrap();
        w.write(b"v0").unwrap();
        let v0 = w.commit(ObjectMeta::default()).unwrap().meta.etag;
        let stale = Condition::Matches("0123456789abcdef0123456789abcdef".into());
        let w = named_writer(&vol, "k", b"lost");
        assert!(matches!(w.commit_if(ObjectMeta::default(), &stale), Err(Error::PreconditionFailed)));
        let w = named_writer(&vol, "k", b"v1");
        w.commit_if(ObjectMeta::default(), &Condition::Matches(v0.clone())).unwrap();
        assert_eq!(std::fs::read(root.join("k")).unwrap(), b"v1");
        // The anonymous temp file of a compare-and-swap never creates a missing key.
        let mut w = Writer::begin(vol.clone(), vol.key("absent").unwrap(), 1).unwrap();
        w.write(b"x").unwrap();
        assert!(matches!(w.commit_if(ObjectMeta::default(), &Condition::Matches(v0)), Err(Error::NotFound)));
        assert!(!root.join("absent").exists());
        assert_eq!(std::fs::read_dir(root.join(".s3vol/tmp")).unwrap().count(), 0, "no temp or lock file left");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_assembly_has_no_declared_size() {
        let (root, vol) = volume("assembly");
        let w = Writer::begin_assembly(vol.clone(), vol.key("k").unwrap()).unwrap();
        assert_eq!(w.declared(), None);
        w.check_complete().unwrap();
        drop(w);
        nothing_left(&root, &vol);
        std::fs::remove_dir_all(root).unwrap();
    }
}
