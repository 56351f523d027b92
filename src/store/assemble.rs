//! CompleteMultipartUpload (SPEC.md "Multipart uploads"): the claim that makes one
//! Complete at a time do the work, the assembly, and the completion record that answers
//! retries.
//!
//! Protocol, all inside the upload directory on the shared volume, so that it holds
//! between daemons on different nodes as well as between threads:
//! 1. `done.json` present: the upload was completed; a Complete listing the same parts
//!    (same multipart ETag) gets the recorded result, anything else `NoSuchUpload`.
//! 2. Otherwise the caller creates `claim` with `O_CREAT|O_EXCL` (atomic on local file
//!    systems, NFS and SFTP). The holder touches it every [`HEARTBEAT`]; another Complete
//!    that finds a fresh claim waits for `done.json`, and one that finds a claim untouched
//!    for [`CLAIM_STALE_SECS`] (its daemon died), or whose holder was a process of this
//!    node that no longer exists, renames it away and claims again.
//! 3. The holder first checks whether a dead predecessor already committed the object
//!    (its metadata holds this upload's multipart ETag and part sizes); otherwise it
//!    assembles into a temp file (reflink, else `copy_file_range`, else read/write) and
//!    commits it with one rename: readers see the old object or the whole new one. When
//!    the volume lacks room for a full copy it appends and deletes: the assembly file is
//!    named `assembly` in the upload directory, and each part is deleted only after its
//!    bytes are synced there and a line of the journal `assembly.log` says so; a retry
//!    after a crash or ENOSPC cuts the assembly back to the journal and resumes. The
//!    Complete is refused with `NoSpace` before any part is consumed when there is not
//!    room for even the largest part still to join.
//! 4. It writes `done.json`, then removes the manifest, the parts, the journal and the
//!    claim. The sweep removes the record later.
//!
//! A crash or ENOSPC at any point leaves the old object or the new whole object, never a
//! partial one, and an upload that a retried Complete finishes: no acknowledged part is
//! lost (a consumed part lives on in the journaled assembly, and ListParts lists it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::checksum::{self, Algorithm, ChecksumType};
use super::cond::Condition;
use super::key::ObjectKey;
use super::meta;
use super::multipart::{self, MANIFEST, Manifest, Part};
use super::volume::{Volume, random_hex};
use super::write::Writer;
use super::{Error, Result, fsx};

/// The claim file of an upload being completed.
pub(super) const CLAIM: &str = "claim";
/// The completion record of a completed upload.
pub(super) const DONE: &str = "done.json";
/// How often the claim holder touches its claim.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A claim untouched for this long (seconds) belongs to a daemon that died.
pub(super) const CLAIM_STALE_SECS: i64 = 60;
/// How often a waiting Complete looks for the holder's result.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// Free space kept beyond a full copy before assembly switches to append-and-delete.
const SPACE_MARGIN: u64 = 64 << 20;
/// Room (bytes) an append-and-delete needs beyond the largest part: its journal and the
/// file system's metadata for the growing assembly file.
const JOURNAL_ROOM: u64 = 1 << 20;
/// The assembly file of an append-and-delete Complete, in the upload directory.
pub(super) const ASSEMBLY: &str = "assembly";
/// The journal of [`ASSEMBLY`]: one line per part it holds, in order,
/// `<number, 5 digits> <ETag hex> <size>\n`, appended (and synced) after the part's bytes
/// are durable in the assembly and before the part is deleted.
pub(super) const JOURNAL: &str = "assembly.log";

/// A part as CompleteMultipartUpload lists it.
#[derive(Debug, Clone)]
pub struct ListedPart {
    /// Part number, 1..=10000.
    pub number: u32,
    /// The ETag the client got for the part (quotes allowed).
    pub etag: String,
    /// Checksums the client lists for the part, `(ALGORITHM, base64)`; checked when given.
    pub checksums: Vec<(String, String)>,
}

/// The object checksum a CompleteMultipartUpload states in its headers
/// (`x-amz-checksum-<alg>`, `x-amz-checksum-type`), checked against the one its parts make
/// before anything is committed. S3: "If the two values don't match, Amazon S3 fails the
/// request with a `BadDigest` error", and the same for a type other than the upload's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatedChecksum {
    /// The algorithm and base64 value; a composite value may be given with or without its
    /// `-N` suffix.
    pub value: Option<(Algorithm, String)>,
    /// The checksum type.
    pub ty: Option<ChecksumType>,
}

