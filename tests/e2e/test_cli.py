"""The aws CLI against s3vol, over http and https: cp, sync, ls, mv, rm, s3api."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import (
    MD5_ETAG_RE, MULTIPART_ETAG_RE, MiB, data, files_equal, files_under, md5_etag,
    multipart_etag_of_file, parse_ls,
)

TRICKY_KEYS = [
    "with space/file name.txt",
    "données/é ü.txt",
    "a+b#c%d?e.txt",
    "semi;colon&amp=eq,comma'quote(1).txt",
    "日本語/ファイル.bin",
    "tilde~and!bang@at$dollar.txt",
]


def test_cp_small_up_and_down(server, prefix, tmp_path):
    src = tmp_path / "small.txt"
    body = b"hello s3vol\n" * 100
    src.write_bytes(body)
    r = server.aws("s3", "cp", src, f"s3://vol-a/{prefix}/small.txt", "--no-progress")
    assert "upload:" in r.stdout
    on_disk = server.vol("vol-a") / prefix / "small.txt"
    assert on_disk.is_file() and on_disk.read_bytes() == body

    dst = tmp_path / "down.txt"
    server.aws("s3", "cp", f"s3://vol-a/{prefix}/small.txt", dst, "--no-progress")
    assert dst.read_bytes() == body

    head = server.aws_json("s3api", "head-object", "--bucket", "vol-a", "--key", f"{prefix}/small.txt")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == md5_etag(body)


def test_cp_100mib_multipart_up_and_down(server, prefix, tmp_path, big_file):
    key = f"{prefix}/big.bin"
    server.aws("s3", "cp", big_file, f"s3://vol-a/{key}", "--no-progress")
    on_disk = server.vol("vol-a") / key
    assert on_disk.is_file(), "uploaded object is not a file at its key path"
    assert files_equal(on_disk, big_file), "volume file differs from the uploaded file"

    head = server.aws_json("s3api", "head-object", "--bucket", "vol-a", "--key", key)
    assert head["ContentLength"] == 100 * MiB
    m = MULTIPART_ETAG_RE.match(head["ETag"])
    assert m, f"a 100 MiB cp must be multipart; ETag {head['ETag']}"
    parts = int(m.group(1))
    assert parts > 1
    if parts == 13:  # the CLI's default 8 MiB part size
        assert head["ETag"] == multipart_etag_of_file(big_file, 8 * MiB)

    dst = tmp_path / "big-down.bin"
    server.aws("s3", "cp", f"s3://vol-a/{key}", dst, "--no-progress")
    assert files_equal(dst, big_file), "downloaded file differs"
    # multipart staging is gone once the upload completed
    assert not [p for p in server.vol("vol-a").rglob("*") if p.is_file() and p.stat().st_size >= 8 * MiB
                and p != on_disk], "a staged part was left behind"


def make_tree(root, seed):
    files = {
        "top.txt": data(100, seed + "1"),
        "empty.txt": b"",
        "d1/one.bin": data(5000, seed + "2"),
        "d1/d2/two.bin": data(70000, seed + "3"),
        "d1/d2/d3/three.txt": data(10, seed + "4"),
        "dir with space/f i l e.txt": data(33, seed + "5"),
        "uni/é.txt": data(44, seed + "6"),
        "x-y/z": data(1, seed + "7"),
        "x.y": data(2, seed + "8"),
        "x0": data(3, seed + "9"),
    }
    for rel, b in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
    return files


def upload_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(("upload:", "download:", "copy:", "delete:"))]


def test_sync_up_twice_then_down(server, prefix, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src, prefix)
    r = server.aws("s3", "sync", src, f"s3://vol-a/{prefix}/", "--no-progress")
    assert len(upload_lines(r.stdout)) == len(files), r.stdout
    vol = server.vol("vol-a") / prefix
    for rel, b in files.items():
        assert (vol / rel).read_bytes() == b, rel

    r2 = server.aws("s3", "sync", src, f"s3://vol-a/{prefix}/", "--no-progress")
    assert upload_lines(r2.stdout) == [], f"second sync transferred something:\n{r2.stdout}"
    assert r2.stdout.strip() == ""

    # change one file's size: exactly that one is uploaded again
    (src / "d1/one.bin").write_bytes(b"changed")
    r3 = server.aws("s3", "sync", src, f"s3://vol-a/{prefix}/", "--no-progress")
    lines = upload_lines(r3.stdout)
    assert len(lines) == 1 and "one.bin" in lines[0], r3.stdout

    down = tmp_path / "down"
    server.aws("s3", "sync", f"s3://vol-a/{prefix}/", down, "--no-progress")
    d = subprocess.run(["diff", "-r", str(src), str(down)], capture_output=True, text=True)
    assert d.returncode == 0, d.stdout + d.stderr


def test_tricky_keys_cp_ls_get(server, prefix, tmp_path):
    for i, key in enumerate(TRICKY_KEYS):
        body = data(100 + i, key)
        src = tmp_path / f"src{i}"
        src.write_bytes(body)
        server.aws("s3", "cp", src, f"s3://vol-a/{prefix}/{key}", "--no-progress")
        assert (server.vol("vol-a") / prefix / key).read_bytes() == body, key
        dst = tmp_path / f"dst{i}"
        server.aws("s3", "cp", f"s3://vol-a/{prefix}/{key}", dst, "--no-progress")
        assert dst.read_bytes() == body, key
        head = server.aws_json("s3api", "head-object", "--bucket", "vol-a", "--key", f"{prefix}/{key}")
        assert head["ContentLength"] == len(body)

    r = server.aws("s3", "ls", "--recursive", f"s3://vol-a/{prefix}/")
    _, objects = parse_ls(r.stdout)
    expected = sorted((f"{prefix}/{k}" for k in TRICKY_KEYS), key=lambda s: s.encode())
    assert objects == expected

    r = server.aws("s3", "ls", f"s3://vol-a/{prefix}/")
    prefixes, objects = parse_ls(r.stdout)
    assert sorted(prefixes) == sorted({k.split("/")[0] + "/" for k in TRICKY_KEYS if "/" in k})
    assert objects == sorted((k for k in TRICKY_KEYS if "/" not in k), key=lambda s: s.encode())

    listing = server.aws_json("s3api", "list-objects-v2", "--bucket", "vol-a", "--prefix", f"{prefix}/")
    assert [o["Key"] for o in listing["Contents"]] == expected


ORDER_KEYS = ["a!", "a-b", "a.txt", "a/b", "a/c/d", "a0", "a~", "aé", "b"]


def test_ls_order_recursive_and_not(server, prefix, tmp_path):
    src = tmp_path / "f"
    for k in ORDER_KEYS:
        src.write_bytes(k.encode())
        server.aws("s3", "cp", src, f"s3://vol-a/{prefix}/{k}", "--no-progress")
    assert ORDER_KEYS == sorted(ORDER_KEYS, key=lambda s: s.encode())

    r = server.aws("s3", "ls", "--recursive", f"s3://vol-a/{prefix}/")
    _, objects = parse_ls(r.stdout)
    assert objects == [f"{prefix}/{k}" for k in ORDER_KEYS]

    r = server.aws("s3", "ls", f"s3://vol-a/{prefix}/")
    prefixes, objects = parse_ls(r.stdout)
    assert prefixes == ["a/"]
    assert objects == [k for k in ORDER_KEYS if "/" not in k]

    r = server.aws("s3", "ls", f"s3://vol-a/{prefix}/a/")
    prefixes, objects = parse_ls(r.stdout)
    assert prefixes == ["c/"] and objects == ["b"]

    v2 = server.aws_json("s3api", "list-objects-v2", "--bucket", "vol-a", "--prefix", f"{prefix}/")
    assert [o["Key"] for o in v2["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS]
    v2d = server.aws_json("s3api", "list-objects-v2", "--bucket", "vol-a", "--prefix", f"{prefix}/",
                          "--delimiter", "/")
    assert [p["Prefix"] for p in v2d["CommonPrefixes"]] == [f"{prefix}/a/"]
    assert [o["Key"] for o in v2d["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS if "/" not in k]
    v1 = server.aws_json("s3api", "list-objects", "--bucket", "vol-a", "--prefix", f"{prefix}/")
    assert [o["Key"] for o in v1["Contents"]] == [f"{prefix}/{k}" for k in ORDER_KEYS]


def test_mv_and_rm_recursive(server, prefix, tmp_path):
    vol_a, vol_b = server.vol("vol-a"), server.vol("vol-b")
    src = tmp_path / "m.txt"
    body = data(1234, prefix)
    src.write_bytes(body)

    server.aws("s3", "mv", src, f"s3://vol-a/{prefix}/m.txt", "--no-progress")
    assert not src.exists(), "local file still there after mv up"
    assert (vol_a / prefix / "m.txt").read_bytes() == body

    server.aws("s3", "mv", f"s3://vol-a/{prefix}/m.txt", f"s3://vol-a/{prefix}/sub/moved.txt", "--no-progress")
    assert not (vol_a / prefix / "m.txt").exists()
    assert (vol_a / prefix / "sub" / "moved.txt").read_bytes() == body

    server.aws("s3", "mv", f"s3://vol-a/{prefix}/sub/moved.txt", f"s3://vol-b/{prefix}/across.txt",
               "--no-progress")
    assert (vol_b / prefix / "across.txt").read_bytes() == body
    assert not (vol_a / prefix / "sub" / "moved.txt").exists()

    tree = tmp_path / "tree"
    files = make_tree(tree, prefix)
    server.aws("s3", "cp", "--recursive", tree, f"s3://vol-a/{prefix}/tree/", "--no-progress")
    assert sorted(files_under(vol_a / prefix / "tree")) == sorted(files)

    r = server.aws("s3", "rm", "--recursive", f"s3://vol-a/{prefix}/")
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("delete:")]) == len(files)
    assert server.aws("s3", "ls", "--recursive", f"s3://vol-a/{prefix}/", check=False).stdout.strip() == ""
    leftovers = files_under(vol_a / prefix) if (vol_a / prefix).exists() else []
    assert leftovers == [], f"files left in the volume after rm --recursive: {leftovers}"
    assert not (vol_a / prefix).exists(), "directories s3vol created were not removed"

    server.aws("s3", "rm", f"s3://vol-b/{prefix}/across.txt")
    assert not (vol_b / prefix).exists()


def test_s3api_get_object_range_head_conditions(server, prefix, tmp_path):
    key = f"{prefix}/range.bin"
    body = bytes(range(256)) * 4
    src = tmp_path / "r"
    src.write_bytes(body)
    server.aws("s3", "cp", src, f"s3://vol-a/{key}", "--no-progress")

    out = tmp_path / "out"
    r = server.aws_json("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--range", "bytes=0-9", out)
    assert out.read_bytes() == body[:10]
    assert r["ContentLength"] == 10
    assert r["ContentRange"] == f"bytes 0-9/{len(body)}"

    r = server.aws_json("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--range", "bytes=-5", out)
    assert out.read_bytes() == body[-5:]
    assert r["ContentRange"] == f"bytes {len(body) - 5}-{len(body) - 1}/{len(body)}"

    r = server.aws_json("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--range", "bytes=1000-", out)
    assert out.read_bytes() == body[1000:]

    head = server.aws_json("s3api", "head-object", "--bucket", "vol-a", "--key", key)
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == md5_etag(body) and MD5_ETAG_RE.match(head["ETag"])
    etag = head["ETag"]

    r = server.aws("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--if-none-match", etag, out,
                   check=False)
    assert r.returncode != 0 and "304" in r.stderr, r.stderr
    r = server.aws("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--if-match", '"0123"', out,
                   check=False)
    assert r.returncode != 0 and "PreconditionFailed" in r.stderr, r.stderr
    r = server.aws_json("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--if-match", etag, out)
    assert out.read_bytes() == body

    r = server.aws("s3api", "get-object", "--bucket", "vol-a", "--key", key, "--range", "bytes=5000-6000",
                   out, check=False)
    assert r.returncode != 0 and "InvalidRange" in r.stderr, r.stderr

    r = server.aws("s3api", "head-object", "--bucket", "vol-a", "--key", f"{prefix}/missing", check=False)
    assert r.returncode != 0 and "404" in r.stderr
    r = server.aws("s3api", "get-object", "--bucket", "vol-a", "--key", f"{prefix}/missing", out, check=False)
    assert r.returncode != 0 and "NoSuchKey" in r.stderr
