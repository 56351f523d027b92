"""SIGHUP on a running daemon: the credentials file and the TLS certificate are reloaded
without dropping connections; a broken file is rejected with a log line and what was in
force stays (SPEC.md "Authentication and access", issue 5 item 2)."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import ssl

import pytest

from helpers import (
    build_signed, expect_client_error, make_tls_material, start_daemon, stop_daemon, wait_until,
    write_credentials,
)

OLD = dict(name="old", access_key="AKRELOADOLD00001", secret_key="old-secret", volumes=["*"],
           permissions=["read", "write", "delete"])
STAYS = dict(name="stays", access_key="AKRELOADSTAYS001", secret_key="stays-secret", volumes=["*"],
             permissions=["read"])
NEW = dict(name="new", access_key="AKRELOADNEW00001", secret_key="new-secret", volumes=["vol-a"],
           permissions=["read", "write"])


def hup_and_wait(d, needle: str, count_before: int) -> None:
    os.kill(d.proc.pid, signal.SIGHUP)
    ok = wait_until(lambda: d.log.read_text(errors="replace").count(needle) > count_before, timeout=10)
    assert ok, f"no {needle!r} log line after SIGHUP:\n{d.log_tail()}"


def log_count(d, needle: str) -> int:
    return d.log.read_text(errors="replace").count(needle)


def signed_get(conn, d, path, key):
    target, headers = build_signed(d, "GET", path, access_key=key["access_key"], secret_key=key["secret_key"])
    conn.request("GET", target, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


@pytest.fixture
def d(tmp_path):
    daemon = start_daemon(tmp_path, keys=[OLD, STAYS])
    (daemon.vol("vol-a") / "f.txt").write_bytes(b"data")
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def cl(d, key):
    return d.client(access_key=key["access_key"], secret_key=key["secret_key"])


def test_reload_removes_and_adds_keys_at_once(d):
    creds = d.workdir / "credentials.toml"
    old, stays = cl(d, OLD), cl(d, STAYS)
    assert old.get_object(Bucket="vol-a", Key="f.txt")["Body"].read() == b"data"
    expect_client_error(cl(d, NEW).list_objects_v2, 403, "InvalidAccessKeyId", Bucket="vol-a")
    # one kept-alive connection across the reload: it is not dropped
    conn = http.client.HTTPConnection(d.host, d.port, timeout=10)
    assert signed_get(conn, d, "/vol-a/f.txt", STAYS) == (200, b"data")

    write_credentials(creds, [STAYS, NEW])
    hup_and_wait(d, "credentials reloaded", log_count(d, "credentials reloaded"))

    assert signed_get(conn, d, "/vol-a/f.txt", STAYS) == (200, b"data"), "the open connection was dropped"
    status, body = signed_get(conn, d, "/vol-a/f.txt", OLD)
    assert status == 403 and b"InvalidAccessKeyId" in body, body
    conn.close()
    # the removed key fails on its very next request, through the client it already had
    expect_client_error(old.get_object, 403, "InvalidAccessKeyId", Bucket="vol-a", Key="f.txt")
    expect_client_error(old.put_object, 403, "InvalidAccessKeyId", Bucket="vol-a", Key="g.txt", Body=b"x")
    assert not (d.vol("vol-a") / "g.txt").exists()
    new = cl(d, NEW)
    new.put_object(Bucket="vol-a", Key="by-new.txt", Body=b"new key")
    assert (d.vol("vol-a") / "by-new.txt").read_bytes() == b"new key"
    expect_client_error(new.get_object, 403, "AccessDenied", Bucket="vol-b", Key="x")
    assert stays.get_object(Bucket="vol-a", Key="f.txt")["Body"].read() == b"data"
    r = d.aws("s3", "ls", "s3://vol-a/", access_key=NEW["access_key"], secret_key=NEW["secret_key"])
    assert "by-new.txt" in r.stdout


@pytest.mark.parametrize("breakage", ["syntax", "mode", "missing", "duplicate"])
def test_broken_credentials_file_keeps_the_old_keys(d, breakage):
    creds = d.workdir / "credentials.toml"
    if breakage == "syntax":
        creds.write_text("[[key]]\nname = \"half\naccess_key = ")
    elif breakage == "mode":
        write_credentials(creds, [NEW], mode=0o644)
    elif breakage == "missing":
        creds.unlink()
    else:
        write_credentials(creds, [NEW, dict(NEW, name="twin")])
    hup_and_wait(d, "credentials reload failed", log_count(d, "credentials reload failed"))
    line = [x for x in d.log.read_text(errors="replace").splitlines() if "credentials reload failed" in x][-1]
    for secret in (OLD["secret_key"], STAYS["secret_key"], NEW["secret_key"]):
        assert secret not in d.log.read_text(errors="replace"), "a secret was logged"
    assert "credentials" in line
    assert cl(d, OLD).get_object(Bucket="vol-a", Key="f.txt")["Body"].read() == b"data"
    expect_client_error(cl(d, NEW).list_objects_v2, 403, "InvalidAccessKeyId", Bucket="vol-a")


def cert_sha256(d) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((d.host, d.port), timeout=10) as s, ctx.wrap_socket(s) as t:
        return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def test_tls_certificate_reloads_on_sighup(tmp_path):
    live = tmp_path / "live"
    a = make_tls_material(tmp_path / "a")
    b = make_tls_material(tmp_path / "b")
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    cert.write_bytes(a[0].read_bytes())
    key.write_bytes(a[1].read_bytes())
    os.chmod(key, 0o600)
    d = start_daemon(tmp_path / "daemon", tls=(cert, key), keys=[OLD])
    try:
        first = cert_sha256(d)
        # a kept-alive HTTPS connection made with certificate A
        ctx = ssl.create_default_context(cafile=str(a[0]))
        conn = http.client.HTTPSConnection(d.host, d.port, timeout=10, context=ctx)
        assert signed_get(conn, d, "/vol-a/", OLD)[0] in (200, 404)

        cert.write_bytes(b[0].read_bytes())
        key.write_bytes(b[1].read_bytes())
        hup_and_wait(d, "TLS certificate reloaded", 0)
        second = cert_sha256(d)
        assert second != first, "new connections still get the old certificate"
        assert signed_get(conn, d, "/vol-a/", OLD)[0] in (200, 404), "the open connection was dropped"
        conn.close()
        d.ca = b[0]
        assert cl(d, OLD).list_buckets()["Buckets"]

        cert.write_text("not a certificate")
        hup_and_wait(d, "TLS certificate reload failed", 0)
        assert cert_sha256(d) == second, "a broken certificate replaced the good one"
        assert cl(d, OLD).list_buckets()["Buckets"]
    finally:
        assert stop_daemon(d) is None, d.log_tail()
