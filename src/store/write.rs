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
}

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
        let size = declared.unwrap_or(0);
        let reservation = Some(vol.space.reserve_replacing(vol.root(), size, replacing)?);
        let (fd, temp) = create_temp(&vol)?;
        // Direct I/O only where the kernel is the file system (not NFS or FUSE, whose
        // O_DIRECT means an uncached round trip per write).
        let direct = vol.local && size >= DIRECT_FROM;
        let out = Some(Sink::new(File::from(fd), direct, Some(size)));
        Ok(Self { vol, key, out, temp, md5: Md5::new(), md5_given: None, written: 0, declared, reservation })
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
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EOPNOTSUPP
                            | libc::ENOTTY
                            | libc::EINVAL
                            | libc::EXDEV
                            | libc::ENOSYS
                            | libc::EBADF
                            | libc::EPERM
                            | libc::ETXTBSY
                    )
                ) =>
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
                    Err(
                        nix::Error::EXDEV
                        | nix::Error::EOPNOTSUPP
                        | nix::Error::EINVAL
                        | nix::Error::ENOSYS
                        | nix::Error::EBADF,
                    ) if done == 0 => kernel = false,
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

    /// Finishes a staged part: fsync, then link it into `dir` as `name`. Returns its size.
    ///
    /// The name is looked up again afterwards and must lead to the file written (see
    /// [`placed`]); where an `O_TMPFILE` link was accepted but not made the bytes are copied
    /// to a named temp file and renamed instead.
    ///
    /// Errors: [`Error::BodyLength`] when fewer bytes than declared were written;
    /// [`Error::Io`] when the file system did not make the name; I/O errors.
    pub(super) fn commit_into(mut self, dir: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<u64> {
        self.check_complete()?;
        // The volume may have been renamed away, unmounted or remounted read-only while the
        // body streamed: never commit into a detached tree.
        self.vol.check_writable()?;
        let mut file = self.out.take().expect("writer is open").into_inner()?;
        self.check_size(&file)?;
        if self.vol.settings.fsync {
            fsx::fsync(file.as_fd())?;
        }
        // The usage grows by what is new on disk: nothing when the same bytes were staged
        // before under the same name (the name is the part's MD5).
        if matches!(self.temp, TempName::Anonymous) {
            let st = fsx::fstat(file.as_fd())?;
            let verdict = match fsx::link_tmpfile(file.as_fd(), dir, name) {
                Ok(()) => placed(dir, name, &st, None, self.vol.local)?,
                // The same bytes were staged before under the same name: keep that copy,
                // once the name is seen to hold them.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match fsx::lstat_at(dir, name.as_ref()) {
                    Ok(old) if fsx::is_regular(&old) && old.st_size == st.st_size => {
                        self.sync_dir(dir)?;
                        return Ok(self.written);
                    }
                    _ => Placed::NotDone,
                },
                Err(e) if not_honoured(&e) => Placed::NotDone,
                Err(e) => return Err(e.into()),
            };
            if !matches!(verdict, Placed::NotDone) {
                self.sync_dir(dir)?;
                self.vol.space.add_used(self.written as i64);
                return Ok(self.written);
            }
            self.vol.distrust_tmpfile("a staged part's link");
            file = self.copy_to_named(&file)?;
            if self.vol.settings.fsync {
                fsx::fsync(file.as_fd())?;
            }
        }
        let st = fsx::fstat(file.as_fd())?;
        let (from, tmp) = self.temp_at().expect("converted above");
        let (from, tmp) = (from.try_clone_to_owned()?, tmp.to_owned());
        let prior = fsx::lstat_at(dir, name.as_ref()).ok();
        fsx::rename_at(from.as_fd(), &tmp, dir, name)?;
        self.temp = TempName::Anonymous;
        self.check_renamed(dir, name, &st, prior.as_ref(), from.as_fd(), &tmp)?;
        self.sync_dir(dir)?;
        self.vol.space.add_used(self.written as i64 - prior.map_or(0, |p| p.st_size));
        Ok(self.written)
    }

    /// Fsyncs a directory whose entries changed, when the volume syncs.
    fn sync_dir(&self, dir: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        if self.vol.settings.fsync {
            fsx::fsync(dir)?;
        }
        Ok(())
    }

    /// Checks that the file holds every byte written: a kernel copy or clone that reported
    /// bytes it did not write leaves the file short.
    ///
    /// Errors: [`Error::Io`] when the file is not `written` bytes long.
    fn check_size(&self, file: &File) -> Result<()> {
        let st = fsx::fstat(file.as_fd())?;
        if st.st_size as u64 != self.written {
            return Err(Error::Io(std::io::Error::other(format!(
                "the temp file holds {} bytes of the {} written",
                st.st_size, self.written
            ))));
        }
        Ok(())
    }

    /// Replaces an `O_TMPFILE` file whose link the file system did not make by a named temp
    /// file in the internal `tmp` directory holding the same bytes (a plain read and write:
    /// the calls that failed to honour the link are not trusted to copy either).
    fn copy_to_named(&mut self, file: &File) -> Result<File> {
        let name = format!("w-{}", random_hex(12));
        let fd = nix::fcntl::openat(
            self.vol.tmp_dir(),
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        self.temp = TempName::Named(name);
        let out = File::from(fd);
        let mut buf = vec![0u8; COPY_BUF];
        let mut done = 0u64;
        while done < self.written {
            let want = usize::try_from(self.written - done).unwrap_or(usize::MAX).min(COPY_BUF);
            let n = std::os::unix::fs::FileExt::read_at(file, &mut buf[..want], done)?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::other("the temp file lost bytes")));
            }
            std::os::unix::fs::FileExt::write_all_at(&out, &buf[..n], done)?;
            done += n as u64;
        }
        self.check_size(&out)?;
        Ok(out)
    }

    /// After renaming the temp file `tmp` to `name` in `dir`: the name must lead to the
    /// file (`st`), or to a later writer's file; when it still holds `prior` (or nothing)
    /// while `tmp` is still there, the file system did not do the rename.
    ///
    /// Errors: [`Error::Io`] when the rename was not done (the temp file is removed).
    fn check_renamed(
        &mut self,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &str,
        st: &FileStat,
        prior: Option<&FileStat>,
        from: BorrowedFd<'_>,
        tmp: &str,
    ) -> Result<Option<FileStat>> {
        match placed(dir, name, st, prior.map(|p| (p.st_dev, p.st_ino)), self.vol.local)? {
            Placed::Ours(now) => Ok(Some(now)),
            Placed::Replaced => Ok(None),
            // Gone from where it was: renamed, then deleted or replaced by another request
            // before we looked (a later operation; ours took effect).
            Placed::NotDone if fsx::lstat_at(from, tmp.as_ref()).is_err() => Ok(None),
            Placed::NotDone => {
                // Removed by Drop from the temp directory; a staged assembly stays for a retry.
                self.temp = if fsx::identity(from).ok() == fsx::identity(self.vol.tmp_dir()).ok() {
                    TempName::Named(tmp.to_owned())
                } else {
                    TempName::Staged(from.try_clone_to_owned()?, tmp.to_owned())
                };
                Err(Error::Io(std::io::Error::other("the file system accepted a rename and did not make it")))
            }
        }
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

    /// Makes the object visible: metadata attribute (with `meta.etag` set to the content
    /// MD5 when empty), fsync, link or rename to the key, fsync of the parent directory.
    ///
    /// Before answering, the key is looked up afresh and must lead to the file written
    /// (same device and inode, same size; see [`placed`]) or to a concurrent writer's file
    /// that replaced it since. Where an `O_TMPFILE` link was accepted but not made (FUSE
    /// file systems such as JuiceFS), the volume stops using `O_TMPFILE` and the bytes are
    /// committed again through a named temp file and `rename`. When the fresh lookup shows
    /// a different modification time than the write did (a file system that rounds or
    /// sets it on commit), the fingerprint in the attribute is written again, so the
    /// metadata stays trusted.
    ///
    /// Errors: [`Error::BodyLength`] when fewer bytes than declared were written,
    /// [`Error::IsDirectory`] when a directory appeared at the key,
    /// [`Error::ParentIsFile`], [`Error::NoSpace`] / [`Error::QuotaExceeded`], [`Error::Io`]
    /// when the file system did not make the name; on any error the temp file is removed
    /// and the old object is untouched.
    pub fn commit(self, meta: ObjectMeta) -> Result<ObjectInfo> {
        self.commit_if(meta, &Condition::None)
    }

    /// [`Writer::commit`] under `cond`, judged atomically with the commit, also against
    /// other daemons sharing the volume (see [`super::cond`]): [`Condition::Absent`] links
    /// or renames without replacing, [`Condition::Exists`] and [`Condition::Matches`] hold
    /// the key's lock across the ETag comparison and the rename.
    ///
    /// Errors: those of [`Writer::commit`], and [`Error::PreconditionFailed`],
    /// [`Error::NotFound`] (`If-Match` on a missing key), [`Error::ConditionalConflict`];
    /// on any of them nothing is committed and the temp file is removed.
    pub fn commit_if(mut self, mut meta: ObjectMeta, cond: &Condition) -> Result<ObjectInfo> {
        self.check_complete()?;
        // The volume may have been renamed away, unmounted or remounted read-only while the
        // body streamed: never commit into a detached tree.
        self.vol.check_writable()?;
        let mut file = self.out.take().expect("writer is open").into_inner()?;
        self.check_size(&file)?;
        if meta.etag.is_empty() {
            meta.etag = meta::hex_lower(&self.md5());
        }
        // Keep the descriptor alive until the end so Drop can still clean up if a step fails.
        let mut st = self.seal(&file, &mut meta)?;
        // A compare-and-swap must not create the key through the direct link below.
        if matches!(self.temp, TempName::Anonymous) && !cond.needs_lock() {
            // A new key: give the complete file its final name directly (linkat never
            // replaces, so a key that exists meanwhile takes the rename path below, or,
            // for `If-None-Match: *`, fails the condition).
            let key = self.key.clone();
            let leaf = key.split_parent().1;
            let (pdir, linked) = in_parent(&self.vol, &key, |pdir, leaf| fsx::link_tmpfile(file.as_fd(), pdir, leaf))?;
            let verdict = match linked {
                Ok(()) => Some(placed(pdir.as_fd(), leaf, &st, None, self.vol.local)?),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && *cond == Condition::Absent => {
                    return Err(exists(pdir.as_fd(), leaf));
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOENT)) => None,
                Err(e) if not_honoured(&e) => Some(Placed::NotDone),
                Err(e) => return Err(e.into()),
            };
            match verdict {
                Some(Placed::Ours(now)) => {
                    self.vol.space.add_used(st.st_size);
                    self.sync_dir(pdir.as_fd())?;
                    return self.finish(file, now, meta);
                }
                Some(Placed::Replaced) => {
                    self.vol.space.add_used(st.st_size);
                    self.sync_dir(pdir.as_fd())?;
                    return self.finish(file, st, meta);
                }
                Some(Placed::NotDone) => {
                    self.vol.distrust_tmpfile("an object's link");
                    file = self.copy_to_named(&file)?;
                    st = self.seal(&file, &mut meta)?;
                }
                None => {}
            }
        }
        if matches!(self.temp, TempName::Anonymous) {
            let name = format!("w-{}", random_hex(12));
            let linked = match fsx::link_tmpfile(file.as_fd(), self.vol.tmp_dir(), &name) {
                Ok(()) => matches!(placed(self.vol.tmp_dir(), &name, &st, None, self.vol.local)?, Placed::Ours(_)),
                Err(e) if not_honoured(&e) || e.raw_os_error() == Some(libc::EEXIST) => false,
                Err(e) => return Err(e.into()),
            };
            if linked {
                self.temp = TempName::Named(name);
            } else {
                self.vol.distrust_tmpfile("a temp file's link");
                file = self.copy_to_named(&file)?;
                st = self.seal(&file, &mut meta)?;
            }
        }
        let (from, tmp_name) = self.temp_at().expect("a named temp file");
        let (from, tmp_name) = (from.try_clone_to_owned()?, tmp_name.to_owned());
        // Held from the comparison to the rename; released before the directory fsync.
        let (vol, key) = (self.vol.clone(), self.key.clone());
        let mut lock = None;
        let mut judged = None;
        if cond.needs_lock() {
            lock = Some(KeyLock::take(&vol, &key)?);
            judged = cond.check(&vol, &key)?;
        }
        // A compare-and-swap exchanges names, so that it sees the file it displaced: an
        // unconditional write that landed after the comparison is then ordered after this
        // one, never silently overwritten by it.
        if let Some(judged) = judged {
            let (pdir, leaf) = self.vol.ensure_parent(&key)?;
            // A link at the key (to a file inside the volume) was judged by its target: it
            // is replaced by rename, as before.
            let link =
                fsx::lstat_at(pdir.as_fd(), leaf.as_ref()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
            let swapped = if link {
                Swapped::Unsupported
            } else {
                match swap_in(from.as_fd(), &tmp_name, pdir.as_fd(), leaf, judged, (st.st_dev, st.st_ino)) {
                    Ok(s) => s,
                    // Deleted after the comparison: the delete is ordered first, and this
                    // write finds no object (404, as S3 answers If-Match on a missing key).
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(Error::NotFound),
                    Err(e) => return Err(e.into()),
                }
            };
            if !matches!(swapped, Swapped::Unsupported) {
                self.temp = TempName::Anonymous; // renamed away: nothing to clean up
                if let Swapped::Ours(replaced) = swapped {
                    self.vol.space.add_used(st.st_size - replaced);
                }
                drop(lock);
                self.sync_dir(pdir.as_fd())?;
                return self.finish(file, st, meta);
            }
        }
        let mut no_replace = *cond == Condition::Absent;
        // A concurrent delete may remove an empty parent s3vol made, perhaps just now for
        // this write, between its creation and the rename: make it again and retry.
        let mut attempt = 0;
        let (pdir, leaf, prior) = loop {
            let (pdir, leaf) = self.vol.ensure_parent(&key)?;
            let prior = fsx::lstat_at(pdir.as_fd(), leaf.as_ref()).ok();
            let old_size = prior.as_ref().filter(|p| fsx::is_regular(p)).map_or(0, |p| p.st_size);
            let renamed = if no_replace {
                fsx::rename_noreplace(from.as_fd(), &tmp_name, pdir.as_fd(), leaf)
            } else {
                fsx::rename_at(from.as_fd(), &tmp_name, pdir.as_fd(), leaf)
            };
            match renamed {
                Ok(()) => {
                    self.vol.space.add_used(st.st_size - old_size);
                    break (pdir, leaf, prior);
                }
                Err(e) if no_replace && e.raw_os_error() == Some(libc::EEXIST) => {
                    return Err(exists(pdir.as_fd(), leaf));
                }
                // Neither renameat2 flags nor hard links (some FUSE file systems): exclude
                // other conditional writers with the key's lock, then check and rename.
                Err(e)
                    if no_replace
                        && matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)) =>
                {
                    no_replace = false;
                    lock = Some(KeyLock::take(&vol, &key)?);
                    let _ = cond.check(&vol, &key)?;
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOENT) && attempt < PARENT_RETRIES && removed(pdir.as_fd()) =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.temp = TempName::Anonymous; // renamed away: nothing to clean up
        let now = self.check_renamed(pdir.as_fd(), leaf, &st, prior.as_ref(), from.as_fd(), &tmp_name)?;
        drop(lock);
        self.sync_dir(pdir.as_fd())?;
        self.finish(file, now.unwrap_or(st), meta)
    }

    /// Writes what the commit needs onto the complete temp file: owner and mode, the
    /// metadata attribute with the file's fingerprint, fsync. Returns the file's `fstat`.
    fn seal(&self, file: &File, meta: &mut ObjectMeta) -> Result<FileStat> {
        let fd = file.as_fd();
        self.vol.apply_owner_mode(fd, false)?;
        let st = fsx::fstat(fd)?;
        meta.fp = Some(Fingerprint::of(&st));
        if self.vol.xattrs {
            fsx::set_xattr(fd, META_XATTR, &meta.to_bytes())?;
        } else {
            // Without the attribute, HEAD, GET, listings and If-Match see the synthesized
            // ETag: answer that one, so that a client can compare-and-swap with it.
            meta.etag = meta::synthesized_etag(&st);
        }
        if self.vol.settings.fsync {
            fsx::fsync(fd)?;
        }
        Ok(st)
    }

    /// The committed object as the key now shows it (`now`, looked up after the commit).
    /// A modification time that moved since the attribute was written (rounded by the file
    /// system, or set when the name was made) gets the fingerprint written again; otherwise
    /// every later read would find the metadata stale.
    ///
    /// Without extended attributes the ETag is the synthesized one of the file's final
    /// state: the file is closed first (a FUSE or network file system may set the
    /// modification time when it flushes on close) and the key looked up again, so the
    /// PUT answers the ETag that HEAD, listings and `If-Match` will see.
    fn finish(&self, file: File, mut now: FileStat, mut meta: ObjectMeta) -> Result<ObjectInfo> {
        let fp = Fingerprint::of(&now);
        if meta.fp != Some(fp) && meta.fp.is_some_and(|old| old.ino == fp.ino) {
            meta.fp = Some(fp);
            if self.vol.xattrs {
                fsx::set_xattr(file.as_fd(), META_XATTR, &meta.to_bytes())?;
                if self.vol.settings.fsync {
                    fsx::fsync(file.as_fd())?;
                }
            }
        }
        if !self.vol.xattrs {
            drop(file);
            if let Ok((_, st)) = self.vol.open_regular(&self.key)
                && st.st_ino == now.st_ino
                && st.st_dev == now.st_dev
            {
                now = st;
            }
            meta.etag = meta::synthesized_etag(&now);
        }
        Ok(ObjectInfo { size: now.st_size as u64, mtime_ns: fsx::mtime_ns(&now), meta, from_xattr: self.vol.xattrs })
    }
}

