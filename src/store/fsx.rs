//! Thin, safe wrappers over the syscalls the store needs: `openat2` beneath a root, extended
//! attributes on a file descriptor, and directory reading.
//!
//! Nothing here knows about keys or S3; callers pass paths that `key.rs` validated.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};

/// Opens `path` (relative, no leading `/`; `""` or `.` is the root itself) beneath `root`.
///
/// `RESOLVE_BENEATH` makes the kernel refuse any resolution that leaves `root` (absolute
/// symlinks, `..` past the root) with EXDEV; `RESOLVE_NO_MAGICLINKS` refuses `/proc` links.
/// A symlink whose target stays beneath `root` is followed unless `O_NOFOLLOW` is given.
pub fn open_beneath(root: BorrowedFd<'_>, path: &str, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { "." } else { path };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match nix::fcntl::openat2(root, path, how) {
            Ok(fd) => return Ok(fd),
            // openat2 asks callers to retry on EAGAIN (a concurrent rename raced the lookup).
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Like [`open_beneath`], but refuses to traverse any symbolic link (`RESOLVE_NO_SYMLINKS`):
/// ELOOP when a component of `path`, the last one included, is a link. The fast path of
/// [`super::resolve::open`]: a path without links cannot reach anything its names do not say.
pub fn open_beneath_no_symlinks(root: BorrowedFd<'_>, path: &str, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { "." } else { path };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_SYMLINKS);
    loop {
        match nix::fcntl::openat2(root, path, how) {
            Ok(fd) => return Ok(fd),
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Like [`open_beneath_no_symlinks`], but only when every component of `path` is already
/// in the kernel's lookup cache (`RESOLVE_CACHED`, Linux 5.12), so that the call cannot
/// wait on a device or a server. `Ok(None)`: the lookup would have to wait (EAGAIN), a
/// rename raced it, the kernel is older (EINVAL), or the path traverses a symbolic link
/// (ELOOP: only the blocking resolver may follow links); the caller retries on a blocking
/// thread, which also reports the real error.
pub fn open_beneath_cached(root: BorrowedFd<'_>, path: &str, flags: OFlag) -> io::Result<Option<OwnedFd>> {
    let path = if path.is_empty() { "." } else { path };
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::from_bits_retain(libc::RESOLVE_CACHED),
    );
    match nix::fcntl::openat2(root, path, how) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::Error::EAGAIN | nix::Error::EINTR | nix::Error::EINVAL | nix::Error::ELOOP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `openat(dir, name, flags | O_NOFOLLOW)`: one entry of `dir`, never what a link points
/// to (ELOOP for a link, or ENOTDIR with `O_DIRECTORY`). `name` is a single component.
pub fn open_child<P: ?Sized + nix::NixPath>(
    dir: BorrowedFd<'_>,
    name: &P,
    flags: OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    loop {
        match nix::fcntl::openat(
            dir,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ) {
            Err(nix::Error::EINTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// Opens the directory `name` of `dir` without following a link (see [`open_child`]).
pub fn open_child_dir(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    open_child(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
}

/// The target of the symbolic link `name` in `dir` (EINVAL when it is not a link).
pub fn readlink_at<P: ?Sized + nix::NixPath>(dir: BorrowedFd<'_>, name: &P) -> io::Result<Vec<u8>> {
    nix::fcntl::readlinkat(dir, name).map(std::os::unix::ffi::OsStringExt::into_vec).map_err(Into::into)
}

/// The identity of an open file: `(st_dev, st_ino)`.
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    fstat(fd).map(|st| (st.st_dev, st.st_ino))
}

/// Removes `name` in `dir` and, when it is a directory, everything beneath it, through
/// descriptors only: each directory is opened `O_NOFOLLOW` relative to its parent's handle
/// and emptied with `unlinkat`, so a link (or a directory swapped for one meanwhile) is
/// removed as a link and nothing it points to is touched, wherever it points.
///
/// `depth` is how many directory levels may be removed (1: `name` itself, holding no
/// directory). A directory deeper than that is left in place, and the call then fails
/// with ENOTEMPTY after removing everything else it could. ENOENT for `name` is success.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &str, depth: usize) -> io::Result<()> {
    let sub = match open_child_dir(dir, name) {
        Ok(fd) => fd,
        // Not a directory (a file, a link, a FIFO): the entry itself goes.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            return match unlink_at(dir, name, false) {
                // It became a directory meanwhile: leave it (the caller sees ENOTEMPTY).
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Err(io::Error::from_raw_os_error(libc::ENOTEMPTY)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r,
            };
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if depth == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
    }
    let mut first_err = None;
    for e in read_dir(sub.as_fd())? {
        let Ok(child) = std::str::from_utf8(&e.name) else {
            first_err.get_or_insert(io::Error::from_raw_os_error(libc::ENOTEMPTY));
            continue;
        };
        if let Err(e) = remove_tree_at(sub.as_fd(), child, depth - 1) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    drop(sub);
    match unlink_at(dir, name, true) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        // Swapped for a link or a file after we emptied the directory: the link goes, not
        // its target (unlinkat never follows).
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => unlink_at(dir, name, false),
        r => r,
    }
}

/// True when the file system of `fd` keeps its metadata on this node (a local disk file
/// system, tmpfs or ramfs), so that a lookup found in the dentry cache needs no round trip
/// to a server. By `statfs` magic (linux/magic.h); NFS, FUSE, SMB, Ceph and anything
/// unknown are not local.
pub fn is_local_fs(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::statfs::FsType;
    const LOCAL: [FsType; 8] = [
        FsType(0xEF53),      // ext2, ext3, ext4
        FsType(0x5846_5342), // xfs
        FsType(0x9123_683E), // btrfs
        FsType(0x0102_1994), // tmpfs
        FsType(0x8584_58f6), // ramfs
        FsType(0xF2F5_2010), // f2fs
        FsType(0x2fc1_2fc1), // zfs
        FsType(0xca45_1a4e), // bcachefs
    ];
    let Ok(st) = nix::sys::statfs::fstatfs(fd) else { return false };
    LOCAL.contains(&st.filesystem_type())
}

/// Opens a directory beneath `root` for reading and as a base for `*at` calls.
pub fn open_dir(root: BorrowedFd<'_>, path: &str) -> io::Result<OwnedFd> {
    open_beneath(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
}

/// `fstat` on a descriptor.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    nix::sys::stat::fstat(fd).map_err(Into::into)
}

/// True when `st` is a regular file.
pub fn is_regular(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// True when `st` is a directory.
pub fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(st: &FileStat) -> i128 {
    i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec)
}

/// Status-change time (ctime) of `st` in nanoseconds since the epoch.
pub fn ctime_ns(st: &FileStat) -> i128 {
    i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec)
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reads extended attribute `name` of `fd`; `Ok(None)` when it is absent.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes; name is NUL-terminated.
        let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) => {
                // Ask for the size, then retry with a buffer that fits.
                // SAFETY: a zero-size query writes nothing.
                let need = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
                if need < 0 {
                    return Err(io::Error::last_os_error());
                }
                buf = vec![0u8; need as usize + 64];
            }
            _ => return Err(e),
        }
    }
}

/// Sets extended attribute `name` of `fd` to `value` (created or replaced).
pub fn set_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: value is a valid buffer of value.len() bytes; name is NUL-terminated.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Removes extended attribute `name` of `fd`; absent is not an error.
pub fn remove_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENODATA) { Ok(()) } else { Err(e) }
}

/// "Absent": what a lookup beneath a volume root answers when the name leads to nothing
/// the volume serves. ENOENT (missing), ENOTDIR (a component is a file), EXDEV (a link
/// that leaves the volume or is absolute: `RESOLVE_BENEATH` and [`super::resolve`] answer
/// so) and ELOOP (a link loop, or a link where none may be followed).
pub fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::EXDEV | libc::ELOOP))
}

