//! The command-line contract (docs/CONTRACT.md, "Binary"), checked against the real
//! binary: `check-config` verdicts and exit codes, the `listening on ADDR` line that
//! scripts wait for, and the embedded default of a bare `serve`.
//!
//! Every test runs `s3vol` in its own temporary directory and binds only 127.0.0.1
//! port 0. Output is read through a thread and a channel with a deadline, so a daemon
//! that hangs or dies fails the test with its output instead of hanging the suite.
//! S3 behaviour itself is tested through real clients in tests/e2e.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use util::{Stream, TestDir};

const ACCESS_KEY: &str = "AKCLITEST0000001";
const SECRET_KEY: &str = "cli-test-secret-0000000000000001";

/// A config with one volume `vol-a` and a credentials file of the given mode.
fn valid_setup(dir: &TestDir, credentials_mode: u32) -> std::path::PathBuf {
    dir.mkdir("vol-a");
    let credentials = dir.write_mode(
        "credentials.toml",
        &format!(
            "[[key]]\n\
             name = \"cli-test\"\n\
             access_key = \"{ACCESS_KEY}\"\n\
             secret_key = \"{SECRET_KEY}\"\n\
             volumes = [\"*\"]\n\
             permissions = [\"read\", \"write\", \"delete\"]\n"
        ),
        credentials_mode,
    );
    dir.write(
        "s3vol.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\n\
             region = \"us-east-1\"\n\
             credentials = {}\n\
             \n\
             [[volume]]\n\
             name = \"vol-a\"\n\
             path = {}\n",
            util::toml_str(&credentials),
            util::toml_str(&dir.path().join("vol-a")),
        ),
    )
}

#[test]
fn check_config_accepts_a_valid_config() {
    let dir = TestDir::new("check-ok");
    let config = valid_setup(&dir, 0o600);
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(0);
    assert!(out.stdout.contains("config ok"), "no `config ok` on stdout\n{out}");
}

#[test]
fn check_config_accepts_flags_without_a_config_file() {
    let dir = TestDir::new("check-flags");
    valid_setup(&dir, 0o600);
    let volume = format!("vol-a={}", dir.path().join("vol-a").display());
    let credentials = dir.path().join("credentials.toml");
    let out = dir.run(&[
        "check-config",
        "--volume",
        &volume,
        "--credentials",
        credentials.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    out.assert_code(0);
    assert!(out.stdout.contains("config ok"), "no `config ok` on stdout\n{out}");
}

#[test]
fn check_config_refuses_credentials_readable_by_others() {
    let dir = TestDir::new("check-perm");
    let config = valid_setup(&dir, 0o644);
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    let err = out.stderr.to_lowercase();
    assert!(
        ["permission", "mode", "readable", "644"].iter().any(|w| err.contains(w)),
        "stderr does not explain the permission problem\n{out}"
    );
    assert!(err.contains("credentials"), "stderr does not name the credentials file\n{out}");
    assert!(!out.stdout.contains("config ok"), "said `config ok` anyway\n{out}");
    assert!(!out.stderr.contains(SECRET_KEY), "a secret key was printed\n{out}");
}

#[test]
fn check_config_names_an_unknown_field() {
    let dir = TestDir::new("check-unknown");
    let config = valid_setup(&dir, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("bogus_field = 1\n{text}")).unwrap();
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("bogus_field"), "stderr does not name the field\n{out}");
}

#[test]
fn check_config_names_an_unknown_volume_field() {
    let dir = TestDir::new("check-unknown-vol");
    let config = valid_setup(&dir, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}colour = \"red\"\n")).unwrap();
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("colour"), "stderr does not name the field\n{out}");
}

#[test]
fn check_config_refuses_a_bad_bucket_name() {
    let dir = TestDir::new("check-bucket");
    let config = valid_setup(&dir, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("name = \"vol-a\"", "name = \"Bad_Name\"")).unwrap();
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("Bad_Name"), "stderr does not name the bad bucket\n{out}");
}