impl StatedChecksum {
    /// Compares with the object's checksums (`ALGORITHM -> base64`) and type.
    ///
    /// Errors: [`Error::BadDigest`] when a stated value or type differs, or names an
    /// algorithm or type the upload does not compute (it was created with another
    /// algorithm, or none).
    pub fn check(&self, checksums: &BTreeMap<String, String>, ty: Option<&str>) -> Result<()> {
        if let Some(t) = self.ty
            && ty != Some(t.as_str())
        {
            return Err(Error::BadDigest(format!(
                "The x-amz-checksum-type you specified ({}) does not match the upload's ({}).",
                t.as_str(),
                ty.unwrap_or("none: it was created without a checksum algorithm")
            )));
        }
        if let Some((alg, want)) = &self.value {
            let lower = alg.name().to_ascii_lowercase();
            let Some(have) = checksums.get(alg.name()) else {
                return Err(Error::BadDigest(format!(
                    "The {lower} you specified cannot be verified: the upload was not created with the {} checksum algorithm.",
                    alg.name()
                )));
            };
            let bare = have.split_once('-').map_or(have.as_str(), |(v, _)| v);
            if want != have && want != bare {
                return Err(Error::BadDigest(format!(
                    "The {lower} you specified did not match the calculated checksum."
                )));
            }
        }
        Ok(())
    }
}

/// The result of a completed upload: what Complete answers, and (as `done.json`) what a
/// retried Complete answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    /// The object key.
    pub key: String,
    /// The multipart ETag, unquoted (`<hex>-N`).
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// The object's additional checksum, `ALGORITHM -> base64` (composite ones end `-N`).
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
    /// `COMPOSITE` or `FULL_OBJECT` when a checksum is given.
    #[serde(default)]
    pub checksum_type: Option<String>,
    /// Completion time, seconds since the epoch.
    pub finished: i64,
    /// How the parts were joined: `reflink`, `copy`, `append-and-delete`, or `recovered`
    /// (a predecessor committed the object and died before recording it).
    pub method: String,
}

/// The content of a claim file.
#[derive(Debug, Serialize, Deserialize)]
struct ClaimNote {
    host: String,
    pid: u32,
    started: i64,
}

impl ClaimNote {
    /// True when the holder ran on this node and its process is gone (a daemon restarted
    /// after a crash need not wait for the claim to go stale).
    fn holder_is_dead(&self) -> bool {
        self.host.len() > 2
            && self.host == hostname()
            && self.pid != std::process::id()
            && i32::try_from(self.pid).is_ok_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::Error::ESRCH)
            })
    }
}

/// This node, boot and PID namespace: `<hostname>/<kernel boot id>/<pid namespace>`. A pid
/// means nothing across any of them: two containers on one node (host network, so one
/// hostname) each see the other's pids as missing, and must not take a live holder for a
/// dead one. A record without the namespace (an older s3vol) never matches, so it is only
/// ever broken by age.
pub(super) fn hostname() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    let pidns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{}/{}/{pidns}", read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/random/boot_id"))
}

enum Claim {
    Ours(OwnedFd),
    Busy,
    Stale,
}

