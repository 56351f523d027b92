"""Multipart uploads end to end (issue 3; SPEC.md "Multipart uploads").

Self-contained: this module starts its own daemons (the real binary, S3VOL_BIN or
target/debug/s3vol) on 127.0.0.1 port 0 with generated configs, and drives them with
boto3 and the aws CLI. It needs no fixture from conftest.py.

The reflink test loop-mounts a btrfs image (root, mkfs.btrfs from btrfs-progs); the
network-file-system test mounts the volume twice through sshfs (FUSE) from an sshd it
starts on 127.0.0.1 (openssh-server, sshfs). When they cannot, they say why and skip,
except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("S3VOL_BIN") or str(ROOT / "target" / "debug" / "s3vol")
AK, SK = "AKMULTIPART00001", "multipart-secret-0000000000000001"
AK_A, SK_A = "AKMULTIPARTONLYA", "multipart-secret-0000000000000002"


# --------------------------------------------------------------------------- helpers

class Daemon:
    """One running s3vol; stop() kills it by PID."""

    def __init__(self, workdir: Path, volumes: dict[str, Path], extra: str = "", name: str = "d",
                 volume_extra: str = ""):
        self.workdir = workdir
        creds = workdir / "credentials.toml"
        if not creds.exists():
            creds.write_text(
                f'[[key]]\nname = "mp"\naccess_key = "{AK}"\nsecret_key = "{SK}"\n'
                'volumes = ["*"]\npermissions = ["read", "write", "delete"]\n'
                f'[[key]]\nname = "only-a"\naccess_key = "{AK_A}"\nsecret_key = "{SK_A}"\n'
                'volumes = ["vol-a"]\npermissions = ["read", "write", "delete"]\n'
            )
            creds.chmod(0o600)
        cfg = f'listen = "127.0.0.1:0"\ncredentials = "{creds}"\n{extra}\n'
        for vname, path in volumes.items():
            path.mkdir(parents=True, exist_ok=True)
            # Small parts throughout: these tests are about staging and assembly, not
            # the 5 MiB minimum (tests/e2e/test_part_size.py).
            cfg += f'[[volume]]\nname = "{vname}"\npath = "{path}"\nmin_part_size = "0"\n{volume_extra}\n'
        self.config = workdir / f"{name}.toml"
        self.config.write_text(cfg)
        self.log = workdir / f"{name}.log"
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True,
            env={**os.environ, "RUST_LOG": "info"},
        )
        found: list[str] = []

        def read():
            for line in self.proc.stdout:
                if line.startswith("listening on "):
                    found.append(line.split()[-1])
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(30)
        assert found, f"s3vol did not start:\n{self.log.read_text()[-3000:]}"
        self.url = f"http://{found[0]}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def client(self, ak: str = AK, sk: str = SK):
        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=ak, aws_secret_access_key=sk,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          read_timeout=600),
        )

    def log_text(self) -> str:
        """The daemon's log without terminal colour codes."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))


@pytest.fixture
def work(tmp_path):
    return tmp_path


@pytest.fixture
def daemon(work):
    d = Daemon(work, {"vol-a": work / "vol-a", "vol-b": work / "vol-b"})
    yield d
    d.stop()


def md5(b: bytes) -> bytes:
    return hashlib.md5(b).digest()


def mp_etag(parts: list[bytes]) -> str:
    return '"%s-%d"' % (hashlib.md5(b"".join(md5(p) for p in parts)).hexdigest(), len(parts))


def code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def staging(vol: Path) -> Path:
    return vol / ".s3vol" / "multipart"


def upload_parts(s3, bucket, key, parts: dict[int, bytes], **create):
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    etags = {}
    for n, data in parts.items():
        etags[n] = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=data)["ETag"]
    return uid, etags


