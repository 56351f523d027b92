"""Per-volume CORS (SPEC.md "Authentication and access", issue 5 item 4): preflight
OPTIONS answered per the rules, CORS headers on actual responses, and a real browser
(headless Chromium driven by chromedriver) uploading to a presigned PUT URL from a page on
an allowed origin, and refused from another origin.

Needs the Debian packages chromium and chromium-driver (scripts/test installs them)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import threading

import pytest
import requests

from helpers import s3vol_bin, snapshot_diff, start_daemon, stop_daemon, toml_str, tree_snapshot, wait_until

KEY = dict(name="web", access_key="AKCORSWEB0000001", secret_key="cors-web-secret", volumes=["*"],
           permissions=["read", "write"])

PAGE = b"""<!doctype html><html><head><title>uploader</title></head><body>cross-origin uploader</body></html>"""


class Page:
    """A tiny web page server on its own 127.0.0.1 port: its origin is the browser's."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pages():
    good, evil = Page(), Page()
    yield good, evil
    good.close()
    evil.close()


@pytest.fixture(scope="module")
def d(tmp_path_factory, pages):
    good, _ = pages
    work = tmp_path_factory.mktemp("cors")
    web = work / "web"
    web.mkdir()
    (web / "hello.txt").write_bytes(b"hello browser")
    extra = (
        f'[[volume]]\nname = "web"\npath = {toml_str(web)}\n'
        "[[volume.cors]]\n"
        f'allowed_origins = [{toml_str(good.origin)}, "https://*.example.test"]\n'
        'allowed_methods = ["GET", "PUT", "HEAD"]\n'
        'allowed_headers = ["content-type", "x-amz-*"]\n'
        'expose_headers = ["ETag", "x-amz-request-id"]\n'
        "max_age_seconds = 600\n"
    )
    daemon = start_daemon(work, keys=[KEY], extra_config=extra)
    daemon.vols["web"] = web
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def presign(d, bucket, key, method="GET"):
    r = subprocess.run([str(s3vol_bin()), "presign", "--credentials", str(d.workdir / "credentials.toml"),
                        "--key-name", "web", "--endpoint", d.url, "--method", method, bucket, key],
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.strip()


def preflight(d, path, origin, method, headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{d.url}{path}", headers=h, timeout=10)


# ------------------------------------------------------------------------- raw HTTP


def test_preflight_allowed(d, pages):
    good, _ = pages
    r = preflight(d, "/web/new.txt", good.origin, "PUT", "Content-Type, X-Amz-Meta-Note")
    assert r.status_code == 200, r.content
    assert r.headers["access-control-allow-origin"] == good.origin
    assert r.headers["access-control-allow-methods"] == "GET, PUT, HEAD"
    assert r.headers["access-control-allow-headers"] == "content-type, x-amz-meta-note"
    assert r.headers["access-control-max-age"] == "600"
    assert "Origin" in r.headers["vary"]
    r = preflight(d, "/web/x", "https://app.example.test", "GET")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.test"


@pytest.mark.parametrize("path,origin,method,headers,status", [
    ("/web/x", "http://127.0.0.1:1", "PUT", None, 403),  # origin not allowed
    ("/web/x", "https://example.test", "PUT", None, 403),  # the wildcard needs a subdomain
    ("/web/x", "https://evil.test/.example.test", "GET", None, 403),
    ("/web/x", "GOOD", "DELETE", None, 403),  # method not allowed
    ("/web/x", "GOOD", "PUT", "authorization", 403),  # header not allowed
    ("/vol-a/x", "GOOD", "GET", None, 403),  # another volume: no rules
    ("/", "GOOD", "GET", None, 403),  # the service root
    ("/nosuchvolume/x", "GOOD", "GET", None, 403),
])
def test_preflight_refused(d, pages, path, origin, method, headers, status):
    origin = pages[0].origin if origin == "GOOD" else origin
    r = preflight(d, path, origin, method, headers)
    assert r.status_code == status and b"AccessForbidden" in r.content, (r.status_code, r.content)
    assert "access-control-allow-origin" not in r.headers


def test_options_without_origin_is_a_bad_request(d):
    r = requests.options(f"{d.url}/web/x", timeout=10)
    assert r.status_code == 400 and b"BadRequest" in r.content


def test_actual_responses_carry_cors_headers(d, pages):
    good, evil = pages
    url = presign(d, "web", "hello.txt")
    r = requests.get(url, headers={"Origin": good.origin}, timeout=10)
    assert r.status_code == 200 and r.content == b"hello browser"
    assert r.headers["access-control-allow-origin"] == good.origin
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    r = requests.get(url, headers={"Origin": evil.origin}, timeout=10)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # errors carry them too, so that a page can read why it failed
    r = requests.get(url.replace("hello.txt", "missing.txt"), headers={"Origin": good.origin}, timeout=10)
    assert r.status_code == 403 and r.headers["access-control-allow-origin"] == good.origin
    r = requests.get(f"{d.url}/vol-a/x", headers={"Origin": good.origin}, timeout=10)
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: install the Debian packages chromium and chromium-driver "
                        "(scripts/test does)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    drv.set_script_timeout(30)
    yield drv
    drv.quit()  # stops the chromedriver and the chromium it started


UPLOAD_JS = """
const [url, body, done] = arguments;
fetch(url, {method: "PUT", body: body, headers: {"Content-Type": "text/plain"}})
  .then(async r => done({ok: true, status: r.status, etag: r.headers.get("ETag"), text: await r.text()}))
  .catch(e => done({ok: false, error: String(e)}));
"""


def test_browser_upload_to_presigned_put_from_allowed_origin(d, pages, browser, prefix):
    good, _ = pages
    key = f"{prefix}/from-browser.txt"
    browser.get(good.origin + "/")
    assert "cross-origin uploader" in browser.page_source
    r = browser.execute_async_script(UPLOAD_JS, presign(d, "web", key, "PUT"), "uploaded by chromium")
    assert r["ok"] and r["status"] == 200, r
    assert r["etag"] and r["etag"].strip('"'), f"ETag not exposed to the page: {r}"
    assert (d.vol("web") / key).read_bytes() == b"uploaded by chromium"


def test_browser_upload_refused_from_other_origin(d, pages, browser, prefix):
    _, evil = pages
    key = f"{prefix}/from-evil.txt"
    before = tree_snapshot(d.vol("web"))
    browser.get(evil.origin + "/")
    r = browser.execute_async_script(UPLOAD_JS, presign(d, "web", key, "PUT"), "uploaded by evil")
    assert not r["ok"] and "Failed to fetch" in r["error"], r
    after = tree_snapshot(d.vol("web"))
    assert after == before, snapshot_diff(before, after)
    assert not (d.vol("web") / key).exists()


# ------------------------------------------------------------------------- virtual-hosted style

DOMAIN = "s3.example.test"


@pytest.fixture(scope="module")
def vd(tmp_path_factory, pages):
    """A daemon with `domain` set: `web.s3.example.test` names volume `web`."""
    good, _ = pages
    work = tmp_path_factory.mktemp("cors-vhost")
    web = work / "web"
    (web / "dir").mkdir(parents=True)
    (web / "dir" / "hello.txt").write_bytes(b"hello virtual host")
    extra = (
        f"domain = {toml_str(DOMAIN)}\n"
        f'[[volume]]\nname = "web"\npath = {toml_str(web)}\n'
        "[[volume.cors]]\n"
        f"allowed_origins = [{toml_str(good.origin)}]\n"
        'allowed_methods = ["GET", "PUT"]\n'
        'allowed_headers = ["*"]\n'
        'expose_headers = ["ETag"]\n'
    )
    # A public volume with no CORS rules of its own.
    pub = work / "pub"
    pub.mkdir()
    (pub / "x").write_bytes(b"public bytes")
    extra += f'[[volume]]\nname = "pub"\npath = {toml_str(pub)}\npublic = true\n'
    daemon = start_daemon(work, keys=[KEY], extra_config=extra)
    daemon.vols["web"] = web
    daemon.vols["pub"] = pub
    yield daemon
    assert stop_daemon(daemon) is None, daemon.log_tail()


def vhost_request(d, method, host, path, headers, sign=True):
    """A request whose Host names the bucket (SigV4 signed for that host when `sign`)."""
    from helpers import send_raw, sign_v4
    host = f"{host}:{d.port}"
    if sign:
        hdrs = sign_v4(method, path, None, headers, hashlib.sha256(b"").hexdigest(), host,
                       KEY["access_key"], KEY["secret_key"], d.region).headers
    else:
        hdrs = {"host": host, **headers}
    return send_raw(d, method, path, hdrs, b"")


def test_virtual_hosted_preflight_uses_the_host_bucket_rules(vd, pages):
    """Issue 15 item 4: `web.s3.example.test/dir/x` is bucket `web`, key `dir/x`; a
    path-only guess looked up the rules of a bucket named `dir` (none: 403)."""
    good, evil = pages
    h = {"origin": good.origin, "access-control-request-method": "PUT",
         "access-control-request-headers": "content-type"}
    r = vhost_request(vd, "OPTIONS", f"web.{DOMAIN}", "/dir/x", h, sign=False)
    assert r.status == 200, (r.status, r.body)
    assert r.headers["access-control-allow-origin"] == good.origin
    assert r.headers["access-control-allow-methods"] == "GET, PUT"
    # Upper-case host names are the same bucket, as s3s routes them.
    r = vhost_request(vd, "OPTIONS", f"WEB.{DOMAIN.upper()}", "/dir/x", h, sign=False)
    assert r.status == 200, (r.status, r.body)
    r = vhost_request(vd, "OPTIONS", f"web.{DOMAIN}", "/dir/x", {**h, "origin": evil.origin}, sign=False)
    assert r.status == 403 and b"AccessForbidden" in r.body
    # Path style on the base domain still names the first path segment.
    r = vhost_request(vd, "OPTIONS", DOMAIN, "/web/dir/x", h, sign=False)
    assert r.status == 200 and r.headers["access-control-allow-origin"] == good.origin
    r = vhost_request(vd, "OPTIONS", DOMAIN, "/dir/x", h, sign=False)
    assert r.status == 403 and b"AccessForbidden" in r.body


def test_virtual_hosted_actual_request_carries_the_host_bucket_cors_headers(vd, pages):
    good, _ = pages
    r = vhost_request(vd, "GET", f"web.{DOMAIN}", "/dir/hello.txt", {"origin": good.origin})
    assert r.status == 200 and r.body == b"hello virtual host", (r.status, r.body)
    assert r.headers["access-control-allow-origin"] == good.origin
    assert r.headers["access-control-expose-headers"] == "ETag"
    # The log line names the bucket routing chose, for the preflight too.
    r = vhost_request(vd, "OPTIONS", f"web.{DOMAIN}", "/dir/x",
                      {"origin": good.origin, "access-control-request-method": "GET"}, sign=False)
    rid = r.headers["x-amz-request-id"]

    def line():
        return next((ln for ln in vd.log.read_text(errors="replace").splitlines() if rid in ln), None)
    wait_until(lambda: line() is not None, timeout=5)
    assert 'volume="web"' in line(), line()


def test_absolute_form_target_without_host_gets_the_routed_buckets_rules(vd, pages):
    """An HTTP/1.1 absolute-form target names `web` in its authority but carries no Host:
    s3s routes by the path (volume `pub`), so the CORS answer must be pub's (none), not
    web's (found by the outside attack pass)."""
    import socket
    good, _ = pages
    req = (f"GET http://web.{DOMAIN}/pub/x HTTP/1.1\r\nOrigin: {good.origin}\r\n"
           "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", vd.port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").lower()
    assert head.startswith("http/1.1 200"), head
    assert data.endswith(b"public bytes")
    assert "access-control-allow-origin" not in head, head
