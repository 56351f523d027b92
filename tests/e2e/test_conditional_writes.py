"""Conditional writes are atomic, on one daemon and across daemons sharing a volume
(issue 13, item 2; SPEC.md "Writes are atomic and durable").

- PutObject / CompleteMultipartUpload with `If-None-Match: *`: of N concurrent creators
  exactly one gets 200, the others 412 PreconditionFailed, and the file is the winner's.
- `If-Match: ETAG` on PutObject / CompleteMultipartUpload is a compare-and-swap: of N
  writers holding the same ETag exactly one wins.
- DeleteObject with `If-Match` deletes only the object with that ETag.

Two s3vol processes serve one directory here as two nodes would serve one network
volume. Every test runs twice: on the tmp directory's file system, and on ramfs, which has no
user extended attributes (ETags are synthesized from the file, as on NFSv3 and JuiceFS
by default, and If-Match must compare with those). ramfs needs root; without it the
ramfs cases skip (fail under CI).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import time
import uuid
import subprocess
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from helpers import (
    DEFAULT_KEYS,
    Daemon,
    data,
    err_code,
    err_status,
    internal_files,
    md5_etag,
    s3vol_bin,
    start_daemon,
    stop_daemon,
    toml_str,
    wait_listening,
    write_credentials,
)

MiB = 1 << 20
N = 16


def start_second(workdir: Path, vol: Path, name: str = "vol-a") -> Daemon:
    """A second s3vol serving the directory `vol` (already served by another daemon)."""
    workdir.mkdir(parents=True)
    creds = write_credentials(workdir / "credentials.toml", DEFAULT_KEYS)
    cfg = workdir / "s3vol.toml"
    cfg.write_text(
        f'listen = "127.0.0.1:0"\nregion = "us-east-1"\ncredentials = {toml_str(creds)}\n'
        f"[[volume]]\nname = {toml_str(name)}\npath = {toml_str(vol)}\n"
    )
    log = workdir / "s3vol.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(s3vol_bin()), "serve", "--config", str(cfg)], cwd=workdir,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf,
                                env=dict(os.environ, RUST_LOG="info"))
    d = Daemon(proc=proc, scheme="http", host="127.0.0.1", port=0, root=workdir, vols={name: vol},
               region="us-east-1", ca=None, log=log, workdir=workdir)
    addr = wait_listening(proc, d.stdout_lines, 30)
    if addr is None:
        stop_daemon(d)
        pytest.fail(f"second s3vol did not start:\n{d.log_tail()}", pytrace=False)
    d.host, d.port = addr
    return d


def mount_ramfs(mnt: Path) -> bool:
    mnt.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "ramfs", "-o", "size=256m", "ramfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"mounting ramfs needs root: {r.stderr.strip()}", pytrace=False)
        return False
    return True


@pytest.fixture(scope="module", params=["tmpdir", "ramfs"])
def nodes(request, tmp_path_factory):
    """Two daemons ("nodes") serving one volume directory: (a, b, volume path)."""
    base = tmp_path_factory.mktemp(f"cond-{request.param}")
    mnt = None
    if request.param == "ramfs":
        mnt = base / "ramfs"
        if not mount_ramfs(mnt):
            pytest.skip("cannot mount ramfs (not root)")
        vol = mnt / "vol-a"
        vol.mkdir()
    a = start_daemon(base / "a", volumes=("vol-a",))
    if mnt is None:
        vol = a.vol("vol-a")
    else:
        stop_daemon(a)
        a = start_second(base / "a2", vol)
    b = start_second(base / "b", vol)
    try:
        yield a, b, vol
    finally:
        for d in (a, b):
            stop_daemon(d)
        if mnt is not None:
            subprocess.run(["umount", str(mnt)], check=False)


def clients(a: Daemon, b: Daemon):
    return a.client(max_pool_connections=N * 2), b.client(max_pool_connections=N * 2)


def race(n: int, fn) -> list:
    """Runs fn(i) for i in 0..n at once; each result is (200, value) or (status, code)."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=60)
        try:
            return 200, fn(i)
        except ClientError as e:
            return err_status(e), err_code(e)

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(run, range(n), timeout=300))


def no_leftovers(vol: Path):
    """No temp file, lock file or lock grave is left in the internal tmp/ directory."""
    left = {k: v for k, v in internal_files(vol).items() if k.startswith("tmp/")}
    assert left == {}, f"left in .s3vol/tmp: {left}"


def winner_of(results):
    won = [i for i, r in enumerate(results) if r[0] == 200]
    assert len(won) == 1, f"exactly one winner expected: {results}"
    lost = [r for r in results if r[0] != 200]
    assert all(r == (412, "PreconditionFailed") for r in lost), f"the others get 412: {lost}"
    return won[0]