def listed(etags: dict[int, str]):
    return {"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]}


# --------------------------------------------------------------------------- part rules

def test_gaps_and_reupload_replace_a_part(daemon):
    s3 = daemon.client()
    p1, p3, p7 = os.urandom(5 * MiB + 1), b"old three", os.urandom(100)
    uid, etags = upload_parts(s3, "vol-a", "gaps/obj.bin", {1: p1, 3: p3, 7: p7})
    p3 = b"new three, longer"
    etags[3] = s3.upload_part(Bucket="vol-a", Key="gaps/obj.bin", UploadId=uid, PartNumber=3, Body=p3)["ETag"]
    parts = s3.list_parts(Bucket="vol-a", Key="gaps/obj.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(p1)), (3, len(p3)), (7, len(p7))]
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="gaps/obj.bin", UploadId=uid,
                                     MultipartUpload=listed(etags))
    assert r["ETag"] == mp_etag([p1, p3, p7])
    body = s3.get_object(Bucket="vol-a", Key="gaps/obj.bin")["Body"].read()
    assert body == p1 + p3 + p7
    part2 = s3.get_object(Bucket="vol-a", Key="gaps/obj.bin", PartNumber=2)
    assert part2["Body"].read() == p3 and part2["PartsCount"] == 3
    # Only the completion record is left of the staging.
    assert os.listdir(staging(daemon.workdir / "vol-a") / uid) == ["done.json"]


def test_wrong_etag_and_wrong_order_are_refused_and_the_upload_survives(daemon):
    s3 = daemon.client()
    uid, etags = upload_parts(s3, "vol-a", "rules/obj", {1: b"a" * 10, 2: b"b" * 10})
    bad = dict(etags)
    bad[2] = '"%s"' % ("0" * 32)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="vol-a", Key="rules/obj", UploadId=uid, MultipartUpload=listed(bad))
    assert code(e.value) == "InvalidPart"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket="vol-a", Key="rules/obj", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[2]}, {"PartNumber": 1, "ETag": etags[1]}]})
    assert code(e.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="vol-a", Key="rules/obj", UploadId=uid,
                                     MultipartUpload=listed({1: etags[1], 5: etags[2]}))
    assert code(e.value) == "InvalidPart"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket="vol-a", Key="rules/obj", UploadId=uid, PartNumber=10001, Body=b"x")
    assert code(e.value) == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="vol-a", Key="rules/obj")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="rules/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert s3.get_object(Bucket="vol-a", Key="rules/obj")["Body"].read() == b"a" * 10 + b"b" * 10
    assert r["ETag"] == mp_etag([b"a" * 10, b"b" * 10])


def test_abort_removes_the_staging(daemon):
    s3 = daemon.client()
    uid, _ = upload_parts(s3, "vol-a", "abort/obj", {1: b"x" * 1000, 2: b"y"})
    s3.abort_multipart_upload(Bucket="vol-a", Key="abort/obj", UploadId=uid)
    assert not (staging(daemon.workdir / "vol-a") / uid).exists()
    for call in (lambda: s3.list_parts(Bucket="vol-a", Key="abort/obj", UploadId=uid),
                 lambda: s3.abort_multipart_upload(Bucket="vol-a", Key="abort/obj", UploadId=uid),
                 lambda: s3.upload_part(Bucket="vol-a", Key="abort/obj", UploadId=uid, PartNumber=1, Body=b"z")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket="vol-a").get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket="vol-a", Key="abort/obj", UploadId="../../../etc")
    assert code(e.value) == "NoSuchUpload"


def test_idempotent_retry_of_a_completed_upload(daemon):
    s3 = daemon.client()
    uid, etags = upload_parts(s3, "vol-a", "retry/obj", {1: b"one", 2: b"two"})
    first = s3.complete_multipart_upload(Bucket="vol-a", Key="retry/obj", UploadId=uid, MultipartUpload=listed(etags))
    again = s3.complete_multipart_upload(Bucket="vol-a", Key="retry/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert first["ETag"] == again["ETag"] == mp_etag([b"one", b"two"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="vol-a", Key="retry/obj", UploadId=uid,
                                     MultipartUpload=listed({1: etags[1]}))
    assert code(e.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket="vol-a", Key="retry/obj", UploadId=uid)
    assert code(e.value) == "NoSuchUpload"


# --------------------------------------------------------------------------- listing

