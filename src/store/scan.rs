//! The background scan of a volume: one walk of its whole tree, at start and then every
//! `scan_interval`, that counts the objects ListObjects would list and their bytes, and
//! measures the bytes of every regular file for the quota (staged parts included).
//!
//! Between passes the counts are kept current by s3vol's own writes and deletes
//! ([`super::quota::Space::note_objects`]); files pods write or remove directly show at the next pass.
//! Before the first pass completes the counts are unknown (`None`), never 0.
//!
//! The walk is bounded so that it cannot starve requests on a volume of ten million files:
//! it runs on a thread of its own (never the async runtime, never the blocking pool that
//! requests use), scans one volume at a time on a node, reads at most `scan_rate` entries
//! per second (sleeping between batches),
//! holds one open directory per level of depth (never a name or a file descriptor per
//! pending entry), never follows a symbolic link into a directory, and stops when the
//! volume is no longer served (re-opened or removed). A file system mounted inside the
//! volume is walked, as ListObjects lists it (a pod cannot mount: such a mount is the
//! operator's); a directory that is one being walked already (device and inode of an
//! ancestor: a bind mount of the volume into itself) is not entered again.
//! What it counts follows the listing ([`super::list::FsTree`]): the internal directory and,
//! at a mount root, `lost+found` are not objects; names that are not UTF-8 and keys longer
//! than 1024 bytes are not listed; a link to a regular file inside the volume is an object
//! with its target's size; an empty directory, or one marked as a `k/` object, is an object
//! of 0 bytes.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use tracing::{debug, info};

use super::fsx;
use super::key::MAX_KEY_LEN;
use super::volume::{DirMark, LOST_FOUND, Volume};

/// Deepest directory level the scan descends to (a 1024-byte key has at most 512).
const MAX_DEPTH: usize = 512;
/// Held by the volume scan running now: passes over different volumes take turns.
static ONE_PASS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Entries read between two looks at the clock (the rate limit's batch).
const BATCH: u64 = 256;
/// The scan thread's stack: the walk recurses once per directory level.
const STACK_BYTES: usize = 16 << 20;

/// What one volume's scan knows, updated as it walks and as s3vol writes. Lock-free:
/// requests adjust it from any thread.
#[derive(Debug, Default)]
pub struct Census {
    /// Objects (as ListObjects lists them); meaningful once `known`.
    objects: AtomicI64,
    /// Sum of their sizes, bytes.
    object_bytes: AtomicI64,
    /// A pass has completed at least once.
    known: AtomicBool,
    /// Directory entries read by the pass running now (0 between passes).
    entries: AtomicU64,
    /// A pass is running now.
    running: AtomicBool,
    /// When the last pass completed, seconds since the Unix epoch (0: never).
    last_completed: AtomicI64,
    /// How long the last completed pass took, milliseconds.
    last_duration_ms: AtomicU64,
    /// Entries the last completed pass read.
    last_entries: AtomicU64,
}

/// A snapshot of a [`Census`], for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CensusReport {
    /// Objects in the volume; `None` until the first pass completes.
    pub objects: Option<u64>,
    /// Bytes of those objects; `None` until the first pass completes.
    pub bytes: Option<u64>,
    /// When the last pass completed, seconds since the Unix epoch.
    pub last_completed: Option<i64>,
    /// How long the last completed pass took, milliseconds.
    pub last_duration_ms: Option<u64>,
    /// Directory entries read so far by the pass running now (0 when none runs).
    pub entries_scanned: u64,
    /// Entries the last completed pass read.
    pub last_entries: u64,
    /// A pass is running now.
    pub running: bool,
}

