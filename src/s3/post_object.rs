//! Browser form uploads (PostObject) as S3 answers them, where `s3s` 0.14.1 does not:
//!
//! - `${filename}` in the form's `key` is the file part's filename (its
//!   `Content-Disposition` `filename=`). `s3s` drops that name, so [`FormSniffer`] reads it
//!   from the body as the body streams into `s3s` and records it in the request's
//!   [`PostForm`]; [`S3Vol::do_post_object`] substitutes it before the key is validated.
//! - The answer: S3 ignores a `success_action_redirect` that is not an absolute http(s) URL
//!   (`s3s` answers 400 after the object was stored); S3's 201 `PostResponse` `Location` is
//!   a full URL (`s3s` gives `/bucket/key`); 200/204 carry `ETag`, `Location` and the
//!   object's checksum headers. [`S3Vol::do_post_object`] records what was stored in the
//!   [`PostForm`] and the server answers with [`Stored::response`] in place of `s3s`'s.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use s3s::dto::{PostObjectInput, PostObjectOutput, PutObjectInput, PutObjectOutput};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Vol;

/// Bytes of a form the sniffer reads for the file part's headers: the fields before the
/// file are capped at [`crate::guard::FORM_FIELDS_ROOM`] (`s3s` refuses more).
const SNIFF_LIMIT: usize = crate::guard::FORM_FIELDS_ROOM as usize + 64 * 1024;

/// One form upload's shared state: the file part's filename, read by [`FormSniffer`], and
/// the object stored, recorded by [`S3Vol::do_post_object`]. Put in the request's
/// extensions by the server for every form upload.
#[derive(Debug, Clone, Default)]
pub struct PostForm(Arc<Mutex<FormState>>);

#[derive(Debug, Default)]
struct FormState {
    /// `Some(name)` once the file part's headers were read (`""` without `filename=`).
    filename: Option<String>,
    /// `x-amz-checksum-*` fields read before the file part (lower-cased name, value):
    /// `s3s` 0.14.1 reads only five algorithms' fields and drops the others'.
    checksum_fields: Vec<(String, String)>,
    stored: Option<Stored>,
}

/// What a form upload stored, and how the form asked to be answered.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bucket: String,
    /// The key written (`${filename}` substituted).
    pub key: String,
    /// Quoted ETag.
    pub etag: String,
    /// The object's checksum headers (`x-amz-checksum-*`, `x-amz-checksum-type`).
    pub headers: HeaderMap,
    redirect: Option<String>,
    status: Option<i32>,
}

impl PostForm {
    fn lock(&self) -> std::sync::MutexGuard<'_, FormState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object stored by this form upload, if it was.
    pub fn stored(&self) -> Option<Stored> {
        self.lock().stored.clone()
    }
}

/// Where the request was sent, for the `Location` S3 answers: scheme, `Host`, and whether
/// the bucket was named in the path (path-style) or the host (virtual-hosted).
#[derive(Debug, Clone)]
pub struct RequestOrigin {
    base: String,
    path_style: bool,
}

impl RequestOrigin {
    /// The origin of a request head; `tls`: the connection is HTTPS.
    pub fn of(head: &http::request::Parts, tls: bool) -> Self {
        let host = super::host::request_host(head.version, &head.uri, &head.headers).unwrap_or_default();
        let scheme = if tls { "https" } else { "http" };
        Self { base: format!("{scheme}://{host}"), path_style: !head.uri.path().trim_matches('/').is_empty() }
    }
}

