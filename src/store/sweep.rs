//! The background sweep of a volume's internal directory (SPEC.md "Multipart uploads":
//! abandoned uploads are removed after a configurable age; "Writes are atomic": no temp
//! file stays behind).
//!
//! Removes, on one volume: uploads idle for longer than the configured age (no part,
//! manifest or claim activity), completion records older than [`DONE_KEEP_SECS`] (they
//! only serve retried Completes), leftovers of completed uploads, and temp files in
//! `<internal>/tmp` untouched for [`TMP_MAX_AGE_SECS`] (a crashed write's named temp file),
//! and empty directories s3vol made as parents of keys (marked `auto`) that stayed empty
//! for [`EMPTY_DIR_MAX_AGE_SECS`]: a DeleteObject(s) cut by a crash before it removed them
//! would otherwise list them as `dir/` objects forever. Directories a pod made, and `k/`
//! directory objects, are never removed.
//! An upload with a live claim (a Complete in progress, on any daemon) is never touched.
//! It never removes anything outside the internal directory: it works only through the
//! handles of `tmp/` and `multipart/` opened at start (never a path), removes entries with
//! `unlinkat` (a link goes, not its target), and skips a volume whose internal directory a
//! pod renamed or swapped ([`Volume::internal_intact`]).

use std::os::fd::{AsFd, BorrowedFd};

use super::assemble::{CLAIM, CLAIM_STALE_SECS, DONE};
use super::multipart;
use super::volume::{DirMark, Volume};
use super::{Result, fsx};
use tracing::warn;

/// How long a completion record answers retried Completes (seconds): one day.
pub const DONE_KEEP_SECS: i64 = 86_400;
/// Age (seconds since last modification) after which a temp file is a crash leftover:
/// six hours. A live write modifies its temp file continuously.
pub const TMP_MAX_AGE_SECS: i64 = 6 * 3600;

/// Age (seconds since last modification) after which an empty directory s3vol made is a
/// leftover of an interrupted delete: one hour. A write that has just made one links its
/// file into it within milliseconds.
pub const EMPTY_DIR_MAX_AGE_SECS: i64 = 3600;
/// Directories one sweep looks at, at most, per volume (bounds the walk of a huge tree).
const DIR_WALK_BUDGET: usize = 200_000;
/// Deepest directory level the walk descends to (a 1024-byte key has at most 512).
const DIR_WALK_DEPTH: usize = 512;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Idle uploads removed with their parts.
    pub uploads: usize,
    /// Completion records removed.
    pub records: usize,
    /// Temp files removed.
    pub temps: usize,
    /// Empty directories s3vol made that were removed.
    pub dirs: usize,
}

/// Sweeps volume `vol` at time `now` (seconds since the epoch), removing uploads idle for
/// more than `max_age_secs`. Errors: the multipart or temp directory cannot be read.
pub fn sweep(vol: &Volume, max_age_secs: i64, now: i64) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    if vol.read_only {
        return Ok(report);
    }
    if !vol.internal_intact() {
        warn!(
            volume = %vol.name,
            "the internal directory, or its tmp/ or multipart/, was replaced (renamed, removed or made a link): not sweeping; /ready reports the volume"
        );
        return Ok(report);
    }
    for e in fsx::read_dir(vol.uploads.as_fd())? {
        let Ok(id) = std::str::from_utf8(&e.name) else { continue };
        let Ok(dir) = multipart::open_upload(vol, id) else { continue };
        let Ok(entries) = fsx::read_dir(dir.as_fd()) else { continue };
        let mtime = |name: &str| {
            nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .ok()
                .map(|s| s.st_mtime)
        };
        let names: Vec<String> = entries.iter().filter_map(|e| String::from_utf8(e.name.clone()).ok()).collect();
        if let Some(done_at) = names.iter().any(|n| n == DONE).then(|| mtime(DONE)).flatten() {
            if now - done_at > DONE_KEEP_SECS.min(max_age_secs) {
                drop(dir);
                multipart::remove_upload(vol, id)?;
                report.records += 1;
            } else if names.len() > 1 {
                // A completion interrupted during its cleanup.
                vol.space.add_used(-multipart::remove_files(dir.as_fd(), |n| n != DONE));
            }
            continue;
        }
        if names.iter().any(|n| n == CLAIM) && mtime(CLAIM).is_some_and(|t| now - t <= CLAIM_STALE_SECS) {
            continue; // a Complete is running somewhere
        }
        let dir_mtime = fsx::fstat(dir.as_fd()).map(|s| s.st_mtime).unwrap_or(now);
        let last = names.iter().filter_map(|n| mtime(n)).fold(dir_mtime, i64::max);
        if now - last > max_age_secs {
            drop(dir);
            multipart::remove_upload(vol, id)?;
            report.uploads += 1;
        }
    }
    for e in fsx::read_dir(vol.tmp_dir())? {
        let Ok(name) = std::str::from_utf8(&e.name) else { continue };
        let Ok(st) = nix::sys::stat::fstatat(vol.tmp_dir(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        if fsx::is_regular(&st)
            && now - st.st_mtime > TMP_MAX_AGE_SECS
            && fsx::unlink_at(vol.tmp_dir(), name, false).is_ok()
        {
            report.temps += 1;
        }
    }
    if vol.xattrs {
        let mut walk = DirWalk { vol, now, budget: DIR_WALK_BUDGET, removed: 0 };
        let root = fsx::open_dir(vol.root(), "")?;
        walk.visit(root.as_fd(), 0);
        report.dirs = walk.removed;
    }
    Ok(report)
}

/// The walk that removes old empty `auto` directories, deepest first.
struct DirWalk<'v> {
    vol: &'v Volume,
    now: i64,
    /// Directories still to look at in this sweep.
    budget: usize,
    removed: usize,
}