/// How a compare-and-swap's exchange ended ([`swap_in`]).
enum Swapped {
    /// The key held the judged file; it was replaced by ours (the displaced size, bytes).
    Ours(i64),
    /// An unconditional write replaced the judged file after the comparison: ours was put
    /// in and then displaced again by the newest file, as if that write came after ours.
    Overtaken,
    /// The file system cannot exchange names (`RENAME_EXCHANGE`): commit by rename.
    Unsupported,
}

/// Commits a compare-and-swap by exchanging the temp file `tmp` (in `from`) with the key's
/// file `leaf` (in `pdir`) in one step (`renameat2(RENAME_EXCHANGE)`), then looks at what
/// it displaced. The judged file (`judged`, device and inode): done, and it is removed.
/// Another file: an unconditional writer replaced the judged one between the comparison
/// and the exchange, so the newest file is put back (exchanging again until the file just
/// put in comes back untouched), which orders this write before that one: both are
/// acknowledged, the later one stays, and no acknowledged write is overwritten by a write
/// whose condition was judged before it.
///
/// Errors: ENOENT when the key is gone (deleted after the comparison); I/O errors.
fn swap_in(
    from: BorrowedFd<'_>,
    tmp: &str,
    pdir: BorrowedFd<'_>,
    leaf: &str,
    judged: (u64, u64),
    ours: (u64, u64),
) -> io::Result<Swapped> {
    let exchange = || nix::fcntl::renameat2(from, tmp, pdir, leaf, nix::fcntl::RenameFlags::RENAME_EXCHANGE);
    match exchange() {
        Ok(()) => {}
        Err(nix::Error::EINVAL | nix::Error::ENOSYS | nix::Error::EOPNOTSUPP) => return Ok(Swapped::Unsupported),
        Err(e) => return Err(e.into()),
    }
    let id = |st: &FileStat| (st.st_dev, st.st_ino);
    let displaced = fsx::lstat_at(from, tmp.as_ref())?;
    if id(&displaced) == judged {
        let _ = fsx::unlink_at(from, tmp, false);
        return Ok(Swapped::Ours(displaced.st_size));
    }
    // The key now holds ours and `tmp` the newer file: put the newest back. Each exchange
    // hands back what the key held; when that is the file just put in, nothing newer
    // arrived meanwhile and the key holds the newest file.
    let mut placed = ours;
    for _ in 0..16 {
        let next = id(&fsx::lstat_at(from, tmp.as_ref())?);
        exchange()?;
        let back = id(&fsx::lstat_at(from, tmp.as_ref())?);
        if back == placed {
            let _ = fsx::unlink_at(from, tmp, false);
            return Ok(Swapped::Overtaken);
        }
        placed = next;
    }
    // Writers kept landing: what `tmp` holds may be newer than the key's file, so it is
    // left for the sweep rather than removed.
    tracing::warn!("a compare-and-swap was overtaken by writes 16 times in a row; a temp file is left to the sweep");
    Ok(Swapped::Overtaken)
}

