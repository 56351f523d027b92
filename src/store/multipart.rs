//! Multipart staging on the volume (SPEC.md "Multipart uploads").
//!
//! Each upload is a directory `<internal>/multipart/<upload id>/` holding `manifest.json`
//! (key, metadata, initiated time, owner, checksum algorithm) and one file per staged part,
//! named `<part number, 5 digits>-<part MD5 hex>`, with its additional checksums (if any)
//! beside it in `<same name>.ck`. Everything lives on the volume, so any daemon sharing it
//! can list, continue, complete or abort an upload, and uploads survive restarts.
//!
//! Upload ids are 32 lower-case hex digits: the creation time in milliseconds (12 digits)
//! then 80 random bits, so that sorting by (key, id) is S3's listing order (key, then
//! initiation time) and a listing marker needs no state.
//!
//! Completion (claim, assembly, completion record) lives in `assemble.rs`; removal of
//! abandoned uploads in `sweep.rs`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::key::ObjectKey;
use super::meta::{self, ObjectMeta};
use super::volume::{Volume, random_hex};
use super::write::Writer;
use super::{Error, Result, fsx};

/// S3: part numbers run from 1 to 10000.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// The manifest file of an upload directory.
pub(super) const MANIFEST: &str = "manifest.json";
/// Suffix of a part's checksum file (`<part name>.ck`, JSON `{ALGORITHM: base64}`).
const CHECKSUM_SUFFIX: &str = ".ck";

/// What CreateMultipartUpload recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The object key, as the client sent it.
    pub key: String,
    /// Metadata to apply to the final object (no ETag yet).
    pub meta: ObjectMeta,
    /// Initiation time, seconds since the epoch.
    pub initiated: i64,
    /// Name of the access key that started the upload.
    pub owner: String,
    /// `x-amz-checksum-algorithm` given at Create (`CRC32`, `CRC32C`, `SHA1`, `SHA256`,
    /// `CRC64NVME`): every part is checksummed with it and the object gets the combined value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// `x-amz-checksum-type` given at Create: `COMPOSITE` or `FULL_OBJECT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

/// A staged part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1..=10000.
    pub number: u32,
    /// MD5 of the part, lower-case hex (the part's ETag without quotes).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch (ListParts LastModified).
    pub mtime_ns: i128,
}

impl Part {
    /// The part's file name in its upload directory.
    pub(super) fn file_name(&self) -> String {
        format!("{:05}-{}", self.number, self.etag)
    }
}

/// A validated upload id: exactly 32 lower-case hex digits. It becomes the name of a
/// directory under `<internal>/multipart`, so nothing else is ever accepted: this type is
/// the path-safety rule for the second client string that becomes a path (the first is
/// the key, [`ObjectKey`]). Every store function that takes a client's upload id parses it
/// here first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UploadId(String);

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl UploadId {
    /// Validates a client's upload id. Errors: [`Error::NoSuchUpload`] for anything but 32
    /// lower-case hex digits (S3 answers NoSuchUpload for an id it never issued).
    pub fn parse(id: &str) -> Result<Self> {
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::NoSuchUpload)
        }
    }

    /// A new upload id: creation time in ms (12 hex digits) then 20 random hex digits.
    fn new() -> Self {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self(format!("{:012x}{}", ms & 0xffff_ffff_ffff, random_hex(10)))
    }

    /// The id: 32 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Opens the directory of upload `id`; [`Error::NoSuchUpload`] when `id` is not an upload
/// id ([`UploadId::parse`]) or its directory is not there.
pub(super) fn open_upload(vol: &Volume, id: &str) -> Result<OwnedFd> {
    let id = UploadId::parse(id)?;
    nix::fcntl::openat(
        vol.uploads.as_fd(),
        id.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|_| Error::NoSuchUpload)
}

/// Reads a small JSON file of an upload directory; `None` when absent or unreadable.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(dir: BorrowedFd<'_>, name: &str) -> Option<T> {
    let fd =
        nix::fcntl::openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty()).ok()?;
    serde_json::from_reader(std::io::BufReader::new(File::from(fd))).ok()
}

