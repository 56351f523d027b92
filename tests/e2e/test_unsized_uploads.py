"""Uploads without a length (issue 14 item 7; SPEC.md "Details clients rely on"): PutObject
and UploadPart with `Transfer-Encoding: chunked` and no Content-Length are streamed, and
every limit (max_object_size, quota, max_part_size, the body rate and deadlines) holds on the
bytes as they arrive. An over-limit stream is cut with S3's error and commits nothing: the
files on disk are unchanged and no temp file is left behind.
"""

from __future__ import annotations

import hashlib
import select
import socket
import subprocess
import time

import pytest

from helpers import (ACCESS_KEY, SECRET_KEY, MiB, RawResponse, build_signed, internal_files, start_daemon,
                     stop_daemon, tree_snapshot, snapshot_diff, xml_find_all)


@pytest.fixture
def d(tmp_path):
    d = start_daemon(tmp_path, volume_extra='quota = "24MiB"\nmax_part_size = "3MiB"',
                     extra_config='min_body_rate = "64KiB"\nidle_timeout = "3s"')
    yield d
    stop_daemon(d)


def stream_chunked(d, method: str, path: str, chunks, *, query=None, pause: float = 0.0,
                   max_seconds: float = 60) -> tuple[RawResponse, int]:
    """Send a SigV4 request (UNSIGNED-PAYLOAD) whose body is `Transfer-Encoding: chunked`
    with no Content-Length, one HTTP chunk per item of `chunks` (an iterable, maybe endless),
    `pause` seconds apart. Stops sending when the server answers or closes. Returns the
    response and the body bytes sent."""
    target, hdrs = build_signed(d, method, path, query=query, payload_hash="UNSIGNED-PAYLOAD",
                                headers={"transfer-encoding": "chunked"})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    sock = socket.create_connection((d.host, d.port), timeout=30)
    sent, answered, start = 0, False, time.monotonic()
    try:
        sock.sendall(head.encode())
        for chunk in chunks:
            if time.monotonic() - start > max_seconds:
                break
            if select.select([sock], [], [], 0)[0]:
                answered = True
                break
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
            sent += len(chunk)
            if pause:
                time.sleep(pause)
        if not answered:
            try:
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        return read_response(sock), sent
    finally:
        sock.close()


def read_response(sock) -> RawResponse:
    buf = b""
    deadline = time.monotonic() + 30
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        got = sock.recv(65536)
        if not got:
            break
        buf += got
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n and time.monotonic() < deadline:
            got = sock.recv(65536)
            if not got:
                break
            rest += got
    return RawResponse(status, headers, rest)


def blocks(n: int, size: int = 256 * 1024, seed: int = 7):
    for i in range(n):
        yield bytes([(seed + i) % 251]) * size


def endless(size: int = 256 * 1024):
    i = 0
    while True:
        yield bytes([i % 251]) * size
        i += 1


def assert_nothing_left(d, before):
    after = tree_snapshot(d.root)
    assert after == before, snapshot_diff(before, after)
    tmp = {k: v for k, v in internal_files(d.vol("vol-a")).items() if "tmp" in k}
    assert not tmp, f"temp files left behind: {tmp}"


def test_a_chunked_put_without_length_is_stored_whole(d):
    body = b"".join(blocks(12, 100_000))
    r, _ = stream_chunked(d, "PUT", "/vol-a/streamed/obj.bin", blocks(12, 100_000))
    assert r.status == 200, r
    assert r.headers["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    assert (d.vol("vol-a") / "streamed/obj.bin").read_bytes() == body
    s3 = d.client()
    assert s3.head_object(Bucket="vol-a", Key="streamed/obj.bin")["ContentLength"] == len(body)


def test_curl_upload_from_stdin_with_sigv4(d):
    body = b"from a pipe\n" * 50_000
    url = f"{d.url}/vol-a/curl/piped.txt"
    # S3 wants x-amz-content-sha256 with SigV4; curl (7.88) signs the value given here.
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-T", "-",
                        "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        "--aws-sigv4", f"aws:amz:{d.region}:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}", url],
                       input=body, capture_output=True, timeout=60)
    assert r.stdout.rsplit(b"\n", 1)[-1] == b"200", r
    assert (d.vol("vol-a") / "curl/piped.txt").read_bytes() == body


def test_a_chunked_upload_part_without_length_is_staged_and_completes(d):
    s3 = d.client()
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="mp/streamed")["UploadId"]
    p1 = b"".join(blocks(8))
    r, _ = stream_chunked(d, "PUT", "/vol-a/mp/streamed", blocks(8),
                          query=[("partNumber", "1"), ("uploadId", uid)])
    assert r.status == 200, r
    assert r.headers["etag"] == '"%s"' % hashlib.md5(p1).hexdigest()
    parts = s3.list_parts(Bucket="vol-a", Key="mp/streamed", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(p1))]
    s3.complete_multipart_upload(Bucket="vol-a", Key="mp/streamed", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r.headers["etag"]}]})
    assert (d.vol("vol-a") / "mp/streamed").read_bytes() == p1


