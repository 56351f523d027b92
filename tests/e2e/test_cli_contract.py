"""The command-line contract of docs/CONTRACT.md: check-config, refusing readable
credentials, the `listening on` line and the embedded default."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import boto3
import pytest
from botocore.config import Config

from helpers import (
    DEFAULT_KEYS, Daemon, s3vol_bin, stop_daemon, toml_str, wait_listening, write_credentials,
)


def _config(tmp_path, creds_mode=0o600, extra=""):
    vol = tmp_path / "vol-a"
    vol.mkdir(exist_ok=True)
    creds = write_credentials(tmp_path / "credentials.toml", DEFAULT_KEYS, mode=creds_mode)
    cfg = tmp_path / "s3vol.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\ncredentials = {toml_str(creds)}\n{extra}\n'
                   f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\n')
    return cfg


def _run(*args, cwd=None, timeout=20):
    binary = s3vol_bin()
    if not binary.exists():
        pytest.fail(f"s3vol binary not found at {binary}", pytrace=False)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def test_check_config_ok(tmp_path):
    r = _run("check-config", "--config", _config(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "config ok" in r.stdout


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_credentials_refused(tmp_path, mode):
    cfg = _config(tmp_path, creds_mode=mode)
    r = _run("check-config", "--config", cfg)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "credentials" in r.stderr.lower()
    assert "e2e-secret" not in r.stderr and "e2e-secret" not in r.stdout, "a secret was printed"
    r = _run("serve", "--config", cfg, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "listening on" not in r.stdout


@pytest.mark.parametrize("extra", [
    'no_such_setting = 1',
    'tls_cert = "/nonexistent/cert.pem"',
    'region = 5',
], ids=["unknown-field", "cert-without-key", "bad-type"])
def test_bad_config_exit_2(tmp_path, extra):
    r = _run("check-config", "--config", _config(tmp_path, extra=extra))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip(), "no message saying what is wrong"


def _serve_default(cwd, tmp_path, tag):
    log = tmp_path / f"default-{tag}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(s3vol_bin()), "serve", "--listen", "127.0.0.1:0"], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf)
    lines: list = []
    addr = wait_listening(proc, lines, 30)
    d = Daemon(proc=proc, scheme="http", host="127.0.0.1", port=addr[1] if addr else 0, root=cwd,
               vols={"demo": cwd / "demo-volume"}, region="us-east-1", ca=None, log=log, workdir=tmp_path)
    if addr is None:
        stop_daemon(d)
        pytest.fail(f"embedded default did not start: {lines}\n{d.log_tail()}", pytrace=False)
    return d


def test_embedded_default(tmp_path):
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    if not s3vol_bin().exists():
        pytest.fail("s3vol binary missing", pytrace=False)
    keys = []
    for tag in ("first", "second"):
        d = _serve_default(cwd, tmp_path, tag)
        try:
            log = d.log.read_text()
            ak = re.search(r"dev access key: (\S+)", log)
            sk = re.search(r"dev secret key: (\S+)", log)
            assert ak and sk, f"dev key lines missing from stderr:\n{log[-2000:]}"
            keys.append((ak.group(1), sk.group(1)))
            assert (cwd / "demo-volume").is_dir()
            creds = cwd / ".s3vol-dev" / "credentials.toml"
            assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
            s3 = boto3.client("s3", endpoint_url=d.url, region_name="us-east-1", aws_access_key_id=ak.group(1),
                              aws_secret_access_key=sk.group(1),
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
            assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["demo"]
            s3.put_object(Bucket="demo", Key=f"hello-{tag}.txt", Body=b"hi")
            assert (cwd / "demo-volume" / f"hello-{tag}.txt").read_bytes() == b"hi"
        finally:
            assert stop_daemon(d) is None, d.log_tail()
    assert keys[0] == keys[1], "the development key changed across restarts"
