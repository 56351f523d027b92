//! s3vol-bench: the compiled load client of `scripts/bench`.
//!
//! `s3vol-bench COMMAND [--flag value]...`; each command prints one line
//! `result VALUE UNIT NOTE` (NOTE: the single figures, errors) that the script collects.
//! `--endpoint sink` runs the same client against an in-process sink server: the
//! client-only limit of that scenario.

mod raw;
mod s3;
mod sigv4;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use s3::{Conn, Payload, Result, Target, xml_all, xml_tag};

const MIB: f64 = 1048576.0;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(v: &[String]) -> Self {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < v.len() {
            let k = v[i].trim_start_matches("--").to_owned();
            if i + 1 < v.len() && !v[i + 1].starts_with("--") {
                m.insert(k, v[i + 1].clone());
                i += 2;
            } else {
                m.insert(k, "1".into());
                i += 1;
            }
        }
        Self(m)
    }
    fn s(&self, k: &str, d: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| d.to_owned())
    }
    fn n(&self, k: &str, d: u64) -> u64 {
        self.0.get(k).map_or(d, |v| parse_size(v).unwrap_or_else(|| panic!("--{k}: not a number: {v}")))
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

/// `123`, `4k`/`4KiB`, `16m`/`16MiB`, `1g`/`1GiB` (binary units).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fmt_all(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join("/")
}

/// A 4 MiB buffer of pseudo-random bytes (xorshift): incompressible, made once.
fn data_buf() -> Bytes {
    let mut v = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    Bytes::from(v)
}

