//! Mount state of a volume's directory: its identity, whether it is a mount root, and
//! whether its file system is mounted read-only.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// True when `path` is a mount point now: the root of a mounted file system (statx's
/// `STATX_ATTR_MOUNT_ROOT`, Linux 5.8; before that, a device differing from the parent's).
/// A bind mount of a directory of the same file system counts too. Blocking.
pub(in crate::store) fn is_mount_point(path: &Path) -> bool {
    mount_state_path(path).is_ok_and(|m| m.mount_root)
}

/// What statx says about a directory: its identity and whether it is a mount root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) struct MountState {
    /// `(st_dev, st_ino)`, comparable with [`fsx::identity`].
    pub id: (u64, u64),
    /// The root of a mount.
    pub mount_root: bool,
}

/// [`MountState`] of `path` (links followed, as the volume's own open follows them).
pub(in crate::store) fn mount_state_path(path: &Path) -> io::Result<MountState> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    statx_mount(libc::AT_FDCWD, &c, 0).or_else(|e| {
        // Without statx (old kernels, some sandboxes): the device/inode guess.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata(path)?;
        let parent = std::fs::metadata(path.join(".."))?;
        Ok(MountState { id: (me.dev(), me.ino()), mount_root: me.dev() != parent.dev() || me.ino() == parent.ino() })
    })
}

/// [`MountState`] of an open directory.
pub(in crate::store) fn mount_state_fd(fd: BorrowedFd<'_>) -> io::Result<MountState> {
    use std::os::fd::AsRawFd;
    statx_mount(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn statx_mount(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<MountState> {
    // SAFETY: `stx` is plain data the kernel fills in; `path` is a valid C string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statx(dirfd, path.as_ptr(), flags, libc::STATX_INO, &mut stx) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & bit == 0 {
        // A kernel before 5.8 does not report the attribute.
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(MountState { id: (dev, stx.stx_ino), mount_root: stx.stx_attributes & bit != 0 })
}

/// The file system's `ST_RDONLY` flag (statvfs of an open handle).
pub(in crate::store) fn fs_read_only(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let vfs = nix::sys::statvfs::fstatvfs(fd)?;
    Ok(vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}
