//! The guards in front of `s3s`: what a request must pass before the S3 service sees it,
//! where `s3s` 0.14 is weak (issue 12; SPEC.md "Authentication and access").
//!
//! - [`auth_params`]: one decoding of the authentication parameters; one mechanism only;
//!   every `x-amz-*` header signed; the SigV2 date window and switch; empty digests.
//! - [`chunked`]: aws-chunked chunks over a cap are refused before their bytes are read.
//! - form uploads (POST `multipart/form-data`, which `s3s` reads whole into memory before
//!   it checks access): refused above `max_form_upload_size` when declared, capped while
//!   read, and at most `max_form_uploads` in flight.
//!
//! Each refusal is an S3 error answered without reading the body. Nothing here logs a
//! header value.

pub mod auth_params;
pub mod chunked;
pub mod form_policy;

use std::sync::Arc;

use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::auth_params::{AuthParams, AuthRules, Mechanism};

/// Default `max_form_upload_size`: the largest browser form upload (PostObject), bytes.
/// `s3s` holds the whole file in memory before it answers, so this bounds that memory.
pub const DEFAULT_MAX_FORM_UPLOAD: u64 = 16 << 20;
/// Default `max_form_uploads`: form uploads read at once; more answer 503 SlowDown.
pub const DEFAULT_MAX_FORM_UPLOADS: usize = 4;
/// Room for the form's fields beside its file, bytes. S3 allows 20 KB of fields before
/// the file; `s3s` counts the first frame of the file too, so this is larger.
pub const FORM_FIELDS_ROOM: u64 = 1 << 20;

/// Bytes of buffered request bodies (XML: DeleteObjects, CompleteMultipartUpload, bucket
/// and object settings) `s3s` may hold at once, all requests together. `s3s` reads such a
/// body whole (up to [`crate::server::XML_MAX_BODY`] each); beyond this budget a request
/// answers 503 SlowDown, which SDKs retry.
pub const XML_BUDGET: u64 = 64 << 20;

/// Query parameters of a PUT that still streams its body into a file (PutObject,
/// UploadPart) rather than handing it to `s3s` whole.
const STREAMING_PUT_PARAMS: [&str; 3] = ["partNumber", "uploadId", "x-id"];

/// An S3 error answered by a guard: status, code, message, and one optional extra element
/// (`HeadersNotSigned`, as S3 sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Option<(&'static str, String)>,
}

impl Refusal {
    /// A refusal without an extra element.
    pub fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self { status, code, message: message.to_owned(), extra: None }
    }
}

/// The guards' settings and shared state (one per S3 listener).
#[derive(Debug, Clone)]
pub struct Guard {
    pub rules: AuthRules,
    /// Largest aws-chunked chunk accepted, bytes (`max_chunk_size`).
    pub max_chunk: u64,
    /// Largest form upload file, bytes (`max_form_upload_size`).
    pub max_form: u64,
    forms: Arc<Semaphore>,
    /// [`XML_BUDGET`] in KiB permits.
    xml: Arc<Semaphore>,
}

/// What a request that passed the guards carries on.
#[derive(Debug)]
pub struct Admitted {
    pub params: AuthParams,
    /// The body is aws-chunked: wrap it in a [`chunked::ChunkGuard`].
    pub aws_chunked: bool,
    /// The slot of a form upload, or the share of [`XML_BUDGET`] of a buffered body, held
    /// until the request is answered.
    pub form_slot: Option<OwnedSemaphorePermit>,
    /// A streaming upload without a declared length: see [`NoLength`].
    pub no_length: bool,
}

/// Marks a PutObject or UploadPart whose body is `Transfer-Encoding: chunked` with no
/// Content-Length (`curl -T -`, streaming producers; SPEC.md "Details clients rely on").
/// The S3 handlers then stream it with every limit judged on the bytes as they arrive
/// (`Writer::begin_unsized`), never on a length.
///
/// `s3s` 0.14.1 answers such a request `MissingContentLength` before any handler runs (its
/// SigV4 check insists on a length for `UNSIGNED-PAYLOAD`), so [`mark_no_length`] also gives
/// it [`NO_LENGTH_PLACEHOLDER`] as Content-Length. That header is never signed (it is absent
/// from the request), the body's framing was fixed by hyper already, and no handler reads
/// it once this marker is present.
#[derive(Debug, Clone, Copy)]
pub struct NoLength;

/// The Content-Length a [`NoLength`] request carries through `s3s` (`i64::MAX`, which no
/// real body reaches and which `s3s` parses).
pub const NO_LENGTH_PLACEHOLDER: &str = "9223372036854775807";

