//! Operating s3vol the way systemd runs it (issue 6): the real binary, real sockets.
//!
//! - `NOTIFY_SOCKET` points at a unix datagram socket the test binds: READY=1 arrives
//!   only once both listeners accept, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on
//!   SIGTERM.
//! - SIGHUP reloads keys (a removed key fails its next request); SIGTERM during a running
//!   upload lets it complete; an upload cut off by the grace period leaves no temp file.
//! - `/metrics`, `/status` and `/ready` are checked against real traffic, and so is the
//!   JSON log line per request (access key name, never the secret or the signature).
//! - Header-read timeout and `max_connections` against raw sockets.
//! - `scripts/install.sh` into a temporary root, and `systemd-analyze verify` / `security`
//!   on the installed unit (PID 1 is not systemd on CI: the unit is checked statically).
//!
//! Requests are signed by `curl --aws-sigv4` (with `UNSIGNED-PAYLOAD`). Everything binds
//! 127.0.0.1 port 0; every process started here is stopped by its PID.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{TIMEOUT, TestDir, http_get};

const KEY_A: (&str, &str, &str) = ("tester", "AKOPSTEST000001", "ops-secret-0000000000000000001");
const KEY_B: (&str, &str, &str) = ("other", "AKOPSTEST000002", "ops-secret-0000000000000000002");

/// A temp dir with volume `vol-a`, a credentials file and a config; removed on drop.
struct Setup {
    dir: TestDir,
}

impl Setup {
    fn new(name: &str, extra_config: &str) -> Setup {
        let s = Setup { dir: TestDir::new(&format!("ops-{name}")) };
        s.dir.mkdir("vol-a");
        s.write_keys(&[KEY_A, KEY_B]);
        let config = format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n\
             credentials = \"{}\"\n{extra_config}\n\
             [[volume]]\nname = \"vol-a\"\npath = \"{}\"\n",
            s.path("credentials.toml").display(),
            s.path("vol-a").display()
        );
        std::fs::write(s.path("s3vol.toml"), config).unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write_keys(&self, keys: &[(&str, &str, &str)]) {
        let mut text = String::new();
        for (name, ak, sk) in keys {
            text += &format!(
                "[[key]]\nname = \"{name}\"\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\"\nvolumes = [\"*\"]\n\
                 permissions = [\"read\", \"write\", \"delete\"]\n"
            );
        }
        // Write and rename, as an operator's editor would: the daemon never sees half a file.
        let tmp = self.path("credentials.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, self.path("credentials.toml")).unwrap();
    }

    /// Starts `s3vol serve` as systemd would: `NOTIFY_SOCKET` set, stdin null.
    fn start(&self, extra_args: &[&str]) -> Daemon {
        let notify_path = self.path("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let config = self.path("s3vol.toml");
        let mut args = vec!["serve", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra_args);
        let d = self.dir.spawn_env(&args, &[("NOTIFY_SOCKET", &notify_path)]);
        Daemon { d, notify, s3: None, admin: None }
    }
}

/// A daemon started by [`Setup::start`]: the harness's [`util::Daemon`] plus the
/// notification socket and the two addresses it printed.
struct Daemon {
    d: util::Daemon,
    notify: UnixDatagram,
    s3: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

impl Daemon {
    fn output(&mut self) -> String {
        self.d.drain();
        self.d.output()
    }

    /// The next notification datagram; panics after TIMEOUT.
    fn next_notification(&mut self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buf) {
                Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(_) => {
                    if let Some(status) = self.d.try_wait() {
                        panic!("s3vol exited ({status}) before notifying\n{}", self.output());
                    }
                }
            }
        }
        panic!("no sd_notify message within {TIMEOUT:?}\n{}", self.output());
    }

    /// Waits for READY=1, then checks that both addresses were printed and accept.
    fn wait_ready(&mut self) {
        let msg = self.next_notification();
        assert!(msg.lines().any(|l| l == "READY=1"), "first notification is not READY=1: {msg:?}");
        // READY=1 is sent after the lines were written: they are in the pipe already.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (self.s3.is_none() || self.admin.is_none()) && Instant::now() < deadline {
            self.d.drain();
            for l in self.d.stdout().lines() {
                if let Some(a) = l.strip_prefix("listening on ") {
                    self.s3 = a.parse().ok();
                }
                if let Some(a) = l.strip_prefix("admin on ") {
                    self.admin = a.parse().ok();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (s3, admin) = (self.s3.expect("no `listening on`"), self.admin.expect("no `admin on`"));
        for addr in [s3, admin] {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("READY=1 sent but {addr} does not accept: {e}"));
        }
    }

    fn s3(&self) -> SocketAddr {
        self.s3.unwrap()
    }

    /// A GET on the admin listener: (status, body).
    fn admin_get(&self, path: &str) -> (u16, String) {
        let r = http_get(self.admin.unwrap(), path);
        (r.status, r.text())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.d.pid().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{sig} failed");
    }

    fn wait_exit(&mut self) -> Option<i32> {
        self.d.wait_exit(TIMEOUT)
    }

    /// The JSON log lines with message "request".
    fn request_logs(&mut self) -> Vec<serde_json::Value> {
        self.d.drain();
        self.d
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request")
            .collect()
    }
}

/// A curl command signed with `key` (SigV4, UNSIGNED-PAYLOAD); prints the status code last.
fn curl(key: (&str, &str, &str), args: &[&str], url: &str) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &format!("{}:{}", key.1, key.2)])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null());
    c
}