/// Encodes a key for a URL as S3's `Location` does: everything but unreserved characters,
/// `/` included.
fn encode(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

impl Stored {
    /// The object's URL: `scheme://host/bucket/key` (path-style) or `scheme://host/key`.
    fn location(&self, origin: &RequestOrigin) -> String {
        if origin.path_style {
            format!("{}/{}/{}", origin.base, encode(&self.bucket), encode(&self.key))
        } else {
            format!("{}/{}", origin.base, encode(&self.key))
        }
    }

    /// The redirect target, when the form's `success_action_redirect` is an absolute
    /// http(s) URL: with `bucket`, `key` and `etag` added to its query (S3 POST Object).
    fn redirect_target(&self) -> Option<String> {
        let raw = self.redirect.as_deref()?;
        if raw.chars().any(char::is_control) {
            return None;
        }
        let mut url = url::Url::parse(raw).ok()?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return None;
        }
        url.query_pairs_mut()
            .append_pair("bucket", &self.bucket)
            .append_pair("key", &self.key)
            .append_pair("etag", &self.etag);
        Some(url.into())
    }

    /// S3's answer to a stored form upload: 303 to a valid `success_action_redirect`;
    /// else `success_action_status` 200 or 201 (a `PostResponse` document), or 204 (the
    /// default, also for other values). Every answer carries `ETag` and the checksum
    /// headers, and all but the redirect `Location`. An invalid redirect URL is ignored, as
    /// S3 does ("If Amazon S3 cannot interpret the URL, it acts as if the field is not
    /// present").
    pub fn response(&self, origin: &RequestOrigin) -> http::Response<s3s::Body> {
        let mut headers = self.headers.clone();
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            headers.insert(http::header::ETAG, v);
        }
        let location = self.location(origin);
        let (status, body) = if let Some(target) = self.redirect_target() {
            if let Ok(v) = HeaderValue::from_str(&target) {
                headers.insert(http::header::LOCATION, v);
            }
            (StatusCode::SEE_OTHER, s3s::Body::empty())
        } else {
            if let Ok(v) = HeaderValue::from_str(&location) {
                headers.insert(http::header::LOCATION, v);
            }
            match self.status {
                Some(200) => (StatusCode::OK, s3s::Body::empty()),
                Some(201) => {
                    let xml = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                        xml_escape(&location),
                        xml_escape(&self.bucket),
                        xml_escape(&self.key),
                        xml_escape(&self.etag)
                    );
                    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
                    (StatusCode::CREATED, s3s::Body::from(xml))
                }
                _ => (StatusCode::NO_CONTENT, s3s::Body::empty()),
            }
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl S3Vol {
    /// PostObject: PutObject of the form's file under its `key`, with `${filename}`
    /// replaced by the file part's filename (S3 POST Object: "the key name is ... the
    /// file name provided by the user"). The key is then validated as any key: a filename
    /// that cannot be a path (`..`) answers the key error PutObject gives.
    pub(super) async fn do_post_object(
        &self,
        req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        let form = req.extensions.get::<PostForm>().cloned();
        let mut req = req;
        if req.input.key.contains("${filename}") {
            let name = form.as_ref().and_then(|f| f.lock().filename.clone()).unwrap_or_default();
            req.input.key = req.input.key.replace("${filename}", &name);
        }
        // The form's checksum fields are verified as PutObject verifies its headers.
        let i = &req.input;
        let fields = [
            ("x-amz-checksum-crc32", &i.checksum_crc32),
            ("x-amz-checksum-crc32c", &i.checksum_crc32c),
            ("x-amz-checksum-crc64nvme", &i.checksum_crc64nvme),
            ("x-amz-checksum-sha1", &i.checksum_sha1),
            ("x-amz-checksum-sha256", &i.checksum_sha256),
        ];
        let mut checksums = HeaderMap::new();
        for (name, value) in fields {
            if let Some(v) = value {
                let v =
                    HeaderValue::from_str(v).map_err(|_| s3_error!(InvalidArgument, "Invalid {name} form field"))?;
                checksums.insert(name, v);
            }
        }
        // The algorithms whose fields s3s drops (SHA512, MD5, XXHASH*): the sniffer read them.
        let sniffed = form.as_ref().map(|f| f.lock().checksum_fields.clone()).unwrap_or_default();
        for (name, value) in sniffed {
            if crate::store::checksum::Algorithm::from_header(&name).is_some() && !checksums.contains_key(&name) {
                let v = HeaderValue::from_str(&value)
                    .map_err(|_| s3_error!(InvalidArgument, "Invalid {name} form field"))?;
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| s3_error!(InvalidArgument, "Invalid {name} form field"))?;
                checksums.insert(name, v);
            }
        }
        req.headers.extend(checksums);
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let (redirect, status) = (req.input.success_action_redirect.clone(), req.input.success_action_status);
        let resp = self.do_put_object(req.map_input(into_put)).await?;
        if let Some(form) = form {
            let etag = resp.output.e_tag.as_ref().map(|e| format!("\"{}\"", e.value())).unwrap_or_default();
            let headers = resp.headers.clone();
            form.lock().stored = Some(Stored { bucket, key, etag, headers, redirect, status });
        }
        Ok(resp.map_output(into_post_output))
    }
}