/// Where a name leads when looked up afresh after a link or rename made it.
enum Placed {
    /// The file written (same device and inode, same size); its `lstat` now.
    Ours(FileStat),
    /// Another file, not the one the name held before: a concurrent writer's commit came
    /// after ours (the last rename wins, SPEC.md).
    Replaced,
    /// Nothing, the file the name held before, or ours with other bytes: the file system
    /// accepted the call and did not do it.
    NotDone,
}

/// Looks `name` up in `dir` and compares it with the file written (`ours`) and with what
/// the name held before the commit (`prior`, device and inode).
///
/// On a file system the kernel does not keep itself (`local` false: NFS, FUSE) the name is
/// opened, not only looked up: a FUSE client that accepted a link it did not make leaves a
/// positive entry in the kernel's cache that `lstat` believes and that only the open,
/// which asks the file system, refuses.
fn placed(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    ours: &FileStat,
    prior: Option<(u64, u64)>,
    local: bool,
) -> Result<Placed> {
    let found = if local {
        fsx::lstat_at(dir, name.as_ref())
    } else {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fsx::fstat(fd.as_fd()),
            // Not readable by this process (a configured owner), or a link: what lstat says.
            Err(nix::Error::EACCES | nix::Error::ELOOP) => fsx::lstat_at(dir, name.as_ref()),
            Err(e) => Err(e.into()),
        }
    };
    match found {
        Ok(st) if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino) => {
            Ok(if st.st_size == ours.st_size { Placed::Ours(st) } else { Placed::NotDone })
        }
        Ok(st) if Some((st.st_dev, st.st_ino)) == prior => Ok(Placed::NotDone),
        Ok(_) => Ok(Placed::Replaced),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Placed::NotDone),
        Err(e) => Err(e.into()),
    }
}

