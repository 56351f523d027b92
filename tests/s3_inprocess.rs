//! The S3 API in-process (as s3s-fs's `tests/it_aws.rs` does): `app::serve_in_process`
//! runs the real service, guard and store on 127.0.0.1 port 0, and requests signed with
//! SigV4 by the harness go through the real authentication path. So `cargo test` alone
//! exercises PUT, GET, listing and multipart in seconds, and each test checks the files
//! the requests left on disk. The aws CLI, boto3 and the other clients are tested against
//! the binary in tests/e2e and tests/clients.

mod util;

use std::net::SocketAddr;
use std::path::PathBuf;

use util::{Key, Response, TestDir, s3, xml_all};

const KEY: Key<'static> = ("AKINPROCESS00001", "inprocess-secret-000000000000001");

/// A daemon served in this process over a volume `vol-a` (or, with `root_mode`, over
/// `volumes_root`), with its runtime and directory; shut down when dropped.
struct Server {
    dir: TestDir,
    addr: SocketAddr,
    // Dropped in this order: the server, then its runtime, then the directory.
    server: Option<s3vol::app::InProcess>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    fn start(name: &str, root_mode: bool) -> Server {
        let dir = TestDir::new(&format!("inprocess-{name}"));
        let creds = dir.write_mode(
            "credentials.toml",
            &format!(
                "[[key]]\nname = \"t\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\nvolumes = [\"*\"]\n\
                 permissions = [\"read\", \"write\", \"delete\", \"admin\"]\n",
                KEY.0, KEY.1
            ),
            0o600,
        );
        let volumes = if root_mode {
            dir.mkdir("root");
            format!("volumes_root = {}\n", util::toml_str(&dir.join("root")))
        } else {
            dir.mkdir("vol-a");
            format!("[[volume]]\nname = \"vol-a\"\npath = {}\n", util::toml_str(&dir.join("vol-a")))
        };
        let config = dir.write(
            "s3vol.toml",
            &format!("listen = \"127.0.0.1:0\"\ncredentials = {}\n{volumes}", util::toml_str(&creds)),
        );
        let raw = s3vol::config::RawConfig::load(&config).unwrap();
        let (settings, keys) = s3vol::app::check(&raw).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = rt.block_on(s3vol::app::serve_in_process(settings, keys)).unwrap();
        Server { addr: server.addr, dir, server: Some(server), rt }
    }

    fn vol(&self) -> PathBuf {
        self.dir.join("vol-a")
    }

    fn req(&self, method: &str, path: &str, query: &[(&str, &str)], body: &[u8]) -> Response {
        s3(self.addr, KEY, method, path, query, &[], body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.stop());
        }
    }
}

/// MD5 as lower-case hex: the ETag of a single-part object.
fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn put_get_list_and_delete_in_process_are_files_on_the_volume() {
    let s = Server::start("objects", false);
    let body = b"hello, in-process s3vol\n";

    let put = s.req("PUT", "/vol-a/docs/hello.txt", &[], body);
    assert_eq!(put.status, 200, "{put}");
    assert_eq!(put.header("etag"), Some(format!("\"{}\"", md5_hex(body)).as_str()), "{put}");
    assert_eq!(std::fs::read(s.vol().join("docs/hello.txt")).unwrap(), body, "the object is the file at its key");
    s.req("PUT", "/vol-a/docs/sub/deep.txt", &[], b"x");
    s.req("PUT", "/vol-a/top.txt", &[], b"yz");

    let get = s.req("GET", "/vol-a/docs/hello.txt", &[], b"");
    assert_eq!((get.status, get.body.as_slice()), (200, &body[..]), "{get}");
    assert_eq!(get.header("content-length"), Some(body.len().to_string().as_str()));

    let list = s.req("GET", "/vol-a", &[("list-type", "2"), ("prefix", "docs/"), ("delimiter", "/")], b"");
    assert_eq!(list.status, 200, "{list}");
    assert_eq!(xml_all(&list.text(), "Key"), ["docs/hello.txt"], "{list}");
    assert_eq!(xml_all(&list.text(), "Prefix")[1..], ["docs/sub/"], "{list}");
    assert_eq!(list.xml("KeyCount").as_deref(), Some("2"), "{list}");
    let all = s.req("GET", "/vol-a", &[("list-type", "2")], b"");
    assert_eq!(xml_all(&all.text(), "Key"), ["docs/hello.txt", "docs/sub/deep.txt", "top.txt"], "{all}");

    let missing = s.req("GET", "/vol-a/docs/nothing.txt", &[], b"");
    assert_eq!((missing.status, missing.xml("Code").as_deref()), (404, Some("NoSuchKey")), "{missing}");

    let del = s.req("DELETE", "/vol-a/docs/sub/deep.txt", &[], b"");
    assert_eq!(del.status, 204, "{del}");
    assert!(!s.vol().join("docs/sub").exists(), "the directory s3vol made for the key goes with it");
    assert!(s.vol().join("docs/hello.txt").is_file());
}

