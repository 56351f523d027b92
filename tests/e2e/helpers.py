"""Helpers for the s3vol end-to-end suite: start the real daemon, drive it with the
aws CLI, boto3 and hand-signed raw HTTP, and inspect the volume directories.

Nothing here talks to anything but 127.0.0.1, and the only process ever killed is
the daemon this module started (by its own PID).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import queue
import re
import socket
import ssl
import stat
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SYNTH_ETAG_RE = re.compile(r'^"[0-9a-f]{32}-1"$')
MD5_ETAG_RE = re.compile(r'^"[0-9a-f]{32}"$')
MULTIPART_ETAG_RE = re.compile(r'^"[0-9a-f]{32}-(\d+)"$')
INTERNAL_DIR = ".s3vol"

ACCESS_KEY = "AKE2ETESTER00001"
SECRET_KEY = "e2e-secret-Ooqu6eiv+ahth0Ka/phei9Ie"
READER_ACCESS_KEY = "AKE2EREADER00001"
READER_SECRET_KEY = "e2e-reader-secret-Xo4phaeK"
ADMIN_ACCESS_KEY = "AKE2EADMIN000001"
ADMIN_SECRET_KEY = "e2e-admin-secret-ieR0ohqu"


def s3vol_bin() -> Path:
    p = Path(os.environ.get("S3VOL_BIN", "target/debug/s3vol"))
    return p if p.is_absolute() else REPO_ROOT / p


# --------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------


def data(n: int, seed: int | str = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    import random

    return random.Random(str(seed)).randbytes(n)


def md5_etag(b: bytes) -> str:
    return '"%s"' % hashlib.md5(b).hexdigest()


def multipart_etag_of_file(path: Path, part_size: int) -> str:
    digests = []
    with open(path, "rb") as f:
        while True:
            chunk = f.read(part_size)
            if not chunk:
                break
            digests.append(hashlib.md5(chunk).digest())
    return '"%s-%d"' % (hashlib.md5(b"".join(digests)).hexdigest(), len(digests))


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def crc32_b64(b: bytes) -> str:
    return b64(zlib.crc32(b).to_bytes(4, "big"))


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c_b64(b: bytes) -> str:
    crc = 0xFFFFFFFF
    for x in b:
        crc = _CRC32C[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return b64((crc ^ 0xFFFFFFFF).to_bytes(4, "big"))


def sha256_b64(b: bytes) -> str:
    return b64(hashlib.sha256(b).digest())


def sha1_b64(b: bytes) -> str:
    return b64(hashlib.sha1(b).digest())


def files_equal(a: Path, b: Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(4 * MiB), fb.read(4 * MiB)
            if x != y:
                return False
            if not x:
                return True


def err_code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "")


def err_status(e: ClientError) -> int:
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def expect_client_error(fn, status: int, codes, *args, **kwargs) -> ClientError:
    """Call fn and assert it fails with the given HTTP status and one of the codes."""
    if isinstance(codes, str):
        codes = (codes,)
    try:
        r = fn(*args, **kwargs)
    except ClientError as e:
        got = (err_status(e), err_code(e))
        assert got[0] == status and (not codes or got[1] in codes), (
            f"expected {status} {codes}, got {got[0]} {got[1]}: {e.response.get('Error')}"
        )
        return e
    raise AssertionError(f"expected {status} {codes}, but the call succeeded: {r!r:.300}")


# --------------------------------------------------------------------------------------
# File tree snapshots ("nothing else changed")
# --------------------------------------------------------------------------------------


def tree_snapshot(root: Path, include_internal: bool = False) -> dict:
    """Map of relative path -> description of every entry beneath root (symlinks not
    followed). Regular files are described by inode, size, mtime and content hash;
    directories only by their existence (their mtime may move when a writer creates
    and removes scratch entries). Volume-internal directories are skipped unless asked."""
    snap = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        if not include_internal:
            dirnames[:] = [d for d in dirnames if d != INTERNAL_DIR]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                snap[rel] = ("dir",)
            elif stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                if st.st_size <= 8 * MiB:
                    with open(p, "rb") as f:
                        h.update(f.read())
                snap[rel] = ("file", st.st_ino, st.st_size, st.st_mtime_ns, h.hexdigest())
            else:
                snap[rel] = ("special", stat.S_IFMT(st.st_mode))
    return snap


def snapshot_diff(before: dict, after: dict) -> str:
    lines = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            lines.append(f"{k}: {before.get(k)} -> {after.get(k)}")
    return "\n".join(lines)


def internal_files(vol: Path) -> dict:
    """Regular files under a volume's internal directory: relpath -> size."""
    out = {}
    base = Path(vol) / INTERNAL_DIR
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[os.path.relpath(p, base)] = st.st_size
    return out