# ------------------------------------------------------------------------ If-None-Match

@pytest.mark.parametrize("split", [False, True], ids=["one-daemon", "two-daemons"])
def test_if_none_match_create_race_has_exactly_one_winner(nodes, split):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    for trial in range(4):
        key = f"race/{'split' if split else 'one'}-{trial}.lock"
        bodies = [data(256 * 1024, seed=f"{key}-{i}") for i in range(N)]

        def put(i):
            c = cb if split and i % 2 else ca
            return c.put_object(Bucket="vol-a", Key=key, Body=bodies[i], IfNoneMatch="*")["ETag"]

        results = race(N, put)
        w = winner_of(results)
        assert (vol / key).read_bytes() == bodies[w], "the file on disk is the winner's bytes"
        got = ca.get_object(Bucket="vol-a", Key=key)
        assert got["Body"].read() == bodies[w]
    no_leftovers(vol)


def test_if_none_match_on_an_existing_key_keeps_the_file(nodes):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    ca.put_object(Bucket="vol-a", Key="exists.txt", Body=b"first")
    for c in (ca, cb):
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket="vol-a", Key="exists.txt", Body=b"second", IfNoneMatch="*")
        assert (err_status(e.value), err_code(e.value)) == (412, "PreconditionFailed")
    assert (vol / "exists.txt").read_bytes() == b"first"
    no_leftovers(vol)


# ----------------------------------------------------------------------------- If-Match

@pytest.mark.parametrize("split", [False, True], ids=["one-daemon", "two-daemons"])
def test_if_match_compare_and_swap_race_has_exactly_one_winner(nodes, split):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    key = f"cas/{'split' if split else 'one'}.json"
    etag = ca.put_object(Bucket="vol-a", Key=key, Body=b"version 0")["ETag"]
    for trial in range(3):
        bodies = [data(64 * 1024, seed=f"{key}-{trial}-{i}") for i in range(N)]

        def put(i):
            c = cb if split and i % 2 else ca
            return c.put_object(Bucket="vol-a", Key=key, Body=bodies[i], IfMatch=etag)["ETag"]

        results = race(N, put)
        w = winner_of(results)
        assert (vol / key).read_bytes() == bodies[w], "the file on disk is the winner's bytes"
        head = cb.head_object(Bucket="vol-a", Key=key)
        assert head["ETag"] == results[w][1], "the object carries the winner's ETag"
        etag = results[w][1]
    no_leftovers(vol)


def test_if_match_mismatch_is_412_and_the_file_unchanged(nodes):
    a, b, vol = nodes
    ca, _ = clients(a, b)
    ca.put_object(Bucket="vol-a", Key="m.txt", Body=b"original")
    with pytest.raises(ClientError) as e:
        ca.put_object(Bucket="vol-a", Key="m.txt", Body=b"replacement", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert (err_status(e.value), err_code(e.value)) == (412, "PreconditionFailed")
    assert (vol / "m.txt").read_bytes() == b"original"
    # If-Match on a missing key: 404 NoSuchKey, and nothing is created.
    with pytest.raises(ClientError) as e:
        ca.put_object(Bucket="vol-a", Key="missing.txt", Body=b"x", IfMatch=md5_etag(b"x"))
    assert (err_status(e.value), err_code(e.value)) == (404, "NoSuchKey")
    assert not (vol / "missing.txt").exists()
    no_leftovers(vol)


# ---------------------------------------------------------------- CompleteMultipartUpload

def upload_parts(c, key: str, seed: str, n: int = 2):
    up = c.create_multipart_upload(Bucket="vol-a", Key=key)["UploadId"]
    parts, body = [], b""
    for i in range(1, n + 1):
        chunk = data(5 * MiB if i < n else 1000, seed=f"{seed}-{i}")
        e = c.upload_part(Bucket="vol-a", Key=key, UploadId=up, PartNumber=i, Body=chunk)["ETag"]
        parts.append({"PartNumber": i, "ETag": e})
        body += chunk
    return up, parts, body


def test_complete_if_none_match_on_an_existing_key_is_412_and_keeps_the_parts(nodes):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    key = "mp/exists.bin"
    ca.put_object(Bucket="vol-a", Key=key, Body=b"already here")
    up, parts, body = upload_parts(ca, key, "keep")
    with pytest.raises(ClientError) as e:
        cb.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up,
                                     MultipartUpload={"Parts": parts}, IfNoneMatch="*")
    assert (err_status(e.value), err_code(e.value)) == (412, "PreconditionFailed")
    assert (vol / key).read_bytes() == b"already here"
    staged = [k for k in internal_files(vol) if k.startswith(f"multipart/{up}") or up in k]
    assert len(ca.list_parts(Bucket="vol-a", Key=key, UploadId=up)["Parts"]) == 2, "the parts are kept"
    assert staged, "the staged part files are still on disk"
    # A mismatching If-Match keeps them too; the matching one completes.
    with pytest.raises(ClientError) as e:
        ca.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up, MultipartUpload={"Parts": parts},
                                     IfMatch='"0123456789abcdef0123456789abcdef"')
    assert err_status(e.value) == 412
    etag = ca.head_object(Bucket="vol-a", Key=key)["ETag"]
    r = cb.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up, MultipartUpload={"Parts": parts},
                                     IfMatch=etag)
    assert (vol / key).read_bytes() == body
    if "ramfs" not in str(vol):  # without xattrs HEAD shows a synthesized ETag
        assert ca.head_object(Bucket="vol-a", Key=key)["ETag"] == r["ETag"]
    # Another upload refused by If-None-Match can still be aborted, leaving nothing.
    up2, parts2, _ = upload_parts(ca, key, "abort")
    with pytest.raises(ClientError) as e:
        ca.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up2,
                                     MultipartUpload={"Parts": parts2}, IfNoneMatch="*")
    assert err_status(e.value) == 412
    cb.abort_multipart_upload(Bucket="vol-a", Key=key, UploadId=up2)
    assert (vol / key).read_bytes() == body
    assert not [k for k in internal_files(vol) if up2 in k], "the aborted upload left nothing"


