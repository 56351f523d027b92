//! Listing: an ordered walk of a volume's tree (SPEC.md "Listing").
//!
//! Keys come out in S3 order (UTF-8 byte order) across the whole tree because siblings are
//! sorted with each subdirectory compared as `name/`: every key below `d/` starts with
//! `d/`, so a depth-first walk over sorted siblings emits the global order. A prefix jumps
//! straight to the directory it names; delimiter `/` rolls each subdirectory into a
//! CommonPrefix without reading it; subtrees wholly before the resume point are skipped
//! unread. So the cost of a page grows with the page size and the directories on its
//! path, not with the volume.
//!
//! [`walk`] is pure over the [`Tree`] trait and tested against an in-memory tree;
//! [`FsTree`] is the file-system side.

use std::cmp::Ordering;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::SystemTime;

use nix::fcntl::OFlag;
use tracing::debug;

use super::key::MAX_KEY_LEN;
use super::meta::{self, EMPTY_MD5};
use super::volume::LOST_FOUND;
use super::volume::{DirMark, Volume};
use super::{Result, dircache, fsx, resolve};

/// What a directory entry is, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (or a link to one inside the volume): an object.
    File,
    /// A directory: descended, or rolled into a CommonPrefix.
    Dir,
}

/// One entry of a [`Sorted`] directory, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub name: &'a str,
    pub kind: Kind,
}

/// The entries of one directory in S3 order (see [`cmp_names`]), packed (all names in one
/// string, 4 bytes of index per entry: a million short names take ~15 MB, not the ~60 MB
/// of a string each) and cheap to clone.
#[derive(Debug, Clone)]
pub struct Sorted(Arc<Packed>);

#[derive(Debug, Default)]
struct Packed {
    text: String,
    /// Per entry: end offset of its name in `text` (it starts where the previous ends),
    /// with the top bit set for a directory.
    ends: Vec<u32>,
}

const DIR_BIT: u32 = 1 << 31;

impl Sorted {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.ends.len()
    }

    /// True when the directory has no visible entries.
    pub fn is_empty(&self) -> bool {
        self.0.ends.is_empty()
    }

    /// Entry `i` (0-based, in S3 order).
    pub fn get(&self, i: usize) -> EntryRef<'_> {
        let p = &self.0;
        let start = if i == 0 { 0 } else { (p.ends[i - 1] & !DIR_BIT) as usize };
        let end = p.ends[i];
        let kind = if end & DIR_BIT != 0 { Kind::Dir } else { Kind::File };
        EntryRef { name: &p.text[start..(end & !DIR_BIT) as usize], kind }
    }

    /// Memory held, in bytes (for the directory cache's budget).
    pub fn heap_bytes(&self) -> usize {
        self.0.text.len() + self.0.ends.len() * std::mem::size_of::<u32>()
    }

    /// The first index at which `pred` is false (`pred` true on a leading run).
    fn partition_point(&self, mut pred: impl FnMut(EntryRef<'_>) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }
}

/// Collects a directory's entries, then sorts and packs them into a [`Sorted`].
#[derive(Default)]
pub struct Builder {
    text: String,
    /// (start, len, kind) of each name in `text`, in arrival order.
    spans: Vec<(u32, u32, Kind)>,
}

impl Builder {
    /// Adds an entry.
    pub fn push(&mut self, name: &str, kind: Kind) {
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.spans.push((start, name.len() as u32, kind));
    }

    /// Sorts into S3 order and packs; `None` when the names exceed 2 GiB (offsets are 31 bits).
    pub fn finish(self) -> Option<Sorted> {
        if self.text.len() >= DIR_BIT as usize {
            return None;
        }
        let Builder { text, mut spans } = self;
        let name = |(start, len, _): &(u32, u32, Kind)| &text.as_bytes()[*start as usize..(*start + *len) as usize];
        spans.sort_unstable_by(|a, b| cmp_names(name(a), a.2, name(b), b.2));
        let mut packed = Packed { text: String::with_capacity(text.len()), ends: Vec::with_capacity(spans.len()) };
        for sp in &spans {
            packed.text.push_str(&text[sp.0 as usize..(sp.0 + sp.1) as usize]);
            let dir = if sp.2 == Kind::Dir { DIR_BIT } else { 0 };
            packed.ends.push(packed.text.len() as u32 | dir);
        }
        Some(Sorted(Arc::new(packed)))
    }
}

/// The tree a listing walks. Paths are relative, without a trailing `/`; `""` is the root.
pub trait Tree {
    /// The visible entries of directory `dir`; `None` when it is not a directory.
    fn read_dir(&mut self, dir: &str) -> Result<Option<Sorted>>;
    /// True when directory `dir` carries s3vol's `k/` marker (listed even when not empty).
    fn is_marker(&mut self, dir: &str) -> bool;
}

/// One listing request, already validated.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Only keys that start with this.
    pub prefix: &'a str,
    /// Roll keys up to the first delimiter after the prefix into CommonPrefixes.
    pub delimiter: Option<&'a str>,
    /// Resume point: only keys and prefixes strictly greater than this (StartAfter, Marker,
    /// or the decoded continuation token, whichever is greatest).
    pub after: Option<&'a str>,
    /// Items per page (keys plus CommonPrefixes), 0..=1000.
    pub max_keys: usize,
}

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An object; `dir` is true for a directory object (`k/`).
    Object { key: String, dir: bool },
    /// A CommonPrefix, ending with the delimiter.
    Prefix(String),
}

