//! The registry of volumes: every configured (or, in `volumes_root` mode, discovered)
//! volume with its state, CreateBucket/DeleteBucket, and the liveness check that notices a
//! volume removed, renamed, remounted or unmounted and opens it again.

use super::*;
use crate::store::key::BucketName;

/// The set of volumes this daemon serves, by bucket name.
#[derive(Debug)]
pub struct Volumes {
    map: RwLock<BTreeMap<String, Entry>>,
    /// `volumes_root` mode: the parent directory whose subdirectories are volumes.
    root_dir: Option<(PathBuf, VolumeSettings)>,
}

/// One configured volume: its state and what it takes to open it again.
#[derive(Debug, Clone)]
struct Entry {
    state: VolumeState,
    path: PathBuf,
    settings: VolumeSettings,
    /// Served only while the path is a mount point: `require_mount`, or the volume was a
    /// mount root when last opened (its mount going away must not expose the directory
    /// beneath it, typically empty, as the bucket).
    needs_mount: bool,
}

impl Entry {
    /// Opens the volume at `path`; `root`: its directory already open (CreateBucket opens
    /// the directory it made from the handle of `volumes_root`, never by its path).
    fn new(name: &str, path: PathBuf, settings: VolumeSettings, root: Option<OwnedFd>) -> Self {
        let needs_mount = settings.require_mount;
        let state = open_state(name, &path, settings.clone(), needs_mount, true, root);
        let mut e = Self { state, path, settings, needs_mount };
        e.note_mount();
        e
    }

    fn note_mount(&mut self) {
        if let VolumeState::Online(v) = &self.state {
            self.needs_mount |= v.mount_root;
        }
    }
}

/// What a liveness check ([`Volumes::check`]) changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Served again (or for the first time), from the directory now at its path.
    Online { read_only: bool },
    /// Not served any more, with the reason.
    Unavailable(String),
}

impl Volumes {
    /// Opens each configured `(name, path, settings)`; failures are reported (logged) and
    /// the volume answers 503 instead of serving an empty directory.
    pub fn open(explicit: Vec<(String, PathBuf, VolumeSettings)>, root_dir: Option<(PathBuf, VolumeSettings)>) -> Self {
        let mut map = BTreeMap::new();
        for (name, path, settings) in explicit {
            let entry = Entry::new(&name, path, settings, None);
            map.insert(name, entry);
        }
        let vols = Self { map: RwLock::new(map), root_dir };
        vols.rescan();
        vols
    }

