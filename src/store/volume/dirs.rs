//! Directories of a volume: s3vol's marks on the directories it makes, `ensure_dir` (which
//! makes a key's parents again when a concurrent delete removed them), `k/` markers, and
//! DeleteObject with the cleanup of the empty directories s3vol made.

use super::*;

impl Volume {
    pub(in crate::store) fn head_marker(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        let dir = self.open_dir_path(key.path()).map_err(open_error)?;
        if !(self.dir_mark(dir.as_fd()) == Some(DirMark::Marker) || fsx::dir_is_empty(dir.as_fd())?) {
            return Err(Error::NotFound);
        }
        let st = fsx::fstat(dir.as_fd())?;
        Ok(ObjectInfo {
            size: 0,
            mtime_ns: fsx::mtime_ns(&st),
            meta: ObjectMeta {
                etag: meta::EMPTY_MD5.into(),
                content_type: Some("application/x-directory".into()),
                ..Default::default()
            },
            from_xattr: false,
        })
    }

    /// s3vol's mark on a directory, if any.
    pub fn dir_mark(&self, dir: BorrowedFd<'_>) -> Option<DirMark> {
        if !self.xattrs {
            return None;
        }
        match fsx::get_xattr(dir, DIR_XATTR) {
            Ok(Some(v)) if v == b"marker" => Some(DirMark::Marker),
            Ok(Some(v)) if v == b"auto" => Some(DirMark::Auto),
            _ => None,
        }
    }

    pub(in crate::store) fn set_dir_mark(&self, dir: BorrowedFd<'_>, mark: DirMark) {
        if !self.xattrs {
            return;
        }
        let v: &[u8] = match mark {
            DirMark::Marker => b"marker",
            DirMark::Auto => b"auto",
        };
        if let Err(e) = fsx::set_xattr(dir, DIR_XATTR, v) {
            debug!(volume = %self.name, error = %e, "cannot mark a directory");
        }
    }