/// Errors of `linkat` on an `O_TMPFILE` file that mean the file system cannot name it
/// (JuiceFS answers EXDEV), as opposed to the target's own errors.
fn not_honoured(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EBADF)
    )
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

/// Runs `place(parent, leaf)` in the parent directory of `key`, made when missing
/// ([`Volume::ensure_parent`]). When `place` fails with ENOENT because that directory was
/// removed meanwhile (a concurrent DeleteObject removes the empty directories s3vol made,
/// possibly the one just made for this write), makes it again and retries, up to
/// [`PARENT_RETRIES`] times: a write never fails because a delete raced it.
///
/// Returns the parent's handle and what `place` returned last. Errors: those of
/// [`Volume::ensure_parent`].
fn in_parent<T>(
    vol: &Volume,
    key: &ObjectKey,
    mut place: impl FnMut(BorrowedFd<'_>, &str) -> io::Result<T>,
) -> Result<(OwnedFd, io::Result<T>)> {
    let mut attempt = 0;
    loop {
        let (pdir, leaf) = vol.ensure_parent(key)?;
        let r = place(pdir.as_fd(), leaf);
        match &r {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && attempt < PARENT_RETRIES && removed(pdir.as_fd()) => {
                attempt += 1;
            }
            _ => return Ok((pdir, r)),
        }
    }
}

/// True when the open directory `dir` no longer has a name (removed: no links left), or
/// cannot be looked at any more (a network file system's stale handle).
fn removed(dir: BorrowedFd<'_>) -> bool {
    fsx::fstat(dir).map_or(true, |st| st.st_nlink == 0)
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A staged assembly stays for the retry that resumes it (see `stage_as`).
        if let TempName::Named(name) = &self.temp {
            let _ = fsx::unlink_at(self.vol.tmp_dir(), name, false);
        }
    }
}

/// What a no-replace commit answers when the name was taken: a directory there is the
/// usual 409 (as without the condition), anything else fails `If-None-Match: *`.
fn exists(pdir: std::os::fd::BorrowedFd<'_>, leaf: &str) -> Error {
    match fsx::lstat_at(pdir, leaf.as_ref()) {
        Ok(st) if fsx::is_dir(&st) => Error::IsDirectory,
        _ => Error::PreconditionFailed,
    }
}

fn create_temp(vol: &Volume) -> Result<(OwnedFd, TempName)> {
    let mode = Mode::from_bits_truncate(0o600);
    if vol.tmpfile() {
        match nix::fcntl::openat(vol.tmp_dir(), ".", OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, mode) {
            Ok(fd) => return Ok((fd, TempName::Anonymous)),
            Err(nix::Error::EOPNOTSUPP | nix::Error::EISDIR | nix::Error::EINVAL | nix::Error::ENOSYS) => {}
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

    fn volume(name: &str) -> (std::path::PathBuf, Arc<Volume>) {
        let root = std::env::temp_dir().join(format!("s3vol-write-{name}-{}", random_hex(6)));
        std::fs::create_dir_all(&root).unwrap();
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
