//! A volume: a root directory handle plus its settings, opening and probing it, its
//! liveness state, and HEAD-style lookups. Directories, `k/` markers and DeleteObject are
//! in [`dirs`]; the registry of volumes ([`Volumes`]) in [`registry`].
//!
//! Every file-system access of a request starts from [`Volume::root`] and resolves beneath
//! it, never into the internal directory ([`resolve::open`]). The internal directory and
//! its `tmp/` and `multipart/` are opened once, as handles, relative to the root handle and
//! never through a link, and DeleteBucket removes through handles too: a pod that swaps
//! any of them for a link cannot make s3vol create or remove anything outside the volume
//! (issue 12, item 6).

mod dirs;
mod registry;

pub use registry::{Transition, Volumes};

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use tracing::{debug, warn};

use super::key::ObjectKey;
use super::meta::{self, DIR_XATTR, ObjectInfo, ObjectMeta};
use super::resolve::{self, Fence};
use super::{Error, Result, fsx};

/// Per-volume settings, already validated by the config layer.
#[derive(Debug, Clone)]
pub struct VolumeSettings {
    /// Name of the internal directory at the volume root (default `.s3vol`).
    pub internal_dir: String,
    /// fsync file and parent directory before a write is acknowledged (default true).
    pub fsync: bool,
    /// uid:gid given to new files and directories, when set.
    pub owner: Option<(u32, u32)>,
    /// Mode bits of new files (default 0o644).
    pub file_mode: u32,
    /// Mode bits of new directories (default 0o755).
    pub dir_mode: u32,
    /// Refuse to serve unless the path is a mount point.
    pub require_mount: bool,
    /// Quota, maximum object size, allowed content types.
    pub limits: super::quota::Limits,
    /// Largest multipart part accepted, bytes (S3: 5 GiB, the default).
    pub max_part_size: u64,
    /// Smallest multipart part but the last, bytes, judged at Complete (S3: 5 MiB, the
    /// default; see [`super::part_size`]).
    pub min_part_size: u64,
}

/// S3's part size limit: 5 GiB.
pub const DEFAULT_MAX_PART_SIZE: u64 = 5 << 30;

impl Default for VolumeSettings {
    fn default() -> Self {
        Self {
            internal_dir: ".s3vol".into(),
            fsync: true,
            owner: None,
            file_mode: 0o644,
            dir_mode: 0o755,
            require_mount: false,
            limits: super::quota::Limits::default(),
            max_part_size: DEFAULT_MAX_PART_SIZE,
            min_part_size: super::part_size::DEFAULT_MIN_PART_SIZE,
        }
    }
}

/// An open, servable volume.
#[derive(Debug)]
pub struct Volume {
    /// The bucket name.
    pub name: String,
    /// The configured path (for logs and status only; never joined with keys).
    pub path: PathBuf,
    pub settings: VolumeSettings,
    root: OwnedFd,
    /// What key lookups must not enter (the internal directory, by name and identity).
    fence: Fence,
    tmp: OwnedFd,
    /// The multipart staging directory (`<internal>/multipart`).
    pub(super) uploads: OwnedFd,
    /// The file system keeps user extended attributes.
    pub xattrs: bool,
    /// The file system keeps its metadata on this node ([`fsx::is_local_fs`]): lookups
    /// found in the dentry cache are served without a blocking thread ([`Volume::head_cached`]).
    pub local: bool,
    /// The file system is mounted read-only.
    pub read_only: bool,
    /// Temp files are made with `O_TMPFILE` and named with `linkat`: only on a local file
    /// system whose start-up probe saw the link really made ([`probe_tmpfile`]), and turned
    /// off for good ([`Volume::distrust_tmpfile`]) the first time a commit finds that a link
    /// the file system accepted did not name the file (a FUSE file system such as JuiceFS
    /// answers the calls and keeps no such name). Otherwise temp files are named files in
    /// the internal `tmp` directory, committed with `rename`.
    tmpfile: std::sync::atomic::AtomicBool,
    /// Creation time of the root directory (ListBuckets CreationDate), ns since the epoch.
    pub created_ns: i128,
    /// Capacity, quota and in-flight reservations.
    pub space: Arc<super::quota::Space>,
    /// The last [`Volume::internal_intact`] verdict of the background check
    /// ([`Volume::check_internal`]); while false the volume answers 503.
    intact: std::sync::atomic::AtomicBool,
    /// The root was a mount root when opened (statx `STATX_ATTR_MOUNT_ROOT`): should the
    /// path stop being one, the volume answers 503 rather than serve the directory beneath.
    pub mount_root: bool,
    /// The file system's read-only flag (`ST_RDONLY`) when opened: a change means it was
    /// remounted, and the volume is opened again ([`Volumes::check`]).
    fs_read_only: bool,
    /// Bounds this volume's blocking work ([`BLOCKING_PER_VOLUME`] threads): a file system
    /// that stops answering holds at most these, never the whole blocking pool.
    pub gate: Arc<tokio::sync::Semaphore>,
    /// Work on this volume overran its deadline and has not been seen to finish since: the
    /// volume answers 503 at once until a liveness check completes.
    stalled: std::sync::atomic::AtomicBool,
}

