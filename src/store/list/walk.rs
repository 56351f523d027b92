//! The listing walk: pure over the [`Tree`] trait, so it is tested against an in-memory
//! tree.

use std::cmp::Ordering;

use super::names::{EntryRef, Kind, Sorted};
use crate::store::Result;
use crate::store::key::MAX_KEY_LEN;

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

#[cfg(test)]
pub(super) mod tests {
    use super::super::names::Builder;
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

    /// A query (shared with the file-system tree's tests).
    pub(in crate::store::list) fn q<'a>(
        prefix: &'a str,
        delimiter: Option<&'a str>,
        after: Option<&'a str>,
        max_keys: usize,
    ) -> Query<'a> {
        Query { prefix, delimiter, after, max_keys }
    }

    /// A page's keys, CommonPrefixes as `P:prefix` (shared with the tree's tests).
    pub(in crate::store::list) fn names(p: &Page) -> Vec<String> {
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
}
