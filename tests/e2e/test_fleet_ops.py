"""Operating a fleet (issue 16): per-volume object counts and bytes from the background
scan, kept current by s3vol's own writes; the credentials file reloaded by itself when it
changes (no signal), with its metrics; the Grafana dashboard's metric names against a live
/metrics."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import (
    ACCESS_KEY, MiB, REPO_ROOT, SECRET_KEY, data, expect_client_error, s3vol_bin, start_daemon, stop_daemon,
    toml_str, wait_until, write_credentials,
)

TESTER = dict(name="tester", access_key=ACCESS_KEY, secret_key=SECRET_KEY, volumes=["*"],
              permissions=["read", "write", "delete"])
NEW = dict(name="new", access_key="AKFLEETNEW000001", secret_key="fleet-new-secret-Aeth5ie", volumes=["vol-a"],
           permissions=["read", "write"])


def admin(d) -> str:
    a = wait_until(lambda: next((ln.split()[-1] for ln in d.stdout_lines if ln.startswith("admin on ")), None))
    assert a, d.stdout_lines
    return a


def status(d, name: str = "vol-a") -> dict:
    with urllib.request.urlopen(f"http://{admin(d)}/status", timeout=15) as r:
        return next(v for v in json.load(r)["volumes"] if v["name"] == name)


def metrics_text(d) -> str:
    with urllib.request.urlopen(f"http://{admin(d)}/metrics", timeout=15) as r:
        return r.read().decode()


def sample(text: str, series: str):
    """The value of one series (`name{labels}` exactly as exported), or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def listed(s3, bucket: str = "vol-a") -> tuple[int, int]:
    """(objects, bytes) as ListObjectsV2 lists them, every page."""
    n = b = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            n += 1
            b += o["Size"]
    return n, b


def counts(d, name: str = "vol-a") -> tuple:
    st = status(d, name)
    return st["objects"], st["bytes"]


@pytest.fixture
def scanned(tmp_path):
    """A daemon whose volumes were scanned once, with 3 pod-written files, and not again
    for an hour: every later change of the counts is s3vol's own bookkeeping."""
    vol = tmp_path / "pre" / "vol-a"
    (vol / "dir").mkdir(parents=True)
    (vol / "a.txt").write_bytes(b"a" * 100)
    (vol / "dir" / "b.bin").write_bytes(b"b" * 2000)
    (vol / "dir" / "c.bin").write_bytes(b"c" * 30)
    d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                     f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nscan_interval = "1h"\n')
    d.vols["vol-a"] = vol
    assert wait_until(lambda: counts(d) == (3, 2130), timeout=15), (status(d), d.log_tail())
    yield d
    assert stop_daemon(d) is None, d.log_tail()


