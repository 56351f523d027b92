//! One credentials source for a fleet: the credentials file is looked at every
//! `credentials_check` (2 s by default) and reloaded when it changed, as SIGHUP reloads it,
//! so that a key added or revoked in one place (a file on a shared network file system,
//! or one that config management replaces with a rename) works or stops on every node
//! within seconds, without a signal.
//!
//! A change is a new size, mtime, ctime, inode or device of the file the path leads to
//! (links followed: a Kubernetes Secret volume swaps a `..data` link). A changed file is
//! loaded only once it is whole:
//! - it must not have changed for [`SETTLE`] (a writer still writing it is waited for);
//! - it is read through one descriptor, and the path must still lead to that same,
//!   unchanged file after the read (else it is read again at the next look);
//! - it must be a regular file that group and others cannot read or write, hold more than
//!   white space, and parse and validate whole ([`KeySet::parse`]).
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

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tracing::{debug, error, info};

use crate::auth::{KeyRing, KeySet};
use crate::metrics::Metrics;

/// A changed file is loaded only when its mtime is at least this old: a writer that
/// writes in place has had the time to finish.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Largest credentials file read (bytes): a runaway file is refused, not read into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

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
        let watch = Self(Arc::new(Inner { ring, path, metrics, seen: Mutex::new(Seen { loaded, failed: None }) }));
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
        match read_whole(&self.path, force) {
            Ok((keys, read)) => {
                let n = keys.len();
                self.ring.replace(keys);
                seen.loaded = Some(read);
                seen.failed = None;
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

/// Reads and validates the whole file. `force`: do not wait for it to settle (SIGHUP:
/// the operator says it is written). Returns the keys and the version read.
fn read_whole(path: &Path, force: bool) -> Result<(KeySet, Identity), Refusal> {
    let shown = path.display();
    let broken = |what: String| Refusal::Broken(format!("credentials {shown}: {what}"));
    // Links are followed (a Kubernetes Secret is a link to a link); what is checked is the
    // file read, through its descriptor.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| broken(format!("cannot open: {e}")))?;
    let md = f.metadata().map_err(|e| broken(format!("cannot stat: {e}")))?;
    if !md.file_type().is_file() {
        return Err(broken("not a regular file".into()));
    }
    let mode = md.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(broken(format!("accessible by other users (mode {mode:04o}); it holds secrets: chmod 600 it")));
    }
    if md.size() > MAX_FILE_BYTES {
        return Err(broken(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let before = Identity::of(&md);
    if !force && !settled(&md) {
        return Err(Refusal::InFlux);
    }
    let mut text = String::new();
    (&mut f).take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| broken(format!("cannot read: {e}")))?;
    // Changed while read, or the path now leads elsewhere (renamed over meanwhile): this
    // read may be half of one version; the next look reads the new one.
    let after_fd = f.metadata().map(|m| Identity::of(&m)).ok();
    let after_path = std::fs::metadata(path).map(|m| Identity::of(&m)).ok();
    if after_fd != Some(before) || after_path != Some(before) || text.len() as u64 != before.size {
        return Err(Refusal::InFlux);
    }
    if text.trim().is_empty() {
        return Err(broken("the file is empty (taken as a file being written, not as \"no keys\": to revoke every key, leave a comment in it)".into()));
    }
    let keys = KeySet::parse(&text).map_err(broken)?;
    Ok((keys, before))
}

/// True when the file was last modified at least [`SETTLE`] ago.
fn settled(md: &std::fs::Metadata) -> bool {
    md.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age >= SETTLE)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ONE: &str =
        "[[key]]\nname='a'\naccess_key='AK1'\nsecret_key='SECRET1'\nvolumes=['*']\npermissions=['read']\n";
    const TWO: &str =
        "[[key]]\nname='b'\naccess_key='AK2'\nsecret_key='SECRET2'\nvolumes=['*']\npermissions=['read']\n";

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write(path: &Path, text: &str, mode: u32, age_secs: u64) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        let t = std::time::SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(t).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn setup() -> (Tmp, PathBuf, KeyWatch, KeyRing, Arc<Metrics>) {
        let dir = std::env::temp_dir().join(format!("s3vol-keywatch-{}", crate::store::volume::random_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.toml");
        write(&path, ONE, 0o600, 10);
        let ring = KeyRing::new(KeySet::parse(ONE).unwrap(), None);
        let metrics = Arc::new(Metrics::new());
        let watch = KeyWatch::start(ring.clone(), path.clone(), 1, metrics.clone(), Duration::ZERO);
        (Tmp(dir), path, watch, ring, metrics)
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
        let fifo = t.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = t.0.join("link");
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
