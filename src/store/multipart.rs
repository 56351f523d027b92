//! Multipart staging on the volume (SPEC.md "Multipart uploads").
//!
//! Each upload is a directory `<internal>/multipart/<upload id>/` holding `manifest.json`
//! (key, metadata, initiated time, owner) and one file per staged part, named
//! `<part number, 5 digits>-<part MD5 hex>`. Everything lives on the volume, so any daemon
//! sharing it can continue, complete or abort an upload, and uploads survive restarts.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::key::ObjectKey;
use super::meta::{self, ObjectInfo, ObjectMeta};
use super::volume::{Volume, random_hex};
use super::write::Writer;
use super::{Error, Result, fsx};

/// S3: part numbers run from 1 to 10000.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// What CreateMultipartUpload recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    /// Metadata to apply to the final object (no ETag yet).
    pub meta: ObjectMeta,
    /// Initiation time, seconds since the epoch.
    pub initiated: i64,
    /// Name of the access key that started the upload.
    pub owner: String,
}

/// A staged part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    /// MD5 of the part, lower-case hex (the part's ETag without quotes).
    pub etag: String,
    pub size: u64,
    pub mtime_ns: i128,
}

/// An upload id is 32 lower-case hex digits: it becomes a directory name, so nothing else
/// is ever accepted (it is the path-safety rule for this input).
fn check_upload_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Error::NoSuchUpload)
    }
}

fn open_upload(vol: &Volume, id: &str) -> Result<OwnedFd> {
    check_upload_id(id)?;
    nix::fcntl::openat(
        vol.uploads.as_fd(),
        id,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|_| Error::NoSuchUpload)
}

/// Reads the manifest of upload `id` and checks that it belongs to `key`.
pub fn manifest(vol: &Volume, id: &str, key: &ObjectKey) -> Result<(OwnedFd, Manifest)> {
    let dir = open_upload(vol, id)?;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        "manifest.json",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|_| Error::NoSuchUpload)?;
    let m: Manifest = serde_json::from_reader(File::from(fd)).map_err(|_| Error::NoSuchUpload)?;
    if m.key != key.as_str() {
        return Err(Error::NoSuchUpload);
    }
    Ok((dir, m))
}

/// CreateMultipartUpload: stages a manifest and returns the new upload id.
pub fn create(vol: &Volume, key: &ObjectKey, meta: ObjectMeta, owner: &str, now: i64) -> Result<String> {
    vol.check_writable()?;
    if key.is_dir_marker() {
        return Err(Error::MarkerWithBody);
    }
    let id = random_hex(16);
    fsx::mkdir_at(vol.uploads.as_fd(), &id, 0o700)?;
    let dir = open_upload(vol, &id)?;
    let m = Manifest { key: key.as_str().to_owned(), meta, initiated: now, owner: owner.to_owned() };
    let tmp = "manifest.json.tmp";
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        tmp,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = File::from(fd);
    f.write_all(&serde_json::to_vec(&m).expect("manifest serializes"))?;
    if vol.settings.fsync {
        f.sync_all()?;
    }
    fsx::rename_at(dir.as_fd(), tmp, dir.as_fd(), "manifest.json")?;
    if vol.settings.fsync {
        fsx::fsync(dir.as_fd())?;
        fsx::fsync(vol.uploads.as_fd())?;
    }
    Ok(id)
}

/// Starts writing part `number` of upload `id` (UploadPart); finish with [`commit_part`].
pub fn begin_part(vol: Arc<Volume>, id: &str, key: &ObjectKey, number: u32, declared: u64) -> Result<Writer> {
    vol.check_writable()?;
    if !(1..=MAX_PART_NUMBER).contains(&number) {
        return Err(Error::InvalidPartNumber);
    }
    manifest(&vol, id, key)?;
    Writer::begin_unchecked(vol, key.clone(), Some(declared))
}