def test_counts_follow_put_overwrite_delete_and_multipart_between_scans(scanned):
    d, s3 = scanned, scanned.client()
    st = status(d)
    assert st["last_scan"] and re.match(r"^\d{4}-\d\d-\d\dT", st["last_scan"]), st
    assert st["scan"]["running"] is False and st["scan"]["last_entries"] >= 5, st

    s3.put_object(Bucket="vol-a", Key="new/x.bin", Body=b"x" * 500)
    assert counts(d) == (4, 2630)
    s3.put_object(Bucket="vol-a", Key="a.txt", Body=b"A" * 10)  # overwrite: bytes only
    assert counts(d) == (4, 2540)
    s3.delete_object(Bucket="vol-a", Key="dir/b.bin")
    assert counts(d) == (3, 540)
    s3.delete_object(Bucket="vol-a", Key="dir/never-there")  # 204, nothing removed
    assert counts(d) == (3, 540)

    # Multipart: staged parts are not objects; Complete adds one of the whole size.
    up = s3.create_multipart_upload(Bucket="vol-a", Key="big/mp.bin")["UploadId"]
    parts = []
    for n, body in enumerate([data(5 * MiB, 1), data(1000, 2)], start=1):
        r = s3.upload_part(Bucket="vol-a", Key="big/mp.bin", UploadId=up, PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    assert counts(d) == (3, 540)
    s3.complete_multipart_upload(Bucket="vol-a", Key="big/mp.bin", UploadId=up, MultipartUpload={"Parts": parts})
    whole = 5 * MiB + 1000
    assert counts(d) == (4, 540 + whole)
    # ... and overwriting it through Complete again changes only the bytes.
    up = s3.create_multipart_upload(Bucket="vol-a", Key="big/mp.bin")["UploadId"]
    r = s3.upload_part(Bucket="vol-a", Key="big/mp.bin", UploadId=up, PartNumber=1, Body=b"s" * 7)
    s3.complete_multipart_upload(Bucket="vol-a", Key="big/mp.bin", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    assert counts(d) == (4, 547)
    assert counts(d) == listed(s3), "the bookkeeping agrees with the listing"

    m = metrics_text(d)
    assert sample(m, 's3vol_volume_objects{volume="vol-a"}') == 4
    assert sample(m, 's3vol_volume_object_bytes{volume="vol-a"}') == 547
    assert sample(m, 's3vol_volume_scan_last_completed_timestamp_seconds{volume="vol-a"}') > time.time() - 120
    assert sample(m, 's3vol_volume_scan_running{volume="vol-a"}') == 0
    assert sample(m, 's3vol_volume_scan_entries{volume="vol-a"}') == 0


def test_a_directory_marker_put_and_deleted_is_counted_between_scans(scanned):
    d, s3 = scanned, scanned.client()
    s3.put_object(Bucket="vol-a", Key="photos/", Body=b"")
    assert (d.vols["vol-a"] / "photos").is_dir()
    assert counts(d) == (4, 2130) == listed(s3)
    s3.put_object(Bucket="vol-a", Key="photos/", Body=b"")  # again: the same object
    assert counts(d) == (4, 2130)
    s3.put_object(Bucket="vol-a", Key="dir/", Body=b"")  # marks a directory with files in it
    assert counts(d) == (5, 2130) == listed(s3)
    s3.delete_object(Bucket="vol-a", Key="dir/")  # only the mark goes; its files stay
    assert counts(d) == (4, 2130) == listed(s3)
    s3.delete_object(Bucket="vol-a", Key="photos/")
    assert not (d.vols["vol-a"] / "photos").exists()
    assert counts(d) == (3, 2130) == listed(s3)


def disk_usage(vol: Path) -> int:
    """Bytes of every regular file under the volume, its internal directory too (what the
    scan measures for the quota)."""
    total = 0
    for top, _dirs, files in os.walk(vol):
        for f in files:
            st = os.lstat(os.path.join(top, f))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def test_racing_puts_and_deletes_of_one_key_keep_counts_and_quota_usage_exact(tmp_path):
    """PUTs and DELETEs of one key from 12 threads: every commit and delete accounts for
    the file its rename or unlink actually replaced or removed, so the counts and the
    quota's usage equal what is on disk without waiting for a scan, and the quota holds."""
    import concurrent.futures as cf
    import random

    vol = tmp_path / "pre" / "vol-a"
    vol.mkdir(parents=True)
    d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                     f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nscan_interval = "1h"\n'
                     'quota = "4MiB"\nfsync = false\n')
    try:
        assert wait_until(lambda: counts(d) == (0, 0), timeout=15), status(d)
        s3 = d.client(max_pool_connections=16)
        rnd = random.Random(16)
        sizes = [rnd.choice([1, 100_000, 200_000]) for _ in range(600)]

        def op(i):
            if i % 3 == 2:
                s3.delete_object(Bucket="vol-a", Key="race")
            else:
                s3.put_object(Bucket="vol-a", Key="race", Body=b"r" * sizes[i])

        deadline = time.monotonic() + 120
        with cf.ThreadPoolExecutor(12) as ex:
            for f in [ex.submit(op, i) for i in range(600)]:
                f.result(timeout=max(1, deadline - time.monotonic()))
        n, b = listed(s3)
        assert counts(d) == (n, b), (counts(d), n, b)
        assert status(d)["capacity"]["used"] == disk_usage(vol), (status(d), disk_usage(vol))
        s3.delete_object(Bucket="vol-a", Key="race")
        assert counts(d) == (0, 0) and status(d)["capacity"]["used"] == disk_usage(vol) == 0, status(d)
        # The quota holds: 4 MiB of new objects fit, the next one does not.
        for i in range(16):
            s3.put_object(Bucket="vol-a", Key=f"fill{i}", Body=b"f" * (256 * 1024))
        expect_client_error(s3.put_object, 403, "QuotaExceeded", Bucket="vol-a", Key="over", Body=b"o" * 70_000)
        assert counts(d) == (16, 4 * MiB)
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_pod_written_files_are_counted_once_the_scan_ran_as_the_listing_lists_them(tmp_path):
    vol = tmp_path / "pre" / "vol-a"
    vol.mkdir(parents=True)
    d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                     f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nscan_interval = "1s"\n')
    try:
        s3 = d.client()
        assert wait_until(lambda: counts(d) == (0, 0), timeout=15), status(d)
        first = status(d)["last_scan"]
        # What a pod does directly: files deep down, an empty directory (a `k/` object), a
        # link inside the volume (an object) and one outside (not), a FIFO (not), a file
        # in the internal directory (not), a name that is not UTF-8 (not listed).
        (vol / "p" / "q" / "r").mkdir(parents=True)
        (vol / "p" / "q" / "r" / "deep.txt").write_bytes(b"d" * 4096)
        (vol / "p" / "top.txt").write_bytes(b"t" * 10)
        (vol / "empty").mkdir()
        os.symlink("top.txt", vol / "p" / "link-in")
        os.symlink("/etc/passwd", vol / "p" / "link-out")
        os.symlink("..", vol / "p" / "loop")
        os.mkfifo(vol / "fifo")
        (vol / ".s3vol" / "tmp" / "not-an-object").write_bytes(b"n" * 999)
        (vol / os.fsdecode(b"bad-\xff")).write_bytes(b"x")
        want = (4, 4096 + 10 + 10)
        assert listed(s3) == want, "deep.txt, top.txt, link-in (its target's size), empty/"
        assert wait_until(lambda: counts(d) == want, timeout=20), (status(d), d.log_tail())
        assert status(d)["last_scan"] >= first
        m = metrics_text(d)
        assert sample(m, 's3vol_volume_objects{volume="vol-a"}') == 4
        # Removed by the pod: gone at the next scan.
        (vol / "p" / "q" / "r" / "deep.txt").unlink()
        assert wait_until(lambda: counts(d) == (4, 20), timeout=20), "r/ is now an empty directory: `p/q/r/`"
    finally:
        assert stop_daemon(d) is None, d.log_tail()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")
def test_the_scan_counts_a_file_system_mounted_inside_the_volume_as_the_listing_lists_it(tmp_path):
    """One rule for listing and scan: a mount inside the volume is walked (a pod cannot
    mount; the operator's mount is served), and a bind mount of the volume into itself is
    not walked twice by the scan (device and inode of the directories being walked)."""
    import subprocess as sp

    vol = tmp_path / "pre" / "vol-a"
    (vol / "mnt").mkdir(parents=True)
    (vol / "self").mkdir()
    (vol / "top.bin").write_bytes(b"t" * 10)
    mounted = []
    try:
        sp.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(vol / "mnt")], check=True)
        mounted.append(vol / "mnt")
        (vol / "mnt" / "inner.bin").write_bytes(b"i" * 300)
        (vol / "mnt" / "sub").mkdir()
        (vol / "mnt" / "sub" / "deep.bin").write_bytes(b"d" * 20)
        d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                         f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nscan_interval = "1s"\n')
        try:
            s3 = d.client()
            # self/ is an empty directory: a `self/` object of 0 bytes.
            assert wait_until(lambda: counts(d) == (4, 330), timeout=15), (status(d), listed(s3))
            assert counts(d) == listed(s3)
            sp.run(["mount", "--bind", str(vol), str(vol / "self")], check=True)
            mounted.append(vol / "self")
            before = status(d)["last_scan"]
            assert wait_until(lambda: status(d)["last_scan"] != before and not status(d)["scan"]["running"],
                              timeout=20), status(d)
            # The bind is the volume again: its root is an ancestor, not walked (and not empty).
            assert counts(d) == (3, 330), status(d)
        finally:
            assert stop_daemon(d) is None, d.log_tail()
    finally:
        for m in reversed(mounted):
            sp.run(["umount", str(m)], check=False)


