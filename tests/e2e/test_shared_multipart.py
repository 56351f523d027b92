"""Multipart never destroys acknowledged data; directory races are invisible (issue 13,
items 3 and 4; SPEC.md "Multipart uploads", "Directories").

Each test is named after a failure seen on a shared volume. They drive the real daemon
(started by test_multipart's Daemon, the real binary on 127.0.0.1 port 0), kill it with
-9, fill small loop-mounted ext4 images (root; mkfs.ext4), and check the files on disk.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from test_multipart import Daemon, cannot, code, listed, loop_mount, mp_etag, staging, upload_parts

MiB = 1 << 20


@pytest.fixture
def work(tmp_path):
    return tmp_path


def part_files(vol: Path, uid: str) -> list[str]:
    """Names of the staged part files (`NNNNN-<md5>`) of upload `uid`."""
    d = staging(vol) / uid
    return sorted(n for n in os.listdir(d) if len(n) == 38 and n[5] == "-" and n[:5].isdigit())


def free_bytes(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, path: Path, leave: int = 0):
    """A pod's file `path` grows (fallocate: one quick call) until the file system has about
    `leave` bytes free, or, with `leave == 0`, until it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(200):
            want = free_bytes(mnt) - leave
            if want < 64 * 1024:
                break
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, want)
            except OSError:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, want // 2)
                except OSError:
                    break
        if leave == 0:
            for _ in range(100_000):
                try:
                    os.write(fd, b"\xab" * 4096)
                except OSError:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- item 3

def test_concurrent_uploads_of_one_part_number_left_no_part(work):
    """Several UploadParts of one number with different bodies, at once, many rounds: a part
    of that number is always left, and a Complete listing the ETag acknowledged last gets
    exactly those bytes (before: each upload removed every other version, and racing ones
    removed each other, leaving none after answering 200)."""
    vol = work / "vol-a"
    d = Daemon(work, {"vol-a": vol})
    try:
        clients = [d.client() for _ in range(4)]
        for rnd in range(25):
            key = f"race/{rnd}.bin"
            uid = clients[0].create_multipart_upload(Bucket="vol-a", Key=key)["UploadId"]
            bodies = [os.urandom(256 * 1024 + i) for i in range(4)]
            barrier = threading.Barrier(4)
            acks: list[tuple[float, str, bytes]] = []
            lock = threading.Lock()

            def upload(i: int):
                barrier.wait(10)
                e = clients[i].upload_part(Bucket="vol-a", Key=key, UploadId=uid, PartNumber=1,
                                           Body=bodies[i])["ETag"]
                with lock:
                    acks.append((time.monotonic(), e, bodies[i]))

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for f in [pool.submit(upload, i) for i in range(4)]:
                    f.result()
            acked = {e for _, e, _ in acks}
            files = part_files(vol, uid)
            assert files, f"round {rnd}: every version of part 1 is gone after four 200s"
            parts = clients[0].list_parts(Bucket="vol-a", Key=key, UploadId=uid)["Parts"]
            assert len(parts) == 1 and parts[0]["ETag"] in acked, (rnd, parts, acked)
            _, last, body = max(acks)
            r = clients[0].complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=uid,
                                                     MultipartUpload=listed({1: last}))
            assert r["ETag"] == mp_etag([body])
            assert (vol / key).read_bytes() == body, f"round {rnd}: the object is not the last acknowledged part"
            assert os.listdir(staging(vol) / uid) == ["done.json"]
    finally:
        d.stop()


@pytest.fixture
def nearly_full(work):
    """A daemon on a 192 MiB ext4 image, and an upload of 24 parts of 3 MiB staged on it:
    too little room for a copy of the whole object (append-and-delete is chosen)."""
    try:
        mnt, cleanup = loop_mount("ext4", 192, work)
    except RuntimeError as e:
        cannot(f"cannot loop-mount ext4 for the append-and-delete tests: {e}")
    vol = mnt / "vol"
    d = Daemon(work, {"vol-a": vol})
    try:
        s3 = d.client()
        parts = {n: os.urandom(3 * MiB) for n in range(1, 25)}
        uid, etags = upload_parts(s3, "vol-a", "big/obj", parts)
        # Leave less than the object plus s3vol's 64 MiB margin free, but room for a part.
        fill(mnt, mnt / "ballast", leave=40 * MiB)
        yield d, mnt, vol, uid, etags, parts
    finally:
        d.stop()
        cleanup()


