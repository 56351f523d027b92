"""The file tree is the source of truth: files written by pods, directories, conflicts,
owner/mode, the metadata attribute, atomic replacement."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import threading
import time

import pytest

from helpers import (
    MD5_ETAG_RE, SYNTH_ETAG_RE, data, expect_client_error, get_bytes, list_all_keys, md5_etag, parse_ls,
    start_daemon, stop_daemon,
)

OWNER = (4321, 4322)
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    extra = 'file_mode = "0640"\ndir_mode = "0750"\n'
    if IS_ROOT:
        extra += f'owner = "{OWNER[0]}:{OWNER[1]}"\n'
    daemon = start_daemon(tmp_path_factory.mktemp("volume-files"), extra_config=extra)
    yield daemon
    early = stop_daemon(daemon)
    assert early is None, f"s3vol exited on its own ({early}):\n{daemon.log_tail()}"


@pytest.fixture(scope="module")
def s3(d):
    return d.client()


def test_pod_written_file_is_an_object(d, s3, prefix):
    base = d.vol("vol-a") / prefix
    (base / "sub").mkdir(parents=True)
    (base / "hello.txt").write_bytes(b"hello from a pod\n")
    (base / "sub" / "data.json").write_bytes(b'{"x": 1}')
    t = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc).timestamp()
    os.utime(base / "hello.txt", (t, t))

    keys = list_all_keys(s3, "vol-a", f"{prefix}/")
    assert keys == [f"{prefix}/hello.txt", f"{prefix}/sub/data.json"]
    listing = {o["Key"]: o for o in s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/")["Contents"]}
    assert listing[f"{prefix}/hello.txt"]["Size"] == len(b"hello from a pod\n")

    g = s3.get_object(Bucket="vol-a", Key=f"{prefix}/hello.txt")
    assert g["Body"].read() == b"hello from a pod\n"
    h = s3.head_object(Bucket="vol-a", Key=f"{prefix}/hello.txt")
    assert SYNTH_ETAG_RE.match(h["ETag"]), h["ETag"]
    assert h["ETag"] == g["ETag"] == listing[f"{prefix}/hello.txt"]["ETag"]
    assert h["ETag"] != md5_etag(b"hello from a pod\n")
    assert h["ContentType"].startswith("text/plain"), h["ContentType"]
    assert h["LastModified"] == dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
    assert h["ContentLength"] == len(b"hello from a pod\n")
    hj = s3.head_object(Bucket="vol-a", Key=f"{prefix}/sub/data.json")
    assert hj["ContentType"].startswith("application/json"), hj["ContentType"]
    assert SYNTH_ETAG_RE.match(hj["ETag"])
    # the ETag is stable
    assert s3.head_object(Bucket="vol-a", Key=f"{prefix}/hello.txt")["ETag"] == h["ETag"]
    # range reads work on pod files too
    assert get_bytes(s3, "vol-a", f"{prefix}/hello.txt", Range="bytes=0-4") == b"hello"

    # the CLI sees it too
    r = d.aws("s3", "ls", "--recursive", f"s3://vol-a/{prefix}/")
    assert parse_ls(r.stdout)[1] == keys

    # edited by the pod: new size and content -> new ETag
    (base / "hello.txt").write_bytes(b"edited by the pod, longer now\n")
    h2 = s3.head_object(Bucket="vol-a", Key=f"{prefix}/hello.txt")
    assert SYNTH_ETAG_RE.match(h2["ETag"]) and h2["ETag"] != h["ETag"]
    assert get_bytes(s3, "vol-a", f"{prefix}/hello.txt") == b"edited by the pod, longer now\n"
    # same size, different content and mtime -> new ETag
    (base / "hello.txt").write_bytes(b"EDITED BY THE POD, LONGER NOW\n")
    os.utime(base / "hello.txt", (t + 100, t + 100))
    h3 = s3.head_object(Bucket="vol-a", Key=f"{prefix}/hello.txt")
    assert h3["ETag"] != h2["ETag"] and SYNTH_ETAG_RE.match(h3["ETag"])

    # conditional GET with a synthesized ETag
    expect_client_error(s3.get_object, 304, (), Bucket="vol-a", Key=f"{prefix}/hello.txt", IfNoneMatch=h3["ETag"])

    # copying a pod file yields a real MD5 ETag
    s3.copy_object(Bucket="vol-a", Key=f"{prefix}/copied.txt",
                   CopySource={"Bucket": "vol-a", "Key": f"{prefix}/hello.txt"})
    assert s3.head_object(Bucket="vol-a", Key=f"{prefix}/copied.txt")["ETag"] == \
        md5_etag(b"EDITED BY THE POD, LONGER NOW\n")


def test_s3vol_written_file_edited_by_pod(d, s3, prefix):
    key = f"{prefix}/obj.txt"
    s3.put_object(Bucket="vol-a", Key=key, Body=b"written through S3", ContentType="application/x-custom",
                  Metadata={"k": "v"})
    path = d.vol("vol-a") / key
    assert s3.head_object(Bucket="vol-a", Key=key)["ETag"] == md5_etag(b"written through S3")
    assert os.getxattr(path, "user.s3vol.meta"), "metadata attribute missing"

    # in-place edit keeps the inode and its attribute, but the fingerprint no longer matches
    with open(path, "r+b") as f:
        f.write(b"WRITTEN")
        f.truncate(10)
    h = s3.head_object(Bucket="vol-a", Key=key)
    assert h["ETag"] != md5_etag(b"written through S3"), "stale MD5 served for a changed file"
    assert SYNTH_ETAG_RE.match(h["ETag"]), h["ETag"]
    assert get_bytes(s3, "vol-a", key) == b"WRITTEN th"

    # replaced by a new file (new inode, no attribute)
    key2 = f"{prefix}/obj2.txt"
    s3.put_object(Bucket="vol-a", Key=key2, Body=b"v1")
    tmp = d.vol("vol-a") / prefix / ".pod-tmp"
    tmp.write_bytes(b"v2")
    os.rename(tmp, d.vol("vol-a") / key2)
    h = s3.head_object(Bucket="vol-a", Key=key2)
    assert SYNTH_ETAG_RE.match(h["ETag"]) and h["Metadata"] == {}
    assert get_bytes(s3, "vol-a", key2) == b"v2"


def test_directory_marker_put(d, s3, prefix):
    vol = d.vol("vol-a")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/dir/", Body=b"")
    assert (vol / prefix / "dir").is_dir()
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/")
    assert [(o["Key"], o["Size"]) for o in r["Contents"]] == [(f"{prefix}/dir/", 0)]
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == [f"{prefix}/dir/"]
    h = s3.head_object(Bucket="vol-a", Key=f"{prefix}/dir/")
    assert h["ContentLength"] == 0

    s3.put_object(Bucket="vol-a", Key=f"{prefix}/p/q/r/", Body=b"")
    assert (vol / prefix / "p/q/r").is_dir()
    assert f"{prefix}/p/q/r/" in list_all_keys(s3, "vol-a", f"{prefix}/")

    # a marker with a body is refused, and writes nothing
    expect_client_error(s3.put_object, 400, "InvalidArgument", Bucket="vol-a", Key=f"{prefix}/bad/", Body=b"x")
    assert not (vol / prefix / "bad").exists()

    # an empty directory made by a pod is listed as k/
    (vol / prefix / "podempty").mkdir()
    assert f"{prefix}/podempty/" in list_all_keys(s3, "vol-a", f"{prefix}/")
    assert s3.head_object(Bucket="vol-a", Key=f"{prefix}/podempty/")["ContentLength"] == 0

    # deleting the marker removes the (empty) directory
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/dir/")
    assert not (vol / prefix / "dir").exists()


def test_file_directory_conflicts(d, s3, prefix):
    vol = d.vol("vol-a")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/a", Body=b"i am a file")
    expect_client_error(s3.put_object, 409, "ObjectParentIsFile", Bucket="vol-a", Key=f"{prefix}/a/b", Body=b"x")
    expect_client_error(s3.put_object, 409, "ObjectParentIsFile", Bucket="vol-a", Key=f"{prefix}/a/b/c",
                        Body=b"x")
    expect_client_error(s3.put_object, 409, (), Bucket="vol-a", Key=f"{prefix}/a/", Body=b"")
    assert (vol / prefix / "a").read_bytes() == b"i am a file"

    s3.put_object(Bucket="vol-a", Key=f"{prefix}/x/y", Body=b"under x")
    expect_client_error(s3.put_object, 409, "ExistingObjectIsDirectory", Bucket="vol-a", Key=f"{prefix}/x",
                        Body=b"x")
    assert (vol / prefix / "x").is_dir() and (vol / prefix / "x" / "y").read_bytes() == b"under x"
    # copy and multipart hit the same rule
    expect_client_error(s3.copy_object, 409, "ExistingObjectIsDirectory", Bucket="vol-a", Key=f"{prefix}/x",
                        CopySource={"Bucket": "vol-a", "Key": f"{prefix}/a"})
    expect_client_error(s3.copy_object, 409, "ObjectParentIsFile", Bucket="vol-a", Key=f"{prefix}/a/z",
                        CopySource={"Bucket": "vol-a", "Key": f"{prefix}/x/y"})
    # GET of a directory without trailing slash is not an object
    expect_client_error(s3.get_object, 404, "NoSuchKey", Bucket="vol-a", Key=f"{prefix}/x")
    expect_client_error(s3.head_object, 404, (), Bucket="vol-a", Key=f"{prefix}/x")
    # nor is a path beneath a file
    expect_client_error(s3.get_object, 404, "NoSuchKey", Bucket="vol-a", Key=f"{prefix}/a/b")
    expect_client_error(s3.head_object, 404, (), Bucket="vol-a", Key=f"{prefix}/a/b")
    # deleting such keys is S3's "nothing there" (204) and removes no data
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/a/b")
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/x")
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/x/")
    r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": f"{prefix}/x"}, {"Key": f"{prefix}/a/b"}]})
    assert not r.get("Errors"), r
    assert (vol / prefix / "a").read_bytes() == b"i am a file"
    assert (vol / prefix / "x" / "y").read_bytes() == b"under x"


def test_delete_removes_only_dirs_s3vol_created(d, s3, prefix):
    vol = d.vol("vol-a")
    # all created through S3
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/s/t/u/obj", Body=b"1")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/s/keep", Body=b"1")
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/s/t/u/obj")
    assert not (vol / prefix / "s" / "t").exists(), "empty directories s3vol created were left behind"
    assert (vol / prefix / "s" / "keep").exists()
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/s/keep")
    assert not (vol / prefix).exists()

    # made by a pod
    os.makedirs(vol / f"{prefix}-pod" / "made" / "by")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}-pod/made/by/obj", Body=b"1")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}-pod/made/by/s3vol/obj", Body=b"1")
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}-pod/made/by/s3vol/obj")
    assert not (vol / f"{prefix}-pod" / "made" / "by" / "s3vol").exists()
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}-pod/made/by/obj")
    assert (vol / f"{prefix}-pod" / "made" / "by").is_dir(), "a directory made by a pod was removed"

    # a directory that is not empty is never removed, even when s3vol made it
    s3.put_object(Bucket="vol-a", Key=f"{prefix}-mix/dir/obj", Body=b"1")
    (vol / f"{prefix}-mix" / "dir" / "pod-file").write_bytes(b"pod")
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}-mix/dir/obj")
    assert (vol / f"{prefix}-mix" / "dir" / "pod-file").read_bytes() == b"pod"


@pytest.mark.skipif(not IS_ROOT, reason="owner needs root")
def test_owner_and_mode_of_new_files(d, s3, prefix):
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/new/dir/file", Body=b"owned")
    vol = d.vol("vol-a")
    for p, mode in ((vol / prefix / "new" / "dir" / "file", 0o640), (vol / prefix / "new" / "dir", 0o750),
                    (vol / prefix, 0o750)):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == OWNER, p
        assert stat.S_IMODE(st.st_mode) == mode, (p, oct(st.st_mode))
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/marker/", Body=b"")
    st = os.stat(vol / prefix / "marker")
    assert (st.st_uid, st.st_gid) == OWNER and stat.S_IMODE(st.st_mode) == 0o750
    s3.copy_object(Bucket="vol-a", Key=f"{prefix}/copy", CopySource={"Bucket": "vol-a", "Key": f"{prefix}/new/dir/file"})
    st = os.stat(vol / prefix / "copy")
    assert (st.st_uid, st.st_gid) == OWNER and stat.S_IMODE(st.st_mode) == 0o640


def test_concurrent_puts_and_readers_see_whole_objects(d, s3, prefix):
    key = f"{prefix}/contended"
    size = 2 * 1024 * 1024
    versions = {i: bytes([i]) * size for i in range(1, 7)}
    s3.put_object(Bucket="vol-a", Key=key, Body=versions[1], Metadata={"writer": "1"})
    errors, stop = [], threading.Event()

    def writer(i):
        c = d.client()
        try:
            for _ in range(3):
                c.put_object(Bucket="vol-a", Key=key, Body=versions[i], Metadata={"writer": str(i)})
        except Exception as e:  # noqa: BLE001
            errors.append(f"writer {i}: {e}")

    def reader():
        c = d.client()
        while not stop.is_set():
            try:
                b = get_bytes(c, "vol-a", key)
            except Exception as e:  # noqa: BLE001
                errors.append(f"reader: {e}")
                return
            if len(b) != size or b.count(b[0]) != size:
                errors.append(f"reader saw a torn object ({len(b)} bytes)")
                return

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in versions]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    g = s3.get_object(Bucket="vol-a", Key=key)
    body = g["Body"].read()
    assert g["Metadata"]["writer"] == str(body[0]), "content and metadata of different writers"
    assert g["ETag"] == md5_etag(body)
    assert (d.vol("vol-a") / key).read_bytes() == body
    assert [p for p in (d.vol("vol-a") / prefix).iterdir()] == [d.vol("vol-a") / key], "stray files"


def test_paging_a_large_directory_sees_pod_changes_between_pages(d, s3, prefix):
    """Large directories are cached between pages (stateless tokens would otherwise re-read
    them for every page); the cache must never hide what a pod did between two pages."""
    base = d.vol("vol-a") / prefix / "flat"
    base.mkdir(parents=True)
    for i in range(1500):
        (base / f"f{i:05d}").write_bytes(b"x")
    time.sleep(1.2)  # only directories unchanged for a second are cached
    key = lambda name: f"{prefix}/flat/{name}"  # noqa: E731
    want = [key(f"f{i:05d}") for i in range(1500)]
    assert list_all_keys(s3, "vol-a", f"{prefix}/flat/", MaxKeys=400) == want

    first = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/flat/", MaxKeys=500)
    assert [o["Key"] for o in first["Contents"]] == want[:500]
    # Between pages a pod removes a file ahead, adds one ahead and one behind the resume
    # point, and rewrites one ahead with other contents.
    (base / "f00999").unlink()
    (base / "f00750x").write_bytes(b"new")
    (base / "f00100x").write_bytes(b"behind")
    (base / "f01200").write_bytes(b"longer now")
    rest, token = [], first["NextContinuationToken"]
    while token:
        r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/flat/", MaxKeys=500, ContinuationToken=token)
        rest += r.get("Contents", [])
        token = r.get("NextContinuationToken")
    assert [o["Key"] for o in rest] == sorted((set(want[500:]) - {key("f00999")}) | {key("f00750x")})
    assert {o["Key"]: o["Size"] for o in rest}[key("f01200")] == len(b"longer now")

    # An upload through S3 shows at once, too.
    s3.put_object(Bucket="vol-a", Key=key("f01499a"), Body=b"s3")
    assert key("f01499a") in list_all_keys(s3, "vol-a", f"{prefix}/flat/", MaxKeys=1000)
    assert key("f00100x") in list_all_keys(s3, "vol-a", f"{prefix}/flat/", MaxKeys=1000)
