//! One credentials source for a fleet: the credentials file is looked at every
//! `credentials_check` (2 s by default) and reloaded when it changed, as SIGHUP reloads it,
//! so that a key added or revoked in one place (a file on a shared network file system,
//! or one that config management replaces with a rename) works or stops on every node
//! within seconds, without a signal.
//!
//! A change is a new size, mtime, ctime, inode or device of the file the path leads to
//! (links followed: a Kubernetes Secret volume swaps a `..data` link). A changed file is
//! loaded only once it is whole:
//! - it is settled: last modified at least [`SETTLE`] ago, or found unchanged (size,
//!   mtime, ctime, inode, device) by two looks in a row. The second rule is what loads a
//!   file whose mtime is in the future (an NFS server whose clock is ahead, `tar`,
//!   `rsync -t`, `cp -p` from such a host), which the first would wait for forever; such
//!   a file is logged at warn once per version;
//! - it is read by the one loader of start-up and `check-config` too
//!   ([`crate::auth::read_file`]: one descriptor, a regular file that group and others
//!   cannot read or write, at most [`crate::auth::MAX_FILE_BYTES`]), and the path must
//!   still lead to that same, unchanged file after the read (else it is read again at the
//!   next look);
//! - it must hold more than white space and parse and validate whole
//!   ([`KeySet::from_file_text`]).
//!
//! Otherwise the keys in force stay, the failure is logged (what is wrong and where, never
//! a value from the file) and counted (`s3vol_credentials_reload_failures_total`, once per
//! state of the file, not at every look). An empty file is such a failure, not "no keys":
//! it is what a writer that truncates before writing leaves for a moment, and what a
//! failed template renders, and taking it as "revoke everything" would take every node of
//! the fleet down at once. A file that holds no `[[key]]` but something else (a comment)
//! is read as meant: every key is revoked.
//!
//! The file is read on this module's own thread (the periodic look) or on the blocking
//! pool (SIGHUP), never on an async runtime thread.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::auth::{KeyRing, KeySet};
use crate::metrics::Metrics;

/// A changed file is loaded at once when its mtime is at least this old (a writer that
/// writes in place has had the time to finish); else once two looks in a row found it
/// unchanged.
pub const SETTLE: Duration = Duration::from_secs(1);

/// What tells one version of the file from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

/// The file as last looked at.
#[derive(Debug, Default)]
struct Seen {
    /// The version whose keys are in force (loaded at start or by a reload).
    loaded: Option<Identity>,
    /// The version (or the stat error) whose failure was last counted and logged.
    failed: Option<Result<Identity, String>>,
    /// The version the last look found changed and not yet settled: loaded when the next
    /// look finds it unchanged.
    pending: Option<Identity>,
    /// The version last warned about for an mtime in the future (warned once per version).
    warned_future: Option<Identity>,
}

struct Inner {
    ring: KeyRing,
    path: PathBuf,
    metrics: Arc<Metrics>,
    seen: Mutex<Seen>,
}

/// The watched credentials file. Cheap to clone; the periodic look stops once every
/// clone is dropped.
#[derive(Clone)]
pub struct KeyWatch(Arc<Inner>);

impl std::fmt::Debug for KeyWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWatch").field("path", &self.0.path).finish()
    }
}

/// Why a look did not load the file.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Changing now (too recent, or changed during the read): looked at again next time.
    InFlux,
    /// Broken: the keys in force stay. The text names the problem, never a secret.
    Broken(String),
}

impl KeyWatch {
    /// Watches `path`, whose `keys` the ring holds now (loaded at start), looking at it
    /// every `every` on a thread of its own (`every` zero: only [`KeyWatch::reload_now`]).
    pub fn start(ring: KeyRing, path: PathBuf, keys: usize, metrics: Arc<Metrics>, every: Duration) -> Self {
        metrics.credentials_loaded(keys, now_secs());
        let loaded = std::fs::metadata(&path).ok().map(|md| Identity::of(&md));
        let seen = Seen { loaded, ..Seen::default() };
        let watch = Self(Arc::new(Inner { ring, path, metrics, seen: Mutex::new(seen) }));
        if !every.is_zero() {
            let weak = Arc::downgrade(&watch.0);
            let spawned =
                std::thread::Builder::new().name("s3vol-credentials".into()).spawn(move || look_every(weak, every));
            if let Err(e) = spawned {
                error!(error = %e, "cannot start the credentials watch: the file is reloaded on SIGHUP only");
            }
        }
        watch
    }

