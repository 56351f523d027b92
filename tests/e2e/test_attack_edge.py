"""The attack suite for the edge (issue 12): requests that are not really authenticated,
memory and connection exhaustion, and secrets in logs. Each test is named after the
attack, drives the real daemon over raw sockets or real clients, and asserts what a user
relies on: the status and code, that nothing changed on disk inside or outside the
volumes, and, for the memory attacks, the daemon's peak RSS read from /proc.

The volume-boundary attacks (a hostile pod's symlinks) are in test_attack_boundary.py and
the limits-on-bytes attacks in test_attack_limits.py."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from helpers import (
    ACCESS_KEY, EMPTY_SHA256, READER_ACCESS_KEY, READER_SECRET_KEY, SECRET_KEY, build_signed, send_raw,
    sign_v4, signing_key, snapshot_diff, start_daemon, stop_daemon, tree_snapshot, uri_encode, xml_find_all,
)

MiB = 1 << 20


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("attack-edge"))
    (daemon.vol("vol-a") / "a.txt").write_bytes(b"vol-a data")
    (daemon.vol("vol-b") / "b.txt").write_bytes(b"vol-b secret")
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


class Unchanged:
    """Nothing under the daemon's root (both volumes, the canary, the outside directory)
    changes inside the block, internal directories included."""

    def __init__(self, d):
        self.d = d

    def __enter__(self):
        self.before = tree_snapshot(self.d.root, include_internal=True)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            after = tree_snapshot(self.d.root, include_internal=True)
            assert after == self.before, "the file tree changed:\n" + snapshot_diff(self.before, after)
        return False


def peak_rss_reset(pid: int) -> None:
    """Resets the process's peak RSS (VmHWM) so the next reading covers only what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def host(d) -> str:
    return f"{d.host}:{d.port}"


def presign_v4(d, method: str, path: str, *, expires: int = 300, key=(ACCESS_KEY, SECRET_KEY),
               region: str | None = None, signed_extra: dict | None = None) -> list[tuple[str, str]]:
    """The query of a SigV4 presigned URL (decoded names and values, in order)."""
    region = region or d.region
    now = dt.datetime.now(dt.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz[:8]}/{region}/s3/aws4_request"
    headers = {"host": host(d), **(signed_extra or {})}
    names = sorted(headers)
    q = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{key[0]}/{scope}"),
         ("X-Amz-Date", amz), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", ";".join(names))]
    cq = "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in sorted(q))
    ch = "".join(f"{n}:{headers[n]}\n" for n in names)
    creq = "\n".join([method, path, cq, ch, ";".join(names), "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(key[1], amz[:8], region), sts.encode(), hashlib.sha256).hexdigest()
    return q + [("X-Amz-Signature", sig)]


def encode_query(q) -> str:
    return "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in q)


def sign_v2(method: str, path: str, headers: dict, secret: str) -> str:
    """The SigV2 header signature (Date, or x-amz-date in its place, and x-amz-* signed)."""
    amz = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-amz-"))
    date = "" if "x-amz-date" in {k for k, _ in amz} else headers.get("date", "")
    sts = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""), date]) + "\n"
    sts += "".join(f"{k}:{v}\n" for k, v in amz) + path
    return base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode()


def post_form(fields: list[tuple[str, str]], file_body: bytes, boundary: str = "s3volboundary") -> bytes:
    out = []
    for k, v in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n".encode())
    out.append(file_body)
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)


