"""Virtual-hosted-style addressing (issue 8): with `domain = "s3.localtest"`, the host
`vol-a.s3.localtest` names bucket vol-a, alongside path style on the same listener.

Names are pointed at 127.0.0.1 without touching the machine's resolver: curl gets
`--resolve`, boto3 runs in this process with `socket.getaddrinfo` patched for
`*.s3.localtest` only, and the JavaScript SDK's driver gives its HTTP agents a `lookup`
that does the same.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.request
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config

from clients import JsSdk
from conftest import VHOST_DOMAIN
from helpers import ACCESS_KEY, SECRET_KEY, data, expect_client_error

_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture
def localtest_resolves_to_loopback(monkeypatch):
    """In this process only: *.s3.localtest and s3.localtest -> 127.0.0.1."""

    def getaddrinfo(host, *args, **kw):
        if isinstance(host, str) and (host == VHOST_DOMAIN or host.endswith("." + VHOST_DOMAIN)):
            host = "127.0.0.1"
        return _real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def named_url(d, name: str = VHOST_DOMAIN) -> str:
    return f"{d.scheme}://{name}:{d.port}"


def vclient(d, style: str = "virtual", name: str = VHOST_DOMAIN):
    return boto3.session.Session().client(
        "s3", endpoint_url=named_url(d, name), region_name=d.region, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, verify=str(d.ca) if d.ca else True,
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}),
    )


def test_boto3_virtual_hosted_round_trip(server, prefix, tmp_path, localtest_resolves_to_loopback):
    s3 = vclient(server)
    seen = []
    s3.meta.events.register("before-send.s3", lambda request, **_: seen.append(request.url))
    key = f"{prefix}/dir/hello world+#ü.txt"
    body = data(2000, prefix)
    s3.put_object(Bucket="vol-a", Key=key, Body=body)
    assert (server.vol("vol-a") / key).read_bytes() == body
    assert s3.get_object(Bucket="vol-a", Key=key)["Body"].read() == body
    r = s3.list_objects_v2(Bucket="vol-a", Prefix=f"{prefix}/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == [f"{prefix}/dir/"]
    s3.copy_object(Bucket="vol-b", Key=key, CopySource={"Bucket": "vol-a", "Key": key})
    assert (server.vol("vol-b") / key).read_bytes() == body
    big = tmp_path / "big.bin"
    big.write_bytes(data(20 * 1024 * 1024, "vhost"))
    s3.upload_file(str(big), "vol-b", f"{prefix}/big.bin")  # multipart, 8 MiB parts
    assert (server.vol("vol-b") / f"{prefix}/big.bin").read_bytes() == big.read_bytes()
    s3.delete_objects(Bucket="vol-b", Delete={"Objects": [{"Key": key}, {"Key": f"{prefix}/big.bin"}]})
    assert not (server.vol("vol-b") / key).exists()
    # Every request really went to BUCKET.s3.localtest (no fallback to path style).
    assert seen and all(u.startswith((named_url(server, "vol-a." + VHOST_DOMAIN),
                                      named_url(server, "vol-b." + VHOST_DOMAIN))) for u in seen), seen
    expect_client_error(s3.head_bucket, 404, ("NoSuchBucket", "404"), Bucket="nope-bucket")


def test_virtual_hosted_presigned_get(server, prefix, localtest_resolves_to_loopback):
    key = f"{prefix}/shared.txt"
    (server.vol("vol-a") / prefix).mkdir()
    (server.vol("vol-a") / key).write_bytes(b"shared via vhost")
    for sig in ("s3v4", "s3"):  # SigV4 and boto3's default SigV2 presigned URLs
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=named_url(server), region_name=server.region, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, verify=str(server.ca) if server.ca else True,
            config=Config(s3={"addressing_style": "virtual"}, signature_version=sig))
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "vol-a", "Key": key}, ExpiresIn=300)
        assert url.startswith(named_url(server, "vol-a." + VHOST_DOMAIN) + "/"), url
        ctx = ssl.create_default_context(cafile=str(server.ca)) if server.ca else None
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            assert r.read() == b"shared via vhost", sig


def test_path_style_still_works_on_the_base_domain_and_other_names(server, prefix,
                                                                   localtest_resolves_to_loopback):
    key = f"{prefix}/p.txt"
    for name in (VHOST_DOMAIN, "localhost", "127.0.0.1"):
        s3 = vclient(server, style="path", name=name)
        s3.put_object(Bucket="vol-a", Key=key, Body=name.encode())
        assert (server.vol("vol-a") / key).read_bytes() == name.encode()
        assert "vol-a" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def curl(d, *args) -> subprocess.CompletedProcess:
    cmd = ["curl", "-sS", "--max-time", "30", "--aws-sigv4", f"aws:amz:{d.region}:s3",
           "--user", f"{ACCESS_KEY}:{SECRET_KEY}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
           "--resolve", f"vol-a.{VHOST_DOMAIN}:{d.port}:127.0.0.1",
           "--resolve", f"{VHOST_DOMAIN}:{d.port}:127.0.0.1"]
    if d.ca:
        cmd += ["--cacert", str(d.ca)]
    return subprocess.run(cmd + list(args), capture_output=True, timeout=60)


def test_curl_virtual_hosted_with_resolve(server, prefix, tmp_path):
    key = f"{prefix}/curl.txt"
    (server.vol("vol-a") / prefix).mkdir()
    (server.vol("vol-a") / key).write_bytes(b"from the file tree")
    base = named_url(server, "vol-a." + VHOST_DOMAIN)
    r = curl(server, "-f", f"{base}/{key}")
    assert r.returncode == 0 and r.stdout == b"from the file tree", r.stderr
    up = tmp_path / "up.txt"
    up.write_bytes(b"put by curl")
    r = curl(server, "-f", "-T", str(up), f"{base}/{prefix}/put.txt")
    assert r.returncode == 0, r.stderr
    assert (server.vol("vol-a") / prefix / "put.txt").read_bytes() == b"put by curl"
    # Encoded by hand: curl 7.88 puts the query into the canonical request as written.
    r = curl(server, "-f", f"{base}/?list-type=2&prefix={quote(prefix + '/', safe='')}")
    assert r.returncode == 0 and f"<Key>{prefix}/put.txt</Key>".encode() in r.stdout, r.stdout
    # The base domain itself is path style.
    r = curl(server, "-f", f"{named_url(server)}/vol-a/{key}")
    assert r.returncode == 0 and r.stdout == b"from the file tree", r.stderr


def test_js_sdk_virtual_hosted_round_trip(server, prefix, tmp_path, localtest_resolves_to_loopback):
    js = JsSdk(server, tmp_path, virtual_domain=VHOST_DOMAIN)
    vol = server.vol("vol-a")
    key = f"{prefix}/js dir/a+b #ü.txt"
    up = tmp_path / "up"
    up.write_bytes(data(5000, prefix))
    js.put("vol-a", key, up)
    assert (vol / key).read_bytes() == up.read_bytes()
    js.get("vol-a", key, tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == up.read_bytes()
    assert js.list("vol-a", f"{prefix}/", "/") == ([], [f"{prefix}/js dir/"])
    js.copy("vol-a", key, "vol-b", key)
    assert (server.vol("vol-b") / key).read_bytes() == up.read_bytes()
    url = js.presign("vol-a", key)
    assert url.startswith(named_url(server, "vol-a." + VHOST_DOMAIN) + "/"), url
    ctx = ssl.create_default_context(cafile=str(server.ca)) if server.ca else None
    with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
        assert r.read() == up.read_bytes()
    js.delete_many("vol-b", f"{prefix}/", [key])
    assert not (server.vol("vol-b") / key).exists()
    # Every request the SDK sent named its bucket in the host (none fell back to path style).
    hosts = {line.split(": ", 1)[1] for line in js.stderr if line.startswith("request-host: ")}
    assert hosts == {f"vol-a.{VHOST_DOMAIN}", f"vol-b.{VHOST_DOMAIN}"}, js.stderr