/// PostObject's input as PutObject's: the same fields but the form's answer settings
/// (`s3s` keeps its own conversion private).
fn into_put(x: PostObjectInput) -> PutObjectInput {
    // Destructured whole: a field added to either type in a later s3s fails to compile here.
    let PostObjectInput {
        acl,
        body,
        bucket,
        bucket_key_enabled,
        cache_control,
        checksum_algorithm,
        checksum_crc32,
        checksum_crc32c,
        checksum_crc64nvme,
        checksum_sha1,
        checksum_sha256,
        content_disposition,
        content_encoding,
        content_language,
        content_length,
        content_md5,
        content_type,
        expected_bucket_owner,
        expires,
        grant_full_control,
        grant_read,
        grant_read_acp,
        grant_write_acp,
        if_match,
        if_none_match,
        key,
        metadata,
        object_lock_legal_hold_status,
        object_lock_mode,
        object_lock_retain_until_date,
        request_payer,
        sse_customer_algorithm,
        sse_customer_key,
        sse_customer_key_md5,
        ssekms_encryption_context,
        ssekms_key_id,
        server_side_encryption,
        storage_class,
        tagging,
        website_redirect_location,
        write_offset_bytes,
        success_action_redirect: _,
        success_action_status: _,
        policy: _,
    } = x;
    PutObjectInput {
        acl,
        body,
        bucket,
        bucket_key_enabled,
        cache_control,
        checksum_algorithm,
        checksum_crc32,
        checksum_crc32c,
        checksum_crc64nvme,
        checksum_sha1,
        checksum_sha256,
        content_disposition,
        content_encoding,
        content_language,
        content_length,
        content_md5,
        content_type,
        expected_bucket_owner,
        expires,
        grant_full_control,
        grant_read,
        grant_read_acp,
        grant_write_acp,
        if_match,
        if_none_match,
        key,
        metadata,
        object_lock_legal_hold_status,
        object_lock_mode,
        object_lock_retain_until_date,
        request_payer,
        sse_customer_algorithm,
        sse_customer_key,
        sse_customer_key_md5,
        ssekms_encryption_context,
        ssekms_key_id,
        server_side_encryption,
        storage_class,
        tagging,
        website_redirect_location,
        write_offset_bytes,
    }
}

/// PutObject's output as PostObject's: the same fields.
fn into_post_output(x: PutObjectOutput) -> PostObjectOutput {
    // Destructured whole: a field added to either type in a later s3s fails to compile here.
    let PutObjectOutput {
        bucket_key_enabled,
        checksum_crc32,
        checksum_crc32c,
        checksum_crc64nvme,
        checksum_sha1,
        checksum_sha256,
        checksum_type,
        e_tag,
        expiration,
        request_charged,
        sse_customer_algorithm,
        sse_customer_key_md5,
        ssekms_encryption_context,
        ssekms_key_id,
        server_side_encryption,
        size,
        version_id,
    } = x;
    PostObjectOutput {
        bucket_key_enabled,
        checksum_crc32,
        checksum_crc32c,
        checksum_crc64nvme,
        checksum_sha1,
        checksum_sha256,
        checksum_type,
        e_tag,
        expiration,
        request_charged,
        sse_customer_algorithm,
        sse_customer_key_md5,
        ssekms_encryption_context,
        ssekms_key_id,
        server_side_encryption,
        size,
        version_id,
    }
}

/// The boundary of a `multipart/form-data` Content-Type, unquoted.
pub fn form_boundary(content_type: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(content_type).ok()?;
    let (_, params) = s.split_once(';')?;
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty()).then(|| v.as_bytes().to_vec())
    })
}

/// A form upload's body on its way to `s3s`: passes every frame on unchanged and, until it
/// has read the file part's headers (at most [`SNIFF_LIMIT`] bytes), records the part's
/// filename in the [`PostForm`].
pub struct FormSniffer<B> {
    inner: B,
    delimiter: Vec<u8>,
    /// The bytes not yet scanned past, from the start of the part being read; `None` when
    /// done.
    pending: Option<Vec<u8>>,
    scanned: usize,
    form: PostForm,
}

impl<B> FormSniffer<B> {
    /// Sniffs `inner`, a form whose Content-Type names `boundary`.
    pub fn new(inner: B, boundary: &[u8], form: PostForm) -> Self {
        let delimiter = [b"--".as_slice(), boundary].concat();
        Self { inner, delimiter, pending: Some(Vec::new()), scanned: 0, form }
    }

    fn feed(&mut self, data: &[u8]) {
        let Some(pending) = self.pending.as_mut() else { return };
        self.scanned += data.len();
        pending.extend_from_slice(data);
        let mut fields = Vec::new();
        let scanned = scan(pending, &self.delimiter, &mut fields);
        if !fields.is_empty() {
            self.form.lock().checksum_fields.extend(fields);
        }
        match scanned {
            Scan::Found(name) => {
                self.form.lock().filename = Some(name.unwrap_or_default());
                self.pending = None;
            }
            Scan::More { from } => {
                pending.drain(..from);
                if self.scanned > SNIFF_LIMIT {
                    self.pending = None;
                }
            }
        }
    }
}

