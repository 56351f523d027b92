//! The one harness of the Rust integration tests, as ripgrep's `tests/util.rs`: each test
//! file says `mod util;`.
//!
//! - [`TestDir`]: a unique temporary directory (removed on drop, also when an assertion
//!   fails; kept when `S3VOL_KEEP_TEST_DIRS` is set) that runs the built binary inside it.
//! - [`Daemon`]: a started `s3vol` whose output is read through threads and a channel with
//!   deadlines, so a daemon that hangs or dies fails the test with its output instead of
//!   hanging the suite; killed by its PID when dropped.
//! - [`http_get`] and [`s3`]: bare HTTP/1.1 requests over a socket, the latter signed with
//!   SigV4 (header authorization, payload hashed) by a small signer built on the crate's
//!   own `hmac` and `sha2`.
//!
//! Everything binds 127.0.0.1 only.

#![allow(dead_code)] // each test binary uses a part of the harness

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

/// How long a daemon may take to start, answer or exit.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A TOML basic string holding `path`.
pub fn toml_str(path: &Path) -> String {
    let s = path.to_str().expect("temp paths are UTF-8");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A unique temporary directory for one test; removed when dropped.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A new directory named after `name` (for the reader of a kept directory).
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(&format!("s3vol-test-{name}-")).tempdir().unwrap();
        // Canonical, so that paths compare equal to what the daemon reports.
        let path = dir.path().canonicalize().unwrap();
        TestDir { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn write_mode(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.write(name, contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn command(&self, args: &[&str], env: &[(&str, &Path)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3vol"));
        cmd.args(args)
            .current_dir(&self.path)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a command that is expected to finish by itself (within TIMEOUT).
    pub fn run(&self, args: &[&str]) -> Run {
        let mut daemon = self.spawn(args);
        let code = daemon.wait_exit(TIMEOUT);
        let (stdout, stderr) = daemon.take_output();
        Run { args: args.join(" "), code, stdout, stderr }
    }

    /// Starts `s3vol args` in this directory.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        self.spawn_env(args, &[])
    }

    /// Starts `s3vol args` in this directory with extra environment variables (a path
    /// each, such as `NOTIFY_SOCKET`).
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let mut child = self.command(args, env).spawn().expect("cannot start s3vol");
        let (tx, rx) = channel();
        for (stream, pipe) in [
            (Stream::Stdout, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>),
            (Stream::Stderr, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut reader = std::io::BufReader::new(pipe);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = text.trim_end_matches(['\n', '\r']).to_owned();
                            if tx.send(Event::Line(stream, text)).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send(Event::Closed);
            });
        }
        Daemon { child, args: args.join(" "), rx, open_streams: 2, stdout: String::new(), stderr: String::new() }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("S3VOL_KEEP_TEST_DIRS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

enum Event {
    Line(Stream, String),
    Closed,
}

/// A started `s3vol`; killed (SIGKILL to its PID) and reaped when dropped.
pub struct Daemon {
    child: Child,
    args: String,
    rx: Receiver<Event>,
    open_streams: usize,
    stdout: String,
    stderr: String,
}

impl Daemon {
    /// Takes the next event, recording its line; None when `deadline` passed or both pipes
    /// closed.
    fn next(&mut self, deadline: Instant) -> Option<(Stream, String)> {
        while self.open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Line(stream, line)) => {
                    let all = match stream {
                        Stream::Stdout => &mut self.stdout,
                        Stream::Stderr => &mut self.stderr,
                    };
                    all.push_str(&line);
                    all.push('\n');
                    return Some((stream, line));
                }
                Ok(Event::Closed) => self.open_streams -= 1,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    /// Records every line that has arrived so far, without waiting.
    pub fn drain(&mut self) {
        while self.next(Instant::now()).is_some() {}
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Standard output so far (lines recorded by [`Daemon::drain`] and the waits).
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Standard error so far.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// Waits for the first line on `stream` for which `f` gives Some; lines seen before are
    /// kept for diagnostics. Panics with the output on timeout or exit.
    pub fn wait_line<T>(&mut self, stream: Stream, f: impl Fn(&str) -> Option<T>) -> T {
        // Lines already read (e.g. while waiting for another stream) count too.
        let seen = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        if let Some(found) = seen.lines().find_map(&f) {
            return found;
        }
        let deadline = Instant::now() + TIMEOUT;
        while let Some((s, line)) = self.next(deadline) {
            if s == stream
                && let Some(found) = f(&line)
            {
                return found;
            }
        }
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "`s3vol {}`: expected line not seen on {stream:?} (exit status: {status:?})\n{}",
            self.args,
            self.output()
        );
    }

    /// Waits for `listening on ADDR` on stdout and returns ADDR.
    pub fn wait_listening(&mut self) -> SocketAddr {
        self.wait_line(Stream::Stdout, |line| {
            let addr = line.trim().strip_prefix("listening on ")?;
            Some(
                addr.parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("`listening on` is followed by {addr:?}, not ip:port: {e}")),
            )
        })
    }

    /// Waits for the process to exit and returns its exit code (None: killed by a signal).
    /// Panics if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect what is left in the pipes for diagnostics.
                let drain = Instant::now() + Duration::from_secs(5);
                while self.next(drain).is_some() {}
                return status.code();
            }
            if Instant::now() >= deadline {
                panic!("`s3vol {}` still running after {timeout:?}\n{}", self.args, self.output());
            }
            // Drain output meanwhile so that a chatty process never blocks on a full pipe.
            if self.next(Instant::now() + Duration::from_millis(50)).is_none() {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the daemon by its PID and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn output(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}---", self.stdout, self.stderr)
    }

    fn take_output(&mut self) -> (String, String) {
        (std::mem::take(&mut self.stdout), std::mem::take(&mut self.stderr))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A finished command: its exit code and whole output.
pub struct Run {
    args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, want: i32) {
        assert_eq!(self.code, Some(want), "`s3vol {}` exit code\n{self}", self.args);
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`s3vol {}` exited {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// An HTTP response as it arrived.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (0 when none arrived).
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The text of the first `<tag>...</tag>` of an XML body.
    pub fn xml(&self, tag: &str) -> Option<String> {
        xml_all(&self.text(), tag).into_iter().next()
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{}", self.head, self.text())
    }
}

/// Every `<tag>...</tag>` text of `xml`, in order.
pub fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_owned());
        rest = &after[j + close.len()..];
    }
    out
}

/// Sends `request` (the whole HTTP/1.1 message) to `addr` and reads the response until the
/// server closes the connection (`Connection: close`) or goes quiet after answering.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(request).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // Quiet for a while after a response: the server kept the connection.
            Err(_) if !raw.is_empty() => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut r = Response { status, head, body: body.to_vec() };
    if r.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        r.body = dechunk(body);
    }
    r
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            std::str::from_utf8(&b[..i]).ok().and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|n| *n > 0 && i + 2 + n <= b.len()) else { break };
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = b.get(i + 2 + size + 2..).unwrap_or_default();
    }
    out
}

