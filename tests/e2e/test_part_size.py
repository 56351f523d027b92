"""The minimum part size (issue 14 item 6; SPEC.md "Multipart uploads"): every part but the
last that a CompleteMultipartUpload names must be at least `min_part_size` (default 5 MiB,
as S3), else 400 `EntityTooSmall`, nothing is committed and the upload stays open for a
corrected Complete. Parts the Complete does not name are not judged, as in S3.
"""

from __future__ import annotations

import subprocess

import pytest

from helpers import MiB, err_code, err_status, s3vol_bin, start_daemon, stop_daemon, tree_snapshot, snapshot_diff


@pytest.fixture
def d(tmp_path):
    d = start_daemon(tmp_path, min_part_size=None)  # the default: S3's 5 MiB
    yield d
    stop_daemon(d)


def upload(s3, key, parts: dict[int, bytes]):
    uid = s3.create_multipart_upload(Bucket="vol-a", Key=key)["UploadId"]
    etags = {n: s3.upload_part(Bucket="vol-a", Key=key, UploadId=uid, PartNumber=n, Body=b)["ETag"]
             for n, b in parts.items()}
    return uid, etags


def complete(s3, key, uid, etags, numbers):
    return s3.complete_multipart_upload(
        Bucket="vol-a", Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in numbers]})


def test_a_small_part_before_the_last_answers_entity_too_small_and_commits_nothing(d):
    s3 = d.client()
    s3.put_object(Bucket="vol-a", Key="small/obj", Body=b"the old object")
    uid, etags = upload(s3, "small/obj", {1: b"a" * 1024, 2: b"b" * 10})
    before = tree_snapshot(d.root)
    with pytest.raises(Exception) as ei:
        complete(s3, "small/obj", uid, etags, [1, 2])
    assert (err_status(ei.value), err_code(ei.value)) == (400, "EntityTooSmall")
    assert "smaller than the minimum allowed object size" in ei.value.response["Error"]["Message"]
    assert tree_snapshot(d.root) == before, snapshot_diff(before, tree_snapshot(d.root))
    assert (d.vol("vol-a") / "small/obj").read_bytes() == b"the old object"
    # The upload is still there; a corrected part 1 completes it.
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="vol-a", Key="small/obj", UploadId=uid)["Parts"]] == [1, 2]
    big = bytes(range(256)) * (5 * MiB // 256)
    etags[1] = s3.upload_part(Bucket="vol-a", Key="small/obj", UploadId=uid, PartNumber=1, Body=big)["ETag"]
    complete(s3, "small/obj", uid, etags, [1, 2])
    assert (d.vol("vol-a") / "small/obj").read_bytes() == big + b"b" * 10


def test_only_the_parts_a_complete_names_are_judged(d):
    s3 = d.client()
    big = b"x" * (5 * MiB)
    uid, etags = upload(s3, "named/obj", {1: big, 2: b"never listed", 3: b"last"})
    complete(s3, "named/obj", uid, etags, [1, 3])
    assert (d.vol("vol-a") / "named/obj").read_bytes() == big + b"last"


def test_a_single_small_part_is_the_last_part(d):
    s3 = d.client()
    uid, etags = upload(s3, "single/obj", {1: b"tiny"})
    complete(s3, "single/obj", uid, etags, [1])
    assert (d.vol("vol-a") / "single/obj").read_bytes() == b"tiny"


def test_min_part_size_lowers_the_minimum(tmp_path):
    d = start_daemon(tmp_path, min_part_size="1KiB")
    try:
        s3 = d.client()
        uid, etags = upload(s3, "low/obj", {1: b"a" * 1024, 2: b"b" * 1023, 3: b"c"})
        with pytest.raises(Exception) as ei:
            complete(s3, "low/obj", uid, etags, [1, 2, 3])
        assert (err_status(ei.value), err_code(ei.value)) == (400, "EntityTooSmall")
        complete(s3, "low/obj", uid, etags, [1, 3])
        assert (d.vol("vol-a") / "low/obj").read_bytes() == b"a" * 1024 + b"c"
    finally:
        stop_daemon(d)


def test_check_config_refuses_a_minimum_over_the_maximum(tmp_path):
    vol = tmp_path / "v"
    vol.mkdir()
    cfg = tmp_path / "s3vol.toml"
    cfg.write_text(f'[[volume]]\nname = "vol-a"\npath = "{vol}"\nmin_part_size = "8MiB"\nmax_part_size = "4MiB"\n')
    r = subprocess.run([str(s3vol_bin()), "check-config", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, r
    assert "min_part_size" in r.stdout + r.stderr
    cfg.write_text(f'[[volume]]\nname = "vol-a"\npath = "{vol}"\nmin_part_size = "nope"\n')
    r = subprocess.run([str(s3vol_bin()), "check-config", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "min_part_size" in r.stdout + r.stderr, r
