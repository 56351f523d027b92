//! Conditional writes (SPEC.md "Writes are atomic and durable": `If-None-Match: *` and
//! `If-Match` are atomic, also across daemons sharing a volume).
//!
//! Two mechanisms, chosen by what the condition needs from the file system:
//! - Create (`If-None-Match: *`, [`Condition::Absent`]) needs no lock: the commit gives the
//!   file its name with a call that fails with EEXIST instead of replacing (`linkat` of
//!   the `O_TMPFILE`, `renameat2(RENAME_NOREPLACE)` or `link` + `unlink` of a named temp
//!   file, see `fsx::rename_noreplace`). The file system decides, in one step, on every
//!   node at once; only where it has neither does the commit fall back to the lock below.
//! - Compare-and-swap (`If-Match`, [`Condition::Matches`]), and DeleteObject with
//!   `If-Match`, hold a per-key lock across "read the current ETag, then rename or
//!   unlink": [`KeyLock`], a lock file `<internal>/tmp/lock-<md5 of key>` created with
//!   `O_CREAT|O_EXCL`.
//!
//! Why a lock file and not `flock`/`fcntl`: exclusive create is decided by the server on
//! NFS (v3 and v4), by SFTP's `SSH_FXF_EXCL`, and by FUSE file systems that share a
//! namespace (JuiceFS), whereas byte-range locks are silently local to one node where the
//! mount was made with `nolock`, on sshfs and on FUSE file systems that leave locking to
//! the kernel: a test on one node would pass and two nodes would both "hold" the lock.
//! The cost is stale-lock recovery, which the kernel would otherwise do: the file records
//! its holder (host and boot, pid, a nonce), and a lock older than [`LOCK_STALE_SECS`],
//! or whose holder process on this node is gone, is broken by renaming it away. The lock
//! is held for milliseconds (a lookup and a rename), so a holder that stalls longer than
//! that is dead or its file system is; a holder stalled past [`LOCK_STALE_SECS`] and then
//! resumed can lose its exclusivity (a lease without fencing), which is logged.
//!
//! Unconditional PUTs and deletes take no lock: they stay last-writer-wins, as in S3.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::key::ObjectKey;
use super::volume::{Volume, random_hex};
use super::{Error, Result, fsx};

/// A lock file untouched for this long (seconds) belongs to a holder that died.
pub const LOCK_STALE_SECS: i64 = 30;
/// How long a conditional write waits for the key's lock before answering 409
/// `ConditionalRequestConflict` (S3's answer to a conflicting concurrent write).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The longest pause between two tries of a busy lock.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The condition a write or delete commits under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Condition {
    /// Unconditional: the last rename wins.
    #[default]
    None,
    /// `If-None-Match: *`: only when nothing is at the key; else [`Error::PreconditionFailed`].
    Absent,
    /// `If-Match: *`: only when an object is at the key; else [`Error::NotFound`].
    Exists,
    /// `If-Match: "<etag>"` (held unquoted): only when the object at the key has this ETag;
    /// [`Error::NotFound`] when there is none (S3: 404 NoSuchKey), else
    /// [`Error::PreconditionFailed`].
    Matches(String),
}

impl Condition {
    /// True for conditions that compare with the current object and so need the key's
    /// lock across the comparison and the commit.
    pub fn needs_lock(&self) -> bool {
        matches!(self, Condition::Exists | Condition::Matches(_))
    }

    /// Judges the condition against what is at `key` now. Without the key's lock this is
    /// only an early answer (the commit judges again atomically).
    ///
    /// Errors: [`Error::PreconditionFailed`], [`Error::NotFound`], lookup errors.
    ///
    /// Returns the `(st_dev, st_ino)` of the object the condition was judged on, when
    /// there is one (a compare-and-swap commits by exchanging names and then checks that
    /// it displaced exactly that file).
    pub fn check(&self, vol: &Volume, key: &ObjectKey) -> Result<Option<(u64, u64)>> {
        let current = match self {
            Condition::None => return Ok(None),
            _ => current(vol, key)?,
        };
        match (self, current) {
            (Condition::Absent, None) => Ok(None),
            (Condition::Absent, Some(_)) => Err(Error::PreconditionFailed),
            (Condition::Exists | Condition::Matches(_), None) => Err(Error::NotFound),
            (Condition::Matches(want), Some((info, _))) if info.meta.etag != *want => Err(Error::PreconditionFailed),
            (_, Some((_, id))) => Ok(id),
            (Condition::None, None) => Ok(None),
        }
    }
}

/// How often, and how long apart, [`current`] looks again while the lookup cache and the
/// directory disagree (JuiceFS caches entries for 1 s by default).
const FRESH_TRIES: u32 = 40;
const FRESH_WAIT: Duration = Duration::from_millis(100);