/// A bare HTTP/1.1 GET with no credentials.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
}

/// An access key for [`s3`]: (access key id, secret key).
pub type Key<'a> = (&'a str, &'a str);

/// A SigV4-signed S3 request (header authorization, region us-east-1, service s3, the
/// payload's SHA-256 signed), sent with `Connection: close`. `path` is the canonical URI
/// (already percent-encoded where needed, e.g. `/vol-a/dir/file.txt`); `query` holds
/// pairs, signed and sent sorted; `headers` are extra (lower-case) headers, all signed.
pub fn s3(
    addr: SocketAddr,
    key: Key<'_>,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let hmac = |k: &[u8], msg: &str| {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(k).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let now = time::OffsetDateTime::now_utc();
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let day = &amz_date[..8];
    let payload = hex(&Sha256::digest(body));
    let host = addr.to_string();
    let mut hs: Vec<(String, String)> = vec![
        ("host".into(), host.clone()),
        ("x-amz-content-sha256".into(), payload.clone()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    hs.extend(headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned())));
    hs.sort();
    let mut q: Vec<(String, String)> =
        query.iter().map(|(k, v)| (s3vol::presign::uri_encode(k, true), s3vol::presign::uri_encode(v, true))).collect();
    q.sort();
    let query_string = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let signed = hs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!("{method}\n{path}\n{query_string}\n{canonical_headers}\n{signed}\n{payload}");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let k = hmac(format!("AWS4{}", key.1).as_bytes(), day);
    let k = hmac(&k, "us-east-1");
    let k = hmac(&k, "s3");
    let k = hmac(&k, "aws4_request");
    let signature = hex(&hmac(&k, &to_sign));
    let auth = format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}", key.0);
    let target = if query_string.is_empty() { path.to_owned() } else { format!("{path}?{query_string}") };
    let mut msg = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &hs {
        msg += &format!("{k}: {v}\r\n");
    }
    msg += &format!("authorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    exchange(addr, &bytes)
}