def test_a_chunked_part_over_max_part_size_is_cut_with_entity_too_large(d):
    s3 = d.client()
    uid = s3.create_multipart_upload(Bucket="vol-a", Key="mp/big")["UploadId"]
    before = tree_snapshot(d.root)
    r, sent = stream_chunked(d, "PUT", "/vol-a/mp/big", endless(),
                             query=[("partNumber", "1"), ("uploadId", uid)], max_seconds=30)
    assert (r.status, r.code) == (400, "EntityTooLarge"), r
    assert sent < 3 * MiB + 70 * MiB, "cut soon after max_part_size, not at the end of the stream"
    assert s3.list_parts(Bucket="vol-a", Key="mp/big", UploadId=uid).get("Parts", []) == []
    assert_nothing_left(d, before)


def test_a_chunked_put_over_the_quota_is_cut_and_leaves_the_old_object(d):
    s3 = d.client()
    s3.put_object(Bucket="vol-a", Key="q/obj", Body=b"the old object")
    (d.vol("vol-a") / "pod-file.bin").write_bytes(b"p" * (4 * MiB))
    before = tree_snapshot(d.root)
    # 24 MiB quota, 4 MiB used: a 40 MiB stream is cut mid-way.
    r, sent = stream_chunked(d, "PUT", "/vol-a/q/obj", blocks(160))
    assert (r.status, r.code) == (403, "QuotaExceeded"), r
    assert (d.vol("vol-a") / "q/obj").read_bytes() == b"the old object"
    assert_nothing_left(d, before)
    # What fits still does, also without a length.
    r, _ = stream_chunked(d, "PUT", "/vol-a/q/obj", blocks(40))
    assert r.status == 200, r
    assert (d.vol("vol-a") / "q/obj").stat().st_size == 40 * 256 * 1024


def test_an_endless_chunked_put_stops_at_max_object_size(tmp_path):
    d = start_daemon(tmp_path, volume_extra='max_object_size = "6MiB"')
    try:
        before = tree_snapshot(d.root)
        t0 = time.monotonic()
        r, sent = stream_chunked(d, "PUT", "/vol-a/endless", endless(), max_seconds=40)
        assert (r.status, r.code) == (400, "EntityTooLarge"), r
        assert time.monotonic() - t0 < 40
        assert not (d.vol("vol-a") / "endless").exists()
        assert_nothing_left(d, before)
    finally:
        stop_daemon(d)


def test_a_slow_chunked_put_is_cut_with_request_timeout(d):
    before = tree_snapshot(d.root)
    # One byte a second: under min_body_rate, and each wait within idle_timeout.
    r, _ = stream_chunked(d, "PUT", "/vol-a/slow", (b"x" for _ in range(60)), pause=1.0, max_seconds=50)
    assert (r.status, r.code) == (400, "RequestTimeout"), r
    assert xml_find_all(r.body, "RequestId")
    assert not (d.vol("vol-a") / "slow").exists()
    assert_nothing_left(d, before)


def test_a_stalled_chunked_put_is_cut_with_request_timeout(d):
    before = tree_snapshot(d.root)

    def stall():
        yield b"first"
        time.sleep(6)  # past idle_timeout (3 s)
        yield b"late"

    r, _ = stream_chunked(d, "PUT", "/vol-a/stalled", stall(), max_seconds=30)
    assert (r.status, r.code) == (400, "RequestTimeout"), r
    assert not (d.vol("vol-a") / "stalled").exists()
    assert_nothing_left(d, before)


def test_tiny_chunks_do_not_cost_memory_per_byte(tmp_path):
    """A body of 1-byte chunks: each used to be queued as its own buffer, holding the
    network buffer it was cut from, about 12 MiB of daemon memory per upload (outside
    attack pass). Four such uploads in flight now cost the daemon far less than the old
    per-chunk cost (about 6 MiB each at this size), and every byte still lands."""
    from pathlib import Path

    d = start_daemon(tmp_path)
    try:
        payload = 160 * 1024
        body = b"%x\r\n" % 1 + b"x" + b"\r\n"
        socks = []
        for i in range(4):
            target, hdrs = build_signed(d, "PUT", f"/vol-a/tiny/{i}", payload_hash="UNSIGNED-PAYLOAD",
                                        headers={"transfer-encoding": "chunked"})
            s = socket.create_connection((d.host, d.port), timeout=30)
            s.sendall((f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                       + "\r\n").encode())
            socks.append(s)

        def rss_kib():
            for line in Path(f"/proc/{d.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
            raise AssertionError("no VmRSS")

        before = rss_kib()
        for s in socks:
            s.sendall(body * payload)
        time.sleep(1.0)  # let the daemon take in what was sent
        grown_mib = (rss_kib() - before) / 1024
        for s in socks:
            s.sendall(b"0\r\n\r\n")
        for i, s in enumerate(socks):
            r = read_response(s)
            s.close()
            assert r.status == 200, (r.status, r.body)
            assert (d.vol("vol-a") / "tiny" / str(i)).read_bytes() == b"x" * payload
        assert grown_mib < 12, f"daemon memory grew {grown_mib:.1f} MiB for 4 uploads of 1-byte chunks"
    finally:
        stop_daemon(d)