/// Runs a signed curl: (status code, body).
fn s3_request(key: (&str, &str, &str), args: &[&str], url: &str) -> (u16, String) {
    let out = curl(key, args, url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of a sample line `name{labels} value` in Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn tmp_files(setup: &Setup) -> Vec<String> {
    std::fs::read_dir(setup.path("vol-a/.s3vol/tmp"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn notify_ready_only_after_listeners_and_stopping_on_sigterm() {
    let setup = Setup::new("notify", "");
    let mut d = setup.start(&[]);
    d.wait_ready();
    assert_eq!(d.admin_get("/health"), (200, "ok\n".into()));
    d.signal("TERM");
    let msg = d.next_notification();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "after SIGTERM: {msg:?}");
    assert_eq!(d.wait_exit(), Some(0), "{}", d.output());
}

#[test]
fn sighup_reloads_keys_and_a_removed_key_fails_at_once() {
    let setup = Setup::new("sighup", "");
    let mut d = setup.start(&[]);
    d.wait_ready();
    let url = format!("http://{}/vol-a?list-type=2", d.s3());
    assert_eq!(s3_request(KEY_A, &[], &url).0, 200);
    assert_eq!(s3_request(KEY_B, &[], &url).0, 200);

    setup.write_keys(&[KEY_B]);
    d.signal("HUP");
    let msg = d.next_notification();
    assert!(msg.lines().any(|l| l == "RELOADING=1"), "after SIGHUP: {msg:?}");
    assert!(msg.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{msg:?}");
    let msg = d.next_notification();
    assert!(msg.lines().any(|l| l == "READY=1"), "after the reload: {msg:?}");

    let (code, body) = s3_request(KEY_A, &[], &url);
    assert_eq!(code, 403, "the removed key still works: {body}\n{}", d.output());
    assert!(body.contains("InvalidAccessKeyId"), "{body}");
    assert_eq!(s3_request(KEY_B, &[], &url).0, 200, "the kept key stopped working");

    // A broken file keeps the keys in force.
    std::fs::write(setup.path("credentials.toml"), "not toml [[[").unwrap();
    d.signal("HUP");
    d.next_notification();
    d.next_notification();
    assert_eq!(s3_request(KEY_B, &[], &url).0, 200, "a broken file dropped the keys");
}

#[test]
fn sigterm_during_an_upload_lets_it_complete() {
    let setup = Setup::new("drain", "shutdown_grace = \"30s\"");
    let mut d = setup.start(&[]);
    d.wait_ready();
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(setup.path("upload.bin"), &data).unwrap();
    let url = format!("http://{}/vol-a/drain/big.bin", d.s3());
    let file = setup.path("upload.bin");
    // About 4 s on the wire.
    let upload = curl(KEY_A, &["--limit-rate", "768K", "-T", file.to_str().unwrap()], &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the upload is inside the daemon (it counts as a write in flight).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, m) = d.admin_get("/metrics");
        if sample(&m, "s3vol_volume_writes_in_flight{volume=\"vol-a\"}") == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never started\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.signal("TERM");
    let msg = d.next_notification();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
    // New connections are refused while the upload drains.
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect_timeout(&d.s3(), Duration::from_secs(1)).is_err(), "still accepting after SIGTERM");

    let out = upload.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim_end().ends_with("200"), "upload failed: {text}\n{}", d.output());
    assert_eq!(d.wait_exit(), Some(0), "{}", d.output());
    let stored = std::fs::read(setup.path("vol-a/drain/big.bin")).expect("the object was not written");
    assert!(stored == data, "the stored object differs from the upload");
    assert_eq!(tmp_files(&setup), Vec::<String>::new(), "temp files left behind");
}

#[test]
fn an_upload_cut_off_by_the_grace_period_leaves_no_temp_file() {
    let setup = Setup::new("cutoff", "shutdown_grace = \"1s\"");
    let mut d = setup.start(&[]);
    d.wait_ready();
    std::fs::write(setup.path("upload.bin"), vec![7u8; 2 << 20]).unwrap();
    let url = format!("http://{}/vol-a/cut.bin", d.s3());
    let file = setup.path("upload.bin");
    let mut upload = curl(KEY_A, &["--limit-rate", "128K", "-T", file.to_str().unwrap()], &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{}", d.output());
    let _ = upload.kill();
    let _ = upload.wait();
    assert!(!setup.path("vol-a/cut.bin").exists(), "a cut-off upload was committed");
    assert_eq!(tmp_files(&setup), Vec::<String>::new(), "temp files left behind");
}

#[test]
fn metrics_status_ready_and_logs_follow_real_traffic() {
    let setup = Setup::new("metrics", "");
    // A second volume whose directory is missing: served as 503, not ready.
    let text = std::fs::read_to_string(setup.path("s3vol.toml")).unwrap();
    let missing = setup.path("missing");
    std::fs::write(
        setup.path("s3vol.toml"),
        format!("{text}\n[[volume]]\nname = \"vol-b\"\npath = \"{}\"\n", missing.display()),
    )
    .unwrap();
    let mut d = setup.start(&[]);
    d.wait_ready();
    let base = format!("http://{}", d.s3());
    std::fs::write(setup.path("obj.txt"), vec![b'x'; 1000]).unwrap();
    let obj = setup.path("obj.txt");
    assert_eq!(s3_request(KEY_A, &["-T", obj.to_str().unwrap()], &format!("{base}/vol-a/m/obj.txt")).0, 200);
    let (code, body) = s3_request(KEY_A, &[], &format!("{base}/vol-a/m/obj.txt"));
    assert_eq!((code, body.len()), (200, 1000));
    assert_eq!(s3_request(KEY_A, &[], &format!("{base}/vol-a/m/nothing")).0, 404);
    let (code, body) = s3_request(KEY_A, &["-X", "POST"], &format!("{base}/vol-a/m/mp.bin?uploads="));
    assert_eq!(code, 200, "{body}");
    // A presigned-style query must never reach the log.
    let _ = http_get(d.s3(), "/vol-a/m/obj.txt?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKOPSTEST000001");

    let (code, m) = d.admin_get("/metrics");
    assert_eq!(code, 200);
    for (series, want) in [
        ("s3vol_requests_total{op=\"PutObject\",status=\"200\"}", 1.0),
        ("s3vol_requests_total{op=\"GetObject\",status=\"200\"}", 1.0),
        ("s3vol_requests_total{op=\"GetObject\",status=\"404\"}", 1.0),
        ("s3vol_requests_total{op=\"CreateMultipartUpload\",status=\"200\"}", 1.0),
        ("s3vol_request_body_bytes_total{op=\"PutObject\"}", 1000.0),
        ("s3vol_response_body_bytes_total{op=\"GetObject\"}", 1000.0 + 0.0),
        ("s3vol_request_duration_seconds_count{op=\"GetObject\"}", 2.0),
        ("s3vol_multipart_uploads_staged{volume=\"vol-a\"}", 1.0),
        ("s3vol_volume_online{volume=\"vol-a\"}", 1.0),
        ("s3vol_volume_online{volume=\"vol-b\"}", 0.0),
        ("s3vol_volume_writes_in_flight{volume=\"vol-a\"}", 0.0),
    ] {
        let got = sample(&m, series);
        // The 404's error body counts in GetObject's bytes out too.
        let ok = if series.starts_with("s3vol_response_body") { got >= Some(want) } else { got == Some(want) };
        assert!(ok, "{series}: got {got:?}, want {want}\n{m}");
    }
    assert!(sample(&m, "s3vol_volume_capacity_bytes{volume=\"vol-a\"}").unwrap() > 0.0, "{m}");
    assert!(sample(&m, "s3vol_volume_free_bytes{volume=\"vol-a\"}").is_some(), "{m}");
    assert!(sample(&m, "s3vol_volume_used_bytes{volume=\"vol-a\"}").is_some(), "{m}");
    assert!(m.contains("s3vol_requests_in_flight"), "{m}");

    let (code, st) = d.admin_get("/status");
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&st).expect("status is JSON");
    let vols = st["volumes"].as_array().unwrap();
    let a = vols.iter().find(|v| v["name"] == "vol-a").unwrap();
    assert_eq!(a["path"], setup.path("vol-a").display().to_string());
    assert_eq!((a["online"].as_bool(), a["writable"].as_bool()), (Some(true), Some(true)), "{a}");
    assert_eq!(a["multipart_uploads"], 1, "{a}");
    assert!(a["capacity"]["total"].as_u64().unwrap() > 0, "{a}");
    let b = vols.iter().find(|v| v["name"] == "vol-b").unwrap();
    assert_eq!(b["online"], false, "{b}");

    let (code, body) = d.admin_get("/ready");
    assert_eq!(code, 503, "ready with a missing volume: {body}");
    assert!(body.contains("vol-b"), "{body}");

    // One JSON line per request with the key's name, the operation, volume and key.
    let logs = d.request_logs();
    let put = logs.iter().find(|l| l["fields"]["op"] == "PutObject").expect("no PutObject log line");
    let f = &put["fields"];
    assert_eq!((f["access_key"].as_str(), f["volume"].as_str()), (Some("tester"), Some("vol-a")), "{put}");
    assert_eq!((f["key"].as_str(), f["status"].as_u64()), (Some("m/obj.txt"), Some(200)), "{put}");
    assert_eq!(f["bytes_in"].as_u64(), Some(1000), "{put}");
    assert!(f["request_id"].as_str().is_some_and(|s| s.len() == 16) && f["ms"].is_u64(), "{put}");
    let all = d.output();
    for secret in [KEY_A.2, KEY_B.2, "deadbeefcafe", "Signature=", "Authorization"] {
        assert!(!all.contains(secret), "{secret:?} appears in the output\n{all}");
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn ready_answers_200_when_every_volume_is_writable() {
    // /ready answers 200 only when every volume is served and writable.
    let setup = Setup::new("ready", "");
    let mut d = setup.start(&[]);
    d.wait_ready();
    assert_eq!(d.admin_get("/ready"), (200, "ready\n".into()));
    assert_eq!(d.admin_get("/nothing").0, 404);
}

#[test]
fn slow_headers_time_out_and_max_connections_queues_clients() {
    let setup = Setup::new("limits", "header_read_timeout = \"1s\"\nmax_connections = 1");
    let mut d = setup.start(&[]);
    d.wait_ready();
    let addr = d.s3();
    // A client that sends half a request head and stalls is dropped after the timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /vol-a HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Meanwhile it holds the only slot: a second client is not served yet.
    let mut second = TcpStream::connect(addr).unwrap();
    second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    second.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    assert!(second.read(&mut buf).is_err(), "served beyond max_connections");

    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5), "a stalled head kept its connection");
    // Its slot is free now: the queued client gets its answer.
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = second.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "the queued client got: {answer:?}\n{}", d.output());
}

/// Runs `scripts/install.sh` into a temporary root: files, owners and modes, idempotence,
/// the operator's config kept, uninstall; then checks the installed unit statically.
#[test]
fn install_script_into_a_temp_root_and_the_unit_verifies() {
    let root = nix_is_root();
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root: install.sh sets owners");
        eprintln!("skipped: install.sh needs root (it sets owners)");
        return;
    }
    let setup = Setup::new("install", "");
    let prefix = setup.path("root");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = |extra: &[&str]| {
        let out = Command::new("bash")
            .arg(manifest.join("scripts/install.sh"))
            .args(["--prefix", prefix.to_str().unwrap(), "--binary", env!("CARGO_BIN_EXE_s3vol"), "--user", "root"])
            .args(extra)
            .env_remove("DESTDIR")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "install.sh {extra:?} failed:\n{text}");
        text
    };
    let first = install(&[]);
    assert!(first.contains("generated a key"), "{first}");
    let mode = |rel: &str| {
        std::fs::metadata(prefix.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}\n{first}")).permissions().mode()
            & 0o7777
    };
    for (rel, want) in [
        ("usr/local/bin/s3vol", 0o755),
        ("etc/systemd/system/s3vol.service", 0o644),
        ("etc/systemd/system/s3vol.service.d/volumes.conf", 0o644),
        ("etc/s3vol", 0o750),
        ("etc/s3vol/s3vol.toml", 0o640),
        ("etc/s3vol/credentials.toml", 0o600),
    ] {
        assert_eq!(mode(rel), want, "{rel}: mode {:o}", mode(rel));
    }
    let dropin = std::fs::read_to_string(prefix.join("etc/systemd/system/s3vol.service.d/volumes.conf")).unwrap();
    assert!(dropin.contains("RequiresMountsFor=/mnt/vol-a /mnt/vol-b"), "{dropin}");
    assert!(dropin.contains("ReadWritePaths=/mnt/vol-a /mnt/vol-b"), "{dropin}");

    // Idempotent: a second run keeps the operator's config and credentials.
    let config = prefix.join("etc/s3vol/s3vol.toml");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + "# edited by the operator\n").unwrap();
    let creds = std::fs::read_to_string(prefix.join("etc/s3vol/credentials.toml")).unwrap();
    let second = install(&[]);
    assert!(!second.contains("generated a key"), "{second}");
    assert!(std::fs::read_to_string(&config).unwrap().ends_with("# edited by the operator\n"), "config overwritten");
    assert_eq!(std::fs::read_to_string(prefix.join("etc/s3vol/credentials.toml")).unwrap(), creds);

    // The installed unit, with its binary path pointed into the temp root.
    let unit = std::fs::read_to_string(prefix.join("etc/systemd/system/s3vol.service")).unwrap();
    let installed_bin = prefix.join("usr/local/bin/s3vol");
    let checked = setup.path("s3vol.service");
    std::fs::write(&checked, unit.replace("/usr/local/bin/s3vol", installed_bin.to_str().unwrap())).unwrap();
    systemd_analyze_checks(&checked, &setup);

    install(&["--uninstall"]);
    assert!(!installed_bin.exists() && !prefix.join("etc/systemd/system/s3vol.service").exists());
    assert!(config.exists(), "--uninstall without --purge removed the config");
    install(&["--uninstall", "--purge"]);
    assert!(!prefix.join("etc/s3vol").exists(), "--purge kept /etc/s3vol");
}