/// "Unsupported, fall back": the kernel or the file system does not do this call or one of
/// its flags (`renameat2` flags, `O_TMPFILE`, `copy_file_range`): EOPNOTSUPP (the same
/// number as ENOTSUP on Linux), ENOSYS, and EINVAL (a flag it does not know). The caller
/// takes its slower way.
pub fn is_unsupported(errno: i32) -> bool {
    matches!(errno, libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
}

/// "No copy offload between these files, copy the bytes": [`is_unsupported`], or EXDEV
/// (another file system) or EBADF (a descriptor the call does not take, e.g. `O_APPEND`),
/// as `copy_file_range` and `FICLONE` answer.
pub fn is_no_offload(errno: i32) -> bool {
    is_unsupported(errno) || matches!(errno, libc::EXDEV | libc::EBADF)
}

/// True when an errno says "this file system has no (user) extended attributes".
pub fn is_xattr_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::ENOSYS))
}

/// FUSE network file systems such as sshfs report SFTP's generic failure as EPERM: an
/// exclusive create or a mkdir that loses a race with another node comes back as EPERM, not
/// EEXIST, and an rmdir of a non-empty directory as EPERM, not ENOTEMPTY. When the name
/// exists, give back the errno a local file system would have given (`when_exists`).
fn refine_eperm(dir: BorrowedFd<'_>, name: &str, e: nix::Error, when_exists: nix::Error) -> io::Error {
    if e == nix::Error::EPERM && lstat_at(dir, name.as_ref()).is_ok() {
        return when_exists.into();
    }
    e.into()
}