/// The directory fsck keeps at the root of an ext2/3/4 file system: not an object when the
/// volume's root is a mount root ([`Volume::key`], the listing).
pub const LOST_FOUND: &str = "lost+found";

/// Blocking tasks one volume may run at once ([`Volume::gate`]). Tokio's blocking pool
/// holds 512 threads: a few hung volumes cannot exhaust it.
pub const BLOCKING_PER_VOLUME: usize = 64;

/// Woken when a request meets an error that may mean the volume changed under it (a
/// read-only or stale file system, a vanished directory): the liveness check then runs at
/// once instead of at its next tick.
pub static RECHECK: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A configured volume: served, or reported unavailable with the reason.
#[derive(Debug, Clone)]
pub enum VolumeState {
    Online(Arc<Volume>),
    /// The directory was missing, unreadable or not a mount point at start: 503. Holds the
    /// reason (for logs and `/status`) and the configured path.
    Unavailable(String, PathBuf),
}

impl Volume {
    /// Opens the volume at `path`: the root handle, the internal directory (created if the
    /// volume is writable) and a probe for user extended attributes.
    ///
    /// The internal directory, its `tmp/` and its `multipart/` are made with `mkdirat` and
    /// opened `O_NOFOLLOW` relative to the handle of their parent, never through a path:
    /// when any of them is a symbolic link or not a directory the volume is refused (it
    /// answers 503), and nothing is created wherever the link points.
    ///
    /// Errors: the text a start-up report shows (missing, not a directory, not a mount
    /// point, an internal directory that is a link).
    pub fn open(name: &str, path: &Path, settings: VolumeSettings) -> std::result::Result<Self, String> {
        let root = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if settings.require_mount && !is_mount_point(path) {
            return Err(format!("{} is not a mount point (require_mount = true)", path.display()));
        }
        let st = fsx::fstat(root.as_fd()).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        let fs_read_only = fs_read_only(root.as_fd()).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
        let mut read_only = fs_read_only;
        let mount_root = mount_state_fd(root.as_fd()).is_ok_and(|m| m.mount_root);
        let internal = settings.internal_dir.clone();
        let shown = |sub: &str| format!("{}/{sub}", path.display());
        let mut fence = Fence { name: internal.clone(), root: (st.st_dev, st.st_ino), ..Fence::default() };
        let dir = open_or_make(root.as_fd(), &internal, &mut read_only).map_err(|e| e.shown(&shown(&internal)))?;
        let (mut tmp, mut uploads) = (None, None);
        if let Some(dir) = &dir {
            let id = fsx::identity(dir.as_fd()).map_err(|e| format!("cannot stat {}: {e}", shown(&internal)))?;
            fence.forbidden.push(id);
            fence.folds_case = folds_case(root.as_fd(), &internal, id);
            for (sub, slot) in [("tmp", &mut tmp), ("multipart", &mut uploads)] {
                let at = shown(&format!("{internal}/{sub}"));
                *slot = open_or_make(dir.as_fd(), sub, &mut read_only).map_err(|e| e.shown(&at))?;
                if let Some(fd) = slot.as_ref() {
                    fence.forbidden.push(fsx::identity(fd.as_fd()).map_err(|e| format!("cannot stat {at}: {e}"))?);
                }
            }
        }
        let (tmp, uploads) = match (tmp, uploads) {
            (Some(t), Some(u)) => (t, u),
            // A read-only volume without an internal directory is still served for reads.
            _ if read_only => {
                let again = || fsx::open_dir(root.as_fd(), "").map_err(|e| e.to_string());
                (again()?, again()?)
            }
            _ => return Err(format!("cannot open the internal directory of {}", path.display())),
        };
        let xattrs = if read_only { probe_xattrs_read(root.as_fd()) } else { probe_xattrs(tmp.as_fd()) };
        if !xattrs {
            warn!(
                volume = name,
                "the file system has no user extended attributes: ETags are synthesized, content types guessed, and user metadata is refused"
            );
        }
        let local = fsx::is_local_fs(root.as_fd());
        // Network and FUSE file systems are not asked at all: their client may answer a
        // probe from its own cache and lose the name later (seen on JuiceFS).
        let tmpfile = !read_only && local && probe_tmpfile(tmp.as_fd());
        let created_ns = fsx::ctime_ns(&st);
        let space = Arc::new(super::quota::Space::new(settings.limits.clone()));
        Ok(Self {
            space,
            name: name.to_owned(),
            path: path.to_owned(),
            settings,
            root,
            fence,
            tmp,
            uploads,
            xattrs,
            local,
            read_only,
            tmpfile: std::sync::atomic::AtomicBool::new(tmpfile),
            created_ns,
            intact: std::sync::atomic::AtomicBool::new(true),
            mount_root,
            fs_read_only,
            gate: Arc::new(tokio::sync::Semaphore::new(BLOCKING_PER_VOLUME)),
            stalled: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Runs [`Volume::internal_intact`] (blocking) and records the verdict; returns it
    /// and whether it changed. While the internal directory is not the one this volume
    /// opened (a pod renamed it, so keys under the new name would reach its staging), the
    /// volume answers 503 ServiceUnavailable, until it is put back.
    pub fn check_internal(&self) -> (bool, bool) {
        let now = self.internal_intact();
        let before = self.intact.swap(now, std::sync::atomic::Ordering::AcqRel);
        (now, now != before)
    }

    /// False while the last check found the internal directory replaced.
    pub fn is_intact(&self) -> bool {
        self.intact.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True while temp files may be `O_TMPFILE` files (see the field `tmpfile`).
    pub(super) fn tmpfile(&self) -> bool {
        self.tmpfile.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops using `O_TMPFILE` on this volume for the rest of the process: a link the file
    /// system accepted did not name the file (`why`, for the log). Logged once.
    pub(super) fn distrust_tmpfile(&self, why: &str) {
        if self.tmpfile.swap(false, std::sync::atomic::Ordering::AcqRel) {
            warn!(volume = %self.name, why, "the file system accepted O_TMPFILE and linkat but did not honour them: using named temp files from now on");
        }
    }

    /// Records that work on this volume overran its deadline (`true`) or that a check
    /// completed (`false`); returns the previous value.
    pub fn set_stalled(&self, stalled: bool) -> bool {
        self.stalled.swap(stalled, std::sync::atomic::Ordering::AcqRel)
    }

    /// True while work on this volume overran its deadline and no check has completed since.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Served now: the internal directory is the one opened and the file system answers.
    pub fn is_servable(&self) -> bool {
        self.is_intact() && !self.is_stalled()
    }

    /// The configured path still leads to the directory this volume opened (same
    /// `(st_dev, st_ino)` as the root handle). Fails when the directory was removed,
    /// renamed away, replaced, mounted over, or its mount was (lazily) unmounted: the root
    /// handle then points into a tree nobody else sees, and nothing may be written there.
    ///
    /// Errors: [`Error::Unavailable`] (and the liveness check is woken). Blocking: one statx.
    pub fn check_path(&self) -> Result<()> {
        match mount_state_path(&self.path) {
            Ok(m) if m.id == self.fence.root => Ok(()),
            _ => {
                RECHECK.notify_one();
                Err(Error::Unavailable)
            }
        }
    }

    /// The file system is mounted read-only now (`ST_RDONLY` of the root handle), whatever
    /// it was at open. Blocking: one statvfs.
    pub fn read_only_now(&self) -> bool {
        self.read_only || fs_read_only(self.root()).unwrap_or(false)
    }

    /// The root directory handle: the base of every lookup.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The temp directory handle (`<internal>/tmp`), on the volume's file system.
    pub fn tmp_dir(&self) -> BorrowedFd<'_> {
        self.tmp.as_fd()
    }

    /// What key lookups on this volume must not enter.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Opens `path` (a key's path or an ancestor of one; `""` is the root) beneath the root
    /// with `flags`, following links that stay inside the volume and never entering the
    /// internal directory ([`resolve::open`], whose errors it returns).
    pub fn open_path(&self, path: &str, flags: OFlag) -> io::Result<OwnedFd> {
        resolve::open(self.root(), &self.fence, path, flags)
    }

    /// [`Volume::open_path`] of a directory, for reading and as a base for `*at` calls.
    pub fn open_dir_path(&self, path: &str) -> io::Result<OwnedFd> {
        self.open_path(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// Refuses the entry `name` of the open directory `dir` when it is the internal
    /// directory: `dir` is the root, reached through a link (`self/.s3vol`). Cheap: the
    /// `fstat` happens only when `name` is the internal directory's name.
    pub fn check_entry(&self, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        if self.fence.is_internal_name(name.as_bytes()) && fsx::identity(dir)? == self.fence.root {
            return Err(resolve::refusal());
        }
        Ok(())
    }

    /// The parent directory of `key`, opened with [`Volume::open_dir_path`], and the key's
    /// last segment; refused (as [`resolve::reaches_internal`]) when that segment would be
    /// the internal directory.
    pub fn open_parent<'k>(&self, key: &'k ObjectKey) -> io::Result<(OwnedFd, &'k str)> {
        let (parent, leaf) = key.split_parent();
        let dir = self.open_dir_path(parent)?;
        self.check_entry(dir.as_fd(), leaf)?;
        Ok((dir, leaf))
    }

    /// The parent directory of `key`, made when missing ([`Volume::ensure_dir`]), and the
    /// key's last segment, refused as in [`Volume::open_parent`].
    pub fn ensure_parent<'k>(&self, key: &'k ObjectKey) -> Result<(OwnedFd, &'k str)> {
        let (parent, leaf) = key.split_parent();
        let dir = self.ensure_dir(parent)?;
        self.check_entry(dir.as_fd(), leaf)?;
        Ok((dir, leaf))
    }

    /// True while the internal directory at the root, and its `tmp/` and `multipart/`, are
    /// still the directories this volume holds handles to. False when a pod renamed,
    /// removed or swapped one of them (for a link, say): s3vol keeps using its handles,
    /// which point where they always did, but `/ready` reports the volume and the sweep
    /// skips it until an operator looks.
    pub fn internal_intact(&self) -> bool {
        if self.fence.forbidden.len() != 3 {
            return true; // read-only without an internal directory: nothing to compare
        }
        let Ok(dir) = fsx::open_child_dir(self.root(), self.settings.internal_dir.as_str()) else {
            return false;
        };
        let same = |fd: &OwnedFd, i: usize| fsx::identity(fd.as_fd()).is_ok_and(|id| id == self.fence.forbidden[i]);
        same(&dir, 0)
            && ["tmp", "multipart"]
                .iter()
                .enumerate()
                .all(|(i, sub)| fsx::open_child_dir(dir.as_fd(), sub).is_ok_and(|fd| same(&fd, i + 1)))
    }

    /// Validates a client key for this volume. On a volume whose root is a mount root, a
    /// key under `lost+found` is refused like one under the internal directory: it is
    /// fsck's, not an object (and nothing may be written there).
    pub fn key(&self, key: &str) -> Result<ObjectKey> {
        let k = ObjectKey::parse(key, &self.settings.internal_dir)?;
        if self.mount_root && k.path().split('/').next() == Some(LOST_FOUND) {
            return Err(Error::InvalidKey("the key names the file system's lost+found directory"));
        }
        Ok(k)
    }

    /// Refuses writes on a read-only volume, and on one whose path no longer leads to the
    /// directory it opened ([`Volume::check_path`]: never a write into a detached tree).
    pub fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_path()
    }

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

    /// Capacity, free, used and quota of the volume, for the status view.
    pub fn space_report(&self) -> Result<super::quota::SpaceReport> {
        self.space.report(self.root())
    }
}

/// How many times [`Volume::ensure_dir`] walks again after a concurrent delete removed a
/// directory under it.
const ENSURE_DIR_RETRIES: usize = 16;

/// s3vol's mark on a directory it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMark {
    /// Created as a parent of a key: removed again when it becomes empty.
    Auto,
    /// Created or claimed by a `k/` PUT: a directory object, listed even when not empty.
    Marker,
}

fn probe_xattrs(tmp: BorrowedFd<'_>) -> bool {
    let name = format!("probe-{}", random_hex(8));
    let fd = match nix::fcntl::openat(
        tmp,
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(_) => return false,
    };
    let ok = fsx::set_xattr(fd.as_fd(), meta::META_XATTR, b"{}").is_ok();
    let _ = fsx::unlink_at(tmp, &name, false);
    ok
}

/// Whether an `O_TMPFILE` file made in `tmp` can be given a name that then leads to it: a
/// byte written, linked as a probe name, the descriptor closed, the name looked up (same
/// inode, same size) and removed. False on any refusal or mismatch. The descriptor is
/// closed first because that is where JuiceFS loses such a file: while it is open the name
/// works; its release removes the file, which the file system never recorded as linked.
fn probe_tmpfile(tmp: BorrowedFd<'_>) -> bool {
    let Ok(fd) = nix::fcntl::openat(
        tmp,
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) else {
        return false;
    };
    if nix::unistd::write(&fd, b"p") != Ok(1) {
        return false;
    }
    let name = format!("probe-{}", random_hex(8));
    if fsx::link_tmpfile(fd.as_fd(), tmp, &name).is_err() {
        return false;
    }
    let Ok(ours) = fsx::identity(fd.as_fd()) else { return false };
    drop(fd);
    let ok =
        fsx::lstat_at(tmp, name.as_ref()).is_ok_and(|st| (st.st_dev, st.st_ino, st.st_size) == (ours.0, ours.1, 1));
    let _ = fsx::unlink_at(tmp, &name, false);
    ok
}

fn probe_xattrs_read(root: BorrowedFd<'_>) -> bool {
    match fsx::get_xattr(root, DIR_XATTR) {
        Ok(_) => true,
        Err(e) => !fsx::is_xattr_unsupported(&e),
    }
}

/// How objects are opened for reading: `O_NONBLOCK` so that a FIFO swapped in can never
/// block the open.
const READ_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_NONBLOCK).union(OFlag::O_NOCTTY);

/// The store error for a failed open of an object: a parent that is a file, a special file,
/// or a path into the internal directory is no such key (reads see nothing of it).
fn open_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOTDIR | libc::ENXIO) => Error::NotFound,
        _ if resolve::reaches_internal(&e) => Error::NotFound,
        _ => e.into(),
    }
}