/// Writes `value` as JSON to `name` in `dir` atomically (temp file, fsync, rename, fsync
/// of the directory when `fsync`).
pub(super) fn write_json<T: Serialize>(dir: BorrowedFd<'_>, name: &str, value: &T, fsync: bool) -> Result<()> {
    let tmp = format!("{name}.tmp-{}", random_hex(6));
    let fd = nix::fcntl::openat(
        dir,
        tmp.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = File::from(fd);
    let written = f
        .write_all(&serde_json::to_vec(value).expect("plain data serializes"))
        .and_then(|()| if fsync { f.sync_all() } else { Ok(()) })
        .and_then(|()| fsx::rename_at(dir, &tmp, dir, name));
    if let Err(e) = written {
        let _ = fsx::unlink_at(dir, &tmp, false);
        return Err(e.into());
    }
    if fsync {
        fsx::fsync(dir)?;
    }
    Ok(())
}

/// Reads the manifest in an open upload directory and checks that it belongs to `key`.
pub(super) fn read_manifest(dir: BorrowedFd<'_>, key: &ObjectKey) -> Result<Manifest> {
    let m: Manifest = read_json(dir, MANIFEST).ok_or(Error::NoSuchUpload)?;
    if m.key != key.as_str() {
        return Err(Error::NoSuchUpload);
    }
    Ok(m)
}

/// Reads the manifest of upload `id` and checks that it belongs to `key`.
///
/// Errors: [`Error::NoSuchUpload`] for an unknown, completed or aborted upload, or one
/// started for another key.
pub fn manifest(vol: &Volume, id: &str, key: &ObjectKey) -> Result<(OwnedFd, Manifest)> {
    let dir = open_upload(vol, id)?;
    let m = read_manifest(dir.as_fd(), key)?;
    Ok((dir, m))
}

/// CreateMultipartUpload: stages a manifest and returns the new upload id.
///
/// Errors: [`Error::ReadOnly`]; [`Error::MarkerWithBody`] for a `k/` key; I/O errors.
pub fn create(vol: &Volume, key: &ObjectKey, manifest: Manifest) -> Result<String> {
    vol.check_writable()?;
    if key.is_dir_marker() {
        return Err(Error::MarkerWithBody);
    }
    // Refused now rather than at Complete: the key leads through a link into the internal
    // directory. (Other conflicts a pod can still resolve before Complete; this one it made.)
    match vol.open_parent(key) {
        Err(e) if super::resolve::reaches_internal(&e) => return Err(Error::InternalDir),
        _ => {}
    }
    let id = UploadId::new();
    fsx::mkdir_at(vol.uploads.as_fd(), id.as_str(), 0o700)?;
    let dir = open_upload(vol, id.as_str())?;
    let m = Manifest { key: key.as_str().to_owned(), ..manifest };
    if let Err(e) = write_json(dir.as_fd(), MANIFEST, &m, vol.settings.fsync) {
        drop(dir);
        let _ = remove_upload(vol, id.as_str());
        return Err(e);
    }
    if vol.settings.fsync {
        fsx::fsync(vol.uploads.as_fd())?;
    }
    Ok(id.0)
}

/// Starts writing part `number` of upload `id` (UploadPart, UploadPartCopy); finish with
/// [`commit_part`]. Returns the writer and the upload's manifest (its checksum algorithm
/// applies to every part).
///
/// `declared` bytes are admitted first (capacity and quota: staged parts count), and the
/// part must be exactly that long (see [`Writer::write`]).
///
/// Errors: [`Error::InvalidPartNumber`] outside 1..=10000; [`Error::NoSuchUpload`];
/// [`Error::NoSpace`], [`Error::QuotaExceeded`] when the part does not fit.
pub fn begin_part(
    vol: Arc<Volume>,
    id: &str,
    key: &ObjectKey,
    number: u32,
    declared: u64,
) -> Result<(Writer, Manifest)> {
    vol.check_writable()?;
    if !(1..=MAX_PART_NUMBER).contains(&number) {
        return Err(Error::InvalidPartNumber);
    }
    let (_, m) = manifest(&vol, id, key)?;
    Ok((Writer::begin_unchecked(vol, key.clone(), declared)?, m))
}

/// [`begin_part`] for a part whose body declares no length (`Transfer-Encoding: chunked`):
/// room is admitted as its bytes arrive, and it may grow to the volume's `max_part_size`
/// (see [`Writer::begin_unsized`]).
///
/// Errors: as [`begin_part`]; later, from the writer, [`Error::EntityTooLarge`],
/// [`Error::QuotaExceeded`], [`Error::NoSpace`].
pub fn begin_part_unsized(vol: Arc<Volume>, id: &str, key: &ObjectKey, number: u32) -> Result<(Writer, Manifest)> {
    vol.check_writable()?;
    if !(1..=MAX_PART_NUMBER).contains(&number) {
        return Err(Error::InvalidPartNumber);
    }
    let (_, m) = manifest(&vol, id, key)?;
    let cap = vol.settings.max_part_size;
    Ok((Writer::open_unsized(vol, key.clone(), cap, 0)?, m))
}

/// Stages a written part with its additional checksums (`(ALGORITHM, base64)` pairs); a
/// re-upload of the same part number replaces the earlier one.
///
/// Errors: [`Error::NoSuchUpload`] when the upload was completed or aborted meanwhile.
pub fn commit_part(w: Writer, id: &str, number: u32, checksums: &[(String, String)]) -> Result<Part> {
    let vol = w.vol.clone();
    let dir = open_upload(&vol, id)?;
    if read_json::<serde_json::Value>(dir.as_fd(), MANIFEST).is_none() {
        return Err(Error::NoSuchUpload);
    }
    let etag = meta::hex_lower(&w.md5());
    let name = format!("{number:05}-{etag}");
    // The checksums go first, so that a visible part always has its checksum file.
    if !checksums.is_empty() {
        let map: BTreeMap<&str, &str> = checksums.iter().map(|(a, v)| (a.as_str(), v.as_str())).collect();
        write_json(dir.as_fd(), &format!("{name}{CHECKSUM_SUFFIX}"), &map, vol.settings.fsync)?;
    }
    let size = w.commit_into(dir.as_fd(), &name)?;
    let st = nix::sys::stat::fstatat(dir.as_fd(), name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    // Drop earlier versions of this part number: only those committed well before this one
    // (by ctime, which the link or rename that made each visible set). Of two uploads of one
    // number racing, each removing "every other" version left none; a version committed
    // within SUPERSEDED_KEEP_NS of this one may still be on its way to its client as the
    // last one acknowledged, so it stays (a Complete may list either; ListParts shows the
    // newer) until a later upload of the number, the Complete or an abort removes it.
    let ours = fsx::ctime_ns(&st);
    for p in part_versions(dir.as_fd())? {
        if p.part.number == number && p.part.etag != etag && ours - p.ctime_ns > SUPERSEDED_KEEP_NS {
            let old = p.part.file_name();
            if fsx::unlink_at(dir.as_fd(), &old, false).is_ok() {
                vol.space.add_used(-(p.part.size as i64));
            }
            let _ = fsx::unlink_at(dir.as_fd(), &format!("{old}{CHECKSUM_SUFFIX}"), false);
        }
    }
    Ok(Part { number, etag, size, mtime_ns: fsx::mtime_ns(&st) })
}

/// How long (ns) a superseded version of a part stays staged after the upload that
/// superseded it was committed: longer than any answer takes to leave the daemon.
const SUPERSEDED_KEEP_NS: i128 = 60_000_000_000;

/// A staged version of a part, with the time it was made visible.
pub(super) struct PartVersion {
    pub part: Part,
    /// Change time of the part file, ns since the epoch: when it was linked into place.
    pub ctime_ns: i128,
}

/// Every staged version of every part (several per number while uploads of one number
/// race), in no order.
pub(super) fn part_versions(dir: BorrowedFd<'_>) -> Result<Vec<PartVersion>> {
    let mut out = Vec::new();
    for e in fsx::read_dir(dir)? {
        let Ok(name) = std::str::from_utf8(&e.name) else {
            continue;
        };
        if !is_part_file(name) {
            continue;
        }
        let Some((num, etag)) = name.split_once('-') else { continue };
        let Ok(number) = num.parse::<u32>() else { continue };
        let Ok(st) = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let part = Part { number, etag: etag.to_owned(), size: st.st_size as u64, mtime_ns: fsx::mtime_ns(&st) };
        out.push(PartVersion { part, ctime_ns: fsx::ctime_ns(&st) });
    }
    Ok(out)
}

/// The additional checksums staged with part `p` (`ALGORITHM -> base64`); empty when none.
pub(super) fn part_checksums(dir: BorrowedFd<'_>, p: &Part) -> BTreeMap<String, String> {
    read_json(dir, &format!("{}{CHECKSUM_SUFFIX}", p.file_name())).unwrap_or_default()
}

/// The staged parts of an upload directory, by part number (the newest of duplicates, by
/// the time each was committed).
pub(super) fn parts_in(dir: BorrowedFd<'_>) -> Result<Vec<Part>> {
    let mut parts: Vec<PartVersion> = Vec::new();
    for v in part_versions(dir)? {
        match parts.iter_mut().find(|q| q.part.number == v.part.number) {
            Some(q) if (q.ctime_ns, &q.part.etag) < (v.ctime_ns, &v.part.etag) => *q = v,
            Some(_) => {}
            None => parts.push(v),
        }
    }
    let mut parts: Vec<Part> = parts.into_iter().map(|v| v.part).collect();
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// ListParts: the staged parts of upload `id`, each with its additional checksums
/// (`ALGORITHM -> base64`, empty when none).
///
/// Parts an interrupted append-and-delete Complete already moved into its assembly file
/// are listed too (from its journal): they are staged still, only in another file.
#[allow(clippy::type_complexity)]
pub fn list_parts(
    vol: &Volume,
    id: &str,
    key: &ObjectKey,
) -> Result<(Manifest, Vec<(Part, BTreeMap<String, String>)>)> {
    let (dir, m) = manifest(vol, id, key)?;
    let mut parts = parts_in(dir.as_fd())?;
    for p in super::assemble::journaled(dir.as_fd()) {
        if !parts.iter().any(|q| q.number == p.number) {
            parts.push(p);
        }
    }
    parts.sort_by_key(|p| p.number);
    let listed = parts.into_iter().map(|p| {
        let c = part_checksums(dir.as_fd(), &p);
        (p, c)
    });
    Ok((m, listed.collect()))
}

/// AbortMultipartUpload: removes the staging of upload `id`.
///
/// Errors: [`Error::NoSuchUpload`] (also for an upload that was completed).
pub fn abort(vol: &Volume, id: &str, key: &ObjectKey) -> Result<()> {
    vol.check_writable()?;
    let (dir, _) = manifest(vol, id, key)?;
    // The manifest goes first: from then on every request sees "no such upload".
    fsx::unlink_at(dir.as_fd(), MANIFEST, false)?;
    drop(dir);
    remove_upload(vol, id)
}

/// Removes every file of upload `id` and its directory. A missing upload is not an error.
pub(super) fn remove_upload(vol: &Volume, id: &str) -> Result<()> {
    let Ok(id) = UploadId::parse(id) else { return Ok(()) };
    let dir = match open_upload(vol, id.as_str()) {
        Ok(d) => d,
        Err(_) => return Ok(()),
    };
    let mut removed = remove_files(dir.as_fd(), |name| name != MANIFEST);
    let _ = fsx::unlink_at(dir.as_fd(), MANIFEST, false);
    removed += remove_files(dir.as_fd(), |_| true);
    vol.space.add_used(-removed);
    drop(dir);
    match fsx::unlink_at(vol.uploads.as_fd(), id.as_str(), true) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Unlinks the files of an upload directory for which `pick(name)` holds.
pub(super) fn remove_files(dir: BorrowedFd<'_>, pick: impl Fn(&str) -> bool) -> i64 {
    let Ok(entries) = fsx::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries {
        if let Ok(name) = std::str::from_utf8(&e.name)
            && pick(name)
        {
            let size = fsx::lstat_at(dir, name.as_ref()).map(|st| st.st_size).unwrap_or(0);
            // Only parts were counted in the volume's usage when staged (the manifest,
            // claim and checksum records never were): uncounting them too would let a
            // client drift the usage below the truth, one Complete at a time.
            if fsx::unlink_at(dir, name, false).is_ok() && is_part_file(name) {
                removed += size;
            }
        }
    }
    removed
}

/// True for a staged part's file name, `NNNNN-<32 hex ETag>`.
pub(super) fn is_part_file(name: &str) -> bool {
    name.split_once('-').is_some_and(|(num, etag)| {
        num.len() == 5
            && num.bytes().all(|b| b.is_ascii_digit())
            && etag.len() == 32
            && etag.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// One upload in a ListMultipartUploads page.
#[derive(Debug, Clone)]
pub struct UploadEntry {
    /// The object key.
    pub key: String,
    /// The upload id.
    pub id: String,
    /// Initiation time, seconds since the epoch.
    pub initiated: i64,
    /// Name of the access key that started it.
    pub owner: String,
    /// Checksum algorithm given at Create.
    pub checksum_algorithm: Option<String>,
}

/// A page of ListMultipartUploads.
#[derive(Debug, Clone, Default)]
pub struct UploadPage {
    /// Uploads, by key then initiation time.
    pub uploads: Vec<UploadEntry>,
    /// Common prefixes (each ends with the delimiter), in key order.
    pub prefixes: Vec<String>,
    /// More entries follow; continue with the next markers.
    pub truncated: bool,
    /// The key (or common prefix) to pass as `key-marker` for the next page.
    pub next_key_marker: Option<String>,
    /// The upload id to pass as `upload-id-marker` for the next page.
    pub next_upload_id_marker: Option<String>,
}

/// ListMultipartUploads: the uploads whose key starts with `prefix`, by (key, upload id),
/// after `key_marker` (and, for that key, after `upload_id_marker`), rolled up into common
/// prefixes at `delimiter`, at most `max` entries (uploads plus prefixes).
///
/// Cost: reads every upload's manifest on the volume (uploads are few; parts are not read).
pub fn list_uploads(
    vol: &Volume,
    prefix: &str,
    delimiter: Option<&str>,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    max: usize,
) -> Result<UploadPage> {
    let mut all = Vec::new();
    for e in fsx::read_dir(vol.uploads.as_fd())? {
        let Ok(id) = std::str::from_utf8(&e.name) else { continue };
        if UploadId::parse(id).is_err() {
            continue;
        }
        let Ok(dir) = open_upload(vol, id) else { continue };
        let Some(m) = read_json::<Manifest>(dir.as_fd(), MANIFEST) else { continue };
        if m.key.starts_with(prefix) {
            all.push(UploadEntry {
                key: m.key,
                id: id.to_owned(),
                initiated: m.initiated,
                owner: m.owner,
                checksum_algorithm: m.checksum_algorithm,
            });
        }
    }
    Ok(page_uploads(all, prefix, delimiter, key_marker, upload_id_marker, max))
}

/// The paging rules of [`list_uploads`] over an unordered list (pure, unit-tested).
fn page_uploads(
    mut all: Vec<UploadEntry>,
    prefix: &str,
    delimiter: Option<&str>,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    max: usize,
) -> UploadPage {
    all.retain(|u| u.key.starts_with(prefix));
    all.sort_by(|a, b| (a.key.as_bytes(), &a.id).cmp(&(b.key.as_bytes(), &b.id)));
    let after = |u: &UploadEntry| match (key_marker, upload_id_marker) {
        (None, _) => true,
        (Some(k), Some(id)) if !id.is_empty() => u.key.as_str() > k || (u.key == k && u.id.as_str() > id),
        (Some(k), _) => u.key.as_str() > k,
    };
    let mut page = UploadPage::default();
    let mut count = 0usize;
    let mut last: Option<(String, Option<String>)> = None;
    for u in all.into_iter().filter(|u| after(u)) {
        let rolled = delimiter
            .filter(|d| !d.is_empty())
            .and_then(|d| u.key[prefix.len()..].find(d).map(|i| u.key[..prefix.len() + i + d.len()].to_owned()));
        if let Some(cp) = &rolled {
            // A prefix already listed on this page, or on an earlier one (the marker is in it).
            if page.prefixes.last() == Some(cp) || key_marker.is_some_and(|k| k.starts_with(cp.as_str())) {
                continue;
            }
        }
        if count == max {
            page.truncated = true;
            break;
        }
        count += 1;
        match rolled {
            Some(cp) => {
                last = Some((cp.clone(), None));
                page.prefixes.push(cp);
            }
            None => {
                last = Some((u.key.clone(), Some(u.id.clone())));
                page.uploads.push(u);
            }
        }
    }
    if page.truncated
        && let Some((k, id)) = last
    {
        page.next_key_marker = Some(k);
        page.next_upload_id_marker = id;
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_hex_only() {
        assert!(UploadId::parse(&"a".repeat(32)).is_ok());
        for bad in
            ["", "..", "../../etc", &"A".repeat(32), &"a".repeat(31), &"g".repeat(32), &format!("{}/", "a".repeat(31))]
        {
            assert!(matches!(UploadId::parse(bad), Err(Error::NoSuchUpload)), "{bad:?}");
        }
        let a = UploadId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = UploadId::new();
        assert!(UploadId::parse(a.as_str()).is_ok() && UploadId::parse(b.as_str()).is_ok());
        assert!(a < b, "ids sort by creation time: {a} {b}");
    }

    fn entry(key: &str, id: &str) -> UploadEntry {
        UploadEntry { key: key.into(), id: id.into(), initiated: 0, owner: String::new(), checksum_algorithm: None }
    }

    fn names(p: &UploadPage) -> Vec<String> {
        p.uploads.iter().map(|u| format!("{}#{}", u.key, u.id)).chain(p.prefixes.iter().cloned()).collect()
    }

    #[test]
    fn upload_paging_by_key_then_id() {
        let all = vec![entry("b", "2"), entry("a", "9"), entry("b", "1"), entry("c", "5"), entry("a-b", "3")];
        let p1 = page_uploads(all.clone(), "", None, None, None, 2);
        assert_eq!(names(&p1), ["a#9", "a-b#3"]);
        assert!(p1.truncated);
        let (k, id) = (p1.next_key_marker.clone().unwrap(), p1.next_upload_id_marker.clone());
        let p2 = page_uploads(all.clone(), "", None, Some(&k), id.as_deref(), 2);
        assert_eq!(names(&p2), ["b#1", "b#2"]);
        let p3 = page_uploads(all.clone(), "", None, Some("b"), Some("1"), 2);
        assert_eq!(names(&p3), ["b#2", "c#5"]);
        assert!(!p3.truncated);
        let p4 = page_uploads(all, "", None, Some("b"), None, 10);
        assert_eq!(names(&p4), ["c#5"]);
    }

    #[test]
    fn upload_paging_with_delimiter() {
        let all = vec![entry("d/x", "1"), entry("d/y", "2"), entry("e", "3"), entry("f/z", "4"), entry("top", "5")];
        let p = page_uploads(all.clone(), "", Some("/"), None, None, 1000);
        assert_eq!(names(&p), ["e#3", "top#5", "d/", "f/"]);
        let p1 = page_uploads(all.clone(), "", Some("/"), None, None, 1);
        assert_eq!(p1.prefixes, ["d/"]);
        assert_eq!(p1.next_key_marker.as_deref(), Some("d/"));
        assert_eq!(p1.next_upload_id_marker, None);
        let p2 = page_uploads(all.clone(), "", Some("/"), Some("d/"), None, 1);
        assert_eq!(names(&p2), ["e#3"]);
        let p = page_uploads(all, "d/", Some("/"), None, None, 1000);
        assert_eq!(names(&p), ["d/x#1", "d/y#2"]);
    }
}
