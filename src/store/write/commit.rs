//! Committing a written object or part: the link or rename into place, verified afresh
//! (FUSE and network file systems accept calls they do not honour), the conditional
//! commits (no-replace for `If-None-Match: *`, an exchange of names for a compare-and-swap
//! under the key's lock), and the parent-directory retries when a concurrent delete
//! removed it. The writing half (temp files, appends, copies) is in the parent module.

use super::*;

impl Writer {
    /// Finishes a staged part: fsync, then link it into `dir` as `name`. Returns its size.
    ///
    /// The name is looked up again afterwards and must lead to the file written (see
    /// [`placed`]); where an `O_TMPFILE` link was accepted but not made the bytes are copied
    /// to a named temp file and renamed instead.
    ///
    /// Errors: [`Error::BodyLength`] when fewer bytes than declared were written;
    /// [`Error::Io`] when the file system did not make the name; I/O errors.
    pub(in crate::store) fn commit_into(mut self, dir: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<u64> {
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
    /// other daemons sharing the volume (see [`crate::store::cond`]): [`Condition::Absent`] links
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
                    self.vol.space.note_objects(1, st.st_size);
                    self.sync_dir(pdir.as_fd())?;
                    return self.finish(file, now, meta);
                }
                Some(Placed::Replaced) => {
                    self.vol.space.add_used(st.st_size);
                    self.vol.space.note_objects(1, st.st_size);
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
                    self.vol.space.note_objects(0, st.st_size - replaced);
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
            let renamed = if no_replace {
                fsx::rename_noreplace(from.as_fd(), &tmp_name, pdir.as_fd(), leaf).map(|()| None)
            } else {
                rename_over(from.as_fd(), &tmp_name, pdir.as_fd(), leaf, prior, (st.st_dev, st.st_ino))
            };
            match renamed {
                Ok(replaced) => {
                    // Counted by what the rename removed, not by the look before it: a
                    // delete or another write may have changed the key in between.
                    let old = replaced.filter(fsx::is_regular);
                    let old_size = old.map_or(0, |p| p.st_size);
                    self.vol.space.add_used(st.st_size - old_size);
                    // A new key is one more object; a replaced one only changes size.
                    self.vol.space.note_objects(i64::from(old.is_none()), st.st_size - old_size);
                    break (pdir, leaf, replaced.or(prior));
                }
                Err(e) if no_replace && e.raw_os_error() == Some(libc::EEXIST) => {
                    return Err(exists(pdir.as_fd(), leaf));
                }
                // Neither renameat2 flags nor hard links (some FUSE file systems): exclude
                // other conditional writers with the key's lock, then check and rename.
                Err(e)
                    if no_replace && e.raw_os_error().is_some_and(|n| fsx::is_unsupported(n) || n == libc::EPERM) =>
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
        Err(e) if fsx::is_unsupported(e as i32) => return Ok(Swapped::Unsupported),
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

/// Renames `tmp` (in `from`) onto the key `leaf` (in `pdir`), replacing what it holds, and
/// returns the `lstat` of what the rename removed (`None`: the key was free), as the
/// operation itself found it, so that counts and quota usage subtract the file actually
/// replaced (attack finding F5: a PUT racing a DELETE of the same key subtracted a file
/// the delete had already removed, and the counts drifted below the truth).
///
/// Where the file system has `renameat2` flags: a free key takes `RENAME_NOREPLACE`
/// (EEXIST: look again); a key holding a file or link takes `RENAME_EXCHANGE`, and what
/// comes back under `tmp` is the file replaced, looked at, then unlinked. A directory that
/// appears at the key meanwhile is exchanged back and the plain rename answers as it
/// always did. Without the flags (NFS, some FUSE), or after a few rounds lost to other
/// writers, a plain `rename` and the look taken before it (`prior`): the race window
/// stays there, and the next scan corrects the counts. `ours`: the written file (device,
/// inode), to tell an exchange the file system did not make.
fn rename_over(
    from: BorrowedFd<'_>,
    tmp: &str,
    pdir: BorrowedFd<'_>,
    leaf: &str,
    prior: Option<FileStat>,
    ours: (u64, u64),
) -> io::Result<Option<FileStat>> {
    use nix::fcntl::RenameFlags;
    let mut guess = prior;
    for _ in 0..4 {
        let kind = guess.as_ref().map(|p| p.st_mode & libc::S_IFMT);
        let flag = match kind {
            None => RenameFlags::RENAME_NOREPLACE,
            Some(libc::S_IFREG | libc::S_IFLNK) => RenameFlags::RENAME_EXCHANGE,
            Some(_) => break, // a directory: the plain rename refuses it
        };
        match nix::fcntl::renameat2(from, tmp, pdir, leaf, flag) {
            Ok(()) if flag == RenameFlags::RENAME_NOREPLACE => return Ok(None),
            Ok(()) => {
                let displaced = fsx::lstat_at(from, tmp.as_ref())?;
                if (displaced.st_dev, displaced.st_ino) == ours {
                    break; // accepted and not done: the plain rename below
                }
                if displaced.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // A directory (a pod's) took the key after our look: put it back. What
                    // comes back under `tmp` must be our own file; if another writer (a
                    // node's acknowledged PUT) replaced it meanwhile, its file goes back on
                    // the key, since the later write wins, and the directory stays aside,
                    // named in the log (found by the outside attack pass: the exchange back
                    // took that file, and the temp's removal destroyed it).
                    nix::fcntl::renameat2(from, tmp, pdir, leaf, RenameFlags::RENAME_EXCHANGE)?;
                    let back = fsx::lstat_at(from, tmp.as_ref())?;
                    if (back.st_dev, back.st_ino) != ours && back.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        nix::fcntl::renameat2(from, tmp, pdir, leaf, RenameFlags::RENAME_EXCHANGE)?;
                        tracing::warn!(
                            key = leaf,
                            aside = tmp,
                            "a directory raced a write onto this key and a later write won: the directory is \
                             kept in the internal temp directory"
                        );
                        return Err(io::Error::from_raw_os_error(libc::EISDIR));
                    }
                    guess = Some(displaced);
                    break;
                }
                let _ = fsx::unlink_at(from, tmp, false);
                return Ok(Some(displaced));
            }
            // Created meanwhile: replace it by exchange.
            Err(nix::Error::EEXIST) => guess = fsx::lstat_at(pdir, leaf.as_ref()).ok(),
            // Removed meanwhile: take the free key (a parent removed too: ENOENT again).
            Err(nix::Error::ENOENT) if flag == RenameFlags::RENAME_EXCHANGE => guess = None,
            Err(e) if fsx::is_unsupported(e as i32) => break,
            Err(e) => return Err(e.into()),
        }
    }
    fsx::rename_at(from, tmp, pdir, leaf)?;
    Ok(guess)
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
        // The kernel's own file system made the name (its answer is the truth): gone
        // already means a concurrent delete removed it, a later operation.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && local => Ok(Placed::Replaced),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Placed::NotDone),
        Err(e) => Err(e.into()),
    }
}

/// Errors of `linkat` on an `O_TMPFILE` file that mean the file system cannot name it
/// (JuiceFS answers EXDEV), as opposed to the target's own errors.
fn not_honoured(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|n| fsx::is_no_offload(n) || n == libc::EPERM)
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

/// What a no-replace commit answers when the name was taken: a directory there is the
/// usual 409 (as without the condition), anything else fails `If-None-Match: *`.
fn exists(pdir: std::os::fd::BorrowedFd<'_>, leaf: &str) -> Error {
    match fsx::lstat_at(pdir, leaf.as_ref()) {
        Ok(st) if fsx::is_dir(&st) => Error::IsDirectory,
        _ => Error::PreconditionFailed,
    }
}