    /// Reloads the file now, whether or not it looks changed (SIGHUP). Blocking.
    pub fn reload_now(&self) {
        let _ = self.0.load(true);
    }

    /// Looks at the file and reloads it when it changed. Blocking.
    fn look(&self) {
        let _ = self.0.load(false);
    }
}

fn look_every(weak: Weak<Inner>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(inner) = weak.upgrade() else { return };
        KeyWatch(inner).look();
    }
}

impl Inner {
    /// Loads the file when `force` or when it changed since it was last loaded; true when
    /// new keys are in force.
    fn load(&self, force: bool) -> bool {
        let mut seen = self.seen.lock().unwrap();
        let md = match std::fs::metadata(&self.path) {
            Ok(md) => md,
            Err(e) => {
                let why = format!("cannot read {}: {e}", self.path.display());
                self.failed(&mut seen, Err(why.clone()), &why, force);
                return false;
            }
        };
        let now = Identity::of(&md);
        if !force && (seen.loaded == Some(now) || seen.failed == Some(Ok(now))) {
            return false;
        }
        if in_future(&md) && seen.warned_future != Some(now) {
            seen.warned_future = Some(now);
            warn!(path = %self.path.display(), "the credentials file's mtime is in the future (a clock ahead where it was written): it is loaded once two looks find it unchanged");
        }
        // Settled: old enough, or unchanged since the previous look found it changed. What
        // is not a regular file is refused at once: no writer makes it whole.
        let settled = force || !md.is_file() || settled(&md) || seen.pending == Some(now);
        seen.pending = Some(now);
        if !settled {
            debug!(path = %self.path.display(), "the credentials file changed: loaded once it settles");
            return false;
        }
        match read_whole(&self.path) {
            Ok((keys, read)) => {
                let n = keys.len();
                self.ring.replace(keys);
                seen.loaded = Some(read);
                seen.failed = None;
                seen.pending = None;
                self.metrics.credentials_loaded(n, now_secs());
                if n == 0 {
                    info!(keys = 0, path = %self.path.display(), "credentials reloaded: the file holds no key, every key is revoked");
                } else {
                    info!(keys = n, path = %self.path.display(), "credentials reloaded");
                }
                true
            }
            Err(Refusal::InFlux) => {
                debug!(path = %self.path.display(), "the credentials file is being written: looked at again shortly");
                false
            }
            Err(Refusal::Broken(why)) => {
                self.failed(&mut seen, Ok(now), &why, force);
                false
            }
        }
    }

    /// Counts and logs a failure once per state of the file, and at every SIGHUP (`force`:
    /// the operator asked, and is answered).
    fn failed(&self, seen: &mut Seen, state: Result<Identity, String>, why: &str, force: bool) {
        if !force && seen.failed.as_ref() == Some(&state) {
            return;
        }
        seen.failed = Some(state);
        self.metrics.credentials_failed();
        error!(error = %why, "credentials reload failed: the previous keys stay in force");
    }
}

/// Reads and validates the whole file (the caller judged it settled). Returns the keys and
/// the version read.
fn read_whole(path: &Path) -> Result<(KeySet, Identity), Refusal> {
    let (text, md) = crate::auth::read_file(path).map_err(Refusal::Broken)?;
    let before = Identity::of(&md);
    // Changed while read, or the path now leads elsewhere (renamed over meanwhile): this
    // read may be half of one version; the next look reads the new one.
    let after_path = std::fs::metadata(path).map(|m| Identity::of(&m)).ok();
    if after_path != Some(before) || text.len() as u64 != before.size {
        return Err(Refusal::InFlux);
    }
    let keys =
        KeySet::from_file_text(&text).map_err(|e| Refusal::Broken(format!("credentials {}: {e}", path.display())))?;
    Ok((keys, before))
}

/// True when the file was last modified at least [`SETTLE`] ago (not in the future).
fn settled(md: &std::fs::Metadata) -> bool {
    md.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age >= SETTLE)
}