/// The object at `key` as the file server has it now, for a condition judged under the
/// key's lock. On a local file system that is what a lookup finds. On a network or FUSE
/// file system a lookup may still find the file another node replaced a moment ago (the
/// client caches names for a while): the name is then looked up again until the inode it
/// leads to is the one the directory itself lists, so that of two nodes holding the same
/// ETag only one can win a compare-and-swap.
///
/// Errors: [`Error::ConditionalConflict`] when the two do not agree within about 4 s;
/// lookup errors.
/// An object as judged: its metadata and, for a regular file, its `(st_dev, st_ino)`.
type Judged = (super::meta::ObjectInfo, Option<(u64, u64)>);

fn current(vol: &Volume, key: &ObjectKey) -> Result<Option<Judged>> {
    let load = |fd: OwnedFd, st: nix::sys::stat::FileStat| {
        let info = super::meta::load(fd.as_fd(), &st, key.as_str(), vol.xattrs);
        Ok(Some((info, Some((st.st_dev, st.st_ino)))))
    };
    if key.is_dir_marker() {
        return match vol.head(key) {
            Ok(info) => Ok(Some((info, None))),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        };
    }
    if vol.local {
        return match vol.open_regular(key) {
            Ok((fd, st)) => load(fd, st),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let (parent, leaf) = key.split_parent();
    for _ in 0..FRESH_TRIES {
        let opened = match vol.open_regular(key) {
            Ok((fd, st)) => Some((fd, st)),
            Err(Error::NotFound) => None,
            Err(e) => return Err(e),
        };
        let listed = match vol.open_dir_path(parent) {
            Ok(dir) => fsx::entry_ino(dir.as_fd(), leaf)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => None,
            Err(e) => return Err(e.into()),
        };
        use nix::dir::Type;
        match (opened, listed) {
            // A link inside the volume: its target is what the key names.
            (Some((fd, st)), Some((ino, t))) if t == Some(Type::Symlink) || st.st_ino == ino => return load(fd, st),
            (None, None) => return Ok(None),
            // A directory, FIFO or link at the key: no object, as a lookup says.
            (None, Some((_, Some(t)))) if t != Type::File => return Ok(None),
            _ => std::thread::sleep(FRESH_WAIT),
        }
    }
    Err(Error::ConditionalConflict)
}

/// Who holds a lock file (its content, JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    nonce: String,
    taken: i64,
}

/// An exclusive lock on one key of one volume, across threads, processes and nodes that
/// share the volume; released when dropped.
pub struct KeyLock<'v> {
    vol: &'v Volume,
    name: String,
    fd: OwnedFd,
}

/// The lock file name of `key`: fixed length whatever the key, and the same on every node.
fn lock_name(key: &ObjectKey) -> String {
    let digest: [u8; 16] = Md5::digest(key.as_str().as_bytes()).into();
    format!("lock-{}", super::meta::hex_lower(&digest))
}