impl Census {
    /// s3vol itself added (`count` +1), replaced (0) or removed (-1) objects, changing
    /// their bytes by `bytes`. Applied before the first pass too: the pass's totals then
    /// replace everything. The sums are signed and never saturated: concurrent writers
    /// note their deltas in another order than their renames took effect (a PUT that
    /// replaced a file may note `-old` before the PUT that made `old` notes `+old`), and
    /// only the exact sum comes out right once all are noted. What is shown is clamped
    /// at 0 ([`Census::report`]); a 64-bit sum does not wrap.
    pub fn note(&self, count: i64, bytes: i64) {
        self.objects.fetch_add(count, Ordering::Relaxed);
        self.object_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The current counts and scan progress.
    pub fn report(&self) -> CensusReport {
        let known = self.known.load(Ordering::Relaxed);
        let last = self.last_completed.load(Ordering::Relaxed);
        let clamp = |v: i64| v.max(0) as u64;
        CensusReport {
            objects: known.then(|| clamp(self.objects.load(Ordering::Relaxed))),
            bytes: known.then(|| clamp(self.object_bytes.load(Ordering::Relaxed))),
            last_completed: (last > 0).then_some(last),
            last_duration_ms: known.then(|| self.last_duration_ms.load(Ordering::Relaxed)),
            entries_scanned: self.entries.load(Ordering::Relaxed),
            last_entries: self.last_entries.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
        }
    }

    fn finish(&self, totals: &Totals, took: Duration) {
        self.objects.store(totals.objects as i64, Ordering::Relaxed);
        self.object_bytes.store(totals.object_bytes as i64, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
        self.last_completed.store(fsx::now_secs(), Ordering::Relaxed);
        self.last_duration_ms.store(took.as_millis() as u64, Ordering::Relaxed);
        self.last_entries.store(totals.entries, Ordering::Relaxed);
    }
}

/// What one pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Objects as ListObjects lists them.
    pub objects: u64,
    /// Their bytes.
    pub object_bytes: u64,
    /// Bytes of every regular file under the root, internal directory included (the
    /// quota's usage: staged parts live on the volume).
    pub used: u64,
    /// Directory entries read.
    pub entries: u64,
}

/// One pass over a volume.
struct Pass<'v> {
    vol: &'v Volume,
    /// Device and inode of the directories from the root to the one walked now.
    ancestors: Vec<(u64, u64)>,
    /// Entries per second at most; 0: unlimited.
    rate: u64,
    started: Instant,
    totals: Totals,
    /// Set when the volume stopped being served: the pass is abandoned.
    abandoned: bool,
    /// Only the scan thread and the registry hold the volume; the registry dropping it
    /// (re-opened, removed) leaves this one alone.
    alone: &'v dyn Fn() -> bool,
}