/// CompleteMultipartUpload of upload `id` for `key` with the `listed` parts.
///
/// Blocks for the whole assembly (seconds to minutes for a copy of a large object), or,
/// when another Complete of the same upload is running, until that one finishes.
///
/// Errors: [`Error::InvalidPart`] (no parts, a part not staged with that ETag or checksum,
/// or a part removed meanwhile), [`Error::InvalidPartOrder`], [`Error::BadDigest`] (the
/// `stated` object checksum or type differs, [`StatedChecksum::check`]; also for a retry
/// of a completed upload), [`Error::NoSuchUpload`]
/// (unknown, aborted, or completed with other parts), write errors of the commit
/// ([`Error::NoSpace`], ...). On any error the object at `key` is untouched.
///
/// `cond` (`If-None-Match: *` or `If-Match`) is judged before the assembly, to spare it,
/// and again atomically at the commit ([`Writer::commit_if`]); when it fails
/// ([`Error::PreconditionFailed`], [`Error::NotFound`], [`Error::ConditionalConflict`])
/// every part is kept, so the upload can still be completed or aborted. A conditional
/// Complete therefore never assembles by append-and-delete: without room for a copy (or
/// a reflink) it answers [`Error::NoSpace`].
pub fn complete(
    vol: Arc<Volume>,
    id: &str,
    key: &ObjectKey,
    listed: &[ListedPart],
    stated: &StatedChecksum,
    cond: &Condition,
) -> Result<Completed> {
    vol.check_writable()?;
    if listed.is_empty() {
        return Err(Error::InvalidPart("the upload lists no parts".into()));
    }
    if listed.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(Error::InvalidPartOrder);
    }
    let expected = expected_etag(listed)?;
    let dir = multipart::open_upload(&vol, id)?;
    let recorded = |dir: BorrowedFd<'_>| {
        multipart::read_json::<Completed>(dir, DONE).map(|done| {
            if done.key != key.as_str() || done.etag != expected {
                return Err(Error::NoSuchUpload);
            }
            stated.check(&done.checksums, done.checksum_type.as_deref())?;
            Ok(done)
        })
    };
    let (claim, manifest, chosen) = loop {
        if let Some(r) = recorded(dir.as_fd()) {
            return r;
        }
        let m = match multipart::read_manifest(dir.as_fd(), key) {
            Ok(m) => m,
            // The holder may have just recorded its result and removed the manifest.
            Err(e) => return recorded(dir.as_fd()).unwrap_or(Err(e)),
        };
        let chosen = choose(dir.as_fd(), listed)?;
        super::part_size::check_listed(&chosen, vol.settings.min_part_size)?;
        match try_claim(dir.as_fd())? {
            Claim::Ours(fd) => break (fd, m, chosen),
            Claim::Busy => std::thread::sleep(WAIT_POLL),
            Claim::Stale => take_over(dir.as_fd()),
        }
    };
    let result = std::thread::scope(|s| {
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = claim.as_fd();
        s.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                let _ = fsx::touch(heartbeat);
            }
        });
        let r = assemble(&vol, dir.as_fd(), key, manifest, &chosen, listed, stated, &expected, cond);
        drop(stop);
        r
    });
    drop(claim);
    match result {
        Ok(done) => {
            if let Err(e) = multipart::write_json(dir.as_fd(), DONE, &done, vol.settings.fsync) {
                // The object is committed; a retry finds it by its metadata (recovery).
                warn!(upload = id, error = %e, "cannot record the completed upload");
            }
            let removed = multipart::remove_files(dir.as_fd(), |n| n == MANIFEST)
                + multipart::remove_files(dir.as_fd(), |n| n != DONE);
            vol.space.add_used(-removed);
            info!(upload = id, method = %done.method, size = done.size, parts = chosen.len(), "upload completed");
            Ok(done)
        }
        Err(e) => {
            let _ = fsx::unlink_at(dir.as_fd(), CLAIM, false);
            Err(e)
        }
    }
}

/// The multipart ETag the listed parts make (S3: MD5 of the part MD5s, `-N`).
fn expected_etag(listed: &[ListedPart]) -> Result<String> {
    let mut md5s = Vec::with_capacity(listed.len());
    for p in listed {
        let hex = p.etag.trim().trim_matches('"').to_ascii_lowercase();
        let mut raw = [0u8; 16];
        if hex.len() != 32 || hex_simd::decode(hex.as_bytes(), hex_simd::Out::from_slice(&mut raw)).is_err() {
            return Err(Error::InvalidPart(format!("part {} was not uploaded with that ETag", p.number)));
        }
        md5s.push(raw);
    }
    Ok(meta::multipart_etag(&md5s))
}

/// The staged part for each listed one: same number, same ETag, same checksums when listed.
/// Any staged version of a number may be listed (see `multipart::commit_part`), and so may
/// a part an interrupted append-and-delete already moved into its assembly file.
fn choose(dir: BorrowedFd<'_>, listed: &[ListedPart]) -> Result<Vec<Part>> {
    let mut staged: Vec<Part> = multipart::part_versions(dir)?.into_iter().map(|v| v.part).collect();
    staged.extend(journaled(dir));
    let mut chosen = Vec::with_capacity(listed.len());
    for l in listed {
        let etag = l.etag.trim().trim_matches('"').to_ascii_lowercase();
        let Some(p) = staged.iter().find(|p| p.number == l.number && p.etag == etag) else {
            return Err(Error::InvalidPart(format!("part {} was not uploaded with that ETag", l.number)));
        };
        if !l.checksums.is_empty() {
            let have = multipart::part_checksums(dir, p);
            for (alg, v) in &l.checksums {
                if have.get(alg).is_some_and(|h| h != v) {
                    return Err(Error::InvalidPart(format!("the {alg} checksum of part {} does not match", l.number)));
                }
            }
        }
        chosen.push(p.clone());
    }
    Ok(chosen)
}