def start_complete(d, uid, etags) -> tuple[threading.Thread, list]:
    out: list = []

    def run():
        try:
            out.append(d.client().complete_multipart_upload(Bucket="vol-a", Key="big/obj", UploadId=uid,
                                                            MultipartUpload=listed(etags)))
        except Exception as e:  # noqa: BLE001 - a kill or an error under test
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for_consumed_parts(vol: Path, uid: str, t: threading.Thread, total: int, at_least: int = 2):
    """Waits until the assembly has deleted `at_least` staged parts (append-and-delete)."""
    deadline = time.time() + 60
    while time.time() < deadline and t.is_alive():
        if len(part_files(vol, uid)) <= total - at_least:
            return
        time.sleep(0.001)
    pytest.fail("the Complete ended before it consumed parts: append-and-delete was not slow enough to cut")


def test_complete_killed_during_append_and_delete_lost_parts(nearly_full):
    """kill -9 while append-and-delete consumes parts, restart, retry: the object is whole
    (before: the parts already appended were deleted with the nameless assembly file, and
    the retry answered InvalidPart)."""
    d, mnt, vol, uid, etags, parts = nearly_full
    whole = b"".join(parts[n] for n in sorted(parts))
    t, _ = start_complete(d, uid, etags)
    wait_for_consumed_parts(vol, uid, t, len(parts))
    d.stop()  # SIGKILL
    t.join(30)
    assert not (vol / "big" / "obj").exists(), "killed before the commit, so no object yet"
    left = part_files(vol, uid)
    assert 0 < len(parts) - len(left), "the kill came after parts were consumed"
    d.start()
    s3 = d.client()
    # Nothing acknowledged is lost: every part is still listed (some inside the assembly).
    listed_parts = s3.list_parts(Bucket="vol-a", Key="big/obj", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed_parts] == sorted(parts)
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="big/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert r["ETag"] == mp_etag([parts[n] for n in sorted(parts)])
    assert hashlib.md5((vol / "big" / "obj").read_bytes()).digest() == hashlib.md5(whole).digest()
    assert os.listdir(staging(vol) / uid) == ["done.json"]
    assert os.listdir(vol / ".s3vol" / "tmp") == []
    assert "resuming a cut append-and-delete assembly" in d.log_text()


def test_enospc_during_append_and_delete_lost_parts(nearly_full):
    """A pod fills the volume while append-and-delete consumes parts: the Complete answers
    InsufficientStorage, every part is still listed, and once the pod frees room the retry
    makes the whole object (before: the consumed parts were gone, InvalidPart forever)."""
    d, mnt, vol, uid, etags, parts = nearly_full
    # Just room for append-and-delete (a part and its journal), so that the pod below
    # fills what is left before the assembly ends.
    fill(mnt, mnt / "pod-filler", leave=4 * MiB + 256 * 1024)
    t, out = start_complete(d, uid, etags)
    wait_for_consumed_parts(vol, uid, t, len(parts))
    fill(mnt, mnt / "pod-filler")
    t.join(120)
    assert out and isinstance(out[0], ClientError), f"the Complete should have run out of room: {out}"
    assert code(out[0]) == "InsufficientStorage"
    assert not (vol / "big" / "obj").exists()
    s3 = d.client()
    listed_parts = s3.list_parts(Bucket="vol-a", Key="big/obj", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed_parts] == sorted(etags.items())
    (mnt / "pod-filler").unlink()
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="big/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert r["ETag"] == mp_etag([parts[n] for n in sorted(parts)])
    assert (vol / "big" / "obj").read_bytes() == b"".join(parts[n] for n in sorted(parts))
    assert os.listdir(staging(vol) / uid) == ["done.json"]
    assert os.listdir(vol / ".s3vol" / "tmp") == []


def test_complete_that_cannot_fit_answers_507_and_keeps_every_part(nearly_full):
    """Not room for even one part: 507 before any part is touched; all are still staged."""
    d, mnt, vol, uid, etags, parts = nearly_full
    before = part_files(vol, uid)
    fill(mnt, mnt / "pod-filler", leave=MiB)
    s3 = d.client()
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="vol-a", Key="big/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert code(e.value) == "InsufficientStorage"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    assert part_files(vol, uid) == before
    listed_parts = s3.list_parts(Bucket="vol-a", Key="big/obj", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed_parts] == sorted(parts)
    (mnt / "pod-filler").unlink()
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="big/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert r["ETag"] == mp_etag([parts[n] for n in sorted(parts)])


# --------------------------------------------------------------------------- item 4

