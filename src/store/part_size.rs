//! The part size limits of multipart uploads, decided here and nowhere else (issue 15
//! item 3): the largest part ([`check_part`], when a part is staged or copied) and the
//! smallest part but the last ([`check_listed`], at CompleteMultipartUpload).
//!
//! S3: parts are at most 5 GiB, and every part but the last at least 5 MiB; S3 judges the
//! minimum at Complete, on the parts the Complete request names (an upload may stage small
//! parts it never lists). Both bounds are per-volume settings (`max_part_size`,
//! `min_part_size`) so that tests and small deployments may lower them.

use super::multipart::Part;
use super::{Error, Result};

/// S3's smallest part but the last: 5 MiB (`min_part_size`'s default).
pub const DEFAULT_MIN_PART_SIZE: u64 = 5 << 20;

/// A part of `size` bytes fits under `max` bytes (`max_part_size`).
///
/// Errors: [`Error::EntityTooLarge`].
pub fn check_part(size: u64, max: u64) -> Result<()> {
    if size > max { Err(Error::EntityTooLarge) } else { Ok(()) }
}

/// The parts a Complete names, in its order: each but the last must be at least `min`
/// bytes (`min_part_size`).
///
/// Errors: [`Error::EntityTooSmall`] naming the first part under it.
pub fn check_listed(parts: &[Part], min: u64) -> Result<()> {
    let Some((_, all_but_last)) = parts.split_last() else { return Ok(()) };
    match all_but_last.iter().find(|p| p.size < min) {
        Some(p) => Err(Error::EntityTooSmall { part: p.number, size: p.size, min }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64) -> Part {
        Part { number, etag: String::new(), size, mtime_ns: 0 }
    }

    #[test]
    fn every_part_but_the_last_must_reach_the_minimum() {
        let m = DEFAULT_MIN_PART_SIZE;
        assert!(check_listed(&[part(1, 1)], m).is_ok(), "a single small part is the last part");
        assert!(check_listed(&[part(1, m), part(3, 1)], m).is_ok(), "the last may be small");
        assert!(check_listed(&[], m).is_ok());
        let e = check_listed(&[part(1, m), part(2, m - 1), part(3, 1)], m).unwrap_err();
        assert!(matches!(e, Error::EntityTooSmall { part: 2, size, min } if size == m - 1 && min == m), "{e:?}");
        assert!(check_listed(&[part(1, 1), part(2, 1)], 0).is_ok(), "min_part_size = 0 allows any");
    }

    #[test]
    fn parts_over_the_maximum_are_too_large() {
        assert!(check_part(10, 10).is_ok());
        assert!(matches!(check_part(11, 10), Err(Error::EntityTooLarge)));
    }
}