#[test]
fn multipart_upload_in_process_assembles_one_file_and_leaves_no_staging() {
    let s = Server::start("multipart", false);
    let create = s.req("POST", "/vol-a/big/object.bin", &[("uploads", "")], b"");
    assert_eq!(create.status, 200, "{create}");
    let id = create.xml("UploadId").expect("an UploadId");
    assert!(s.vol().join(".s3vol/multipart").join(&id).is_dir(), "staged under the internal directory");

    // S3's minimum for every part but the last: 5 MiB.
    let part1: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let part2 = b"the last part may be small".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let r = s.req("PUT", "/vol-a/big/object.bin", &[("partNumber", &n.to_string()), ("uploadId", &id)], data);
        assert_eq!(r.status, 200, "part {n}: {r}");
        etags.push(r.header("etag").unwrap().to_owned());
    }
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0], etags[1]
    );
    let done = s.req("POST", "/vol-a/big/object.bin", &[("uploadId", &id)], complete.as_bytes());
    assert_eq!(done.status, 200, "{done}");
    let etag = done.xml("ETag").unwrap().replace("&quot;", "\"");
    assert!(etag.ends_with("-2\""), "a multipart ETag names its part count: {etag}");

    let on_disk = std::fs::read(s.vol().join("big/object.bin")).unwrap();
    assert_eq!(on_disk.len(), part1.len() + part2.len());
    assert!(on_disk[..part1.len()] == part1[..] && on_disk[part1.len()..] == part2[..], "the parts in order");
    let staged: Vec<_> = std::fs::read_dir(s.vol().join(".s3vol/multipart")).unwrap().flatten().collect();
    assert!(
        staged.iter().all(|e| std::fs::read_dir(e.path()).map(|d| d.count() <= 1).unwrap_or(true)),
        "no part files left in staging: {staged:?}"
    );
    let head = s.req("HEAD", "/vol-a/big/object.bin", &[], b"");
    assert_eq!((head.status, head.header("etag")), (200, Some(etag.as_str())), "{head}");
}

#[test]
fn a_request_signed_with_the_wrong_secret_writes_nothing() {
    let s = Server::start("badsig", false);
    let r = s3(s.addr, (KEY.0, "not-the-secret-0000000000000000"), "PUT", "/vol-a/x.txt", &[], &[], b"data");
    assert_eq!((r.status, r.xml("Code").as_deref()), (403, Some("SignatureDoesNotMatch")), "{r}");
    assert!(!s.vol().join("x.txt").exists(), "a refused request leaves no file");
}

#[test]
fn a_bucket_another_node_made_in_volumes_root_is_served_at_once() {
    let s = Server::start("rootmode", true);
    let unknown = s.req("HEAD", "/vol-new", &[], b"");
    assert_eq!(unknown.status, 404, "{unknown}");
    // Another node's CreateBucket: a directory appears in volumes_root.
    std::fs::create_dir(s.dir.join("root/vol-new")).unwrap();
    let found = s.req("HEAD", "/vol-new", &[], b"");
    assert_eq!(found.status, 200, "{found}");
    let put = s.req("PUT", "/vol-new/k.txt", &[], b"v");
    assert_eq!(put.status, 200, "{put}");
    assert_eq!(std::fs::read(s.dir.join("root/vol-new/k.txt")).unwrap(), b"v");

    // CreateBucket here makes the directory; a bad name is refused and makes none.
    let made = s.req("PUT", "/vol-made", &[], b"");
    assert_eq!(made.status, 200, "{made}");
    assert!(s.dir.join("root/vol-made/.s3vol").is_dir(), "the new volume is opened and served");
    let bad = s.req("PUT", "/Bad_Name", &[], b"");
    assert_eq!(bad.status, 400, "{bad}");
    assert!(!s.dir.join("root/Bad_Name").exists());
}
