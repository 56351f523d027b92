//! One directory's names in S3 order, packed: what the walk reads and the directory cache
//! keeps.

use std::cmp::Ordering;
use std::sync::Arc;

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
    pub(super) fn partition_point(&self, mut pred: impl FnMut(EntryRef<'_>) -> bool) -> usize {
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