def test_put_racing_delete_in_the_same_directory_answered_404(work):
    """A PUT and a DELETE of another key in one s3vol-made directory, at once, many times:
    the PUT always succeeds and its file is there (before: the delete removed the empty
    parents the PUT was about to use, and the PUT answered 404)."""
    vol = work / "vol-a"
    d = Daemon(work, {"vol-a": vol})
    try:
        a, b = d.client(), d.client()
        deadline = time.time() + 40
        rounds = 0
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            while rounds < 300 and time.time() < deadline:
                a.put_object(Bucket="vol-a", Key="race/x/y/old", Body=b"old")
                barrier = threading.Barrier(2)

                def put():
                    barrier.wait(10)
                    return a.put_object(Bucket="vol-a", Key="race/x/y/new", Body=b"new %d" % rounds)

                def delete():
                    barrier.wait(10)
                    return b.delete_object(Bucket="vol-a", Key="race/x/y/old")

                fp, fd = pool.submit(put), pool.submit(delete)
                try:
                    fp.result()
                except ClientError as e:
                    pytest.fail(f"round {rounds}: PUT racing a DELETE answered "
                                f"{e.response['ResponseMetadata']['HTTPStatusCode']} {code(e)}")
                fd.result()
                assert (vol / "race/x/y/new").read_bytes() == b"new %d" % rounds
                assert not (vol / "race/x/y/old").exists()
                b.delete_object(Bucket="vol-a", Key="race/x/y/new")
                rounds += 1
        assert not (vol / "race").exists(), "the last delete removes the directories s3vol made"
    finally:
        d.stop()


def test_interrupted_delete_left_phantom_dir_objects(work):
    """A delete cut after the file went (a crash in DeleteObjects) left its empty s3vol-made
    parents listed as `dir/` objects: a retried delete of the now missing key removes them,
    from wherever the cut one stopped; directories a pod made stay."""
    vol = work / "vol-a"
    d = Daemon(work, {"vol-a": vol})
    try:
        s3 = d.client()
        s3.put_object(Bucket="vol-a", Key="gone/a/b/k", Body=b"x")
        (vol / "gone/a/b/k").unlink()  # the cut delete removed the file only
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="vol-a").get("Contents", [])]
        assert keys == ["gone/a/b/"], keys
        s3.delete_object(Bucket="vol-a", Key="gone/a/b/k")
        assert not (vol / "gone").exists()
        # Cut higher up: the deepest directory went, its parents stayed.
        s3.put_object(Bucket="vol-a", Key="mid/a/b/k", Body=b"x")
        (vol / "mid/a/b/k").unlink()
        (vol / "mid/a/b").rmdir()
        s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": "mid/a/b/k"}]})
        assert not (vol / "mid").exists()
        # A pod's directories are not s3vol's to remove.
        (vol / "pod/made").mkdir(parents=True)
        s3.put_object(Bucket="vol-a", Key="pod/made/auto/k", Body=b"x")
        (vol / "pod/made/auto/k").unlink()
        s3.delete_object(Bucket="vol-a", Key="pod/made/auto/k")
        assert not (vol / "pod/made/auto").exists() and (vol / "pod/made").is_dir()
        assert s3.list_objects_v2(Bucket="vol-a").get("Contents", []) == [] or [
            o["Key"] for o in s3.list_objects_v2(Bucket="vol-a")["Contents"]] == ["pod/made/"]
    finally:
        d.stop()


def test_sweep_left_phantom_dir_objects(work):
    """The sweep removes empty s3vol-made directories untouched for over an hour (deepest
    first, and the parents that empties), keeps fresh ones, pod-made ones and `k/` objects."""
    vol = work / "vol-a"
    d = Daemon(work, {"vol-a": vol}, extra='multipart_max_age = "4s"')  # a sweep every second
    try:
        s3 = d.client()
        for k in ("old/a/b/k", "fresh/a/k", "podparent/auto/k"):
            s3.put_object(Bucket="vol-a", Key=k, Body=b"x")
            (vol / k).unlink()
        s3.put_object(Bucket="vol-a", Key="marker/", Body=b"")
        (vol / "pod/empty").mkdir(parents=True)
        (vol / "podparent").chmod(0o755)
        os.removexattr(vol / "podparent", "user.s3vol.dir") if "user.s3vol.dir" in os.listxattr(
            vol / "podparent") else None
        hours_ago = time.time() - 2 * 3600
        for p in ("old/a/b", "old/a", "old", "pod/empty", "pod", "marker", "podparent/auto", "podparent"):
            os.utime(vol / p, (hours_ago, hours_ago))
        deadline = time.time() + 20
        while (vol / "old").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not (vol / "old").exists(), "old empty s3vol-made directories were not swept"
        assert not (vol / "podparent/auto").exists() and (vol / "podparent").is_dir()
        assert (vol / "fresh/a").is_dir(), "a directory emptied less than an hour ago stays"
        assert (vol / "pod/empty").is_dir() and (vol / "marker").is_dir()
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="vol-a")["Contents"])
        assert keys == ["fresh/a/", "marker/", "pod/empty/", "podparent/"], keys
    finally:
        d.stop()
