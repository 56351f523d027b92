"""Limits hold on the bytes, not on what a header claims (issue 12, item 5; SPEC.md
"Writes are atomic and durable" and "Capacity and quota").

Quota, free space, `max_object_size` and the part size limit were judged on a declared
size that a client could lie about: `x-amz-decoded-content-length` was honoured on a plain
body, and s3s 0.14 does not hold an aws-chunked body to it. Each test below is one way to
lie, sent over raw sockets by a client holding a write key or a presigned PUT URL, and
asserts the answer (status and code), that nothing was committed (the old object intact,
no new file, no temp file, nothing staged) and that the quota's usage did not move.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from helpers import (
    ACCESS_KEY, SECRET_KEY, MiB, aws_chunked_signed, aws_chunked_unsigned_trailer, crc32_b64, data,
    internal_files, md5_etag, put_cut_off, send_raw, sign_v4, snapshot_diff, start_daemon, stop_daemon,
    toml_str, tree_snapshot, uri_encode, wait_until,
)

KiB = 1024
QUOTA = MiB  # the `quota` volume
MAX_OBJECT = 512 * KiB  # the `limits` volume
MAX_PART = 256 * KiB  # the `limits` volume
CHUNK = 64 * KiB  # what S3 clients send per aws-chunked chunk


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """Over http: `quota` (1 MiB quota) and `limits` (512 KiB objects, 256 KiB parts), with
    the admin listener for `/status`."""
    work = tmp_path_factory.mktemp("attack-limits")
    quota, limits = work / "vols" / "quota", work / "vols" / "limits"
    quota.mkdir(parents=True)
    limits.mkdir()
    extra = (
        'admin_listen = "127.0.0.1:0"\n'
        f'[[volume]]\nname = "quota"\npath = {toml_str(quota)}\nquota = "1MiB"\n'
        f'[[volume]]\nname = "limits"\npath = {toml_str(limits)}\nmax_object_size = "512KiB"\n'
        'max_part_size = "256KiB"\nmin_part_size = "0"\n'
    )
    daemon = start_daemon(work / "d", volumes=(), extra_config=extra)
    daemon.vols.update(quota=quota, limits=limits)
    admin = wait_until(lambda: next((ln.split()[-1] for ln in daemon.stdout_lines if ln.startswith("admin on ")), None))
    assert admin, daemon.stdout_lines
    daemon.admin = admin
    assert wait_until(lambda: "volume usage measured" in daemon.log.read_text()), "the quota's first walk"
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def volume_status(d, name: str) -> dict:
    with urllib.request.urlopen(f"http://{d.admin}/status", timeout=10) as r:
        return next(v for v in json.load(r)["volumes"] if v["name"] == name)


def quota_used(d) -> int:
    return volume_status(d, "quota")["capacity"]["used"]


class NothingCommitted:
    """The volume's whole tree, internal directory included, is the same afterwards (so no
    object, part or temp file was left), no write is still in flight, and the quota's
    usage has not moved."""

    def __init__(self, d, vol: str):
        self.d, self.vol = d, vol

    def __enter__(self):
        self.path = self.d.vols[self.vol]
        self.before = tree_snapshot(self.path, include_internal=True)
        self.used = quota_used(self.d)
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        # A refused write ends on the server after the answer (the drop of its temp file).
        wait_until(lambda: volume_status(self.d, self.vol)["writes_in_flight"] == 0, timeout=10)
        assert volume_status(self.d, self.vol)["writes_in_flight"] == 0, "a write is still in flight"
        left = [k for k in internal_files(self.path) if k.startswith("tmp/")]
        assert not left, f"temp files left behind: {left}"
        after = tree_snapshot(self.path, include_internal=True)
        assert after == self.before, "the volume changed:\n" + snapshot_diff(self.before, after)
        assert quota_used(self.d) == self.used, "the quota's usage moved"
        return False


def target_of(path: str, query) -> str:
    if not query:
        return path
    return path + "?" + "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in query)


def plain_put(d, path: str, body: bytes, headers=None, query=None):
    """A SigV4 header-signed PUT (UNSIGNED-PAYLOAD) with a plain body, `headers` signed."""
    s = sign_v4("PUT", path, query, headers or {}, "UNSIGNED-PAYLOAD", f"{d.host}:{d.port}", ACCESS_KEY,
                SECRET_KEY, d.region)
    return send_raw(d, "PUT", target_of(path, query), s.headers, body, timeout=60)


def chunked_put(d, path: str, payload: bytes, decoded: int, *, query=None, trailer: bool = False):
    """A SigV4 aws-chunked PUT of `payload` in 64 KiB chunks declaring `decoded` bytes in a
    signed `x-amz-decoded-content-length`: chunk-signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD),
    or unsigned with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER) as botocore sends
    over https."""
    chunks = [payload[i:i + CHUNK] for i in range(0, len(payload), CHUNK)]
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded)}
    host = f"{d.host}:{d.port}"
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
        s = sign_v4("PUT", path, query, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", host, ACCESS_KEY, SECRET_KEY,
                    d.region)
        body = aws_chunked_unsigned_trailer(chunks, "x-amz-checksum-crc32", crc32_b64(payload))
    else:
        s = sign_v4("PUT", path, query, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", host, ACCESS_KEY, SECRET_KEY,
                    d.region)
        body = aws_chunked_signed(chunks, s)
    return send_raw(d, "PUT", target_of(path, query), s.headers, body, timeout=60)


def presigned_put_url(d, bucket: str, key: str) -> str:
    return d.client(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)


def send_presigned(d, url: str, body: bytes, headers=None):
    u = urlsplit(url)
    return send_raw(d, "PUT", f"{u.path}?{u.query}", {"host": u.netloc, **(headers or {})}, body, timeout=60)


def delete(d, vol: str, key: str):
    d.client().delete_object(Bucket=vol, Key=key)


def expect(r, status: int, *codes: str):
    assert r.status == status and r.code in codes, r


def old_object(d, vol: str, key: str, size: int = 1000) -> bytes:
    """Puts an honest object at `key` first, so that "the old one intact" is checked."""
    body = data(size, f"old-{key}")
    r = plain_put(d, f"/{vol}/{key}", body)
    assert r.status == 200, r
    return body


def test_decoded_length_header_on_plain_body_cannot_bypass_quota(d, prefix):
    """A plain body declaring one decoded byte reserved one byte of the quota and stored 2 MiB."""
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    with NothingCommitted(d, "quota"):
        r = plain_put(d, f"/quota/{key}", data(2 * MiB, "lie"), {"x-amz-decoded-content-length": "1"})
        expect(r, 403, "QuotaExceeded")
    assert (d.vols["quota"] / key).read_bytes() == old


def test_decoded_length_header_on_plain_body_cannot_exceed_max_object_size(d, prefix):
    key = f"{prefix}.bin"
    with NothingCommitted(d, "limits"):
        r = plain_put(d, f"/limits/{key}", data(MAX_OBJECT + 1, "lie"), {"x-amz-decoded-content-length": "1"})
        expect(r, 400, "EntityTooLarge")
    assert not (d.vols["limits"] / key).exists()


def test_decoded_length_header_on_plain_body_is_ignored_as_s3_does(d, prefix):
    """S3 ignores x-amz-decoded-content-length on a plain body: Content-Length bytes are
    stored, even when the header claims more than the quota holds."""
    body = data(10 * KiB, "plain")
    r = plain_put(d, f"/quota/{prefix}.bin", body, {"x-amz-decoded-content-length": str(100 * MiB)})
    assert r.status == 200, r
    assert r.headers["etag"] == md5_etag(body)
    assert (d.vols["quota"] / f"{prefix}.bin").read_bytes() == body
    delete(d, "quota", f"{prefix}.bin")


@pytest.mark.parametrize("trailer", [False, True], ids=["chunk-signed", "unsigned-trailer"])
def test_aws_chunked_body_longer_than_decoded_length_is_refused(d, prefix, trailer):
    """Declares 1 KiB decoded, sends 2 MiB in valid chunks: s3s 0.14 passes them all on."""
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    with NothingCommitted(d, "quota"):
        r = chunked_put(d, f"/quota/{key}", data(2 * MiB, "long"), KiB, trailer=trailer)
        expect(r, 400, "IncompleteBody")
    assert (d.vols["quota"] / key).read_bytes() == old


@pytest.mark.parametrize("trailer", [False, True], ids=["chunk-signed", "unsigned-trailer"])
def test_aws_chunked_body_shorter_than_decoded_length_commits_nothing(d, prefix, trailer):
    """A well-formed stream that ends (zero chunk, trailer) before its declared length."""
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    with NothingCommitted(d, "quota"):
        r = chunked_put(d, f"/quota/{key}", data(100 * KiB, "short"), 300 * KiB, trailer=trailer)
        expect(r, 400, "IncompleteBody")
    assert (d.vols["quota"] / key).read_bytes() == old


def test_aws_chunked_body_of_exactly_its_decoded_length_is_stored(d, prefix):
    """The control for the two above: the same requests, honest, are stored whole."""
    for trailer in (False, True):
        body = data(200 * KiB + 7, f"exact-{trailer}")
        key = f"{prefix}-{trailer}.bin"
        r = chunked_put(d, f"/quota/{key}", body, len(body), trailer=trailer)
        assert r.status == 200, r
        assert (d.vols["quota"] / key).read_bytes() == body
        delete(d, "quota", key)


def test_body_shorter_than_content_length_commits_nothing(d, prefix):
    """Declares 300 KiB, sends 100 KiB and hangs up (no answer can be read)."""
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    with NothingCommitted(d, "quota"):
        put_cut_off(d, f"/quota/{key}", 300 * KiB, data(100 * KiB, "cut"))
    assert (d.vols["quota"] / key).read_bytes() == old


def test_body_shorter_than_content_length_answers_incomplete_body(d, prefix):
    """The same, but the client half-closes and waits: it reads IncompleteBody."""
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    s = sign_v4("PUT", f"/quota/{key}", None, {}, "UNSIGNED-PAYLOAD", f"{d.host}:{d.port}", ACCESS_KEY, SECRET_KEY,
                d.region)
    head = f"PUT /quota/{key} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in s.headers.items())
    head += f"content-length: {300 * KiB}\r\n\r\n"
    with NothingCommitted(d, "quota"):
        sock = socket.create_connection((d.host, d.port), timeout=20)
        try:
            sock.sendall(head.encode() + data(100 * KiB, "cut"))
            sock.shutdown(socket.SHUT_WR)
            resp = b""
            while chunk := sock.recv(65536):
                resp += chunk
        finally:
            sock.close()
        assert resp.startswith(b"HTTP/1.1 400"), resp[:300]
        assert b"<Code>IncompleteBody</Code>" in resp, resp[:600]
    assert (d.vols["quota"] / key).read_bytes() == old


def test_presigned_put_cannot_exceed_max_object_size(d, prefix):
    key = f"{prefix}.bin"
    url = presigned_put_url(d, "limits", key)
    too_big = data(MAX_OBJECT + 1, "presigned")
    with NothingCommitted(d, "limits"):
        expect(send_presigned(d, url, too_big), 400, "EntityTooLarge")
        # The URL's holder adds a decoded length of one byte. It is not signed: once
        # unsigned x-amz-* headers are refused (item 2) the answer is AccessDenied; here it
        # is ignored, as on any plain body.
        # The refusal comes from the head alone, so the server may close before the whole
        # body is sent: a broken pipe on the client is that refusal too.
        try:
            r = send_presigned(d, url, too_big, {"x-amz-decoded-content-length": "1"})
            assert (r.status, r.code) in {(400, "EntityTooLarge"), (403, "AccessDenied")}, r
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Nor can it turn its body into aws-chunked: presigned URLs carry no streaming
        # payload. (Refused before the body is read, which is then not drained: a short one.)
        r = send_presigned(d, url, too_big[:100], {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                             "x-amz-decoded-content-length": "1", "content-encoding": "aws-chunked"})
        assert (r.status, r.code) in {(501, "NotImplemented"), (403, "AccessDenied")}, r
    assert not (d.vols["limits"] / key).exists()
    # The same URL with a body that fits is fine.
    ok = data(MAX_OBJECT, "fits")
    assert send_presigned(d, url, ok).status == 200
    assert (d.vols["limits"] / key).read_bytes() == ok


def test_presigned_put_cannot_exceed_quota(d, prefix):
    key = f"{prefix}.bin"
    old = old_object(d, "quota", key)
    url = presigned_put_url(d, "quota", key)
    with NothingCommitted(d, "quota"):
        # Refused from the head alone (an unsigned x-amz-* header): the server may close
        # before the whole body is sent, and a reset on the client is that refusal.
        try:
            r = send_presigned(d, url, data(QUOTA + KiB, "presigned"), {"x-amz-decoded-content-length": "1"})
            assert (r.status, r.code) in {(403, "QuotaExceeded"), (403, "AccessDenied")}, r
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert (d.vols["quota"] / key).read_bytes() == old


def create_upload(d, vol: str, key: str) -> str:
    return d.client().create_multipart_upload(Bucket=vol, Key=key)["UploadId"]


def test_upload_part_over_part_limit_by_lying_about_decoded_length(d, prefix):
    """A 400 KiB part (over the 256 KiB part limit, under the object limit) declared as 1 KiB
    of aws-chunked data: the part check read the rewritten Content-Length (the lie)."""
    key = f"{prefix}.bin"
    up = create_upload(d, "limits", key)
    q = [("partNumber", "1"), ("uploadId", up)]
    with NothingCommitted(d, "limits"):
        for trailer in (False, True):
            r = chunked_put(d, f"/limits/{key}", data(400 * KiB, "part"), KiB, query=q, trailer=trailer)
            expect(r, 400, "IncompleteBody")
        # A plain body with the same claim: the decoded length is ignored, Content-Length is judged.
        r = plain_put(d, f"/limits/{key}", data(400 * KiB, "part"), {"x-amz-decoded-content-length": "1"}, query=q)
        expect(r, 400, "EntityTooLarge")
        # Shorter than declared: nothing staged either.
        r = chunked_put(d, f"/limits/{key}", data(100 * KiB, "part"), 200 * KiB, query=q)
        expect(r, 400, "IncompleteBody")
    assert d.client().list_parts(Bucket="limits", Key=key, UploadId=up).get("Parts", []) == []
    d.client().abort_multipart_upload(Bucket="limits", Key=key, UploadId=up)


def test_upload_part_over_quota_by_lying_about_decoded_length(d, prefix):
    """Staged parts count against the quota: a part that declares 1 KiB and sends 2 MiB."""
    key = f"{prefix}.bin"
    up = create_upload(d, "quota", key)
    q = [("partNumber", "1"), ("uploadId", up)]
    with NothingCommitted(d, "quota"):
        r = chunked_put(d, f"/quota/{key}", data(2 * MiB, "part"), KiB, query=q)
        expect(r, 400, "IncompleteBody")
        r = plain_put(d, f"/quota/{key}", data(2 * MiB, "part"), {"x-amz-decoded-content-length": "1"}, query=q)
        expect(r, 403, "QuotaExceeded")
    assert d.client().list_parts(Bucket="quota", Key=key, UploadId=up).get("Parts", []) == []
    d.client().abort_multipart_upload(Bucket="quota", Key=key, UploadId=up)


def test_object_over_max_object_size_by_lying_about_decoded_length(d, prefix):
    key = f"{prefix}.bin"
    old = old_object(d, "limits", key)
    with NothingCommitted(d, "limits"):
        for trailer in (False, True):
            r = chunked_put(d, f"/limits/{key}", data(MAX_OBJECT + CHUNK, "big"), KiB, trailer=trailer)
            expect(r, 400, "IncompleteBody")
    assert (d.vols["limits"] / key).read_bytes() == old


def test_quota_counts_bytes_received(d, prefix):
    """Usage follows the bytes stored: lies move nothing, honest writes fill the quota to
    the byte and no further."""
    base = quota_used(d)
    room = QUOTA - base
    assert room > 700 * KiB, f"earlier tests left {base} bytes"
    first = data(room - 300 * KiB, "first")
    r = plain_put(d, f"/quota/{prefix}-1.bin", first)
    assert r.status == 200, r
    assert quota_used(d) == base + len(first)
    with NothingCommitted(d, "quota"):
        # 200 KiB would fit; 400 KiB would not. Declaring the one and sending the other fails.
        r = chunked_put(d, f"/quota/{prefix}-2.bin", data(400 * KiB, "lie"), 200 * KiB)
        expect(r, 400, "IncompleteBody")
        lie = {"x-amz-decoded-content-length": str(200 * KiB)}
        r = plain_put(d, f"/quota/{prefix}-2.bin", data(400 * KiB, "lie"), lie)
        expect(r, 403, "QuotaExceeded")
    # Exactly the rest fits; one byte more does not.
    rest = data(300 * KiB, "rest")
    r = chunked_put(d, f"/quota/{prefix}-2.bin", rest, len(rest))
    assert r.status == 200, r
    assert quota_used(d) == QUOTA
    with NothingCommitted(d, "quota"):
        expect(plain_put(d, f"/quota/{prefix}-3.bin", b"x"), 403, "QuotaExceeded")
    on_disk = sum(p.stat().st_size for p in Path(d.vols["quota"]).rglob("*") if p.is_file()
                  and ".s3vol" not in p.parts)
    assert on_disk == QUOTA, "the usage is the bytes on disk"
    for k in (f"{prefix}-1.bin", f"{prefix}-2.bin"):
        delete(d, "quota", k)
    assert quota_used(d) == base


def test_completes_cannot_drift_the_quota_usage_down(d, prefix):
    """Complete used to uncount the upload's manifest and records, which were never
    counted: a client repeating tiny multipart uploads drove the usage below the truth and
    then wrote past the quota (found by the outside attack pass)."""
    s3 = d.client()
    before = quota_used(d)
    n = 40
    for i in range(n):
        key = f"{prefix}/m{i}-" + "k" * 200
        up = s3.create_multipart_upload(Bucket="quota", Key=key, Metadata={"pad": "v" * 1500})["UploadId"]
        e = s3.upload_part(Bucket="quota", Key=key, UploadId=up, PartNumber=1, Body=b"x")["ETag"]
        s3.complete_multipart_upload(Bucket="quota", Key=key, UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    # Each cycle leaves a 1-byte object, and the usage counts exactly that.
    assert quota_used(d) - before == n, (before, quota_used(d))
    for i in range(n):
        s3.delete_object(Bucket="quota", Key=f"{prefix}/m{i}-" + "k" * 200)
    assert quota_used(d) == before


def test_reuploading_the_same_part_counts_it_once(d, prefix):
    """Staging identical bytes again under the same part name used to add their size to the
    usage each time: four uploads of one 256 KiB part counted 1 MiB and filled the quota."""
    s3 = d.client()
    before = quota_used(d)
    key = f"{prefix}/same.bin"
    up = s3.create_multipart_upload(Bucket="quota", Key=key)["UploadId"]
    body = data(256 * KiB, "same part")
    for _ in range(4):
        s3.upload_part(Bucket="quota", Key=key, UploadId=up, PartNumber=1, Body=body)
    assert quota_used(d) - before == len(body)
    r = plain_put(d, f"/quota/{prefix}/small", b"s" * KiB)
    assert r.status == 200, r
    s3.abort_multipart_upload(Bucket="quota", Key=key, UploadId=up)
    s3.delete_object(Bucket="quota", Key=f"{prefix}/small")
    assert quota_used(d) == before
