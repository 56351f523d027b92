//! The machine's own figures, measured in the same run as the scenarios: disk write with
//! fdatasync, cold disk read, loopback TCP; a sink HTTP server for the client-only limit;
//! and a fast creator of many files for the listing scenarios.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use crate::s3::Payload;

const MIB: f64 = 1048576.0;

/// Writes `size` bytes to `path` in 4 MiB blocks, then fdatasync. Returns MiB/s.
pub fn disk_write(path: &Path, size: u64, buf: &Bytes) -> std::io::Result<f64> {
    let _ = std::fs::remove_file(path);
    let t = Instant::now();
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_data()?;
    Ok(size as f64 / MIB / t.elapsed().as_secs_f64())
}

/// Evicts `path` from the page cache: `drop_caches` when permitted (root), else
/// `POSIX_FADV_DONTNEED` on the file. Returns which one worked.
pub fn evict(path: &Path) -> &'static str {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    if std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok() {
        return "drop_caches";
    }
    if let Ok(f) = File::open(path) {
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r == 0 {
            return "fadvise";
        }
    }
    "none"
}

/// Reads `path` after evicting it from the cache, 4 MiB at a time. Returns MiB/s.
pub fn disk_read(path: &Path) -> std::io::Result<(f64, &'static str)> {
    let how = evict(path);
    let mut buf = vec![0u8; 4 << 20];
    let t = Instant::now();
    let mut f = File::open(path)?;
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((total as f64 / MIB / t.elapsed().as_secs_f64(), how))
}

/// Copies `size` bytes from a client socket to a server socket on 127.0.0.1, 1 MiB writes.
pub fn loopback(size: u64, buf: &Bytes) -> std::io::Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut b = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut b)?;
            if r == 0 {
                return Ok(n);
            }
            n += r as u64;
        }
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    let chunk = &buf[..buf.len().min(1 << 20)];
    let t = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    drop(c);
    let got = server.join().expect("loopback reader")?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, size);
    Ok(size as f64 / MIB / secs)
}

/// Starts a sink S3 look-alike on 127.0.0.1:0 in its own runtime thread (one worker): PUT
/// and POST drain the body; GET answers `get_size` bytes; HEAD answers a length only.
/// Returns its address. It runs until the process exits.
pub fn sink(get_size: u64, buf: Bytes) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().to_string()).unwrap();
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let _ = s.set_nodelay(true);
                let buf = buf.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let buf = buf.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let method = req.method().clone();
                            let query = req.uri().query().unwrap_or("").to_owned();
                            let mut body = req.into_body();
                            while let Some(f) = body.frame().await {
                                f?;
                            }
                            let resp = http::Response::builder().header("etag", "\"0123456789abcdef0123456789abcdef\"");
                            let r = match method.as_str() {
                                "GET" => resp.body(Payload::repeat(&buf, get_size)),
                                "HEAD" => resp.header("content-length", get_size).body(Payload::Empty),
                                "POST" if query.contains("uploads") => resp.body(Payload::Full(Some(Bytes::from_static(
                                    b"<InitiateMultipartUploadResult><UploadId>sink</UploadId></InitiateMultipartUploadResult>",
                                )))),
                                _ => resp.body(Payload::Empty),
                            };
                            Ok::<_, hyper::Error>(r.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("sink started")
}

/// Creates `dirs` directories of `files` empty files each under `root` (`dNNNN/fNNNN`),
/// on `threads` threads. Returns files/s.
pub fn mkfiles(root: &Path, dirs: usize, files: usize, threads: usize) -> std::io::Result<f64> {
    let t = Instant::now();
    std::fs::create_dir_all(root)?;
    let root: PathBuf = root.to_owned();
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let root = root.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                for d in (w..dirs).step_by(threads) {
                    let dir = root.join(format!("d{d:04}"));
                    std::fs::create_dir_all(&dir)?;
                    for f in 0..files {
                        File::create(dir.join(format!("f{f:04}")))?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("mkfiles worker")?;
    }
    Ok((dirs * files) as f64 / t.elapsed().as_secs_f64())
}
