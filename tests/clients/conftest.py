"""Fixtures for the client matrix: the real daemon (tests/e2e/helpers.py), started once
per module and scheme (http, https with a self-signed certificate), and one adapter per
client (clients.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

import helpers  # noqa: E402
from helpers import MiB, start_daemon, stop_daemon, unique_prefix  # noqa: E402

#: Base domain for the virtual-hosted-style tests; resolved to 127.0.0.1 only inside the
#: test process and the clients it starts (never through the machine's resolver).
VHOST_DOMAIN = "s3.localtest"


def make_tls_material(d: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1, localhost and *.s3.localtest, and
    its key; the clients are given the certificate itself as their CA file.

    It says `CA:FALSE`: rustls (the Rust SDK) refuses a certificate that is a CA as the
    server's own (`CaUsedAsEndEntity`), and `openssl req -x509` marks it a CA by default."""
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    san = f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{VHOST_DOMAIN},DNS:*.{VHOST_DOMAIN}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth",
         "-addext", san, "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return cert, key


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=["http", "https"])
def server(request, tmp_path_factory, tls_material):
    """The daemon with volumes vol-a and vol-b (and the virtual-host domain), per scheme."""
    tls = tls_material if request.param == "https" else None
    workdir = tmp_path_factory.mktemp(f"{request.module.__name__}-{request.param}")
    d = start_daemon(workdir, tls=tls, extra_config=f'domain = "{VHOST_DOMAIN}"')  # d.ca: the cert
    yield d
    early = stop_daemon(d)
    if early is not None:
        pytest.fail(f"s3vol exited on its own (exit code {early});\nlog tail:\n{d.log_tail()}", pytrace=False)


@pytest.fixture
def prefix(request):
    return unique_prefix(request.node.name)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """64 MiB of random bytes."""
    p = tmp_path_factory.mktemp("big") / "big-64MiB.bin"
    with open(p, "wb") as f:
        for _ in range(16):
            f.write(os.urandom(4 * MiB))
    return p


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        for v in getattr(item, "funcargs", {}).values():
            if isinstance(v, helpers.Daemon):
                rep.sections.append((f"s3vol log tail ({v.url})", v.log_tail(40)))
