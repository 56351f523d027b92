"""One adapter per S3 client of the compatibility matrix, all with the same operations,
so that test_matrix.py runs one scenario against every client.

Each adapter drives the client the way its users do: the CLIs (aws, s3cmd, rclone) as
subprocesses with their own config and CA options, boto3 and minio-py in process, the
JavaScript SDK v3 and the Rust SDK through small drivers (js/driver.mjs,
rust/src/main.rs) that run one operation per call. Every client addresses the daemon at
127.0.0.1 path style, and over HTTPS trusts only the test CA.

An operation a client does not have raises Unsupported(reason); the test skips with it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from helpers import ACCESS_KEY, SECRET_KEY, Daemon

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "js"
RUST_DIR = HERE / "rust"
RUST_BIN = Path(os.environ.get("S3VOL_CLIENT_RUST_BIN", RUST_DIR / "target" / "debug" / "s3vol-client-rust"))


class Unsupported(Exception):
    """The client has no such operation (the reason says why)."""


def run(cmd, env=None, timeout=600, cwd=None, stderr_sink: list | None = None) -> str:
    """Runs a client command; returns its stdout, appends its stderr lines to stderr_sink."""
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, timeout=timeout,
                       text=True, encoding="utf-8", errors="replace")
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))[:400]} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    if stderr_sink is not None:
        stderr_sink += r.stderr.splitlines()
    return r.stdout


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "NODE_EXTRA"))}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", PYTHONIOENCODING="utf-8")
    return env


class Client:
    name = "?"
    #: What a sync command is called, or None.
    sync_command: str | None = None
    #: The operation delete_many sends.
    batch_delete_op = "DeleteObjects"

    def __init__(self, d: Daemon, work: Path):
        self.d, self.work = d, work

    def version(self) -> str:
        raise NotImplementedError

    def list_buckets(self) -> list[str]:
        raise NotImplementedError

    def put(self, bucket: str, key: str, path: Path) -> None:
        raise NotImplementedError

    def get(self, bucket: str, key: str, path: Path) -> None:
        raise NotImplementedError

    def upload_big(self, bucket: str, key: str, path: Path) -> None:
        """Upload a large file the way the client does it (multipart where it does)."""
        self.put(bucket, key, path)

    def list(self, bucket: str, prefix: str, delimiter: str | None) -> tuple[list[str], list[str]]:
        """(keys, common prefixes), both as full keys."""
        raise NotImplementedError

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        raise NotImplementedError

    def delete(self, bucket: str, key: str) -> None:
        raise NotImplementedError

    def delete_many(self, bucket: str, prefix: str, keys: list[str]) -> None:
        """Delete `keys` (all the objects under `prefix`) with one DeleteObjects request
        (or the client's own batch command)."""
        raise NotImplementedError

    def presign(self, bucket: str, key: str) -> str:
        raise Unsupported(f"{self.name} cannot presign")

    def sync(self, local: Path, bucket: str, prefix: str) -> int:
        """Sync a local directory up to bucket/prefix/; returns how many files it sent."""
        raise Unsupported(f"{self.name} has no sync command")


# ------------------------------------------------------------------------------ aws CLI


class AwsCli(Client):
    name = "aws CLI"
    sync_command = "aws s3 sync"

    def _aws(self, *args) -> str:
        return self.d.aws(*args).stdout

    def version(self):
        return run(["aws", "--version"]).split()[0].split("/")[1]

    def list_buckets(self):
        return [b["Name"] for b in self.d.aws_json("s3api", "list-buckets")["Buckets"]]

    def put(self, bucket, key, path):
        self._aws("s3", "cp", path, f"s3://{bucket}/{key}")

    def get(self, bucket, key, path):
        self._aws("s3", "cp", f"s3://{bucket}/{key}", path)

    def list(self, bucket, prefix, delimiter):
        args = ["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix]
        if delimiter:
            args += ["--delimiter", delimiter]
        r = self.d.aws_json(*args)
        return ([o["Key"] for o in r.get("Contents", [])], [p["Prefix"] for p in r.get("CommonPrefixes", [])])

    def copy(self, src_bucket, src_key, bucket, key):
        self._aws("s3", "cp", f"s3://{src_bucket}/{src_key}", f"s3://{bucket}/{key}")

    def delete(self, bucket, key):
        self._aws("s3", "rm", f"s3://{bucket}/{key}")

    def delete_many(self, bucket, prefix, keys):
        spec = json.dumps({"Objects": [{"Key": k} for k in keys], "Quiet": False})
        r = self.d.aws_json("s3api", "delete-objects", "--bucket", bucket, "--delete", spec)
        assert not r.get("Errors"), r

    def presign(self, bucket, key):
        return self._aws("s3", "presign", f"s3://{bucket}/{key}", "--expires-in", "600").strip()

    def sync(self, local, bucket, prefix):
        out = self._aws("s3", "sync", local, f"s3://{bucket}/{prefix}/", "--no-progress")
        return sum(1 for line in out.splitlines() if line.startswith("upload:"))


# ------------------------------------------------------------------------------ boto3


class Boto3(Client):
    name = "boto3"

    def __init__(self, d, work):
        super().__init__(d, work)
        self.s3 = d.client()

    def version(self):
        import boto3

        return boto3.__version__

    def list_buckets(self):
        return [b["Name"] for b in self.s3.list_buckets()["Buckets"]]

    def put(self, bucket, key, path):
        self.s3.put_object(Bucket=bucket, Key=key, Body=Path(path).read_bytes())

    def get(self, bucket, key, path):
        self.s3.download_file(bucket, key, str(path))  # ranged, parallel GETs when large

    def upload_big(self, bucket, key, path):
        self.s3.upload_file(str(path), bucket, key)  # multipart above 8 MiB

    def list(self, bucket, prefix, delimiter):
        keys, prefixes = [], []
        args = dict(Bucket=bucket, Prefix=prefix, **({"Delimiter": delimiter} if delimiter else {}))
        for page in self.s3.get_paginator("list_objects_v2").paginate(**args):
            keys += [o["Key"] for o in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return keys, prefixes

    def copy(self, src_bucket, src_key, bucket, key):
        self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key})

    def delete(self, bucket, key):
        self.s3.delete_object(Bucket=bucket, Key=key)

    def delete_many(self, bucket, prefix, keys):
        r = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
        assert not r.get("Errors"), r["Errors"]

    def presign(self, bucket, key):
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)