enum Scan {
    /// The file part's headers were read: its filename, if it has one.
    Found(Option<String>),
    /// More bytes are needed; everything before `from` is done with.
    More { from: usize },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Longest header block of one form part the sniffer reads, bytes; past it the file's
/// name is taken as unknown (`s3s` refuses such a form anyway).
const MAX_PART_HEAD: usize = 16 * 1024;

/// Longest value of an `x-amz-checksum-*` field the sniffer reads, bytes (a SHA-512 digest
/// is 88 base64 characters); a longer one is recorded as it starts, and fails verification.
const MAX_CHECKSUM_FIELD: usize = 256;

/// Scans a form body prefix for the part named `file` (as `s3s` finds it, case-insensitively),
/// adding the `x-amz-checksum-*` fields passed on the way to `fields`.
/// Linear over a stream: what [`Scan::More`] lets go of is never scanned again, but for a
/// part's header block, which is bounded by [`MAX_PART_HEAD`].
fn scan(buf: &[u8], delimiter: &[u8], fields: &mut Vec<(String, String)>) -> Scan {
    let mut pos = 0;
    loop {
        let Some(at) = find(&buf[pos..], delimiter) else {
            // Only the tail could still begin a delimiter.
            return Scan::More { from: pos.max(buf.len().saturating_sub(delimiter.len() - 1)) };
        };
        let delimiter_at = pos + at;
        let start = delimiter_at + delimiter.len();
        if buf.len() < start + 2 {
            return Scan::More { from: delimiter_at };
        }
        if &buf[start..start + 2] == b"--" {
            return Scan::Found(None); // the closing delimiter: no file part
        }
        let Some(len) = find(&buf[start..], b"\r\n\r\n") else {
            if buf.len() - start > MAX_PART_HEAD {
                return Scan::Found(None);
            }
            return Scan::More { from: delimiter_at };
        };
        let head = &buf[start..start + len];
        let disposition = content_disposition(head);
        if let Some((name, filename)) = &disposition
            && name.eq_ignore_ascii_case("file")
        {
            return Scan::Found(filename.clone());
        }
        pos = start + len + 4;
        if let Some((name, _)) = disposition
            && name.to_ascii_lowercase().starts_with("x-amz-checksum-")
        {
            // The value runs to the CRLF before the next delimiter.
            let end = find(&buf[pos..], delimiter).map(|at| pos + at);
            match end {
                Some(end) if end >= pos + 2 && end - pos - 2 <= MAX_CHECKSUM_FIELD => {
                    let value = String::from_utf8_lossy(&buf[pos..end - 2]).into_owned();
                    fields.push((name.to_ascii_lowercase(), value));
                    pos = end;
                }
                Some(_) => {
                    fields.push((name.to_ascii_lowercase(), "(too long)".to_owned()));
                    pos = end.unwrap_or(pos);
                }
                None if buf.len() - pos > MAX_CHECKSUM_FIELD + 2 => {
                    fields.push((name.to_ascii_lowercase(), "(too long)".to_owned()));
                }
                None => return Scan::More { from: delimiter_at },
            }
        }
    }
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data; ...` header.
fn content_disposition(head: &[u8]) -> Option<(String, Option<String>)> {
    let head = std::str::from_utf8(head).ok()?;
    let value = head.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-disposition").then_some(v)
    })?;
    let (mut name, mut filename) = (None, None);
    for param in value.split(';').skip(1) {
        let Some((k, v)) = param.trim().split_once('=') else { continue };
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Some((name?, filename))
}

impl<B> Body for FormSniffer<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r
            && let Some(data) = frame.data_ref()
        {
            this.feed(data);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (disposition, body) in parts {
            out.extend_from_slice(format!("--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n{body}\r\n").as_bytes());
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    fn sniff(body: &[u8], frame: usize) -> Option<String> {
        let f = PostForm::default();
        let mut s = FormSniffer::new((), b"XyZ", f.clone());
        for chunk in body.chunks(frame) {
            s.feed(chunk);
        }
        f.lock().filename.clone()
    }

    #[test]
    fn sniffer_reads_checksum_fields_s3s_drops_once_in_any_framing() {
        let body = form(&[
            ("form-data; name=\"key\"", "k"),
            ("form-data; name=\"X-Amz-Checksum-SHA512\"", "c2hhNTEy"),
            ("form-data; name=\"x-amz-checksum-xxhash3\"", &"A".repeat(MAX_CHECKSUM_FIELD + 10)),
            ("form-data; name=\"file\"; filename=\"f\"", "bytes"),
        ]);
        for frame in [1, 3, 64, body.len()] {
            let f = PostForm::default();
            let mut s = FormSniffer::new((), b"XyZ", f.clone());
            for chunk in body.chunks(frame) {
                s.feed(chunk);
            }
            let fields = f.lock().checksum_fields.clone();
            assert_eq!(
                fields,
                vec![
                    ("x-amz-checksum-sha512".to_owned(), "c2hhNTEy".to_owned()),
                    ("x-amz-checksum-xxhash3".to_owned(), "(too long)".to_owned()),
                ],
                "frame {frame}"
            );
        }
    }

    #[test]
    fn sniffer_finds_the_file_parts_filename_in_any_framing() {
        let body = form(&[
            ("form-data; name=\"key\"", "up/${filename}"),
            ("form-data; name=\"policy\"", "eyJ4Ijox"),
            ("form-data; name=\"file\"; filename=\"photo 1.jpg\"", "bytes"),
        ]);
        for frame in [1, 2, 7, 64, body.len()] {
            assert_eq!(sniff(&body, frame).as_deref(), Some("photo 1.jpg"), "frame {frame}");
        }
        // A field that merely carries a filename is not the file part (s3s: name "file").
        let body = form(&[
            ("form-data; name=\"key\"; filename=\"decoy\"", "k"),
            ("form-data; name=\"FILE\"; filename=\"../x\"", "b"),
        ]);
        assert_eq!(sniff(&body, 3).as_deref(), Some("../x"));
        // A file part without a filename substitutes nothing; no file part leaves it unset.
        assert_eq!(sniff(&form(&[("form-data; name=\"file\"", "b")]), 5).as_deref(), Some(""));
        assert_eq!(sniff(&form(&[("form-data; name=\"key\"", "k")]), 5).as_deref(), Some(""));
        assert_eq!(sniff(b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n", 4), None);
        // A long field value is let go of as it streams; a runaway part header gives up.
        let long = "v".repeat(100_000);
        let body = form(&[("form-data; name=\"key\"", &long), ("form-data; name=\"file\"; filename=\"f\"", "b")]);
        assert_eq!(sniff(&body, 1000).as_deref(), Some("f"));
        let runaway = [b"--XyZ\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        assert_eq!(sniff(&runaway, 1000).as_deref(), Some(""));
    }

    #[test]
    fn boundary_is_read_quoted_or_not() {
        assert_eq!(form_boundary(b"multipart/form-data; boundary=abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(form_boundary(b"multipart/form-data; charset=x; Boundary=\"a b\"").as_deref(), Some(&b"a b"[..]));
        assert_eq!(form_boundary(b"multipart/form-data"), None);
    }

    fn stored(redirect: Option<&str>, status: Option<i32>) -> Stored {
        Stored {
            bucket: "vol-a".into(),
            key: "up/a b+c.txt".into(),
            etag: "\"abc\"".into(),
            headers: HeaderMap::new(),
            redirect: redirect.map(str::to_owned),
            status,
        }
    }

    #[test]
    fn answers_follow_s3_redirect_status_and_location() {
        let origin = RequestOrigin { base: "http://127.0.0.1:9000".into(), path_style: true };
        let r = stored(None, Some(201)).response(&origin);
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["location"], "http://127.0.0.1:9000/vol-a/up%2Fa%20b%2Bc.txt");
        assert_eq!(r.headers()["etag"], "\"abc\"");
        let virt = RequestOrigin { base: "https://vol-a.s3.test".into(), path_style: false };
        assert_eq!(stored(None, None).location(&virt), "https://vol-a.s3.test/up%2Fa%20b%2Bc.txt");
        for bad in ["not a url", "/relative", "ftp://x/y", "javascript:alert(1)", "http://x/\n"] {
            let r = stored(Some(bad), None).response(&origin);
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{bad}");
            assert_eq!(stored(Some(bad), Some(200)).response(&origin).status(), StatusCode::OK);
        }
        let r = stored(Some("https://app.test/done?x=1"), Some(201)).response(&origin);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()["location"],
            "https://app.test/done?x=1&bucket=vol-a&key=up%2Fa+b%2Bc.txt&etag=%22abc%22"
        );
    }
}