    /// Applies the configured owner and mode to a new file or directory.
    pub fn apply_owner_mode(&self, fd: BorrowedFd<'_>, dir: bool) -> Result<()> {
        if let Some((uid, gid)) = self.settings.owner {
            nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()))?;
        }
        let mode = if dir { self.settings.dir_mode } else { self.settings.file_mode };
        nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(mode))?;
        Ok(())
    }

    /// Makes sure the directory `rel` (relative, no trailing `/`) exists, creating missing
    /// ancestors marked `auto`; returns a handle to it.
    ///
    /// A concurrent DeleteObject may remove an empty `auto` directory at any moment,
    /// including one just made here: a walk that finds a component gone starts again (at
    /// most [`ENSURE_DIR_RETRIES`] times), so that a write never fails for it.
    ///
    /// Errors: [`Error::ParentIsFile`] when a component is a file; file-system errors.
    pub fn ensure_dir(&self, rel: &str) -> Result<OwnedFd> {
        let mut attempt = 0;
        loop {
            match self.ensure_dir_once(rel) {
                Err(Error::NotFound) if attempt < ENSURE_DIR_RETRIES => attempt += 1,
                r => return r,
            }
        }
    }

    pub(in crate::store) fn ensure_dir_once(&self, rel: &str) -> Result<OwnedFd> {
        match self.open_dir_path(rel) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        // Walk down from the root, creating what is missing.
        let mut cur = self.open_dir_path("")?;
        let mut done = 0usize;
        for seg in rel.split('/') {
            let sub = if done == 0 { seg.to_owned() } else { format!("{}/{seg}", &rel[..done]) };
            done = sub.len();
            match self.open_dir_path(&sub) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // `cur` may be the root reached through a link: never make the internal
                    // directory's name there.
                    self.check_entry(cur.as_fd(), seg)?;
                    match fsx::mkdir_at(cur.as_fd(), seg, self.settings.dir_mode) {
                        Ok(()) => {
                            // O_NOFOLLOW: a pod swapping the new directory for a link meanwhile
                            // gets an error, not a handle to wherever the link points.
                            let fd = fsx::open_child_dir(cur.as_fd(), seg)?;
                            self.apply_owner_mode(fd.as_fd(), true)?;
                            self.set_dir_mark(fd.as_fd(), DirMark::Auto);
                            if self.settings.fsync {
                                fsx::fsync(cur.as_fd())?;
                            }
                            cur = fd;
                        }
                        // Someone else made it (or a file appeared) meanwhile: look again.
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => cur = self.open_dir_path(&sub)?,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }

    /// PUT `k/` with no body: creates directory `k` (and parents) and marks it as a
    /// directory object so that it is listed even when not empty. The object count grows
    /// by one unless `k/` was an object already (an empty or marked directory: what the
    /// scan counts, [`crate::store::scan`]).
    pub fn put_marker(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        self.check_writable()?;
        let was_object = self.open_dir_path(key.path()).ok().is_some_and(|d| self.is_dir_object(d.as_fd()));
        let dir = self.ensure_dir(key.path())?;
        self.set_dir_mark(dir.as_fd(), DirMark::Marker);
        if !was_object {
            self.space.note_objects(1, 0);
        }
        self.head_marker(key)
    }

    /// True when the directory open at `dir` is a `k/` object as listing and the scan see
    /// it: empty, or marked as a directory object.
    fn is_dir_object(&self, dir: BorrowedFd<'_>) -> bool {
        self.dir_mark(dir) == Some(DirMark::Marker) || fsx::dir_is_empty(dir).unwrap_or(false)
    }

    /// DeleteObject. Deleting a missing key succeeds (S3). A file is unlinked; a `k/` marker
    /// removes the directory when empty, else only its mark. Then parents that s3vol created
    /// (`auto`) and that became empty are removed, deepest first; others stay.
    pub fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.check_writable()?;
        // A key through a link into the internal directory is refused (InternalDir), not
        // treated as missing: the client learns why nothing was deleted.
        let (pdir, leaf) = match self.open_parent(key) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // A retry of a delete cut short (a crash, a dropped DeleteObjects) finishes
                // the cleanup of the empty directories s3vol made on the key's path.
                self.remove_empty_parents(key);
                return Ok(());
            }
            Err(e) if fsx::is_absent(&e) => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let st = match fsx::lstat_at(pdir.as_fd(), leaf.as_ref()) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                drop(pdir);
                self.remove_empty_parents(key);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if key.is_dir_marker() {
            if kind != libc::S_IFDIR {
                return Ok(());
            }
            match fsx::unlink_at(pdir.as_fd(), leaf, true) {
                // An empty directory was a `k/` object.
                Ok(()) => self.space.note_objects(-1, 0),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    // Not empty: the `k/` object goes, the directory and its contents stay.
                    if let Ok(d) = fsx::open_child_dir(pdir.as_fd(), leaf) {
                        if self.dir_mark(d.as_fd()) == Some(DirMark::Marker) {
                            self.space.note_objects(-1, 0);
                        }
                        let _ = fsx::remove_xattr(d.as_fd(), DIR_XATTR);
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            match kind {
                libc::S_IFREG => {
                    if !self.remove_counted(pdir.as_fd(), leaf)? {
                        return Ok(()); // a directory appeared at the key: left alone
                    }
                }
                // Only a link to a regular file inside the volume is an object; one into the
                // internal directory is refused like the key that names it.
                libc::S_IFLNK => match self.open_path(key.path(), READ_FLAGS) {
                    Err(e) if resolve::reaches_internal(&e) => return Err(Error::InternalDir),
                    Ok(fd) if fsx::fstat(fd.as_fd()).is_ok_and(|st| fsx::is_regular(&st)) => {
                        // The link goes, not its target: one object fewer, bytes as before
                        // until the next scan.
                        self.space.note_objects(-1, 0);
                    }
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
            if kind == libc::S_IFLNK {
                fsx::unlink_at(pdir.as_fd(), leaf, false)?;
            }
        }
        if self.settings.fsync {
            fsx::fsync(pdir.as_fd())?;
        }
        drop(pdir);
        self.remove_empty_parents(key);
        Ok(())
    }

    /// Removes the file at `leaf` of `pdir` and subtracts from the counts and the quota
    /// usage the file actually removed: it leaves the key in one step (a rename into the
    /// temp directory), is looked at there, then unlinked. A `lstat` then `unlink` would
    /// subtract the size of a file a concurrent PUT had just replaced and remove the new
    /// one (attack finding F5: the counts drifted). Where the rename cannot be made (the
    /// key lies on another file system mounted inside the volume) the file is looked at
    /// then unlinked, and that window stays until the next scan.
    ///
    /// Returns false when what left the key was a directory (put back, nothing removed).
    fn remove_counted(&self, pdir: BorrowedFd<'_>, leaf: &str) -> Result<bool> {
        let grave = format!("d-{}", random_hex(12));
        let gone = match fsx::rename_at(pdir, leaf, self.tmp_dir(), &grave) {
            Ok(()) => {
                let gone = fsx::lstat_at(self.tmp_dir(), grave.as_ref())?;
                if gone.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // A pod made a directory at the key meanwhile: it is not this delete's.
                    fsx::rename_noreplace(self.tmp_dir(), &grave, pdir, leaf)?;
                    return Ok(false);
                }
                fsx::unlink_at(self.tmp_dir(), &grave, false)?;
                gone
            }
            // Deleted meanwhile by another request: that one counted it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let st = fsx::lstat_at(pdir, leaf.as_ref())?;
                fsx::unlink_at(pdir, leaf, false)?;
                st
            }
            Err(e) => return Err(e.into()),
        };
        if fsx::is_regular(&gone) {
            self.space.add_used(-gone.st_size);
            self.space.note_objects(-1, -gone.st_size);
        }
        Ok(true)
    }

    /// DeleteObject under a compare-and-swap (`If-Match`, the key's lock held): removes the
    /// key only when it still is the `judged` file (device and inode). The file is moved
    /// to the temp directory in one step and looked at there: when an unconditional write
    /// replaced the judged file after the comparison, that write is ordered after this
    /// delete and its file is put back (unless a newer one is already there).
    ///
    /// Errors: [`Error::NotFound`] when the key is gone (deleted after the comparison: that
    /// delete is ordered first); I/O errors. Elsewhere as [`Volume::delete`].
    pub fn delete_judged(&self, key: &ObjectKey, judged: (u64, u64)) -> Result<()> {
        self.check_writable()?;
        let (pdir, leaf) = match self.open_parent(key) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        };
        let grave = format!("d-{}", random_hex(12));
        match fsx::rename_at(pdir.as_fd(), leaf, self.tmp_dir(), &grave) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(Error::NotFound),
            // The key's directory is another file system (a mount inside the volume).
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return self.delete(key),
            Err(e) => return Err(e.into()),
        }
        let moved = fsx::lstat_at(self.tmp_dir(), grave.as_ref())?;
        let link = moved.st_mode & libc::S_IFMT == libc::S_IFLNK;
        if link || (moved.st_dev, moved.st_ino) != judged {
            match fsx::rename_noreplace(self.tmp_dir(), &grave, pdir.as_fd(), leaf) {
                Ok(()) => {}
                // An even newer write holds the key: the moved file was replaced anyway.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    let _ = fsx::unlink_at(self.tmp_dir(), &grave, false);
                }
                Err(e) => return Err(e.into()),
            }
            // A link at the key was judged by its target: delete it as any delete does.
            return if link { self.delete(key) } else { Ok(()) };
        }
        fsx::unlink_at(self.tmp_dir(), &grave, false)?;
        if fsx::is_regular(&moved) {
            self.space.add_used(-moved.st_size);
            self.space.note_objects(-1, -moved.st_size);
        }
        if self.settings.fsync {
            fsx::fsync(pdir.as_fd())?;
        }
        drop(pdir);
        self.remove_empty_parents(key);
        Ok(())
    }

    /// Removes the now-empty `auto` ancestors of `key`, deepest first. Missing ones are
    /// passed over (an earlier, interrupted delete removed them), so that the climb also
    /// finishes what a crash left.
    pub(in crate::store) fn remove_empty_parents(&self, key: &ObjectKey) {
        let ancestors: Vec<&str> = key.ancestors().collect();
        for rel in ancestors.into_iter().rev() {
            let dir = match self.open_dir_path(rel) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(_) => return,
            };
            if self.dir_mark(dir.as_fd()) != Some(DirMark::Auto) {
                return;
            }
            drop(dir);
            let (parent, leaf) = match rel.rfind('/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => ("", rel),
            };
            let Ok(pdir) = self.open_dir_path(parent) else {
                return;
            };
            if fsx::unlink_at(pdir.as_fd(), leaf, true).is_err() {
                return; // not empty (or raced with a writer): stop climbing
            }
        }
    }
}
