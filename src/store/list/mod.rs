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
//!
//! The parts: [`names`] packs one directory's names in S3 order, [`walk`] is the pure
//! walk, [`tree`] reads a volume, [`token`] encodes the continuation token.

mod names;
mod token;
mod tree;
mod walk;

pub use names::{Builder, EntryRef, Kind, Sorted};
pub use token::{decode_token, encode_token};
pub use tree::{FsTree, Listed, describe};
pub use walk::{Item, Page, Query, Tree, walk};
