//! Opening a key's path beneath a volume root without ever reaching the volume's internal
//! directory (SPEC.md "Keys are paths"; issue 12, item 6).
//!
//! `key.rs` refuses keys whose first segment names the internal directory, but a pod can
//! make links inside the volume (`self -> .`, `link -> .s3vol`) through which a harmless
//! looking key leads there, and `RESOLVE_BENEATH` only keeps a lookup inside the volume,
//! not out of one of its directories. So every lookup of a key's path goes through
//! [`open`]:
//!
//! - Fast path: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. A path without links goes
//!   exactly where its names say, and `key.rs` vouched for the names. One system call, as
//!   before: HEAD and GET of ordinary keys never take the slow path.
//! - Slow path, when the kernel answers ELOOP (some component is a link): this module walks
//!   the path itself, one component at a time, with `openat(O_NOFOLLOW)` from the handle of
//!   the directory before, splicing link targets into the walk. It refuses to step into
//!   the internal directory, by name at the root and by identity anywhere (the `(dev, ino)`
//!   of the internal directory, its `tmp/` and its `multipart/`, so a renamed or case-folded
//!   name is caught as well). `..` pops the walk's own stack of handles instead of asking
//!   the file system for a parent, so directories renamed during the walk cannot lead it
//!   anywhere its names did not; `..` at the root is EXDEV, as `RESOLVE_BENEATH` answers.
//!
//! What stays as it was: a link whose target stays inside the volume is followed; one that
//! leaves it, or has an absolute target, is EXDEV (invisible); more than 40 links is ELOOP.
//! The refusal to reach the internal directory is an [`io::Error`] for which
//! [`reaches_internal`] holds; the store maps it to [`super::Error::InternalDir`], and reads
//! turn that into "no such key".

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;

use super::fsx;

/// Links followed in one lookup before giving up with ELOOP (the kernel's MAXSYMLINKS).
pub const MAX_LINKS: usize = 40;

/// What a key's lookup must not enter on one volume.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// Name of the internal directory at the volume root.
    pub name: String,
    /// `(st_dev, st_ino)` of the volume root.
    pub root: (u64, u64),
    /// `(st_dev, st_ino)` of the internal directory, its `tmp/` and its `multipart/` (empty
    /// when the volume is read-only and has no internal directory).
    pub forbidden: Vec<(u64, u64)>,
    /// The root's lookups ignore case (vfat, CIFS, an ext4 casefold directory): `.S3VOL`
    /// opens the internal directory too, so every lookup takes the slow path, which checks
    /// identities, not only names.
    pub folds_case: bool,
}

impl Fence {
    /// True when `name`, looked up in the volume root, would be the internal directory.
    pub fn is_internal_name(&self, name: &[u8]) -> bool {
        name == self.name.as_bytes() || (self.folds_case && name.eq_ignore_ascii_case(self.name.as_bytes()))
    }

    /// Refuses a path whose first component, looked up in the root without following a
    /// link, is the internal directory under another name (a pod renamed `.s3vol`: its
    /// handles still point there, so `renamed/multipart/...` would reach staged parts).
    /// Also a one-component path (a listing descending into the renamed directory). One
    /// `fstatat`; a lookup error is left to the caller's open.
    pub fn check_first(&self, root: BorrowedFd<'_>, path: &str) -> io::Result<()> {
        let first = path.split_once('/').map_or(path, |(f, _)| f);
        if first.is_empty() || self.forbidden.is_empty() {
            return Ok(());
        }
        if let Ok(st) = fsx::lstat_at(root, OsStr::new(first))
            && self.forbidden.contains(&(st.st_dev, st.st_ino))
        {
            return Err(refusal());
        }
        Ok(())
    }

    /// [`Fence::check_first`] on an already opened first component.
    pub fn check_first_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.check(fd).map(|_| ())
    }

    /// The `fstat` of `fd`, or the refusal when it is the internal directory or one of its
    /// subdirectories s3vol uses.
    fn check(&self, fd: BorrowedFd<'_>) -> io::Result<FileStat> {
        let st = fsx::fstat(fd)?;
        if self.forbidden.contains(&(st.st_dev, st.st_ino)) {
            return Err(refusal());
        }
        Ok(st)
    }
}

/// The payload of the error that refuses a lookup reaching the internal directory.
#[derive(Debug)]
pub struct ReachesInternal;

impl std::fmt::Display for ReachesInternal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the path reaches the volume's internal directory")
    }
}

impl std::error::Error for ReachesInternal {}

/// The refusal itself: an error for which [`reaches_internal`] holds.
pub fn refusal() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, ReachesInternal)
}

/// True when `e` is [`open`]'s refusal to reach the internal directory.
pub fn reaches_internal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ReachesInternal>())
}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

