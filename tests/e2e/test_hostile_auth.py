"""Hostile input, part two (test_hostile.py has dot segments, NUL, overlong keys, the
internal directory, symlinks out of the volume, checksums and clock skew): encoded
slashes, backslashes and control bytes, chained and swapped symlinks, hard-to-parse hosts
and paths, replayed and re-targeted signatures, and oversized headers and XML bodies.
Each case asserts the exact status and that nothing outside the volume changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from pathlib import Path

import pytest

from helpers import (
    b64, build_signed, list_all_keys, send_raw, signing_key, snapshot_diff, start_daemon, stop_daemon,
    tree_snapshot, uri_encode,
)

FULL = dict(name="full", access_key="AKHOSTILEFULL001", secret_key="hostile-full-secret", volumes=["vol-a", "vol-b"],
            permissions=["read", "write", "delete"])
AONLY = dict(name="aonly", access_key="AKHOSTILEAONLY01", secret_key="hostile-aonly-secret", volumes=["vol-a"],
             permissions=["read", "write", "delete"])


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("hostile-auth"), keys=[FULL, AONLY])
    a, b = daemon.vol("vol-a"), daemon.vol("vol-b")
    (a / "a.txt").write_bytes(b"vol-a data")
    (b / "b.txt").write_bytes(b"vol-b secret")
    (a / "real.txt").write_bytes(b"real")
    os.symlink("c2", a / "c1")
    os.symlink("real.txt", a / "c2")  # c1 -> c2 -> real.txt: stays inside
    os.symlink("l2", a / "l1")
    os.symlink("../canary.txt", a / "l2")  # l1 -> l2 -> outside
    os.symlink("d2", a / "d1")
    os.symlink("/etc", a / "d2")  # d1 -> d2 -> /etc
    os.symlink("../vol-b/b.txt", a / "tob_file")  # a file in another volume
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def raw(d, method, path, key=FULL, **kw):
    return d.raw(method, path, access_key=key["access_key"], secret_key=key["secret_key"], **kw)


class Unchanged:
    """Nothing under the daemon's root (both volumes, canary, outside dir) changes."""

    def __init__(self, d, allow=()):
        self.d, self.allow = d, set(allow)

    def __enter__(self):
        self.before = tree_snapshot(self.d.root)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            after = tree_snapshot(self.d.root)
            before = {k: v for k, v in self.before.items() if k not in self.allow}
            after = {k: v for k, v in after.items() if k not in self.allow}
            assert after == before, "the file tree changed:\n" + snapshot_diff(before, after)
        return False


# ------------------------------------------------------------------------- odd bytes in keys


def test_encoded_slash_is_a_slash_inside_the_volume(d, prefix):
    r = raw(d, "PUT", f"/vol-a/{prefix}%2Fsub%2Ff.txt", body=b"enc")
    assert r.status == 200, r
    assert (d.vol("vol-a") / prefix / "sub" / "f.txt").read_bytes() == b"enc"
    with Unchanged(d):
        for path in ("/vol-a/..%2Fcanary.txt", "/vol-a/x%2F..%2F..%2Fcanary.txt", "/vol-a/%2Fcanary.txt",
                     "/vol-a/a%2F%2Fb"):
            r = raw(d, "PUT", path, body=b"evil")
            assert (r.status, r.code) == (400, "InvalidArgument"), (path, r)


def test_backslashes_are_plain_name_bytes(d, prefix):
    with Unchanged(d, allow={f"vol-a/{prefix}..\\canary.txt", f"vol-a/{prefix}\\..\\..\\x"}):
        for name in (f"{prefix}..\\canary.txt", f"{prefix}\\..\\..\\x"):
            r = raw(d, "PUT", "/vol-a/" + uri_encode(name, False), body=b"bs")
            assert r.status == 200, r
            assert (d.vol("vol-a") / name).read_bytes() == b"bs", "a backslash is no separator on POSIX"
    # a leading backslash-dot-dot is just a name too
    r = raw(d, "GET", "/vol-a/" + uri_encode("..\\canary.txt", False))
    assert (r.status, r.code) == (404, "NoSuchKey"), r
    assert b"canary" not in r.body


