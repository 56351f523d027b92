//! The file-system side of a listing: a volume's directories as a [`Tree`], and the
//! size, LastModified and ETag of each listed object.

use std::os::fd::AsFd;
use std::time::SystemTime;

use nix::fcntl::OFlag;
use tracing::debug;

use super::names::{Builder, Kind, Sorted};
use super::walk::{Item, Tree};
use crate::store::meta::{self, EMPTY_MD5};
use crate::store::volume::LOST_FOUND;
use crate::store::volume::{DirMark, Volume};
use crate::store::{Result, dircache, fsx, resolve};

/// The file-system tree of a volume. Hides the internal directory, special files, names
/// that are not UTF-8, and links that leave the volume or point to directories (links to
/// directories are not descended, so a link loop can never trap a listing).
pub struct FsTree<'v> {
    vol: &'v Volume,
}

impl<'v> FsTree<'v> {
    pub fn new(vol: &'v Volume) -> Self {
        Self { vol }
    }

    fn classify_link(&self, path: &str) -> Option<Kind> {
        let fd = self.vol.open_path(path, OFlag::O_PATH).ok()?;
        let st = fsx::fstat(fd.as_fd()).ok()?;
        fsx::is_regular(&st).then_some(Kind::File)
    }
}

impl Tree for FsTree<'_> {
    fn read_dir(&mut self, dir: &str) -> Result<Option<Sorted>> {
        // The internal directory is never listed, whatever prefix asks for it.
        let internal = self.vol.settings.internal_dir.as_str();
        let first = dir.split('/').next();
        if first == Some(internal) || (self.vol.mount_root && first == Some(LOST_FOUND)) {
            return Ok(None);
        }
        let fd = match self.vol.open_dir_path(dir) {
            Ok(fd) => fd,
            Err(e) if fsx::is_absent(&e) => {
                return Ok(None);
            }
            // A prefix through a link into the internal directory lists nothing.
            Err(e) if resolve::reaches_internal(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The stamp is taken before the read: a change during the read changes it.
        let read_at = SystemTime::now();
        let st = fsx::fstat(fd.as_fd())?;
        // The root hides the internal directory, also when reached through a link (`self/`):
        // by identity, not by the path's spelling.
        let at_root = (st.st_dev, st.st_ino) == self.vol.fence().root;
        let hidden = if at_root { internal } else { "" };
        // fsck's `lost+found` at a mount root is not an object either.
        let hide_lf = at_root && self.vol.mount_root;
        // The cache keeps entries by what was hidden: a name with '/' cannot be a real one.
        let tag = if hide_lf { format!("{hidden}/{LOST_FOUND}") } else { hidden.to_owned() };
        let stamp = dircache::Stamp::of(&st);
        if let Some(hit) = dircache::get(&stamp, &tag) {
            return Ok(Some(hit));
        }
        let mut out = Builder::default();
        let mut links = false;
        let mut non_utf8 = false;
        fsx::read_dir_each(fd.as_fd(), |raw, d_type| {
            let Ok(name) = std::str::from_utf8(raw) else {
                non_utf8 = true;
                return;
            };
            if name == hidden || (hide_lf && name == LOST_FOUND) {
                return;
            }
            let d_type = if d_type == libc::DT_UNKNOWN {
                match fsx::lstat_at(fd.as_fd(), name.as_ref()).map(|st| st.st_mode & libc::S_IFMT) {
                    Ok(libc::S_IFREG) => libc::DT_REG,
                    Ok(libc::S_IFDIR) => libc::DT_DIR,
                    Ok(libc::S_IFLNK) => libc::DT_LNK,
                    _ => return,
                }
            } else {
                d_type
            };
            let kind = match d_type {
                libc::DT_REG => Kind::File,
                libc::DT_DIR => Kind::Dir,
                libc::DT_LNK => {
                    links = true;
                    let path = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
                    match self.classify_link(&path) {
                        Some(k) => k,
                        None => return,
                    }
                }
                _ => return,
            };
            out.push(name, kind);
        })?;
        if non_utf8 {
            debug!(volume = %self.vol.name, dir, "skipping names that are not UTF-8");
        }
        let Some(sorted) = out.finish() else {
            return Err(std::io::Error::from_raw_os_error(libc::E2BIG).into());
        };
        if !links {
            dircache::offer(stamp, read_at, &tag, &sorted);
        }
        Ok(Some(sorted))
    }

    fn is_marker(&mut self, dir: &str) -> bool {
        self.vol.open_dir_path(dir).is_ok_and(|fd| self.vol.dir_mark(fd.as_fd()) == Some(DirMark::Marker))
    }
}

/// A listed object with what ListObjects returns for it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub mtime_ns: i128,
    /// Without quotes.
    pub etag: String,
}

