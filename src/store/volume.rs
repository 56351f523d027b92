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
mod lookup;
mod mount;
mod policy;
mod probe;
mod registry;
mod settings;
#[cfg(test)]
mod tests;

pub use registry::{Transition, Volumes};
pub use settings::{DEFAULT_MAX_PART_SIZE, VolumeSettings};

use lookup::{READ_FLAGS, open_error};
pub(super) use mount::is_mount_point;
use mount::{fs_read_only, mount_state_fd, mount_state_path};
use probe::{folds_case, open_or_make, probe_tmpfile, probe_xattrs, probe_xattrs_read};

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
        Self::open_root(name, path, root, settings)
    }

    /// [`Volume::open`] of a directory already open as `root` (CreateBucket opens the
    /// directory it made from a handle, never by `path`, which is kept for logs and checks).
    pub fn open_root(
        name: &str,
        path: &Path,
        root: OwnedFd,
        settings: VolumeSettings,
    ) -> std::result::Result<Self, String> {
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

/// `n` random bytes as lower-case hex (temp names, upload ids, dev keys).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    meta::hex_lower(&b)
}