def test_complete_if_none_match_race_has_exactly_one_winner(nodes):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    key = "mp/race.bin"
    uploads = [upload_parts(ca, key, f"race-{i}") for i in range(4)]

    def complete(i):
        up, parts, _ = uploads[i]
        c = cb if i % 2 else ca
        return c.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up,
                                           MultipartUpload={"Parts": parts}, IfNoneMatch="*")["ETag"]

    results = race(len(uploads), complete)
    w = winner_of(results)
    assert (vol / key).read_bytes() == uploads[w][2], "the file on disk is the winner's bytes"
    for i, (up, _, _) in enumerate(uploads):
        if i != w:
            ca.abort_multipart_upload(Bucket="vol-a", Key=key, UploadId=up)


# ---------------------------------------------------------------------------- DeleteObject

def test_delete_if_match_deletes_only_that_etag(nodes):
    a, b, vol = nodes
    ca, cb = clients(a, b)
    etag = ca.put_object(Bucket="vol-a", Key="d/x.txt", Body=b"delete me")["ETag"]
    with pytest.raises(ClientError) as e:
        cb.delete_object(Bucket="vol-a", Key="d/x.txt", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert (err_status(e.value), err_code(e.value)) == (412, "PreconditionFailed")
    assert (vol / "d/x.txt").read_bytes() == b"delete me"
    cb.delete_object(Bucket="vol-a", Key="d/x.txt", IfMatch=etag)
    assert not (vol / "d/x.txt").exists()
    with pytest.raises(ClientError) as e:
        ca.delete_object(Bucket="vol-a", Key="d/x.txt", IfMatch=etag)
    assert (err_status(e.value), err_code(e.value)) == (404, "NoSuchKey")
    no_leftovers(vol)


def test_delete_if_match_race_with_cas_writers_has_one_winner(nodes):
    """Deleters and writers holding one ETag: exactly one of them succeeds."""
    a, b, vol = nodes
    ca, cb = clients(a, b)
    key = "d/contended.txt"
    etag = ca.put_object(Bucket="vol-a", Key=key, Body=b"v0")["ETag"]
    bodies = [data(4096, seed=f"dc-{i}") for i in range(8)]

    def act(i):
        c = cb if i % 2 else ca
        if i < 4:
            return c.delete_object(Bucket="vol-a", Key=key, IfMatch=etag) and "deleted"
        return c.put_object(Bucket="vol-a", Key=key, Body=bodies[i], IfMatch=etag)["ETag"]

    results = race(8, act)
    won = [i for i, r in enumerate(results) if r[0] == 200]
    assert len(won) == 1, results
    assert all(r[0] in (412, 404) for r in results if r[0] != 200), results
    if won[0] < 4:
        assert not (vol / key).exists()
    else:
        assert (vol / key).read_bytes() == bodies[won[0]]
    no_leftovers(vol)


def test_complete_of_another_upload_with_the_same_bytes_does_not_count_as_done(nodes):
    """Complete's crash-recovery shortcut ("the object with these parts is already there")
    used to answer 200 for any upload whose parts matched the object: with If-None-Match
    on an existing key, and silently dropping the second upload's metadata."""
    a, b, vol = nodes
    if "ramfs" in str(vol):
        pytest.skip("no extended attributes on ramfs: no metadata to compare, no shortcut taken")
    ca, cb = clients(a, b)
    key = f"same-bytes-{uuid.uuid4().hex[:8]}"

    def upload(c, who):
        up = c.create_multipart_upload(Bucket="vol-a", Key=key, ContentType=f"type/{who}",
                                       Metadata={"who": str(who)})["UploadId"]
        e = c.upload_part(Bucket="vol-a", Key=key, UploadId=up, PartNumber=1, Body=b"identical part")["ETag"]
        return up, [{"PartNumber": 1, "ETag": e}]

    up0, parts0 = upload(ca, 0)
    up1, parts1 = upload(cb, 1)
    up2, parts2 = upload(ca, 2)
    ca.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up0, MultipartUpload={"Parts": parts0},
                                 IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        cb.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up1, MultipartUpload={"Parts": parts1},
                                     IfNoneMatch="*")
    assert err_status(e.value) == 412, e.value
    assert ca.head_object(Bucket="vol-a", Key=key)["Metadata"] == {"who": "0"}
    # Without a condition the second upload of the same bytes is committed, metadata and all.
    cb.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up2, MultipartUpload={"Parts": parts2})
    h = cb.head_object(Bucket="vol-a", Key=key)
    assert (h["ContentType"], h["Metadata"]) == ("type/2", {"who": "2"})
    ca.abort_multipart_upload(Bucket="vol-a", Key=key, UploadId=up1)