/// Looks up size, LastModified and ETag of the objects of a page; an object that vanished
/// since the walk is left out.
pub fn describe(vol: &Volume, items: &[Item]) -> Vec<Listed> {
    let mut out = Vec::with_capacity(items.len());
    let mut parent_fd: Option<(String, std::os::fd::OwnedFd)> = None;
    for it in items {
        let Item::Object { key, dir } = it else {
            continue;
        };
        if *dir {
            let Ok(fd) = vol.open_dir_path(key.trim_end_matches('/')) else {
                continue;
            };
            let Ok(st) = fsx::fstat(fd.as_fd()) else {
                continue;
            };
            out.push(Listed { key: key.clone(), size: 0, mtime_ns: fsx::mtime_ns(&st), etag: EMPTY_MD5.into() });
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        // Keys of a page mostly share a directory: open each file relative to its parent,
        // kept open from the previous key. A link (ELOOP under O_NOFOLLOW) is resolved
        // from the root, beneath it, as everywhere else.
        let (parent, leaf) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
        if parent_fd.as_ref().is_none_or(|(p, _)| p != parent) {
            parent_fd = vol.open_dir_path(parent).ok().map(|fd| (parent.to_owned(), fd));
        }
        let direct = parent_fd.as_ref().and_then(|(_, pfd)| {
            nix::fcntl::openat(
                pfd.as_fd(),
                leaf,
                flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        });
        let Some(fd) = direct.or_else(|| vol.open_path(key, flags).ok()) else {
            continue;
        };
        let Ok(st) = fsx::fstat(fd.as_fd()) else {
            continue;
        };
        if !fsx::is_regular(&st) {
            continue;
        }
        let info = meta::load(fd.as_fd(), &st, key, vol.xattrs);
        out.push(Listed { key: key.clone(), size: info.size, mtime_ns: info.mtime_ns, etag: info.meta.etag });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::list::walk;
    use crate::store::list::walk::tests::{names, q};

    /// Every page of `prefix` in `vol`, 400 items at a time.
    fn all_pages(vol: &Volume, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = walk(&mut FsTree::new(vol), &q(prefix, None, after.as_deref(), 400)).unwrap();
            seen.extend(names(&p));
            if !p.truncated {
                return seen;
            }
            after = Some(p.items.last().unwrap().name().to_owned());
        }
    }

    #[test]
    fn a_cached_large_directory_still_sees_every_change() {
        let root = crate::store::scratch::Scratch::new("dircache");
        let flat = root.join("flat");
        std::fs::create_dir_all(&flat).unwrap();
        let mut want: Vec<String> = (0..1500).map(|i| format!("flat/f{i:05}")).collect();
        for k in &want {
            std::fs::write(root.join(k), b"x").unwrap();
        }
        std::fs::create_dir(flat.join("sub")).unwrap();
        want.push("flat/sub/".into());
        want.sort();
        let vol = Volume::open("t", &root, Default::default()).unwrap();

        // Just written: read afresh for every page (not settled), complete and in order.
        let before = dircache::hits();
        assert_eq!(all_pages(&vol, "flat/"), want);
        assert_eq!(dircache::hits(), before, "a directory changed within SETTLE is not cached");

        // Settled: pages after the first come from the cache.
        std::thread::sleep(dircache::SETTLE + std::time::Duration::from_millis(100));
        assert_eq!(all_pages(&vol, "flat/"), want);
        assert!(dircache::hits() >= before + 3, "four pages, three served from the cache");

        // A pod adds and removes files: the next page sees both, though the names are cached.
        std::fs::write(flat.join("f00750a"), b"x").unwrap();
        std::fs::remove_file(flat.join("f01499")).unwrap();
        want.retain(|k| k != "flat/f01499");
        want.push("flat/f00750a".into());
        want.sort();
        assert_eq!(all_pages(&vol, "flat/"), want);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