/// Why the internal directory (or one of its subdirectories) cannot be used.
enum InternalError {
    Link,
    NotDir,
    Io(io::Error),
}

impl InternalError {
    fn shown(&self, at: &str) -> String {
        match self {
            InternalError::Link => format!(
                "{at} is a symbolic link: s3vol refuses to use an internal directory it does not own (remove the link)"
            ),
            InternalError::NotDir => format!("{at} is not a directory"),
            InternalError::Io(e) => format!("cannot open {at}: {e}"),
        }
    }
}

/// Makes (when missing and the volume is writable) and opens the directory `name` of
/// `parent`, never following a link. `Ok(None)`: missing on a read-only volume. Sets
/// `read_only` when the file system refuses the `mkdir` for lack of write access.
fn open_or_make(
    parent: BorrowedFd<'_>,
    name: &str,
    read_only: &mut bool,
) -> std::result::Result<Option<OwnedFd>, InternalError> {
    match fsx::mkdir_at(parent, name, 0o700) {
        // EEXIST also for a link of that name, dangling or not: mkdirat never follows the
        // last component.
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS | libc::EACCES | libc::EPERM)) => *read_only = true,
        Err(e) => return Err(InternalError::Io(e)),
    }
    match fsx::open_child_dir(parent, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && *read_only => Ok(None),
        Err(e) => Err(match fsx::lstat_at(parent, name.as_ref()).map(|st| st.st_mode & libc::S_IFMT) {
            Ok(libc::S_IFLNK) => InternalError::Link,
            Ok(m) if m != libc::S_IFDIR => InternalError::NotDir,
            _ => InternalError::Io(e),
        }),
    }
}