def signed_post_fields(d, bucket: str, key_name: str, *, access=(ACCESS_KEY, SECRET_KEY),
                       conditions_extra=(), max_len: int = 100 * MiB) -> list[tuple[str, str]]:
    """The fields of a SigV4-signed browser form upload (a policy for `key_name`)."""
    now = dt.datetime.now(dt.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    cred = f"{access[0]}/{amz[:8]}/{d.region}/s3/aws4_request"
    policy = {
        "expiration": (now + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [{"bucket": bucket}, ["starts-with", "$key", key_name.split("/")[0]],
                       {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": cred},
                       {"x-amz-date": amz}, ["content-length-range", 0, max_len], *conditions_extra],
    }
    p64 = base64.b64encode(json.dumps(policy).encode()).decode()
    sig = hmac.new(signing_key(access[1], amz[:8], d.region), p64.encode(), hashlib.sha256).hexdigest()
    return [("key", key_name), ("x-amz-algorithm", "AWS4-HMAC-SHA256"), ("x-amz-credential", cred),
            ("x-amz-date", amz), ("policy", p64), ("x-amz-signature", sig)]


def send_form(d, bucket: str, body: bytes, boundary: str = "s3volboundary", timeout: float = 30):
    hdrs = {"host": host(d), "content-type": f"multipart/form-data; boundary={boundary}"}
    return send_raw(d, "POST", f"/{bucket}", hdrs, body, timeout=timeout)


# ------------------------------------------------------------- 1. authorization fails closed


def test_read_only_key_cannot_write_with_a_browser_form_upload(d, prefix):
    """PostObject used to pass the access table (no permission listed = allowed)."""
    fields = signed_post_fields(d, "vol-a", f"{prefix}/f.bin", access=(READER_ACCESS_KEY, READER_SECRET_KEY))
    with Unchanged(d):
        r = send_form(d, "vol-a", post_form(fields, b"written by a reader"))
        assert (r.status, r.code) == (403, "AccessDenied"), r
    assert not (d.vol("vol-a") / prefix).exists()


def test_anonymous_form_upload_is_denied(d, prefix):
    with Unchanged(d):
        r = send_form(d, "vol-a", post_form([("key", f"{prefix}/anon.bin")], b"anonymous"))
        assert (r.status, r.code) == (403, "AccessDenied"), r


def test_form_upload_with_write_key_stores_the_file_and_obeys_its_policy(d, prefix):
    fields = signed_post_fields(d, "vol-a", f"{prefix}/ok.bin")
    r = send_form(d, "vol-a", post_form(fields, b"form bytes"))
    assert r.status in (200, 204), r
    assert (d.vol("vol-a") / prefix / "ok.bin").read_bytes() == b"form bytes"
    # The policy allows keys starting with the prefix only; another key is refused.
    fields = [(k, "other/evil.bin" if k == "key" else v) for k, v in signed_post_fields(d, "vol-a", f"{prefix}/x")]
    with Unchanged(d):
        r = send_form(d, "vol-a", post_form(fields, b"evil"))
        assert r.status in (400, 403) and r.code in ("AccessDenied", "InvalidPolicyDocument"), r
    # The policy's size range counts the bytes sent.
    fields = signed_post_fields(d, "vol-a", f"{prefix}/big.bin", max_len=10)
    with Unchanged(d):
        r = send_form(d, "vol-a", post_form(fields, b"x" * 100))
        assert r.status in (400, 403), r


@pytest.mark.parametrize("method,query,op", [
    ("PUT", [("tagging", "")], "PutBucketTagging"),
    ("PUT", [("policy", "")], "PutBucketPolicy"),
    ("DELETE", [("cors", "")], "DeleteBucketCors"),
    ("PUT", [("lifecycle", "")], "PutBucketLifecycleConfiguration"),
])
def test_read_only_key_gets_access_denied_for_every_bucket_write(d, method, query, op):
    body = b"<x/>"
    with Unchanged(d):
        r = d.raw(method, "/vol-a", query=query, body=body, access_key=READER_ACCESS_KEY,
                  secret_key=READER_SECRET_KEY)
        assert (r.status, r.code) == (403, "AccessDenied"), (op, r)


# --------------------------------------------------------------------- 2. signed means signed


def test_unsigned_copy_source_added_to_a_captured_put_is_refused(d, prefix):
    """A captured signed PUT, replayed with an unsigned x-amz-copy-source, used to copy a
    file of another volume into the target."""
    target, hdrs = build_signed(d, "PUT", f"/vol-a/{prefix}-stolen", body=b"")
    hdrs["x-amz-copy-source"] = "/vol-b/b.txt"
    with Unchanged(d):
        r = send_raw(d, "PUT", target, hdrs, b"")
        assert (r.status, r.code) == (403, "AccessDenied"), r
        assert b"There were headers present in the request which were not signed" in r.body
        assert xml_find_all(r.body, "HeadersNotSigned") == ["x-amz-copy-source"]


@pytest.mark.parametrize("header,value", [
    ("x-amz-meta-owner", "mallory"),
    ("x-amz-decoded-content-length", "1"),
    ("x-amz-checksum-crc32", "AAAAAA=="),
])
def test_any_unsigned_amz_header_is_refused(d, prefix, header, value):
    target, hdrs = build_signed(d, "PUT", f"/vol-a/{prefix}-h", body=b"data")
    hdrs[header] = value
    with Unchanged(d):
        r = send_raw(d, "PUT", target, hdrs, b"data")
        assert (r.status, r.code) == (403, "AccessDenied"), r


def test_unsigned_amz_header_on_a_presigned_url_is_refused(d, prefix):
    q = presign_v4(d, "PUT", f"/vol-a/{prefix}-p")
    target = f"/vol-a/{prefix}-p?{encode_query(q)}"
    with Unchanged(d):
        r = send_raw(d, "PUT", target, {"host": host(d), "x-amz-copy-source": "/vol-b/b.txt"}, b"")
        assert (r.status, r.code) == (403, "AccessDenied"), r
    # The same URL without the extra header works.
    r = send_raw(d, "PUT", target, {"host": host(d)}, b"presigned")
    assert r.status == 200, r
    assert (d.vol("vol-a") / f"{prefix}-p").read_bytes() == b"presigned"


def test_signed_amz_headers_and_unsigned_content_sha256_pass(d, prefix):
    """What clients send: every x-amz-* signed; x-amz-content-sha256 is covered by the
    canonical request whether listed or not (S3 accepts it unlisted too)."""
    s = sign_v4("PUT", f"/vol-a/{prefix}-ok", None, {"x-amz-meta-a": "1"}, EMPTY_SHA256, host(d),
                ACCESS_KEY, SECRET_KEY, d.region)
    hdrs = dict(s.headers)
    names = [n for n in hdrs["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")]
    assert "x-amz-content-sha256" in names
    r = send_raw(d, "PUT", f"/vol-a/{prefix}-ok", hdrs, b"")
    assert r.status == 200, r
    # Changing the unlisted-or-not payload hash breaks the signature.
    hdrs["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    r = send_raw(d, "PUT", f"/vol-a/{prefix}-ok2", hdrs, b"")
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r


def test_captured_sigv2_request_replayed_after_the_window_is_refused(d, prefix):
    old = formatdate(time.time() - 2 * 3600, usegmt=True)
    path = f"/vol-a/{prefix}-v2"
    hdrs = {"date": old, "content-type": "application/octet-stream"}
    hdrs["authorization"] = f"AWS {ACCESS_KEY}:{sign_v2('PUT', path, hdrs, SECRET_KEY)}"
    with Unchanged(d):
        r = send_raw(d, "PUT", path, {"host": host(d), **hdrs}, b"any body at all")
        assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), r
    # A fresh SigV2 request works, also with x-amz-date in place of Date.
    for dated in ({"date": formatdate(usegmt=True)}, {"x-amz-date": formatdate(usegmt=True)}):
        hdrs = {**dated, "content-type": "application/octet-stream"}
        hdrs["authorization"] = f"AWS {ACCESS_KEY}:{sign_v2('PUT', path, hdrs, SECRET_KEY)}"
        r = send_raw(d, "PUT", path, {"host": host(d), **hdrs}, b"v2 body")
        assert r.status == 200, (dated, r)
    # A stale x-amz-date cannot hide behind a fresh Date: x-amz-date is the one signed.
    hdrs = {"date": formatdate(usegmt=True), "x-amz-date": old}
    hdrs["authorization"] = f"AWS {ACCESS_KEY}:{sign_v2('GET', path, hdrs, SECRET_KEY)}"
    r = send_raw(d, "GET", path, {"host": host(d), **hdrs}, b"")
    assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), r


def test_sigv2_switched_off_refuses_header_and_presigned(tmp_path):
    d2 = start_daemon(tmp_path, extra_config="sigv2 = false")
    try:
        path = "/vol-a/x"
        hdrs = {"date": formatdate(usegmt=True)}
        hdrs["authorization"] = f"AWS {ACCESS_KEY}:{sign_v2('GET', path, hdrs, SECRET_KEY)}"
        r = send_raw(d2, "GET", path, {"host": host(d2), **hdrs}, b"")
        assert (r.status, r.code) == (400, "InvalidRequest"), r
        s3 = d2.client(signature_version="s3")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": "x"})
        assert "Signature=" in url
        r = send_raw(d2, "GET", url.split(host(d2), 1)[1], {"host": host(d2)}, b"")
        assert (r.status, r.code) == (400, "InvalidRequest"), r
        # SigV4 still works.
        assert d2.raw("PUT", "/vol-a/v4", body=b"ok").status == 200
    finally:
        stop_daemon(d2)


def test_percent_encoded_expires_cannot_bypass_the_presign_cap(d):
    """s3s decodes parameter names; the cap used to look for the literal `X-Amz-Expires=`."""
    q = presign_v4(d, "GET", "/vol-a/a.txt", expires=30 * 86400)
    raw_query = encode_query(q).replace("X-Amz-Expires=", "X-Amz-%45xpires=")
    r = send_raw(d, "GET", f"/vol-a/a.txt?{raw_query}", {"host": host(d)}, b"")
    assert (r.status, r.code) == (400, "AuthorizationQueryParametersError"), r
    ok = presign_v4(d, "GET", "/vol-a/a.txt", expires=600)
    r = send_raw(d, "GET", "/vol-a/a.txt?" + encode_query(ok).replace("X-Amz-Expires=", "X-Amz-%45xpires="),
                 {"host": host(d)}, b"")
    assert (r.status, r.body) == (200, b"vol-a data"), r


def test_decoy_authorization_header_beside_a_presigned_url_is_refused(d):
    q = presign_v4(d, "GET", "/vol-a/a.txt", expires=30 * 86400)
    _, signed = build_signed(d, "GET", "/vol-a/a.txt")
    r = send_raw(d, "GET", f"/vol-a/a.txt?{encode_query(q)}",
                 {"host": host(d), "authorization": signed["authorization"]}, b"")
    assert (r.status, r.code) == (400, "InvalidArgument"), r
    assert b"Only one auth mechanism allowed" in r.body


def test_auth_parameter_given_twice_is_refused(d):
    q = presign_v4(d, "GET", "/vol-a/a.txt")
    r = send_raw(d, "GET", f"/vol-a/a.txt?{encode_query(q)}&X-Amz-Expires=999999999", {"host": host(d)}, b"")
    assert (r.status, r.code) == (400, "AuthorizationQueryParametersError"), r


def test_strict_region_reads_the_region_that_was_signed(tmp_path):
    d2 = start_daemon(tmp_path, region="eu-ro-1", extra_config="strict_region = true")
    try:
        # A presigned URL for another region, its name percent-encoded: still refused.
        q = presign_v4(d2, "GET", "/vol-a/x", region="us-west-2")
        raw_query = encode_query(q).replace("X-Amz-Credential=", "X-Amz-%43redential=")
        r = send_raw(d2, "GET", f"/vol-a/x?{raw_query}", {"host": host(d2)}, b"")
        assert (r.status, r.code) == (400, "AuthorizationHeaderMalformed"), r
    finally:
        stop_daemon(d2)


@pytest.mark.parametrize("header", ["content-md5", "x-amz-checksum-crc32", "x-amz-checksum-sha256"])
def test_empty_digest_header_is_invalid_digest(d, prefix, header):
    with Unchanged(d):
        r = d.raw("PUT", f"/vol-a/{prefix}-dig", body=b"data", headers={header: ""})
        assert (r.status, r.code) == (400, "InvalidDigest"), r


def test_request_signed_for_another_service_is_refused(d, prefix):
    now = dt.datetime.now(dt.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    s = sign_v4("GET", "/vol-a/a.txt", None, {}, EMPTY_SHA256, host(d), ACCESS_KEY, SECRET_KEY, d.region, now)
    hdrs = dict(s.headers)
    hdrs["authorization"] = hdrs["authorization"].replace("/s3/aws4_request", "/sts/aws4_request")
    r = send_raw(d, "GET", "/vol-a/a.txt", hdrs, b"")
    assert r.status in (400, 403) and r.code == "AuthorizationHeaderMalformed", r
    assert amz  # the date was current: the refusal is the service, not the clock


# ------------------------------------------------------------------------ 3. memory bounds


def _raw_socket(d) -> socket.socket:
    return socket.create_connection((d.host, d.port), timeout=30)


def _chunked_head(d, path: str, decoded: int) -> tuple[bytes, object]:
    s = sign_v4("PUT", path, None, {"x-amz-decoded-content-length": str(decoded),
                                    "content-encoding": "aws-chunked"},
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", host(d), ACCESS_KEY, SECRET_KEY, d.region)
    hdrs = dict(s.headers)
    hdrs["transfer-encoding"] = "chunked"
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode(), s


def _http_chunk(b: bytes) -> bytes:
    return b"%x\r\n" % len(b) + b + b"\r\n"


def _read_response(sock: socket.socket, limit: float = 30) -> tuple[int, bytes]:
    sock.settimeout(limit)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head else 0
        end = time.monotonic() + 2
        while time.monotonic() < end:
            sock.settimeout(0.5)
            try:
                got = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not got:
                break
            rest += got
            if b"</Error>" in rest:
                break
        return status, rest
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        return 0, data


def _form_flood(d, content_type: str, key_prefix: str, *, clients: int, mib_each: int) -> list:
    """`clients` anonymous form uploads at once, each with no length (chunked) and a file
    part of `mib_each` MiB sent as fast as the server reads it: each client's
    `_read_response` result (status, body), 0 when the server closed without one."""
    results = []

    def attack(i):
        sock = _raw_socket(d)
        try:
            head = f"POST /vol-a HTTP/1.1\r\nhost: {host(d)}\r\n".encode()
            head += f"content-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
            sock.sendall(head)
            sock.sendall(_http_chunk(b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\n'
                                     + f"{key_prefix}-{i}".encode() + b'\r\n--b\r\nContent-Disposition: form-data;'
                                     b' name="file"; filename="x"\r\n\r\n'))
            try:
                for _ in range(mib_each):
                    sock.sendall(_http_chunk(b"\0" * MiB))
            except OSError:
                pass
            results.append(_read_response(sock))
        finally:
            sock.close()

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_huge_aws_chunk_declarations_are_refused_before_their_bytes_are_read(d, prefix):
    """A signed aws-chunked upload declaring a 4 GiB chunk used to make s3s buffer it whole;
    16 at once could hold gigabytes."""
    pid = d.proc.pid
    peak_rss_reset(pid)
    base = rss_mib(pid, "VmRSS")
    results = []

    def attack(i):
        path = f"/vol-a/{prefix}-chunk-{i}"
        head, s = _chunked_head(d, path, 0xFFFFFFF0)
        sock = _raw_socket(d)
        try:
            sock.sendall(head)
            sock.sendall(_http_chunk(b"fffffff0;chunk-signature=" + b"0" * 64 + b"\r\n"))
            sent = 0
            try:
                for _ in range(64):  # up to 64 MiB each if the server kept reading
                    sock.sendall(_http_chunk(b"\0" * MiB))
                    sent += MiB
            except OSError:
                pass
            results.append((_read_response(sock), sent))
        finally:
            sock.close()

    with Unchanged(d):
        threads = [threading.Thread(target=attack, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    statuses = [r[0][0] for r in results]
    assert len(results) == 16 and all(s in (0, 400) for s in statuses), results
    assert 400 in statuses, results
    growth = rss_mib(pid) - base
    print(f"huge chunks: peak RSS +{growth:.1f} MiB over {base:.1f} MiB")
    assert growth < 64, f"peak RSS grew by {growth:.0f} MiB under 16 huge chunk declarations"
    assert d.raw("GET", "/vol-a/a.txt").status == 200


def test_aws_chunks_within_the_cap_still_upload(d, prefix):
    from helpers import aws_chunked_signed

    path = f"/vol-a/{prefix}-fine"
    data = os.urandom(3 * MiB)
    chunks = [data[i:i + MiB] for i in range(0, len(data), MiB)]
    s = sign_v4("PUT", path, None, {"x-amz-decoded-content-length": str(len(data)),
                                    "content-encoding": "aws-chunked"},
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", host(d), ACCESS_KEY, SECRET_KEY, d.region)
    r = send_raw(d, "PUT", path, dict(s.headers), aws_chunked_signed(chunks, s))
    assert r.status == 200, r
    assert (d.vol("vol-a") / f"{prefix}-fine").read_bytes() == data


def test_unauthenticated_form_uploads_cannot_fill_memory(d, prefix):
    """s3s reads a form upload's file whole before it checks access; an anonymous client
    used to be able to send gigabytes into memory."""
    pid = d.proc.pid
    peak_rss_reset(pid)
    base = rss_mib(pid, "VmRSS")
    # Declared too large: refused from the head alone.
    hdrs = {"host": host(d), "content-type": "multipart/form-data; boundary=b", "content-length": str(4 << 30)}
    sock = _raw_socket(d)
    try:
        head = "POST /vol-a HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock.sendall(head.encode())
        status, body = _read_response(sock)
        assert status == 400 and b"EntityTooLarge" in body, (status, body)
    finally:
        sock.close()
    # No length (chunked): read up to the cap, then refused; 8 clients at once, more than
    # the in-flight limit, so some are turned away at once with 503 SlowDown.
    with Unchanged(d):
        results = _form_flood(d, "multipart/form-data; boundary=b", f"{prefix}/form", clients=8, mib_each=100)
    statuses = sorted(r[0] for r in results)
    assert len(statuses) == 8 and set(statuses) <= {0, 400, 403, 503}, results
    assert 503 in statuses, f"the in-flight limit of form uploads did not apply: {statuses}"
    growth = rss_mib(pid) - base
    print(f"form uploads: peak RSS +{growth:.1f} MiB over {base:.1f} MiB")
    # 4 form uploads of at most 16 MiB each, plus the rest of the daemon.
    assert growth < 100, f"peak RSS grew by {growth:.0f} MiB under form uploads"


def test_oversized_request_heads_are_refused_with_bounded_memory(d):
    pid = d.proc.pid
    peak_rss_reset(pid)
    base = rss_mib(pid, "VmRSS")
    statuses = []

    def attack():
        sock = _raw_socket(d)
        try:
            sock.sendall(b"GET /vol-a/a.txt HTTP/1.1\r\nhost: x\r\n")
            try:
                for _ in range(64):
                    sock.sendall(b"x-amz-meta-pad: " + b"v" * 16 * 1024 + b"\r\n")
            except OSError:
                pass
            statuses.append(_read_response(sock, 10)[0])
        finally:
            sock.close()

    threads = [threading.Thread(target=attack) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(s in (0, 431) for s in statuses), statuses
    growth = rss_mib(pid) - base
    print(f"oversized heads: peak RSS +{growth:.1f} MiB over {base:.1f} MiB")
    assert growth < 48, f"peak RSS grew by {growth:.0f} MiB under 64 oversized heads"


# -------------------------------------------------------------- 4. connection slots


def test_http2_by_prior_knowledge_is_not_served(d):
    """S3 speaks HTTP/1.1; h2c by prior knowledge would bypass the HTTP/1.1 timeouts."""
    sock = _raw_socket(d)
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        sock.settimeout(10)
        data = b""
        try:
            while True:
                got = sock.recv(4096)
                if not got:
                    break
                data += got
        except (socket.timeout, ConnectionResetError):
            pass
        # An HTTP/2 server answers with a SETTINGS frame (type 4); HTTP/1.1 refuses the line.
        assert not (len(data) >= 9 and data[3] == 4), data[:40]
    finally:
        sock.close()


def test_idle_http2_connection_is_closed(tmp_path):
    """With http2 = true, h2c by prior knowledge is served; hyper has no idle limit for an
    HTTP/2 connection, so one that opens no stream must still be closed."""
    d2 = start_daemon(tmp_path, extra_config='http2 = true\nheader_read_timeout = "3s"')
    try:
        sock = _raw_socket(d2)
        started = time.monotonic()
        try:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            sock.settimeout(30)
            data, closed = b"", False
            while time.monotonic() - started < 30:
                try:
                    got = sock.recv(4096)
                except ConnectionResetError:
                    closed = True
                    break
                if not got:
                    closed = True
                    break
                data += got
        finally:
            sock.close()
        waited = time.monotonic() - started
        assert len(data) >= 9 and data[3] == 4, f"no HTTP/2 SETTINGS frame: {data[:40]!r}"
        assert closed and 2 <= waited < 15, f"the idle h2 connection stayed open {waited:.1f}s"
    finally:
        stop_daemon(d2)


def test_trickling_request_body_is_cut(tmp_path, prefix):
    """One byte every 2 s never trips the idle timeout but holds a slot forever."""
    d2 = start_daemon(tmp_path, extra_config='idle_timeout = "5s"\nmin_body_rate = "1KiB"')
    try:
        path = f"/vol-a/{prefix}-slow"
        target, hdrs = build_signed(d2, "PUT", path, payload_hash="UNSIGNED-PAYLOAD")
        hdrs["content-length"] = "1000"
        sock = _raw_socket(d2)
        started = time.monotonic()
        status = 0
        try:
            sock.sendall((f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                          + "\r\n").encode())
            for _ in range(30):
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
                sock.settimeout(2)
                try:
                    got = sock.recv(4096)
                    if got:
                        status = int(got.split(b" ")[1])
                    break
                except socket.timeout:
                    continue
        finally:
            sock.close()
        elapsed = time.monotonic() - started
        assert status in (0, 400), status
        assert elapsed < 30, f"the trickle held the connection for {elapsed:.0f}s"
        assert not (d2.vol("vol-a") / f"{prefix}-slow").exists()
        assert not list((d2.vol("vol-a") / ".s3vol" / "tmp").iterdir())
    finally:
        stop_daemon(d2)


def test_form_upload_past_its_unauthenticated_deadline_is_cut(tmp_path, prefix):
    d2 = start_daemon(tmp_path, extra_config='unauthenticated_body_time = "3s"\nmin_body_rate = "0"')
    try:
        fields = signed_post_fields(d2, "vol-a", f"{prefix}/late.bin")
        body = post_form(fields, b"y" * 64 * 1024)
        sock = _raw_socket(d2)
        started = time.monotonic()
        try:
            head = ("POST /vol-a HTTP/1.1\r\nhost: %s\r\ncontent-type: multipart/form-data; boundary=s3volboundary"
                    "\r\ncontent-length: %d\r\n\r\n" % (host(d2), len(body)))
            sock.sendall(head.encode())
            for i in range(0, len(body), 4096):  # 4 KiB every 0.5 s: 8 s in all
                try:
                    sock.sendall(body[i:i + 4096])
                except OSError:
                    break
                time.sleep(0.5)
            status, _ = _read_response(sock, 10)
        finally:
            sock.close()
        assert status in (0, 400), status
        assert time.monotonic() - started < 15
        assert not (d2.vol("vol-a") / prefix).exists()
    finally:
        stop_daemon(d2)


def test_idle_connections_cannot_hold_every_slot(tmp_path):
    """max_connections idle sockets (and half-sent heads) used to lock out every client
    for the whole header timeout; they are shed once slots run short."""
    d2 = start_daemon(tmp_path, extra_config='max_connections = 20\nheader_read_timeout = "60s"')
    socks = []
    try:
        for i in range(20):
            s = _raw_socket(d2)
            if i % 2:
                s.sendall(b"GET /vol-a/a.txt HTTP/1.1\r\nhost: x\r\n")  # a head that never ends
            socks.append(s)
        time.sleep(0.5)
        started = time.monotonic()
        r = d2.raw("GET", "/vol-a/a.txt", timeout=30)
        waited = time.monotonic() - started
        assert r.status in (200, 404), r
        assert waited < 10, f"a real client waited {waited:.1f}s for a slot"
    finally:
        for s in socks:
            s.close()
        stop_daemon(d2)


# ----------------------------------------------------------------------------- 7. logs


def test_logs_never_carry_secrets_at_any_rust_log(tmp_path, prefix, monkeypatch):
    from helpers import aws_chunked_signed

    monkeypatch.setenv("RUST_LOG", "trace,s3s=trace,s3s::ops::signature=trace,hyper=trace")
    d2 = start_daemon(tmp_path)
    secrets = [SECRET_KEY, READER_SECRET_KEY]
    try:
        # Header auth (and the Authorization header itself).
        target, hdrs = build_signed(d2, "PUT", f"/vol-a/{prefix}-h", body=b"hello")
        assert send_raw(d2, "PUT", target, hdrs, b"hello").status == 200
        secrets += [hdrs["authorization"], hdrs["authorization"].split("Signature=")[1]]
        # A wrong signature: s3s would log the signature it computed, the right one.
        target, good = build_signed(d2, "GET", f"/vol-a/{prefix}-h")
        right = good["authorization"].split("Signature=")[1]
        bad = dict(good, authorization=good["authorization"].replace(right, "0" * 64))
        assert send_raw(d2, "GET", target, bad, b"").status == 403
        secrets.append(right)
        # A presigned URL (its query string and signature).
        q = presign_v4(d2, "GET", f"/vol-a/{prefix}-h")
        qs = encode_query(q)
        assert send_raw(d2, "GET", f"/vol-a/{prefix}-h?{qs}", {"host": host(d2)}, b"").status == 200
        secrets += [qs, dict(q)["X-Amz-Signature"]]
        # SigV2 presigned (boto3's default) and SigV2 header auth.
        url = d2.client(signature_version="s3").generate_presigned_url(
            "get_object", Params={"Bucket": "vol-a", "Key": f"{prefix}-h"})
        path_q = url.split(host(d2), 1)[1]
        assert send_raw(d2, "GET", path_q, {"host": host(d2)}, b"").status == 200
        secrets += [path_q.split("?", 1)[1], path_q.split("Signature=")[1].split("&")[0]]
        v2 = {"date": formatdate(usegmt=True)}
        sig2 = sign_v2("GET", f"/vol-a/{prefix}-h", v2, SECRET_KEY)
        assert send_raw(d2, "GET", f"/vol-a/{prefix}-h", {"host": host(d2), **v2,
                                                             "authorization": f"AWS {ACCESS_KEY}:{sig2}"},
                        b"").status == 200
        secrets.append(sig2)
        # aws-chunked with chunk signatures.
        path = f"/vol-a/{prefix}-c"
        s = sign_v4("PUT", path, None, {"x-amz-decoded-content-length": "5", "content-encoding": "aws-chunked"},
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", host(d2), ACCESS_KEY, SECRET_KEY, d2.region)
        body = aws_chunked_signed([b"hello"], s)
        assert send_raw(d2, "PUT", path, dict(s.headers), body).status == 200
        secrets.append(body.split(b"chunk-signature=")[1][:64].decode())
        # A signed browser form upload (its signature and policy).
        fields = signed_post_fields(d2, "vol-a", f"{prefix}/form.bin")
        r = send_form(d2, "vol-a", post_form(fields, b"form"))
        assert r.status in (200, 204), r
        secrets += [dict(fields)["x-amz-signature"]]
    finally:
        stop_daemon(d2)
    log = d2.log.read_text(errors="replace")
    assert "request" in log and len(log) > 1000, "the daemon logged (at trace level)"
    for s in secrets:
        assert s not in log, f"a secret or signature is in the log: {s[:24]}..."
    assert "X-Amz-Signature" not in log and "Signature=" not in log


# ------------------------------------------- findings of the outside attack pass (edge)


@pytest.mark.parametrize("entry", ["X-Amz-Copy-Source", "x-amz-copy-source ", " x-amz-copy-source"])
def test_padded_signed_header_name_cannot_sign_an_added_header(d, prefix, entry):
    """s3s looks SignedHeaders names up as written and drops one it does not find, so a
    captured signature stayed valid with `;X-Amz-Copy-Source` appended, while the guard,
    which lower-cased and trimmed the names, took the added copy source as signed: a signed
    PUT became a copy."""
    target, hdrs = build_signed(d, "PUT", f"/vol-a/{prefix}-victim", body=b"")
    hdrs["authorization"] = hdrs["authorization"].replace(", Signature=", f";{entry}, Signature=")
    hdrs["x-amz-copy-source"] = "/vol-a/a.txt"
    with Unchanged(d):
        r = send_raw(d, "PUT", target, hdrs, b"")
        assert r.status in (400, 403) and r.code in ("AuthorizationHeaderMalformed", "AccessDenied"), r
    assert not (d.vol("vol-a") / f"{prefix}-victim").exists()


def test_signed_header_missing_from_the_request_is_refused(d, prefix):
    """A signature over a header the request no longer carries must not verify by the
    header being left out of the canonical request."""
    s = sign_v4("PUT", f"/vol-a/{prefix}-m", None, {"x-amz-meta-a": "1"}, EMPTY_SHA256, host(d),
                ACCESS_KEY, SECRET_KEY, d.region)
    hdrs = {k: v for k, v in s.headers.items() if k != "x-amz-meta-a"}
    with Unchanged(d):
        r = send_raw(d, "PUT", f"/vol-a/{prefix}-m", hdrs, b"")
        assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r


def test_form_with_a_non_ascii_content_type_is_still_held_to_the_form_limits(d, prefix):
    """`multipart/form-data; boundary=b; x="é"` (UTF-8 bytes) used to pass the guard as a
    non-form while s3s read it as one: no in-flight limit, no size check."""
    pid = d.proc.pid
    peak_rss_reset(pid)
    base = rss_mib(pid, "VmRSS")
    with Unchanged(d):
        results = _form_flood(d, 'multipart/form-data; boundary=b; x="é"', f"{prefix}/u", clients=16, mib_each=15)
    statuses = sorted(r[0] for r in results)
    assert 503 in statuses, statuses
    growth = rss_mib(pid) - base
    print(f"non-ASCII forms: peak RSS +{growth:.1f} MiB over {base:.1f} MiB")
    assert growth < 100, f"peak RSS grew by {growth:.0f} MiB"


def test_buffered_xml_bodies_share_one_memory_budget(d):
    """s3s reads DeleteObjects bodies whole; a read-only key could hold 100 bodies of 8 MiB
    at once (825 MB). Buffered bodies now share a budget; beyond it: 503 SlowDown."""
    pid = d.proc.pid
    peak_rss_reset(pid)
    base = rss_mib(pid, "VmRSS")
    declared = 8 * MiB
    socks, statuses = [], []
    try:
        for _ in range(20):
            target, hdrs = build_signed(d, "POST", "/vol-a", query=[("delete", "")], payload_hash="UNSIGNED-PAYLOAD",
                                        access_key=READER_ACCESS_KEY, secret_key=READER_SECRET_KEY)
            hdrs["content-length"] = str(declared)
            sock = _raw_socket(d)
            sock.sendall((f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                          + "\r\n").encode())
            socks.append(sock)
        for sock in socks:
            try:
                sock.sendall(b"<" * (declared - 1))
            except OSError:
                pass
        time.sleep(1)
        growth = rss_mib(pid) - base
        for sock in socks:
            sock.settimeout(0.5)
            try:
                got = sock.recv(4096)
                statuses.append(int(got.split(b" ")[1]) if got else 0)
            except (socket.timeout, OSError):
                statuses.append(None)  # still being read: holding its share
    finally:
        for sock in socks:
            sock.close()
    print(f"buffered XML: peak RSS +{growth:.1f} MiB over {base:.1f} MiB, {statuses}")
    assert statuses.count(503) >= 10, statuses
    assert growth < 120, f"peak RSS grew by {growth:.0f} MiB"


def _sigv2_form(access, secret, key_name):
    exp = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    policy = base64.b64encode(json.dumps({"expiration": exp, "conditions": [
        {"bucket": "vol-a"}, ["starts-with", "$key", ""]]}).encode()).decode()
    sig = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return [("key", key_name), ("AWSAccessKeyId", access), ("policy", policy), ("signature", sig)]


def test_sigv2_form_upload_is_refused_when_sigv2_is_off(tmp_path, prefix):
    d2 = start_daemon(tmp_path, extra_config="sigv2 = false")
    try:
        r = send_form(d2, "vol-a", post_form(_sigv2_form(ACCESS_KEY, SECRET_KEY, f"{prefix}-v2"), b"v2 form"))
        assert (r.status, r.code) == (400, "InvalidRequest"), r
        assert not (d2.vol("vol-a") / f"{prefix}-v2").exists()
        # A SigV4 form still works.
        r = send_form(d2, "vol-a", post_form(signed_post_fields(d2, "vol-a", f"{prefix}/v4"), b"v4 form"))
        assert r.status in (200, 204), r
    finally:
        stop_daemon(d2)


def test_strict_region_applies_to_form_uploads(tmp_path, prefix):
    d2 = start_daemon(tmp_path, region="eu-ro-1", extra_config="strict_region = true")
    try:
        d2.region = "us-west-2"  # sign the form for another region
        fields = signed_post_fields(d2, "vol-a", f"{prefix}/other-region")
        d2.region = "eu-ro-1"
        r = send_form(d2, "vol-a", post_form(fields, b"wrong region"))
        assert (r.status, r.code) == (400, "AuthorizationHeaderMalformed"), r
        assert not (d2.vol("vol-a") / prefix).exists()
        r = send_form(d2, "vol-a", post_form(signed_post_fields(d2, "vol-a", f"{prefix}/right"), b"ok"))
        assert r.status in (200, 204), r
    finally:
        stop_daemon(d2)


@pytest.mark.parametrize("sub", ["retention", "legal-hold", "attributes"])
def test_sigv2_request_cannot_gain_an_unsigned_subresource(d, sub):
    """SigV2 signs only a fixed list of subresources; one it leaves out, added to a captured
    request, would route it to another operation."""
    path = "/vol-a/a.txt"
    hdrs = {"date": formatdate(usegmt=True)}
    hdrs["authorization"] = f"AWS {ACCESS_KEY}:{sign_v2('GET', path, hdrs, SECRET_KEY)}"
    assert send_raw(d, "GET", path, {"host": host(d), **hdrs}, b"").status == 200
    r = send_raw(d, "GET", f"{path}?{sub}", {"host": host(d), **hdrs}, b"")
    assert (r.status, r.code) == (400, "InvalidRequest"), r
