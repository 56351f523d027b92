"""Listing details (issue 14 item 4): ListBuckets paging in name order, the one stable owner
in object and multipart listings, an empty continuation token, and ListObjects v1 with
`encoding-type=url`.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from helpers import err_code, raw_request, start_daemon, stop_daemon, xml_find_all

VOLS = ("vol-c", "vol-a", "other", "vol-b")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("listing"), volumes=VOLS)
    yield d
    stop_daemon(d)


def test_list_buckets_pages_by_name_with_prefix(d):
    s3 = d.client()
    everything = s3.list_buckets()
    assert [b["Name"] for b in everything["Buckets"]] == ["other", "vol-a", "vol-b", "vol-c"]
    assert "ContinuationToken" not in everything
    first = s3.list_buckets(MaxBuckets=2)
    assert [b["Name"] for b in first["Buckets"]] == ["other", "vol-a"]
    token = first["ContinuationToken"]
    second = s3.list_buckets(MaxBuckets=2, ContinuationToken=token)
    assert [b["Name"] for b in second["Buckets"]] == ["vol-b", "vol-c"]
    assert "ContinuationToken" not in second
    pre = s3.list_buckets(Prefix="vol-", MaxBuckets=1)
    assert [b["Name"] for b in pre["Buckets"]] == ["vol-a"] and pre["Prefix"] == "vol-"
    rest = s3.list_buckets(Prefix="vol-", ContinuationToken=pre["ContinuationToken"])
    assert [b["Name"] for b in rest["Buckets"]] == ["vol-b", "vol-c"]
    pages = s3.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 1})
    assert [b["Name"] for p in pages for b in p["Buckets"]] == ["other", "vol-a", "vol-b", "vol-c"]
    for bad in ("0", "10001", "x"):
        r = raw_request(d, "GET", "/", query=[("max-buckets", bad)])
        assert (r.status, r.code) == (400, "InvalidArgument"), (bad, r)
    with pytest.raises(ClientError) as ei:
        s3.list_buckets(ContinuationToken="!!not-a-token!!")
    assert err_code(ei.value) == "InvalidArgument"


def test_fetch_owner_names_the_list_buckets_owner_everywhere(d):
    s3 = d.client()
    owner = s3.list_buckets()["Owner"]
    assert owner["ID"] and owner["DisplayName"]
    for k in ("o/a", "o/b"):
        s3.put_object(Bucket="vol-a", Key=k, Body=b"x")
    (d.vol("vol-a") / "o" / "pod-written").write_bytes(b"by a pod")
    v2 = s3.list_objects_v2(Bucket="vol-a", Prefix="o/", FetchOwner=True)["Contents"]
    assert [c["Key"] for c in v2] == ["o/a", "o/b", "o/pod-written"]
    assert all(c["Owner"] == owner for c in v2), v2
    plain = s3.list_objects_v2(Bucket="vol-a", Prefix="o/")["Contents"]
    assert all("Owner" not in c for c in plain)
    v1 = s3.list_objects(Bucket="vol-a", Prefix="o/")["Contents"]
    assert all(c["Owner"] == owner for c in v1), v1
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="o/mp")["UploadId"]
    s3.upload_part(Bucket="vol-a", Key="o/mp", UploadId=uid, PartNumber=1, Body=b"p")
    parts = s3.list_parts(Bucket="vol-a", Key="o/mp", UploadId=uid)
    assert parts["Owner"] == owner
    assert parts["Initiator"] == {"ID": "tester", "DisplayName": "tester"}
    up = [u for u in s3.list_multipart_uploads(Bucket="vol-a")["Uploads"] if u["UploadId"] == uid][0]
    assert up["Owner"] == owner and up["Initiator"]["ID"] == "tester"
    s3.abort_multipart_upload(Bucket="vol-a", Key="o/mp", UploadId=uid)


def test_an_empty_continuation_token_is_no_token(d):
    s3 = d.client()
    for k in ("e/1", "e/2"):
        s3.put_object(Bucket="vol-b", Key=k, Body=b"x")
    r = raw_request(d, "GET", "/vol-b", query=[("list-type", "2"), ("prefix", "e/"), ("continuation-token", "")])
    assert r.status == 200, r
    assert xml_find_all(r.body, "Key") == ["e/1", "e/2"]
    assert xml_find_all(r.body, "ContinuationToken") == []


def test_list_objects_v1_url_encoding(d):
    s3 = d.client()
    keys = ["sp ace/a b+c", "sp ace/é=ü", "sp ace/sub dir/x", "sp ace/z&z"]
    for k in keys:
        s3.put_object(Bucket="vol-c", Key=k, Body=b"x")
    q = [("prefix", "sp ace/"), ("delimiter", "/"), ("marker", "sp ace/a b+c"), ("max-keys", "2"),
         ("encoding-type", "url")]
    r = raw_request(d, "GET", "/vol-c", query=q)
    assert r.status == 200, r
    assert xml_find_all(r.body, "EncodingType") == ["url"]
    # Percent-encoding with '/' kept (as s3vol encodes ListObjectsV2 too; S3 clients
    # percent-decode every field).
    assert xml_find_all(r.body, "Prefix")[0] == "sp%20ace/"
    assert xml_find_all(r.body, "Marker") == ["sp%20ace/a%20b%2Bc"]
    assert xml_find_all(r.body, "Delimiter") == ["/"]
    # UTF-8 byte order: "sub dir/" < "z&z" < "é=ü".
    assert xml_find_all(r.body, "Key") == ["sp%20ace/z%26z"]
    assert xml_find_all(r.body, "Prefix")[1:] == ["sp%20ace/sub%20dir/"]
    assert xml_find_all(r.body, "NextMarker") == ["sp%20ace/z%26z"], r.body
    # boto3 asks for url encoding itself and decodes every field.
    page = s3.list_objects(Bucket="vol-c", Prefix="sp ace/", Delimiter="/", Marker="sp ace/a b+c")
    assert [c["Key"] for c in page["Contents"]] == ["sp ace/z&z", "sp ace/é=ü"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["sp ace/sub dir/"]
    # botocore decodes Marker but not v1's top-level Prefix (S3 encodes it too).
    assert page["Marker"] == "sp ace/a b+c"