def test_list_uploads_paging_prefix_delimiter(daemon):
    s3 = daemon.client()
    keys = ["list/a/1", "list/a/2", "list/b", "list/b", "list/c", "other"]
    ids = []
    for k in keys:
        ids.append((k, s3.create_multipart_upload(Bucket="vol-a", Key=k)["UploadId"]))
        time.sleep(0.002)
    want = sorted((k, i) for k, i in ids if k.startswith("list/"))
    got, km, im = [], None, None
    pages = 0
    while True:
        kw = {"Bucket": "vol-a", "Prefix": "list/", "MaxUploads": 2}
        if km is not None:
            kw.update(KeyMarker=km, UploadIdMarker=im or "")
        r = s3.list_multipart_uploads(**kw)
        got += [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]
        pages += 1
        if not r["IsTruncated"]:
            break
        km, im = r["NextKeyMarker"], r.get("NextUploadIdMarker")
    assert got == want and pages == 3
    # Two uploads of one key are listed by initiation time.
    b_ids = [i for k, i in ids if k == "list/b"]
    assert [i for k, i in got if k == "list/b"] == b_ids
    r = s3.list_multipart_uploads(Bucket="vol-a", Prefix="list/", Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["list/a/"]
    assert [u["Key"] for u in r["Uploads"]] == ["list/b", "list/b", "list/c"]
    # The aws CLI pages through everything by itself.
    out = subprocess.run(
        ["aws", "s3api", "list-multipart-uploads", "--bucket", "vol-a", "--endpoint-url", daemon.url,
         "--page-size", "1", "--query", "Uploads[].Key", "--output", "text"],
        env={**os.environ, "AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK, "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == sorted(keys)


def test_list_parts_paging(daemon):
    s3 = daemon.client()
    uid, _ = upload_parts(s3, "vol-a", "parts/obj", {n: bytes([n]) * n for n in (1, 2, 4, 5, 9)})
    seen, marker = [], 0
    while True:
        r = s3.list_parts(Bucket="vol-a", Key="parts/obj", UploadId=uid, MaxParts=2, PartNumberMarker=marker)
        seen += [p["PartNumber"] for p in r.get("Parts", [])]
        if not r["IsTruncated"]:
            break
        marker = r["NextPartNumberMarker"]
    assert seen == [1, 2, 4, 5, 9]


# --------------------------------------------------------------------------- copy, checksums, metadata

def test_upload_part_copy_from_another_volume(daemon):
    s3 = daemon.client()
    src = os.urandom(3 * MiB)
    s3.put_object(Bucket="vol-b", Key="src/data.bin", Body=src)
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="copied.bin")["UploadId"]
    r1 = s3.upload_part_copy(Bucket="vol-a", Key="copied.bin", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": "vol-b", "Key": "src/data.bin"},
                             CopySourceRange="bytes=0-1048575")
    r2 = s3.upload_part_copy(Bucket="vol-a", Key="copied.bin", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": "vol-b", "Key": "src/data.bin"})
    r3 = s3.upload_part(Bucket="vol-a", Key="copied.bin", UploadId=uid, PartNumber=3, Body=b"tail")
    assert r1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(src[:MiB]).hexdigest()
    etags = {1: r1["CopyPartResult"]["ETag"], 2: r2["CopyPartResult"]["ETag"], 3: r3["ETag"]}
    s3.complete_multipart_upload(Bucket="vol-a", Key="copied.bin", UploadId=uid, MultipartUpload=listed(etags))
    assert s3.get_object(Bucket="vol-a", Key="copied.bin")["Body"].read() == src[:MiB] + src + b"tail"
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket="vol-a", Key="x", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": "vol-b", "Key": "src/data.bin"}, CopySourceRange="bytes=0-999999999")
    assert code(e.value) in ("InvalidRange", "NoSuchUpload")
    # A key that may not read vol-b cannot copy from it.
    only_a = daemon.client(AK_A, SK_A)
    uid = only_a.create_multipart_upload(Bucket="vol-a", Key="denied.bin")["UploadId"]
    with pytest.raises(ClientError) as e:
        only_a.upload_part_copy(Bucket="vol-a", Key="denied.bin", UploadId=uid, PartNumber=1,
                                CopySource={"Bucket": "vol-b", "Key": "src/data.bin"})
    assert code(e.value) == "AccessDenied"


def test_metadata_content_type_and_checksums_from_create(daemon):
    s3 = daemon.client()
    a, b = os.urandom(MiB), os.urandom(1000)
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="meta/obj", ContentType="application/x-test",
                                     Metadata={"colour": "green"}, CacheControl="max-age=5",
                                     ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for n, data in ((1, a), (2, b)):
        r = s3.upload_part(Bucket="vol-a", Key="meta/obj", UploadId=uid, PartNumber=n, Body=data,
                           ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="meta/obj", UploadId=uid, MultipartUpload={"Parts": parts})
    want = base64.b64encode(hashlib.sha256(hashlib.sha256(a).digest() + hashlib.sha256(b).digest()).digest()).decode()
    assert r["ChecksumSHA256"] == want + "-2"
    h = s3.head_object(Bucket="vol-a", Key="meta/obj", ChecksumMode="ENABLED")
    assert h["ContentType"] == "application/x-test"
    assert h["Metadata"] == {"colour": "green"}
    assert h["CacheControl"] == "max-age=5"
    assert h["ChecksumSHA256"] == want + "-2"
    # CRC32 of the whole object (FULL_OBJECT), combined from the part CRCs.
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="meta/crc", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    etags = {}
    for n, data in ((1, a), (2, b)):
        etags[n] = s3.upload_part(Bucket="vol-a", Key="meta/crc", UploadId=uid, PartNumber=n, Body=data,
                                  ChecksumAlgorithm="CRC32")["ETag"]
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="meta/crc", UploadId=uid, MultipartUpload=listed(etags))
    assert r["ChecksumCRC32"] == base64.b64encode(zlib.crc32(a + b).to_bytes(4, "big")).decode()


# --------------------------------------------------------------------------- shared volume, concurrency

def test_two_daemons_share_uploads(work):
    vols = {"vol-a": work / "vol-a"}
    d1 = Daemon(work, vols, name="one")
    d2 = Daemon(work, vols, name="two")
    try:
        s1, s2 = d1.client(), d2.client()
        uid = s1.create_multipart_upload(Bucket="vol-a", Key="shared/obj")["UploadId"]
        e1 = s1.upload_part(Bucket="vol-a", Key="shared/obj", UploadId=uid, PartNumber=1, Body=b"1" * MiB)["ETag"]
        e2 = s2.upload_part(Bucket="vol-a", Key="shared/obj", UploadId=uid, PartNumber=2, Body=b"2" * 10)["ETag"]
        assert [u["UploadId"] for u in s2.list_multipart_uploads(Bucket="vol-a")["Uploads"]] == [uid]
        assert len(s1.list_parts(Bucket="vol-a", Key="shared/obj", UploadId=uid)["Parts"]) == 2
        # The upload survives a restart of the daemon that started it.
        d1.stop()
        d1.start()
        s1 = d1.client()
        r = s2.complete_multipart_upload(Bucket="vol-a", Key="shared/obj", UploadId=uid,
                                         MultipartUpload=listed({1: e1, 2: e2}))
        assert s1.get_object(Bucket="vol-a", Key="shared/obj")["Body"].read() == b"1" * MiB + b"2" * 10
        again = s1.complete_multipart_upload(Bucket="vol-a", Key="shared/obj", UploadId=uid,
                                             MultipartUpload=listed({1: e1, 2: e2}))
        assert again["ETag"] == r["ETag"]
    finally:
        d1.stop()
        d2.stop()


def test_concurrent_completes_make_one_object(work):
    vols = {"vol-a": work / "vol-a"}
    d1 = Daemon(work, vols, name="one")
    d2 = Daemon(work, vols, name="two")
    try:
        s1 = d1.client()
        parts = {n: os.urandom(8 * MiB) for n in range(1, 9)}
        uid, etags = upload_parts(s1, "vol-a", "race/obj", parts)
        clients = [d1.client(), d2.client(), d1.client(), d2.client()]

        def complete(s3):
            return s3.complete_multipart_upload(Bucket="vol-a", Key="race/obj", UploadId=uid,
                                                MultipartUpload=listed(etags))["ETag"]

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            results = list(ex.map(complete, clients))
        want = mp_etag([parts[n] for n in sorted(parts)])
        assert results == [want] * 4
        body = s1.get_object(Bucket="vol-a", Key="race/obj")["Body"].read()
        assert body == b"".join(parts[n] for n in sorted(parts))
        assert os.listdir(staging(work / "vol-a") / uid) == ["done.json"]
        assert os.listdir(work / "vol-a" / ".s3vol" / "tmp") == []
        logs = d1.log_text() + d2.log_text()
        assert logs.count("upload completed") == 1, "exactly one Complete assembled the object"
    finally:
        d1.stop()
        d2.stop()


def test_daemon_killed_during_assembly_then_retry(work):
    """Kill -9 during a copy assembly: the old object stays whole (or the new one is
    whole), a restarted daemon finishes the upload on retry, and the staging is cleaned."""
    vols = {"vol-a": work / "vol-a"}
    d = Daemon(work, vols)
    try:
        s3 = d.client()
        s3.put_object(Bucket="vol-a", Key="crash/obj", Body=b"old object")
        parts = {n: os.urandom(32 * MiB) for n in range(1, 9)}
        uid, etags = upload_parts(s3, "vol-a", "crash/obj", parts)

        def complete():
            try:
                d.client().complete_multipart_upload(Bucket="vol-a", Key="crash/obj", UploadId=uid,
                                                     MultipartUpload=listed(etags))
            except Exception:  # noqa: BLE001 - the daemon dies under it
                pass

        t = threading.Thread(target=complete)
        t.start()
        # Kill as soon as the Complete holds its claim, i.e. while it assembles.
        claim = staging(work / "vol-a") / uid / "claim"
        deadline = time.time() + 30
        while not claim.exists() and t.is_alive() and time.time() < deadline:
            time.sleep(0.002)
        d.stop()
        t.join(30)
        killed_while_claimed = claim.exists()
        obj = work / "vol-a" / "crash" / "obj"
        whole = b"".join(parts[n] for n in sorted(parts))
        assert obj.read_bytes() in (b"old object", whole)
        d.start()
        s3 = d.client()
        r = s3.complete_multipart_upload(Bucket="vol-a", Key="crash/obj", UploadId=uid, MultipartUpload=listed(etags))
        assert r["ETag"] == mp_etag([parts[n] for n in sorted(parts)])
        assert s3.get_object(Bucket="vol-a", Key="crash/obj")["Body"].read() == whole
        assert os.listdir(staging(work / "vol-a") / uid) == ["done.json"]
        assert os.listdir(work / "vol-a" / ".s3vol" / "tmp") == []
        if killed_while_claimed:
            assert "taking over the completion" in d.log_text()
    finally:
        d.stop()


def hold_claim(vol: Path, uid: str, seconds: float) -> subprocess.Popen:
    """Makes upload `uid` look claimed by a live Complete of this node for `seconds`: a
    claim file naming a `sleep` process, which stops being a live holder when it exits."""
    holder = subprocess.Popen(["sleep", str(seconds)])
    node = "%s/%s" % (Path("/proc/sys/kernel/hostname").read_text().strip(),
                      Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    (staging(vol) / uid / "claim").write_text(
        '{"host": "%s", "pid": %d, "started": %d}' % (node, holder.pid, time.time()))
    # Reap it as soon as it exits: a zombie still counts as a live process.
    threading.Thread(target=holder.wait, daemon=True).start()
    return holder


def signed_complete(url: str, bucket: str, key: str, uid: str, etags: dict[int, str]):
    """CompleteMultipartUpload sent by hand (SigV4 by botocore), to see the raw body."""
    import requests
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    xml = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in sorted(etags.items()))
    req = AWSRequest(method="POST", url=f"{url}/{bucket}/{key}?uploadId={uid}", data=xml.encode())
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    r = requests.post(req.url, data=xml.encode(), headers=dict(req.headers.items()), timeout=300)
    return r.status_code, r.content


def test_long_complete_keeps_the_connection_alive(daemon):
    """A Complete that takes more than a second answers 200 at once, sends spaces, then
    the result; one that fails late sends an <Error> after the 200 (S3's behaviour)."""
    s3 = daemon.client()
    vol = daemon.workdir / "vol-a"
    uid, etags = upload_parts(s3, "vol-a", "slow/obj", {1: b"one", 2: b"two"})
    holder = hold_claim(vol, uid, 3)
    t0 = time.monotonic()
    status, body = signed_complete(daemon.url, "vol-a", "slow/obj", uid, etags)
    took = time.monotonic() - t0
    holder.wait()
    assert status == 200 and took > 2.5, (status, took, body[:200])
    head, _, rest = body.partition(b"?>")
    assert head.startswith(b"<?xml") and rest[:5] == b"     ", body[:200]
    assert b"<CompleteMultipartUploadResult" in rest and mp_etag([b"one", b"two"]).encode() in rest.replace(
        b"&quot;", b'"')
    assert s3.get_object(Bucket="vol-a", Key="slow/obj")["Body"].read() == b"onetwo"
    # boto3 reads the same kind of answer as a success.
    uid, etags = upload_parts(s3, "vol-a", "slow/boto", {1: b"x" * 100})
    holder = hold_claim(vol, uid, 2)
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="slow/boto", UploadId=uid, MultipartUpload=listed(etags))
    holder.wait()
    assert r["ETag"] == mp_etag([b"x" * 100])
    # A part vanishes while the Complete waits: an <Error> follows the 200.
    uid, etags = upload_parts(s3, "vol-a", "slow/fails", {1: b"a", 2: b"b"})
    holder = hold_claim(vol, uid, 3)
    threading.Timer(1.5, lambda: [p.unlink() for p in (staging(vol) / uid).glob("00002-*")]).start()
    status, body = signed_complete(daemon.url, "vol-a", "slow/fails", uid, etags)
    holder.wait()
    assert status == 200 and b"<Error><Code>InvalidPart</Code>" in body, body[:300]
    # One well-formed document (s3s 0.14.1 wrote a second XML declaration before the
    # <Error>, which botocore could not parse and retried as a 500).
    assert body.count(b"<?xml") == 1, body[:300]
    import xml.etree.ElementTree as ET
    assert ET.fromstring(body.strip()).find("Code").text == "InvalidPart"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="vol-a", Key="slow/fails")


