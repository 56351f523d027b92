"""Fixtures for the s3vol end-to-end suite.

Every module gets its own daemon (module scope) so that volume contents never leak
between modules; tests inside a module use fresh key prefixes (the `prefix` fixture).
`server` is parametrized over http and https; `http_server` is http only.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers  # noqa: E402
from helpers import MiB, start_daemon, stop_daemon, unique_prefix  # noqa: E402


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory):
    return helpers.make_tls_material(tmp_path_factory.mktemp("tls"))


def _run(request, tmp_path_factory, tls_material, scheme: str, **kw):
    tls = tls_material if scheme == "https" else None
    workdir = tmp_path_factory.mktemp(f"{request.module.__name__}-{scheme}")
    d = start_daemon(workdir, tls=tls, **kw)
    yield d
    early = stop_daemon(d)
    if early is not None:
        pytest.fail(f"s3vol exited on its own during the module (exit code {early});\n"
                    f"log tail:\n{d.log_tail()}", pytrace=False)


@pytest.fixture(scope="module", params=["http", "https"])
def server(request, tmp_path_factory, tls_material):
    """The daemon with two volumes (vol-a, vol-b), over http and over https."""
    yield from _run(request, tmp_path_factory, tls_material, request.param)


@pytest.fixture(scope="module")
def http_server(request, tmp_path_factory, tls_material):
    """The daemon with two volumes (vol-a, vol-b), over plain http."""
    yield from _run(request, tmp_path_factory, tls_material, "http")


@pytest.fixture
def prefix(request):
    """A fresh key prefix (no slash) for this test."""
    return unique_prefix(request.node.name)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """A 100 MiB file of random bytes."""
    p = tmp_path_factory.mktemp("big") / "big.bin"
    with open(p, "wb") as f:
        for _ in range(100 // 4):
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
