"""A volume on a file system without user extended attributes (ramfs) is still served:
synthesized ETags, guessed content types, and user metadata refused with a clear 400
(SPEC.md "Metadata and ETags"). Needs root to mount ramfs."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from botocore.exceptions import ClientError

from helpers import start_daemon, stop_daemon, toml_str

SYNTH = re.compile(r'^"[0-9a-f]{32}-1"$')


@pytest.fixture(scope="module")
def ramfs_server(tmp_path_factory):
    mnt = tmp_path_factory.mktemp("ramfs") / "vol-r"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "ramfs", "-o", "size=64m", "ramfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"this test needs root to mount ramfs: {r.stderr.strip()}", pytrace=False)
    try:
        extra = f'[[volume]]\nname = "vol-r"\npath = {toml_str(mnt)}\n'
        d = start_daemon(tmp_path_factory.mktemp("noxattr"), volumes=(), extra_config=extra)
        d.vols["vol-r"] = mnt
        yield d
        stop_daemon(d)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_no_xattr_volume_is_served_with_synthesized_etags(ramfs_server):
    d = ramfs_server
    assert "extended attributes" in d.log_tail(200), "a start-up warning names the missing xattrs"
    s3 = d.client()
    body = b"ramfs object\n" * 100
    s3.put_object(Bucket="vol-r", Key="dir/obj.json", Body=body)
    assert (d.vols["vol-r"] / "dir" / "obj.json").read_bytes() == body
    head = s3.head_object(Bucket="vol-r", Key="dir/obj.json")
    assert SYNTH.match(head["ETag"]), head["ETag"]
    assert head["ContentType"] == "application/json"
    got = s3.get_object(Bucket="vol-r", Key="dir/obj.json")
    assert got["Body"].read() == body and got["ETag"] == head["ETag"]
    listed = s3.list_objects_v2(Bucket="vol-r")["Contents"]
    assert [(o["Key"], o["ETag"]) for o in listed] == [("dir/obj.json", head["ETag"])]
    # The ETag follows the file: a direct edit changes it.
    p = d.vols["vol-r"] / "dir" / "obj.json"
    p.write_bytes(body + b"more")
    os.utime(p, ns=(1, 1_700_000_000_123_456_789))
    assert s3.head_object(Bucket="vol-r", Key="dir/obj.json")["ETag"] != head["ETag"]


def test_no_xattr_volume_refuses_user_metadata(ramfs_server):
    s3 = ramfs_server.client()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="vol-r", Key="meta.txt", Body=b"x", Metadata={"owner": "me"})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    assert "metadata" in e.value.response["Error"]["Message"]
    assert not (ramfs_server.vols["vol-r"] / "meta.txt").exists(), "nothing is written"
    s3.put_object(Bucket="vol-r", Key="plain.txt", Body=b"x")