/// True for a request [`NoLength`] describes. Not for an aws-chunked body (it declares
/// `x-amz-decoded-content-length`), nor for one signed with its payload's SHA-256: `s3s`
/// checks that hash against the Content-Length, so such a request keeps `s3s`'s
/// `MissingContentLength`.
fn streams_without_length(head: &http::request::Parts, names_key: bool, aws_chunked: bool) -> bool {
    let h = &head.headers;
    let unsigned_payload = match h.get("x-amz-content-sha256") {
        None => true,
        Some(v) => v.as_bytes() == b"UNSIGNED-PAYLOAD",
    };
    head.method == http::Method::PUT
        && !h.contains_key(http::header::CONTENT_LENGTH)
        && h.contains_key(http::header::TRANSFER_ENCODING)
        && !aws_chunked
        && unsigned_payload
        && buffered_body(head, names_key).is_none()
}

/// Gives a [`NoLength`] request its marker and the placeholder Content-Length.
pub fn mark_no_length(head: &mut http::request::Parts) {
    head.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static(NO_LENGTH_PLACEHOLDER));
    head.extensions.insert(NoLength);
}

fn slow_down() -> Refusal {
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate.")
}

/// The bytes `s3s` may hold for this request's body when it reads it whole: `None` for
/// bodies that stream (PutObject, UploadPart) or that are empty. A body of unknown length
/// counts as the largest allowed.
fn buffered_body(head: &http::request::Parts, names_key: bool) -> Option<u64> {
    let h = &head.headers;
    let declared = h.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = h.contains_key(http::header::TRANSFER_ENCODING);
    let bytes = match (declared, chunked) {
        (Some(n), _) => n,
        (None, true) => crate::server::XML_MAX_BODY,
        (None, false) => 0,
    };
    if bytes == 0 {
        return None;
    }
    let buffered = match head.method {
        http::Method::POST => true,
        // A PUT without a key is a bucket operation (CreateBucket's configuration).
        http::Method::PUT if !names_key => true,
        http::Method::PUT => head.uri.query().and_then(auth_params::decode_query).is_some_and(|qs| {
            qs.iter().any(|(k, _)| {
                !STREAMING_PUT_PARAMS.contains(&k.as_str())
                    && !k.starts_with("X-Amz-")
                    && !matches!(k.as_str(), "AWSAccessKeyId" | "Signature" | "Expires")
            })
        }),
        _ => false,
    };
    buffered.then(|| bytes.min(crate::server::XML_MAX_BODY))
}

impl Guard {
    /// Guards with these settings.
    pub fn new(rules: AuthRules, max_chunk: u64, max_form: u64, max_forms: usize) -> Self {
        Self {
            rules,
            max_chunk,
            max_form,
            forms: Arc::new(Semaphore::new(max_forms.max(1))),
            xml: Arc::new(Semaphore::new((XML_BUDGET >> 10) as usize)),
        }
    }

    /// The form-upload limits `s3s` applies while it reads a form (its `S3Config` fields
    /// `post_object_max_file_size`, `form_max_field_size`, `form_max_fields_size`,
    /// `form_max_parts`).
    pub fn s3s_config(&self, mut cfg: s3s::config::S3Config) -> s3s::config::S3Config {
        cfg.post_object_max_file_size = self.max_form;
        cfg.form_max_field_size = 20 * 1024;
        cfg.form_max_fields_size = FORM_FIELDS_ROOM as usize;
        cfg.form_max_parts = 100;
        cfg
    }

    /// Checks one request head. `names_key`: the request names an object key (see
    /// [`crate::s3::host::BucketResolver::target`]); `now`: Unix seconds.
    ///
    /// Errors: the [`Refusal`] to answer (the body is not read).
    pub fn admit(&self, head: &http::request::Parts, names_key: bool, now: i64) -> Result<Admitted, Refusal> {
        let params = auth_params::inspect(&head.method, &head.uri, &head.headers, self.rules, now)?;
        let aws_chunked =
            head.headers.get("x-amz-content-sha256").is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"));
        let no_length = streams_without_length(head, names_key, aws_chunked);
        let mut form_slot = None;
        if params.mechanism == Mechanism::PostForm {
            let declared =
                head.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_form.saturating_add(FORM_FIELDS_ROOM)) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                ));
            }
            form_slot = Some(self.forms.clone().try_acquire_owned().map_err(|_| slow_down())?);
        } else if let Some(bytes) = buffered_body(head, names_key) {
            let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
            if kib > 0 {
                form_slot = Some(self.xml.clone().try_acquire_many_owned(kib).map_err(|_| slow_down())?);
            }
        }
        Ok(Admitted { params, aws_chunked, form_slot, no_length })
    }
}
