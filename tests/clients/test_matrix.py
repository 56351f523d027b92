"""The client compatibility matrix (issue 8): every client, over HTTP and over HTTPS,
runs the same round trip against the real daemon. The volume directory is the oracle:
what a client wrote must be the file, byte for byte, at the path its key names.

Each test is parametrized over the clients in clients.CLIENTS; the `server` fixture over
http and https. An operation a client does not have is skipped with the reason.
"""

from __future__ import annotations

import re
import ssl
import urllib.request

import pytest

from clients import CLIENTS, RUST_BIN, Unsupported
from helpers import data, files_equal

BUCKET = "vol-a"

#: Keys that clients must encode (in the path, in x-amz-copy-source, in listings).
SPECIAL_NAMES = [
    "with space.txt",
    "hash#mark.txt",
    "per%cent.txt",
    "per%20cent-literal.txt",
    "plus+sign.txt",
    "ünïcødé/日本語 ファイル.txt",
    "mixed #%+ ü.txt",
]


@pytest.fixture(params=list(CLIENTS))
def client(request, server, tmp_path):
    name = request.param
    if name == "rust" and not RUST_BIN.exists():
        pytest.skip(f"the Rust SDK driver is not built ({RUST_BIN}); scripts/test builds it "
                    "unless S3VOL_CLIENTS_RUST=0")
    return CLIENTS[name](server, tmp_path)


def attempt(fn, *args):
    try:
        return fn(*args)
    except Unsupported as e:
        pytest.skip(str(e))