def test_part_size_limit_is_configurable(work):
    d = Daemon(work, {"vol-a": work / "vol-a"}, volume_extra='max_part_size = "1MiB"')
    try:
        s3 = d.client()
        s3.put_object(Bucket="vol-a", Key="src", Body=b"s" * (2 * MiB))
        uid = s3.create_multipart_upload(Bucket="vol-a", Key="limited")["UploadId"]
        s3.upload_part(Bucket="vol-a", Key="limited", UploadId=uid, PartNumber=1, Body=b"x" * MiB)
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket="vol-a", Key="limited", UploadId=uid, PartNumber=2, Body=b"x" * (MiB + 1))
        assert code(e.value) == "EntityTooLarge"
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket="vol-a", Key="limited", UploadId=uid, PartNumber=2,
                                CopySource={"Bucket": "vol-a", "Key": "src"})
        assert code(e.value) == "EntityTooLarge"
        s3.upload_part_copy(Bucket="vol-a", Key="limited", UploadId=uid, PartNumber=2,
                            CopySource={"Bucket": "vol-a", "Key": "src"}, CopySourceRange="bytes=0-1048575")
    finally:
        d.stop()


def test_stale_claim_of_another_node_is_taken_over(daemon):
    """A claim left by a daemon of another node that died (untouched for over a minute)
    does not block the upload forever; a fresh one of a live holder makes Complete wait."""
    s3 = daemon.client()
    vol = daemon.workdir / "vol-a"
    uid, etags = upload_parts(s3, "vol-a", "stale/obj", {1: b"payload"})
    claim = staging(vol) / uid / "claim"
    claim.write_text('{"host": "another-node/boot", "pid": 1, "started": 0}')
    old = time.time() - 120
    os.utime(claim, (old, old))
    r = s3.complete_multipart_upload(Bucket="vol-a", Key="stale/obj", UploadId=uid, MultipartUpload=listed(etags))
    assert r["ETag"] == mp_etag([b"payload"])
    assert "taking over the completion" in daemon.log_text()