fn target(a: &Args, buf: &Bytes) -> Arc<Target> {
    let mut addr = a.s("endpoint", "127.0.0.1:9000");
    if addr == "sink" {
        addr = raw::sink(a.n("size", 4096), buf.clone());
    }
    Arc::new(Target {
        addr,
        bucket: a.s("bucket", "bench"),
        signer: sigv4::Signer::new(&a.s("ak", "AKBENCH"), &a.s("sk", "bench-secret"), "us-east-1"),
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: s3vol-bench COMMAND [--flag value]... (see scripts/bench)");
        std::process::exit(2);
    };
    let a = Args::parse(&argv[1..]);
    let threads = a.n("threads", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    if let Err(e) = rt.block_on(run(&cmd, &a)) {
        eprintln!("s3vol-bench {cmd}: {e}");
        std::process::exit(1);
    }
}

async fn run(cmd: &str, a: &Args) -> Result<()> {
    let reps = a.n("reps", 3) as usize;
    let buf = data_buf();
    let (value, unit, note): (f64, &str, String) = match cmd {
        "disk-write" => {
            let f = PathBuf::from(a.s("dir", "/var/tmp")).join("s3vol-bench-disk.bin");
            // The first write of a run is often several times slower (fresh blocks on a
            // thin virtual disk): one unmeasured write first.
            raw::disk_write(&f, a.n("size", 1 << 30), &buf)?;
            let mut v = Vec::new();
            for _ in 0..reps {
                v.push(raw::disk_write(&f, a.n("size", 1 << 30), &buf)?);
            }
            let _ = std::fs::remove_file(&f);
            (median(v.clone()), "MiB/s", fmt_all(&v))
        }
        "disk-read" => {
            let f = PathBuf::from(a.s("dir", "/var/tmp")).join("s3vol-bench-disk.bin");
            raw::disk_write(&f, a.n("size", 1 << 30), &buf)?;
            let mut v = Vec::new();
            let mut how = "";
            for _ in 0..reps {
                let (r, h) = raw::disk_read(&f)?;
                v.push(r);
                how = h;
            }
            let _ = std::fs::remove_file(&f);
            (median(v.clone()), "MiB/s", format!("{} evict={how}", fmt_all(&v)))
        }
        "loopback" => {
            let mut v = Vec::new();
            for _ in 0..reps {
                v.push(raw::loopback(a.n("size", 4 << 30), &buf)?);
            }
            (median(v.clone()), "MiB/s", fmt_all(&v))
        }
        "evict" => {
            let how = raw::evict(&PathBuf::from(a.s("file", "")));
            (0.0, "-", how.to_owned())
        }
        "mkfiles" => {
            let r = raw::mkfiles(
                &PathBuf::from(a.s("dir", "")),
                a.n("dirs", 1000) as usize,
                a.n("files", 1000) as usize,
                a.n("workers", 2) as usize,
            )?;
            (r, "files/s", String::new())
        }
        "put-large" => {
            let t = target(a, &buf);
            let size = a.n("size", 1 << 30);
            let mut v = Vec::new();
            for _ in 0..reps {
                let mut c = Conn::new(t.clone());
                let s = Instant::now();
                c.ok("PUT", &a.s("key", "large"), &[], Payload::repeat(&buf, size), false).await?;
                v.push(size as f64 / MIB / s.elapsed().as_secs_f64());
            }
            (median(v.clone()), "MiB/s", fmt_all(&v))
        }
        "get-large" => {
            let t = target(a, &buf);
            let mut v = Vec::new();
            let mut how = String::new();
            for _ in 0..reps {
                if a.has("evict") {
                    how = format!(" evict={}", raw::evict(&PathBuf::from(a.s("evict", ""))));
                }
                let mut c = Conn::new(t.clone());
                let s = Instant::now();
                let r = c.ok("GET", &a.s("key", "large"), &[], Payload::Empty, false).await?;
                v.push(r.len as f64 / MIB / s.elapsed().as_secs_f64());
            }
            (median(v.clone()), "MiB/s", format!("{}{how}", fmt_all(&v)))
        }
        "multipart" => {
            let t = target(a, &buf);
            let mut v = Vec::new();
            for _ in 0..reps {
                v.push(
                    multipart(
                        &t,
                        &a.s("key", "mpu"),
                        a.n("size", 1 << 30),
                        a.n("part", 16 << 20),
                        a.n("conc", 4),
                        &buf,
                    )
                    .await?,
                );
            }
            (median(v.clone()), "MiB/s", fmt_all(&v))
        }
        "small" => {
            let t = target(a, &buf);
            let body = buf.slice(..a.n("size", 4096) as usize);
            let mut v = Vec::new();
            let mut errs = 0;
            for rep in 0..reps {
                // PUTs make new objects (a dataset upload) unless --overwrite: on ext4 a rename
                // over an existing file also flushes it (auto_da_alloc) and frees its blocks.
                let fresh = a.s("op", "put") == "put" && !a.has("overwrite");
                let prefix = if fresh { format!("{}r{rep}-", a.s("prefix", "put/")) } else { a.s("prefix", "small/") };
                let keys = if fresh { u64::MAX } else { a.n("keys", 1000) };
                let (ops, e) = small(
                    &t,
                    &a.s("op", "put"),
                    &prefix,
                    keys,
                    &body,
                    a.n("conc", 16),
                    Duration::from_secs_f64(a.n("millis", 3000) as f64 / 1000.0),
                )
                .await?;
                v.push(ops);
                errs += e;
            }
            (median(v.clone()), "ops/s", format!("{} errors={errs}", fmt_all(&v)))
        }
        "fill" => {
            let t = target(a, &buf);
            let body = buf.slice(..a.n("size", 0) as usize);
            let n = a.n("count", 100_000);
            let s = Instant::now();
            let errs = fill(&t, &a.s("prefix", "list/"), n, &body, a.n("conc", 16)).await?;
            (n as f64 / s.elapsed().as_secs_f64(), "ops/s", format!("errors={errs}"))
        }
        "list" => {
            let t = target(a, &buf);
            let delim = a.s("delimiter", "");
            let prefix = a.s("prefix", "");
            let mut c = Conn::new(t.clone());
            let mut v = Vec::new();
            let mut firsts = Vec::new();
            let mut keys = 0;
            for _ in 0..reps {
                let (k, secs, first) = if delim.is_empty() {
                    walk(&mut c, &prefix).await?
                } else {
                    tree_walk(&mut c, &prefix, &delim).await?
                };
                keys = k;
                v.push(k as f64 / secs);
                firsts.push(first * 1000.0);
            }
            let note = format!("{} keys={keys} first_page_ms={:.1}", fmt_all(&v), median(firsts));
            (median(v), "keys/s", note)
        }
        "first-page" => {
            let t = target(a, &buf);
            let mut c = Conn::new(t.clone());
            let mut v = Vec::new();
            let delim = a.s("delimiter", "");
            for _ in 0..reps {
                if a.has("evict") {
                    raw::evict(&PathBuf::from(a.s("evict", "")));
                }
                let mut q = vec![("list-type", "2"), ("max-keys", "1000")];
                if !delim.is_empty() {
                    q.push(("delimiter", delim.as_str()));
                }
                let s = Instant::now();
                c.ok("GET", "", &q, Payload::Empty, true).await?;
                v.push(s.elapsed().as_secs_f64() * 1000.0);
            }
            let note = v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join("/");
            (median(v), "ms", note)
        }
        "heavy" => {
            let t = target(a, &buf);
            let (op, conc, size) = (a.s("op", "get"), a.n("conc", 32), a.n("size", 1 << 30));
            let s = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..conc {
                let (t, op, buf) = (t.clone(), op.clone(), buf.clone());
                let key = if op == "get" { a.s("key", "large") } else { format!("heavy/{i}") };
                tasks.push(tokio::spawn(async move {
                    let mut c = Conn::new(t);
                    let body = if op == "get" { Payload::Empty } else { Payload::repeat(&buf, size) };
                    let m = if op == "get" { "GET" } else { "PUT" };
                    c.ok(m, &key, &[], body, false).await.map(|r| if op == "get" { r.len } else { size })
                }));
            }
            let mut bytes = 0;
            for tk in tasks {
                bytes += tk.await??;
            }
            (bytes as f64 / MIB / s.elapsed().as_secs_f64(), "MiB/s", format!("{conc} x {op}"))
        }
        "delete" => {
            let t = target(a, &buf);
            let mut c = Conn::new(t);
            for k in a.s("keys", "").split(',').filter(|k| !k.is_empty()) {
                c.call("DELETE", k, &[], Payload::Empty, false).await?;
            }
            (0.0, "-", String::new())
        }
        other => return Err(format!("unknown command {other}").into()),
    };
    println!("result {value:.1} {unit} {note}");
    Ok(())
}

/// One multipart upload, Complete included. Returns MiB/s.
async fn multipart(t: &Arc<Target>, key: &str, size: u64, part: u64, conc: u64, buf: &Bytes) -> Result<f64> {
    let s = Instant::now();
    let mut c = Conn::new(t.clone());
    let r = c.ok("POST", key, &[("uploads", "")], Payload::Empty, true).await?;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let id = xml_tag(&body, "UploadId").ok_or("no UploadId")?.to_owned();
    let parts = size.div_ceil(part);
    let next = Arc::new(AtomicU64::new(1));
    let etags = Arc::new(std::sync::Mutex::new(vec![String::new(); parts as usize]));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (t, next, etags, buf, id, key) =
            (t.clone(), next.clone(), etags.clone(), buf.clone(), id.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(t);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > parts {
                    return Ok::<_, s3::Error>(());
                }
                let len = part.min(size - (n - 1) * part);
                let pn = n.to_string();
                let r = c
                    .ok("PUT", &key, &[("partNumber", &pn), ("uploadId", &id)], Payload::repeat(&buf, len), false)
                    .await?;
                etags.lock().unwrap()[n as usize - 1] = r.etag.ok_or("no ETag on UploadPart")?;
            }
        }));
    }
    for tk in tasks {
        tk.await??;
    }
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, e) in etags.lock().unwrap().iter().enumerate() {
        xml.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>", i + 1));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let r = c.ok("POST", key, &[("uploadId", &id)], Payload::Full(Some(Bytes::from(xml))), true).await?;
    if String::from_utf8_lossy(&r.body).contains("<Error>") {
        return Err(format!("Complete failed: {}", String::from_utf8_lossy(&r.body)).into());
    }
    Ok(size as f64 / MIB / s.elapsed().as_secs_f64())
}

