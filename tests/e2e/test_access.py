"""Keys, scopes and permissions (SPEC.md "Authentication and access"), driven with boto3
and the aws CLI under different keys, and public volumes read anonymously. Every denied
request answers AccessDenied and changes nothing on disk."""

from __future__ import annotations

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config

from helpers import (
    expect_client_error, get_bytes, list_all_keys, snapshot_diff, start_daemon, stop_daemon,
    toml_str, tree_snapshot,
)

KEYS = {
    "full": dict(access_key="AKACCESSFULL0001", secret_key="full-secret-0001", volumes=["vol-a", "vol-b"],
                 permissions=["read", "write", "delete"]),
    "reader": dict(access_key="AKACCESSREAD0001", secret_key="reader-secret-0001", volumes=["vol-a"],
                   permissions=["read"]),
    "writer": dict(access_key="AKACCESSWRITE001", secret_key="writer-secret-0001", volumes=["vol-a"],
                   permissions=["write"]),
    "rw": dict(access_key="AKACCESSRW000001", secret_key="rw-secret-0001", volumes=["vol-a"],
               permissions=["read", "write"]),
    "bonly": dict(access_key="AKACCESSBONLY001", secret_key="bonly-secret-0001", volumes=["vol-b"],
                  permissions=["read", "write", "delete"]),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    work = tmp_path_factory.mktemp("access")
    pub = work / "pub"
    pub.mkdir()
    (pub / "hello.txt").write_bytes(b"public hello")
    (pub / "dir").mkdir()
    (pub / "dir" / "x.txt").write_bytes(b"x")
    extra = f'[[volume]]\nname = "pub"\npath = {toml_str(pub)}\npublic = true\n'
    keys = [dict(name=n, **k) for n, k in KEYS.items()]
    daemon = start_daemon(work, keys=keys, extra_config=extra)
    daemon.vols["pub"] = pub
    (daemon.vol("vol-a") / "a.txt").write_bytes(b"in vol-a")
    (daemon.vol("vol-b") / "b.txt").write_bytes(b"in vol-b")
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def client(d, name, **kw):
    return d.client(access_key=KEYS[name]["access_key"], secret_key=KEYS[name]["secret_key"], **kw)


def anonymous(d):
    """A boto3 client that signs nothing."""
    return boto3.session.Session().client(
        "s3", endpoint_url=d.url, region_name=d.region, verify=d.verify,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def aws(d, name, *args, check=True):
    return d.aws(*args, check=check, access_key=KEYS[name]["access_key"], secret_key=KEYS[name]["secret_key"])


class Unchanged:
    """Asserts that nothing under the daemon's root or the public volume changed."""

    def __init__(self, d):
        self.d = d

    def __enter__(self):
        self.before = {r: tree_snapshot(r) for r in (self.d.root, self.d.vol("pub"))}
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            for r, before in self.before.items():
                after = tree_snapshot(r)
                assert after == before, f"{r} changed:\n" + snapshot_diff(before, after)
        return False


DENIED = (403, "AccessDenied")


# ------------------------------------------------------------------------- ListBuckets


@pytest.mark.parametrize("name,expected", [
    ("full", ["vol-a", "vol-b"]), ("reader", ["vol-a"]), ("rw", ["vol-a"]), ("bonly", ["vol-b"]),
])
def test_list_buckets_shows_only_the_keys_volumes(d, name, expected):
    got = [b["Name"] for b in client(d, name).list_buckets()["Buckets"]]
    assert got == expected, "a public volume outside the scope is not listed either"
    lines = aws(d, name, "s3", "ls").stdout.split()
    assert [w for w in lines if w.startswith(("vol-", "pub"))] == expected


def test_list_buckets_needs_read(d):
    expect_client_error(client(d, "writer").list_buckets, *DENIED)
    r = aws(d, "writer", "s3", "ls", check=False)
    assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr


# ------------------------------------------------------------------------- scope


@pytest.mark.parametrize("name", ["reader", "writer", "rw"])
def test_key_never_reaches_a_volume_outside_its_scope(d, name):
    s3 = client(d, name)
    with Unchanged(d):
        expect_client_error(s3.get_object, *DENIED, Bucket="vol-b", Key="b.txt")
        expect_client_error(s3.head_object, 403, (), Bucket="vol-b", Key="b.txt")
        expect_client_error(s3.list_objects_v2, *DENIED, Bucket="vol-b")
        expect_client_error(s3.list_objects, *DENIED, Bucket="vol-b")
        expect_client_error(s3.head_bucket, 403, (), Bucket="vol-b")
        expect_client_error(s3.put_object, *DENIED, Bucket="vol-b", Key="evil.txt", Body=b"evil")
        expect_client_error(s3.delete_object, *DENIED, Bucket="vol-b", Key="b.txt")
        expect_client_error(s3.delete_objects, *DENIED, Bucket="vol-b", Delete={"Objects": [{"Key": "b.txt"}]})
        expect_client_error(s3.create_multipart_upload, *DENIED, Bucket="vol-b", Key="evil-mp")
        expect_client_error(s3.list_multipart_uploads, *DENIED, Bucket="vol-b")
        expect_client_error(s3.get_bucket_location, *DENIED, Bucket="vol-b")
        # not implemented operations do not leak past the scope either
        expect_client_error(s3.get_bucket_tagging, *DENIED, Bucket="vol-b")
        r = aws(d, name, "s3", "cp", "s3://vol-b/b.txt", "-", check=False)
        assert r.returncode != 0 and "403" in r.stderr, r.stderr
        r = aws(d, name, "s3", "ls", "s3://vol-b/", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr


# ------------------------------------------------------------------------- permissions


def test_read_key_reads_and_nothing_else(d, tmp_path):
    s3 = client(d, "reader")
    assert get_bytes(s3, "vol-a", "a.txt") == b"in vol-a"
    assert s3.head_object(Bucket="vol-a", Key="a.txt")["ContentLength"] == 8
    assert "a.txt" in list_all_keys(s3, "vol-a")
    assert "a.txt" in aws(d, "reader", "s3", "ls", "s3://vol-a/").stdout
    assert aws(d, "reader", "s3", "cp", "s3://vol-a/a.txt", "-").stdout == "in vol-a"
    src = tmp_path / "up.txt"
    src.write_bytes(b"upload")
    with Unchanged(d):
        expect_client_error(s3.put_object, *DENIED, Bucket="vol-a", Key="new.txt", Body=b"x")
        expect_client_error(s3.put_object, *DENIED, Bucket="vol-a", Key="newdir/", Body=b"")
        expect_client_error(s3.delete_object, *DENIED, Bucket="vol-a", Key="a.txt")
        expect_client_error(s3.copy_object, *DENIED, Bucket="vol-a", Key="copy.txt",
                            CopySource={"Bucket": "vol-a", "Key": "a.txt"})
        expect_client_error(s3.create_multipart_upload, *DENIED, Bucket="vol-a", Key="mp")
        expect_client_error(s3.create_bucket, *DENIED, Bucket="vol-c")
        expect_client_error(s3.delete_bucket, *DENIED, Bucket="vol-a")
        r = aws(d, "reader", "s3", "cp", str(src), "s3://vol-a/up.txt", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr
        r = aws(d, "reader", "s3", "rm", "s3://vol-a/a.txt", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr


def test_write_key_writes_but_cannot_read_or_delete(d, prefix, tmp_path):
    s3 = client(d, "writer")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/w.txt", Body=b"written")
    assert (d.vol("vol-a") / prefix / "w.txt").read_bytes() == b"written"
    src = tmp_path / "up.txt"
    src.write_bytes(b"by the aws cli")
    aws(d, "writer", "s3", "cp", str(src), f"s3://vol-a/{prefix}/cli.txt")
    assert (d.vol("vol-a") / prefix / "cli.txt").read_bytes() == b"by the aws cli"
    up = s3.create_multipart_upload(Bucket="vol-a", Key=f"{prefix}/mp.bin")
    etag = s3.upload_part(Bucket="vol-a", Key=f"{prefix}/mp.bin", UploadId=up["UploadId"], PartNumber=1,
                          Body=b"part one")["ETag"]
    s3.complete_multipart_upload(Bucket="vol-a", Key=f"{prefix}/mp.bin", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert (d.vol("vol-a") / prefix / "mp.bin").read_bytes() == b"part one"
    with Unchanged(d):
        expect_client_error(s3.get_object, *DENIED, Bucket="vol-a", Key=f"{prefix}/w.txt")
        expect_client_error(s3.list_objects_v2, *DENIED, Bucket="vol-a")
        expect_client_error(s3.delete_object, *DENIED, Bucket="vol-a", Key=f"{prefix}/w.txt")
        up2 = s3.create_multipart_upload(Bucket="vol-a", Key=f"{prefix}/mp2.bin")
        expect_client_error(s3.abort_multipart_upload, *DENIED, Bucket="vol-a", Key=f"{prefix}/mp2.bin",
                            UploadId=up2["UploadId"])
        expect_client_error(s3.list_parts, *DENIED, Bucket="vol-a", Key=f"{prefix}/mp2.bin",
                            UploadId=up2["UploadId"])
    client(d, "full").abort_multipart_upload(Bucket="vol-a", Key=f"{prefix}/mp2.bin", UploadId=up2["UploadId"])


def test_delete_objects_without_delete_reports_every_key(d, prefix):
    vol = d.vol("vol-a")
    (vol / prefix).mkdir()
    for n in ("1", "2"):
        (vol / prefix / n).write_bytes(n.encode())
    with Unchanged(d):
        r = client(d, "rw").delete_objects(Bucket="vol-a", Delete={"Objects": [
            {"Key": f"{prefix}/1"}, {"Key": f"{prefix}/2"}, {"Key": f"{prefix}/missing"}]})
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert not r.get("Deleted")
        assert {e["Key"]: e["Code"] for e in r["Errors"]} == {
            f"{prefix}/1": "AccessDenied", f"{prefix}/2": "AccessDenied", f"{prefix}/missing": "AccessDenied"}
        r = client(d, "rw").delete_objects(Bucket="vol-a", Delete={"Quiet": True, "Objects": [{"Key": f"{prefix}/1"}]})
        assert [e["Code"] for e in r["Errors"]] == ["AccessDenied"]
        r = aws(d, "rw", "s3", "rm", "--recursive", f"s3://vol-a/{prefix}/", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr
    r = client(d, "full").delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": f"{prefix}/1"}]})
    assert [o["Key"] for o in r["Deleted"]] == [f"{prefix}/1"] and not r.get("Errors")
    assert not (vol / prefix / "1").exists() and (vol / prefix / "2").exists()


# ------------------------------------------------------------------------- copies


def test_copy_needs_read_on_source_and_write_on_destination(d, prefix):
    with Unchanged(d):
        # rw on vol-a only: the source in vol-b is out of scope
        expect_client_error(client(d, "rw").copy_object, *DENIED, Bucket="vol-a", Key=f"{prefix}-stolen",
                            CopySource={"Bucket": "vol-b", "Key": "b.txt"})
        # ... and so is the destination
        expect_client_error(client(d, "rw").copy_object, *DENIED, Bucket="vol-b", Key=f"{prefix}-planted",
                            CopySource={"Bucket": "vol-a", "Key": "a.txt"})
        # write without read: cannot read the source, even in its own volume
        expect_client_error(client(d, "writer").copy_object, *DENIED, Bucket="vol-a", Key=f"{prefix}-copy",
                            CopySource={"Bucket": "vol-a", "Key": "a.txt"})
        # bonly: read on vol-b, nothing on vol-a
        expect_client_error(client(d, "bonly").copy_object, *DENIED, Bucket="vol-a", Key=f"{prefix}-x",
                            CopySource={"Bucket": "vol-b", "Key": "b.txt"})
        r = aws(d, "rw", "s3", "cp", "s3://vol-b/b.txt", f"s3://vol-a/{prefix}-cli", check=False)
        assert r.returncode != 0 and "(403)" in r.stderr, r.stderr  # its HeadObject first: no body
    client(d, "rw").copy_object(Bucket="vol-a", Key=f"{prefix}-ok", CopySource={"Bucket": "vol-a", "Key": "a.txt"})
    assert (d.vol("vol-a") / f"{prefix}-ok").read_bytes() == b"in vol-a"
    client(d, "full").copy_object(Bucket="vol-a", Key=f"{prefix}-fromb", CopySource={"Bucket": "vol-b", "Key": "b.txt"})
    assert (d.vol("vol-a") / f"{prefix}-fromb").read_bytes() == b"in vol-b"
    # anyone may read a public volume, so a key may copy out of it into its own volume
    client(d, "rw").copy_object(Bucket="vol-a", Key=f"{prefix}-frompub", CopySource={"Bucket": "pub", "Key": "hello.txt"})
    assert (d.vol("vol-a") / f"{prefix}-frompub").read_bytes() == b"public hello"


def test_upload_part_copy_needs_read_on_source(d, prefix):
    s3w = client(d, "writer")
    s3rw = client(d, "rw")
    key = f"{prefix}/mp"
    up = s3w.create_multipart_upload(Bucket="vol-a", Key=key)["UploadId"]
    with Unchanged(d):
        expect_client_error(s3w.upload_part_copy, *DENIED, Bucket="vol-a", Key=key, UploadId=up, PartNumber=1,
                            CopySource={"Bucket": "vol-a", "Key": "a.txt"})
        up2 = s3rw.create_multipart_upload(Bucket="vol-a", Key=key + "2")["UploadId"]
        expect_client_error(s3rw.upload_part_copy, *DENIED, Bucket="vol-a", Key=key + "2", UploadId=up2,
                            PartNumber=1, CopySource={"Bucket": "vol-b", "Key": "b.txt"})
    full = client(d, "full")
    for k, u in ((key, up), (key + "2", up2)):
        full.abort_multipart_upload(Bucket="vol-a", Key=k, UploadId=u)


# ------------------------------------------------------------------------- admin


def test_admin_creates_and_deletes_volumes_only_in_volumes_root_mode(tmp_path):
    keys = [
        dict(name="admin", access_key="AKADMIN000000001", secret_key="admin-secret", volumes=["*"],
             permissions=["read", "admin"]),
        dict(name="plain", access_key="AKPLAIN000000001", secret_key="plain-secret", volumes=["*"],
             permissions=["read", "write", "delete"]),
    ]
    d = start_daemon(tmp_path, keys=keys, volumes_root=True)
    try:
        base = d.root / "volumes"
        plain = d.client(access_key="AKPLAIN000000001", secret_key="plain-secret")
        admin = d.client(access_key="AKADMIN000000001", secret_key="admin-secret")
        expect_client_error(plain.create_bucket, *DENIED, Bucket="made-by-plain")
        assert not (base / "made-by-plain").exists()
        admin.create_bucket(Bucket="made-by-admin")
        assert (base / "made-by-admin").is_dir()
        expect_client_error(plain.delete_bucket, *DENIED, Bucket="made-by-admin")
        assert (base / "made-by-admin").is_dir()
        r = d.aws("s3", "mb", "s3://cli-by-plain", check=False, access_key="AKPLAIN000000001",
                  secret_key="plain-secret")
        assert r.returncode != 0 and "AccessDenied" in r.stderr and not (base / "cli-by-plain").exists()
        admin.delete_bucket(Bucket="made-by-admin")
        assert not (base / "made-by-admin").exists()
    finally:
        assert stop_daemon(d) is None


# ------------------------------------------------------------------------- public volumes


def test_public_volume_reads_anonymously(d):
    anon = anonymous(d)
    assert get_bytes(anon, "pub", "hello.txt") == b"public hello"
    assert anon.head_object(Bucket="pub", Key="hello.txt")["ContentLength"] == 12
    assert sorted(list_all_keys(anon, "pub")) == ["dir/x.txt", "hello.txt"]
    assert [o["Key"] for o in anon.list_objects(Bucket="pub")["Contents"]] == ["dir/x.txt", "hello.txt"]
    anon.head_bucket(Bucket="pub")
    r = requests.get(f"{d.url}/pub/hello.txt", timeout=10)
    assert (r.status_code, r.content) == (200, b"public hello")
    r = requests.get(f"{d.url}/pub?list-type=2&prefix=dir/", timeout=10)
    assert r.status_code == 200 and b"<Key>dir/x.txt</Key>" in r.content
    r = d.aws("--no-sign-request", "s3", "cp", "s3://pub/hello.txt", "-")
    assert r.stdout == "public hello"
    r = d.aws("--no-sign-request", "s3", "ls", "s3://pub/dir/")
    assert "x.txt" in r.stdout
    # a key whose scope does not include the public volume reads it too, like anyone
    assert get_bytes(client(d, "bonly"), "pub", "hello.txt") == b"public hello"


def test_nothing_else_is_anonymous(d, tmp_path):
    anon = anonymous(d)
    with Unchanged(d):
        expect_client_error(anon.put_object, *DENIED, Bucket="pub", Key="anon.txt", Body=b"x")
        expect_client_error(anon.put_object, *DENIED, Bucket="pub", Key="hello.txt", Body=b"x")
        expect_client_error(anon.delete_object, *DENIED, Bucket="pub", Key="hello.txt")
        expect_client_error(anon.delete_objects, *DENIED, Bucket="pub", Delete={"Objects": [{"Key": "hello.txt"}]})
        expect_client_error(anon.copy_object, *DENIED, Bucket="pub", Key="copy.txt",
                            CopySource={"Bucket": "pub", "Key": "hello.txt"})
        expect_client_error(anon.create_multipart_upload, *DENIED, Bucket="pub", Key="mp")
        expect_client_error(anon.list_multipart_uploads, *DENIED, Bucket="pub")
        expect_client_error(anon.get_bucket_location, *DENIED, Bucket="pub")
        expect_client_error(anon.list_buckets, *DENIED)
        expect_client_error(anon.get_object, *DENIED, Bucket="vol-a", Key="a.txt")
        expect_client_error(anon.list_objects_v2, *DENIED, Bucket="vol-a")
        expect_client_error(anon.head_object, 403, (), Bucket="vol-b", Key="b.txt")
        expect_client_error(anon.delete_bucket, *DENIED, Bucket="pub")
        # response header overrides are for signed requests only (as S3)
        expect_client_error(anon.get_object, 400, "InvalidRequest", Bucket="pub", Key="hello.txt",
                            ResponseContentType="text/html")
        src = tmp_path / "f.txt"
        src.write_bytes(b"x")
        r = d.aws("--no-sign-request", "s3", "cp", str(src), "s3://pub/cli.txt", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr
        for method in ("PUT", "DELETE"):
            r = requests.request(method, f"{d.url}/pub/hello.txt", data=b"x", timeout=10)
            assert r.status_code == 403 and b"AccessDenied" in r.content, (method, r.status_code, r.content)
        # a POST that is no S3 operation never reaches one
        r = requests.post(f"{d.url}/pub/hello.txt", data=b"x", timeout=10)
        assert r.status_code == 501 and b"NotImplemented" in r.content, (r.status_code, r.content)
        r = requests.get(f"{d.url}/", timeout=10)
        assert r.status_code == 403


def test_public_volume_writes_still_need_a_key_with_write(d, prefix):
    with Unchanged(d):
        expect_client_error(client(d, "reader").put_object, *DENIED, Bucket="pub", Key="x", Body=b"x")
        expect_client_error(client(d, "bonly").delete_object, *DENIED, Bucket="pub", Key="hello.txt")