def test_sweep_removes_idle_uploads_and_old_temp_files(work):
    vol = work / "vol-a"
    (vol / ".s3vol" / "tmp").mkdir(parents=True)
    leftover = vol / ".s3vol" / "tmp" / "w-deadbeef0000"
    leftover.write_bytes(b"crashed write")
    old = time.time() - 7 * 3600
    os.utime(leftover, (old, old))
    fresh = vol / ".s3vol" / "tmp" / "w-live00000000"
    fresh.write_bytes(b"live write")
    d = Daemon(work, {"vol-a": vol}, extra='multipart_max_age = "3s"')
    try:
        s3 = d.client()
        uid, _ = upload_parts(s3, "vol-a", "idle/obj", {1: b"abandoned"})
        assert (staging(vol) / uid).exists()
        deadline = time.time() + 20
        while (staging(vol) / uid).exists() and time.time() < deadline:
            time.sleep(0.5)
        assert not (staging(vol) / uid).exists(), "the idle upload was not swept"
        assert not leftover.exists() and fresh.exists()
        assert s3.list_multipart_uploads(Bucket="vol-a").get("Uploads", []) == []
    finally:
        d.stop()


# --------------------------------------------------------------------------- big files, reflink

def test_aws_s3_cp_of_a_file_over_1_gib(work, daemon):
    src = work / "big.bin"
    size = (1 << 30) + 3 * MiB + 17
    with open(src, "wb") as f:  # sparse: reads as zeros, costs no disk
        f.truncate(size)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK, "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(["aws", "s3", "cp", str(src), "s3://vol-a/big/file.bin", "--endpoint-url", daemon.url,
                          "--only-show-errors"], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    dst = work / "vol-a" / "big" / "file.bin"
    assert dst.stat().st_size == size
    h = hashlib.md5()
    with open(dst, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    zeros = hashlib.md5()
    block = b"\0" * (8 * MiB)
    left = size
    while left:
        n = min(left, len(block))
        zeros.update(block[:n])
        left -= n
    assert h.hexdigest() == zeros.hexdigest()
    head = daemon.client().head_object(Bucket="vol-a", Key="big/file.bin")
    assert head["ContentLength"] == size and head["ETag"].endswith('-%d"' % -(-size // (8 * MiB)))


def loop_mount(fs: str, size_mib: int, work: Path):
    """Makes and mounts a loop image of `fs`; returns (mountpoint, cleanup) or raises
    RuntimeError saying why it cannot."""
    if os.geteuid() != 0:
        raise RuntimeError("needs root to loop-mount")
    mkfs = shutil.which(f"mkfs.{fs}")
    if not mkfs:
        raise RuntimeError(f"mkfs.{fs} is missing (apt-get install btrfs-progs)")
    img = work / f"{fs}.img"
    with open(img, "wb") as f:
        f.truncate(size_mib * MiB)
    args = {"btrfs": ["-q", "-f"], "ext4": ["-q", "-F", "-m", "0"]}.get(fs, ["-q"])
    r = subprocess.run([mkfs, *args, str(img)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"mkfs.{fs}: {r.stderr}")
    mnt = work / f"{fs}-mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"mount -o loop: {r.stderr.strip()}")

    def cleanup():
        subprocess.run(["umount", str(mnt)], check=False)  # a loop mount detaches its device

    return mnt, cleanup


def test_full_volume_during_assembly_fails_cleanly(work):
    """A volume without room for a copy assembles by append-and-delete; one without room
    for even one part answers InsufficientStorage, keeps the old object, and the upload
    completes on retry once there is room (never "success, then 404")."""
    try:
        mnt, cleanup = loop_mount("ext4", 96, work)
    except RuntimeError as e:
        cannot(f"cannot loop-mount ext4 for the disk-full test: {e}")
    d = None
    try:
        vol = mnt / "vol"
        d = Daemon(work, {"vol-a": vol})
        s3 = d.client()
        first = {n: os.urandom(8 * MiB) for n in range(1, 5)}
        uid, etags = upload_parts(s3, "vol-a", "full/obj", first)
        s3.complete_multipart_upload(Bucket="vol-a", Key="full/obj", UploadId=uid, MultipartUpload=listed(etags))
        assert "method=append-and-delete" in d.log_text(), d.log_text()[-2000:]
        old = b"".join(first[n] for n in sorted(first))
        assert (vol / "full" / "obj").read_bytes() == old
        second = {n: os.urandom(8 * MiB) for n in range(1, 5)}
        uid, etags = upload_parts(s3, "vol-a", "full/obj", second)
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f:  # no buffered bytes for close() to retry
            try:
                while shutil.disk_usage(mnt).free > 4 * MiB:
                    f.write(b"\0" * MiB)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                pass
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="vol-a", Key="full/obj", UploadId=uid, MultipartUpload=listed(etags))
        assert code(e.value) == "InsufficientStorage"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert (vol / "full" / "obj").read_bytes() == old
        assert s3.head_object(Bucket="vol-a", Key="full/obj")["ContentLength"] == len(old)
        filler.unlink()
        r = s3.complete_multipart_upload(Bucket="vol-a", Key="full/obj", UploadId=uid, MultipartUpload=listed(etags))
        assert r["ETag"] == mp_etag([second[n] for n in sorted(second)])
        assert (vol / "full" / "obj").read_bytes() == b"".join(second[n] for n in sorted(second))
        assert os.listdir(vol / ".s3vol" / "tmp") == []
    finally:
        if d:
            d.stop()
        cleanup()


def test_reflink_assembly_on_btrfs(work):
    try:
        mnt, cleanup = loop_mount("btrfs", 1024, work)
    except RuntimeError as e:
        msg = f"cannot loop-mount btrfs for the reflink test: {e}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    d = None
    try:
        d = Daemon(work, {"vol-a": mnt / "vol"})
        s3 = d.client()
        parts = {n: os.urandom(16 * MiB) for n in range(1, 9)}
        parts[9] = os.urandom(12345)  # an unaligned last part clones too (it ends the file)
        uid, etags = upload_parts(s3, "vol-a", "reflinked.bin", parts)
        subprocess.run(["sync"], check=True)
        free_before = shutil.disk_usage(mnt).free
        t0 = time.monotonic()
        s3.complete_multipart_upload(Bucket="vol-a", Key="reflinked.bin", UploadId=uid, MultipartUpload=listed(etags))
        took = time.monotonic() - t0
        subprocess.run(["sync"], check=True)
        used = free_before - shutil.disk_usage(mnt).free
        whole = b"".join(parts[n] for n in sorted(parts))
        assert (mnt / "vol" / "reflinked.bin").read_bytes() == whole
        assert "method=reflink" in d.log_text(), d.log_text()[-2000:]
        # Shared blocks: the 128 MiB object costs (almost) no new space, even counting
        # that the parts are freed only now.
        assert used < 16 * MiB, f"assembly used {used} bytes: not a reflink"
        print(f"reflink Complete of {len(whole)} bytes in {took * 1000:.0f} ms")
    finally:
        if d:
            d.stop()
        cleanup()


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cannot(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def sshfs_mounts(work):
    """Two sshfs mounts (two "nodes") of one directory, served by an sshd on 127.0.0.1."""
    sshd, sshfs = "/usr/sbin/sshd", shutil.which("sshfs")
    if os.geteuid() != 0 or not os.path.exists(sshd) or not sshfs or not os.path.exists("/dev/fuse"):
        cannot("the sshfs test needs root, /dev/fuse, sshd and sshfs (apt-get install openssh-server sshfs)")
    ssh = work / "ssh"
    ssh.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / name)], check=True)
    (ssh / "authorized_keys").write_text((ssh / "client.pub").read_text())
    port = free_port()
    (ssh / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {ssh / 'host'}\n"
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {ssh / 'sshd.pid'}\n"
        "Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(ssh / "sshd_config")],
                              stderr=open(ssh / "sshd.log", "wb"))
    remote = work / "remote"
    remote.mkdir()
    mounts = []
    try:
        deadline = time.time() + 10
        for node in ("node1", "node2"):
            mnt = work / node
            mnt.mkdir()
            while True:
                r = subprocess.run(
                    [sshfs, f"root@127.0.0.1:{remote}", str(mnt), "-p", str(port), "-o",
                     f"IdentityFile={ssh / 'client'},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                     "cache=no,reconnect"], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                if time.time() > deadline:
                    cannot(f"cannot mount sshfs: {r.stderr.strip()}\n{(ssh / 'sshd.log').read_text()}")
                time.sleep(0.3)
            mounts.append(mnt)
        yield mounts
    finally:
        for mnt in mounts:
            subprocess.run(["fusermount", "-u", str(mnt)], check=False)
        server.kill()
        server.wait()


def test_two_daemons_over_sshfs(work, sshfs_mounts):
    """The two-daemon guarantees on a FUSE network file system without O_TMPFILE, user
    xattrs or copy_file_range: shared uploads, concurrent Completes, one whole object."""
    m1, m2 = sshfs_mounts
    d1 = Daemon(work, {"vol-a": m1 / "vol"}, name="one")
    d2 = Daemon(work, {"vol-a": m2 / "vol"}, name="two")
    try:
        s1, s2 = d1.client(), d2.client()
        s1.put_object(Bucket="vol-a", Key="net/obj", Body=b"old")
        parts = {n: os.urandom(3 * MiB + n) for n in range(1, 5)}
        uid = s1.create_multipart_upload(Bucket="vol-a", Key="net/obj")["UploadId"]
        etags = {}
        for n, data in parts.items():
            s = s1 if n % 2 else s2
            etags[n] = s.upload_part(Bucket="vol-a", Key="net/obj", UploadId=uid, PartNumber=n, Body=data)["ETag"]
        assert [u["UploadId"] for u in s2.list_multipart_uploads(Bucket="vol-a")["Uploads"]] == [uid]
        assert len(s1.list_parts(Bucket="vol-a", Key="net/obj", UploadId=uid)["Parts"]) == 4

        def complete(s3):
            return s3.complete_multipart_upload(Bucket="vol-a", Key="net/obj", UploadId=uid,
                                                MultipartUpload=listed(etags))["ETag"]

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            results = list(ex.map(complete, [s1, s2]))
        assert results == [mp_etag([parts[n] for n in sorted(parts)])] * 2
        whole = b"".join(parts[n] for n in sorted(parts))
        assert s2.get_object(Bucket="vol-a", Key="net/obj")["Body"].read() == whole
        assert (work / "remote" / "vol" / "net" / "obj").read_bytes() == whole
        logs = d1.log_text() + d2.log_text()
        assert logs.count("upload completed") == 1, logs[-3000:]
        # The fallbacks were in use: no user xattrs on sshfs (and no O_TMPFILE on FUSE).
        assert "no user extended attributes" in logs
        assert os.listdir(work / "remote" / "vol" / ".s3vol" / "multipart" / uid) == ["done.json"]
        assert os.listdir(work / "remote" / "vol" / ".s3vol" / "tmp") == []
    finally:
        d1.stop()
        d2.stop()