/// `mkdirat(dir, name, mode)`; EEXIST is returned as an error for the caller to judge.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode))
        .map_err(|e| refine_eperm(dir, name, e, nix::Error::EEXIST))
}

/// Creates `name` in `dir` exclusively (`O_CREAT|O_EXCL` plus `flags`); EEXIST when it
/// exists, on network file systems too.
pub fn create_excl(dir: BorrowedFd<'_>, name: &str, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(|e| refine_eperm(dir, name, e, nix::Error::EEXIST))
}

/// `renameat(from_dir, from, to_dir, to)`: atomically replaces `to`.
pub fn rename_at(from_dir: BorrowedFd<'_>, from: &str, to_dir: BorrowedFd<'_>, to: &str) -> io::Result<()> {
    nix::fcntl::renameat(from_dir, from, to_dir, to).map_err(Into::into)
}

/// Gives the file `from` (in `from_dir`) the name `to` (in `to_dir`) only when `to` does
/// not exist: EEXIST otherwise, decided by the file system in one step (SPEC.md: exactly
/// one `If-None-Match: *` creator wins). On success `from` is gone.
///
/// `renameat2(RENAME_NOREPLACE)` where the file system has it (local ones, FUSE since
/// 4.x); else `linkat` then `unlinkat` of `from` (NFS, which has no renameat2 flag but
/// whose LINK fails with EEXIST on the server). EOPNOTSUPP/EPERM/ENOSYS when neither
/// exists; the caller then needs another way to exclude.
pub fn rename_noreplace(from_dir: BorrowedFd<'_>, from: &str, to_dir: BorrowedFd<'_>, to: &str) -> io::Result<()> {
    match nix::fcntl::renameat2(from_dir, from, to_dir, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if is_unsupported(e as i32) => {}
        Err(e) => return Err(e.into()),
    }
    match nix::unistd::linkat(from_dir, from, to_dir, to, nix::fcntl::AtFlags::empty()) {
        Ok(()) => {}
        // NFSv3 retransmits a LINK whose reply was lost, and the retry finds its own
        // result: EEXIST for a link that was made. The same inode at both names is ours.
        Err(nix::Error::EEXIST) if same_file(from_dir, from, to_dir, to) => {}
        Err(e) => return Err(e.into()),
    }
    // The new name holds the file; a leftover temp name is removed by the sweep.
    let _ = unlink_at(from_dir, from, false);
    Ok(())
}

/// True when both names lead to one inode (not following a final link).
fn same_file(a_dir: BorrowedFd<'_>, a: &str, b_dir: BorrowedFd<'_>, b: &str) -> bool {
    match (lstat_at(a_dir, a.as_ref()), lstat_at(b_dir, b.as_ref())) {
        (Ok(x), Ok(y)) => (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino),
        _ => false,
    }
}

/// `unlinkat(dir, name)`; with `dir_too` it removes an (empty) directory instead.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &str, dir_too: bool) -> io::Result<()> {
    let flag = if dir_too { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
    nix::unistd::unlinkat(dir, name, flag)
        .map_err(|e| if dir_too { refine_eperm(dir, name, e, nix::Error::ENOTEMPTY) } else { e.into() })
}

