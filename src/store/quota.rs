//! Capacity and quota (SPEC.md "Capacity and quota").
//!
//! A write is admitted before any byte is read when its declared size fits: in the file
//! system's free space (statvfs) minus what in-flight writes of this daemon will still
//! write, and in the volume's quota minus its usage and what in-flight writes declared.
//! A [`Reservation`] holds that room until the write ends (committed or dropped).
//!
//! Usage under a quota is measured by the volume's background scan ([`super::scan`]) at
//! start and periodically (pods write directly too), and kept current between scans as
//! s3vol itself writes and deletes. Staged multipart parts count: they live on the volume.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Error, Result};

/// Room kept free beyond a write's declared size, for metadata and indirect blocks.
const SAFETY_MARGIN: u64 = 64 * 1024;

/// Per-volume limits from the config.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Bytes the volume's objects (and staged parts) may use; `None`: only the file system limits.
    pub quota: Option<u64>,
    /// Largest object (or part) accepted, bytes (`EntityTooLarge` above).
    pub max_object_size: Option<u64>,
    /// Content types accepted on PUT; empty: any.
    pub allowed_content_types: Vec<String>,
    /// Seconds from the end of one scan of the volume to the start of the next
    /// ([`super::scan`]: object counts, and the usage a quota is judged on).
    pub rescan_secs: u64,
    /// Directory entries the scan reads per second at most; 0: no limit.
    pub scan_rate: u64,
}

/// A volume's space accounting.
#[derive(Debug, Default)]
pub struct Space {
    pub limits: Limits,
    inflight: Mutex<Inflight>,
    /// Bytes of regular files on the volume (only tracked under a quota).
    used: AtomicI64,
    /// A usage walk has finished at least once.
    measured: AtomicBool,
    /// Object counts and scan progress ([`super::scan`]).
    pub census: super::scan::Census,
}

#[derive(Debug, Default)]
struct Inflight {
    /// Sum of declared sizes of in-flight writes (counts against the quota).
    declared: u64,
    /// Sum of bytes in-flight writes have yet to write (counts against free space).
    remaining: u64,
    /// Number of in-flight writes.
    count: u64,
}

/// What the status view shows for a volume (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceReport {
    /// File-system size.
    pub capacity: u64,
    /// File-system free space available to s3vol (statvfs `f_bavail`).
    pub free: u64,
    /// Bytes used by the volume's files, when measured (quota'd volumes), else
    /// capacity minus free.
    pub used: u64,
    /// The configured quota.
    pub quota: Option<u64>,
    /// Declared bytes of in-flight writes.
    pub reserved: u64,
    /// In-flight writes.
    pub inflight_writes: u64,
}

impl Space {
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Admits a write of `declared` bytes on the volume whose root is `root`.
    ///
    /// Errors: [`Error::EntityTooLarge`] over `max_object_size`; [`Error::QuotaExceeded`]
    /// when the quota cannot hold it; [`Error::NoSpace`] when the file system cannot.
    pub fn reserve(self: &Arc<Self>, root: BorrowedFd<'_>, declared: u64) -> Result<Reservation> {
        self.reserve_replacing(root, declared, 0)
    }

    /// [`Space::reserve`] for a write that replaces an object of `replacing` bytes: under a
    /// quota it needs only the growth (the old object's bytes go when it commits); free
    /// space is still judged on the whole size (both files exist until the rename).
    pub fn reserve_replacing(
        self: &Arc<Self>,
        root: BorrowedFd<'_>,
        declared: u64,
        replacing: u64,
    ) -> Result<Reservation> {
        if self.limits.max_object_size.is_some_and(|max| declared > max) {
            return Err(Error::EntityTooLarge);
        }
        let (free, total) = statvfs(root)?;
        let mut inf = self.inflight.lock().unwrap();
        if let Some(quota) = self.limits.quota {
            let used = self.used.load(Ordering::Relaxed).max(0) as u64;
            let growth = declared.saturating_sub(replacing);
            if used.saturating_add(inf.declared).saturating_add(growth) > quota {
                return Err(Error::QuotaExceeded);
            }
        }
        let need = declared.saturating_add(declared / 256).saturating_add(SAFETY_MARGIN);
        // A file system that reports no size (ramfs, some FUSE mounts) cannot be checked
        // up front; ENOSPC during the write still answers 507.
        if total > 0 && need > free.saturating_sub(inf.remaining) {
            return Err(Error::NoSpace);
        }
        inf.declared += declared;
        inf.remaining += declared;
        inf.count += 1;
        Ok(Reservation { space: self.clone(), declared, remaining: declared, replacing })
    }

