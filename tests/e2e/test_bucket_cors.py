"""Bucket CORS through the S3 API (issue 14 item 8): PutBucketCors, GetBucketCors and
DeleteBucketCors for keys with `admin`, stored on the volume (`.s3vol/bucket-cors.json`),
so that a second daemon on the same volume directory serves the same rules at once; the
config's rules stay the default; a link planted as the stored file is never followed."""

from __future__ import annotations

import json
import os

import pytest
import requests

from helpers import (ACCESS_KEY, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, DEFAULT_KEYS, expect_client_error,
                     start_daemon, stop_daemon, toml_str)

KEYS = DEFAULT_KEYS + [dict(name="admin", access_key=ADMIN_ACCESS_KEY, secret_key=ADMIN_SECRET_KEY,
                            volumes=["*"], permissions=["read", "write", "delete", "admin"])]
CONFIG_ORIGIN = "https://config.test"
STORED_ORIGIN = "https://stored.test"
CONFIG_RULE = ("[[volume.cors]]\n"
               f"allowed_origins = [{toml_str(CONFIG_ORIGIN)}]\n"
               'allowed_methods = ["GET"]\n')
RULES = [
    {"ID": "uploads", "AllowedOrigins": [STORED_ORIGIN, "https://*.stored.test"], "AllowedMethods": ["PUT", "POST"],
     "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 120},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Two daemons serving the same volume directory `vol-a`, as two nodes would."""
    one = start_daemon(tmp_path_factory.mktemp("node1"), keys=KEYS, volume_extra=CONFIG_RULE)
    shared = one.vol("vol-a")
    extra = f'[[volume]]\nname = "vol-a"\npath = {toml_str(shared)}\n' + CONFIG_RULE
    two = start_daemon(tmp_path_factory.mktemp("node2"), keys=KEYS, volumes=(), extra_config=extra)
    two.vols["vol-a"] = shared
    yield one, two
    for d in (one, two):
        assert stop_daemon(d) is None, d.log_tail()


@pytest.fixture
def admin(nodes):
    s3 = nodes[0].client(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    yield s3
    s3.delete_bucket_cors(Bucket="vol-a")


def stored(d) -> os.PathLike:
    return d.vol("vol-a") / ".s3vol" / "bucket-cors.json"


def preflight(d, origin, method="GET", headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{d.url}/vol-a/some/key", headers=h, timeout=10)


def test_get_bucket_cors_without_a_stored_configuration_is_404_even_with_config_rules(nodes):
    s3 = nodes[0].client(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    e = expect_client_error(s3.get_bucket_cors, 404, "NoSuchCORSConfiguration", Bucket="vol-a")
    assert e.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    # The config's rule is the default.
    r = preflight(nodes[0], CONFIG_ORIGIN)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == CONFIG_ORIGIN


def test_put_get_delete_bucket_cors_round_trip_stored_on_the_volume(nodes, admin):
    one, _ = nodes
    admin.put_bucket_cors(Bucket="vol-a", CORSConfiguration={"CORSRules": RULES})
    got = admin.get_bucket_cors(Bucket="vol-a")["CORSRules"]
    assert got == RULES
    f = stored(one)
    assert f.is_file() and not f.is_symlink()
    assert json.loads(f.read_text())["rules"][0]["allowed_origins"][0] == STORED_ORIGIN
    assert not [n for n in os.listdir(one.vol("vol-a") / ".s3vol" / "tmp") if n.startswith("cors-")]
    r = admin.delete_bucket_cors(Bucket="vol-a")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not f.exists()
    expect_client_error(admin.get_bucket_cors, 404, "NoSuchCORSConfiguration", Bucket="vol-a")
    # Deleting none is no error, as S3.
    assert admin.delete_bucket_cors(Bucket="vol-a")["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("rules,code,message", [
    ([{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}], "InvalidRequest",
     "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
    ([{"AllowedOrigins": ["https://*.*.test"], "AllowedMethods": ["GET"]}], "InvalidRequest",
     "can not have more than one wildcard"),
    ([{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101, "MalformedXML", None),
])
def test_put_bucket_cors_refuses_what_s3_refuses_and_stores_nothing(nodes, admin, rules, code, message):
    e = expect_client_error(admin.put_bucket_cors, 400, code, Bucket="vol-a",
                            CORSConfiguration={"CORSRules": rules})
    if message:
        assert message in e.response["Error"]["Message"]
    assert not stored(nodes[0]).exists()


def test_bucket_cors_needs_admin(nodes):
    one, _ = nodes
    writer = one.client()  # read, write, delete: no admin
    for op, kw in [(writer.put_bucket_cors, dict(CORSConfiguration={"CORSRules": RULES})),
                   (writer.delete_bucket_cors, {}),
                   # Reading the rules is an admin setting too (issue 14 item 8).
                   (writer.get_bucket_cors, {})]:
        expect_client_error(op, 403, "AccessDenied", Bucket="vol-a", **kw)
    assert not stored(one).exists()


def test_second_node_serves_the_stored_rules_at_once(nodes, admin):
    one, two = nodes
    assert preflight(two, STORED_ORIGIN, "PUT").status_code == 403
    admin.put_bucket_cors(Bucket="vol-a", CORSConfiguration={"CORSRules": RULES})
    # No wait: the other node reads the volume's configuration on the next preflight.
    r = preflight(two, STORED_ORIGIN, "PUT", "Content-Type, x-amz-meta-a")
    assert r.status_code == 200, r.content
    assert r.headers["access-control-allow-origin"] == STORED_ORIGIN
    assert r.headers["access-control-allow-methods"] == "PUT, POST"
    assert r.headers["access-control-max-age"] == "120"
    r = preflight(two, "https://app.stored.test", "POST")
    assert r.status_code == 200
    # The stored configuration replaces the config's rules (the second rule allows GET from
    # anywhere, so a DELETE from the config's origin is refused).
    assert preflight(two, CONFIG_ORIGIN, "DELETE").status_code == 403
    assert two.client(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY).get_bucket_cors(Bucket="vol-a")["CORSRules"] == RULES
    # Actual responses follow the stored rules too.
    one.client().put_object(Bucket="vol-a", Key="cors/x.txt", Body=b"x")
    url = two.client().generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": "cors/x.txt"})
    r = requests.get(url, headers={"Origin": "https://anything.test"}, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://anything.test"
    assert r.headers["access-control-allow-methods"] == "GET"
    admin.delete_bucket_cors(Bucket="vol-a")
    assert preflight(two, STORED_ORIGIN, "PUT").status_code == 403
    r = preflight(two, CONFIG_ORIGIN)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == CONFIG_ORIGIN


def test_a_link_planted_as_the_stored_file_is_not_followed(nodes, admin, tmp_path):
    one, two = nodes
    evil = one.root / "outside" / "evil-cors.json"
    evil_text = json.dumps({"rules": [{"allowed_origins": ["https://evil.test"], "allowed_methods": ["PUT"]}]})
    evil.write_text(evil_text)
    os.symlink(evil, stored(one))
    try:
        for d in (one, two):
            assert preflight(d, "https://evil.test", "PUT").status_code == 403
            assert preflight(d, CONFIG_ORIGIN).status_code == 200, "the config's rules apply"
        expect_client_error(admin.get_bucket_cors, 404, "NoSuchCORSConfiguration", Bucket="vol-a")
        # A PUT replaces the link itself and writes nothing through it.
        admin.put_bucket_cors(Bucket="vol-a", CORSConfiguration={"CORSRules": RULES})
        assert not stored(one).is_symlink() and stored(one).is_file()
        assert evil.read_text() == evil_text
        # A FIFO (a pod's trap for a blocking read) is ignored too.
        stored(one).unlink()
        os.mkfifo(stored(one))
        assert preflight(two, STORED_ORIGIN, "PUT").status_code == 403
        assert preflight(two, CONFIG_ORIGIN).status_code == 200
    finally:
        if stored(one).is_symlink() or stored(one).exists():
            stored(one).unlink()
    assert ACCESS_KEY  # the default keys are in force
