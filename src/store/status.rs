//! The state of each volume as the store knows it: served or not, mount point, read-only,
//! writable now, capacity, staged uploads, and what the background scan counted. Plain
//! data: the admin listener shapes it into `/status` JSON and `/metrics` gauges.
//!
//! Everything here is blocking file-system work (statvfs, a probe file, one directory
//! read); callers run it on the blocking pool. It never walks a volume's tree, so its cost
//! does not grow with the number of objects: the counts come from the volume's scan
//! ([`super::scan`]).

use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::fsx;
use super::scan::CensusReport;
use super::volume::{Volume, VolumeState, Volumes, is_mount_point, random_hex};

/// Sizes of a volume's file system, in bytes (statvfs).
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Size of the file system (`f_blocks * f_frsize`).
    pub total: u64,
    /// Space available to an unprivileged writer (`f_bavail * f_frsize`).
    pub free: u64,
    /// Bytes in use: the volume's measured usage when it has a quota, else the file
    /// system's (`total - free`).
    pub used: u64,
}

/// One volume's state.
#[derive(Debug, Clone)]
pub struct VolumeStatus {
    /// The bucket name.
    pub name: String,
    /// The configured directory.
    pub path: String,
    /// Served (true) or answering 503 ServiceUnavailable (false).
    pub online: bool,
    /// Why the volume is not served (only when `online` is false).
    pub reason: Option<String>,
    /// The directory is a mount point now (another device than its parent).
    pub mounted: bool,
    /// The file system is mounted read-only (or the internal directory cannot be made):
    /// served for reads only.
    pub read_only: bool,
    /// A probe file could be created and removed in the internal directory just now, and
    /// the internal directory is still the one s3vol holds ([`Volume::internal_intact`]).
    pub writable: bool,
    /// File-system sizes; absent when statvfs failed.
    pub capacity: Option<Capacity>,
    /// The configured quota in bytes, if any.
    pub quota: Option<u64>,
    /// Multipart uploads staged on the volume (started, not yet completed or aborted),
    /// by every daemon sharing it; absent when the staging directory cannot be read.
    pub multipart_uploads: Option<u64>,
    /// Object counts and scan progress; absent for a volume that is not served.
    pub census: Option<CensusReport>,
}

impl VolumeStatus {
    /// Ready means served and writable (SPEC.md: `/ready` reports a read-only volume).
    pub fn ready(&self) -> bool {
        self.online && !self.read_only && self.writable
    }
}

/// The status of every volume, by name. Blocking.
pub fn all(volumes: &Volumes) -> Vec<VolumeStatus> {
    volumes.all().into_iter().map(|(name, state)| of_state(&name, &state)).collect()
}

/// The status of one volume in `state`. Blocking (one volume's file system only); a
/// stalled volume is reported without touching its file system.
pub fn of_state(name: &str, state: &VolumeState) -> VolumeStatus {
    match state {
        VolumeState::Online(v) if v.is_stalled() => unanswered(name, &v.path.display().to_string()),
        VolumeState::Online(v) => of_volume(v),
        VolumeState::Unavailable(reason, path) => VolumeStatus {
            mounted: is_mount_point(path),
            reason: Some(reason.clone()),
            ..offline(name, &path.display().to_string())
        },
    }
}

/// The status of a volume whose file system did not answer its check in time.
pub fn unanswered(name: &str, path: &str) -> VolumeStatus {
    VolumeStatus { reason: Some("the file system does not answer".into()), ..offline(name, path) }
}

fn offline(name: &str, path: &str) -> VolumeStatus {
    VolumeStatus {
        name: name.to_owned(),
        path: path.to_owned(),
        online: false,
        reason: None,
        mounted: false,
        read_only: false,
        writable: false,
        capacity: None,
        quota: None,
        multipart_uploads: None,
        census: None,
    }
}

/// The status of one served volume. Blocking.
pub fn of_volume(v: &Volume) -> VolumeStatus {
    // Under a quota, `used` is the volume's measured usage, not the whole file system's.
    let capacity = v.space_report().ok().map(|r| Capacity { total: r.capacity, free: r.free, used: r.used });
    // Read now, not at open: a remount shows at once, before the liveness check re-opens.
    let read_only = v.read_only_now();
    let intact = v.internal_intact();
    VolumeStatus {
        name: v.name.clone(),
        path: v.path.display().to_string(),
        online: intact,
        reason: (!intact).then(|| "the internal directory was renamed, removed or replaced".into()),
        mounted: is_mount_point(&v.path),
        read_only,
        writable: !read_only && intact && probe_write(v),
        capacity,
        quota: v.settings.limits.quota,
        multipart_uploads: staged_uploads(v),
        census: Some(v.space.census.report()),
    }
}

/// Creates and removes a small file in the temp directory: the volume accepts writes now
/// (a network volume that went read-only or stale since start fails this).
fn probe_write(v: &Volume) -> bool {
    let name = format!("ready-{}", random_hex(8));
    match nix::fcntl::openat(
        v.tmp_dir(),
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => {
            drop(fd);
            fsx::unlink_at(v.tmp_dir(), &name, false).is_ok()
        }
        Err(_) => false,
    }
}

/// Upload directories in the staging directory (names of 32 lower-case hex digits).
fn staged_uploads(v: &Volume) -> Option<u64> {
    let entries = fsx::read_dir(v.uploads.as_fd()).ok()?;
    let is_id = |n: &[u8]| n.len() == 32 && n.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    Some(entries.iter().filter(|e| is_id(&e.name)).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VolumeSettings;

    #[test]
    fn a_fresh_volume_is_online_writable_and_has_no_uploads() {
        let scratch = crate::store::scratch::Scratch::new("status");
        let dir = scratch.to_path_buf();
        let missing = dir.join("missing");
        let vols = Volumes::open(
            vec![
                (
                    "vol-a".into(),
                    dir.clone(),
                    VolumeSettings {
                        limits: crate::store::quota::Limits { quota: Some(1 << 30), ..Default::default() },
                        ..Default::default()
                    },
                ),
                ("vol-b".into(), missing, VolumeSettings::default()),
            ],
            None,
        );
        let st = all(&vols);
        assert_eq!(st.len(), 2);
        let a = &st[0];
        assert!(a.online && a.writable && a.ready(), "{a:?}");
        assert_eq!(a.multipart_uploads, Some(0));
        assert_eq!(a.quota, Some(1 << 30));
        let c = a.capacity.unwrap();
        assert!(c.total >= c.free && c.total >= c.used && c.total > 0, "{c:?}");
        let b = &st[1];
        assert!(!b.online && !b.ready() && b.reason.is_some(), "{b:?}");
        assert!(b.path.ends_with("missing"));
        // The probe leaves nothing behind.
        assert_eq!(std::fs::read_dir(dir.join(".s3vol/tmp")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