def test_counts_are_null_before_the_first_scan_completes_and_progress_shows(tmp_path):
    vol = tmp_path / "pre" / "vol-a"
    vol.mkdir(parents=True)
    for i in range(600):
        (vol / f"f{i:04}").write_bytes(b"x")
    # 20 entries per second: the first pass takes half a minute, in batches of 256.
    d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                     f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nscan_rate = 20\n')
    try:
        st = status(d)
        assert st["objects"] is None and st["bytes"] is None and st["last_scan"] is None, st
        assert wait_until(lambda: status(d)["scan"]["entries_scanned"] >= 256, timeout=20), status(d)
        st = status(d)
        assert st["scan"]["running"] is True and st["objects"] is None, st
        m = metrics_text(d)
        assert sample(m, 's3vol_volume_objects{volume="vol-a"}') is None, "absent, not 0, before the first scan"
        assert sample(m, 's3vol_volume_scan_entries{volume="vol-a"}') >= 256
        assert sample(m, 's3vol_volume_scan_running{volume="vol-a"}') == 1
        # A PUT before the first scan does not make up a count either.
        d.client().put_object(Bucket="vol-a", Key="during", Body=b"x")
        assert status(d)["objects"] is None
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_volumes_are_scanned_one_at_a_time_so_scan_io_stays_bounded_per_node(tmp_path):
    """Each volume had a scan thread of its own, all walking at once: a node serving
    hundreds of volumes (volumes_root mode, often one network file system) read at
    hundreds of times `scan_rate`. Passes now take turns."""
    extra = 'admin_listen = "127.0.0.1:0"\n'
    for name in ("vol-a", "vol-b", "vol-c"):
        vol = tmp_path / "turns" / name
        vol.mkdir(parents=True)
        for i in range(300):
            (vol / f"f{i:04}").write_bytes(b"x")
        extra += f'[[volume]]\nname = "{name}"\npath = {toml_str(vol)}\nscan_rate = 400\n'
    d = start_daemon(tmp_path / "d", volumes=(), extra_config=extra)
    try:
        seen_running, deadline = set(), time.monotonic() + 30
        while time.monotonic() < deadline:
            m = metrics_text(d)
            running = {v for v in ("vol-a", "vol-b", "vol-c")
                       if sample(m, f's3vol_volume_scan_running{{volume="{v}"}}') == 1}
            assert len(running) <= 1, f"scans of {running} ran at once"
            seen_running |= running
            if all(status(d, v)["objects"] is not None for v in ("vol-a", "vol-b", "vol-c")):
                break
            time.sleep(0.05)
        assert [status(d, v)["objects"] for v in ("vol-a", "vol-b", "vol-c")] == [300, 300, 300]
        assert seen_running, "no pass was seen running"
    finally:
        assert stop_daemon(d) is None, d.log_tail()