#[test]
fn check_config_takes_domains_from_the_file_and_the_flag() {
    let dir = TestDir::new("check-domain");
    let config = valid_setup(&dir, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("domain = [\"s3.example.com\", \"s3.internal\"]\n{text}")).unwrap();
    let config = config.to_str().unwrap();
    dir.run(&["check-config", "--config", config]).assert_code(0);
    let out = dir.run(&["check-config", "--config", config, "--domain", "s3.example.com:9000"]);
    out.assert_code(2);
    assert!(out.stderr.contains("s3.example.com:9000"), "stderr does not name the bad domain\n{out}");
}

#[test]
fn check_config_refuses_tls_cert_without_key() {
    let dir = TestDir::new("check-tls");
    let config = valid_setup(&dir, 0o600);
    let cert = dir.write("cert.pem", "not used: the key is missing\n");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("tls_cert = {}\n{text}", util::toml_str(&cert))).unwrap();
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.to_lowercase().contains("tls"), "stderr does not mention tls\n{out}");
}

#[test]
fn check_config_refuses_a_missing_credentials_file() {
    let dir = TestDir::new("check-nocreds");
    let config = valid_setup(&dir, 0o600);
    std::fs::remove_file(dir.path().join("credentials.toml")).unwrap();
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("credentials"), "stderr does not name the credentials file\n{out}");
}

/// systemd/s3vol.toml is the example operators copy: it must stay in step with the
/// parser (unknown fields are rejected). Its paths are pointed into the temp dir.
#[test]
fn example_config_in_systemd_dir_is_accepted() {
    let dir = TestDir::new("check-example");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/s3vol.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let credentials = dir.write_mode(
        "credentials.toml",
        &format!(
            "[[key]]\nname = \"ops\"\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
             volumes = [\"*\"]\npermissions = [\"read\"]\n"
        ),
        0o600,
    );
    let mut text = text
        .replace("\"/etc/s3vol/credentials.toml\"", &util::toml_str(&credentials))
        .replace("require_mount = true", "require_mount = false")
        .replace("\"0.0.0.0:9000\"", "\"127.0.0.1:0\"");
    // Every `path = "/mnt/NAME"` becomes a directory of the test.
    for name in ["vol-a", "vol-b"] {
        let path = dir.mkdir(name);
        text = text.replace(&format!("\"/mnt/{name}\""), &util::toml_str(&path));
    }
    let unmapped = text.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("\"/mnt/"));
    assert!(unmapped.is_none(), "example has a path the test does not map: {unmapped:?}");
    let config = dir.write("s3vol.toml", &text);
    let out = dir.run(&["check-config", "--config", config.to_str().unwrap()]);
    out.assert_code(0);
    assert!(out.stdout.contains("config ok"), "no `config ok` on stdout\n{out}");
}