/// Stages a written part; a re-upload of the same part number replaces the earlier one.
pub fn commit_part(w: Writer, id: &str, number: u32) -> Result<Part> {
    let vol = w.vol.clone();
    let dir = open_upload(&vol, id)?;
    let etag = meta::hex_lower(&w.md5());
    let name = format!("{number:05}-{etag}");
    let size = w.commit_into(dir.as_fd(), &name)?;
    // Drop earlier versions of this part number.
    for p in parts_in(dir.as_fd())? {
        if p.number == number
            && p.etag != etag
            && fsx::unlink_at(dir.as_fd(), &format!("{number:05}-{}", p.etag), false).is_ok()
        {
            vol.space.add_used(-(p.size as i64));
        }
    }
    let st = nix::sys::stat::fstatat(dir.as_fd(), name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(Part { number, etag, size, mtime_ns: fsx::mtime_ns(&st) })
}

/// The staged parts of an upload directory, by part number (the newest of duplicates).
fn parts_in(dir: std::os::fd::BorrowedFd<'_>) -> Result<Vec<Part>> {
    let mut parts: Vec<Part> = Vec::new();
    for e in fsx::read_dir(dir)? {
        let Ok(name) = std::str::from_utf8(&e.name) else {
            continue;
        };
        let Some((num, etag)) = name.split_once('-') else {
            continue;
        };
        let (Ok(number), true) = (num.parse::<u32>(), etag.len() == 32 && num.len() == 5) else {
            continue;
        };
        let Ok(st) = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let p = Part { number, etag: etag.to_owned(), size: st.st_size as u64, mtime_ns: fsx::mtime_ns(&st) };
        match parts.iter_mut().find(|q| q.number == number) {
            Some(q) if q.mtime_ns < p.mtime_ns => *q = p,
            Some(_) => {}
            None => parts.push(p),
        }
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// ListParts: the staged parts of upload `id`.
pub fn list_parts(vol: &Volume, id: &str, key: &ObjectKey) -> Result<(Manifest, Vec<Part>)> {
    let (dir, m) = manifest(vol, id, key)?;
    Ok((m, parts_in(dir.as_fd())?))
}

/// CompleteMultipartUpload: checks the listed parts (ascending: `InvalidPartOrder`; staged
/// with that ETag: `InvalidPart`), assembles them into a temp file, commits it atomically
/// under the key with the multipart ETag and part sizes, then removes the staging.
pub fn complete(vol: Arc<Volume>, id: &str, key: &ObjectKey, listed: &[(u32, String)]) -> Result<ObjectInfo> {
    vol.check_writable()?;
    let (dir, m) = manifest(&vol, id, key)?;
    if listed.is_empty() {
        return Err(Error::InvalidPart("the upload lists no parts".into()));
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(Error::InvalidPartOrder);
    }
    let staged = parts_in(dir.as_fd())?;
    let mut chosen = Vec::with_capacity(listed.len());
    for (number, etag) in listed {
        let etag = etag.trim_matches('"').to_ascii_lowercase();
        match staged.iter().find(|p| p.number == *number && p.etag == etag) {
            Some(p) => chosen.push(p.clone()),
            None => {
                return Err(Error::InvalidPart(format!("part {number} was not uploaded with that ETag")));
            }
        }
    }
    // Assembly copies the parts (or clones them where the file system can) before the
    // staging is removed: admit the whole object's size.
    let total: u64 = chosen.iter().map(|p| p.size).sum();
    let mut w = Writer::begin(vol.clone(), key.clone(), total)?;
    let mut md5s = Vec::with_capacity(chosen.len());
    for p in &chosen {
        let name = format!("{:05}-{}", p.number, p.etag);
        let fd = nix::fcntl::openat(
            dir.as_fd(),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|_| Error::InvalidPart(format!("part {} is gone", p.number)))?;
        w.append_file(&File::from(fd), p.size)?;
        let mut raw = [0u8; 16];
        hex_simd::decode(p.etag.as_bytes(), hex_simd::Out::from_slice(&mut raw))
            .map_err(|_| Error::InvalidPart("bad part name".into()))?;
        md5s.push(raw);
    }
    let mut meta = m.meta;
    meta.etag = meta::multipart_etag(&md5s);
    meta.parts = chosen.iter().map(|p| p.size).collect();
    let info = w.commit(meta)?;
    drop(dir);
    remove_upload(&vol, id)?;
    Ok(info)
}

/// AbortMultipartUpload: removes the staging of upload `id`.
pub fn abort(vol: &Volume, id: &str, key: &ObjectKey) -> Result<()> {
    manifest(vol, id, key)?;
    remove_upload(vol, id)
}

fn remove_upload(vol: &Volume, id: &str) -> Result<()> {
    let dir = open_upload(vol, id)?;
    for e in fsx::read_dir(dir.as_fd())? {
        let Ok(name) = std::str::from_utf8(&e.name) else {
            continue;
        };
        // Remove the manifest last-but-one so a concurrent reader sees "no such upload".
        if name != "manifest.json" {
            let size = fsx::lstat_at(dir.as_fd(), name.as_ref()).map(|st| st.st_size).unwrap_or(0);
            if fsx::unlink_at(dir.as_fd(), name, false).is_ok() {
                vol.space.add_used(-size);
            }
        }
    }
    let _ = fsx::unlink_at(dir.as_fd(), "manifest.json", false);
    drop(dir);
    match fsx::unlink_at(vol.uploads.as_fd(), id, true) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_hex_only() {
        assert!(check_upload_id(&"a".repeat(32)).is_ok());
        for bad in
            ["", "..", "../../etc", &"A".repeat(32), &"a".repeat(31), &"g".repeat(32), &format!("{}/", "a".repeat(31))]
        {
            assert!(check_upload_id(bad).is_err(), "{bad:?}");
        }
    }
}