/// Opens `path` (relative, `""` for the root; no `O_CREAT`) beneath `root` with `flags`,
/// following links that stay inside the volume unless `flags` has `O_NOFOLLOW`.
///
/// Errors: the refusal of [`reaches_internal`] when the lookup would enter the internal
/// directory (or end on it); EXDEV for a link that leaves the volume or is absolute; ELOOP
/// past [`MAX_LINKS`] links, or for a final link under `O_NOFOLLOW`; otherwise the error of
/// the component that failed (ENOENT, ENOTDIR, EACCES, ...).
pub fn open(root: BorrowedFd<'_>, fence: &Fence, path: &str, flags: OFlag) -> io::Result<OwnedFd> {
    debug_assert!(!flags.contains(OFlag::O_CREAT), "lookups never create");
    if !fence.folds_case {
        fence.check_first(root, path)?;
        match fsx::open_beneath_no_symlinks(root, path, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {}
            r => return r,
        }
    }
    walk(root, fence, path, flags)
}

/// The slow path of [`open`]: the path walked component by component (see the module doc).
fn walk(root: BorrowedFd<'_>, fence: &Fence, path: &str, flags: OFlag) -> io::Result<OwnedFd> {
    let follow_last = !flags.contains(OFlag::O_NOFOLLOW);
    let mut todo: VecDeque<Vec<u8>> = path.split('/').map(|c| c.as_bytes().to_vec()).collect();
    // Directories entered below the root; empty means "at the root".
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0usize;
    loop {
        let cur = stack.last().map_or(root, AsFd::as_fd);
        let Some(comp) = todo.pop_front() else {
            // The walk ended on a directory ("", ".", "..", or a link to one).
            let fd = fsx::open_child(cur, ".", flags, 0)?;
            fence.check(fd.as_fd())?;
            return Ok(fd);
        };
        match comp.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if stack.pop().is_none() {
                    return Err(errno(libc::EXDEV)); // above the root: outside the volume
                }
                continue;
            }
            _ => {}
        }
        if stack.is_empty() && fence.is_internal_name(&comp) {
            return Err(refusal());
        }
        let name = OsStr::from_bytes(&comp);
        // Only empty components (a trailing '/') left: this is the last one, and it must be
        // a directory, as the kernel reads `name/`.
        let last = todo.iter().all(Vec::is_empty);
        let trailing_slash = !todo.is_empty();
        if last {
            let want = if trailing_slash { flags | OFlag::O_DIRECTORY } else { flags };
            match fsx::open_child(cur, name, want, 0) {
                Ok(fd) => {
                    let st = fence.check(fd.as_fd())?;
                    // `O_PATH | O_NOFOLLOW` opens a link itself: follow it like any other.
                    if !(follow_last && st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
                        return Ok(fd);
                    }
                }
                // A link (ELOOP, or ENOTDIR under O_DIRECTORY), or a real error.
                Err(e) if follow_last && matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {}
                Err(e) => return Err(e),
            }
        } else {
            match fsx::open_child(cur, name, OFlag::O_PATH | OFlag::O_DIRECTORY, 0) {
                Ok(fd) => {
                    fence.check(fd.as_fd())?;
                    stack.push(fd);
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {} // a link, or a file
                Err(e) => return Err(e),
            }
        }
        let target = match fsx::readlink_at(cur, name) {
            Ok(t) => t,
            // Not a link after all: a file where a directory was needed.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(errno(libc::ENOTDIR)),
            Err(e) => return Err(e),
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(errno(libc::ELOOP));
        }
        match target.first() {
            None => return Err(errno(libc::ENOENT)),
            Some(b'/') => return Err(errno(libc::EXDEV)),
            Some(_) => {}
        }
        for c in target.split(|&b| b == b'/').rev() {
            todo.push_front(c.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        /// Removed when the fixture is dropped.
        dir: crate::store::scratch::Scratch,
        root: OwnedFd,
        fence: Fence,
    }

    /// A volume with an internal directory and the links a hostile pod would make.
    fn fixture(tag: &str) -> Fixture {
        let dir = crate::store::scratch::Scratch::new(&format!("resolve-{tag}"));
        std::fs::create_dir_all(dir.join(".s3vol/tmp")).unwrap();
        std::fs::create_dir_all(dir.join(".s3vol/multipart/u1")).unwrap();
        std::fs::write(dir.join(".s3vol/multipart/u1/part"), b"staged").unwrap();
        std::fs::create_dir_all(dir.join("d/e")).unwrap();
        std::fs::write(dir.join("d/f.txt"), b"file").unwrap();
        symlink(".", dir.join("self")).unwrap();
        symlink(".s3vol", dir.join("link")).unwrap();
        symlink(".s3vol/multipart/u1/part", dir.join("partlink")).unwrap();
        symlink("..", dir.join("d/up")).unwrap();
        symlink("../..", dir.join("d/upup")).unwrap();
        symlink("/etc", dir.join("abs")).unwrap();
        symlink("d", dir.join("ok")).unwrap();
        symlink("d/f.txt", dir.join("okfile")).unwrap();
        symlink("loop2", dir.join("loop1")).unwrap();
        symlink("loop1", dir.join("loop2")).unwrap();
        symlink("up/.s3vol", dir.join("d/deep")).unwrap();
        std::fs::rename(dir.join(".s3vol/multipart"), dir.join(".s3vol/mp")).unwrap();
        // A pod renamed the staging directory: its identity still fences it.
        symlink(".s3vol/mp", dir.join("renamed")).unwrap();
        let root =
            nix::fcntl::open(&*dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
        let id = |p: &str| fsx::identity(fsx::open_dir(root.as_fd(), p).unwrap().as_fd()).unwrap();
        let fence = Fence {
            name: ".s3vol".into(),
            root: id(""),
            forbidden: vec![id(".s3vol"), id(".s3vol/tmp"), id(".s3vol/mp")],
            folds_case: false,
        };
        Fixture { dir, root, fence }
    }

    fn outcome(fx: &Fixture, path: &str, flags: OFlag) -> String {
        match open(fx.root.as_fd(), &fx.fence, path, flags) {
            Ok(fd) => {
                let st = fsx::fstat(fd.as_fd()).unwrap();
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG => "file".into(),
                    libc::S_IFDIR if (st.st_dev, st.st_ino) == fx.fence.root => "root".into(),
                    libc::S_IFDIR => "dir".into(),
                    m => format!("mode {m:o}"),
                }
            }
            Err(e) if reaches_internal(&e) => "internal".into(),
            Err(e) => nix::Error::from_raw(e.raw_os_error().unwrap_or(0)).desc().into(),
        }
    }

    #[test]
    fn links_inside_the_volume_are_followed_but_never_into_the_internal_directory() {
        let fx = fixture("table");
        let rd = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
        let table = [
            // Plain paths: the fast path, unchanged.
            ("d/f.txt", "file"),
            ("d", "dir"),
            ("", "root"),
            ("d/missing", "No such file or directory"),
            ("d/f.txt/x", "Not a directory"),
            // Links that stay inside and away from the internal directory: followed.
            ("self/d/f.txt", "file"),
            ("self/self/okfile", "file"),
            ("ok/f.txt", "file"),
            ("okfile", "file"),
            ("d/up/d/f.txt", "file"),
            ("self", "root"),
            ("d/up", "root"),
            // Links into the internal directory: refused, whatever the way in.
            ("self/.s3vol", "internal"),
            ("self/.s3vol/tmp", "internal"),
            ("self/.s3vol/mp/u1/part", "internal"),
            ("link", "internal"),
            ("link/tmp", "internal"),
            ("link/mp/u1/part", "internal"),
            ("partlink", "internal"),
            ("d/up/.s3vol/tmp", "internal"),
            ("d/deep/tmp", "internal"),
            ("ok/up/link/mp", "internal"),
            ("renamed/u1/part", "internal"),
            ("self/.s3vol/nothing/here", "internal"),
            // Links that leave the volume: invisible, as RESOLVE_BENEATH has them.
            ("abs", "Cross-device link"),
            ("abs/passwd", "Cross-device link"),
            ("d/upup", "Cross-device link"),
            ("d/upup/x", "Cross-device link"),
            ("loop1", "Too many symbolic links encountered"),
        ];
        for (path, want) in table {
            assert_eq!(outcome(&fx, path, rd), want, "{path}");
        }
        // O_PATH opens what a link points to, as the listing classifies links.
        assert_eq!(outcome(&fx, "okfile", OFlag::O_PATH), "file");
        assert_eq!(outcome(&fx, "partlink", OFlag::O_PATH), "internal");
        // Under O_NOFOLLOW a final link is ELOOP, an intermediate one is still followed.
        assert_eq!(outcome(&fx, "okfile", rd | OFlag::O_NOFOLLOW), "Too many symbolic links encountered");
        assert_eq!(outcome(&fx, "self/d/f.txt", rd | OFlag::O_NOFOLLOW), "file");
        // A trailing slash in a link target asks for a directory.
        symlink("d/f.txt/", fx.dir.join("slashfile")).unwrap();
        assert_eq!(outcome(&fx, "slashfile", rd), "Not a directory");
    }

    #[test]
    fn a_case_folding_root_checks_every_lookup_by_identity() {
        let mut fx = fixture("fold");
        fx.fence.folds_case = true;
        let rd = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
        // This file system does not fold, but the fence must refuse the folded name anyway.
        assert_eq!(outcome(&fx, "self/.S3VOL/tmp", rd), "internal");
        assert_eq!(outcome(&fx, "d/f.txt", rd), "file");
    }
}
