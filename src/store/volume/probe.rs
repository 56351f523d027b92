//! What opening a volume finds out: the internal directory made or opened without
//! following a link, and probes of the file system (extended attributes, `O_TMPFILE`,
//! case folding).

use super::*;

pub(super) fn probe_xattrs(tmp: BorrowedFd<'_>) -> bool {
    let name = format!("probe-{}", random_hex(8));
    let fd = match nix::fcntl::openat(
        tmp,
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(_) => return false,
    };
    let ok = fsx::set_xattr(fd.as_fd(), meta::META_XATTR, b"{}").is_ok();
    let _ = fsx::unlink_at(tmp, &name, false);
    ok
}

/// Whether an `O_TMPFILE` file made in `tmp` can be given a name that then leads to it: a
/// byte written, linked as a probe name, the descriptor closed, the name looked up (same
/// inode, same size) and removed. False on any refusal or mismatch. The descriptor is
/// closed first because that is where JuiceFS loses such a file: while it is open the name
/// works; its release removes the file, which the file system never recorded as linked.
pub(super) fn probe_tmpfile(tmp: BorrowedFd<'_>) -> bool {
    let Ok(fd) = nix::fcntl::openat(
        tmp,
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) else {
        return false;
    };
    if nix::unistd::write(&fd, b"p") != Ok(1) {
        return false;
    }
    let name = format!("probe-{}", random_hex(8));
    if fsx::link_tmpfile(fd.as_fd(), tmp, &name).is_err() {
        return false;
    }
    let Ok(ours) = fsx::identity(fd.as_fd()) else { return false };
    drop(fd);
    let ok =
        fsx::lstat_at(tmp, name.as_ref()).is_ok_and(|st| (st.st_dev, st.st_ino, st.st_size) == (ours.0, ours.1, 1));
    let _ = fsx::unlink_at(tmp, &name, false);
    ok
}

pub(super) fn probe_xattrs_read(root: BorrowedFd<'_>) -> bool {
    match fsx::get_xattr(root, DIR_XATTR) {
        Ok(_) => true,
        Err(e) => !fsx::is_xattr_unsupported(&e),
    }
}

/// Why the internal directory (or one of its subdirectories) cannot be used.
pub(super) enum InternalError {
    Link,
    NotDir,
    Io(io::Error),
}

impl InternalError {
    pub(super) fn shown(&self, at: &str) -> String {
        match self {
            InternalError::Link => format!(
                "{at} is a symbolic link: s3vol refuses to use an internal directory it does not own (remove the link)"
            ),
            InternalError::NotDir => format!("{at} is not a directory"),
            InternalError::Io(e) => format!("cannot open {at}: {e}"),
        }
    }
}

/// Makes (when missing and the volume is writable) and opens the directory `name` of
/// `parent`, never following a link. `Ok(None)`: missing on a read-only volume. Sets
/// `read_only` when the file system refuses the `mkdir` for lack of write access.
pub(super) fn open_or_make(
    parent: BorrowedFd<'_>,
    name: &str,
    read_only: &mut bool,
) -> std::result::Result<Option<OwnedFd>, InternalError> {
    match fsx::mkdir_at(parent, name, 0o700) {
        // EEXIST also for a link of that name, dangling or not: mkdirat never follows the
        // last component.
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS | libc::EACCES | libc::EPERM)) => *read_only = true,
        Err(e) => return Err(InternalError::Io(e)),
    }
    match fsx::open_child_dir(parent, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && *read_only => Ok(None),
        Err(e) => Err(match fsx::lstat_at(parent, name.as_ref()).map(|st| st.st_mode & libc::S_IFMT) {
            Ok(libc::S_IFLNK) => InternalError::Link,
            Ok(m) if m != libc::S_IFDIR => InternalError::NotDir,
            _ => InternalError::Io(e),
        }),
    }
}

/// True when looking up `name` with its ASCII letters' case swapped also finds the
/// directory `id` in `root`: the root's lookups ignore case (vfat, CIFS, ext4 casefold).
pub(super) fn folds_case(root: BorrowedFd<'_>, name: &str, id: (u64, u64)) -> bool {
    let swapped: String = name
        .chars()
        .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect();
    swapped != name && fsx::lstat_at(root, swapped.as_ref()).is_ok_and(|st| (st.st_dev, st.st_ino) == id)
}