def files_under(d: Path) -> list[str]:
    """All non-directory entries under d, relative, internal directory excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = [x for x in dirnames if x != INTERNAL_DIR]
        out += [os.path.relpath(os.path.join(dirpath, f), d) for f in filenames]
    return sorted(out)


# --------------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------------


def make_tls_material(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return cert, key


def toml_str(s) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return toml_str(v)


DEFAULT_KEYS = [
    dict(name="tester", access_key=ACCESS_KEY, secret_key=SECRET_KEY, volumes=["*"],
         permissions=["read", "write", "delete"]),
    dict(name="reader", access_key=READER_ACCESS_KEY, secret_key=READER_SECRET_KEY,
         volumes=["vol-a"], permissions=["read"]),
]


def write_credentials(path: Path, keys, mode: int = 0o600) -> Path:
    parts = []
    for k in keys:
        parts.append("[[key]]\n" + "".join(f"{n} = {toml_value(v)}\n" for n, v in k.items()))
    path.write_text("\n".join(parts))
    os.chmod(path, mode)
    return path


@dataclass
class Daemon:
    proc: subprocess.Popen
    scheme: str
    host: str
    port: int
    root: Path  # holds the volume directories, canary file and "outside" directory
    vols: dict
    region: str
    ca: Path | None
    log: Path
    workdir: Path
    stdout_lines: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def verify(self):
        return str(self.ca) if self.ca else True

    def vol(self, name: str = "vol-a") -> Path:
        return self.vols[name]

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # ---- clients ----

    def client(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=None, **config):
        cfg = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                   connect_timeout=10, read_timeout=120)
        cfg.update(config)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name=region or self.region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            verify=self.verify, config=Config(**cfg),
        )

    def aws_env(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        cfg = self.workdir / "aws-config"
        if not cfg.exists():
            cfg.write_text("[default]\ns3 =\n    addressing_style = path\n")
        empty = self.workdir / "aws-credentials-empty"
        empty.touch()
        env.update(
            AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_DEFAULT_REGION=self.region, AWS_CONFIG_FILE=str(cfg),
            AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_PAGER="",
            AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1",
            PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8", LANG="C.UTF-8",
        )
        return env

    def aws(self, *args, check: bool = True, timeout: int = 300, **envkw) -> subprocess.CompletedProcess:
        """Run the aws CLI against this daemon. args after the service, e.g. ("s3", "ls")."""
        cmd = ["aws", "--endpoint-url", self.url]
        if self.ca:
            cmd += ["--ca-bundle", str(self.ca)]
        cmd += [str(a) for a in args]
        r = subprocess.run(cmd, env=self.aws_env(**envkw), capture_output=True, timeout=timeout,
                           text=True, encoding="utf-8", errors="replace")
        if check and r.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(cmd[3:])} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\n"
                f"stderr:\n{r.stderr[-3000:]}"
            )
        return r

    def aws_json(self, *args, **kw):
        r = self.aws(*args, "--output", "json", **kw)
        return json.loads(r.stdout) if r.stdout.strip() else {}

    # ---- raw signed HTTP ----

    def raw(self, method: str, path: str, **kw) -> "RawResponse":
        return raw_request(self, method, path, **kw)


def start_daemon(workdir: Path, *, tls: tuple[Path, Path] | None = None, region: str = "us-east-1",
                 volumes=("vol-a", "vol-b"), missing_volumes=(), keys=None, extra_config: str = "",
                 volume_extra: str = "", volumes_root: bool = False, timeout: float = 30,
                 min_part_size: str | None = "0") -> Daemon:
    """Start the real s3vol binary on 127.0.0.1:0 with a generated config.

    min_part_size: every volume's `min_part_size` ("0": tests may upload small parts;
    None: the daemon's default, S3's 5 MiB).

    Layout: workdir/root/{vol-*, canary.txt, outside/} and workdir/etc/{config,credentials,log}.
    """
    binary = s3vol_bin()
    if not binary.exists():
        pytest.fail(f"s3vol binary not found at {binary} (build it or set S3VOL_BIN)", pytrace=False)
    root = workdir / "root"
    etc = workdir / "etc"
    root.mkdir(parents=True)
    etc.mkdir()
    (root / "canary.txt").write_bytes(b"canary: must never change\n")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(b"outside the volumes\n")
    vols = {}
    base = root / "volumes" if volumes_root else root
    base.mkdir(exist_ok=True)
    for name in volumes:
        (base / name).mkdir()
        vols[name] = base / name
    creds = write_credentials(etc / "credentials.toml", keys or DEFAULT_KEYS)
    lines = [
        'listen = "127.0.0.1:0"',
        f"region = {toml_str(region)}",
        f"credentials = {toml_str(creds)}",
    ]
    if tls:
        lines += [f"tls_cert = {toml_str(tls[0])}", f"tls_key = {toml_str(tls[1])}"]
    if volumes_root:
        lines.append(f"volumes_root = {toml_str(base)}")
    lines.append(extra_config)
    part_line = f"min_part_size = {toml_str(min_part_size)}" if min_part_size is not None else ""
    if not volumes_root:
        for name in list(volumes) + list(missing_volumes):
            path = base / name
            lines += ["", "[[volume]]", f"name = {toml_str(name)}", f"path = {toml_str(path)}", part_line,
                      volume_extra]
    elif part_line:
        lines += ["", "[volume_defaults]", part_line]
    config = etc / "s3vol.toml"
    config.write_text("\n".join(lines) + "\n")
    log = etc / "s3vol.log"
    logf = open(log, "wb")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env.setdefault("RUST_BACKTRACE", "1")
    proc = subprocess.Popen([str(binary), "serve", "--config", str(config)], cwd=etc,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf, env=env)
    logf.close()
    d = Daemon(proc=proc, scheme="https" if tls else "http", host="127.0.0.1", port=0, root=root,
               vols=vols, region=region, ca=tls[0] if tls else None, log=log, workdir=etc)
    addr = wait_listening(proc, d.stdout_lines, timeout)
    if addr is None:
        rc = proc.poll()
        stop_daemon(d)
        pytest.fail(f"s3vol did not print 'listening on ADDR' within {timeout}s (exit code {rc});"
                    f"\nstdout: {d.stdout_lines}\nlog tail:\n{d.log_tail()}", pytrace=False)
    d.host, d.port = addr
    assert d.host == "127.0.0.1", f"daemon bound {d.host}, expected 127.0.0.1"
    return d


LISTEN_RE = re.compile(r"^listening on (\d+\.\d+\.\d+\.\d+):(\d+)\s*$")


def wait_listening(proc: subprocess.Popen, sink: list, timeout: float):
    q: queue.Queue = queue.Queue()

    def reader():
        for raw_line in proc.stdout:
            line = raw_line.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            m = LISTEN_RE.match(line)
            if m:
                q.put((m.group(1), int(m.group(2))))
        q.put(None)

    threading.Thread(target=reader, daemon=True).start()
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


def stop_daemon(d: Daemon) -> int | None:
    """Stop our daemon by its PID. Returns the exit code it had before we stopped it
    (None when it was still running, as it should be)."""
    early = d.proc.poll()
    if early is None:
        d.proc.terminate()
        try:
            d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(timeout=15)
    return early


# --------------------------------------------------------------------------------------
# Raw SigV4 (paths sent verbatim)
# --------------------------------------------------------------------------------------


def uri_encode(s: str, encode_slash: bool) -> str:
    out = []
    for byte in s.encode("utf-8"):
        c = chr(byte)
        if (byte < 128 and c.isalnum()) or c in "-_.~":
            out.append(c)
        elif c == "/" and not encode_slash:
            out.append(c)
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


@dataclass
class Signed:
    headers: dict
    signature: str
    key: bytes
    amz_date: str
    scope: str


def sign_v4(method: str, raw_path: str, query, headers: dict, payload_hash: str, host: str,
            access_key: str, secret_key: str, region: str, when: dt.datetime | None = None) -> Signed:
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    h = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    for k, v in (headers or {}).items():
        h[k.lower()] = str(v)
    canon = {k: " ".join(v.strip().split()) for k, v in h.items()}
    names = sorted(canon)
    canonical_headers = "".join(f"{k}:{canon[k]}\n" for k in names)
    signed_headers = ";".join(names)
    canonical_query = "&".join(
        f"{a}={b}" for a, b in sorted((uri_encode(k, True), uri_encode(v, True)) for k, v in (query or []))
    )
    canonical_request = "\n".join([
        method, uri_encode(unquote(raw_path), False), canonical_query, canonical_headers,
        signed_headers, payload_hash,
    ])
    scope = f"{date}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = signing_key(secret_key, date, region)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                          f"SignedHeaders={signed_headers}, Signature={sig}")
    return Signed(h, sig, key, amz_date, scope)


def aws_chunked_signed(chunks: list[bytes], s: Signed) -> bytes:
    """Encode chunks as STREAMING-AWS4-HMAC-SHA256-PAYLOAD, each chunk signed."""
    prev, out = s.signature, []
    for chunk in list(chunks) + [b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", s.amz_date, s.scope, prev, EMPTY_SHA256,
                         hashlib.sha256(chunk).hexdigest()])
        sig = hmac.new(s.key, sts.encode(), hashlib.sha256).hexdigest()
        out.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), sig.encode()) + chunk + b"\r\n")
        prev = sig
    return b"".join(out)


def aws_chunked_unsigned_trailer(chunks: list[bytes], trailer_name: str, trailer_value: str) -> bytes:
    out = [b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks if c]
    out.append(b"0\r\n" + f"{trailer_name}:{trailer_value}\r\n".encode() + b"\r\n")
    return b"".join(out)


@dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes

    @property
    def code(self) -> str:
        return xml_error_code(self.body)

    def __repr__(self):
        return f"<{self.status} {self.code or ''} {self.body[:300]!r}>"


def xml_error_code(body: bytes) -> str:
    if not body:
        return ""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ""
    for el in root.iter():
        if el.tag.split("}")[-1] == "Code":
            return el.text or ""
    return ""


def xml_find_all(body: bytes, tag: str) -> list[str]:
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if el.tag.split("}")[-1] == tag]


def _connection(d: Daemon, timeout: float):
    if d.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(d.ca))
        return http.client.HTTPSConnection(d.host, d.port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection(d.host, d.port, timeout=timeout)


def build_signed(d: Daemon, method: str, path: str, *, query=None, headers=None, body: bytes = b"",
                 payload_hash: str | None = None, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                 region=None, when=None) -> tuple[str, dict]:
    """Return (request target, headers) for a SigV4 header-signed request."""
    if payload_hash is None:
        payload_hash = hashlib.sha256(body).hexdigest()
    s = sign_v4(method, path, query, headers or {}, payload_hash, f"{d.host}:{d.port}",
                access_key, secret_key, region or d.region, when)
    target = path
    if query:
        target += "?" + "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in query)
    return target, s.headers


def raw_request(d: Daemon, method: str, path: str, *, query=None, headers=None, body: bytes = b"",
                payload_hash: str | None = None, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                region=None, when=None, sign: bool = True, timeout: float = 20, conn=None) -> RawResponse:
    """Send one request with `path` exactly as given (no normalisation), SigV4 header
    signed unless sign=False."""
    if sign:
        target, hdrs = build_signed(d, method, path, query=query, headers=headers, body=body,
                                    payload_hash=payload_hash, access_key=access_key,
                                    secret_key=secret_key, region=region, when=when)
    else:
        target = path + ("?" + "&".join(f"{uri_encode(k, True)}={uri_encode(v, True)}" for k, v in query)
                         if query else "")
        hdrs = {"host": f"{d.host}:{d.port}", **(headers or {})}
    return send_raw(d, method, target, hdrs, body, timeout, conn=conn)


def send_raw(d: Daemon, method: str, target: str, headers: dict, body: bytes, timeout: float = 20,
             conn=None) -> RawResponse:
    """Send one request. With `conn` (from `connection()`), on that kept-alive
    connection, which is left open."""
    own = conn is None
    if own:
        conn = _connection(d, timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if "content-length" not in {k.lower() for k in headers} and (body or method in ("PUT", "POST")):
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        rbody = b"" if method == "HEAD" else resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, rbody)
    finally:
        if own:
            conn.close()


def connection(d: Daemon, timeout: float = 20):
    """A keep-alive connection for several `raw_request(..., conn=)` calls."""
    return _connection(d, timeout)


def put_cut_off(d: Daemon, path: str, declared: int, send: bytes, linger_reset: bool = False) -> None:
    """Send a signed PUT declaring `declared` bytes, send only `send`, then close."""
    target, hdrs = build_signed(d, "PUT", path, payload_hash="UNSIGNED-PAYLOAD")
    hdrs["content-length"] = str(declared)
    head = f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    sock = socket.create_connection((d.host, d.port), timeout=10)
    if d.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(d.ca))
        sock = ctx.wrap_socket(sock, server_hostname=d.host)
    try:
        sock.sendall(head.encode())
        sock.sendall(send)
        time.sleep(0.3)
        if linger_reset:
            import struct

            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def admin_addr(d) -> str:
    """The admin listener's `ip:port`, from the daemon's `admin on ADDR` line (waits up to 10 s)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for line in d.stdout_lines:
            m = re.match(r"^admin on (\S+)$", line)
            if m:
                return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no 'admin on' line: {d.stdout_lines}")


def wait_until(pred, timeout: float = 10, interval: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


def unique_prefix(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------
# boto3 conveniences
# --------------------------------------------------------------------------------------


def list_all_keys(s3, bucket: str, prefix: str = "", **kw) -> list[str]:
    keys, token = [], None
    while True:
        args = dict(Bucket=bucket, Prefix=prefix, **kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        keys += [o["Key"] for o in r.get("Contents", [])]
        if not r.get("IsTruncated"):
            return keys
        token = r["NextContinuationToken"]


def get_bytes(s3, bucket: str, key: str, **kw) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def parse_ls(stdout: str) -> tuple[list[str], list[str]]:
    """Parse `aws s3 ls` output into (prefixes, object names) in output order."""
    prefixes, objects = [], []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        s = line.strip()
        if s.startswith("PRE "):
            prefixes.append(s[4:])
            continue
        parts = line.split(None, 3)
        assert len(parts) == 4, f"unexpected ls line {line!r}"
        objects.append(parts[3])
    return prefixes, objects