/// Gives an `O_TMPFILE` file a name: `name` inside `dir`.
///
/// Uses `linkat` on `/proc/self/fd/N` (no capability needed); falls back to `AT_EMPTY_PATH`
/// where `/proc` is absent (that needs CAP_DAC_READ_SEARCH).
pub fn link_tmpfile(file: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let proc_path = cstr(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let target = cstr(name)?;
    // SAFETY: both paths are NUL-terminated; the descriptors are valid for the call.
    let r = unsafe {
        libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), dir.as_raw_fd(), target.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if r == 0 {
        return Ok(());
    }
    let first = io::Error::last_os_error();
    if first.raw_os_error() != Some(libc::ENOENT) {
        return Err(first);
    }
    // SAFETY: as above, with an empty source path and AT_EMPTY_PATH.
    let r =
        unsafe { libc::linkat(file.as_raw_fd(), c"".as_ptr(), dir.as_raw_fd(), target.as_ptr(), libc::AT_EMPTY_PATH) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// One entry of a directory: its name (raw bytes).
pub struct RawEntry {
    pub name: Vec<u8>,
}

/// Reads every entry of the directory open at `dir` (except `.` and `..`), in no order.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    read_dir_each(dir, |name, _| out.push(RawEntry { name: name.to_vec() }))?;
    Ok(out)
}

/// The inode number and `d_type` (as [`read_dir_each`] gives it) of the entry `name` of the
/// directory open at `dir`, as the directory itself lists it (read afresh, not through the
/// kernel's lookup cache); `None` when it has no such entry.
pub fn entry_ino(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<(u64, Option<nix::dir::Type>)>> {
    let mut d = reopen_dir(dir)?;
    for ent in d.iter() {
        let ent = ent?;
        if ent.file_name().to_bytes() == name.as_bytes() {
            return Ok(Some((ent.ino(), ent.file_type())));
        }
    }
    Ok(None)
}

/// Calls `f(name, d_type)` for every entry of the directory open at `dir` (except `.` and
/// `..`), in no order, without allocating per entry (a directory of a million names).
/// `d_type` is `DT_REG`, `DT_DIR`, `DT_LNK`, `DT_FIFO` for any other special file, or
/// `DT_UNKNOWN` where the file system does not tell.
pub fn read_dir_each(dir: BorrowedFd<'_>, mut f: impl FnMut(&[u8], u8)) -> io::Result<()> {
    let mut d = reopen_dir(dir)?;
    for ent in d.iter() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let d_type = match ent.file_type() {
            Some(nix::dir::Type::File) => libc::DT_REG,
            Some(nix::dir::Type::Directory) => libc::DT_DIR,
            Some(nix::dir::Type::Symlink) => libc::DT_LNK,
            Some(_) => libc::DT_FIFO, // any other special file: never an object
            None => libc::DT_UNKNOWN,
        };
        f(name, d_type);
    }
    Ok(())
}

/// True when the directory open at `dir` has no entry but `.` and `..`; stops at the
/// first one (a HEAD of `k/` must not read a directory of a million names).
pub fn dir_is_empty(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let mut d = reopen_dir(dir)?;
    for ent in d.iter() {
        let name = ent?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A fresh open of the directory, not a dup: a dup shares the read position, and some
/// network file systems (sshfs) cannot rewind a directory handle, so a long-lived handle
/// would list nothing the second time.
fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<nix::dir::Dir> {
    let fresh = nix::fcntl::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    Ok(nix::dir::Dir::from_fd(fresh)?)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, never what a link points to.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name.as_bytes(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Flushes a file's data and metadata (`fsync`).
pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(fd).map_err(Into::into)
}

/// Clones (reflinks) `len` bytes of `src` at `src_off` into `dst` at `dst_off` with the
/// `FICLONERANGE` ioctl: the blocks are shared, no data is copied and no space is used.
///
/// Offsets and `len` must be multiples of the file system's block size, except that `len`
/// may reach the end of `src`. Errors: EOPNOTSUPP / ENOTTY / EINVAL / EXDEV where the file
/// system (or the alignment) does not allow it; callers then copy instead.
pub fn clone_range(src: BorrowedFd<'_>, src_off: u64, len: u64, dst: BorrowedFd<'_>, dst_off: u64) -> io::Result<()> {
    let arg = libc::file_clone_range {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset: src_off,
        src_length: len,
        dest_offset: dst_off,
    };
    // SAFETY: `arg` is a valid file_clone_range for the duration of the call; both
    // descriptors are open.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONERANGE, &arg) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Sets a file's modification time to now (a heartbeat other daemons can see).
pub fn touch(fd: BorrowedFd<'_>) -> io::Result<()> {
    let now = nix::sys::time::TimeSpec::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
    );
    nix::sys::stat::futimens(fd, &now, &now).map_err(Into::into)
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod errno_tests {
    use super::*;

    #[test]
    fn errno_sets_are_the_named_ones() {
        for n in [libc::ENOENT, libc::ENOTDIR, libc::EXDEV, libc::ELOOP] {
            assert!(is_absent(&io::Error::from_raw_os_error(n)), "{n}");
        }
        assert!(!is_absent(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(libc::ENOTSUP == libc::EOPNOTSUPP && is_unsupported(libc::ENOTSUP));
        assert!(is_unsupported(libc::ENOSYS) && is_unsupported(libc::EINVAL) && !is_unsupported(libc::EXDEV));
        assert!(is_no_offload(libc::EXDEV) && is_no_offload(libc::EBADF) && !is_no_offload(libc::EPERM));
    }
}