def write(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_list_buckets(client):
    names = client.list_buckets()
    assert {"vol-a", "vol-b"} <= set(names), names


def test_small_object_round_trip(client, server, prefix, tmp_path):
    body = data(1000, prefix)
    key = f"{prefix}/small.txt"
    client.put(BUCKET, key, write(tmp_path / "up.txt", body))
    assert (server.vol(BUCKET) / key).read_bytes() == body
    client.get(BUCKET, key, tmp_path / "down.txt")
    assert (tmp_path / "down.txt").read_bytes() == body


def ops_on(d, key: str | None = None) -> list[str]:
    """The S3 operations the daemon logged (on `key`), in order (its request log lines)."""
    needle = f'key="{key}"' if key is not None else ""
    ops = []
    for line in d.log.read_text(errors="replace").splitlines():
        m = re.search(r' op="([^"]+)"', line)
        if m and " request " in line and needle in line:
            ops.append(m.group(1))
    return ops


def test_64mib_object_round_trip(client, server, prefix, tmp_path, big_file):
    key = f"{prefix}/big.bin"
    client.upload_big(BUCKET, key, big_file)
    assert files_equal(server.vol(BUCKET) / key, big_file)
    ops = ops_on(server, key)
    assert "CompleteMultipartUpload" in ops and ops.count("UploadPart") >= 8, ops
    client.get(BUCKET, key, tmp_path / "big.down")
    assert files_equal(tmp_path / "big.down", big_file)


def test_special_character_keys(client, server, prefix, tmp_path):
    keys = [f"{prefix}/{n}" for n in SPECIAL_NAMES]
    for i, key in enumerate(keys):
        client.put(BUCKET, key, write(tmp_path / f"up{i}", key.encode()))
        assert (server.vol(BUCKET) / key).read_bytes() == key.encode(), key
    listed, _ = client.list(BUCKET, f"{prefix}/", None)
    assert sorted(listed) == sorted(keys)
    for i, key in enumerate(keys):
        client.get(BUCKET, key, tmp_path / f"down{i}")
        assert (tmp_path / f"down{i}").read_bytes() == key.encode(), key


def test_list_prefix_and_delimiter(client, server, prefix):
    vol = server.vol(BUCKET)
    tree = ["tree/a.txt", "tree/b/c.txt", "tree/b/d/e.txt", "tree/f g/h.txt", "tree-sibling.txt"]
    for rel in tree:
        write(vol / prefix / rel, rel.encode())
    p = f"{prefix}/tree/"
    keys, prefixes = client.list(BUCKET, p, "/")
    assert (keys, sorted(prefixes)) == ([p + "a.txt"], [p + "b/", p + "f g/"])
    keys, prefixes = client.list(BUCKET, p + "b/", "/")
    assert (keys, prefixes) == ([p + "b/c.txt"], [p + "b/d/"])
    keys, prefixes = client.list(BUCKET, p, None)
    assert (sorted(keys), prefixes) == (sorted(f"{prefix}/{r}" for r in tree[:4]), [])


def test_copy(client, server, prefix, tmp_path):
    src, dst = f"{prefix}/src #1 ü.txt", f"{prefix}/copy/dst+%.txt"
    body = data(3000, prefix)
    write(server.vol(BUCKET) / src, body)
    client.copy(BUCKET, src, BUCKET, dst)
    assert (server.vol(BUCKET) / dst).read_bytes() == body
    assert (server.vol(BUCKET) / src).read_bytes() == body


def test_delete(client, server, prefix):
    key = f"{prefix}/doomed file#.txt"
    path = write(server.vol(BUCKET) / key, b"x")
    client.delete(BUCKET, key)
    assert not path.exists()


def test_batch_delete(client, server, prefix):
    keys = [f"{prefix}/batch/{n}" for n in ("a.txt", "b c.txt", "d/e+f.txt", "ü.txt")]
    for k in keys:
        write(server.vol(BUCKET) / k, b"x")
    keep = write(server.vol(BUCKET) / f"{prefix}/keep.txt", b"keep")
    before = ops_on(server).count(client.batch_delete_op)
    attempt(client.delete_many, BUCKET, f"{prefix}/batch/", keys)
    assert [k for k in keys if (server.vol(BUCKET) / k).exists()] == []
    assert keep.read_bytes() == b"keep"
    sent = ops_on(server).count(client.batch_delete_op) - before
    assert sent == (len(keys) if client.batch_delete_op == "DeleteObject" else 1), (client.batch_delete_op, sent)


def test_presigned_get(client, server, prefix):
    key = f"{prefix}/shared file+1.txt"
    body = data(500, prefix)
    write(server.vol(BUCKET) / key, body)
    url = attempt(client.presign, BUCKET, key)
    assert url.startswith(server.url + "/"), url
    ctx = ssl.create_default_context(cafile=str(server.ca)) if server.ca else None
    with urllib.request.urlopen(url, context=ctx, timeout=30) as r:  # no credentials: the URL alone
        assert r.read() == body


def test_sync_twice_second_transfers_nothing_then_only_a_change(client, server, prefix, tmp_path):
    if client.sync_command is None:
        pytest.skip(f"{client.name} has no sync command")
    local = tmp_path / "local"
    files = {"a.txt": b"a" * 10, "sub/b.bin": data(200_000, 1), "sub/deeper/c d.txt": b"c",
             "ü #+.txt": b"u"}
    for rel, content in files.items():
        write(local / rel, content)
    assert client.sync(local, BUCKET, prefix) == len(files)
    for rel, content in files.items():
        assert (server.vol(BUCKET) / prefix / rel).read_bytes() == content, rel
    assert client.sync(local, BUCKET, prefix) == 0
    # A changed file is sent again, and only that one.
    write(local / "a.txt", b"changed, and longer")
    assert client.sync(local, BUCKET, prefix) == 1
    assert (server.vol(BUCKET) / prefix / "a.txt").read_bytes() == b"changed, and longer"


def test_client_version(client, record_property):
    """Not a check of s3vol: records the client's version (junit property, -rA output)."""
    v = client.version()
    record_property("client_version", f"{client.name} {v}")
    print(f"{client.name} {v}")
    assert re.match(r"^\d+\.\d+", v), v
