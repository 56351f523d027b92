//! The command-line contract (docs/CONTRACT.md, "Binary"), checked against the real
//! binary: `check-config` verdicts and exit codes, the `listening on ADDR` line that
//! scripts wait for, and the embedded default of a bare `serve`.
//!
//! Every test runs `s3vol` in its own temporary directory and binds only 127.0.0.1
//! port 0. Output is read through a thread and a channel with a deadline, so a daemon
//! that hangs or dies fails the test with its output instead of hanging the suite.
//! S3 behaviour itself is tested through real clients in tests/e2e.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use util::{Stream, TestDir, http_get};

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
    assert!(response.head.starts_with("HTTP/1.1 403"), "anonymous GET / is not 403\n{response}\n{}", daemon.output());
    assert!(response.text().contains("<Code>AccessDenied</Code>"), "no AccessDenied XML\n{response}");
    assert!(response.header("x-amz-request-id").is_some(), "no x-amz-request-id header\n{response}");
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