impl Item {
    /// The key or prefix: what a continuation token resumes after.
    pub fn name(&self) -> &str {
        match self {
            Item::Object { key, .. } => key,
            Item::Prefix(p) => p,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// More items follow the last one.
    pub truncated: bool,
}

/// Walks `tree` and returns one page for `q`.
pub fn walk(tree: &mut impl Tree, q: &Query<'_>) -> Result<Page> {
    let mut w = Walker { q, page: Page::default(), last_prefix: None };
    if q.max_keys == 0 {
        return Ok(w.page);
    }
    let (base, rest) = match q.prefix.rfind('/') {
        Some(i) => (&q.prefix[..i], &q.prefix[i + 1..]),
        None => ("", q.prefix),
    };
    let Some(entries) = tree.read_dir(base)? else {
        return Ok(w.page);
    };
    // The directory the prefix names is itself an object when it is a marker or empty.
    if !base.is_empty()
        && rest.is_empty()
        && (entries.is_empty() || tree.is_marker(base))
        && !w.offer_key(q.prefix, true)
    {
        return Ok(w.page);
    }
    w.visit(tree, base, &entries, rest)?;
    Ok(w.page)
}

struct Walker<'q, 'a> {
    q: &'q Query<'a>,
    page: Page,
    last_prefix: Option<String>,
}

impl Walker<'_, '_> {
    /// Visits the entries of `dir` whose names start with `filter`, in S3 order. False: page full.
    ///
    /// Entries sorting before `filter`, or wholly at or before the resume point, form a
    /// leading run of the sorted entries (a directory holding the resume point is the last
    /// entry before it), so the page starts at a binary search: a page from a directory of
    /// a million names costs its own keys, not a pass over the million.
    fn visit(&mut self, tree: &mut impl Tree, dir: &str, entries: &Sorted, filter: &str) -> Result<bool> {
        let base = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let start = entries.partition_point(|e| sorts_before(e, filter) || self.before_resume(&base, e));
        for i in start..entries.len() {
            let e = entries.get(i);
            if !e.name.starts_with(filter) {
                break;
            }
            if !self.visit_entry(tree, dir, e)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// True when everything `e` holds sorts at or before the resume point.
    fn before_resume(&self, base: &str, e: EntryRef<'_>) -> bool {
        let Some(a) = self.q.after else { return false };
        let a = a.as_bytes();
        // Compare base + name (+ '/') with `a` without building the key.
        let key = base.bytes().chain(e.name.bytes()).chain((e.kind == Kind::Dir).then_some(b'/'));
        let len = base.len() + e.name.len() + usize::from(e.kind == Kind::Dir);
        match key.cmp(a.iter().copied()) {
            Ordering::Greater => false,
            Ordering::Equal => e.kind == Kind::File,
            // A directory whose key is a prefix of the resume point still holds later keys.
            Ordering::Less => {
                !(e.kind == Kind::Dir
                    && a.len() >= len
                    && a[..len].iter().copied().eq(base.bytes().chain(e.name.bytes()).chain([b'/'])))
            }
        }
    }

    /// Visits one entry of `dir`. False: page full.
    fn visit_entry(&mut self, tree: &mut impl Tree, dir: &str, e: EntryRef<'_>) -> Result<bool> {
        let path = if dir.is_empty() { e.name.to_owned() } else { format!("{dir}/{}", e.name) };
        if e.kind == Kind::File {
            if !self.offer_key(&path, false) {
                return Ok(false);
            }
            return Ok(true);
        }
        let dkey = format!("{path}/");
        if dkey.len() > MAX_KEY_LEN {
            return Ok(true);
        }
        // The whole subtree sorts at or before the resume point: skip it unread.
        if let Some(a) = self.q.after
            && a > dkey.as_str()
            && !a.starts_with(&dkey)
        {
            return Ok(true);
        }
        // Every key below rolls up into one CommonPrefix: emit it without reading.
        if let Some(d) = self.q.delimiter
            && let Some(p) = dkey[self.q.prefix.len()..].find(d)
        {
            let cp = dkey[..self.q.prefix.len() + p + d.len()].to_owned();
            if !self.offer_prefix(cp) {
                return Ok(false);
            }
            return Ok(true);
        }
        let Some(children) = tree.read_dir(&path)? else {
            return Ok(true);
        };
        if (children.is_empty() || tree.is_marker(&path)) && !self.offer_key(&dkey, true) {
            return Ok(false);
        }
        if !self.visit(tree, &path, &children, "")? {
            return Ok(false);
        }
        Ok(true)
    }

    fn offer_key(&mut self, key: &str, dir: bool) -> bool {
        if key.len() > MAX_KEY_LEN || !key.starts_with(self.q.prefix) {
            return true;
        }
        if let Some(d) = self.q.delimiter
            && let Some(p) = key[self.q.prefix.len()..].find(d)
        {
            return self.offer_prefix(key[..self.q.prefix.len() + p + d.len()].to_owned());
        }
        if self.q.after.is_some_and(|a| key <= a) {
            return true;
        }
        self.push(Item::Object { key: key.to_owned(), dir })
    }

    fn offer_prefix(&mut self, cp: String) -> bool {
        if self.q.after.is_some_and(|a| cp.as_str() <= a) || self.last_prefix.as_deref() == Some(cp.as_str()) {
            return true;
        }
        self.last_prefix = Some(cp.clone());
        self.push(Item::Prefix(cp))
    }

    fn push(&mut self, item: Item) -> bool {
        if self.page.items.len() >= self.q.max_keys {
            self.page.truncated = true;
            return false;
        }
        self.page.items.push(item);
        true
    }
}

/// True when `e` (a directory compared as `name/`) sorts before every name starting with
/// `filter` (which holds no `/`).
fn sorts_before(e: EntryRef<'_>, filter: &str) -> bool {
    let slash = (e.kind == Kind::Dir).then_some(b'/');
    e.name.bytes().chain(slash).take(filter.len()).lt(filter.bytes())
}

/// S3 order of siblings: by name bytes, a directory compared as `name/`.
fn cmp_names(x: &[u8], xk: Kind, y: &[u8], yk: Kind) -> Ordering {
    let n = x.len().min(y.len());
    match x[..n].cmp(&y[..n]) {
        Ordering::Equal => {}
        o => return o,
    }
    // One name is a prefix of the other (or they are equal): the next byte decides, with a
    // directory's name continuing with '/'. Names hold no '/', so this is final.
    let next = |name: &[u8], k: Kind| name.get(n).copied().or((k == Kind::Dir).then_some(b'/'));
    next(x, xk).cmp(&next(y, yk))
}

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
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::EXDEV | libc::ELOOP)) => {
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

/// Encodes a continuation token: the last key or CommonPrefix of the page, nothing else, so
/// any daemon on any node can serve the next page (SPEC.md: stateless, no secret).
pub fn encode_token(last: &str) -> String {
    let mut raw = String::with_capacity(last.len() + 1);
    raw.push('1');
    raw.push_str(last);
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(raw.as_bytes())
}

/// Decodes a continuation token; `None` when it is not one of ours.
pub fn decode_token(token: &str) -> Option<String> {
    let raw = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(token.as_bytes()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let last = s.strip_prefix('1')?;
    (!last.is_empty() && last.len() <= MAX_KEY_LEN).then(|| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory tree: paths of files; directories implied, plus explicit empty/marker dirs.
    #[derive(Default)]
    struct MemTree {
        dirs: BTreeMap<String, Vec<(String, Kind)>>,
        markers: Vec<String>,
        reads: usize,
    }

    impl MemTree {
        fn new(files: &[&str], empty_dirs: &[&str]) -> Self {
            let mut t = MemTree::default();
            t.dirs.insert(String::new(), Vec::new());
            for path in files.iter().map(|f| (*f, Kind::File)).chain(empty_dirs.iter().map(|d| (*d, Kind::Dir))) {
                let (p, kind) = path;
                let segs: Vec<&str> = p.split('/').collect();
                for i in 0..segs.len() {
                    let parent = segs[..i].join("/");
                    let name = segs[i].to_owned();
                    let k = if i + 1 == segs.len() { kind } else { Kind::Dir };
                    let list = t.dirs.entry(parent).or_default();
                    if !list.iter().any(|(n, _)| *n == name) {
                        list.push((name, k));
                    }
                    if k == Kind::Dir {
                        t.dirs.entry(segs[..=i].join("/")).or_default();
                    }
                }
            }
            t
        }
    }

    impl Tree for MemTree {
        fn read_dir(&mut self, dir: &str) -> Result<Option<Sorted>> {
            self.reads += 1;
            // Entries in reverse order: the builder must sort, not trust readdir.
            Ok(self.dirs.get(dir).map(|v| {
                let mut b = Builder::default();
                for (name, kind) in v.iter().rev() {
                    b.push(name, *kind);
                }
                b.finish().unwrap()
            }))
        }
        fn is_marker(&mut self, dir: &str) -> bool {
            self.markers.iter().any(|m| m == dir)
        }
    }

    fn q<'a>(prefix: &'a str, delimiter: Option<&'a str>, after: Option<&'a str>, max_keys: usize) -> Query<'a> {
        Query { prefix, delimiter, after, max_keys }
    }

    fn names(p: &Page) -> Vec<String> {
        p.items
            .iter()
            .map(|i| match i {
                Item::Object { key, .. } => key.clone(),
                Item::Prefix(p) => format!("P:{p}"),
            })
            .collect()
    }

    fn page(t: &mut MemTree, query: Query<'_>) -> Page {
        walk(t, &query).unwrap()
    }

    #[test]
    fn listing_order_is_s3_byte_order() {
        let files = ["a0", "a/b", "a.txt", "a-b", "b/c/d", "b/c.txt", "Z", "é", "a/b0", "b/c-d"];
        let mut t = MemTree::new(&files, &[]);
        let got = names(&page(&mut t, q("", None, None, 1000)));
        let mut want: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        want.sort();
        want.dedup();
        assert_eq!(got, want);
        assert_eq!(got[..5], ["Z", "a-b", "a.txt", "a/b", "a/b0"]);
    }

    #[test]
    fn delimiter_rolls_directories_into_prefixes_without_reading_them() {
        let mut t = MemTree::new(&["a-b", "a.txt", "a/b", "a/c/d", "a0", "b/x"], &[]);
        let p = page(&mut t, q("", Some("/"), None, 1000));
        assert_eq!(names(&p), ["a-b", "a.txt", "P:a/", "a0", "P:b/"]);
        assert_eq!(t.reads, 1, "only the root is read");
        let p = page(&mut t, q("a/", Some("/"), None, 1000));
        assert_eq!(names(&p), ["a/b", "P:a/c/"]);
        let p = page(&mut t, q("a", Some("/"), None, 1000));
        assert_eq!(names(&p), ["a-b", "a.txt", "P:a/", "a0"]);
    }

    #[test]
    fn other_delimiters() {
        let mut t = MemTree::new(&["x-1-a", "x-1-b", "x-2", "y"], &[]);
        let p = page(&mut t, q("x-", Some("-"), None, 1000));
        assert_eq!(names(&p), ["P:x-1-", "x-2"]);
        let mut t = MemTree::new(&["a/b.c/d", "a/b.e", "a/bxc"], &[]);
        let p = page(&mut t, q("a/", Some("."), None, 1000));
        assert_eq!(names(&p), ["P:a/b.", "a/bxc"]);
    }

    #[test]
    fn prefix_jumps_to_its_directory() {
        let mut t = MemTree::new(&["big/1", "big/2", "deep/er/x1", "deep/er/x2", "deep/er/y", "deep/erz"], &[]);
        let p = page(&mut t, q("deep/er/x", None, None, 1000));
        assert_eq!(names(&p), ["deep/er/x1", "deep/er/x2"]);
        assert_eq!(t.reads, 1, "reads only deep/er");
        let p = page(&mut t, q("deep/er", None, None, 1000));
        assert_eq!(names(&p), ["deep/er/x1", "deep/er/x2", "deep/er/y", "deep/erz"]);
        let p = page(&mut t, q("nope/", None, None, 1000));
        assert!(p.items.is_empty() && !p.truncated);
    }

    #[test]
    fn empty_and_marker_directories_are_objects() {
        let mut t = MemTree::new(&["m/f"], &["e", "m/sub"]);
        t.markers.push("m".into());
        assert_eq!(names(&page(&mut t, q("", None, None, 1000))), ["e/", "m/", "m/f", "m/sub/"]);
        assert_eq!(names(&page(&mut t, q("m/", None, None, 1000))), ["m/", "m/f", "m/sub/"]);
        assert_eq!(names(&page(&mut t, q("m/", Some("/"), None, 1000))), ["m/", "m/f", "P:m/sub/"]);
        assert_eq!(names(&page(&mut t, q("", Some("/"), None, 1000))), ["P:e/", "P:m/"]);
    }

    #[test]
    fn paging_resumes_strictly_after_the_last_item() {
        let files: Vec<String> =
            ["a/1", "a/2", "a/3", "b", "c/d/e", "c/d/f", "c0"].iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        for delim in [None, Some("/")] {
            for size in 1..=4 {
                let mut t = MemTree::new(&refs, &[]);
                let full = names(&page(&mut t, q("", delim, None, 1000)));
                let mut seen = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let p = page(&mut t, q("", delim, after.as_deref(), size));
                    assert!(p.items.len() <= size);
                    seen.extend(names(&p));
                    if !p.truncated {
                        break;
                    }
                    let next = p.items.last().unwrap().name().to_owned();
                    assert!(after.as_deref().is_none_or(|a| next.as_str() > a), "token strictly advances");
                    after = Some(next);
                }
                assert_eq!(seen, full, "delimiter {delim:?}, page size {size}");
            }
        }
    }

    #[test]
    fn paging_a_large_directory_matches_a_full_sort() {
        // Names in a scrambled order, files and directories mixed, some sharing prefixes.
        let mut files = Vec::new();
        let mut x: u64 = 7;
        for _ in 0..3000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = x >> 40;
            files.push(match n % 4 {
                0 => format!("f{}", n % 997),
                1 => format!("f{}/x", n % 991),
                2 => format!("f{}-y", n % 983),
                _ => format!("f{}.z/q/r", n % 977),
            });
        }
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        for delim in [None, Some("/")] {
            let mut t = MemTree::new(&refs, &[]);
            let full = names(&page(&mut t, q("", delim, None, usize::MAX)));
            let mut sorted = full.clone();
            sorted.sort_by(|a, b| a.trim_start_matches("P:").cmp(b.trim_start_matches("P:")));
            assert_eq!(full, sorted, "one page is in order");
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let p = page(&mut t, q("", delim, after.as_deref(), 37));
                seen.extend(names(&p));
                if !p.truncated {
                    break;
                }
                after = Some(p.items.last().unwrap().name().to_owned());
            }
            assert_eq!(seen, full, "delimiter {delim:?}");
        }
    }