impl DirWalk<'_> {
    /// Visits the subdirectories of `dir` (at `depth`, the root being 0) and removes those
    /// that are (or became) empty `auto` directories. Returns true when `dir` has no
    /// entries left after that and one of its own was removed here, i.e. it became empty
    /// now (its mtime just changed, so its age no longer tells how long it was empty).
    fn visit(&mut self, dir: BorrowedFd<'_>, depth: usize) -> bool {
        let mut subdirs = Vec::new();
        let mut others = 0usize;
        let listed = fsx::read_dir_each(dir, |name, d_type| match d_type {
            libc::DT_DIR | libc::DT_UNKNOWN => subdirs.push(name.to_vec()),
            _ => others += 1,
        });
        if listed.is_err() {
            return false;
        }
        let mut removed_here = 0usize;
        for name in &subdirs {
            let Ok(name) = std::str::from_utf8(name) else {
                others += 1;
                continue;
            };
            // Never the internal directory (by name, and the root through a link by identity).
            if self.budget == 0 || depth >= DIR_WALK_DEPTH || self.vol.check_entry(dir, name).is_err() {
                others += 1;
                continue;
            }
            // O_NOFOLLOW: a link is not walked (and a DT_UNKNOWN file fails to open as one).
            let Ok(sub) = fsx::open_child_dir(dir, name) else {
                others += 1;
                continue;
            };
            self.budget -= 1;
            let emptied = self.visit(sub.as_fd(), depth + 1);
            if self.removable(sub.as_fd(), emptied) && fsx::unlink_at(dir, name, true).is_ok() {
                self.removed += 1;
                removed_here += 1;
            } else {
                others += 1;
            }
        }
        removed_here > 0 && others == 0
    }

    /// True for an empty directory s3vol made as a parent, empty for long enough (or just
    /// emptied by this walk).
    fn removable(&self, dir: BorrowedFd<'_>, emptied: bool) -> bool {
        if self.vol.dir_mark(dir) != Some(DirMark::Auto) || !fsx::dir_is_empty(dir).unwrap_or(false) {
            return false;
        }
        emptied || fsx::fstat(dir).is_ok_and(|st| self.now - st.st_mtime > EMPTY_DIR_MAX_AGE_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VolumeSettings;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_swapped_internal_directory_is_neither_swept_nor_ready_and_nothing_outside_goes() {
        let base = crate::store::scratch::Scratch::new("sweep-swap");
        let (root, outside) = (base.join("vol"), base.join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(outside.join("0123456789abcdef0123456789abcdef")).unwrap();
        std::fs::write(outside.join("old-temp"), b"outside").unwrap();
        let vol = Volume::open("t", &root, VolumeSettings::default()).unwrap();
        assert!(vol.internal_intact() && crate::store::status::of_volume(&vol).ready());
        // A crashed write's temp file, old enough to go, in the real tmp/.
        std::fs::write(root.join(".s3vol/tmp/w-old"), b"leftover").unwrap();
        let far_future = fsx::now_secs() + 10 * TMP_MAX_AGE_SECS;

        // The pod swaps tmp/ and multipart/ for links to the outside.
        for sub in ["tmp", "multipart"] {
            std::fs::rename(root.join(".s3vol").join(sub), root.join(format!(".s3vol/{sub}-moved"))).unwrap();
            symlink(&outside, root.join(".s3vol").join(sub)).unwrap();
        }
        assert!(!vol.internal_intact());
        assert!(!crate::store::status::of_volume(&vol).ready(), "/ready reports the volume");
        assert_eq!(sweep(&vol, 1, far_future).unwrap(), SweepReport::default());
        assert!(outside.join("old-temp").exists() && outside.join("0123456789abcdef0123456789abcdef").is_dir());

        // Put back, the sweep works on the handles it always held.
        for sub in ["tmp", "multipart"] {
            std::fs::remove_file(root.join(".s3vol").join(sub)).unwrap();
            std::fs::rename(root.join(format!(".s3vol/{sub}-moved")), root.join(".s3vol").join(sub)).unwrap();
        }
        assert!(vol.internal_intact());
        assert_eq!(sweep(&vol, 1, far_future).unwrap().temps, 1);
        assert!(!root.join(".s3vol/tmp/w-old").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
