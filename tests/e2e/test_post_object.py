"""Browser form uploads (PostObject, issue 14 item 8) driven by boto3's
generate_presigned_post and requests: success_action_status, success_action_redirect,
checksum fields, `${filename}` keys, the answer's Location/ETag headers, and S3's 403
AccessDenied for a policy whose conditions fail, that expired, or that names another
bucket."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests

from helpers import crc32_b64, md5_etag, start_daemon, stop_daemon, tree_snapshot, xml_error_code, xml_find_all


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


def test_filename_variable_in_key_is_the_uploaded_files_name(d, prefix):
    # boto3 turns a key ending in ${filename} into a starts-with condition on the prefix.
    r = post(d, f"{prefix}/up/${{filename}}", body=b"photo bytes", filename="photo 1.jpg",
             fields={"success_action_status": "201"}, conditions=[{"success_action_status": "201"}])
    assert r.status_code == 201, r.content
    key = f"{prefix}/up/photo 1.jpg"
    assert xml_find_all(r.content, "Key") == [key], r.text
    assert (d.vol() / prefix / "up" / "photo 1.jpg").read_bytes() == b"photo bytes"
    assert not (d.vol() / prefix / "up" / "${filename}").exists()
    head = d.client().head_object(Bucket="vol-a", Key=key)
    assert head["ETag"] == md5_etag(b"photo bytes")


def test_filename_that_cannot_be_a_path_is_refused_and_stores_nothing(d, prefix):
    before = tree_snapshot(d.vol())
    r = post(d, f"{prefix}/up/${{filename}}", body=b"escape", filename="../../etc/passwd")
    assert r.status_code == 400, r.content
    assert xml_error_code(r.content) == "InvalidArgument", r.content
    assert "Invalid object key" in r.text
    assert tree_snapshot(d.vol()) == before
    assert not (d.vol().parent / "etc").exists()


@pytest.mark.parametrize("redirect", ["not a url", "/relative/path", "ftp://files.example.test/x"])
def test_invalid_success_action_redirect_is_ignored_and_answers_204(d, prefix, redirect):
    key = f"{prefix}/ir.txt"
    r = post(d, key, fields={"success_action_redirect": redirect},
             conditions=[{"success_action_redirect": redirect}])
    assert r.status_code == 204 and r.content == b"", r.content
    assert r.headers["etag"] == md5_etag(b"form body")
    assert (d.vol() / key).read_bytes() == b"form body"


def test_invalid_redirect_with_success_action_status_201_answers_201(d, prefix):
    key = f"{prefix}/ir201.txt"
    fields = {"success_action_redirect": "nope", "success_action_status": "201"}
    r = post(d, key, fields=fields, conditions=[{k: v} for k, v in fields.items()])
    assert r.status_code == 201, r.content
    assert xml_find_all(r.content, "Key") == [key]


def test_201_post_response_location_is_the_full_object_url(d, prefix):
    key = f"{prefix}/dir/a b+c.txt"
    r = post(d, key, fields={"success_action_status": "201"}, conditions=[{"success_action_status": "201"}])
    assert r.status_code == 201, r.content
    want = f"http://127.0.0.1:{d.port}/vol-a/{quote(key, safe='')}"
    assert xml_find_all(r.content, "Location") == [want], r.text
    assert xml_find_all(r.content, "Bucket") == ["vol-a"]
    assert xml_find_all(r.content, "Key") == [key]
    assert xml_find_all(r.content, "ETag") == [md5_etag(b"form body")]
    assert r.headers["location"] == want and r.headers["etag"] == md5_etag(b"form body")


@pytest.mark.parametrize("status", [200, 204])
def test_200_and_204_carry_etag_location_and_checksum_headers(d, prefix, status):
    key = f"{prefix}/h{status}.txt"
    crc = crc32_b64(b"form body")
    fields = {"success_action_status": str(status), "x-amz-checksum-crc32": crc}
    r = post(d, key, fields=fields, conditions=[{k: v} for k, v in fields.items()])
    assert r.status_code == status and r.content == b"", r.content
    head = d.client().head_object(Bucket="vol-a", Key=key, ChecksumMode="ENABLED")
    assert r.headers["etag"] == head["ETag"] == md5_etag(b"form body")
    assert r.headers["x-amz-checksum-crc32"] == head["ChecksumCRC32"] == crc
    assert r.headers["location"] == f"http://127.0.0.1:{d.port}/vol-a/{quote(key, safe='')}"


def _b64(digest: bytes) -> str:
    import base64
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize("name,good", [
    ("sha512", lambda b: _b64(__import__("hashlib").sha512(b).digest())),
    ("md5", lambda b: _b64(__import__("hashlib").md5(b).digest())),
])
def test_checksum_fields_s3s_does_not_know_are_verified_and_returned(d, prefix, name, good):
    # s3s 0.14.1 parses only the five older algorithms' form fields; the others were
    # dropped and the upload stored unverified.
    field = f"x-amz-checksum-{name}"
    value = good(b"form body")
    r = post(d, f"{prefix}/ok.txt", fields={field: value}, conditions=[{field: value}])
    assert r.status_code == 204, r.content
    assert r.headers[field] == value
    assert (d.vol() / prefix / "ok.txt").read_bytes() == b"form body"
    before = tree_snapshot(d.vol())
    bad = good(b"something else")
    r = post(d, f"{prefix}/bad.txt", fields={field: bad}, conditions=[{field: bad}])
    assert r.status_code == 400 and xml_error_code(r.content) == "BadDigest", r.content
    assert tree_snapshot(d.vol()) == before


def test_xxhash_checksum_field_with_a_wrong_value_stores_nothing(d, prefix):
    before = tree_snapshot(d.vol())
    wrong = _b64(b"\0" * 8)
    field = "x-amz-checksum-xxhash3"
    r = post(d, f"{prefix}/xx.txt", fields={field: wrong}, conditions=[{field: wrong}])
    assert r.status_code == 400 and xml_error_code(r.content) == "BadDigest", r.content
    assert tree_snapshot(d.vol()) == before