    /// Admits `extra` more bytes into `r`, a write whose body has no declared length
    /// (`Transfer-Encoding: chunked`): judged as [`Space::reserve_replacing`] judges a
    /// declared size, on the whole room the write then holds, so that such a body meets
    /// the same `max_object_size`, quota and free space as one that declared its size
    /// (SPEC.md "Limits ... are enforced on the bytes received").
    ///
    /// Errors: as [`Space::reserve`]; `r` is unchanged then.
    pub fn grow(&self, r: &mut Reservation, root: BorrowedFd<'_>, extra: u64) -> Result<()> {
        let total = r.declared.saturating_add(extra);
        if self.limits.max_object_size.is_some_and(|max| total > max) {
            return Err(Error::EntityTooLarge);
        }
        let (free, fs_total) = statvfs(root)?;
        let mut inf = self.inflight.lock().unwrap();
        if let Some(quota) = self.limits.quota {
            let used = self.used.load(Ordering::Relaxed).max(0) as u64;
            // The object it replaces goes at the commit: only the growth past it counts.
            let others = inf.declared - r.declared;
            if used.saturating_add(others).saturating_add(total.saturating_sub(r.replacing)) > quota {
                return Err(Error::QuotaExceeded);
            }
        }
        let need = extra.saturating_add(extra / 256).saturating_add(SAFETY_MARGIN);
        if fs_total > 0 && need > free.saturating_sub(inf.remaining) {
            return Err(Error::NoSpace);
        }
        inf.declared += extra;
        inf.remaining += extra;
        r.declared = total;
        r.remaining += extra;
        Ok(())
    }

    /// Records a change of the volume's usage by s3vol itself (commit, delete, staging).
    /// A signed sum, not saturated (deltas of concurrent writes arrive out of order; see
    /// [`super::scan::Census::note`]); read clamped at 0.
    pub fn add_used(&self, delta: i64) {
        if self.limits.quota.is_some() {
            self.used.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// s3vol itself created (`count` 1), overwrote (0) or deleted (-1) an object, changing
    /// the objects' bytes by `bytes`: keeps the object counts current between scans.
    pub fn note_objects(&self, count: i64, bytes: i64) {
        self.census.note(count, bytes);
    }

    /// Replaces the usage with a fresh measurement.
    pub fn set_measured(&self, bytes: u64) {
        self.used.store(bytes as i64, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
    }

    /// Free, used and quota for the status view.
    pub fn report(&self, root: BorrowedFd<'_>) -> Result<SpaceReport> {
        let (free, capacity) = statvfs(root)?;
        let inf = self.inflight.lock().unwrap();
        let used = if self.measured.load(Ordering::Relaxed) {
            self.used.load(Ordering::Relaxed).max(0) as u64
        } else {
            capacity.saturating_sub(free)
        };
        Ok(SpaceReport {
            capacity,
            free,
            used,
            quota: self.limits.quota,
            reserved: inf.declared,
            inflight_writes: inf.count,
        })
    }

    /// True when `content_type` may be stored (no list configured, or it is on the list;
    /// parameters such as `; charset=` are ignored).
    pub fn content_type_allowed(&self, content_type: &str) -> bool {
        let allowed = &self.limits.allowed_content_types;
        let essence = content_type.split(';').next().unwrap_or("").trim();
        allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(essence))
    }
}

/// Room held for one write; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    space: Arc<Space>,
    declared: u64,
    remaining: u64,
    /// Bytes of the object this write replaces (counted once under a quota).
    replacing: u64,
}

impl Reservation {
    /// Bytes admitted for this write so far.
    pub fn admitted(&self) -> u64 {
        self.declared
    }