impl<'v> KeyLock<'v> {
    /// Takes the lock of `key`, waiting up to [`LOCK_WAIT`] while another holder has it
    /// and breaking a stale one.
    ///
    /// Errors: [`Error::ConditionalConflict`] after [`LOCK_WAIT`]; I/O errors of the
    /// internal directory ([`Error::NoSpace`], ...).
    pub fn take(vol: &'v Volume, key: &ObjectKey) -> Result<Self> {
        let name = lock_name(key);
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match fsx::create_excl(vol.tmp_dir(), &name, OFlag::O_WRONLY, 0o600) {
                Ok(fd) => {
                    let me = Holder {
                        host: super::assemble::hostname(),
                        pid: std::process::id(),
                        nonce: random_hex(8),
                        taken: fsx::now_secs(),
                    };
                    // The record only speeds up recovery; an empty one ages out.
                    let _ = File::from(fd.try_clone()?).write_all(&serde_json::to_vec(&me).expect("plain data"));
                    return Ok(Self { vol, name, fd });
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if is_stale(vol, &name) {
                        break_stale(vol, &name);
                        continue;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() >= LOCK_WAIT {
                return Err(Error::ConditionalConflict);
            }
            // Jitter keeps waiters on several nodes from trying in step.
            let mut r = [0u8; 2];
            let _ = getrandom::fill(&mut r);
            let jitter = Duration::from_micros(u64::from(u16::from_le_bytes(r) % 1000));
            std::thread::sleep(pause + jitter);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

impl Drop for KeyLock<'_> {
    fn drop(&mut self) {
        // Remove the lock file only while it is still ours: after a stall past
        // LOCK_STALE_SECS another holder may have broken it and taken the name.
        let mine = fsx::fstat(self.fd.as_fd()).ok();
        let there = fsx::lstat_at(self.vol.tmp_dir(), self.name.as_ref()).ok();
        match (mine, there) {
            (Some(a), Some(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) => {
                let _ = fsx::unlink_at(self.vol.tmp_dir(), &self.name, false);
            }
            _ => {
                warn!(volume = %self.vol.name, "a conditional write's key lock was broken while held (stalled past the stale age)")
            }
        }
    }
}

/// True when the lock file `name` is stale: untouched for [`LOCK_STALE_SECS`], or held by
/// a process of this node and boot that no longer exists.
fn is_stale(vol: &Volume, name: &str) -> bool {
    let Ok(st) = fsx::lstat_at(vol.tmp_dir(), name.as_ref()) else {
        return false; // released meanwhile: try again
    };
    if fsx::now_secs() - st.st_mtime > LOCK_STALE_SECS {
        return true;
    }
    read_holder(vol, name).is_some_and(|h| {
        h.host.len() > 2
            && h.host == super::assemble::hostname()
            && h.pid != std::process::id()
            && i32::try_from(h.pid).is_ok_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::Error::ESRCH)
            })
    })
}

fn read_holder(vol: &Volume, name: &str) -> Option<Holder> {
    let fd = fsx::open_child(vol.tmp_dir(), name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0).ok()?;
    let mut buf = Vec::with_capacity(256);
    std::io::Read::read_to_end(&mut std::io::Read::take(File::from(fd), 4096), &mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// Breaks the stale lock `name`: renames it to a unique grave name, then checks that what
/// it moved is the stale lock it judged. Several waiters judge the same lock stale at
/// once; one that comes second may have moved the first one's fresh lock instead, and
/// puts it back (without replacing: if a third took the name meanwhile, both hold it for
/// this once; the window is two system calls after a lock went stale).
fn break_stale(vol: &Volume, name: &str) {
    let judged = read_holder(vol, name).map(|h| h.nonce);
    let grave = format!("{name}.stale-{}", random_hex(6));
    if fsx::rename_at(vol.tmp_dir(), name, vol.tmp_dir(), &grave).is_err() {
        return; // someone else broke it or it was released
    }
    let moved = read_holder(vol, &grave).map(|h| h.nonce);
    let fresh = moved.is_some() && moved != judged && !is_stale(vol, &grave);
    if fresh {
        let _ = fsx::rename_noreplace(vol.tmp_dir(), &grave, vol.tmp_dir(), name);
    } else {
        warn!(volume = %vol.name, "breaking the stale lock of a conditional write whose holder stopped");
    }
    let _ = fsx::unlink_at(vol.tmp_dir(), &grave, false);
}

/// DeleteObject with `If-Match`: removes the object at `key` only while its ETag is the
/// one given, judged under the key's lock so that of concurrent conditional writers and
/// deleters holding one ETag exactly one succeeds.
///
/// Errors: [`Error::NotFound`] (S3: 404 NoSuchKey), [`Error::PreconditionFailed`],
/// [`Error::ConditionalConflict`], and those of [`Volume::delete`].
pub fn delete_if(vol: &Volume, key: &ObjectKey, cond: &Condition) -> Result<()> {
    vol.check_writable()?;
    let _lock = KeyLock::take(vol, key)?;
    match cond.check(vol, key)? {
        Some(judged) if !key.is_dir_marker() => vol.delete_judged(key, judged),
        _ => vol.delete(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn volume(name: &str) -> (crate::store::scratch::Scratch, Arc<Volume>) {
        let root = crate::store::scratch::Scratch::new(&format!("cond-{name}"));
        let settings = super::super::VolumeSettings { fsync: false, ..Default::default() };
        let vol = Arc::new(Volume::open(name, &root, settings).unwrap());
        (root, vol)
    }

    #[test]
    fn a_key_lock_excludes_and_is_released() {
        let (root, vol) = volume("lock");
        let key = vol.key("a/b").unwrap();
        let lock = KeyLock::take(&vol, &key).unwrap();
        let file = root.join(".s3vol/tmp").join(lock_name(&key));
        assert!(file.exists());
        // Another key is independent.
        drop(KeyLock::take(&vol, &vol.key("other").unwrap()).unwrap());
        let (v2, k2) = (vol.clone(), key.clone());
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            drop(KeyLock::take(&v2, &k2).unwrap());
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(lock);
        assert!(waiter.join().unwrap() >= Duration::from_millis(150), "the second taker waited");
        assert!(!file.exists(), "released");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_stale_lock_of_a_dead_holder_is_broken() {
        let (root, vol) = volume("stale");
        let key = vol.key("k").unwrap();
        let file = root.join(".s3vol/tmp").join(lock_name(&key));
        // A lock whose mtime is past the stale age.
        std::fs::write(&file, b"").unwrap();
        let old = nix::sys::time::TimeSpec::new(fsx::now_secs() - LOCK_STALE_SECS - 5, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &file,
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let t = Instant::now();
        drop(KeyLock::take(&vol, &key).unwrap());
        assert!(t.elapsed() < Duration::from_secs(2));
        // A lock of a process of this node that is gone: broken at once.
        let dead = Holder { host: super::super::assemble::hostname(), pid: u32::MAX / 2, nonce: "x".into(), taken: 0 };
        std::fs::write(&file, serde_json::to_vec(&dead).unwrap()).unwrap();
        drop(KeyLock::take(&vol, &key).unwrap());
        assert_eq!(std::fs::read_dir(root.join(".s3vol/tmp")).unwrap().count(), 0, "no lock or grave left");
        std::fs::remove_dir_all(root).unwrap();
    }
}