    #[test]
    fn resume_skips_whole_subtrees_unread() {
        let mut t = MemTree::new(&["a/x/1", "a/x/2", "a/y/1", "b"], &[]);
        let p = page(&mut t, q("", None, Some("a/y/1"), 1000));
        assert_eq!(names(&p), ["b"]);
        assert_eq!(t.reads, 3, "root, a, a/y: a/x is never read");
    }

    #[test]
    fn prefixes_that_no_key_can_match_list_nothing() {
        let mut t = MemTree::new(&["a/b", "c"], &[]);
        for prefix in ["./", "./a", "a//", "a//b", "../", "a/../", "a/./b"] {
            let p = page(&mut t, q(prefix, None, None, 1000));
            assert!(p.items.is_empty(), "{prefix:?} listed {:?}", names(&p));
        }
    }

    #[test]
    fn max_keys_zero_and_truncation() {
        let mut t = MemTree::new(&["a", "b"], &[]);
        let p = page(&mut t, q("", None, None, 0));
        assert!(p.items.is_empty() && !p.truncated, "S3 answers max-keys=0 with an empty, untruncated page");
        let p = page(&mut t, q("", None, None, 2));
        assert_eq!(names(&p), ["a", "b"]);
        assert!(!p.truncated, "exactly full is not truncated");
    }

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
        let root = std::env::temp_dir().join(format!("s3vol-dircache-{}", std::process::id()));
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

    #[test]
    fn continuation_token_round_trip() {
        for k in ["a", "dir/", "données/é ü.txt", "a+b#c%d?e"] {
            assert_eq!(decode_token(&encode_token(k)).as_deref(), Some(k));
        }
        assert_eq!(decode_token("not base64!"), None);
        assert_eq!(decode_token(&base64_simd::URL_SAFE_NO_PAD.encode_to_string(b"2abc")), None);
        assert_eq!(decode_token(&base64_simd::URL_SAFE_NO_PAD.encode_to_string(b"1")), None);
        assert_eq!(decode_token(""), None);
    }
}