def test_control_bytes_stay_in_the_name_and_out_of_headers(d, prefix):
    name = f"{prefix}-ctl\x01\x1f\x7f.txt"
    r = raw(d, "PUT", "/vol-a/" + uri_encode(name, False), body=b"ctl")
    assert r.status == 200, r
    assert (d.vol("vol-a") / name).read_bytes() == b"ctl"
    # CR LF in a key must not become a response header (no header injection)
    inj = f"{prefix}-crlf\r\nx-injected: yes"
    for method in ("PUT", "GET", "HEAD"):
        r = raw(d, method, "/vol-a/" + uri_encode(inj, False), body=b"x" if method == "PUT" else b"")
        assert "x-injected" not in r.headers, (method, r.headers)
        assert r.status == 200, (method, r)
    r = raw(d, "GET", "/vol-a/" + uri_encode(f"{prefix}-missing\r\nx-injected: yes", False))
    assert (r.status, r.code) == (404, "NoSuchKey") and "x-injected" not in r.headers


# ------------------------------------------------------------------------- symlinks


def test_chained_links_inside_are_followed_outside_invisible(d):
    with Unchanged(d):
        r = raw(d, "GET", "/vol-a/c1")
        assert (r.status, r.body) == (200, b"real"), r
        for key in ("l1", "l2", "d1/passwd", "d2/passwd", "tob_file"):
            r = raw(d, "GET", f"/vol-a/{key}")
            assert (r.status, r.code) == (404, "NoSuchKey"), (key, r)
            assert b"canary" not in r.body and b"root:" not in r.body and b"vol-b" not in r.body
        for key in ("l1", "d1/s3vol-evil", "tob_file"):
            r = raw(d, "PUT", f"/vol-a/{key}", body=b"evil")
            assert r.status in (200, 403, 404), (key, r)  # replacing the link itself is allowed
    keys = list_all_keys(d.client(access_key=FULL["access_key"], secret_key=FULL["secret_key"]), "vol-a")
    assert not [k for k in keys if k.split("/")[0] in ("l1", "l2", "d1", "d2")], keys
    assert (d.root / "canary.txt").read_bytes() == b"canary: must never change\n"
    assert (d.vol("vol-b") / "b.txt").read_bytes() == b"vol-b secret"


def test_file_swapped_for_a_link_between_list_and_get(d, prefix):
    vol = d.vol("vol-a")
    (vol / prefix).mkdir()
    (vol / prefix / "swap.txt").write_bytes(b"harmless")
    s3 = d.client(access_key=FULL["access_key"], secret_key=FULL["secret_key"])
    assert list_all_keys(s3, "vol-a", prefix=f"{prefix}/") == [f"{prefix}/swap.txt"]
    (vol / prefix / "swap.txt").unlink()
    os.symlink(str(d.root / "outside" / "secret.txt"), vol / prefix / "swap.txt")
    r = raw(d, "GET", f"/vol-a/{prefix}/swap.txt")
    assert (r.status, r.code) == (404, "NoSuchKey"), r
    assert b"outside" not in r.body
    r = raw(d, "HEAD", f"/vol-a/{prefix}/swap.txt")
    assert r.status == 404


def test_directory_swapped_for_a_link_between_list_pages(d, prefix):
    vol = d.vol("vol-a")
    for i in range(3):
        (vol / prefix / f"d{i}").mkdir(parents=True)
        for j in range(2):
            (vol / prefix / f"d{i}" / f"f{j}").write_bytes(b"x")
    s3 = d.client(access_key=FULL["access_key"], secret_key=FULL["secret_key"])
    page = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", MaxKeys=2)
    assert page["IsTruncated"]
    for i in (1, 2):
        os.rename(vol / prefix / f"d{i}", vol / prefix / f"old{i}")
        os.symlink(str(d.root / "outside") if i == 1 else "/etc", vol / prefix / f"d{i}")
    rest = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", ContinuationToken=page["NextContinuationToken"])
    keys = [o["Key"] for o in rest.get("Contents", [])]
    assert not [k for k in keys if k.startswith((f"{prefix}/d1/", f"{prefix}/d2/"))], keys
    assert f"{prefix}/old1/f0" in keys


# ------------------------------------------------------------------------- hosts and paths


def test_virtual_host_looking_host_header_reaches_nothing_else(d):
    host = f"vol-a.127.0.0.1:{d.port}"
    with Unchanged(d):
        # s3vol is path-style only: the Host header never chooses the bucket
        for key, path, status, code in [
            (AONLY, "/vol-b/b.txt", 403, "AccessDenied"),
            (AONLY, "/b.txt", 403, "AccessDenied"),
            (FULL, "/a.txt", 403, "AccessDenied"),
        ]:
            target, hdrs = build_signed(d, "GET", path, access_key=key["access_key"], secret_key=key["secret_key"])
            amz = hdrs["x-amz-date"]
            # re-sign for the hostile Host so that the signature itself is valid
            hdrs = _sign_for_host(d, "GET", path, host, key, amz)
            r = send_raw(d, "GET", target, hdrs, b"")
            assert (r.status, r.code) == (status, code), (key["name"], path, r)
            assert b"vol-b secret" not in r.body and b"vol-a data" not in r.body