    /// In `volumes_root` mode, picks up subdirectories made since the last scan (another
    /// node's CreateBucket) and drops ones that are gone. Blocking (`read_dir`, and opening
    /// each new volume: `mkdir` of its internal directory, `statvfs`): run it on the
    /// blocking pool.
    pub fn rescan(&self) {
        let Some((dir, settings)) = &self.root_dir else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            warn!(path = %dir.display(), "cannot read volumes_root");
            return;
        };
        let mut seen = Vec::new();
        for ent in rd.flatten() {
            let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !ent.file_type().is_ok_and(|t| t.is_dir()) || !BucketName::is_valid(&name) {
                continue;
            }
            seen.push(name.clone());
            if self.map.read().unwrap().contains_key(&name) {
                continue;
            }
            let entry = Entry::new(&name, ent.path(), settings.clone(), None);
            self.map.write().unwrap().insert(name, entry);
        }
        self.map.write().unwrap().retain(|name, _| seen.contains(name));
    }

    /// The volume named `bucket`: [`Error::NoSuchBucket`] when unknown, [`Error::Unavailable`]
    /// when configured but not servable now. Never touches the file system (it runs on the
    /// async threads): a bucket another node made since the last scan is found by
    /// [`Volumes::rescan`] first, on the blocking pool, when [`Volumes::may_discover`] says so.
    pub fn get(&self, bucket: &str) -> Result<Arc<Volume>> {
        match self.map.read().unwrap().get(bucket).map(|e| &e.state) {
            Some(VolumeState::Online(v)) if v.is_servable() => Ok(v.clone()),
            // Found by a scan but not servable (its internal directory is a link, say): 503
            // from the first request on, as on every later one.
            Some(VolumeState::Online(_) | VolumeState::Unavailable(..)) => Err(Error::Unavailable),
            None => Err(Error::NoSuchBucket),
        }
    }

    /// Looks for one bucket `name` in `volumes_root` (one `lstat`, not a scan of the whole
    /// directory, so requests naming unknown buckets cost one lookup each) and adds it when
    /// it is a directory there. Blocking: run it on the blocking pool.
    pub fn discover(&self, name: &str) {
        let Some((dir, settings)) = &self.root_dir else {
            return;
        };
        if !BucketName::is_valid(name) || self.map.read().unwrap().contains_key(name) {
            return;
        }
        let path = dir.join(name);
        // Not followed, as a scan's directory entries are not: a link is no volume.
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return;
        }
        let entry = Entry::new(name, path, settings.clone(), None);
        self.map.write().unwrap().entry(name.to_owned()).or_insert(entry);
    }

    /// True when `bucket` is unknown but could be a directory of `volumes_root` made since
    /// the last scan (a valid bucket name in `volumes_root` mode): a [`Volumes::rescan`]
    /// before answering NoSuchBucket may find it. No file-system access.
    pub fn may_discover(&self, bucket: &str) -> bool {
        self.root_dir.is_some() && BucketName::is_valid(bucket) && !self.map.read().unwrap().contains_key(bucket)
    }

    /// Every volume with its state, by name, after a [`Volumes::rescan`] (blocking: run
    /// it on the blocking pool).
    pub fn all(&self) -> Vec<(String, VolumeState)> {
        self.rescan();
        self.map.read().unwrap().iter().map(|(k, e)| (k.clone(), e.state.clone())).collect()
    }

    /// The names of every volume (no rescan, no file-system access).
    pub fn names(&self) -> Vec<String> {
        self.map.read().unwrap().keys().cloned().collect()
    }

    /// The liveness check of one volume (blocking; run on the blocking pool, one volume
    /// per task, so a hung file system stalls only its own check). Returns what changed.
    ///
    /// A served volume is opened again (a new root handle, internal directory and xattr
    /// probe) when its path leads to another directory than the one it holds (removed and
    /// re-created, mounted over) or its file system's read-only flag changed (remounted);
    /// it becomes unavailable (503) when its path leads nowhere (removed, renamed away), or
    /// not to a mount point while one is needed ([`Entry::needs_mount`]: unmounted, also
    /// lazily). An unavailable volume is opened again at every check until it succeeds.
    /// The internal directory is checked as by [`Volume::check_internal`] (no re-open: a
    /// renamed internal directory is the operator's to put back).
    pub fn check(&self, name: &str) -> Option<Transition> {
        let entry = self.map.read().unwrap().get(name)?.clone();
        let reopen = match &entry.state {
            VolumeState::Online(v) => {
                let changed = match mount_state_path(&entry.path) {
                    Err(_) => true,
                    Ok(m) => m.id != v.fence.root || fs_read_only(v.root()).is_ok_and(|ro| ro != v.fs_read_only),
                };
                if !changed {
                    let (intact, flipped) = v.check_internal();
                    v.set_stalled(false);
                    return flipped.then(|| {
                        if intact {
                            Transition::Online { read_only: v.read_only }
                        } else {
                            Transition::Unavailable("the internal directory was renamed, removed or replaced".into())
                        }
                    });
                }
                true
            }
            VolumeState::Unavailable(..) => true,
        };
        debug_assert!(reopen);
        let next = open_state(name, &entry.path, entry.settings.clone(), entry.needs_mount, false, None);
        let transition = match (&entry.state, &next) {
            (VolumeState::Unavailable(old, _), VolumeState::Unavailable(new, _)) if old == new => return None,
            (_, VolumeState::Unavailable(why, _)) => Transition::Unavailable(why.clone()),
            (_, VolumeState::Online(v)) => Transition::Online { read_only: v.read_only },
        };
        let mut map = self.map.write().unwrap();
        let slot = map.get_mut(name)?;
        // Replaced meanwhile (CreateBucket, DeleteBucket, another check): leave it.
        let same = match (&slot.state, &entry.state) {
            (VolumeState::Online(a), VolumeState::Online(b)) => Arc::ptr_eq(a, b),
            (VolumeState::Unavailable(a, _), VolumeState::Unavailable(b, _)) => a == b,
            _ => false,
        };
        if !same {
            return None;
        }
        slot.state = next;
        slot.note_mount();
        Some(transition)
    }

    /// Marks the served volume `name` stalled ([`Volume::set_stalled`]): its liveness check
    /// has not returned within the deadline. True when this changed it.
    pub fn mark_stalled(&self, name: &str) -> bool {
        match self.map.read().unwrap().get(name).map(|e| &e.state) {
            Some(VolumeState::Online(v)) => !v.set_stalled(true),
            _ => false,
        }
    }

    /// True in `volumes_root` mode (CreateBucket/DeleteBucket allowed).
    pub fn is_root_mode(&self) -> bool {
        self.root_dir.is_some()
    }

    /// CreateBucket in `volumes_root` mode: makes the directory and serves it.
    ///
    /// The directory is made with `mkdirat` from a handle of `volumes_root` and opened
    /// `O_NOFOLLOW` from that handle: the volume served is the directory made, even when a
    /// pod swaps the name for a link at once. (Its path is kept for logs and the liveness
    /// check, which then finds the link and reopens or refuses the volume.)
    ///
    /// Errors: [`Error::PermissionDenied`] outside `volumes_root` mode;
    /// [`Error::BucketExists`] when the name is taken (by anything: a file, a link);
    /// file-system errors.
    pub fn create(&self, bucket: &BucketName) -> Result<()> {
        let Some((dir, settings)) = &self.root_dir else {
            return Err(Error::PermissionDenied);
        };
        let parent = open_volumes_root(dir)?;
        // 0o777 less the umask, as `mkdir(2)` of a shell would make it.
        match fsx::mkdir_at(parent.as_fd(), bucket.as_str(), 0o777) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(Error::BucketExists),
            Err(e) => return Err(e.into()),
        }
        let root = fsx::open_child_dir(parent.as_fd(), bucket.as_str())?;
        let entry = Entry::new(bucket.as_str(), dir.join(bucket.as_str()), settings.clone(), Some(root));
        self.map.write().unwrap().insert(bucket.as_str().to_owned(), entry);
        Ok(())
    }

    /// DeleteBucket in `volumes_root` mode: removes the directory only when it holds no
    /// object (its internal directory aside). Never a recursive delete of user data.
    ///
    /// Everything goes through handles: the bucket directory is opened `O_NOFOLLOW` from a
    /// handle of `volumes_root` and must be the very directory this volume serves; the
    /// internal directory is emptied with [`fsx::remove_tree_at`], which never follows a
    /// link, so a directory a pod swaps for a link at any moment removes the link, never
    /// what it points to. The internal directory is removed only in the shape s3vol gives
    /// it (`.s3vol/multipart/<id>/<file>`, three levels): anything deeper was not put there
    /// by s3vol, stays, and makes the bucket not empty.
    ///
    /// Errors: [`Error::BucketNotEmpty`]; [`Error::Unavailable`] when the directory at the
    /// bucket's name is no longer the one served; file-system errors.
    pub fn delete(&self, bucket: &str) -> Result<()> {
        let Some((dir, _)) = &self.root_dir else {
            return Err(Error::PermissionDenied);
        };
        let vol = self.get(bucket)?;
        let parent = open_volumes_root(dir)?;
        let here = fsx::open_child_dir(parent.as_fd(), bucket)
            .map_err(|e| if fsx::is_absent(&e) { Error::Unavailable } else { e.into() })?;
        if fsx::identity(here.as_fd())? != vol.fence.root {
            warn!(volume = bucket, "DeleteBucket: the directory at the bucket's name is not the one served");
            return Err(Error::Unavailable);
        }
        drop(here);
        let internal = vol.settings.internal_dir.clone();
        let entries = fsx::read_dir(vol.root())?;
        if entries.iter().any(|e| e.name != internal.as_bytes()) {
            return Err(Error::BucketNotEmpty);
        }
        // Only staging remains: it may hold abandoned uploads, which go with the bucket.
        match fsx::remove_tree_at(vol.root(), &internal, INTERNAL_DEPTH) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                return Err(Error::BucketNotEmpty);
            }
            Err(e) => return Err(e.into()),
        }
        drop(vol);
        fsx::unlink_at(parent.as_fd(), bucket, true).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST) => Error::BucketNotEmpty,
            _ => e.into(),
        })?;
        self.map.write().unwrap().remove(bucket);
        Ok(())
    }
}

