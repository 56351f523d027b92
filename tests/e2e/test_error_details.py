"""Error and status details S3 clients rely on (issue 14 item 5): request ids in every error
body, 304s with their validators, expired presigned URLs, unknown upload ids, keys that are
not UTF-8, CreateBucket of an existing bucket, and the Date header beside x-amz-date.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest
import requests
from botocore.exceptions import ClientError

from helpers import (ACCESS_KEY, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, DEFAULT_KEYS, SECRET_KEY, build_signed,
                     err_code, err_status, raw_request, send_raw, snapshot_diff, start_daemon, stop_daemon,
                     tree_snapshot, xml_find_all)

SCOPED_ADMIN = "AKE2ESCOPEDADMIN1"
SCOPED_SECRET = "e2e-scoped-admin-secret"
KEYS = DEFAULT_KEYS + [
    dict(name="admin", access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY, volumes=["*"],
         permissions=["read", "write", "delete", "admin"]),
    dict(name="scoped-admin", access_key=SCOPED_ADMIN, secret_key=SCOPED_SECRET, volumes=["vol-a"],
         permissions=["read", "write", "delete", "admin"]),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("errs"), keys=KEYS)
    yield d
    stop_daemon(d)


def assert_ids(r):
    """The error body names the request as its headers do."""
    assert r.headers.get("x-amz-request-id"), r
    assert r.headers.get("x-amz-id-2"), r
    assert xml_find_all(r.body, "RequestId") == [r.headers["x-amz-request-id"]], r
    assert xml_find_all(r.body, "HostId") == [r.headers["x-amz-id-2"]], r


def test_every_error_body_carries_request_id_and_host_id(d):
    # From a handler (NoSuchKey), from s3s's own signature check, from a guard in front of
    # s3s (an unsigned x-amz-* header), and from the XML size refusal.
    missing = raw_request(d, "GET", "/vol-a/no/such/key")
    assert (missing.status, missing.code) == (404, "NoSuchKey")
    assert_ids(missing)
    bad_sig = raw_request(d, "GET", "/vol-a/x", secret_key="wrong")
    assert (bad_sig.status, bad_sig.code) == (403, "SignatureDoesNotMatch")
    assert_ids(bad_sig)
    target, hdrs = build_signed(d, "GET", "/vol-a/x")
    hdrs["x-amz-meta-unsigned"] = "1"
    guard = send_raw(d, "GET", target, hdrs, b"")
    assert guard.status == 403, guard
    assert_ids(guard)
    big = raw_request(d, "POST", "/vol-a", query=[("delete", "")], headers={"content-length": str(9 << 20)},
                      payload_hash="UNSIGNED-PAYLOAD")
    assert (big.status, big.code) == (400, "MaxMessageLengthExceeded")
    assert_ids(big)
    ok = raw_request(d, "GET", "/vol-a", query=[("list-type", "2")])
    assert ok.status == 200 and ok.headers.get("x-amz-id-2") and ok.headers.get("x-amz-request-id")
    # boto3 reports both.
    with pytest.raises(ClientError) as ei:
        d.client().get_object(Bucket="vol-a", Key="no/such/key")
    meta = ei.value.response["ResponseMetadata"]
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amz-request-id"]
    assert meta["HostId"] == meta["HTTPHeaders"]["x-amz-id-2"] != ""


def test_a_304_carries_etag_and_last_modified_and_no_body(d):
    s3 = d.client()
    etag = s3.put_object(Bucket="vol-a", Key="cond/obj", Body=b"body")["ETag"]
    head = s3.head_object(Bucket="vol-a", Key="cond/obj")
    lm = email.utils.format_datetime(head["LastModified"].astimezone(dt.timezone.utc), usegmt=True)
    for hdrs in ({"if-none-match": etag}, {"if-modified-since": lm}):
        for method in ("GET", "HEAD"):
            r = raw_request(d, method, "/vol-a/cond/obj", headers=hdrs)
            assert r.status == 304, (method, hdrs, r)
            assert r.headers["etag"] == etag
            assert r.headers["last-modified"] == lm
            assert r.body == b""


def test_an_expired_presigned_url_is_access_denied_request_has_expired(d):
    s3 = d.client()
    s3.put_object(Bucket="vol-a", Key="pre/obj", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": "pre/obj"}, ExpiresIn=1)
    time.sleep(2.2)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403
    assert xml_find_all(r.content, "Code") == ["AccessDenied"]
    assert xml_find_all(r.content, "Message") == ["Request has expired"]


@pytest.mark.parametrize("upload_id", ["0123456789abcdef0123456789abcdef", "not-an-upload-id"])
def test_unknown_upload_ids_answer_no_such_upload(d, upload_id):
    s3 = d.client()
    s3.put_object(Bucket="vol-a", Key="src", Body=b"source")
    calls = {
        "UploadPart": lambda: s3.upload_part(Bucket="vol-a", Key="mp/k", UploadId=upload_id, PartNumber=1,
                                             Body=b"x"),
        "UploadPartCopy": lambda: s3.upload_part_copy(Bucket="vol-a", Key="mp/k", UploadId=upload_id,
                                                      PartNumber=1, CopySource="vol-a/src"),
        "CompleteMultipartUpload": lambda: s3.complete_multipart_upload(
            Bucket="vol-a", Key="mp/k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' % ("0" * 32)}]}),
        "ListParts": lambda: s3.list_parts(Bucket="vol-a", Key="mp/k", UploadId=upload_id),
        "AbortMultipartUpload": lambda: s3.abort_multipart_upload(Bucket="vol-a", Key="mp/k", UploadId=upload_id),
    }
    for op, call in calls.items():
        with pytest.raises(ClientError) as ei:
            call()
        assert (err_status(ei.value), err_code(ei.value)) == (404, "NoSuchUpload"), op
    assert not (d.vol("vol-a") / "mp").exists()


@pytest.mark.parametrize("path", ["/vol-a/%FF", "/vol-a/dir/%C3%28name", "/vol-a/%ED%A0%80"])
def test_a_key_that_is_not_utf8_answers_400_and_touches_nothing(d, path):
    before = tree_snapshot(d.root, include_internal=True)
    for method, body in (("PUT", b"data"), ("GET", b""), ("HEAD", b""), ("DELETE", b"")):
        r = raw_request(d, method, path, body=body)
        assert r.status == 400, (method, r)
        if method != "HEAD":
            assert r.code == "InvalidURI", (method, r)
            assert_ids(r)
    after = tree_snapshot(d.root, include_internal=True)
    assert after == before, snapshot_diff(before, after)


def test_create_bucket_of_an_existing_bucket_in_us_east_1(d):
    admin = d.client(access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY)
    # Yours: 200, as S3 answers in us-east-1 (here: a configured volume).
    admin.create_bucket(Bucket="vol-a")
    scoped = d.client(access_key=SCOPED_ADMIN, secret_key=SCOPED_SECRET)
    scoped.create_bucket(Bucket="vol-a")
    # Not yours: BucketAlreadyExists.
    with pytest.raises(ClientError) as ei:
        scoped.create_bucket(Bucket="vol-b")
    assert (err_status(ei.value), err_code(ei.value)) == (409, "BucketAlreadyExists")
    # Not existing and outside the key's scope: AccessDenied (not created).
    with pytest.raises(ClientError) as ei:
        scoped.create_bucket(Bucket="vol-zz")
    assert (err_status(ei.value), err_code(ei.value)) == (403, "AccessDenied")
    assert not (d.root / "vol-zz").exists()
    # Without admin: AccessDenied, even for an existing bucket.
    with pytest.raises(ClientError) as ei:
        d.client().create_bucket(Bucket="vol-a")
    assert err_code(ei.value) == "AccessDenied"


def test_create_bucket_of_an_owned_bucket_elsewhere_is_bucket_already_owned_by_you(tmp_path):
    d = start_daemon(tmp_path, keys=KEYS, region="eu-ro-1", volumes_root=True)
    try:
        admin = d.client(access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY)
        conf = {"LocationConstraint": "eu-ro-1"}
        admin.create_bucket(Bucket="vol-new", CreateBucketConfiguration=conf)
        for bucket in ("vol-new", "vol-a"):
            with pytest.raises(ClientError) as ei:
                admin.create_bucket(Bucket=bucket, CreateBucketConfiguration=conf)
            assert (err_status(ei.value), err_code(ei.value)) == (409, "BucketAlreadyOwnedByYou"), bucket
        scoped = d.client(access_key=SCOPED_ADMIN, secret_key=SCOPED_SECRET)
        with pytest.raises(ClientError) as ei:
            scoped.create_bucket(Bucket="vol-new", CreateBucketConfiguration=conf)
        assert (err_status(ei.value), err_code(ei.value)) == (409, "BucketAlreadyExists")
    finally:
        stop_daemon(d)


def test_an_empty_date_beside_x_amz_date_and_both_dates_are_accepted(d):
    d.client().put_object(Bucket="vol-a", Key="dated", Body=b"dated")
    now = email.utils.formatdate(usegmt=True)
    for extra in ({"date": ""}, {"date": now}):
        # Date not signed (as SDKs send it) ...
        target, hdrs = build_signed(d, "GET", "/vol-a/dated")
        r = send_raw(d, "GET", target, {**hdrs, **extra}, b"")
        assert (r.status, r.body) == (200, b"dated"), (extra, r)
        # ... and signed.
        r = raw_request(d, "GET", "/vol-a/dated", headers=extra)
        assert (r.status, r.body) == (200, b"dated"), (extra, r)