def _sign_for_host(d, method, path, host, key, amz_date):
    import hmac

    payload = hashlib.sha256(b"").hexdigest()
    h = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    names = sorted(h)
    creq = "\n".join([method, uri_encode(path, False), "", "".join(f"{k}:{h[k]}\n" for k in names), ";".join(names),
                      payload])
    scope = f"{amz_date[:8]}/{d.region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(key["secret_key"], amz_date[:8], d.region), sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key['access_key']}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return h


@pytest.mark.parametrize("path,status,code", [
    ("//vol-a/a.txt", 400, "InvalidBucketName"),  # empty bucket segment
    ("/vol-b%2Fb.txt", 403, "AccessDenied"),  # an encoded slash is a slash: still vol-b
    ("/VOL-A/a.txt", 400, "InvalidBucketName"),
    ("/vol-b/../vol-a/a.txt", 403, "AccessDenied"),  # the scope is checked on vol-b first
    ("/vol-a/../vol-b/b.txt", 400, "InvalidArgument"),
    ("/vol-a/./a.txt", 400, "InvalidArgument"),
])
def test_hard_to_parse_paths_for_a_scoped_key(d, path, status, code):
    with Unchanged(d):
        r = raw(d, "GET", path, key=AONLY)
        assert (r.status, r.code) == (status, code), r
        assert b"vol-b secret" not in r.body


def test_absolute_form_request_target(d):
    target, hdrs = build_signed(d, "GET", "/vol-b/b.txt", access_key=AONLY["access_key"],
                                secret_key=AONLY["secret_key"])
    r = send_raw(d, "GET", f"http://{d.host}:{d.port}/vol-b/b.txt", hdrs, b"")
    assert (r.status, r.code) == (403, "AccessDenied"), r
    target, hdrs = build_signed(d, "GET", "/vol-a/a.txt", access_key=AONLY["access_key"],
                                secret_key=AONLY["secret_key"])
    r = send_raw(d, "GET", f"http://{d.host}:{d.port}/vol-a/a.txt", hdrs, b"")
    assert (r.status, r.body) == (200, b"vol-a data"), r


# ------------------------------------------------------------------------- signatures


def test_signature_replayed_with_another_method(d, prefix):
    (d.vol("vol-a") / f"{prefix}.txt").write_bytes(b"keep me")
    with Unchanged(d):
        target, hdrs = build_signed(d, "GET", f"/vol-a/{prefix}.txt", access_key=FULL["access_key"],
                                    secret_key=FULL["secret_key"])
        for method in ("DELETE", "PUT", "HEAD"):
            r = send_raw(d, method, target, hdrs, b"")
            assert r.status == 403, (method, r)
            if method != "HEAD":
                assert r.code == "SignatureDoesNotMatch", (method, r)
        # and the original still works: a signature is not consumed, but it is bound
        assert send_raw(d, "GET", target, hdrs, b"").status == 200


def test_signature_moved_to_another_key_id(d):
    target, hdrs = build_signed(d, "GET", "/vol-b/b.txt", access_key=AONLY["access_key"],
                                secret_key=AONLY["secret_key"])
    hdrs["authorization"] = hdrs["authorization"].replace(AONLY["access_key"], FULL["access_key"])
    r = send_raw(d, "GET", target, hdrs, b"")
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r