impl Pass<'_> {
    /// Counts one directory entry and keeps to the rate: every [`BATCH`] entries, sleeps
    /// until the time the entries read so far should have taken.
    fn tick(&mut self) {
        self.totals.entries += 1;
        if !self.totals.entries.is_multiple_of(BATCH) {
            return;
        }
        self.vol.space.census.entries.store(self.totals.entries, Ordering::Relaxed);
        if (self.alone)() {
            self.abandoned = true;
        }
        if self.rate > 0 {
            let due = Duration::from_secs_f64(self.totals.entries as f64 / self.rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }

    /// Walks `dir`, whose key prefix is `path` (empty at the root), at `depth`. `listed`:
    /// ListObjects shows what is under it. Returns the number of entries ListObjects would
    /// see in `dir` (to tell an empty directory, itself a `k/` object). Entries are handled
    /// as the directory is read: memory grows with the depth, not with a directory's size.
    fn visit(&mut self, dir: BorrowedFd<'_>, path: &str, depth: usize, listed: bool) -> u64 {
        let mut visible = 0u64;
        let read = fsx::read_dir_each(dir, |raw, d_type| {
            if !self.abandoned && self.entry(dir, raw, d_type, path, depth, listed) {
                visible += 1;
            }
        });
        if read.is_err() {
            return visible.max(1); // unreadable: not shown as empty
        }
        visible
    }

    /// One entry `raw` of `dir` (see [`Pass::visit`]): counted, measured, descended into.
    /// True when ListObjects would show it in `dir`.
    fn entry(&mut self, dir: BorrowedFd<'_>, raw: &[u8], d_type: u8, path: &str, depth: usize, listed: bool) -> bool {
        self.tick();
        let name = OsStr::from_bytes(raw);
        let internal = self.vol.settings.internal_dir.as_bytes();
        let hidden = depth == 0 && (raw == internal || (self.vol.mount_root && raw == LOST_FOUND.as_bytes()));
        let key =
            std::str::from_utf8(raw).ok().map(|n| if path.is_empty() { n.to_owned() } else { format!("{path}/{n}") });
        let shown = listed && !hidden && key.is_some();
        let d_type = match d_type {
            libc::DT_REG | libc::DT_DIR | libc::DT_LNK => d_type,
            libc::DT_UNKNOWN => match fsx::lstat_at(dir, name).map(|st| st.st_mode & libc::S_IFMT) {
                Ok(libc::S_IFREG) => libc::DT_REG,
                Ok(libc::S_IFDIR) => libc::DT_DIR,
                Ok(libc::S_IFLNK) => libc::DT_LNK,
                _ => return false,
            },
            _ => return false, // FIFOs, sockets, devices: never objects, never bytes
        };
        match d_type {
            libc::DT_REG => {
                let Ok(st) = fsx::lstat_at(dir, name) else { return false };
                if !fsx::is_regular(&st) {
                    return false;
                }
                let size = st.st_size.max(0) as u64;
                self.totals.used += size;
                if shown && key.as_ref().is_some_and(|k| k.len() <= MAX_KEY_LEN) {
                    self.totals.objects += 1;
                    self.totals.object_bytes += size;
                }
                shown
            }
            libc::DT_LNK => {
                // A link is an object only when it leads to a regular file inside the
                // volume (resolved beneath the root, as a GET would); never walked.
                let Some(key) = key.filter(|_| shown) else { return false };
                let Ok(fd) = self.vol.open_path(&key, OFlag::O_PATH) else { return false };
                let Ok(st) = fsx::fstat(fd.as_fd()) else { return false };
                if !fsx::is_regular(&st) {
                    return false;
                }
                if key.len() <= MAX_KEY_LEN {
                    self.totals.objects += 1;
                    self.totals.object_bytes += st.st_size.max(0) as u64;
                }
                true
            }
            _ => {
                // O_NOFOLLOW: a directory swapped for a link since the read is not entered.
                let Ok(sub) = fsx::open_child(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0) else {
                    return false;
                };
                let Ok(id) = fsx::fstat(sub.as_fd()).map(|st| (st.st_dev, st.st_ino)) else { return shown };
                if self.ancestors.contains(&id) || depth + 1 >= MAX_DEPTH {
                    return shown;
                }
                let key = key.unwrap_or_default();
                let dkey_fits = key.len() < MAX_KEY_LEN;
                self.ancestors.push(id);
                let inner = self.visit(sub.as_fd(), &key, depth + 1, shown && dkey_fits);
                self.ancestors.pop();
                // `k/`: an empty directory, or one marked as a directory object.
                if shown && dkey_fits && (inner == 0 || self.vol.dir_mark(sub.as_fd()) == Some(DirMark::Marker)) {
                    self.totals.objects += 1;
                }
                shown
            }
        }
    }
}

/// Walks the whole of `vol` once, reading at most `rate` entries per second (0: no limit),
/// publishing progress in its census. `None` when the volume stopped being served during
/// the walk (`alone` answered true) or its root cannot be read.
pub fn pass(vol: &Volume, rate: u64, alone: &dyn Fn() -> bool) -> Option<Totals> {
    let root = fsx::open_dir(vol.root(), "").ok()?;
    let st = fsx::fstat(root.as_fd()).ok()?;
    let mut p = Pass {
        vol,
        ancestors: vec![(st.st_dev, st.st_ino)],
        rate,
        started: Instant::now(),
        totals: Totals::default(),
        abandoned: false,
        alone,
    };
    p.visit(root.as_fd(), "", 0, true);
    (!p.abandoned).then_some(p.totals)
}

/// Scans a volume now and every `scan_interval` (from the end of one pass to the start of
/// the next) on a thread of its own, for as long as the volume is served. Each completed
/// pass replaces the object counts and, under a quota, the measured usage.
pub fn spawn_scanner(vol: Weak<Volume>) {
    let spawned = std::thread::Builder::new().name("s3vol-scan".into()).stack_size(STACK_BYTES).spawn(move || {
        loop {
            // One pass at a time on a node, so that `scan_rate` bounds the node's scan I/O
            // whatever the number of volumes (hundreds in `volumes_root` mode, often on
            // one network file system); the others wait their turn, their counts unknown
            // until their first pass.
            let turn = ONE_PASS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(v) = vol.upgrade() else { return };
            let census = &v.space.census;
            census.running.store(true, Ordering::Relaxed);
            census.entries.store(0, Ordering::Relaxed);
            let start = Instant::now();
            // The registry's reference and ours: with only ours left the volume was
            // re-opened or removed, and a new scanner (if any) counts the new one.
            let alone = || Arc::strong_count(&v) <= 1;
            let totals = pass(&v, v.space.limits.scan_rate, &alone);
            census.running.store(false, Ordering::Relaxed);
            census.entries.store(0, Ordering::Relaxed);
            let Some(totals) = totals else {
                debug!(volume = %v.name, "scan abandoned: the volume is no longer served");
                return;
            };
            census.finish(&totals, start.elapsed());
            v.space.set_measured(totals.used);
            info!(
                volume = %v.name,
                objects = totals.objects,
                bytes = totals.object_bytes,
                entries = totals.entries,
                ms = start.elapsed().as_millis() as u64,
                "volume usage measured and objects counted"
            );
            let wait = v.space.limits.rescan_secs.max(1);
            drop(v);
            drop(turn);
            std::thread::sleep(Duration::from_secs(wait));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a volume scan thread: its object counts stay unknown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VolumeSettings;
    use crate::store::scratch::Scratch;

    #[test]
    fn a_pass_counts_what_listing_lists_and_measures_every_file() {
        let dir = Scratch::new("scan");
        let p: &std::path::Path = &dir;
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::create_dir_all(p.join("empty")).unwrap();
        std::fs::write(p.join("x"), vec![0u8; 1000]).unwrap();
        std::fs::write(p.join("a/b/y"), vec![0u8; 234]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("a/out")).unwrap();
        std::os::unix::fs::symlink("../x", p.join("a/in")).unwrap();
        std::os::unix::fs::symlink("..", p.join("a/loop")).unwrap();
        nix::unistd::mkfifo(&p.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let vol = Volume::open("t", p, VolumeSettings::default()).unwrap();
        std::fs::write(p.join(".s3vol/tmp/staged"), vec![0u8; 50]).unwrap();
        let t = pass(&vol, 0, &|| false).unwrap();
        // x, a/b/y, a/in (a link inside the volume, its target's size), empty/.
        assert_eq!((t.objects, t.object_bytes), (4, 1000 + 234 + 1000));
        assert_eq!(t.used, 1000 + 234 + 50, "regular files, the internal directory's too, links not followed");
        assert!(t.entries >= 8, "{t:?}");
    }

    #[test]
    fn a_rate_limited_pass_takes_its_time_and_an_abandoned_one_reports_nothing() {
        let dir = Scratch::new("scan");
        for i in 0..600 {
            std::fs::write(dir.join(format!("f{i}")), b"x").unwrap();
        }
        let vol = Volume::open("t", &dir, VolumeSettings::default()).unwrap();
        let start = Instant::now();
        let t = pass(&vol, 1000, &|| false).unwrap();
        assert_eq!(t.objects, 600);
        assert!(start.elapsed() >= Duration::from_millis(450), "{:?}", start.elapsed());
        assert_eq!(pass(&vol, 0, &|| true), None);
    }

    #[test]
    fn counts_are_unknown_until_a_pass_completes() {
        let c = Census::default();
        c.note(1, 10);
        assert_eq!(c.report().objects, None);
        c.finish(&Totals { objects: 5, object_bytes: 50, ..Default::default() }, Duration::from_millis(3));
        c.note(1, 10);
        c.note(-1, -20);
        let r = c.report();
        assert_eq!((r.objects, r.bytes), (Some(5), Some(40)));
        assert!(r.last_completed.is_some());
        // Deltas noted out of order (a replacement noted before the write it replaced)
        // come out exact; below zero meanwhile shows as 0.
        c.note(0, -100);
        assert_eq!(c.report().bytes, Some(0));
        c.note(0, 100);
        let r = c.report();
        assert_eq!((r.objects, r.bytes), (Some(5), Some(40)));
    }
}