/// The handle of `volumes_root` that CreateBucket and DeleteBucket work from.
fn open_volumes_root(dir: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?)
}

/// Directory levels of the internal directory s3vol makes: `.s3vol`, `multipart`, an upload.
const INTERNAL_DEPTH: usize = 3;

/// Opens a volume for the registry; `needs_mount`: refused unless `path` is a mount point.
/// `log`: report the outcome (at start; the liveness check logs only changes). `root`: the
/// directory already open (else it is opened by `path`).
fn open_state(
    name: &str,
    path: &Path,
    settings: VolumeSettings,
    needs_mount: bool,
    log: bool,
    root: Option<OwnedFd>,
) -> VolumeState {
    if needs_mount && !settings.require_mount && !is_mount_point(path) {
        let reason = format!("{} is not a mount point any more (it was one when last served)", path.display());
        return VolumeState::Unavailable(reason, path.to_owned());
    }
    let opened = match root {
        Some(root) => Volume::open_root(name, path, root, settings),
        None => Volume::open(name, path, settings),
    };
    match opened {
        Ok(v) => {
            if v.read_only && log {
                warn!(volume = name, "the volume is read-only: served for reads only");
            }
            let v = Arc::new(v);
            crate::store::scan::spawn_scanner(Arc::downgrade(&v));
            VolumeState::Online(v)
        }
        Err(reason) => {
            if log {
                warn!(volume = name, %reason, "volume unavailable: it answers 503 ServiceUnavailable");
            }
            VolumeState::Unavailable(reason, path.to_owned())
        }
    }
}