/// A package build: `scripts/install.sh --prefix DIR` (and `DESTDIR=DIR`) on a machine
/// where the service user does not exist installs every file root-owned, generates no
/// secret, names the user in the unit, and prints the owner commands for the package's
/// install step, instead of failing.
#[test]
fn install_script_under_a_prefix_without_the_service_user_leaves_owners_to_the_package() {
    if !nix_is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root: install.sh sets owners");
        eprintln!("skipped: install.sh needs root (it sets owners)");
        return;
    }
    let user = "s3vol-pkg-nouser";
    let exists = Command::new("getent").args(["passwd", user]).output().unwrap().status.success();
    assert!(!exists, "user {user} exists on this machine: the test needs it absent");
    let setup = Setup::new("install-nouser", "");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (how, prefix) in [("--prefix", setup.path("by-prefix")), ("DESTDIR", setup.path("by-destdir"))] {
        let mut cmd = Command::new("bash");
        cmd.arg(manifest.join("scripts/install.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_s3vol"), "--user", user])
            .env_remove("DESTDIR");
        if how == "DESTDIR" {
            cmd.env("DESTDIR", &prefix);
        } else {
            cmd.arg("--prefix").arg(&prefix);
        }
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "install.sh ({how}) without the user failed:\n{text}");
        assert!(text.contains("useradd --system --user-group"), "{text}");
        assert!(!text.contains("generated a key"), "a secret generated into a package:\n{text}");
        assert!(!prefix.join("etc/s3vol/credentials.toml").exists());
        for rel in ["usr/local/bin/s3vol", "etc/systemd/system/s3vol.service", "etc/s3vol", "etc/s3vol/s3vol.toml"] {
            let md = std::fs::metadata(prefix.join(rel)).unwrap_or_else(|e| panic!("{how} {rel}: {e}\n{text}"));
            use std::os::unix::fs::MetadataExt;
            assert_eq!((md.uid(), md.gid()), (0, 0), "{how} {rel} is not root's");
        }
        let unit = std::fs::read_to_string(prefix.join("etc/systemd/system/s3vol.service")).unwrap();
        assert!(unit.contains(&format!("\nUser={user}\n")) && unit.contains(&format!("\nGroup={user}\n")), "{unit}");
    }
}