fn try_claim(dir: BorrowedFd<'_>) -> Result<Claim> {
    match fsx::create_excl(dir, CLAIM, OFlag::O_WRONLY, 0o600)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    {
        Ok(fd) => {
            // Who holds it: lets a daemon restarted on the same node see at once that the
            // holder is gone, and tells an operator who is working.
            let note = ClaimNote { host: hostname(), pid: std::process::id(), started: fsx::now_secs() };
            let _ = File::from(fd.try_clone()?).write_all(&serde_json::to_vec(&note).expect("plain data"));
            Ok(Claim::Ours(fd))
        }
        Err(nix::Error::EEXIST) => {
            match nix::sys::stat::fstatat(dir, CLAIM, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if fsx::now_secs() - st.st_mtime > CLAIM_STALE_SECS => Ok(Claim::Stale),
                Ok(_) if multipart::read_json::<ClaimNote>(dir, CLAIM).is_some_and(|n| n.holder_is_dead()) => {
                    Ok(Claim::Stale)
                }
                Ok(_) | Err(nix::Error::ENOENT) => Ok(Claim::Busy),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes a stale claim. Renaming first means that of several daemons taking over at
/// once, one removes it and the others find it gone and claim again in order.
fn take_over(dir: BorrowedFd<'_>) {
    let grave = format!("{CLAIM}.stale-{}", random_hex(6));
    if fsx::rename_at(dir, CLAIM, dir, &grave).is_ok() {
        warn!("taking over the completion of an upload whose daemon stopped");
        let _ = fsx::unlink_at(dir, &grave, false);
    }
}

/// Joins the chosen parts into the object at `key` under `cond` (the caller holds the claim).
#[allow(clippy::too_many_arguments)]
fn assemble(
    vol: &Arc<Volume>,
    dir: BorrowedFd<'_>,
    key: &ObjectKey,
    manifest: Manifest,
    chosen: &[Part],
    listed: &[ListedPart],
    stated: &StatedChecksum,
    expected: &str,
    cond: &Condition,
) -> Result<Completed> {
    let sizes: Vec<u64> = chosen.iter().map(|p| p.size).collect();
    let total: u64 = sizes.iter().sum();
    let (checksums, checksum_type, part_checksums) = object_checksum(dir, &manifest, chosen, listed);
    // Before any part is joined: a mismatch leaves the object and every part as they were.
    stated.check(&checksums, checksum_type.as_deref())?;
    let done = |method: &str| Completed {
        key: key.as_str().to_owned(),
        etag: expected.to_owned(),
        size: total,
        checksums: checksums.clone(),
        checksum_type: checksum_type.clone(),
        finished: fsx::now_secs(),
        method: method.to_owned(),
    };
    // A predecessor that died between its commit and its record left the whole object:
    // the same ETag and part sizes, and this upload's metadata (another upload of the same
    // bytes with other metadata is not this one). A conditional Complete never takes this
    // shortcut: it would answer 200 without judging its condition (a retry of one whose
    // first attempt committed then answers by the condition, e.g. 412 for
    // `If-None-Match: *`, and commits nothing).
    let own_meta = |m: &super::meta::ObjectMeta| {
        let strip = |m: &super::meta::ObjectMeta| super::meta::ObjectMeta {
            etag: String::new(),
            parts: Vec::new(),
            checksums: Default::default(),
            part_checksums: Vec::new(),
            fp: None,
            ..m.clone()
        };
        strip(m) == strip(&manifest.meta)
    };
    if *cond == Condition::None
        && let Ok(info) = vol.head(key)
        && info.from_xattr
        && info.meta.etag == expected
        && info.meta.parts == sizes
        && own_meta(&info.meta)
    {
        return Ok(done("recovered"));
    }
    // Fails early, before any work, a condition that does not hold now.
    let _ = cond.check(vol, key)?;
    // Room for the assembly is judged below, part by part (a clone needs none, a copy
    // the whole object, append-and-delete about one part); the object's size limit holds.
    if vol.space.limits.max_object_size.is_some_and(|max| sizes.iter().sum::<u64>() > max) {
        return Err(Error::EntityTooLarge);
    }
    let free_space = || vol.space_report().map_or(u64::MAX, |r| if r.capacity == 0 { u64::MAX } else { r.free });
    let journal = read_journal(dir);
    let (mut w, start, mut destructive) = match &journal {
        Some((done_parts, _)) if !done_parts.is_empty() => {
            // An append-and-delete that a crash or ENOSPC cut: its journal's parts are in the
            // assembly file (and may be gone from staging); they must be the first listed.
            let same = |j: &Part, c: &Part| j.number == c.number && j.etag == c.etag && j.size == c.size;
            if done_parts.len() > chosen.len() || !done_parts.iter().zip(chosen).all(|(j, c)| same(j, c)) {
                return Err(Error::InvalidPart(
                    "a cut Complete already joined other parts of this upload; list those".into(),
                ));
            }
            let rest = &chosen[done_parts.len()..];
            if free_space() < rest.iter().map(|p| p.size).max().unwrap_or(0).saturating_add(JOURNAL_ROOM) {
                return Err(Error::NoSpace);
            }
            let len = done_parts.iter().map(|p| p.size).sum();
            truncate_journal(dir, journal.as_ref().map_or(0, |j| j.1))?;
            let w = Writer::resume_assembly(vol.clone(), key.clone(), dir, ASSEMBLY, len).map_err(|e| match e {
                Error::NotFound => Error::InvalidPart("the partly joined parts of this upload are gone".into()),
                e => e,
            })?;
            info!(joined = done_parts.len(), of = chosen.len(), "resuming a cut append-and-delete assembly");
            (w, done_parts.len(), Some(true))
        }
        _ => {
            // Leftovers of an attempt cut before it consumed any part hold nothing needed.
            let _ = fsx::unlink_at(dir, JOURNAL, false);
            let _ = fsx::unlink_at(dir, ASSEMBLY, false);
            // A conditional Complete can fail at its commit: it keeps every part until then.
            let keep_parts = (*cond != Condition::None).then_some(false);
            (Writer::begin_assembly(vol.clone(), key.clone())?, 0, keep_parts)
        }
    };
    let mut reflink = start == 0;
    let mut joined: u64 = chosen[..start].iter().map(|p| p.size).sum();
    let mut method = if start == 0 { "reflink" } else { "append-and-delete" };
    for (i, p) in chosen.iter().enumerate().skip(start) {
        let name = p.file_name();
        let fd = nix::fcntl::openat(
            dir,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|_| Error::InvalidPart(format!("part {} is gone (aborted?)", p.number)))?;
        let f = File::from(fd);
        if reflink && w.reflink_file(&f, p.size)? {
            joined += p.size;
            continue;
        }
        reflink = false;
        // No reflink: copy, keeping the parts (a failed Complete can be retried) when the
        // volume has room for the whole object; else delete each part once appended, so
        // that the extra space stays near one part.
        let append_and_delete = match destructive {
            Some(d) => d,
            None => {
                let free = free_space();
                // Not even room for the largest part still to join: refuse before any
                // part is consumed, so that the upload can be completed later.
                let largest = chosen[i..].iter().map(|q| q.size).max().unwrap_or(0);
                if free < largest.saturating_add(JOURNAL_ROOM) {
                    return Err(Error::NoSpace);
                }
                let d = free < (total - joined).saturating_add(SPACE_MARGIN);
                if d {
                    // Parts are consumed from here on: the assembly gets a name in the upload
                    // directory and a journal of what it holds, so that a crash or ENOSPC at
                    // any point leaves an upload a retry resumes, never lost parts.
                    w.stage_as(dir, ASSEMBLY)?;
                    if i > 0 {
                        w.sync_all()?;
                        for q in &chosen[..i] {
                            append_journal(dir, q)?; // cloned: still staged too
                        }
                    }
                }
                *destructive.insert(d)
            }
        };
        w.copy_file(&f, p.size)?;
        joined += p.size;
        if append_and_delete {
            method = "append-and-delete";
            // The part's bytes are durable in the assembly, and the journal says so, before
            // the part goes: its only copy is never the one being written.
            w.sync_all()?;
            append_journal(dir, p)?;
            drop(f);
            if fsx::unlink_at(dir, &name, false).is_ok() {
                vol.space.add_used(-(p.size as i64));
            }
        } else {
            method = "copy";
        }
    }
    let mut meta = manifest.meta;
    meta.etag = expected.to_owned();
    meta.parts = sizes;
    meta.checksums = checksums.clone();
    meta.part_checksums = part_checksums;
    w.commit_if(meta, cond)?;
    Ok(done(method))
}

/// The parts the journal of a cut append-and-delete says its assembly holds, in order, and
/// the length of the journal's whole lines (a torn last line is not counted). `None` when
/// there is no journal.
fn read_journal(dir: BorrowedFd<'_>) -> Option<(Vec<Part>, u64)> {
    let fd =
        nix::fcntl::openat(dir, JOURNAL, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty()).ok()?;
    let f = File::from(fd);
    let mtime_ns = fsx::fstat(f.as_fd()).map(|st| fsx::mtime_ns(&st)).unwrap_or(0);
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut text).ok()?;
    let (mut parts, mut valid) = (Vec::new(), 0u64);
    for line in text.split_inclusive(|&b| b == b'\n') {
        let Some(body) = line.strip_suffix(b"\n").and_then(|l| std::str::from_utf8(l).ok()) else { break };
        let mut it = body.split(' ');
        let (Some(n), Some(etag), Some(size), None) = (it.next(), it.next(), it.next(), it.next()) else { break };
        let (Ok(number), Ok(size)) = (n.parse::<u32>(), size.parse::<u64>()) else { break };
        if !multipart::is_part_file(&format!("{n}-{etag}")) {
            break;
        }
        parts.push(Part { number, etag: etag.to_owned(), size, mtime_ns });
        valid += line.len() as u64;
    }
    Some((parts, valid))
}

/// The parts an interrupted append-and-delete moved into its assembly file (for ListParts
/// and Complete: they are still staged, in the assembly).
pub(super) fn journaled(dir: BorrowedFd<'_>) -> Vec<Part> {
    read_journal(dir).map(|(parts, _)| parts).unwrap_or_default()
}

/// Cuts a torn last line off the journal, so that the next line starts clean.
fn truncate_journal(dir: BorrowedFd<'_>, valid: u64) -> Result<()> {
    let fd = nix::fcntl::openat(dir, JOURNAL, OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())?;
    File::from(fd).set_len(valid)?;
    Ok(())
}

/// Records in the journal that the assembly holds part `p` (after the parts before it),
/// durably: the line is synced (and the journal's name, when it is new) before returning.
fn append_journal(dir: BorrowedFd<'_>, p: &Part) -> Result<()> {
    let fd = nix::fcntl::openat(
        dir,
        JOURNAL,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = File::from(fd);
    let fresh = fsx::fstat(f.as_fd()).is_ok_and(|st| st.st_size == 0);
    f.write_all(format!("{:05} {} {}\n", p.number, p.etag, p.size).as_bytes())?;
    f.sync_all()?;
    if fresh {
        fsx::fsync(dir)?;
    }
    Ok(())
}

/// The object's additional checksum from the parts' ones, with its type and the parts'
/// values (base64, in part order) for HEAD/GET `partNumber` and GetObjectAttributes; see
/// [`checksum::multipart`] for the rules. The type is the one given at Create, else the
/// algorithm's default. Nothing when the upload named no algorithm or a part lacks its
/// value.
fn object_checksum(
    dir: BorrowedFd<'_>,
    manifest: &Manifest,
    chosen: &[Part],
    listed: &[ListedPart],
) -> (BTreeMap<String, String>, Option<String>, Vec<String>) {
    let none = (BTreeMap::new(), None, Vec::new());
    let Some(alg) = manifest.checksum_algorithm.as_deref().and_then(Algorithm::from_name) else {
        return none;
    };
    let ty = manifest.checksum_type.as_deref().and_then(ChecksumType::parse).unwrap_or(alg.default_type());
    let mut raw_parts = Vec::with_capacity(chosen.len());
    let mut values = Vec::with_capacity(chosen.len());
    for (p, l) in chosen.iter().zip(listed) {
        let staged = multipart::part_checksums(dir, p).remove(alg.name());
        let given = l.checksums.iter().find(|(a, _)| a == alg.name()).map(|(_, v)| v.clone());
        let Some(b64) = staged.or(given) else {
            return none;
        };
        let Some(raw) = alg.decode(&b64) else {
            return none;
        };
        raw_parts.push((raw, p.size));
        values.push(b64);
    }
    match checksum::multipart(alg, ty, &raw_parts) {
        Some(v) => (BTreeMap::from([(alg.name().to_owned(), v)]), Some(ty.as_str().to_owned()), values),
        None => none,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_etag_refuses_non_md5() {
        let p = |e: &str| ListedPart { number: 1, etag: e.into(), checksums: vec![] };
        assert!(expected_etag(&[p("\"0123456789abcdef0123456789abcdef\"")]).is_ok());
        assert!(matches!(expected_etag(&[p("nothex")]), Err(Error::InvalidPart(_))));
    }
}