/// True when the file's mtime is later than now.
fn in_future(md: &std::fs::Metadata) -> bool {
    md.modified().ok().is_some_and(|m| m.elapsed().is_err())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch::Scratch;
    use std::os::unix::fs::PermissionsExt;

    const ONE: &str =
        "[[key]]\nname='a'\naccess_key='AK1'\nsecret_key='SECRET1'\nvolumes=['*']\npermissions=['read']\n";
    const TWO: &str =
        "[[key]]\nname='b'\naccess_key='AK2'\nsecret_key='SECRET2'\nvolumes=['*']\npermissions=['read']\n";

    fn write(path: &Path, text: &str, mode: u32, age_secs: i64) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        let now = std::time::SystemTime::now();
        let t = if age_secs >= 0 {
            now - Duration::from_secs(age_secs as u64)
        } else {
            now + Duration::from_secs(age_secs.unsigned_abs())
        };
        std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(t).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn setup() -> (Scratch, PathBuf, KeyWatch, KeyRing, Arc<Metrics>) {
        let dir = Scratch::new("keywatch");
        let path = dir.join("credentials.toml");
        write(&path, ONE, 0o600, 10);
        let ring = KeyRing::new(KeySet::parse(ONE).unwrap(), None);
        let metrics = Arc::new(Metrics::new());
        let watch = KeyWatch::start(ring.clone(), path.clone(), 1, metrics.clone(), Duration::ZERO);
        (dir, path, watch, ring, metrics)
    }

    fn failures(m: &Metrics) -> String {
        m.encode().lines().find(|l| l.starts_with("s3vol_credentials_reload_failures_total")).unwrap().to_owned()
    }

    #[test]
    fn a_renamed_in_file_is_loaded_once_settled_and_an_unchanged_one_is_not_reread() {
        let (_t, path, watch, ring, _m) = setup();
        assert!(!watch.0.load(false), "unchanged since start");
        write(&path, TWO, 0o600, 0);
        assert!(!watch.0.load(false), "just written: waits for it to settle");
        assert!(ring.get("AK1").is_some());
        write(&path, TWO, 0o600, 10);
        assert!(watch.0.load(false));
        assert!(ring.get("AK1").is_none() && ring.get("AK2").is_some());
    }

    #[test]
    fn a_file_with_an_mtime_in_the_future_is_loaded_at_the_second_look() {
        let (_t, path, watch, ring, _m) = setup();
        write(&path, TWO, 0o600, -120);
        assert!(!watch.0.load(false), "first look: changed, not yet settled");
        assert!(ring.get("AK1").is_some());
        assert!(watch.0.load(false), "second look: unchanged, loaded though its mtime is ahead");
        assert!(ring.get("AK1").is_none() && ring.get("AK2").is_some());
    }

    #[test]
    fn broken_empty_or_exposed_files_keep_the_keys_and_count_once() {
        let (_t, path, watch, ring, m) = setup();
        for (text, mode) in [("[[key]]\nname='x'\n", 0o600), ("", 0o600), ("  \n", 0o600), (TWO, 0o644)] {
            write(&path, text, mode, 10);
            assert!(!watch.0.load(false), "{text:?} {mode:o}");
            assert!(!watch.0.load(false));
            assert!(ring.get("AK1").is_some());
        }
        assert!(failures(&m).ends_with(" 4"), "{}", failures(&m));
        // A comment and no key: every key revoked, on purpose.
        write(&path, "# every key revoked\n", 0o600, 10);
        assert!(watch.0.load(false));
        assert!(ring.get("AK1").is_none());
    }

    #[test]
    fn a_path_replaced_by_a_fifo_or_a_link_to_one_is_refused_without_hanging() {
        let (t, path, watch, ring, m) = setup();
        let fifo = t.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = t.join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
        assert!(!watch.0.load(false), "a FIFO is not a credentials file (and opening it must not block)");
        assert!(ring.get("AK1").is_some());
        assert!(failures(&m).ends_with(" 1"), "{}", failures(&m));
    }

    #[test]
    fn parse_errors_never_show_a_secret() {
        let bad = "[[key]]\nname='a'\naccess_key='AK1'\nsecret_key='TOPSECRET'\nvolumes='*'\npermissions=['read']\n";
        let e = KeySet::parse(bad).unwrap_err();
        assert!(!e.contains("TOPSECRET"), "{e}");
    }
}