def _presigned(d, key, method, path, when, expires="300"):
    import hmac

    amz = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz[:8]}/{d.region}/s3/aws4_request"
    q = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{key['access_key']}/{scope}"),
         ("X-Amz-Date", amz), ("X-Amz-Expires", expires), ("X-Amz-SignedHeaders", "host")]
    cq = "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in sorted(q))
    creq = "\n".join([method, path, cq, f"host:{d.host}:{d.port}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(key["secret_key"], amz[:8], d.region), sts.encode(), hashlib.sha256).hexdigest()
    return f"{path}?{cq}&X-Amz-Signature={sig}"


@pytest.mark.parametrize("offset_min,expires,status,code", [
    (0, "300", 200, ""),
    (-10, "300", 403, "AccessDenied"),  # expired
    (120, "300", 403, "RequestTimeTooSkewed"),  # future-dated beyond the hour of skew
])
def test_presigned_dates(d, offset_min, expires, status, code):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=offset_min)
    target = _presigned(d, FULL, "GET", "/vol-a/a.txt", when, expires)
    r = send_raw(d, "GET", target, {"host": f"{d.host}:{d.port}"}, b"")
    assert (r.status, r.code) == (status, code), r


# ------------------------------------------------------------------------- oversized input


def test_oversized_headers_are_refused(d, prefix):
    with Unchanged(d):
        for headers in ({"x-amz-meta-big": "v" * (512 * 1024)},
                        {f"x-amz-meta-h{i}": "v" for i in range(200)}):
            # hyper refuses the head itself (over its header count or buffer limit). It may
            # answer and close while the client is still sending the rest of the head: a
            # reset on the client's side is that same refusal (a race, also on older builds).
            try:
                r = raw(d, "PUT", f"/vol-a/{prefix}-big", body=b"x", headers=headers)
                assert r.status == 431, r
            except (BrokenPipeError, ConnectionResetError):
                pass
    assert raw(d, "GET", "/vol-a/a.txt").status == 200, "the daemon stopped serving"


def test_user_metadata_over_2_kb_is_refused(d, prefix):
    """S3 caps x-amz-meta-* at 2 KB (names plus values); refused before any byte is stored."""
    with Unchanged(d):
        r = raw(d, "PUT", f"/vol-a/{prefix}-meta", body=b"x", headers={f"x-amz-meta-k{i}": "v" * 100 for i in range(30)})
        assert (r.status, r.code) == (400, "MetadataTooLarge"), r
    r = raw(d, "PUT", f"/vol-a/{prefix}-meta", body=b"x", headers={"x-amz-meta-k": "v" * 2000})
    assert r.status == 200, r


def _delete_xml(keys) -> bytes:
    objs = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    return f'<?xml version="1.0" encoding="UTF-8"?><Delete>{objs}</Delete>'.encode()


def test_delete_objects_over_1000_keys_is_malformed(d, prefix):
    (d.vol("vol-a") / f"{prefix}-0").write_bytes(b"stay")
    body = _delete_xml([f"{prefix}-{i}" for i in range(1001)])
    with Unchanged(d):
        r = raw(d, "POST", "/vol-a", query=[("delete", "")], body=body,
                headers={"content-md5": b64(hashlib.md5(body).digest())})
        assert (r.status, r.code) == (400, "MalformedXML"), r


def _post_big(d, path, query, body: bytes) -> tuple[int, bytes]:
    """POST a large body the way a careful client does (Expect: 100-continue) and read
    the answer the server gives before taking the body."""
    target, hdrs = build_signed(d, "POST", path, query=query, body=body, access_key=FULL["access_key"],
                                secret_key=FULL["secret_key"],
                                headers={"content-md5": b64(hashlib.md5(body).digest())})
    hdrs["content-length"] = str(len(body))
    hdrs["expect"] = "100-continue"
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with socket.create_connection((d.host, d.port), timeout=30) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if status == 100:
            try:
                sock.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = data.split(b"\r\n\r\n", 1)[1]
            while b"</Error>" not in data and b"</DeleteResult>" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            status = int(data.split(b" ", 2)[1])
        else:
            while b"</Error>" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return status, data


def test_xml_body_above_the_limit(d, prefix):
    (d.vol("vol-a") / f"{prefix}-0").write_bytes(b"stay")
    body = _delete_xml([f"{prefix}-0"]).replace(b"<Delete>", b"<Delete>" + b" " * (21 * 1024 * 1024))
    with Unchanged(d):
        status, resp = _post_big(d, "/vol-a", [("delete", "")], body)
        assert status == 400 and b"<Code>MaxMessageLengthExceeded</Code>" in resp, resp[:500]
        bad = b"<Delete><Object><Key>" + b"<" * 1000
        r = raw(d, "POST", "/vol-a", query=[("delete", "")], body=bad,
                headers={"content-md5": b64(hashlib.md5(bad).digest())})
        assert (r.status, r.code) == (400, "MalformedXML"), r
    assert Path(d.vol("vol-a") / f"{prefix}-0").read_bytes() == b"stay"
    assert raw(d, "GET", "/vol-a/a.txt").status == 200, "the daemon stopped serving"
