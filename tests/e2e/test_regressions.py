"""Regression tests, each named after what broke."""

from __future__ import annotations

import time

import pytest


def test_empty_put_with_expect_continue_does_not_stall_next_put(http_server, prefix, tmp_path):
    """boto/botocore#3755: a zero-length PUT with `Expect: 100-continue` got no interim
    `100 Continue`, and botocore misread the next response on the same pooled connection,
    stalling for its whole read timeout (seen as a 60 s hang in `aws s3 cp --recursive`).
    File-like bodies make botocore send the Expect header; one pooled connection makes the
    second PUT reuse the first one's connection."""
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    full = tmp_path / "full.txt"
    full.write_bytes(b"some content\n")
    s3 = http_server.client(read_timeout=5, retries={"max_attempts": 1}, max_pool_connections=1)
    for i in range(3):
        start = time.monotonic()
        with open(empty, "rb") as f:
            s3.put_object(Bucket="vol-a", Key=f"{prefix}/e{i}.txt", Body=f)
        with open(full, "rb") as f:
            s3.put_object(Bucket="vol-a", Key=f"{prefix}/f{i}.txt", Body=f)
        took = time.monotonic() - start
        assert took < 3, f"empty then non-empty PUT took {took:.1f}s: the connection was poisoned"
    assert (http_server.vol("vol-a") / prefix / "f2.txt").read_bytes() == b"some content\n"
