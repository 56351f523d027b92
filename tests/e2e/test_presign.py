"""`s3vol presign`: the URL it prints works with curl and requests until it expires, for
its method, key and object only; any altered parameter fails; expiry is capped at 7 days
on both sides (the command refuses, the server refuses)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import subprocess
import time
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
import requests

from helpers import s3vol_bin, signing_key, snapshot_diff, start_daemon, stop_daemon, tree_snapshot, uri_encode

WRITER = dict(name="uploader", access_key="AKPRESIGNWRITER1", secret_key="presign-writer-secret",
              volumes=["vol-a"], permissions=["read", "write"])
READER = dict(name="viewer", access_key="AKPRESIGNREADER1", secret_key="presign-reader-secret",
              volumes=["vol-a"], permissions=["read"])


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("presign"), keys=[WRITER, READER])
    (daemon.vol("vol-a") / "doc.txt").write_bytes(b"the document")
    (daemon.vol("vol-a") / "other.txt").write_bytes(b"another document")
    (daemon.vol("vol-b") / "b.txt").write_bytes(b"vol-b")
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def presign(d, bucket, key, *, name="uploader", method=None, expires=None, endpoint=None, check=True):
    cmd = [str(s3vol_bin()), "presign", "--credentials", str(d.workdir / "credentials.toml"),
           "--key-name", name, "--endpoint", endpoint or d.url]
    if method:
        cmd += ["--method", method]
    if expires is not None:
        cmd += ["--expires", str(expires)]
    cmd += [bucket, key]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 1, r.stdout
        return lines[0]
    return r


def curl(*args) -> tuple[int, bytes]:
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query, keep_blank_values=True))
    q.update(changes)
    return parts._replace(query=urlencode(q, quote_via=quote, safe="")).geturl()


def test_presigned_get_with_curl_and_requests(d):
    url = presign(d, "vol-a", "doc.txt", name="viewer")
    assert url.startswith(d.url + "/vol-a/doc.txt?") and "X-Amz-Signature=" in url
    assert curl(url) == (200, b"the document")
    r = requests.get(url, timeout=10)
    assert (r.status_code, r.content) == (200, b"the document")


def test_presigned_put_with_curl_and_requests(d, prefix):
    key = f"{prefix}/up é+load.txt"
    url = presign(d, "vol-a", key, method="PUT", expires=600)
    code, body = curl("-X", "PUT", "--data-binary", "uploaded by curl", url)
    assert code == 200, body
    assert (d.vol("vol-a") / key).read_bytes() == b"uploaded by curl"
    r = requests.put(url, data=b"uploaded by requests", timeout=10)
    assert r.status_code == 200, r.content
    assert (d.vol("vol-a") / key).read_bytes() == b"uploaded by requests"


def test_tampered_urls_fail_and_change_nothing(d, prefix):
    get = presign(d, "vol-a", "doc.txt", name="viewer", expires=300)
    put = presign(d, "vol-a", f"{prefix}-target", method="PUT", expires=300)
    before = tree_snapshot(d.root)
    cases = {
        "other key": get.replace("/vol-a/doc.txt", "/vol-a/other.txt"),
        "other bucket": get.replace("/vol-a/doc.txt", "/vol-b/b.txt"),
        "longer expiry": with_query(get, **{"X-Amz-Expires": "301"}),
        "later date": with_query(get, **{"X-Amz-Date": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
                                          .strftime("%Y%m%dT%H%M%SZ")}),
        "other key id": with_query(get, **{"X-Amz-Credential": dict(parse_qsl(urlsplit(get).query))[
            "X-Amz-Credential"].replace(READER["access_key"], WRITER["access_key"])}),
        "flipped signature": get[:-1] + ("0" if get[-1] != "0" else "1"),
        "extra parameter": with_query(get, **{"response-content-type": "text/html"}),
        "signed headers": with_query(get, **{"X-Amz-SignedHeaders": "host;range"}),
    }
    for what, url in cases.items():
        r = requests.get(url, timeout=10)
        assert r.status_code == 403, (what, r.status_code, r.content)
        assert b"the document" not in r.content and b"vol-b" not in r.content
    # a GET URL used to PUT, a PUT URL used to GET, DELETE or to another key
    r = requests.put(get, data=b"evil", timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.content
    r = requests.delete(get, timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.content
    r = requests.get(put, timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.content
    r = requests.put(put.replace(f"{prefix}-target", f"{prefix}-elsewhere"), data=b"evil", timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.content
    after = tree_snapshot(d.root)
    assert after == before, snapshot_diff(before, after)


def test_expired_url_fails(d):
    url = presign(d, "vol-a", "doc.txt", name="viewer", expires=1)
    time.sleep(2.2)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403 and b"AccessDenied" in r.content and b"expired" in r.content, r.content


def test_presigned_put_needs_write(d, prefix):
    url = presign(d, "vol-a", f"{prefix}-denied", name="viewer", method="PUT")
    r = requests.put(url, data=b"x", timeout=10)
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.content
    assert not (d.vol("vol-a") / f"{prefix}-denied").exists()
    url = presign(d, "vol-b", "b.txt", name="viewer")
    r = requests.get(url, timeout=10)
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.content


@pytest.mark.parametrize("args,needle", [
    (dict(expires=604801), "604800"),
    (dict(expires=0), "604800"),
    (dict(name="nobody"), "no key named"),
    (dict(method="DELETE"), "GET or PUT"),
    (dict(endpoint="ftp://127.0.0.1"), "--endpoint"),
])
def test_presign_refuses_with_exit_2(d, args, needle):
    r = presign(d, "vol-a", "doc.txt", check=False, **args)
    assert r.returncode == 2 and needle in r.stderr and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert WRITER["secret_key"] not in r.stderr


def test_presign_at_most_seven_days(d):
    url = presign(d, "vol-a", "doc.txt", name="viewer", expires=604800)
    assert requests.get(url, timeout=10).content == b"the document"


def test_server_refuses_a_url_signed_for_more_than_seven_days(d):
    """A correctly signed URL (made here, not by s3vol) with X-Amz-Expires=604801."""
    now = dt.datetime.now(dt.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz[:8]}/{d.region}/s3/aws4_request"
    q = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{READER['access_key']}/{scope}"),
         ("X-Amz-Date", amz), ("X-Amz-Expires", "604801"), ("X-Amz-SignedHeaders", "host")]
    canon_q = "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in sorted(q))
    creq = "\n".join(["GET", "/vol-a/doc.txt", canon_q, f"host:{d.host}:{d.port}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(READER["secret_key"], amz[:8], d.region), sts.encode(), hashlib.sha256).hexdigest()
    url = f"{d.url}/vol-a/doc.txt?{canon_q}&X-Amz-Signature={sig}"
    r = requests.get(url, timeout=10)
    assert r.status_code == 400 and b"AuthorizationQueryParametersError" in r.content, r.content
    ok = url.replace("X-Amz-Expires=604801", "X-Amz-Expires=604800")
    assert requests.get(ok, timeout=10).status_code == 403, "the signature covers the expiry"


def test_server_refuses_a_sigv2_url_valid_for_more_than_seven_days(d):
    """boto3 presigns with SigV2 by default: an absolute `Expires`, capped at now + 7 days."""
    s3 = d.client(access_key=READER["access_key"], secret_key=READER["secret_key"])
    long = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": "doc.txt"}, ExpiresIn=8 * 86400)
    assert "Signature=" in long and "X-Amz-" not in long, "boto3's default presigner is SigV2"
    r = requests.get(long, timeout=10)
    assert r.status_code == 400 and b"AuthorizationQueryParametersError" in r.content, r.content
    ok = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": "doc.txt"}, ExpiresIn=6 * 86400)
    assert requests.get(ok, timeout=10).content == b"the document"
