"""Attack suite, issue 12 item 6: the volume boundary holds against the pod.

A pod writes into its volume directly and is hostile: it makes links inside the volume
(`self -> .`, `link -> .s3vol`), swaps s3vol's internal directories for links at any
moment, and points them outside. Each test is named after the attack and asserts what a
user relies on: the status code, and the files on disk inside and outside the volume.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import (
    admin_addr,
    ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, DEFAULT_KEYS, INTERNAL_DIR, err_status, expect_client_error,
    internal_files, s3vol_bin, snapshot_diff, start_daemon, stop_daemon, tree_snapshot, wait_listening,
)

ADMIN = dict(name="admin", access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY, volumes=["*"],
             permissions=["read", "write", "delete", "admin"])
OLD = time.time() - 400 * 86400  # older than any sweep age


def snap(p: Path) -> dict:
    """Everything beneath p, internal directories included, links not followed."""
    return tree_snapshot(p, include_internal=True)


def assert_same(before: dict, after: dict, what: str):
    assert after == before, f"{what} changed:\n" + snapshot_diff(before, after)


def admin_get(d, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{admin_addr(d)}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def restart(d):
    """Stop the daemon and start it again on the same config and volumes."""
    assert stop_daemon(d) is None, d.log_tail()
    logf = open(d.log, "ab")
    d.proc = subprocess.Popen([str(s3vol_bin()), "serve", "--config",
                               str(d.workdir / "s3vol.toml")], cwd=d.workdir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=logf, env=dict(os.environ, RUST_LOG="info"))
    logf.close()
    d.stdout_lines.clear()
    addr = wait_listening(d.proc, d.stdout_lines, 30)
    assert addr is not None, d.log_tail()
    d.host, d.port = addr


def lists(s3, bucket, **kw) -> tuple[list[str], list[str]]:
    keys, prefixes, token = [], [], None
    while True:
        args = dict(Bucket=bucket, **kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        keys += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r.get("IsTruncated"):
            return keys, prefixes
        token = r["NextContinuationToken"]


# ------------------------------------------------------------------ the internal directory


@pytest.mark.parametrize("target", ["outside", "outside/missing", "vol-a/data"])
def test_internal_dir_symlink_makes_volume_unavailable_and_creates_nothing_outside(tmp_path, target):
    d = start_daemon(tmp_path, extra_config='admin_listen = "127.0.0.1:0"')
    try:
        a = d.vol("vol-a")
        (a / "data").mkdir()
        (a / "kept.txt").write_bytes(b"kept")
        shutil.rmtree(a / INTERNAL_DIR)
        os.symlink(d.root / target, a / INTERNAL_DIR)  # the pod's link, made while s3vol was down
        before = snap(d.root)
        restart(d)
        s3 = d.client()
        expect_client_error(s3.get_object, 503, "ServiceUnavailable", Bucket="vol-a", Key="kept.txt")
        expect_client_error(s3.put_object, 503, "ServiceUnavailable", Bucket="vol-a", Key="new.txt", Body=b"x")
        expect_client_error(s3.list_objects_v2, 503, "ServiceUnavailable", Bucket="vol-a")
        expect_client_error(s3.create_multipart_upload, 503, "ServiceUnavailable", Bucket="vol-a", Key="m")
        status, body = admin_get(d, "/ready")
        assert status == 503 and "vol-a" in body, body
        status, body = admin_get(d, "/status")
        assert status == 200 and "is a symbolic link" in body, body
        # The other volume is served as usual.
        s3.put_object(Bucket="vol-b", Key="fine.txt", Body=b"fine")
        after = snap(d.root)
        after.pop("vol-b/fine.txt")
        assert_same(before, after, "the tree (inside and outside the volumes)")
        assert not (d.root / "outside" / "tmp").exists() and not (d.root / "outside" / "multipart").exists()
        assert not (d.root / "outside" / "missing").exists()
        assert list((a / "data").iterdir()) == []
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_internal_subdir_symlink_makes_volume_unavailable_and_creates_nothing_outside(tmp_path):
    d = start_daemon(tmp_path)
    try:
        a = d.vol("vol-a")
        shutil.rmtree(a / INTERNAL_DIR / "multipart")
        os.symlink(d.root / "outside" / "gone", a / INTERNAL_DIR / "multipart")
        before = snap(d.root)
        restart(d)
        s3 = d.client()
        expect_client_error(s3.put_object, 503, "ServiceUnavailable", Bucket="vol-a", Key="x", Body=b"x")
        assert_same(before, snap(d.root), "the tree")
        assert not (d.root / "outside" / "gone").exists()
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_new_bucket_dir_with_internal_symlink_is_unavailable_from_its_first_request(tmp_path):
    d = start_daemon(tmp_path, volumes_root=True, keys=DEFAULT_KEYS + [ADMIN])
    try:
        base = d.vol("vol-a").parent
        (base / "vol-pod").mkdir()  # another node's CreateBucket, then the pod's link
        os.symlink(d.root / "outside", base / "vol-pod" / INTERNAL_DIR)
        before = snap(d.root)
        s3 = d.client()
        expect_client_error(s3.list_objects_v2, 503, "ServiceUnavailable", Bucket="vol-pod")
        expect_client_error(s3.put_object, 503, "ServiceUnavailable", Bucket="vol-pod", Key="x", Body=b"x")
        assert_same(before, snap(d.root), "the tree")
    finally:
        assert stop_daemon(d) is None, d.log_tail()


# ------------------------------------------------------------------ keys through in-volume links


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("boundary"))
    a = daemon.vol("vol-a")
    s3 = daemon.client()
    s3.put_object(Bucket="vol-a", Key="real.txt", Body=b"real")
    s3.put_object(Bucket="vol-a", Key="dir/inner.txt", Body=b"inner")
    up = s3.create_multipart_upload(Bucket="vol-a", Key="staged.bin")["UploadId"]
    s3.upload_part(Bucket="vol-a", Key="staged.bin", UploadId=up, PartNumber=1, Body=b"staged part")
    daemon.upload_id = up
    (a / INTERNAL_DIR / "tmp" / "planted").write_bytes(b"pod's file in tmp")
    os.symlink(".", a / "self")
    os.symlink(INTERNAL_DIR, a / "link")
    os.symlink("..", a / "dir" / "up")
    os.symlink(f"{INTERNAL_DIR}/multipart/{up}/manifest.json", a / "partlink")
    os.symlink(f"dir/up/{INTERNAL_DIR}/tmp", a / "tmplink")
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def through_links(up: str) -> list[str]:
    return [
        f"self/{INTERNAL_DIR}/tmp/planted",
        f"self/{INTERNAL_DIR}/multipart/{up}/manifest.json",
        f"self/self/{INTERNAL_DIR}/tmp/planted",
        f"dir/up/{INTERNAL_DIR}/tmp/planted",
        "link/tmp/planted",
        f"link/multipart/{up}/manifest.json",
        "tmplink/planted",
        "partlink",
    ]


def test_key_through_self_symlink_cannot_reach_internal_dir(d):
    s3, a, up = d.client(), d.vol("vol-a"), d.upload_id
    inside = internal_files(a)
    outside = snap(d.root / "outside")
    # The link itself is fine: a key through `self` reaches the volume's own objects.
    assert s3.get_object(Bucket="vol-a", Key="self/real.txt")["Body"].read() == b"real"
    for key in through_links(up):
        expect_client_error(s3.get_object, 404, "NoSuchKey", Bucket="vol-a", Key=key)
        e = expect_client_error(s3.head_object, 404, ("NoSuchKey", "404", "Not Found"), Bucket="vol-a", Key=key)
        assert err_status(e) == 404
    for key in [k for k in through_links(up) if k.startswith(("self/", "dir/"))] + [
            f"self/{INTERNAL_DIR}/new.txt", f"self/{INTERNAL_DIR}/tmp/new.txt", f"self/{INTERNAL_DIR}",
            f"self/{INTERNAL_DIR}/multipart/{up}/00001-0123456789abcdef0123456789abcdef"]:
        expect_client_error(s3.put_object, 400, "InvalidArgument", Bucket="vol-a", Key=key, Body=b"evil")
        expect_client_error(s3.delete_object, 400, "InvalidArgument", Bucket="vol-a", Key=key)
        expect_client_error(s3.copy_object, 400, "InvalidArgument", Bucket="vol-a", Key=key,
                            CopySource={"Bucket": "vol-a", "Key": "real.txt"})
        expect_client_error(s3.create_multipart_upload, 400, "InvalidArgument", Bucket="vol-a", Key=key)
    for key in [f"self/{INTERNAL_DIR}/", f"self/{INTERNAL_DIR}/tmp/", f"self/{INTERNAL_DIR}/newdir/"]:
        expect_client_error(s3.put_object, 400, "InvalidArgument", Bucket="vol-a", Key=key, Body=b"")
        expect_client_error(s3.delete_object, 400, "InvalidArgument", Bucket="vol-a", Key=key)
    r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": f"self/{INTERNAL_DIR}/tmp/planted"}]})
    assert [e["Code"] for e in r.get("Errors", [])] == ["InvalidArgument"], r
    # As a copy source: nothing to read.
    expect_client_error(s3.copy_object, 404, "NoSuchKey", Bucket="vol-a", Key="stolen.txt",
                        CopySource={"Bucket": "vol-a", "Key": f"self/{INTERNAL_DIR}/tmp/planted"})
    assert internal_files(a) == inside, "the internal directory changed"
    assert (a / INTERNAL_DIR / "tmp" / "planted").read_bytes() == b"pod's file in tmp"
    assert not (a / "stolen.txt").exists()
    assert_same(outside, snap(d.root / "outside"), "the outside directory")
    # The upload still works: its manifest was neither read as an object nor overwritten.
    parts = s3.list_parts(Bucket="vol-a", Key="staged.bin", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]


@pytest.mark.parametrize("prefix", ["", "self/", "self", f"self/{INTERNAL_DIR}", f"self/{INTERNAL_DIR}/",
                                    f"self/{INTERNAL_DIR}/tmp/", f"self/{INTERNAL_DIR}/multipart/",
                                    "self/self/", f"dir/up/{INTERNAL_DIR}/", "dir/up/", "link", "link/",
                                    "link/tmp/", "tmplink/", "partlink"])
@pytest.mark.parametrize("delimiter", [None, "/"])
def test_listing_through_links_shows_nothing_of_internal_dir(d, prefix, delimiter):
    s3 = d.client()
    kw = dict(Prefix=prefix)
    if delimiter:
        kw["Delimiter"] = delimiter
    keys, prefixes = lists(s3, "vol-a", **kw)
    for name in keys + prefixes:
        parts = name.rstrip("/").split("/")
        assert INTERNAL_DIR not in parts, (prefix, delimiter, name)
        assert not name.startswith(("link/", "tmplink/", "partlink")), (prefix, delimiter, name)
    assert "planted" not in "".join(keys)
    assert d.upload_id not in "".join(keys + prefixes)
    if prefix == "self/" and delimiter is None:
        # Links that stay inside still work for listing a prefix through them.
        assert "self/real.txt" in keys and "self/dir/inner.txt" in keys, keys
    if prefix == "self/" and delimiter == "/":
        assert "self/real.txt" in keys and "self/dir/" in prefixes, (keys, prefixes)
        assert f"self/{INTERNAL_DIR}/" not in prefixes


def test_key_through_link_to_internal_dir_cannot_read_write_or_delete_it(d):
    s3, a, up = d.client(), d.vol("vol-a"), d.upload_id
    inside = internal_files(a)
    manifest = (a / INTERNAL_DIR / "multipart" / up / "manifest.json").read_bytes()
    for key in ["link/tmp/planted", f"link/multipart/{up}/manifest.json", "tmplink/planted", "partlink"]:
        expect_client_error(s3.get_object, 404, "NoSuchKey", Bucket="vol-a", Key=key)
    for key in ["link/tmp/x", "link/new", f"link/multipart/{up}/manifest.json", "tmplink/x", "partlink"]:
        expect_client_error(s3.put_object, 400, "InvalidArgument", Bucket="vol-a", Key=key, Body=b"evil")
    for key in ["link/tmp/planted", f"link/multipart/{up}/manifest.json", "tmplink/planted", "partlink",
                "link/tmp/"]:
        expect_client_error(s3.delete_object, 400, "InvalidArgument", Bucket="vol-a", Key=key)
    assert internal_files(a) == inside
    assert (a / INTERNAL_DIR / "multipart" / up / "manifest.json").read_bytes() == manifest
    # The pod's links are still there, untouched (a PUT did not replace them).
    assert os.readlink(a / "link") == INTERNAL_DIR
    assert os.readlink(a / "partlink").endswith("manifest.json")


def test_key_through_links_inside_the_volume_still_work(d):
    s3, a = d.client(), d.vol("vol-a")
    s3.put_object(Bucket="vol-a", Key="self/via-self.txt", Body=b"via self")
    assert (a / "via-self.txt").read_bytes() == b"via self"
    assert s3.get_object(Bucket="vol-a", Key="dir/up/via-self.txt")["Body"].read() == b"via self"
    s3.delete_object(Bucket="vol-a", Key="self/via-self.txt")
    assert not (a / "via-self.txt").exists()
    assert os.path.islink(a / "self")


# ------------------------------------------------------------------ DeleteBucket against a swapping pod


def swapper(bucket: Path, rel: str, aside: Path, victim: Path, stop: threading.Event, counts: dict):
    """Swap bucket/rel for a link to victim and back (moving the real one to aside meanwhile),
    as fast as possible."""
    real = bucket / rel
    while not stop.is_set():
        try:
            os.rename(real, aside)
            os.symlink(victim, real)
            counts["swaps"] += 1
            os.unlink(real)
            os.rename(aside, real)
        except OSError:
            counts["errors"] += 1
            if not bucket.exists():
                return
            time.sleep(0.0005)


@pytest.mark.parametrize("swapped", [INTERNAL_DIR, f"{INTERNAL_DIR}/multipart", f"{INTERNAL_DIR}/tmp",
                                     f"{INTERNAL_DIR}/multipart/UPLOAD"])
def test_delete_bucket_with_internal_dir_swapped_for_symlink_removes_nothing_outside(tmp_path, swapped):
    d = start_daemon(tmp_path, volumes_root=True, keys=DEFAULT_KEYS + [ADMIN])
    try:
        admin = d.client(access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY)
        base = d.vol("vol-a").parent
        victim = d.root / "outside" / "victim"
        for sub in ["", "tmp", "multipart", "multipart/x", "nested/deeper"]:
            (victim / sub).mkdir(parents=True, exist_ok=True)
            (victim / sub / "precious.txt").write_bytes(b"must survive " + sub.encode())
        deleted = 0
        for round_ in range(8):
            name = f"race-{round_}"
            admin.create_bucket(Bucket=name)
            up = admin.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
            admin.upload_part(Bucket=name, Key="k", UploadId=up, PartNumber=1, Body=b"part")
            (base / name / INTERNAL_DIR / "tmp" / "w-leftover").write_bytes(b"crash leftover")
            before = snap(d.root / "outside")
            others = snap(base / "vol-a"), snap(base / "vol-b")
            stop, counts = threading.Event(), {"swaps": 0, "errors": 0}
            rel = swapped.replace("UPLOAD", up)
            # The internal directory itself is moved out of the bucket meanwhile (a sibling
            # in the bucket would make it not empty, and the delete would never run).
            aside = (tmp_path / f"aside-{round_}") if rel == INTERNAL_DIR else (base / name / (rel + "-aside"))
            t = threading.Thread(target=swapper, args=(base / name, rel, aside, victim, stop, counts), daemon=True)
            t.start()
            while counts["swaps"] == 0 and t.is_alive():
                time.sleep(0.001)  # the pod is swapping before the first delete
            try:
                for _ in range(60):
                    try:
                        admin.delete_bucket(Bucket=name)
                        deleted += 1
                        break
                    except Exception as e:  # noqa: BLE001 - the race decides which refusal comes
                        assert err_status(e) in (409, 503, 404), e
                        if err_status(e) == 404:
                            break
            finally:
                stop.set()
                t.join(10)
            assert counts["swaps"] > 0, counts
            assert_same(before, snap(d.root / "outside"), "the outside directory")
            assert (others[0], others[1]) == (snap(base / "vol-a"), snap(base / "vol-b")), "another volume changed"
            # Whatever the race left, the bucket can be deleted once the pod stops.
            if (base / name).exists():
                real = base / name / rel
                if real.is_symlink():
                    real.unlink()
                if aside.exists() and not real.exists():
                    aside.rename(real)
                try:
                    admin.delete_bucket(Bucket=name)
                except Exception as e:  # noqa: BLE001
                    assert err_status(e) == 404, e
            assert not (base / name).exists(), sorted(str(p) for p in (base / name).rglob("*"))
            assert_same(before, snap(d.root / "outside"), "the outside directory")
        print(f"{swapped}: {deleted} of 8 deletes won while the pod swapped")
        assert deleted > 0, "no delete ever won the race"
        assert (victim / "nested" / "deeper" / "precious.txt").read_bytes() == b"must survive nested/deeper"
    finally:
        assert stop_daemon(d) is None, d.log_tail()


# ------------------------------------------------------------------ the sweep and the /ready probe


def test_sweep_and_ready_probe_do_not_follow_swapped_internal_symlinks(tmp_path):
    d = start_daemon(tmp_path, extra_config='admin_listen = "127.0.0.1:0"\nmultipart_max_age = "4s"')
    try:
        s3, a = d.client(), d.vol("vol-a")
        assert admin_get(d, "/ready")[0] == 200
        up = s3.create_multipart_upload(Bucket="vol-a", Key="idle")["UploadId"]
        # Outside: what a sweep following the links would remove (an idle upload, an old temp).
        victim = d.root / "outside" / "victim"
        (victim / "0123456789abcdef0123456789abcdef").mkdir(parents=True)
        (victim / "0123456789abcdef0123456789abcdef" / "manifest.json").write_bytes(b"{}")
        (victim / "w-old").write_bytes(b"old temp file")
        (victim / "ready-probe").write_bytes(b"x")
        for p in [victim / "w-old", victim / "0123456789abcdef0123456789abcdef" / "manifest.json",
                  victim / "0123456789abcdef0123456789abcdef", victim / "ready-probe"]:
            os.utime(p, (OLD, OLD))
        before = snap(d.root / "outside")
        internal = a / INTERNAL_DIR
        for sub in ["tmp", "multipart"]:
            os.rename(internal / sub, internal / f"{sub}-moved")
            os.symlink(victim, internal / sub)
        status, body = admin_get(d, "/ready")
        assert status == 503 and "vol-a" in body, body
        time.sleep(3.5)  # several sweeps (every second with a 4 s age)
        for _ in range(5):
            admin_get(d, "/ready")
            admin_get(d, "/status")
        assert_same(before, snap(d.root / "outside"), "the outside directory")
        assert "not sweeping" in d.log_tail(200)
        # The held upload was not swept either: the volume was left alone.
        assert (internal / "multipart-moved" / up / "manifest.json").exists()
        # Put back, the volume is ready again and the sweep resumes on the real directories.
        for sub in ["tmp", "multipart"]:
            os.unlink(internal / sub)
            os.rename(internal / f"{sub}-moved", internal / sub)
        assert admin_get(d, "/ready")[0] == 200
        deadline = time.time() + 10
        while (internal / "multipart" / up).exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not (internal / "multipart" / up).exists(), "the idle upload was swept once put back"
        assert_same(before, snap(d.root / "outside"), "the outside directory")
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_renamed_internal_dir_makes_the_volume_unavailable_until_put_back(tmp_path):
    """A pod renames `.s3vol` to an ordinary name: s3vol's handles still point into it, so
    plain keys under the new name would reach staged parts. The volume answers 503 within
    seconds, and serves again once the directory is put back."""
    d = start_daemon(tmp_path)
    try:
        vol = d.vol("vol-a")
        s3 = d.client()
        s3.put_object(Bucket="vol-a", Key="keep.txt", Body=b"keep")
        upload = s3.create_multipart_upload(Bucket="vol-a", Key="big.bin")["UploadId"]
        s3.upload_part(Bucket="vol-a", Key="big.bin", UploadId=upload, PartNumber=1, Body=b"staged part bytes")
        os.rename(vol / INTERNAL_DIR, vol / "stolen")
        try:
            # At once, before any background check: keys under the new name reach nothing.
            staged = [p for p in (vol / "stolen").rglob("*") if p.is_file()]
            assert staged, "the staged part is under the renamed directory"
            for p in staged:
                key = "stolen/" + p.relative_to(vol / "stolen").as_posix()
                r = d.raw("GET", f"/vol-a/{key}")
                assert r.status in (404, 503) and p.read_bytes() not in r.body, (key, r)
            r = d.raw("PUT", "/vol-a/stolen/tmp/planted", body=b"planted")
            assert r.status in (400, 503), r
            assert not (vol / "stolen" / "tmp" / "planted").exists()
            r = d.raw("GET", "/vol-a", query=[("list-type", "2"), ("prefix", "stolen/")])
            assert r.status == 503 or b"<Key>" not in r.body, r
            deadline = time.time() + 10
            status = 0
            while time.time() < deadline:
                status = d.raw("GET", "/vol-a/keep.txt").status
                if status == 503:
                    break
                time.sleep(0.2)
            assert status == 503, "the volume kept serving with its internal directory renamed"
            staged = [p for p in (vol / "stolen").rglob("*") if p.is_file()]
            assert staged, "the staged part is under the renamed directory"
            for p in staged:
                key = "stolen/" + p.relative_to(vol / "stolen").as_posix()
                r = d.raw("GET", f"/vol-a/{key}")
                assert r.status == 503, (key, r)
            assert d.raw("GET", "/vol-b/").status != 503, "the other volume is still served"
        finally:
            os.rename(vol / "stolen", vol / INTERNAL_DIR)
        deadline = time.time() + 10
        while time.time() < deadline and d.raw("GET", "/vol-a/keep.txt").status != 200:
            time.sleep(0.2)
        r = d.raw("GET", "/vol-a/keep.txt")
        assert (r.status, r.body) == (200, b"keep"), r
        parts = s3.list_parts(Bucket="vol-a", Key="big.bin", UploadId=upload)["Parts"]
        assert [p["Size"] for p in parts] == [len(b"staged part bytes")]
    finally:
        stop_daemon(d)


def test_copy_onto_itself_never_changes_a_hard_linked_file_outside(tmp_path):
    """A pod hard-links a file from outside the volume (same file system) into it. A
    CopyObject onto itself with REPLACE used to rewrite the metadata attribute and mtime of
    that shared inode in place, so the outside file changed."""
    d = start_daemon(tmp_path)
    try:
        outside = d.root / "outside" / "victim.txt"
        outside.write_bytes(b"outside content")
        os.utime(outside, (OLD, OLD))
        before = (outside.read_bytes(), outside.stat().st_mtime_ns, os.listxattr(outside))
        link = d.vol("vol-a") / "hl"
        os.link(outside, link)
        s3 = d.client()
        s3.copy_object(Bucket="vol-a", Key="hl", CopySource={"Bucket": "vol-a", "Key": "hl"},
                       MetadataDirective="REPLACE", ContentType="text/x-attacker", Metadata={"pwned": "yes"})
        after = (outside.read_bytes(), outside.stat().st_mtime_ns, os.listxattr(outside))
        assert after == before, "the outside file changed"
        assert link.stat().st_ino != outside.stat().st_ino, "the key is a new file"
        h = s3.head_object(Bucket="vol-a", Key="hl")
        assert (h["ContentType"], h["Metadata"]) == ("text/x-attacker", {"pwned": "yes"})
        assert link.read_bytes() == b"outside content"
    finally:
        stop_daemon(d)