    /// `n` bytes reached the file system: they now show in statvfs, not in the reservation.
    pub fn consume(&mut self, n: u64) {
        let n = n.min(self.remaining);
        if n > 0 {
            self.remaining -= n;
            self.space.inflight.lock().unwrap().remaining -= n;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut inf = self.space.inflight.lock().unwrap();
        inf.declared -= self.declared;
        inf.remaining -= self.remaining;
        inf.count -= 1;
    }
}

/// (free bytes available to unprivileged users, total bytes) of the file system.
fn statvfs(root: BorrowedFd<'_>) -> Result<(u64, u64)> {
    let v = nix::sys::statvfs::fstatvfs(root)?;
    let frag = v.fragment_size();
    Ok((v.blocks_available() * frag, v.blocks() * frag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn tmp_root() -> (crate::store::scratch::Scratch, std::os::fd::OwnedFd) {
        let p = crate::store::scratch::Scratch::new("quota");
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("x"), vec![0u8; 1000]).unwrap();
        std::fs::write(p.join("a/b/y"), vec![0u8; 234]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("a/link")).unwrap();
        let fd = nix::fcntl::open(
            &*p,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        (p, fd)
    }

    #[test]
    fn quota_counts_usage_and_inflight_writes() {
        let (p, fd) = tmp_root();
        let space = Arc::new(Space::new(Limits { quota: Some(2000), ..Default::default() }));
        space.set_measured(1234);
        assert_eq!(space.report(fd.as_fd()).unwrap().used, 1234);
        let r1 = space.reserve(fd.as_fd(), 500).unwrap();
        assert!(
            matches!(space.reserve(fd.as_fd(), 300), Err(Error::QuotaExceeded)),
            "two that fit alone, not together"
        );
        drop(r1);
        let _r2 = space.reserve(fd.as_fd(), 300).unwrap();
        space.add_used(-1234);
        assert!(space.reserve(fd.as_fd(), 1500).is_ok());
        std::fs::remove_dir_all(p).unwrap();
    }

    #[test]
    fn free_space_and_size_limits() {
        let (p, fd) = tmp_root();
        let space = Arc::new(Space::new(Limits { max_object_size: Some(10), ..Default::default() }));
        assert!(matches!(space.reserve(fd.as_fd(), 11), Err(Error::EntityTooLarge)));
        let big = Arc::new(Space::new(Limits::default()));
        assert!(matches!(big.reserve(fd.as_fd(), u64::MAX / 2), Err(Error::NoSpace)));
        let mut r = big.reserve(fd.as_fd(), 4096).unwrap();
        r.consume(4000);
        assert_eq!(big.inflight.lock().unwrap().remaining, 96);
        drop(r);
        assert_eq!(big.inflight.lock().unwrap().count, 0);
        std::fs::remove_dir_all(p).unwrap();
    }

    #[test]
    fn an_unsized_write_grows_within_the_quota_and_the_size_limit() {
        let (p, fd) = tmp_root();
        let limits = Limits { quota: Some(1800), max_object_size: Some(1500), ..Default::default() };
        let space = Arc::new(Space::new(limits));
        space.set_measured(0);
        let other = space.reserve(fd.as_fd(), 400).unwrap();
        let mut r = space.reserve(fd.as_fd(), 0).unwrap();
        space.grow(&mut r, fd.as_fd(), 1000).unwrap();
        assert_eq!(r.admitted(), 1000);
        assert!(matches!(space.grow(&mut r, fd.as_fd(), 601), Err(Error::EntityTooLarge)));
        assert!(matches!(space.grow(&mut r, fd.as_fd(), 500), Err(Error::QuotaExceeded)), "400 + 1500 + 500 used");
        assert_eq!(r.admitted(), 1000, "a refused growth admits nothing");
        drop(other);
        space.grow(&mut r, fd.as_fd(), 500).unwrap();
        drop(r);
        let inf = space.inflight.lock().unwrap();
        assert_eq!((inf.declared, inf.remaining, inf.count), (0, 0, 0));
        drop(inf);
        std::fs::remove_dir_all(p).unwrap();
    }

    #[test]
    fn content_types() {
        let s = Space::new(Limits { allowed_content_types: vec!["image/png".into()], ..Default::default() });
        assert!(s.content_type_allowed("image/png"));
        assert!(s.content_type_allowed("IMAGE/PNG; q=1"));
        assert!(!s.content_type_allowed("text/html"));
        assert!(Space::new(Limits::default()).content_type_allowed("anything/at-all"));
    }
}
