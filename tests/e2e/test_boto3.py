"""boto3 against s3vol, over http and https."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import time

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from helpers import (
    MD5_ETAG_RE, MULTIPART_ETAG_RE, MiB, crc32_b64, crc32c_b64, data, expect_client_error, files_equal,
    get_bytes, internal_files, list_all_keys, md5_etag, sha1_b64, sha256_b64,
)

TRICKY_KEYS = [
    "with space/file name.txt",
    "données/é ü.txt",
    "a+b#c%d?e.txt",
    "plus+plus/x+y.txt",
    "pct%20not-a-space.txt",
    "amp&eq=semi;.txt",
    "日本語/ファイル.bin",
    "back\\slash",
    "new\nline and\ttab",
    "xml\"<&>'chars",
    "emoji😀",
    "trailing space ",
    "trailing.dot.",
]


@pytest.fixture(scope="module")
def s3(server):
    return server.client()


def test_upload_file_download_file_small_and_multipart(server, s3, prefix, tmp_path):
    for name, size in (("small.bin", 1000), ("multi.bin", 20 * MiB + 123)):
        src = tmp_path / name
        src.write_bytes(data(size, name))
        key = f"{prefix}/{name}"
        s3.upload_file(str(src), "vol-a", key)
        on_disk = server.vol("vol-a") / key
        assert files_equal(on_disk, src)
        dst = tmp_path / f"down-{name}"
        s3.download_file("vol-a", key, str(dst))
        assert files_equal(dst, src)
        etag = s3.head_object(Bucket="vol-a", Key=key)["ETag"]
        if size > 8 * MiB:
            m = MULTIPART_ETAG_RE.match(etag)
            assert m and int(m.group(1)) == 3, etag
        else:
            assert etag == md5_etag(src.read_bytes())


def test_multipart_explicit_flow(server, s3, prefix):
    key = f"{prefix}/mp.bin"
    parts = [data(5 * MiB, "p1"), data(5 * MiB, "p2"), data(1234, "p3")]
    before = internal_files(server.vol("vol-a"))
    up = s3.create_multipart_upload(Bucket="vol-a", Key=key, ContentType="application/x-test",
                                    Metadata={"origin": "mp"})
    uid = up["UploadId"]
    etags = [s3.upload_part(Bucket="vol-a", Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
             for i, p in enumerate(parts)]
    assert etags == [md5_etag(p) for p in parts]
    assert not (server.vol("vol-a") / key).exists(), "object visible before Complete"

    expect_client_error(s3.complete_multipart_upload, 400, "InvalidPart", Bucket="vol-a", Key=key, UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    expect_client_error(s3.complete_multipart_upload, 400, "InvalidPartOrder", Bucket="vol-a", Key=key,
                        UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]},
                                                                 {"PartNumber": 1, "ETag": etags[0]}]})
    done = s3.complete_multipart_upload(
        Bucket="vol-a", Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    expected = '"%s-3"' % hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert done["ETag"] == expected
    assert (server.vol("vol-a") / key).read_bytes() == b"".join(parts)
    head = s3.head_object(Bucket="vol-a", Key=key)
    assert head["ETag"] == expected and head["ContentLength"] == sum(map(len, parts))
    assert head["ContentType"] == "application/x-test" and head["Metadata"] == {"origin": "mp"}

    # abort: the upload is gone and its staged bytes with it
    up2 = s3.create_multipart_upload(Bucket="vol-a", Key=f"{prefix}/aborted.bin")
    s3.upload_part(Bucket="vol-a", Key=f"{prefix}/aborted.bin", UploadId=up2["UploadId"], PartNumber=1,
                   Body=data(MiB, "ab"))
    s3.abort_multipart_upload(Bucket="vol-a", Key=f"{prefix}/aborted.bin", UploadId=up2["UploadId"])
    expect_client_error(s3.upload_part, 404, "NoSuchUpload", Bucket="vol-a", Key=f"{prefix}/aborted.bin",
                        UploadId=up2["UploadId"], PartNumber=2, Body=b"x")
    assert not (server.vol("vol-a") / prefix / "aborted.bin").exists()
    after = internal_files(server.vol("vol-a"))
    # Parts and manifests are gone; only the small completion records stay (a retried
    # Complete answers from them; the sweep removes them after a day).
    staged = {k: v for k, v in after.items() if not k.endswith("/done.json")}
    assert not [k for k in staged if k.startswith("multipart/")], f"staging left behind: {staged}"


def test_put_get_content_type_and_metadata(server, s3, prefix):
    key = f"{prefix}/meta.json"
    body = b'{"a": 1}'
    encoded = "=?UTF-8?B?%s?=" % base64.b64encode("données é ü 日本".encode()).decode()
    meta = {"plain": "value with spaces", "mixed-case-name": "X", "unicode": encoded}
    r = s3.put_object(Bucket="vol-a", Key=key, Body=body, ContentType="application/vnd.test+json",
                      Metadata=meta, CacheControl="max-age=60", ContentDisposition='attachment; filename="m.json"',
                      ContentLanguage="fr")
    assert r["ETag"] == md5_etag(body)
    g = s3.get_object(Bucket="vol-a", Key=key)
    assert g["Body"].read() == body
    assert g["ContentType"] == "application/vnd.test+json"
    assert g["Metadata"] == {"plain": "value with spaces", "mixed-case-name": "X", "unicode": encoded}
    assert g["CacheControl"] == "max-age=60"
    assert g["ContentDisposition"] == 'attachment; filename="m.json"'
    assert g["ContentLanguage"] == "fr"
    assert g["ETag"] == md5_etag(body)
    h = s3.head_object(Bucket="vol-a", Key=key)
    assert h["Metadata"] == g["Metadata"] and h["ContentLength"] == len(body)

    # overwrite replaces metadata wholesale
    s3.put_object(Bucket="vol-a", Key=key, Body=b"2", ContentType="text/x-two")
    h = s3.head_object(Bucket="vol-a", Key=key)
    assert h["Metadata"] == {} and h["ContentType"] == "text/x-two"

    # empty object
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/empty", Body=b"")
    assert get_bytes(s3, "vol-a", f"{prefix}/empty") == b""
    assert (server.vol("vol-a") / prefix / "empty").stat().st_size == 0


def test_tricky_keys_boto3(server, s3, prefix):
    for key in TRICKY_KEYS:
        full = f"{prefix}/{key}"
        s3.put_object(Bucket="vol-a", Key=full, Body=key.encode())
        assert (server.vol("vol-a") / full).read_bytes() == key.encode()
        assert get_bytes(s3, "vol-a", full) == key.encode()
        assert s3.head_object(Bucket="vol-a", Key=full)["ContentLength"] == len(key.encode())
    expected = sorted((f"{prefix}/{k}" for k in TRICKY_KEYS), key=lambda s: s.encode())
    assert list_all_keys(s3, "vol-a", f"{prefix}/") == expected
    v1 = s3.list_objects(Bucket="vol-a", Prefix=f"{prefix}/")
    assert [o["Key"] for o in v1["Contents"]] == expected
    # copy with a tricky source key (botocore url-encodes x-amz-copy-source)
    s3.copy_object(Bucket="vol-b", Key=f"{prefix}/copied ü+.txt",
                   CopySource={"Bucket": "vol-a", "Key": f"{prefix}/a+b#c%d?e.txt"})
    assert (server.vol("vol-b") / prefix / "copied ü+.txt").read_bytes() == b"a+b#c%d?e.txt"
    r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": k} for k in expected]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(expected) and not r.get("Errors")
    assert list_all_keys(s3, "vol-a", f"{prefix}/") == []


ORDER_KEYS = ["a!", "a-b", "a.txt", "a/b", "a/c/d", "a0", "a~", "aé", "b"]


def test_list_order_and_delimiter(s3, prefix):
    for k in ORDER_KEYS:
        s3.put_object(Bucket="vol-a", Key=f"{prefix}/{k}", Body=b"x")
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/")
    assert [o["Key"] for o in r["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS]
    for o in r["Contents"]:
        assert o["Size"] == 1 and o["ETag"] == md5_etag(b"x") and o["StorageClass"] == "STANDARD"
        assert isinstance(o["LastModified"], dt.datetime)
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == [f"{prefix}/a/"]
    assert [o["Key"] for o in r["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS if "/" not in k]
    # a prefix that is not a directory boundary
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/a.")
    assert [o["Key"] for o in r["Contents"]] == [f"{prefix}/a.txt"]
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/a", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == [f"{prefix}/a/"]
    assert [o["Key"] for o in r["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS
                                                 if "/" not in k and k.startswith("a")]
    # a prefix naming nothing
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/nothing/here/")
    assert r["KeyCount"] == 0 and "Contents" not in r
    # a different delimiter
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", Delimiter=".")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == [f"{prefix}/a."]
    assert f"{prefix}/a.txt" not in [o["Key"] for o in r["Contents"]]


def test_list_paging_continuation_and_start_after(s3, prefix):
    keys = [f"{prefix}/{k}" for k in ["k1", "k2", "k3/x", "k3/y", "k4", "k5/z/w", "k6"]]
    for k in keys:
        s3.put_object(Bucket="vol-a", Key=k, Body=b"p")
    seen, token, pages = [], None, 0
    while True:
        args = dict(Bucket="vol-a", Prefix=f"{prefix}/", MaxKeys=2)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        page = [o["Key"] for o in r.get("Contents", [])]
        assert len(page) <= 2 and r["KeyCount"] == len(page) and r["MaxKeys"] == 2
        seen += page
        pages += 1
        assert pages < 20, "continuation never ends"
        if not r["IsTruncated"]:
            break
        assert r["NextContinuationToken"] and r["NextContinuationToken"] != token
        token = r["NextContinuationToken"]
    assert seen == keys, "paging repeated, lost or reordered keys"
    assert len(set(seen)) == len(seen)

    # with a delimiter, prefixes and keys page together
    seen, token = [], None
    while True:
        args = dict(Bucket="vol-a", Prefix=f"{prefix}/", Delimiter="/", MaxKeys=2)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        entries = [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert len(entries) <= 2
        seen += entries
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert sorted(seen) == sorted(f"{prefix}/{k}" for k in ["k1", "k2", "k3/", "k4", "k5/", "k6"])
    assert len(set(seen)) == len(seen)

    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", StartAfter=f"{prefix}/k3/x")
    assert [o["Key"] for o in r["Contents"]] == keys[3:]
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", StartAfter=f"{prefix}/k3")
    assert [o["Key"] for o in r["Contents"]] == keys[2:]

    # v1 Marker paging
    seen, marker = [], ""
    while True:
        r = s3.list_objects(Bucket="vol-a", Prefix=f"{prefix}/", MaxKeys=3, Marker=marker)
        page = [o["Key"] for o in r.get("Contents", [])]
        seen += page
        if not r["IsTruncated"]:
            break
        marker = r.get("NextMarker") or page[-1]
    assert seen == keys

    expect_client_error(s3.list_objects_v2, 400, "InvalidArgument", Bucket="vol-a", MaxKeys=-1)
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", MaxKeys=100000)
    assert len(r["Contents"]) == len(keys) and not r["IsTruncated"]


def test_delete_objects_and_quiet(server, s3, prefix):
    keys = [f"{prefix}/d{i}" for i in range(5)] + [f"{prefix}/sub/d5"]
    for k in keys:
        s3.put_object(Bucket="vol-a", Key=k, Body=b"d")
    r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": k} for k in keys[:3]] +
                                                  [{"Key": f"{prefix}/never-existed"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(keys[:3] + [f"{prefix}/never-existed"])
    assert not r.get("Errors")
    r = s3.delete_objects(Bucket="vol-a", Delete={"Objects": [{"Key": k} for k in keys[3:]], "Quiet": True})
    assert not r.get("Deleted") and not r.get("Errors")
    assert list_all_keys(s3, "vol-a", f"{prefix}/") == []
    assert not (server.vol("vol-a") / prefix).exists()
    expect_client_error(s3.delete_objects, 400, "MalformedXML", Bucket="vol-a",
                        Delete={"Objects": [{"Key": f"{prefix}/k{i}"} for i in range(1001)]})
    s3.delete_object(Bucket="vol-a", Key=f"{prefix}/missing")  # S3: 204 for a missing key


def test_copy_object(server, s3, prefix):
    src = f"{prefix}/src.txt"
    body = b"copy me" * 100
    s3.put_object(Bucket="vol-a", Key=src, Body=body, ContentType="text/x-src", Metadata={"m": "1"})
    cs = {"Bucket": "vol-a", "Key": src}

    r = s3.copy_object(Bucket="vol-a", Key=f"{prefix}/dst/copy.txt", CopySource=cs)
    assert r["CopyObjectResult"]["ETag"] == md5_etag(body)
    h = s3.head_object(Bucket="vol-a", Key=f"{prefix}/dst/copy.txt")
    assert h["ContentType"] == "text/x-src" and h["Metadata"] == {"m": "1"} and h["ETag"] == md5_etag(body)
    assert (server.vol("vol-a") / prefix / "dst/copy.txt").read_bytes() == body

    s3.copy_object(Bucket="vol-b", Key=f"{prefix}/across.txt", CopySource=cs)
    assert (server.vol("vol-b") / prefix / "across.txt").read_bytes() == body
    assert get_bytes(s3, "vol-b", f"{prefix}/across.txt") == body
    assert s3.head_object(Bucket="vol-b", Key=f"{prefix}/across.txt")["Metadata"] == {"m": "1"}

    s3.copy_object(Bucket="vol-b", Key=f"{prefix}/replaced.txt", CopySource=cs, MetadataDirective="REPLACE",
                   ContentType="text/x-new", Metadata={"n": "2"})
    h = s3.head_object(Bucket="vol-b", Key=f"{prefix}/replaced.txt")
    assert h["ContentType"] == "text/x-new" and h["Metadata"] == {"n": "2"}

    e = expect_client_error(s3.copy_object, 400, "InvalidRequest", Bucket="vol-a", Key=src, CopySource=cs)
    assert e
    assert s3.head_object(Bucket="vol-a", Key=src)["Metadata"] == {"m": "1"}

    s3.copy_object(Bucket="vol-a", Key=src, CopySource=cs, MetadataDirective="REPLACE",
                   ContentType="text/x-self", Metadata={"self": "yes"})
    h = s3.head_object(Bucket="vol-a", Key=src)
    assert h["Metadata"] == {"self": "yes"} and h["ContentType"] == "text/x-self"
    assert get_bytes(s3, "vol-a", src) == body and h["ETag"] == md5_etag(body)

    expect_client_error(s3.copy_object, 412, "PreconditionFailed", Bucket="vol-a", Key=f"{prefix}/c2",
                        CopySource=cs, CopySourceIfMatch='"0000"')
    expect_client_error(s3.copy_object, 412, "PreconditionFailed", Bucket="vol-a", Key=f"{prefix}/c3",
                        CopySource=cs, CopySourceIfNoneMatch=md5_etag(body))
    assert not (server.vol("vol-a") / prefix / "c2").exists()
    expect_client_error(s3.copy_object, 404, "NoSuchKey", Bucket="vol-a", Key=f"{prefix}/c4",
                        CopySource={"Bucket": "vol-a", "Key": f"{prefix}/missing"})
    expect_client_error(s3.copy_object, 404, "NoSuchBucket", Bucket="vol-a", Key=f"{prefix}/c5",
                        CopySource={"Bucket": "no-such-volume", "Key": "x"})


def test_conditional_get_boto3(s3, prefix):
    key = f"{prefix}/cond"
    s3.put_object(Bucket="vol-a", Key=key, Body=b"conditional")
    h = s3.head_object(Bucket="vol-a", Key=key)
    etag, lm = h["ETag"], h["LastModified"]
    time.sleep(1.5)  # so that lm + 1s lies in the past (servers ignore future dates)
    expect_client_error(s3.get_object, 304, (), Bucket="vol-a", Key=key, IfNoneMatch=etag)
    expect_client_error(s3.get_object, 412, "PreconditionFailed", Bucket="vol-a", Key=key, IfMatch='"abc"')
    expect_client_error(s3.head_object, 412, (), Bucket="vol-a", Key=key, IfMatch='"abc"')
    expect_client_error(s3.get_object, 304, (), Bucket="vol-a", Key=key,
                        IfModifiedSince=lm + dt.timedelta(seconds=1))
    assert get_bytes(s3, "vol-a", key, IfModifiedSince=lm - dt.timedelta(days=1)) == b"conditional"
    expect_client_error(s3.get_object, 412, "PreconditionFailed", Bucket="vol-a", Key=key,
                        IfUnmodifiedSince=lm - dt.timedelta(days=1))
    assert get_bytes(s3, "vol-a", key, IfUnmodifiedSince=lm + dt.timedelta(seconds=1)) == b"conditional"
    assert get_bytes(s3, "vol-a", key, IfMatch=etag) == b"conditional"
    r = s3.get_object(Bucket="vol-a", Key=key, Range="bytes=-3")
    assert r["Body"].read() == b"nal" and r["ContentRange"] == "bytes 8-10/11"
    for rng, body, content_range in (("bytes=0-0", b"c", "bytes 0-0/11"), ("bytes=5-100", b"tional", "bytes 5-10/11"),
                                     ("bytes=-100", b"conditional", "bytes 0-10/11"), ("bytes=10-", b"l", "bytes 10-10/11")):
        r = s3.get_object(Bucket="vol-a", Key=key, Range=rng)
        assert (r["Body"].read(), r["ContentRange"]) == (body, content_range), rng
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    expect_client_error(s3.get_object, 416, "InvalidRange", Bucket="vol-a", Key=key, Range="bytes=11-")


CHECKSUMS = {
    "CRC32": ("ChecksumCRC32", crc32_b64),
    "SHA256": ("ChecksumSHA256", sha256_b64),
    "SHA1": ("ChecksumSHA1", sha1_b64),
    "CRC32C": ("ChecksumCRC32C", crc32c_b64),
}


def test_default_checksum_settings(server, prefix):
    s3 = server.client()  # botocore defaults: request_checksum_calculation=when_supported (CRC32)
    sent = []
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **kw: sent.append({k.lower(): v for k, v in request.headers.items()}))
    body = data(300_000, "dflt")
    key = f"{prefix}/default.bin"
    s3.put_object(Bucket="vol-a", Key=key, Body=body)
    payload = sent[-1].get("x-amz-content-sha256", b"")
    payload = payload.decode() if isinstance(payload, bytes) else payload
    if server.scheme == "https":  # the case this variant exists for
        assert payload == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", sent[-1]
    assert (server.vol("vol-a") / key).read_bytes() == body
    assert get_bytes(s3, "vol-a", key) == body
    h = s3.head_object(Bucket="vol-a", Key=key, ChecksumMode="ENABLED")
    assert h.get("ChecksumCRC32") == crc32_b64(body), h
    g = s3.get_object(Bucket="vol-a", Key=key, ChecksumMode="ENABLED")  # botocore validates the body
    assert g["Body"].read() == body


@pytest.mark.parametrize("algo", ["SHA256", "CRC32C", "SHA1", "CRC32"])
def test_explicit_checksum_algorithm(server, s3, prefix, algo):
    if algo == "CRC32C":
        pytest.importorskip("awscrt", reason="botocore needs awscrt for CRC32C (pip install awscrt)")
    field, fn = CHECKSUMS[algo]
    body = data(200_000, algo)
    key = f"{prefix}/{algo}.bin"
    r = s3.put_object(Bucket="vol-a", Key=key, Body=body, ChecksumAlgorithm=algo)
    assert r.get(field) == fn(body), r
    assert (server.vol("vol-a") / key).read_bytes() == body
    h = s3.head_object(Bucket="vol-a", Key=key, ChecksumMode="ENABLED")
    assert h.get(field) == fn(body), h
    assert get_bytes(s3, "vol-a", key, ChecksumMode="ENABLED") == body


def test_upload_file_with_sha256_multipart(server, s3, prefix, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(data(9 * MiB, "sha-mp"))
    s3.upload_file(str(src), "vol-a", f"{prefix}/f.bin", ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                   Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert files_equal(server.vol("vol-a") / prefix / "f.bin", src)


def tamper_signature(url: str) -> str:
    for name in ("X-Amz-Signature=", "Signature="):
        i = url.find(name)
        if i >= 0:
            j = i + len(name)
            return url[:j] + ("1" if url[j] != "1" else "2") + url[j + 1:]
    raise AssertionError(f"no signature in {url}")


@pytest.mark.parametrize("sig", ["default", "s3v4"])
def test_presigned_get_put(server, prefix, sig):
    cfg = {} if sig == "default" else {"signature_version": "s3v4"}
    s3 = server.client(**cfg)
    for key in (f"{prefix}/pre.txt", f"{prefix}/pre sign+ü#x.txt"):
        body = f"presigned {sig} {key}".encode()
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "vol-a", "Key": key}, ExpiresIn=300)
        r = requests.put(url, data=body, verify=server.verify, timeout=30)
        assert r.status_code == 200, (url, r.status_code, r.text)
        assert (server.vol("vol-a") / key).read_bytes() == body
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": key}, ExpiresIn=300)
        r = requests.get(url, verify=server.verify, timeout=30)
        assert r.status_code == 200, (url, r.status_code, r.text)
        assert r.content == body
        assert r.headers["ETag"] == md5_etag(body)
    # a tampered signature (same length, one character changed) is refused
    bad = tamper_signature(url)
    r = requests.get(bad, verify=server.verify, timeout=30)
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text

    # expiry
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": f"{prefix}/pre.txt"},
                                        ExpiresIn=1)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "vol-a", "Key": f"{prefix}/late.txt"},
                                        ExpiresIn=1)
    time.sleep(2.5)
    r = requests.get(get_url, verify=server.verify, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    assert "AccessDenied" in r.text or "Expired" in r.text, r.text
    r = requests.put(put_url, data=b"late", verify=server.verify, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    assert not (server.vol("vol-a") / prefix / "late.txt").exists()


def test_sigv2_presigned_explicit(server, prefix):
    s3 = server.client(signature_version="s3")
    key = f"{prefix}/v2 ü+.txt"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "vol-a", "Key": key}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url
    r = requests.put(url, data=b"sigv2", verify=server.verify, timeout=30)
    assert r.status_code == 200, r.text
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": key}, ExpiresIn=300)
    r = requests.get(url, verify=server.verify, timeout=30)
    assert r.status_code == 200 and r.content == b"sigv2", r.text


def test_unsigned_payload(server, prefix):
    s3 = server.client(s3={"addressing_style": "path", "payload_signing_enabled": False},
                       request_checksum_calculation="when_required")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/u", Body=b"unsigned payload")
    assert (server.vol("vol-a") / prefix / "u").read_bytes() == b"unsigned payload"
    r = server.raw("PUT", f"/vol-a/{prefix}/raw-unsigned", body=b"raw unsigned", payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200, r
    assert (server.vol("vol-a") / prefix / "raw-unsigned").read_bytes() == b"raw unsigned"


def test_signed_payload_and_when_required_checksums(server, prefix):
    s3 = server.client(s3={"addressing_style": "path", "payload_signing_enabled": True},
                       request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")
    body = data(70_000, "signed")
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/s", Body=body)
    assert (server.vol("vol-a") / prefix / "s").read_bytes() == body
    assert get_bytes(s3, "vol-a", f"{prefix}/s") == body


def test_empty_file_upload_does_not_stall_the_next_request(server, prefix):
    """Regression: `aws s3 sync`/`cp` of a tree with an empty file stalled for the
    read timeout. botocore sends `Expect: 100-continue` with every file-like body,
    also an empty one; answered without a `100 Continue`, botocore keeps the final
    status line for the connection and misparses the next response on it."""
    s3 = server.client(max_pool_connections=1, read_timeout=15)
    t0 = time.monotonic()
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/empty", Body=io.BytesIO(b""))
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/next", Body=io.BytesIO(b"next"))
    s3.put_object(Bucket="vol-a", Key=f"{prefix}/third", Body=b"third")
    elapsed = time.monotonic() - t0
    assert elapsed < 3, f"three small PUTs on one connection took {elapsed:.1f}s"
    assert (server.vol("vol-a") / prefix / "next").read_bytes() == b"next"
    assert (server.vol("vol-a") / prefix / "empty").read_bytes() == b""