/// `conc` connections doing `op` on `prefix`k000000.. for `dur`. Returns (ops/s, errors).
async fn small(
    t: &Arc<Target>,
    op: &str,
    prefix: &str,
    keys: u64,
    body: &Bytes,
    conc: u64,
    dur: Duration,
) -> Result<(f64, u64)> {
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let s = Instant::now();
    let end = s + dur;
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (t, count, errors, body, op, prefix) =
            (t.clone(), count.clone(), errors.clone(), body.clone(), op.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(t);
            while Instant::now() < end {
                let n = count.fetch_add(1, Ordering::Relaxed);
                let key = format!("{prefix}k{:06}", n % keys);
                let r = match op.as_str() {
                    "put" => c.call("PUT", &key, &[], Payload::Full(Some(body.clone())), false).await?,
                    "get" => c.call("GET", &key, &[], Payload::Empty, false).await?,
                    _ => c.call("HEAD", &key, &[], Payload::Empty, false).await?,
                };
                if r.status >= 300 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, s3::Error>(())
        }));
    }
    for tk in tasks {
        tk.await??;
    }
    let secs = s.elapsed().as_secs_f64();
    Ok((count.load(Ordering::Relaxed) as f64 / secs, errors.load(Ordering::Relaxed)))
}

/// PUTs `prefix`k000000..k(n-1) once each on `conc` connections. Returns the error count.
async fn fill(t: &Arc<Target>, prefix: &str, n: u64, body: &Bytes, conc: u64) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (t, next, errors, body, prefix) =
            (t.clone(), next.clone(), errors.clone(), body.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(t);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, s3::Error>(());
                }
                let r =
                    c.call("PUT", &format!("{prefix}k{i:06}"), &[], Payload::Full(Some(body.clone())), false).await?;
                if r.status >= 300 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for tk in tasks {
        tk.await??;
    }
    Ok(errors.load(Ordering::Relaxed))
}