#[test]
fn serve_prints_the_bound_address_and_answers_anonymous_requests_with_access_denied() {
    let dir = TestDir::new("serve");
    let config = valid_setup(&dir, 0o600);
    let mut daemon = dir.spawn(&["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let addr = daemon.wait_listening();
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "bound elsewhere than asked");
    assert_ne!(addr.port(), 0, "printed port 0 instead of the bound port");

    let response = http_get(addr, "/");
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    assert!(response.starts_with("HTTP/1.1 403"), "anonymous GET / is not 403\n{response}\n{}", daemon.output());
    assert!(response.contains("<Code>AccessDenied</Code>"), "no AccessDenied XML\n{response}");
    assert!(head.to_ascii_lowercase().contains("\r\nx-amz-request-id:"), "no x-amz-request-id header\n{response}");
    daemon.stop();
}

#[test]
fn serve_exits_2_when_credentials_are_readable_by_others() {
    let dir = TestDir::new("serve-perm");
    let config = valid_setup(&dir, 0o644);
    let mut daemon = dir.spawn(&["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let code = daemon.wait_exit(util::TIMEOUT);
    assert_eq!(code, Some(2), "serve did not exit 2\n{}", daemon.output());
}

#[test]
fn serve_without_config_runs_the_embedded_default() {
    let dir = TestDir::new("serve-default");
    let first_key = {
        let mut daemon = dir.spawn(&["serve", "--listen", "127.0.0.1:0"]);
        daemon.wait_listening();
        let access = daemon.wait_line(Stream::Stderr, |l| after(l, "dev access key:"));
        daemon.wait_line(Stream::Stderr, |l| after(l, "dev secret key:"));
        daemon.stop();
        access
    };

    assert!(dir.path().join("demo-volume").is_dir(), "no ./demo-volume created");
    let credentials = dir.path().join(".s3vol-dev/credentials.toml");
    let meta = std::fs::metadata(&credentials).expect("no ./.s3vol-dev/credentials.toml");
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "dev credentials are readable by others: mode {:o}",
        meta.permissions().mode() & 0o777
    );
    let text = std::fs::read_to_string(&credentials).unwrap();
    assert!(text.contains(&first_key), "the printed access key is not in {credentials:?}");

    // The key is kept, so a restart prints the same one.
    let mut daemon = dir.spawn(&["serve", "--listen", "127.0.0.1:0"]);
    daemon.wait_listening();
    let second_key = daemon.wait_line(Stream::Stderr, |l| after(l, "dev access key:"));
    daemon.stop();
    assert_eq!(first_key, second_key, "the dev key changed across a restart");
}

/// The first word after `marker` in `line`, wherever the marker stands (a log
/// prefix may come before it).
fn after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

/// A bare HTTP/1.1 GET with no credentials; returns whatever arrived before the
/// server closed the connection or went quiet.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, util::TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let deadline = Instant::now() + util::TIMEOUT;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // Quiet for a while after a response: the server kept the connection.
            Err(_) if !response.is_empty() => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

mod util {
    //! Like ripgrep's tests/util.rs: a unique temp dir per test (removed on drop) that
    //! runs the built binary inside it, and a running-daemon handle whose output is
    //! read with deadlines and which is killed by PID when dropped.

    use super::*;
    use std::fmt;
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
    use std::thread;

    /// How long a daemon may take to start, answer or exit.
    pub const TIMEOUT: Duration = Duration::from_secs(30);

    /// A TOML basic string holding `path`.
    pub fn toml_str(path: &Path) -> String {
        let s = path.to_str().expect("temp paths are UTF-8");
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    pub struct TestDir {
        path: PathBuf,
    }

    impl TestDir {
        pub fn new(name: &str) -> TestDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!("s3vol-cli-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path); // left over from a reused pid
            std::fs::create_dir_all(&path).unwrap();
            // Canonical, so that paths compare equal to what the daemon reports.
            TestDir { path: path.canonicalize().unwrap() }
        }

        pub fn path(&self) -> &Path {
            &self.path
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

        fn command(&self, args: &[&str]) -> Command {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3vol"));
            cmd.args(args)
                .current_dir(&self.path)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd
        }

        /// Runs a command that is expected to finish by itself (within TIMEOUT).
        pub fn run(&self, args: &[&str]) -> Run {
            let mut daemon = self.spawn(args);
            let code = daemon.wait_exit(TIMEOUT);
            let (stdout, stderr) = daemon.take_output();
            Run { args: args.join(" "), code, stdout, stderr }
        }

        pub fn spawn(&self, args: &[&str]) -> Daemon {
            let mut child = self.command(args).spawn().expect("cannot start s3vol");
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
            if std::env::var_os("S3VOL_KEEP_TEST_DIRS").is_none() {
                let _ = std::fs::remove_dir_all(&self.path);
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
        /// Takes the next event, recording its line; None when `deadline` passed or
        /// both pipes closed.
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

        /// Waits for the first line on `stream` for which `f` gives Some; lines seen
        /// before are kept for diagnostics. Panics with the output on timeout or exit.
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

        /// Waits for the process to exit and returns its exit code (None: killed by a
        /// signal). Panics if it is still running after `timeout`.
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
}