def test_config_rejects_scan_interval_with_its_older_name(tmp_path):
    import subprocess
    from helpers import s3vol_bin
    creds = write_credentials(tmp_path / "c.toml", [TESTER])
    cfg = tmp_path / "s3vol.toml"
    cfg.write_text(f'credentials = {toml_str(creds)}\n[[volume]]\nname = "vol-a"\npath = {toml_str(tmp_path)}\n'
                   'scan_interval = "1m"\nusage_rescan = "2m"\n')
    r = subprocess.run([str(s3vol_bin()), "check-config", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and "scan_interval and usage_rescan" in r.stderr, r.stderr


# ------------------------------------------------------------------ credentials auto-reload


def replace_by_rename(path: Path, keys=None, text: str | None = None, mode: int = 0o600) -> None:
    """What config management does: write a new file beside it, then rename it over."""
    tmp = path.with_name(path.name + ".tmp")
    if text is None:
        write_credentials(tmp, keys, mode)
    else:
        tmp.write_text(text)
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def works(d, key) -> bool:
    try:
        d.client(access_key=key["access_key"], secret_key=key["secret_key"]).list_objects_v2(Bucket="vol-a")
        return True
    except Exception:  # noqa: BLE001 - 403 InvalidAccessKeyId while not (or no longer) loaded
        return False


@pytest.fixture
def watched(tmp_path):
    d = start_daemon(tmp_path, keys=[TESTER], extra_config='admin_listen = "127.0.0.1:0"\ncredentials_check = "1s"\n')
    yield d
    assert stop_daemon(d) is None, d.log_tail()


def test_a_key_renamed_into_the_credentials_file_works_and_a_revoked_one_stops_without_a_signal(watched):
    d = watched
    creds = d.workdir / "credentials.toml"
    m = metrics_text(d)
    assert sample(m, "s3vol_credentials_keys") == 1
    t0 = sample(m, "s3vol_credentials_last_success_timestamp_seconds")
    assert t0 and t0 > time.time() - 120
    expect_client_error(d.client(access_key=NEW["access_key"], secret_key=NEW["secret_key"]).list_objects_v2,
                        403, "InvalidAccessKeyId", Bucket="vol-a")

    start = time.monotonic()
    replace_by_rename(creds, [TESTER, NEW])
    assert wait_until(lambda: works(d, NEW), timeout=10, interval=0.2), d.log_tail()
    assert time.monotonic() - start < 8
    m = metrics_text(d)
    assert sample(m, "s3vol_credentials_keys") == 2
    assert sample(m, "s3vol_credentials_last_success_timestamp_seconds") >= t0
    assert sample(m, "s3vol_credentials_reload_failures_total") == 0

    replace_by_rename(creds, [NEW])  # the tester key is revoked
    assert wait_until(lambda: not works(d, TESTER), timeout=10, interval=0.2), d.log_tail()
    expect_client_error(d.client().list_objects_v2, 403, "InvalidAccessKeyId", Bucket="vol-a")
    assert works(d, NEW)
    assert sample(metrics_text(d), "s3vol_credentials_keys") == 1
    assert "SIGHUP" not in d.log.read_text()


def test_a_broken_credentials_file_keeps_the_old_keys_and_counts_each_failure_once(watched):
    d = watched
    creds = d.workdir / "credentials.toml"
    secret = "never-in-the-log-Quoo3ahj"
    broken = [
        # half a file: a key without its secret and permissions
        f'[[key]]\nname = "half"\naccess_key = "AKHALF0000000001"\nsecret_key = {secret}\n',
        "",  # empty: a writer that truncated and has not written yet
        None,  # readable by others
    ]
    for n, text in enumerate(broken, start=1):
        if text is None:
            replace_by_rename(creds, [TESTER, NEW], mode=0o644)
        else:
            replace_by_rename(creds, text=text)
        ok = wait_until(lambda: sample(metrics_text(d), "s3vol_credentials_reload_failures_total") == n, timeout=10)
        assert ok, (n, metrics_text(d), d.log_tail())
        time.sleep(2.5)  # two more looks at the same broken file: counted once
        assert sample(metrics_text(d), "s3vol_credentials_reload_failures_total") == n
        assert works(d, TESTER) and not works(d, NEW), "the keys in force stay"
        assert sample(metrics_text(d), "s3vol_credentials_keys") == 1
    log = d.log.read_text(errors="replace")
    assert log.count("credentials reload failed") == 3, log
    assert secret not in log and SECRET_KEY not in log and NEW["secret_key"] not in log

    # Fixed: loaded at once, and a link to the file (a Kubernetes Secret) is followed.
    real = d.workdir / "secret-volume" / "credentials.toml"
    real.parent.mkdir()
    write_credentials(real, [NEW])
    link = d.workdir / "credentials.link"
    os.symlink(real, link)
    os.replace(link, creds)
    assert wait_until(lambda: works(d, NEW) and not works(d, TESTER), timeout=10), d.log_tail()


def test_a_key_revoked_by_a_file_whose_mtime_is_in_the_future_stops_within_seconds(watched):
    """An NFS server whose clock is ahead (or tar, rsync -t, cp -p from such a host) gives
    the new file a future mtime: it is still loaded, once two looks found it unchanged,
    and the future mtime is logged at warn once."""
    d = watched
    creds = d.workdir / "credentials.toml"
    replace_by_rename(creds, [TESTER, NEW])
    assert wait_until(lambda: works(d, NEW), timeout=10, interval=0.2), d.log_tail()
    tmp = creds.with_name("future.toml")
    write_credentials(tmp, [TESTER])
    ahead = time.time() + 120
    os.utime(tmp, (ahead, ahead))
    start = time.monotonic()
    os.replace(tmp, creds)  # NEW is revoked
    assert wait_until(lambda: not works(d, NEW), timeout=10, interval=0.2), d.log_tail()
    assert time.monotonic() - start < 6
    assert works(d, TESTER)
    time.sleep(2.5)
    log = d.log.read_text(errors="replace")
    assert log.count("mtime is in the future") == 1, log
    assert sample(metrics_text(d), "s3vol_credentials_reload_failures_total") == 0


PASTED = "wJalr`XUtnFEMI/K7MDENG"  # a secret with a backtick, pasted where it does not belong
KEY_HEAD = '[[key]]\nname = "k"\naccess_key = "AKPASTE000000001"\nsecret_key = "s"\nvolumes = ["*"]\n'


@pytest.mark.parametrize("text", [
    KEY_HEAD + f'permissions = ["{PASTED}"]\n',
    KEY_HEAD + "permissions = ['wJalr\"XUtnFEMI/K7MDENG']\n",
    KEY_HEAD + 'permissions = ["read"]\n' + f'"x{PASTED}" = 1\n',
    KEY_HEAD + 'permissions = ["read"]\nXUtnFEMI = 1\n',
], ids=["backtick-in-permission", "quote-in-permission", "backtick-field-name", "bare-field-name"])
def test_check_config_and_reload_errors_show_no_part_of_a_pasted_secret(tmp_path, text):
    d = start_daemon(tmp_path / "d", keys=[TESTER],
                     extra_config='admin_listen = "127.0.0.1:0"\ncredentials_check = "1s"\n')
    try:
        creds = d.workdir / "credentials.toml"
        bad = d.workdir / "bad.toml"
        bad.write_text(text)
        os.chmod(bad, 0o600)
        config = (d.workdir / "s3vol.toml").read_text().replace(str(creds), str(bad))
        (d.workdir / "bad-config.toml").write_text(config)
        r = subprocess.run([str(s3vol_bin()), "check-config", "--config", str(d.workdir / "bad-config.toml")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "line " in r.stderr and str(bad) in r.stderr, r.stderr
        assert "XUtnFEMI" not in r.stderr + r.stdout and "K7MDENG" not in r.stderr + r.stdout, r.stderr
        replace_by_rename(creds, text=text)
        ok = wait_until(lambda: sample(metrics_text(d), "s3vol_credentials_reload_failures_total") == 1, timeout=10)
        assert ok, d.log_tail()
        assert works(d, TESTER)
        log = d.log.read_text(errors="replace")
        assert "XUtnFEMI" not in log and "K7MDENG" not in log, log
    finally:
        assert stop_daemon(d) is None, d.log_tail()


@pytest.mark.parametrize("kind", ["fifo", "zero-device", "oversized", "empty", "blank"])
def test_start_up_and_check_config_refuse_a_credentials_file_that_is_no_regular_file_too_big_or_empty(
        tmp_path, kind):
    """One loader for start-up, check-config and reload: a FIFO does not hang, a device is
    not read until memory runs out, a file over 16 MiB is refused, an empty one is not
    taken as "no keys"; each exits 2 (a config error, docs/CONTRACT.md) at once."""
    creds = tmp_path / "credentials.toml"
    if kind == "fifo":
        os.mkfifo(creds, 0o600)
    elif kind == "zero-device":
        os.mknod(creds, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    elif kind == "oversized":
        with open(creds, "wb") as f:
            f.truncate((16 << 20) + 1)
    elif kind == "empty":
        creds.write_bytes(b"")
    else:
        creds.write_bytes(b"  \n\t\n")
    if kind != "zero-device":
        os.chmod(creds, 0o600)
    vol = tmp_path / "vol-a"
    vol.mkdir()
    config = tmp_path / "s3vol.toml"
    config.write_text(f'listen = "127.0.0.1:0"\ncredentials = {toml_str(creds)}\n'
                      f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\n')
    want = {"fifo": "not a regular file", "zero-device": "not a regular file", "oversized": "larger than",
            "empty": "empty", "blank": "empty"}[kind]
    for cmd in ("check-config", "serve"):
        start = time.monotonic()
        try:
            r = subprocess.run([str(s3vol_bin()), cmd, "--config", str(config)], capture_output=True, text=True,
                               timeout=15, cwd=tmp_path)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{cmd} with a {kind} credentials file did not exit within 15 s")
        assert r.returncode == 2, (cmd, r.returncode, r.stdout, r.stderr[-2000:])
        assert want in r.stderr and str(creds) in r.stderr, (cmd, r.stderr[-2000:])
        assert "listening on" not in r.stdout
        assert time.monotonic() - start < 10


# ------------------------------------------------------------------ the Grafana dashboard

DASHBOARD = REPO_ROOT / "contrib" / "grafana" / "s3vol.json"
PROMQL_WORDS = {
    # functions, aggregations and keywords of PromQL that can stand where a name could
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "time", "timestamp",
    "vector", "scalar", "abs", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max", "label_replace",
    "label_join", "sort", "sort_desc", "absent", "absent_over_time", "changes", "resets", "avg_over_time",
    "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "last_over_time", "predict_linear",
    "sgn", "exp", "ln", "log2", "log10", "sqrt", "inf", "nan", "le",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: label matchers, strings, durations,
    grouping clauses and Grafana variables stripped; what is left that is followed by `(`
    is a function, the rest are names."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings (label values, label_replace args)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables ($__rate_interval, ${volume})
    # numbers, durations and exponents (0.99, 5m, 1e-9)
    e = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?", "", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word, rest = m.group(0), e[m.end():].lstrip()
        if rest.startswith("(") or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def exported_families(text: str) -> set[str]:
    """Every series name /metrics exports, and for each histogram/counter the names its
    samples carry (`_bucket`, `_sum`, `_count`, `_total`, `_created`)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def panels(dash: dict):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows


def test_metric_names_parse_out_of_promql():
    q = ('histogram_quantile(0.99, sum by (le, op) (rate(s3vol_request_duration_seconds_bucket'
         '{op=~"$op", status!~"5.."}[$__rate_interval]))) / on(volume) group_left s3vol_x_bytes offset 5m')
    assert metric_names(q) == {"s3vol_request_duration_seconds_bucket", "s3vol_x_bytes"}
    assert metric_names('label_replace(up{job="a"}, "x", "$1", "y", "(.*)")') == {"up"}
    assert metric_names("a_total / clamp_min(b_count, 1e-9) > 0.5") == {"a_total", "b_count"}


def test_every_metric_the_dashboard_queries_is_exported(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in panels(dash) for t in p.get("targets", []) if t.get("expr")]
    # Template variables: `label_values(METRIC{...}, LABEL)` reads METRIC.
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            m = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", q)
            assert m, f"variable {v.get('name')}: {q!r}"
            exprs.append(m.group(1))
    assert len(exprs) >= 10, "the dashboard queries something"
    titles = " ".join(p.get("title", "") for p in panels(dash)).lower()
    for topic in ["request", "error", "latency", "bytes", "capacity", "quota", "upload", "online", "objects",
                  "credentials"]:
        assert topic in titles, f"no panel about {topic}: {titles}"

    vol = tmp_path / "pre" / "vol-a"
    vol.mkdir(parents=True)
    d = start_daemon(tmp_path / "d", volumes=(), extra_config='admin_listen = "127.0.0.1:0"\n'
                     f'[[volume]]\nname = "vol-a"\npath = {toml_str(vol)}\nquota = "1GiB"\n')
    try:
        s3 = d.client()
        s3.put_object(Bucket="vol-a", Key="k", Body=b"hello")
        s3.get_object(Bucket="vol-a", Key="k")["Body"].read()
        s3.create_multipart_upload(Bucket="vol-a", Key="staged")
        expect_client_error(s3.get_object, 404, "NoSuchKey", Bucket="vol-a", Key="missing")
        assert wait_until(lambda: status(d)["objects"] is not None, timeout=15)
        exported = exported_families(metrics_text(d))
        missing = {}
        for expr in exprs:
            for name in metric_names(expr):
                if name not in exported:
                    missing.setdefault(name, expr)
        assert not missing, f"queried but not exported: {missing}\nexported: {sorted(exported)}"
    finally:
        assert stop_daemon(d) is None, d.log_tail()