/// A full ListObjectsV2 walk of `prefix`, 1000 keys a page, as `aws s3 sync` does.
/// Returns (keys, seconds, first page seconds).
async fn walk(c: &mut Conn, prefix: &str) -> Result<(u64, f64, f64)> {
    let s = Instant::now();
    let mut first = None;
    let mut token: Option<String> = None;
    let mut keys = 0u64;
    loop {
        let mut q = vec![("list-type", "2"), ("max-keys", "1000"), ("prefix", prefix)];
        if let Some(tk) = &token {
            q.push(("continuation-token", tk));
        }
        let r = c.ok("GET", "", &q, Payload::Empty, true).await?;
        first.get_or_insert(s.elapsed().as_secs_f64());
        let body = String::from_utf8_lossy(&r.body);
        keys += xml_all(&body, "Key").len() as u64;
        if xml_tag(&body, "IsTruncated") != Some("true") {
            break;
        }
        token = Some(xml_tag(&body, "NextContinuationToken").ok_or("truncated page without a token")?.to_owned());
    }
    Ok((keys, s.elapsed().as_secs_f64(), first.unwrap_or(0.0)))
}

/// A walk by delimiter: each CommonPrefix listed in turn (as `aws s3 ls` browses).
async fn tree_walk(c: &mut Conn, prefix: &str, delim: &str) -> Result<(u64, f64, f64)> {
    let s = Instant::now();
    let mut first = None;
    let mut keys = 0u64;
    let mut queue = std::collections::VecDeque::from([prefix.to_owned()]);
    while let Some(p) = queue.pop_front() {
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2"), ("max-keys", "1000"), ("prefix", p.as_str()), ("delimiter", delim)];
            if let Some(tk) = &token {
                q.push(("continuation-token", tk));
            }
            let r = c.ok("GET", "", &q, Payload::Empty, true).await?;
            first.get_or_insert(s.elapsed().as_secs_f64());
            let body = String::from_utf8_lossy(&r.body);
            keys += xml_all(&body, "Key").len() as u64;
            for cp in xml_all(&body, "CommonPrefixes") {
                if let Some(px) = xml_tag(cp, "Prefix") {
                    queue.push_back(px.to_owned());
                }
            }
            if xml_tag(&body, "IsTruncated") != Some("true") {
                break;
            }
            token = Some(xml_tag(&body, "NextContinuationToken").ok_or("truncated page without a token")?.to_owned());
        }
    }
    Ok((keys, s.elapsed().as_secs_f64(), first.unwrap_or(0.0)))
}
