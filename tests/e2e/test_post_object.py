"""Browser form uploads (PostObject, issue 14 item 8) driven by boto3's
generate_presigned_post and requests: success_action_status, success_action_redirect,
checksum fields, and S3's 403 AccessDenied for a policy whose conditions fail, that
expired, or that names another bucket."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from helpers import crc32_b64, md5_etag, start_daemon, stop_daemon, tree_snapshot, xml_error_code


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("post"))
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def post(d, key, body=b"form body", fields=None, conditions=None, bucket="vol-a", url_bucket=None,
         expires=300, filename="local.txt"):
    p = d.client().generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires)
    url = p["url"] if url_bucket is None else p["url"].replace(f"/{bucket}", f"/{url_bucket}")
    return requests.post(url, data=p["fields"], files={"file": (filename, body)}, timeout=20,
                         allow_redirects=False)


def test_default_success_is_204_with_etag(d, prefix):
    r = post(d, f"{prefix}/a.txt")
    assert r.status_code == 204 and r.content == b""
    assert (d.vol() / prefix / "a.txt").read_bytes() == b"form body"


@pytest.mark.parametrize("status", [200, 204])
def test_success_action_status_200_and_204_answer_empty(d, prefix, status):
    s = str(status)
    r = post(d, f"{prefix}/s.txt", fields={"success_action_status": s},
             conditions=[{"success_action_status": s}])
    assert r.status_code == status and r.content == b""
    assert (d.vol() / prefix / "s.txt").read_bytes() == b"form body"


def test_success_action_status_201_answers_post_response_xml(d, prefix):
    key = f"{prefix}/c.txt"
    r = post(d, key, fields={"success_action_status": "201"}, conditions=[{"success_action_status": "201"}])
    assert r.status_code == 201, r.content
    body = r.text
    for tag, value in [("Bucket", "vol-a"), ("Key", key), ("ETag", md5_etag(b"form body").strip('"'))]:
        assert f"<{tag}>" in body and value in body.split(f"<{tag}>")[1].split(f"</{tag}>")[0], body
    assert "<Location>" in body and key in body.split("<Location>")[1]
    assert (d.vol() / key).read_bytes() == b"form body"


def test_success_action_redirect_answers_303_with_bucket_key_etag(d, prefix):
    key = f"{prefix}/r.txt"
    target = "https://app.example.test/done?x=1"
    r = post(d, key, fields={"success_action_redirect": target}, conditions=[{"success_action_redirect": target}])
    assert r.status_code == 303, r.content
    loc = urlparse(r.headers["location"])
    assert (loc.scheme, loc.netloc, loc.path) == ("https", "app.example.test", "/done")
    q = parse_qs(loc.query)
    assert q["x"] == ["1"] and q["bucket"] == ["vol-a"] and q["key"] == [key]
    assert q["etag"][0].strip('"') == md5_etag(b"form body").strip('"')


def test_checksum_field_is_verified_bad_digest_stores_nothing(d, prefix):
    good = crc32_b64(b"form body")
    r = post(d, f"{prefix}/ok.txt", fields={"x-amz-checksum-crc32": good}, conditions=[{"x-amz-checksum-crc32": good}])
    assert r.status_code == 204, r.content
    before = tree_snapshot(d.vol())
    bad = crc32_b64(b"something else")
    r = post(d, f"{prefix}/bad.txt", fields={"x-amz-checksum-crc32": bad}, conditions=[{"x-amz-checksum-crc32": bad}])
    assert r.status_code == 400 and xml_error_code(r.content) == "BadDigest", r.content
    assert tree_snapshot(d.vol()) == before
    assert not (d.vol() / prefix / "bad.txt").exists()


def test_failed_policy_condition_is_403_access_denied(d, prefix):
    before = tree_snapshot(d.vol())
    p = d.client().generate_presigned_post("vol-a", f"{prefix}/x.txt",
                                           Conditions=[["starts-with", "$Content-Type", "image/"]],
                                           Fields={"Content-Type": "image/png"})
    fields = dict(p["fields"], **{"Content-Type": "text/html"})
    r = requests.post(p["url"], data=fields, files={"file": ("x", b"<html>")}, timeout=20)
    assert r.status_code == 403, r.content
    assert xml_error_code(r.content) == "AccessDenied"
    assert "Invalid according to Policy: Policy Condition failed:" in r.text
    assert '"starts-with", "$content-type", "image/"' in r.text.lower()
    assert tree_snapshot(d.vol()) == before


def test_policy_for_another_bucket_is_403_access_denied(d, prefix):
    before_a, before_b = tree_snapshot(d.vol("vol-a")), tree_snapshot(d.vol("vol-b"))
    # Signed for vol-b (its policy's bucket condition), posted to vol-a's URL.
    r = post(d, f"{prefix}/other.txt", bucket="vol-b", url_bucket="vol-a")
    assert r.status_code == 403 and xml_error_code(r.content) == "AccessDenied", r.content
    assert "Invalid according to Policy" in r.text and "vol-b" in r.text
    assert tree_snapshot(d.vol("vol-a")) == before_a and tree_snapshot(d.vol("vol-b")) == before_b


def test_expired_policy_is_403_access_denied(d, prefix):
    p = d.client().generate_presigned_post("vol-a", f"{prefix}/late.txt", ExpiresIn=1)
    time.sleep(2.2)
    r = requests.post(p["url"], data=p["fields"], files={"file": ("x", b"late")}, timeout=20)
    assert r.status_code == 403 and xml_error_code(r.content) == "AccessDenied", r.content
    assert "Invalid according to Policy: Policy expired." in r.text
    assert not (d.vol() / prefix / "late.txt").exists()
