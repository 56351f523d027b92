//! A process-wide cache of large directories in S3 order, for listings.
//!
//! Continuation tokens are stateless (SPEC.md "Listing"), so every page of a flat
//! directory has to find its place among all of the directory's names: without a cache,
//! each page of a 100,000-file directory re-reads and re-sorts 100,000 names. This cache
//! keeps the sorted names of large directories between pages. It is a cache, never state:
//! every use re-checks the directory's own stamp (inode, mtime, ctime, size, link count)
//! with one `fstat`, so a change made by a pod, another daemon or this one is seen on the
//! next page, and any node can serve any page with or without it.
//!
//! A stamp can only vouch for a directory whose timestamps are older than the clock's
//! granularity: a change in the same clock tick as the read would leave mtime unchanged.
//! Directories changed less than [`SETTLE`] before the read are therefore not cached
//! (the "racy" rule of git's index), nor are directories holding symbolic links (what a
//! link points to can change without touching the directory).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::FileStat;

use super::fsx;
use super::list::Sorted;

/// Directories with fewer entries are read afresh for every page (one read serves them).
pub const MIN_ENTRIES: usize = 256;

/// Memory the cache may hold (bytes of packed names and indexes: a flat directory of a
/// million 10-byte names takes ~14 MB). The least recently used directories are dropped
/// first.
pub const CAPACITY_BYTES: usize = 32 << 20;

/// How long a directory must have been unchanged before its stamp is trusted (clock
/// granularity of local file systems is ≤ 10 ms; the rest covers clock skew between this
/// node and a network file system's server).
pub const SETTLE: Duration = Duration::from_secs(1);

/// What identifies one state of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    size: i64,
    nlink: u64,
}

impl Stamp {
    /// The stamp of a directory from its `fstat`.
    pub fn of(st: &FileStat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime_ns: fsx::mtime_ns(st),
            ctime_ns: fsx::ctime_ns(st),
            size: st.st_size,
            nlink: st.st_nlink,
        }
    }

    /// True when the directory last changed at least [`SETTLE`] before `now`.
    pub fn settled(&self, now: SystemTime) -> bool {
        let now_ns = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        self.mtime_ns.max(self.ctime_ns) + SETTLE.as_nanos() as i128 <= now_ns
    }
}

struct Slot {
    stamp: Stamp,
    /// The internal directory's name when this was read as a volume root (hidden from it).
    hidden: String,
    dir: Sorted,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<(u64, u64), Slot>,
    bytes: usize,
    tick: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);
static HITS: AtomicU64 = AtomicU64::new(0);

/// Directory reads served from the cache since the process started (for tests).
pub fn hits() -> u64 {
    HITS.load(Ordering::Relaxed)
}

/// The cached entries of the directory with `stamp`, read with `hidden` hidden; `None`
/// when absent or stale (a stale slot is dropped).
pub fn get(stamp: &Stamp, hidden: &str) -> Option<Sorted> {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.tick += 1;
    let tick = c.tick;
    let key = (stamp.dev, stamp.ino);
    let slot = c.slots.get_mut(&key)?;
    if slot.stamp == *stamp && slot.hidden == hidden {
        slot.used = tick;
        HITS.fetch_add(1, Ordering::Relaxed);
        return Some(slot.dir.clone());
    }
    let bytes = slot.bytes;
    c.slots.remove(&key);
    c.bytes -= bytes;
    None
}

/// Offers a freshly read directory: kept when it is large, settled (`stamp` taken before
/// the read, `read_at` the clock then) and fits.
pub fn offer(stamp: Stamp, read_at: SystemTime, hidden: &str, dir: &Sorted) {
    if dir.len() < MIN_ENTRIES || !stamp.settled(read_at) {
        return;
    }
    let bytes = dir.heap_bytes();
    if bytes > CAPACITY_BYTES {
        return;
    }
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    while c.bytes + bytes > CAPACITY_BYTES {
        let Some((&lru, _)) = c.slots.iter().min_by_key(|(_, s)| s.used) else { break };
        if let Some(s) = c.slots.remove(&lru) {
            c.bytes -= s.bytes;
        }
    }
    c.tick += 1;
    let slot = Slot { stamp, hidden: hidden.to_owned(), dir: dir.clone(), bytes, used: c.tick };
    if let Some(old) = c.slots.insert((stamp.dev, stamp.ino), slot) {
        c.bytes -= old.bytes;
    }
    c.bytes += bytes;
}