# ------------------------------------------------------------------------------ minio-py


class MinioPy(Client):
    name = "minio-py"

    def __init__(self, d, work):
        super().__init__(d, work)
        import urllib3
        from minio import Minio

        http = None
        if d.ca:
            http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(d.ca), timeout=120,
                                       retries=urllib3.Retry(total=0))
        self.m = Minio(f"{d.host}:{d.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                       secure=d.scheme == "https", region=d.region, http_client=http)

    def version(self):
        import minio

        return minio.__version__

    def list_buckets(self):
        return [b.name for b in self.m.list_buckets()]

    def put(self, bucket, key, path):
        self.m.fput_object(bucket, key, str(path))

    def get(self, bucket, key, path):
        self.m.fget_object(bucket, key, str(path))

    def upload_big(self, bucket, key, path):
        self.m.fput_object(bucket, key, str(path), part_size=8 * 1024 * 1024)  # multipart

    def list(self, bucket, prefix, delimiter):
        if delimiter not in (None, "/"):
            raise Unsupported("minio-py lists with '/' or no delimiter only")
        keys, prefixes = [], []
        for o in self.m.list_objects(bucket, prefix=prefix, recursive=delimiter is None):
            (prefixes if o.is_dir else keys).append(o.object_name)
        return keys, prefixes

    def copy(self, src_bucket, src_key, bucket, key):
        from minio.commonconfig import CopySource

        self.m.copy_object(bucket, key, CopySource(src_bucket, src_key))

    def delete(self, bucket, key):
        self.m.remove_object(bucket, key)

    def delete_many(self, bucket, prefix, keys):
        from minio.deleteobjects import DeleteObject

        errors = list(self.m.remove_objects(bucket, [DeleteObject(k) for k in keys]))
        assert not errors, errors

    def presign(self, bucket, key):
        import datetime

        return self.m.presigned_get_object(bucket, key, expires=datetime.timedelta(minutes=10))


# ------------------------------------------------------------------------------ s3cmd


S3CMD_LS_RE = re.compile(r"^\s*(DIR|\d{4}-\d\d-\d\d \d\d:\d\d(?:\s+\d+)?)\s+(s3://.*)$")


class S3cmd(Client):
    name = "s3cmd"
    sync_command = "s3cmd sync"

    def __init__(self, d, work):
        super().__init__(d, work)
        self.cfg = work / "s3cmd.cfg"
        hostport = f"{d.host}:{d.port}"
        lines = [
            "[default]",
            f"access_key = {ACCESS_KEY}",
            f"secret_key = {SECRET_KEY}",
            f"host_base = {hostport}",
            f"host_bucket = {hostport}",  # no %(bucket)s: path style
            f"bucket_location = {d.region}",
            f"use_https = {d.scheme == 'https'}",
            "check_ssl_certificate = True",
            "check_ssl_hostname = True",
            f"ca_certs_file = {d.ca or ''}",
            f"signurl_use_https = {d.scheme == 'https'}",
            "signature_v2 = False",
            "multipart_chunk_size_mb = 8",
            "progress_meter = False",
        ]
        self.cfg.write_text("\n".join(lines) + "\n")

    def _s3cmd(self, *args) -> str:
        return run(["s3cmd", "-c", self.cfg, *args], env=base_env())

    def version(self):
        return run(["s3cmd", "--version"]).split()[-1]

    def list_buckets(self):
        return [m.group(2)[5:].rstrip("/") for m in map(S3CMD_LS_RE.match, self._s3cmd("ls").splitlines()) if m]

    def put(self, bucket, key, path):
        self._s3cmd("put", path, f"s3://{bucket}/{key}")

    def get(self, bucket, key, path):
        self._s3cmd("get", "--force", f"s3://{bucket}/{key}", path)

    def list(self, bucket, prefix, delimiter):
        if delimiter not in (None, "/"):
            raise Unsupported("s3cmd lists with '/' or no delimiter only")
        args = ["ls"] + (["--recursive"] if delimiter is None else []) + [f"s3://{bucket}/{prefix}"]
        keys, prefixes = [], []
        for line in self._s3cmd(*args).splitlines():
            m = S3CMD_LS_RE.match(line)
            if m:
                name = m.group(2)[len(f"s3://{bucket}/"):]
                (prefixes if m.group(1) == "DIR" else keys).append(name)
        return keys, prefixes

    def copy(self, src_bucket, src_key, bucket, key):
        self._s3cmd("cp", f"s3://{src_bucket}/{src_key}", f"s3://{bucket}/{key}")

    def delete(self, bucket, key):
        self._s3cmd("del", f"s3://{bucket}/{key}")

    def delete_many(self, bucket, prefix, keys):
        self._s3cmd("del", "--recursive", f"s3://{bucket}/{prefix}")  # DeleteObjects per page

    def presign(self, bucket, key):
        return self._s3cmd("signurl", f"s3://{bucket}/{key}", "+600").strip()

    def sync(self, local, bucket, prefix):
        out = self._s3cmd("sync", f"{local}/", f"s3://{bucket}/{prefix}/")
        return sum(1 for line in out.splitlines() if line.startswith("upload:"))


# ------------------------------------------------------------------------------ rclone


class Rclone(Client):
    name = "rclone"
    sync_command = "rclone sync"

    def __init__(self, d, work):
        super().__init__(d, work)
        self.env = base_env()
        empty = work / "rclone.conf"
        empty.touch()
        self.env.update(
            RCLONE_CONFIG=str(empty),
            RCLONE_CONFIG_S3VOL_TYPE="s3",
            RCLONE_CONFIG_S3VOL_PROVIDER="Other",
            RCLONE_CONFIG_S3VOL_ACCESS_KEY_ID=ACCESS_KEY,
            RCLONE_CONFIG_S3VOL_SECRET_ACCESS_KEY=SECRET_KEY,
            RCLONE_CONFIG_S3VOL_ENDPOINT=d.url,
            RCLONE_CONFIG_S3VOL_REGION=d.region,
            RCLONE_CONFIG_S3VOL_FORCE_PATH_STYLE="true",
            # The volumes exist; rclone would otherwise try CreateBucket before a write.
            RCLONE_CONFIG_S3VOL_NO_CHECK_BUCKET="true",
        )
        self.flags = ["--retries", "1", "--low-level-retries", "1"]
        if d.ca:
            self.flags += ["--ca-cert", str(d.ca)]

    def _rclone(self, *args) -> str:
        return run(["rclone", *self.flags, *args], env=self.env)

    def version(self):
        return run(["rclone", "version"]).split()[1].lstrip("v")

    def list_buckets(self):
        return [e["Name"] for e in json.loads(self._rclone("lsjson", "s3vol:"))]

    def put(self, bucket, key, path):
        self._rclone("copyto", path, f"s3vol:{bucket}/{key}")

    def get(self, bucket, key, path):
        self._rclone("copyto", f"s3vol:{bucket}/{key}", path)

    def upload_big(self, bucket, key, path):
        # rclone's own cutoff for multipart is 200 MiB; lower it so this exercises multipart.
        self._rclone("copyto", "--s3-upload-cutoff", "8M", "--s3-chunk-size", "8M", path, f"s3vol:{bucket}/{key}")

    def list(self, bucket, prefix, delimiter):
        if delimiter not in (None, "/") or not prefix.endswith("/"):
            raise Unsupported("rclone lists directories ('/'-delimited prefixes) only")
        args = ["lsjson"] + (["-R", "--files-only"] if delimiter is None else []) + [f"s3vol:{bucket}/{prefix}"]
        keys, prefixes = [], []
        for e in json.loads(self._rclone(*args)):
            if e["IsDir"]:
                prefixes.append(prefix + e["Path"] + "/")
            else:
                keys.append(prefix + e["Path"])
        return keys, prefixes

    def copy(self, src_bucket, src_key, bucket, key):
        self._rclone("copyto", f"s3vol:{src_bucket}/{src_key}", f"s3vol:{bucket}/{key}")  # server side

    def delete(self, bucket, key):
        self._rclone("deletefile", f"s3vol:{bucket}/{key}")

    #: rclone's s3 backend sends one DeleteObject per key (rclone/rclone#8160).
    batch_delete_op = "DeleteObject"

    def delete_many(self, bucket, prefix, keys):
        self._rclone("delete", f"s3vol:{bucket}/{prefix}")

    def presign(self, bucket, key):
        return self._rclone("link", "--expire", "10m", f"s3vol:{bucket}/{key}").strip()

    def sync(self, local, bucket, prefix):
        r = subprocess.run(["rclone", *self.flags, "sync", "-v", str(local), f"s3vol:{bucket}/{prefix}"],
                           env=self.env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return sum(1 for line in r.stderr.splitlines() if ": Copied (" in line)


# ------------------------------------------------------------------------------ drivers


class Driver(Client):
    """A client driven through a program taking one operation per run (JS, Rust)."""

    def __init__(self, d, work):
        super().__init__(d, work)
        self.stderr: list[str] = []  # the drivers' stderr lines, every run

    def cmd(self) -> list:
        raise NotImplementedError

    def env(self) -> dict:
        env = base_env()
        env.update(S3_ENDPOINT=self.d.url, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_REGION=self.d.region)
        return env

    def _op(self, *args) -> str:
        return run([*self.cmd(), *args], env=self.env(), stderr_sink=self.stderr)

    def version(self):
        return self._op("version").strip()

    def list_buckets(self):
        return self._op("list-buckets").split()

    def put(self, bucket, key, path):
        self._op("put", bucket, key, path)

    def get(self, bucket, key, path):
        self._op("get", bucket, key, path)

    def upload_big(self, bucket, key, path):
        self._op("upload", bucket, key, path)

    def list(self, bucket, prefix, delimiter):
        keys, prefixes = [], []
        for line in self._op("list", bucket, prefix, *([delimiter] if delimiter else [])).splitlines():
            kind, _, name = line.partition("\t")
            (keys if kind == "key" else prefixes).append(name)
        return keys, prefixes

    def copy(self, src_bucket, src_key, bucket, key):
        self._op("copy", src_bucket, src_key, bucket, key)

    def delete(self, bucket, key):
        self._op("delete", bucket, key)

    def delete_many(self, bucket, prefix, keys):
        self._op("delete-many", bucket, *keys)

    def presign(self, bucket, key):
        return self._op("presign", bucket, key).strip()


class JsSdk(Driver):
    name = "@aws-sdk/client-s3"

    def __init__(self, d, work, virtual_domain: str | None = None):
        """With virtual_domain, virtual-hosted style at SCHEME://DOMAIN:PORT, the names
        resolved to 127.0.0.1 inside the driver only."""
        super().__init__(d, work)
        self.virtual_domain = virtual_domain

    def cmd(self):
        return ["node", JS_DIR / "driver.mjs"]

    def env(self):
        env = super().env()
        if self.d.ca:
            env["NODE_EXTRA_CA_CERTS"] = str(self.d.ca)
        if self.virtual_domain:
            env.update(S3_ENDPOINT=f"{self.d.scheme}://{self.virtual_domain}:{self.d.port}", S3_VIRTUAL="1",
                       S3_LOOPBACK_DOMAIN=self.virtual_domain)
        return env


class RustSdk(Driver):
    name = "aws-sdk-s3 (Rust)"

    def cmd(self):
        return [RUST_BIN]

    def env(self):
        env = super().env()
        if self.d.ca:
            env["S3_CA"] = str(self.d.ca)
        return env


CLIENTS = {
    "awscli": AwsCli,
    "boto3": Boto3,
    "minio": MinioPy,
    "s3cmd": S3cmd,
    "rclone": Rclone,
    "js": JsSdk,
    "rust": RustSdk,
}