/// The .deb (scripts/deb.sh, cargo-deb) of the built binary: `dpkg -i` installs the
/// binary, the unit (which `systemd-analyze verify` accepts), the config as a conffile and
/// makes the service account and its owners; `dpkg -r` removes the binary and unit and
/// keeps the config; `dpkg -P` removes the config and the credentials it generated, and
/// keeps the account (files on volumes are owned by its uid). Credentials the operator put
/// there before installing stay through a purge, and a link at their path (dangling too)
/// is never written through.
#[test]
fn deb_package_installs_verifies_and_removes() {
    let have = |cmd: &str| Command::new(cmd).arg("--version").output().is_ok_and(|o| o.status.success());
    if !nix_is_root() || !have("cargo-deb") || !have("dpkg") {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root with cargo-deb (scripts/test installs it)");
        eprintln!("skipped: needs root, cargo-deb and dpkg");
        return;
    }
    let installed = Command::new("dpkg").args(["-s", "s3vol"]).output().unwrap().status.success();
    let user = Command::new("getent").args(["passwd", "s3vol"]).output().unwrap().status.success();
    if installed || user || Path::new("/usr/bin/s3vol").exists() || Path::new("/etc/s3vol").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI machine already has s3vol installed or its user");
        eprintln!("skipped: s3vol (package, user or /etc/s3vol) is already on this machine; not touching it");
        return;
    }
    let setup = Setup::new("deb", "");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(manifest.join("scripts/deb.sh"))
        .args(["--profile", "dev", "--binary", env!("CARGO_BIN_EXE_s3vol"), "--output"])
        .arg(setup.path("deb"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/deb.sh failed:\n{text}");
    let deb = std::fs::read_dir(setup.path("deb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb made:\n{text}"));
    // dpkg answers at once when another dpkg or apt holds its lock: wait for it, boundedly.
    let dpkg = |args: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new("dpkg").args(args).env("DEBIAN_FRONTEND", "noninteractive").output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            if out.status.success() || !text.contains("lock") || Instant::now() > deadline {
                assert!(out.status.success(), "dpkg {args:?}:\n{text}");
                return text;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    };
    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = Command::new("dpkg").args(["-P", "s3vol"]).output();
            // The account the package made stays on purge (Debian practice): this test
            // made it, and removes it, with what it left in /etc/s3vol.
            let _ = std::fs::remove_dir_all("/etc/s3vol");
            let _ = Command::new("userdel").arg("s3vol").output();
            let _ = Command::new("groupdel").arg("s3vol").output();
        }
    }
    let _purge = Purge;
    let installed = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(installed.contains("generated a key"), "{installed}");

    use std::os::unix::fs::MetadataExt;
    let id = |what: &str| {
        let out = Command::new("id").args([what, "s3vol"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap_or_else(|_| panic!("no user s3vol"))
    };
    let (uid, gid) = (id("-u"), id("-g"));
    for (path, mode, owner) in [
        ("/usr/bin/s3vol", 0o755, (0, 0)),
        ("/lib/systemd/system/s3vol.service", 0o644, (0, 0)),
        ("/etc/s3vol", 0o750, (0, gid)),
        ("/etc/s3vol/s3vol.toml", 0o640, (0, gid)),
        ("/etc/s3vol/credentials.toml", 0o600, (uid, gid)),
        ("/usr/share/doc/s3vol/README.md", 0o644, (0, 0)),
        ("/usr/share/doc/s3vol/grafana-dashboard.json", 0o644, (0, 0)),
    ] {
        let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(md.mode() & 0o7777, mode, "{path}: mode {:o}", md.mode() & 0o7777);
        assert_eq!((md.uid(), md.gid()), owner, "{path}: owner");
    }
    let conffiles = dpkg(&["-s", "s3vol"]);
    assert!(conffiles.contains("/etc/s3vol/s3vol.toml"), "the config is not a conffile:\n{conffiles}");
    let version = Command::new("/usr/bin/s3vol").arg("--version").output().unwrap();
    assert!(version.status.success());
    let unit = std::fs::read_to_string("/lib/systemd/system/s3vol.service").unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/s3vol serve") && !unit.contains("/usr/local"), "{unit}");
    // The installed credentials pass the daemon's own check.
    let check = Command::new("/usr/bin/s3vol")
        .args(["check-config", "--config", "/etc/s3vol/s3vol.toml", "--volume"])
        .arg(format!("vol-a={}", setup.path("vol-a").display()))
        .output()
        .unwrap();
    let check_text = String::from_utf8_lossy(&check.stderr);
    assert!(!check_text.contains("credentials"), "{check_text}");
    if have("systemd-analyze") {
        let out =
            Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/s3vol.service"]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI must have systemd-analyze");
    }

    dpkg(&["-r", "s3vol"]);
    for gone in ["/usr/bin/s3vol", "/lib/systemd/system/s3vol.service", "/usr/share/doc/s3vol/README.md"] {
        assert!(!Path::new(gone).exists(), "{gone} stayed after dpkg -r");
    }
    assert!(Path::new("/etc/s3vol/s3vol.toml").exists(), "dpkg -r removed the conffile");
    dpkg(&["-P", "s3vol"]);
    assert!(!Path::new("/etc/s3vol").exists(), "/etc/s3vol stayed after dpkg -P");
    assert!(Command::new("getent").args(["passwd", "s3vol"]).output().unwrap().status.success(), "user s3vol removed");

    // The operator's own credentials, there before the package: kept through a purge.
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all("/etc/s3vol").unwrap();
    let mine = "[[key]]\nname = \"ops\"\naccess_key = \"AKOPS\"\nsecret_key = \"ops-secret\"\nvolumes = [\"*\"]\npermissions = [\"read\"]\n";
    std::fs::write("/etc/s3vol/credentials.toml", mine).unwrap();
    std::fs::set_permissions("/etc/s3vol/credentials.toml", std::fs::Permissions::from_mode(0o600)).unwrap();
    let again = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(!again.contains("generated a key"), "{again}");
    dpkg(&["-P", "s3vol"]);
    assert_eq!(
        std::fs::read_to_string("/etc/s3vol/credentials.toml").unwrap(),
        mine,
        "purge removed the operator's file"
    );

    // A dangling link at the credentials' path: not written through, left as it is.
    std::fs::remove_file("/etc/s3vol/credentials.toml").unwrap();
    let target = setup.path("elsewhere.toml");
    std::os::unix::fs::symlink(&target, "/etc/s3vol/credentials.toml").unwrap();
    let linked = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(!linked.contains("generated a key") && linked.contains("symbolic link"), "{linked}");
    assert!(!target.exists(), "postinst wrote a key through a link");
    assert!(std::fs::symlink_metadata("/etc/s3vol/credentials.toml").unwrap().file_type().is_symlink());
    dpkg(&["-P", "s3vol"]);
}

