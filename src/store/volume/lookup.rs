//! HEAD-style lookups of a volume: opening a key's regular file, from the blocking pool
//! or, on a local file system, from the kernel's lookup cache on an async thread.

use super::*;

impl Volume {
    /// HEAD: what is at `key`, or [`Error::NotFound`].
    ///
    /// A file key must be a regular file (symlinks followed only beneath the root); a `k/`
    /// key must be a directory that is empty or marked as a directory object.
    pub fn head(&self, key: &ObjectKey) -> Result<ObjectInfo> {
        if key.is_dir_marker() {
            return self.head_marker(key);
        }
        let (fd, st) = self.open_regular(key)?;
        Ok(meta::load(fd.as_fd(), &st, key.as_str(), self.xattrs))
    }

    /// Opens the regular file at `key` for reading; `NotFound` for anything else.
    ///
    /// `O_NONBLOCK` so that a FIFO swapped in can never block the open.
    ///
    /// A miss is checked against the volume's path first: a volume whose directory was
    /// removed, renamed away or unmounted since its last check answers
    /// [`Error::Unavailable`], not NoSuchKey (one `statx`, on misses only).
    pub fn open_regular(&self, key: &ObjectKey) -> Result<(OwnedFd, FileStat)> {
        let r = self.open_path(key.path(), READ_FLAGS).map_err(open_error).and_then(regular);
        if matches!(r, Err(Error::NotFound)) {
            self.check_path()?;
        }
        r
    }

    /// [`Volume::open_regular`] for the async threads: `None` unless the volume is local
    /// and every component of the key is in the kernel's lookup cache (`RESOLVE_CACHED`),
    /// so that nothing here waits on a device or a server; the caller then uses the
    /// blocking pool. Directory markers (`k/`) always take the blocking path.
    ///
    /// A miss is left to the blocking path too, which checks the volume's path before it
    /// answers NoSuchKey (see [`Volume::open_regular`]).
    pub fn open_regular_cached(&self, key: &ObjectKey) -> Option<Result<(OwnedFd, FileStat)>> {
        match self.open_regular_cached_inner(key) {
            Some(Err(Error::NotFound)) => None,
            r => r,
        }
    }

    fn open_regular_cached_inner(&self, key: &ObjectKey) -> Option<Result<(OwnedFd, FileStat)>> {
        // A root that folds case needs the identity checks of the slow lookup every time.
        if !self.local || key.is_dir_marker() || self.fence.folds_case {
            return None;
        }
        // The first component must not be the internal directory renamed (see
        // `Fence::check_first`); looked up from the cache too, so this cannot wait either.
        if let Some((first, _)) = key.path().split_once('/') {
            match fsx::open_beneath_cached(self.root(), first, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC) {
                Ok(Some(fd)) => {
                    if let Err(e) = self.fence.check_first_fd(fd.as_fd()) {
                        return Some(Err(open_error(e)));
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(open_error(e))),
            }
        }
        match fsx::open_beneath_cached(self.root(), key.path(), READ_FLAGS) {
            Ok(Some(fd)) => Some(regular(fd)),
            Ok(None) => None,
            Err(e) => Some(Err(open_error(e))),
        }
    }

    /// [`Volume::head`] for the async threads, on the terms of
    /// [`Volume::open_regular_cached`]. (An `fgetxattr` whose attribute was evicted is the
    /// one read that can still reach the disk; plain metadata lives in the inode.)
    pub fn head_cached(&self, key: &ObjectKey) -> Option<Result<ObjectInfo>> {
        let opened = self.open_regular_cached(key)?;
        Some(opened.map(|(fd, st)| meta::load(fd.as_fd(), &st, key.as_str(), self.xattrs)))
    }
}

/// How objects are opened for reading: `O_NONBLOCK` so that a FIFO swapped in can never
/// block the open.
pub(super) const READ_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_NONBLOCK).union(OFlag::O_NOCTTY);

/// The store error for a failed open of an object: a parent that is a file, a special file,
/// or a path into the internal directory is no such key (reads see nothing of it).
pub(super) fn open_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOTDIR | libc::ENXIO) => Error::NotFound,
        _ if resolve::reaches_internal(&e) => Error::NotFound,
        _ => e.into(),
    }
}

/// `fd` with its `fstat` when it is a regular file; `NotFound` otherwise.
fn regular(fd: OwnedFd) -> Result<(OwnedFd, FileStat)> {
    let st = fsx::fstat(fd.as_fd())?;
    if !fsx::is_regular(&st) {
        return Err(Error::NotFound);
    }
    Ok((fd, st))
}