def test_lock_of_a_holder_in_another_pid_namespace_is_not_broken_early(nodes):
    """A lock's holder on the same host but in another PID namespace (two containers with
    host networking) looks dead to `kill(pid, 0)`: its live lock used to be broken at once,
    so two compare-and-swaps could both win. Only age breaks such a lock now."""
    a, b, vol = nodes
    ca, _ = clients(a, b)
    key = f"pidns-{uuid.uuid4().hex[:8]}"
    etag = ca.put_object(Bucket="vol-a", Key=key, Body=b"v0")["ETag"]
    read = lambda p: Path(p).read_text().strip()  # noqa: E731
    # Same host and boot, and no namespace that matches ours (as an older s3vol in another
    # container writes it): its pid means nothing here.
    host = f"{read('/proc/sys/kernel/hostname')}/{read('/proc/sys/kernel/random/boot_id')}"
    lock = vol / ".s3vol" / "tmp" / ("lock-" + hashlib.md5(key.encode()).hexdigest())
    lock.write_text(json.dumps({"host": host, "pid": 4_000_000, "nonce": "0123456789abcdef",
                                "taken": int(time.time())}))
    try:
        started = time.monotonic()
        with pytest.raises(ClientError) as e:
            ca.put_object(Bucket="vol-a", Key=key, Body=b"v1", IfMatch=etag)
        assert (err_status(e.value), err_code(e.value)) == (409, "ConditionalRequestConflict"), e.value
        assert time.monotonic() - started >= 5
        assert lock.exists(), "the live holder's lock was broken"
        assert (vol / key).read_bytes() == b"v0"
    finally:
        lock.unlink(missing_ok=True)


@pytest.mark.parametrize("op", ["put", "delete"])
def test_conditional_write_racing_an_unconditional_put_never_overwrites_it(nodes, op):
    """The outside reliability pass: a compare-and-swap judged its ETag, then an
    unconditional PUT landed, then the compare-and-swap's rename overwrote it: both answered
    200 and the later-acknowledged PUT was gone (3 in 600 rounds). Whatever the order, the
    unconditional PUT's bytes must be what stays: either it came first (the condition then
    fails) or it is ordered after the conditional write."""
    a, b, vol = nodes
    ca, cb = clients(a, b)
    c0 = a.client()
    rounds, lost = 120, []
    for r in range(rounds):
        key = f"race-{op}/{r % 4}"
        etag = c0.put_object(Bucket="vol-a", Key=key, Body=b"base")["ETag"]
        plain = f"plain {r}".encode()

        def conditional(_):
            if op == "put":
                return ca.put_object(Bucket="vol-a", Key=key, Body=b"cas", IfMatch=etag)["ETag"]
            return ca.delete_object(Bucket="vol-a", Key=key, IfMatch=etag)["ResponseMetadata"]["HTTPStatusCode"]

        def unconditional(_):
            return cb.put_object(Bucket="vol-a", Key=key, Body=plain)["ETag"]

        results = race(2, lambda i: conditional(i) if i == 0 else unconditional(i))
        assert results[1][0] == 200, results
        if (vol / key).read_bytes() != plain:
            lost.append((r, results, (vol / key).read_bytes()))
    assert not lost, f"{len(lost)} of {rounds} acknowledged unconditional PUTs were overwritten: {lost[:3]}"
    no_leftovers(vol)