/// `systemd-analyze verify` passes on the unit (and fails on a broken copy, so the check
/// is not vacuous); `systemd-analyze security --offline` scores it at most 2.0.
fn systemd_analyze_checks(unit: &Path, setup: &Setup) {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have systemd-analyze (scripts/test installs systemd)");
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let run = |args: &[&str], path: &Path| {
        let out = Command::new("systemd-analyze").args(args).arg(path).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run(&["verify"], unit);
    assert!(ok && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
    let text_of_unit = std::fs::read_to_string(unit).unwrap();
    assert!(text_of_unit.contains("Type=notify"), "the unit is not Type=notify");
    let broken = setup.path("broken/s3vol.service");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, text_of_unit.replacen("ExecStart=", "ExecStart=/nonexistent/s3vol ", 1)).unwrap();
    let (ok, _) = run(&["verify"], &broken);
    assert!(!ok, "systemd-analyze verify accepts a unit whose binary is missing: the check proves nothing");
    let (ok, text) = run(&["security", "--offline=true", "--threshold=20"], unit);
    assert!(ok, "systemd-analyze security: exposure above 2.0\n{text}");
    let score = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
    eprintln!("{score}");
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// `scripts/smoke.sh` (what an operator runs after install) against a running daemon.
#[test]
fn smoke_script_round_trips_with_the_aws_cli() {
    if Command::new("aws").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have the aws CLI (scripts/test installs it)");
        eprintln!("skipped: the aws CLI is not installed");
        return;
    }
    let setup = Setup::new("smoke", "");
    let mut d = setup.start(&[]);
    d.wait_ready();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smoke.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(["--endpoint", &format!("http://{}", d.s3()), "--bucket", "vol-a"])
        .args(["--admin", &format!("http://{}", d.admin.unwrap())])
        .args(["--credentials", setup.path("credentials.toml").to_str().unwrap(), "--key-name", "other"])
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("smoke: ok"), "smoke.sh failed:\n{text}\n{}", d.output());
    let logs = d.request_logs();
    assert!(logs.iter().any(|l| l["fields"]["access_key"] == "other"), "smoke.sh did not use --key-name");
}