/// True when looking up `name` with its ASCII letters' case swapped also finds the
/// directory `id` in `root`: the root's lookups ignore case (vfat, CIFS, ext4 casefold).
fn folds_case(root: BorrowedFd<'_>, name: &str, id: (u64, u64)) -> bool {
    let swapped: String = name
        .chars()
        .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect();
    swapped != name && fsx::lstat_at(root, swapped.as_ref()).is_ok_and(|st| (st.st_dev, st.st_ino) == id)
}

/// `fd` with its `fstat` when it is a regular file; `NotFound` otherwise.
fn regular(fd: OwnedFd) -> Result<(OwnedFd, FileStat)> {
    let st = fsx::fstat(fd.as_fd())?;
    if !fsx::is_regular(&st) {
        return Err(Error::NotFound);
    }
    Ok((fd, st))
}

/// True when `path` is a mount point now: the root of a mounted file system (statx's
/// `STATX_ATTR_MOUNT_ROOT`, Linux 5.8; before that, a device differing from the parent's).
/// A bind mount of a directory of the same file system counts too. Blocking.
pub(super) fn is_mount_point(path: &Path) -> bool {
    mount_state_path(path).is_ok_and(|m| m.mount_root)
}

/// What statx says about a directory: its identity and whether it is a mount root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MountState {
    /// `(st_dev, st_ino)`, comparable with [`fsx::identity`].
    pub id: (u64, u64),
    /// The root of a mount.
    pub mount_root: bool,
}

