"""Bad input and hostile requests. Raw HTTP with hand-made SigV4 where clients would
normalise the path. Every case checks the exact S3 error and that nothing in or
outside the volumes changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from helpers import (
    ACCESS_KEY, INTERNAL_DIR, MiB, SECRET_KEY, aws_chunked_signed, aws_chunked_unsigned_trailer, b64,
    build_signed, connection, crc32_b64, crc32c_b64, data, err_status, expect_client_error, files_under,
    get_bytes, internal_files, list_all_keys, put_cut_off, send_raw, sha1_b64, sha256_b64, sign_v4, snapshot_diff, tree_snapshot,
    wait_until,
)

ETC_PASSWD = Path("/etc/passwd")


@pytest.fixture(scope="module")
def env(http_server):
    """The daemon plus a volume full of traps, made directly on disk."""
    d = http_server
    a, b = d.vol("vol-a"), d.vol("vol-b")
    (a / "good.txt").write_bytes(b"good")
    (b / "secret.txt").write_bytes(b"vol-b secret")
    os.symlink("/etc", a / "etclink")
    os.symlink("/etc/passwd", a / "passwdlink")
    os.symlink(str(b), a / "tob")
    os.symlink("../vol-b", a / "tob_rel")
    os.symlink(str(d.root / "outside"), a / "outlink")
    os.symlink("../canary.txt", a / "canarylink")
    os.mkfifo(a / "fifo")
    (a / "fifodir").mkdir()
    os.mkfifo(a / "fifodir" / "pipe")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(a / "sock"))
    (a / INTERNAL_DIR).mkdir(exist_ok=True)
    (a / INTERNAL_DIR / "planted.txt").write_bytes(b"planted")
    yield d
    sock.close()


@pytest.fixture
def s3(env):
    return env.client()


class Unchanged:
    """Context manager: assert that the whole tree (both volumes, the canary next to
    them, the outside dir) and /etc/passwd are the same afterwards."""

    def __init__(self, d):
        self.d = d

    def __enter__(self):
        self.before = tree_snapshot(self.d.root)
        self.passwd = ETC_PASSWD.read_bytes() if ETC_PASSWD.exists() else None
        self.planted = (self.d.vol("vol-a") / INTERNAL_DIR / "planted.txt").read_bytes()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        after = tree_snapshot(self.d.root)
        assert after == self.before, "the file tree changed:\n" + snapshot_diff(self.before, after)
        if self.passwd is not None:
            assert ETC_PASSWD.read_bytes() == self.passwd
        assert not Path("/etc/s3vol-e2e-evil").exists()
        assert (self.d.vol("vol-a") / INTERNAL_DIR / "planted.txt").read_bytes() == b"planted"
        return False


IA = ("InvalidArgument",)
TOO_LONG = ("KeyTooLongError",)
HOSTILE_KEYS = [
    ("..", IA),
    ("../canary.txt", IA),
    ("%2e%2e/canary.txt", IA),
    ("%2E%2E%2Fcanary.txt", IA),
    ("a/../../canary.txt", IA),
    ("..%2f..%2fetc%2fs3vol-e2e-evil", IA),
    ("..%2fvol-b%2fsecret.txt", IA),
    ("./x", IA),
    ("a/./b", IA),
    ("a/.", IA),
    ("a/..", IA),
    ("a//b", IA),
    ("/canary.txt", IA),  # leading slash: path /vol-a//canary.txt
    ("a%00b", IA),
    ("%00", IA),
    ("x" * 256, IA + TOO_LONG),
    ("%C3%A9" * 128, IA + TOO_LONG),  # 256 bytes, 128 characters
    ("/".join(["y" * 200] * 6), TOO_LONG),  # 1205 bytes
    (".s3vol", IA),
    (".s3vol/x", IA),
    (".s3vol/planted.txt", IA),
    ("%2es3vol/planted.txt", IA),
]


def _key_id(k: str) -> str:
    return k if len(k) <= 24 else f"{k[:9]}...({len(k)}chars)"


@pytest.mark.parametrize("raw_key,codes", HOSTILE_KEYS, ids=[_key_id(k) for k, _ in HOSTILE_KEYS])
def test_hostile_key_rejected(env, raw_key, codes):
    path = f"/vol-a/{raw_key}"
    with Unchanged(env):
        r = env.raw("PUT", path, body=b"evil")
        assert (r.status, r.code) in [(400, c) for c in codes], f"PUT {path}: {r}"
        r = env.raw("PUT", path + "/", body=b"")
        assert r.status == 400, f"PUT {path}/: {r}"
        r = env.raw("GET", path)
        assert (r.status, r.code) in [(400, c) for c in codes], f"GET {path}: {r}"
        r = env.raw("HEAD", path)
        assert r.status == 400, f"HEAD {path}: {r}"
        r = env.raw("DELETE", path)
        assert (r.status, r.code) in [(400, c) for c in codes], f"DELETE {path}: {r}"
        r = env.raw("PUT", "/vol-a/copy-dst-" + hashlib.md5(raw_key.encode()).hexdigest(),
                    headers={"x-amz-copy-source": f"/vol-a/{raw_key}"})
        # a bad copy source may also be answered as an invalid argument
        assert (r.status, r.code) in [(400, c) for c in set(codes) | set(IA)], f"COPY from {path}: {r}"


def test_key_length_boundaries_accepted(env, s3):
    seg255 = "z" * 255
    uni255 = "é" * 127 + "x"  # 255 bytes
    k1024 = "/".join(["w" * 204] * 5)
    assert len(k1024.encode()) == 1024 and len(uni255.encode()) == 255
    for key in (seg255, uni255, k1024):
        r = env.raw("PUT", "/vol-a/" + quote(key, safe="/"), body=b"ok")
        assert r.status == 200, f"{len(key.encode())}-byte key refused: {r}"
        assert (env.vol("vol-a") / key).read_bytes() == b"ok"
        s3.delete_object(Bucket="vol-a", Key=key)


def test_hostile_keys_through_boto3(env, s3):
    with Unchanged(env):
        for key in ("../canary.txt", ".s3vol/planted.txt", "a//b", "./a", "a/../b", "x" * 256):
            e = expect_client_error(s3.put_object, 400, IA + TOO_LONG, Bucket="vol-a", Key=key, Body=b"evil")
            assert str(env.root) not in str(e.response), "an internal path leaked into an error"
            expect_client_error(s3.get_object, 400, IA + TOO_LONG, Bucket="vol-a", Key=key)
            expect_client_error(s3.copy_object, 400, IA + TOO_LONG, Bucket="vol-a", Key="dst-ok",
                                CopySource={"Bucket": "vol-a", "Key": key})
        r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [
            {"Key": "../canary.txt"}, {"Key": ".s3vol/planted.txt"}, {"Key": "a//b"}]})
        errors = {e["Key"]: e["Code"] for e in r.get("Errors", [])}
        assert errors == {"../canary.txt": "InvalidArgument", ".s3vol/planted.txt": "InvalidArgument",
                          "a//b": "InvalidArgument"}, r
        assert not r.get("Deleted")
    assert not (env.vol("vol-a") / "dst-ok").exists()


TRAPS = ["etclink", "passwdlink", "tob", "tob_rel", "outlink", "canarylink", "fifo", "fifodir/pipe", "sock",
         INTERNAL_DIR]


def test_traps_not_listed(env, s3):
    with Unchanged(env):
        keys = list_all_keys(s3, "vol-a")
        assert "good.txt" in keys
        for k in keys:
            for t in TRAPS:
                assert not (k == t or k.startswith(t + "/")), f"{k} listed"
        r = s3.list_objects_v2(Bucket="vol-a", Delimiter="/")
        prefixes = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        for t in ("etclink/", "tob/", "tob_rel/", "outlink/", INTERNAL_DIR + "/"):
            assert t not in prefixes, prefixes
        for o in r.get("Contents", []):
            assert o["Key"] not in TRAPS
        for pfx in ("etclink/", "tob/", "outlink/", "fifodir/"):
            r = s3.list_objects_v2(Bucket="vol-a", Prefix=pfx)
            assert [o["Key"] for o in r.get("Contents", []) if o["Key"] != pfx] == [], (pfx, r.get("Contents"))
        for pfx in ("../", ".s3vol/"):
            try:
                r = s3.list_objects_v2(Bucket="vol-a", Prefix=pfx)
            except Exception as e:  # refusing the prefix is fine; listing outside is not
                assert "InvalidArgument" in str(e), e
            else:
                assert r.get("KeyCount", 0) == 0 and not r.get("CommonPrefixes"), r
        v1 = s3.list_objects(Bucket="vol-a")
        assert not [o["Key"] for o in v1.get("Contents", []) if o["Key"].split("/")[0] in TRAPS]


def test_symlink_to_etc_is_invisible(env, s3):
    with Unchanged(env):
        for key in ("etclink/passwd", "passwdlink", "canarylink"):
            r = env.raw("GET", f"/vol-a/{key}")
            assert (r.status, r.code) == (404, "NoSuchKey"), f"GET {key}: {r}"
            assert b"root:" not in r.body and b"canary" not in r.body
            r = env.raw("HEAD", f"/vol-a/{key}")
            assert r.status == 404, f"HEAD {key}: {r}"
            expect_client_error(s3.copy_object, 404, "NoSuchKey", Bucket="vol-a", Key="stolen",
                                CopySource={"Bucket": "vol-a", "Key": key})
        r = env.raw("GET", "/vol-a/etclink/passwd", query=[("partNumber", "1")])
        assert r.status == 404
    assert not (env.vol("vol-a") / "stolen").exists()


def test_symlink_to_other_volume_is_invisible(env, s3):
    with Unchanged(env):
        for link in ("tob", "tob_rel"):
            r = env.raw("GET", f"/vol-a/{link}/secret.txt")
            assert (r.status, r.code) == (404, "NoSuchKey"), f"GET {link}/secret.txt: {r}"
            # refused as a client error (the exact code is not fixed by the spec), never a 5xx
            r = env.raw("PUT", f"/vol-a/{link}/new.txt", body=b"evil")
            assert 400 <= r.status < 500 and r.code, f"PUT through {link}: {r}"
            r = env.raw("PUT", f"/vol-a/{link}/secret.txt", body=b"evil")
            assert 400 <= r.status < 500 and r.code, f"PUT through {link}: {r}"
            r = env.raw("DELETE", f"/vol-a/{link}/secret.txt")
            assert r.status in (204, 403, 404), f"DELETE through {link}: {r}"
            r = env.raw("PUT", f"/vol-a/{link}/newdir/", body=b"")
            assert 400 <= r.status < 500, f"mkdir through {link}: {r}"
    assert (env.vol("vol-b") / "secret.txt").read_bytes() == b"vol-b secret"
    assert not (env.vol("vol-b") / "new.txt").exists()


def test_put_through_symlink_leaving_volume_fails(env, s3):
    with Unchanged(env):
        r = env.raw("PUT", "/vol-a/outlink/new.txt", body=b"evil")
        assert 400 <= r.status < 500 and r.code, r
        r = env.raw("PUT", "/vol-a/outlink/secret.txt", body=b"evil")
        assert 400 <= r.status < 500 and r.code, r
        r = env.raw("GET", "/vol-a/outlink/secret.txt")
        assert (r.status, r.code) == (404, "NoSuchKey"), r
        # a multipart upload through the link may start, but can never complete outside
        for key in ("outlink/mp.bin", "tob/mp.bin"):
            try:
                up = s3.create_multipart_upload(Bucket="vol-a", Key=key)
            except ClientError as e:
                assert 400 <= err_status(e) < 500, e
                continue
            etag = s3.upload_part(Bucket="vol-a", Key=key, UploadId=up["UploadId"], PartNumber=1,
                                  Body=b"evil" * 100)["ETag"]
            try:
                s3.complete_multipart_upload(Bucket="vol-a", Key=key, UploadId=up["UploadId"],
                                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
            except ClientError as e:
                assert 400 <= err_status(e) < 500, e
            else:
                raise AssertionError(f"multipart upload completed through the link {key}")
            try:
                s3.abort_multipart_upload(Bucket="vol-a", Key=key, UploadId=up["UploadId"])
            except ClientError as e:
                assert err_status(e) == 404, e  # already gone is fine


def test_put_over_file_symlink_does_not_write_through(env):
    a = env.vol("vol-a")
    os.symlink("../canary.txt", a / "canarylink2")
    canary = (env.root / "canary.txt").read_bytes()
    r = env.raw("PUT", "/vol-a/canarylink2", body=b"evil")
    # replacing the link by a regular file, or refusing, are both fine; writing through is not
    assert (env.root / "canary.txt").read_bytes() == canary, "PUT wrote through a symlink out of the volume"
    if r.status == 200:
        assert not (a / "canarylink2").is_symlink() and (a / "canarylink2").read_bytes() == b"evil"


def test_special_files_are_not_objects(env, s3):
    with Unchanged(env):
        for key in ("fifo", "fifodir/pipe", "sock"):
            t0 = time.monotonic()
            r = env.raw("GET", f"/vol-a/{key}", timeout=5)
            assert (r.status, r.code) == (404, "NoSuchKey"), f"GET {key}: {r}"
            r = env.raw("HEAD", f"/vol-a/{key}", timeout=5)
            assert r.status == 404
            r = env.raw("GET", f"/vol-a/{key}", headers={"range": "bytes=0-9"}, timeout=5)
            assert r.status == 404
            expect_client_error(s3.copy_object, 404, "NoSuchKey", Bucket="vol-a", Key="from-fifo",
                                CopySource={"Bucket": "vol-a", "Key": key})
            assert time.monotonic() - t0 < 5
    assert not (env.vol("vol-a") / "from-fifo").exists()


def test_wrong_credentials(env, prefix):
    with Unchanged(env):
        bad_secret = env.client(secret_key="not-the-secret")
        expect_client_error(bad_secret.list_objects_v2, 403, "SignatureDoesNotMatch", Bucket="vol-a")
        expect_client_error(bad_secret.put_object, 403, "SignatureDoesNotMatch", Bucket="vol-a",
                            Key=f"{prefix}/x", Body=b"x")
        expect_client_error(bad_secret.get_object, 403, "SignatureDoesNotMatch", Bucket="vol-a", Key="good.txt")
        bad_key = env.client(access_key="AKNOSUCHKEY00000")
        expect_client_error(bad_key.list_objects_v2, 403, "InvalidAccessKeyId", Bucket="vol-a")
        expect_client_error(bad_key.put_object, 403, "InvalidAccessKeyId", Bucket="vol-a", Key=f"{prefix}/x",
                            Body=b"x")
        # signed for one key, sent for another
        target, hdrs = build_signed(env, "GET", "/vol-a/good.txt")
        r = send_raw(env, "GET", "/vol-a/tob/secret.txt", hdrs, b"")
        assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
        # anonymous
        r = env.raw("GET", "/vol-a/good.txt", sign=False)
        assert (r.status, r.code) == (403, "AccessDenied"), r
        r = env.raw("PUT", f"/vol-a/{prefix}-anon", body=b"x", sign=False)
        assert r.status == 403, r


@pytest.fixture
def old_object(env, prefix):
    """A top-level key holding b"old" (so a failed write needs no new directory)."""
    key = f"{prefix}-obj"
    r = env.raw("PUT", f"/vol-a/{key}", body=b"old")
    assert r.status == 200, r
    return key


def assert_old(env, key):
    assert (env.vol("vol-a") / key).read_bytes() == b"old"
    r = env.raw("GET", f"/vol-a/{key}")
    assert r.status == 200 and r.body == b"old", r
    assert r.headers["etag"] == '"%s"' % hashlib.md5(b"old").hexdigest()


def test_payload_hash_mismatch(env, old_object, prefix):
    other = hashlib.sha256(b"other").hexdigest()
    with Unchanged(env):
        for key in (old_object, f"{prefix}-new"):
            r = env.raw("PUT", f"/vol-a/{key}", body=b"new content", payload_hash=other)
            assert r.status == 400 and r.code in ("XAmzContentSHA256Mismatch", "BadDigest"), r
    assert_old(env, old_object)
    r = env.raw("PUT", f"/vol-a/{prefix}-dir/sub/new", body=b"new content", payload_hash=other)
    assert r.status == 400 and r.code in ("XAmzContentSHA256Mismatch", "BadDigest"), r
    assert not (env.vol("vol-a") / f"{prefix}-dir").exists() or files_under(env.vol("vol-a") / f"{prefix}-dir") == []


def test_wrong_content_md5(env, old_object, prefix):
    wrong = b64(hashlib.md5(b"other").digest())
    with Unchanged(env):
        for key in (old_object, f"{prefix}-new"):
            r = env.raw("PUT", f"/vol-a/{key}", body=b"new content", headers={"content-md5": wrong})
            assert (r.status, r.code) == (400, "BadDigest"), r
    assert_old(env, old_object)
    r = env.raw("PUT", f"/vol-a/{old_object}", body=b"new content",
                headers={"content-md5": b64(hashlib.md5(b"new content").digest())})
    assert r.status == 200, r


CHECKSUM_HEADERS = {
    "crc32": crc32_b64,
    "crc32c": crc32c_b64,
    "sha1": sha1_b64,
    "sha256": sha256_b64,
}


@pytest.mark.parametrize("algo", list(CHECKSUM_HEADERS))
def test_checksum_header_verified(env, old_object, prefix, algo):
    fn = CHECKSUM_HEADERS[algo]
    body = b"checksummed body " + algo.encode()
    hname = f"x-amz-checksum-{algo}"
    with Unchanged(env):
        for key in (old_object, f"{prefix}-new"):
            r = env.raw("PUT", f"/vol-a/{key}", body=body,
                        headers={hname: fn(b"something else"), "x-amz-sdk-checksum-algorithm": algo.upper()})
            assert (r.status, r.code) == (400, "BadDigest"), r
    assert_old(env, old_object)
    r = env.raw("PUT", f"/vol-a/{old_object}", body=body,
                headers={hname: fn(body), "x-amz-sdk-checksum-algorithm": algo.upper()})
    assert r.status == 200, r
    assert r.headers.get(hname) == fn(body), r.headers
    r = env.raw("HEAD", f"/vol-a/{old_object}", headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.headers.get(hname) == fn(body), r.headers


def _put_unsigned_trailer(env, key, body, trailer_value):
    enc = aws_chunked_unsigned_trailer([body[:40000], body[40000:]], "x-amz-checksum-crc32", trailer_value)
    target, hdrs = build_signed(env, "PUT", f"/vol-a/{key}", payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                headers={"content-encoding": "aws-chunked",
                                         "x-amz-decoded-content-length": str(len(body)),
                                         "x-amz-trailer": "x-amz-checksum-crc32",
                                         "x-amz-sdk-checksum-algorithm": "CRC32"})
    hdrs["content-length"] = str(len(enc))
    return send_raw(env, "PUT", target, hdrs, enc)


def test_trailing_checksum_verified(env, old_object, prefix):
    body = data(70000, "trailer")
    with Unchanged(env):
        for key in (old_object, f"{prefix}-new"):
            r = _put_unsigned_trailer(env, key, body, crc32_b64(b"wrong"))
            assert (r.status, r.code) == (400, "BadDigest"), r
    assert_old(env, old_object)
    r = _put_unsigned_trailer(env, old_object, body, crc32_b64(body))
    assert r.status == 200, r
    assert (env.vol("vol-a") / old_object).read_bytes() == body
    r = env.raw("HEAD", f"/vol-a/{old_object}")
    assert "aws-chunked" not in r.headers.get("content-encoding", ""), r.headers


def _put_signed_chunks(env, key, chunks, tamper=False):
    total = sum(map(len, chunks))
    s = sign_v4("PUT", f"/vol-a/{key}", None,
                {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(total)},
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", f"{env.host}:{env.port}", ACCESS_KEY, SECRET_KEY,
                env.region)
    enc = aws_chunked_signed(chunks, s)
    if tamper:
        i = enc.index(b"\r\n") + 2 + 100  # a byte inside the first chunk's data
        enc = enc[:i] + bytes([enc[i] ^ 0xFF]) + enc[i + 1:]
    hdrs = dict(s.headers)
    hdrs["content-length"] = str(len(enc))
    return send_raw(env, "PUT", f"/vol-a/{key}", hdrs, enc)


def test_signed_chunks_verified(env, old_object, prefix):
    chunks = [data(65536, "c1"), data(65536, "c2"), data(1000, "c3")]
    with Unchanged(env):
        for key in (old_object, f"{prefix}-new"):
            r = _put_signed_chunks(env, key, chunks, tamper=True)
            assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    assert_old(env, old_object)
    r = _put_signed_chunks(env, old_object, chunks)
    assert r.status == 200, r
    assert (env.vol("vol-a") / old_object).read_bytes() == b"".join(chunks)
    assert r.headers["etag"] == '"%s"' % hashlib.md5(b"".join(chunks)).hexdigest()


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_put_cut_off_mid_stream(env, old_object, prefix, reset):
    vol = env.vol("vol-a")
    internal_before = internal_files(vol)
    before = tree_snapshot(env.root)
    put_cut_off(env, f"/vol-a/{old_object}", MiB, data(MiB // 2, "half"), linger_reset=reset)
    put_cut_off(env, f"/vol-a/{prefix}-new", MiB, data(MiB // 2, "half"), linger_reset=reset)
    # the daemon notices the broken stream; give it a moment to clean up
    leftover = lambda: {k: v for k, v in internal_files(vol).items() if k not in internal_before}  # noqa: E731
    wait_until(lambda: not leftover(), timeout=10)
    assert leftover() == {}, f"temp files left in the internal directory: {leftover()}"
    after = tree_snapshot(env.root)
    assert after == before, snapshot_diff(before, after)
    assert_old(env, old_object)
    r = env.raw("GET", f"/vol-a/{prefix}-new")
    assert (r.status, r.code) == (404, "NoSuchKey")
    # and the daemon still serves
    r = env.raw("PUT", f"/vol-a/{prefix}-after", body=b"fine")
    assert r.status == 200, r


@pytest.mark.parametrize("minutes,ok", [(-59, True), (59, True), (-61, False), (61, False)])
def test_clock_skew_window(env, minutes, ok):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
    r = env.raw("GET", "/vol-a/good.txt", when=when)
    if ok:
        assert r.status == 200 and r.body == b"good", f"{minutes} min skew refused: {r}"
    else:
        assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), f"{minutes} min skew: {r}"
    with Unchanged(env):
        r = env.raw("PUT", "/vol-a/skewed.txt", body=b"skew", when=when)
        if ok:
            assert r.status == 200, r
            # undo inside the snapshot window
            assert env.raw("DELETE", "/vol-a/skewed.txt").status == 204
        else:
            assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), r


def test_other_volume_and_bucket_traversal(env):
    with Unchanged(env):
        r = env.raw("GET", "/vol-b/../vol-a/good.txt")
        assert (r.status, r.code) == (400, "InvalidArgument"), r
        r = env.raw("GET", "/%2e%2e/canary.txt")
        assert 400 <= r.status < 500 and b"canary" not in r.body, r
        r = env.raw("GET", "/vol-a/vol-b/secret.txt")
        assert (r.status, r.code) == (404, "NoSuchKey"), r


def test_error_answers_keep_the_connection_usable(env, prefix):
    """An error answered before the body was read must not leave the body's bytes in
    the stream to be parsed as the next request on a kept-alive connection (the
    server may drain the body or close the connection after its answer)."""
    s3 = env.client()
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/file", Body=b"f")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/dir/x", Body=b"x")
    failing = [
        (f"/vol-a/{prefix}/file/below", 409),  # parent is a file
        (f"/vol-a/{prefix}/dir", 409),  # a directory
        ("/vol-a/../canary.txt", 400),  # invalid key
        (f"/vol-a/{prefix}/marker/", 400),  # a k/ marker with a body
        (f"/no-such-volume/{prefix}", 404),
    ]
    for size in (1, 1000):
        for path, status in failing:
            conn = connection(env)  # http.client reconnects by itself after `Connection: close`
            step = f"PUT {path} ({size} bytes)"
            try:
                for attempt in range(2):
                    step = f"PUT {path} ({size} bytes, #{attempt + 1})"
                    r = env.raw("PUT", path, body=data(size, path), conn=conn)
                    assert r.status == status, f"{step}: {r}"
                step = f"PUT after two failed PUT {path} ({size} bytes)"
                r = env.raw("PUT", f"/vol-a/{prefix}/after", body=b"after", conn=conn)
                assert r.status == 200, f"{step}: {r}"
                step = f"GET after the failed PUT {path} ({size} bytes)"
                r = env.raw("GET", "/vol-a/good.txt", conn=conn)
                assert (r.status, r.body) == (200, b"good"), f"{step}: {r}"
            except (ConnectionError, http.client.HTTPException) as e:
                raise AssertionError(f"{step}: the kept-alive connection broke ({e!r}); an error answered "
                                     "before the body was read must drain it or say `Connection: close`")
            finally:
                conn.close()


def test_errors_are_s3_xml_with_request_id_and_no_paths(env, prefix):
    cases = [
        ("GET", f"/vol-a/{prefix}/missing", 404, "NoSuchKey"),
        ("GET", "/no-such-volume/x", 404, "NoSuchBucket"),
        ("PUT", "/vol-a/../canary.txt", 400, "InvalidArgument"),
        ("GET", "/vol-a/etclink/passwd", 404, "NoSuchKey"),
        ("GET", "/vol-a/fifo", 404, "NoSuchKey"),
    ]
    for method, path, status, code in cases:
        r = env.raw(method, path, body=b"x" if method == "PUT" else b"")
        assert (r.status, r.code) == (status, code), f"{method} {path}: {r}"
        assert r.headers.get("x-amz-request-id"), f"{method} {path}: no x-amz-request-id"
        assert r.headers.get("content-type", "").startswith("application/xml"), r.headers
        text = r.body.decode("utf-8", "replace")
        for secret in (str(env.root), str(env.vol("vol-a")), "/etc/", SECRET_KEY):
            assert secret not in text, f"{method} {path} leaked {secret!r}: {text}"
    r = env.raw("GET", "/vol-a/good.txt")
    assert r.status == 200 and r.headers.get("x-amz-request-id")