/// [`MountState`] of `path` (links followed, as the volume's own open follows them).
pub(super) fn mount_state_path(path: &Path) -> io::Result<MountState> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    statx_mount(libc::AT_FDCWD, &c, 0).or_else(|e| {
        // Without statx (old kernels, some sandboxes): the device/inode guess.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata(path)?;
        let parent = std::fs::metadata(path.join(".."))?;
        Ok(MountState { id: (me.dev(), me.ino()), mount_root: me.dev() != parent.dev() || me.ino() == parent.ino() })
    })
}

/// [`MountState`] of an open directory.
pub(super) fn mount_state_fd(fd: BorrowedFd<'_>) -> io::Result<MountState> {
    use std::os::fd::AsRawFd;
    statx_mount(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn statx_mount(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<MountState> {
    // SAFETY: `stx` is plain data the kernel fills in; `path` is a valid C string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statx(dirfd, path.as_ptr(), flags, libc::STATX_INO, &mut stx) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & bit == 0 {
        // A kernel before 5.8 does not report the attribute.
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(MountState { id: (dev, stx.stx_ino), mount_root: stx.stx_attributes & bit != 0 })
}

/// The file system's `ST_RDONLY` flag (statvfs of an open handle).
fn fs_read_only(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let vfs = nix::sys::statvfs::fstatvfs(fd)?;
    Ok(vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// `n` random bytes as lower-case hex (temp names, upload ids, dev keys).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    meta::hex_lower(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("s3vol-vol-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn an_internal_directory_that_is_a_link_refuses_the_volume_and_creates_nothing_outside() {
        let base = scratch("intlink");
        let (vol, outside) = (base.join("vol"), base.join("outside"));
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // .s3vol -> outside, -> a missing directory outside, -> a directory inside the volume.
        for target in [outside.clone(), base.join("missing"), vol.join("data")] {
            let _ = std::fs::create_dir(vol.join("data"));
            std::os::unix::fs::symlink(&target, vol.join(".s3vol")).unwrap();
            let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
            assert!(err.contains("symbolic link"), "{err}");
            std::fs::remove_file(vol.join(".s3vol")).unwrap();
        }
        // .s3vol/tmp or .s3vol/multipart a link.
        for sub in ["tmp", "multipart"] {
            std::fs::create_dir_all(vol.join(".s3vol")).unwrap();
            std::os::unix::fs::symlink(&outside, vol.join(".s3vol").join(sub)).unwrap();
            let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
            assert!(err.contains(&format!(".s3vol/{sub} is a symbolic link")), "{err}");
            std::fs::remove_dir_all(vol.join(".s3vol")).unwrap();
        }
        // A file where the internal directory should be.
        std::fs::write(vol.join(".s3vol"), b"").unwrap();
        let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing created outside");
        assert!(!base.join("missing").exists());
        assert_eq!(std::fs::read_dir(vol.join("data")).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn delete_bucket_removes_links_in_the_internal_directory_not_their_targets() {
        let base = scratch("delbucket");
        let (root, outside) = (base.join("volumes"), base.join("outside"));
        std::fs::create_dir_all(root.join("bkt")).unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("sub/keep.txt"), b"keep").unwrap();
        let vols = Volumes::open(vec![], Some((root.clone(), VolumeSettings::default())));
        assert!(vols.get("bkt").is_ok());
        let internal = root.join("bkt/.s3vol");
        // A pod plants links to the outside at every level s3vol removes.
        std::os::unix::fs::symlink(&outside, internal.join("tmp/out")).unwrap();
        std::fs::create_dir_all(internal.join("multipart/0123456789abcdef0123456789abcdef")).unwrap();
        std::os::unix::fs::symlink(&outside, internal.join("multipart/0123456789abcdef0123456789abcdef/x")).unwrap();
        std::os::unix::fs::symlink(outside.join("sub"), internal.join("sub")).unwrap();
        vols.delete("bkt").unwrap();
        assert!(!root.join("bkt").exists());
        assert_eq!(std::fs::read(outside.join("sub/keep.txt")).unwrap(), b"keep");

        // Deeper than s3vol's own shape: left in place, and the bucket is not empty.
        std::fs::create_dir_all(root.join("bk2")).unwrap();
        let vols = Volumes::open(vec![], Some((root.clone(), VolumeSettings::default())));
        std::fs::create_dir_all(root.join("bk2/.s3vol/multipart/u/deeper")).unwrap();
        assert!(matches!(vols.delete("bk2"), Err(Error::BucketNotEmpty)));
        assert!(root.join("bk2/.s3vol/multipart/u/deeper").is_dir());

        // The bucket's name now holds a link to another directory: refused, nothing removed.
        std::fs::remove_dir_all(root.join("bk2/.s3vol/multipart/u")).unwrap();
        std::fs::rename(root.join("bk2"), base.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("bk2")).unwrap();
        assert!(matches!(vols.delete("bk2"), Err(Error::Unavailable)));
        assert!(outside.join("sub/keep.txt").exists() && base.join("moved/.s3vol").is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn keys_through_links_never_reach_the_internal_directory() {
        let root = scratch("keys");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f.txt"), b"hello").unwrap();
        let vol = Arc::new(Volume::open("t", &root, VolumeSettings::default()).unwrap());
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        std::os::unix::fs::symlink(".s3vol", root.join("link")).unwrap();
        std::fs::write(root.join(".s3vol/tmp/planted"), b"internal").unwrap();
        // A link that stays inside and away from it still works.
        assert_eq!(vol.head(&vol.key("self/d/f.txt").unwrap()).unwrap().size, 5);
        for k in ["self/.s3vol/tmp/planted", "link/tmp/planted", "self/.s3vol/tmp/", "link/"] {
            let key = vol.key(k).unwrap();
            assert!(matches!(vol.head(&key), Err(Error::NotFound)), "{k}");
        }
        for k in ["self/.s3vol/tmp/planted", "link/tmp/planted", "self/.s3vol/", "link/tmp/"] {
            let key = vol.key(k).unwrap();
            assert!(matches!(vol.delete(&key), Err(Error::InternalDir)), "{k}");
        }
        for k in ["self/.s3vol/new/", "link/new/", "self/.s3vol/"] {
            let key = vol.key(k).unwrap();
            assert!(matches!(vol.put_marker(&key), Err(Error::InternalDir)), "{k}");
        }
        assert!(matches!(
            crate::store::write::Writer::begin(vol.clone(), vol.key("self/.s3vol").unwrap(), 1),
            Err(Error::InternalDir)
        ));
        assert_eq!(std::fs::read(root.join(".s3vol/tmp/planted")).unwrap(), b"internal");
        let names = |p: &str| {
            let mut v: Vec<String> = std::fs::read_dir(root.join(p))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(".s3vol"), ["multipart", "tmp"]);
        assert_eq!(names(".s3vol/tmp"), ["planted"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_removed_renamed_or_recreated_directory_is_noticed_by_the_check() {
        let base = scratch("live");
        let (dir, moved) = (base.join("vol"), base.join("moved"));
        std::fs::create_dir_all(&dir).unwrap();
        let vols = Volumes::open(vec![("v".into(), dir.clone(), VolumeSettings::default())], None);
        let first = vols.get("v").unwrap();
        assert_eq!(vols.check("v"), None, "nothing changed");
        std::fs::rename(&dir, &moved).unwrap();
        // Writes are refused at once, before any check.
        assert!(matches!(first.check_writable(), Err(Error::Unavailable)));
        assert!(matches!(vols.check("v"), Some(Transition::Unavailable(_))));
        assert!(matches!(vols.get("v"), Err(Error::Unavailable)));
        assert_eq!(vols.check("v"), None, "still gone: no new transition");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(vols.check("v"), Some(Transition::Online { read_only: false }));
        let second = vols.get("v").unwrap();
        assert!(!Arc::ptr_eq(&first, &second) && second.check_writable().is_ok());
        assert!(dir.join(".s3vol/tmp").is_dir(), "a new internal directory");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn statx_tells_mount_roots_from_plain_directories() {
        assert!(is_mount_point(Path::new("/")) && is_mount_point(Path::new("/proc")));
        let dir = scratch("statx");
        let m = mount_state_path(&dir).unwrap();
        assert!(!m.mount_root);
        let fd = nix::fcntl::open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
        assert_eq!(m.id, fsx::identity(fd.as_fd()).unwrap());
        assert_eq!(mount_state_fd(fd.as_fd()).unwrap(), m);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn head_cached_agrees_with_head_or_defers_to_it() {
        let root = std::env::temp_dir().join(format!("s3vol-headc-{}", std::process::id()));
        let outside = std::env::temp_dir().join(format!("s3vol-headc-out-{}", std::process::id()));
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f.txt"), b"hello").unwrap();
        std::fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d/out")).unwrap();
        let vol = Volume::open("t", &root, VolumeSettings::default()).unwrap();
        assert!(vol.local, "the tests' temp directory is on a local file system");

        let key = vol.key("d/f.txt").unwrap();
        let slow = vol.head(&key).unwrap();
        // Just looked up, so every component is cached: answered on this thread.
        let fast = vol.head_cached(&key).expect("cached lookup").unwrap();
        assert_eq!((fast.size, fast.mtime_ns, &fast.meta.etag), (slow.size, slow.mtime_ns, &slow.meta.etag));

        // Missing keys, parents that are files, links out of the volume, directories: the
        // same refusal as head(), or a deferral to it, never an answer head() would not give.
        for k in ["d/missing", "d/f.txt/x", "d/out", "d"] {
            let key = vol.key(k).unwrap();
            let slow = vol.head(&key).map(|i| i.size).map_err(|e| e.to_string());
            assert!(slow.is_err(), "{k}: {slow:?}");
            if let Some(fast) = vol.head_cached(&key) {
                assert_eq!(fast.map(|i| i.size).map_err(|e| e.to_string()), slow, "{k}");
            }
        }
        // Directory markers always take the blocking path.
        assert!(vol.head_cached(&vol.key("d/").unwrap()).is_none());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(&outside).unwrap();
    }
}
