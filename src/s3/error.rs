//! The one conversion from storage errors to S3 errors: code, HTTP status and a message
//! that never holds a path or a secret. Internal errors are logged with their chain.

use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};
use tracing::error;

use crate::store::Error;

/// An S3 error code `s3s` does not name, with its HTTP status.
pub fn custom(code: &'static str, status: StatusCode, msg: &str) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), msg.to_owned());
    e.set_status_code(status);
    e
}

fn std_code(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

/// The one conversion of a storage error into the S3 error a client expects (SPEC.md
/// "Errors"), so that `?` turns a `store::Result` into an `S3Result`.
impl From<Error> for S3Error {
    fn from(e: Error) -> Self {
        to_s3(e)
    }
}

/// The table behind `From<store::Error> for S3Error`: code, status and message per error.
fn to_s3(e: Error) -> S3Error {
    match e {
        Error::InvalidKey(why) => std_code(S3ErrorCode::InvalidArgument, format!("Invalid object key: {why}")),
        Error::KeyTooLong => std_code(S3ErrorCode::KeyTooLongError, "Your key is too long"),
        Error::NotFound => std_code(S3ErrorCode::NoSuchKey, "The specified key does not exist."),
        Error::NoSuchBucket => std_code(S3ErrorCode::NoSuchBucket, "The specified bucket does not exist"),
        Error::Unavailable => {
            std_code(S3ErrorCode::ServiceUnavailable, "The volume behind this bucket is not available")
        }
        Error::ParentIsFile => custom(
            "ObjectParentIsFile",
            StatusCode::CONFLICT,
            "A parent of this key is a file, so the key cannot be a path beneath it",
        ),
        Error::IsDirectory => custom(
            "ExistingObjectIsDirectory",
            StatusCode::CONFLICT,
            "This key names an existing directory on the volume",
        ),
        Error::MarkerWithBody => {
            std_code(S3ErrorCode::InvalidArgument, "A key ending with '/' names a directory and cannot have content")
        }
        Error::NoSpace => custom(
            "InsufficientStorage",
            StatusCode::INSUFFICIENT_STORAGE,
            "The volume has no space left for this write",
        ),
        Error::QuotaExceeded => {
            custom("QuotaExceeded", StatusCode::FORBIDDEN, "The volume's quota does not allow this write")
        }
        Error::EntityTooLarge => std_code(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum object size this volume accepts",
        ),
        // S3's code and text; it also names the part, which this message does.
        Error::EntityTooSmall { part, size, min } => std_code(
            S3ErrorCode::EntityTooSmall,
            format!(
                "Your proposed upload is smaller than the minimum allowed object size. \
                 (part {part} is {size} bytes; the minimum for every part but the last is {min})"
            ),
        ),
        // S3 answers a body longer or shorter than declared (also an aws-chunked body
        // against `x-amz-decoded-content-length`) with this code and text.
        Error::BodyLength { declared, received } => std_code(
            S3ErrorCode::IncompleteBody,
            format!(
                "You did not provide the number of bytes specified by the Content-Length HTTP header \
                 (expected {declared}, got {received})"
            ),
        ),
        Error::ContentTypeNotAllowed => {
            std_code(S3ErrorCode::InvalidArgument, "This volume does not accept objects of that Content-Type")
        }
        Error::PermissionDenied => std_code(S3ErrorCode::AccessDenied, "The volume's file system denied access"),
        Error::ReadOnly => std_code(S3ErrorCode::AccessDenied, "The volume is read-only"),
        Error::MetadataUnsupported => std_code(
            S3ErrorCode::InvalidArgument,
            "This volume's file system cannot store user metadata (x-amz-meta-*); send the object without it",
        ),
        Error::EscapingLink => std_code(S3ErrorCode::AccessDenied, "The key is a link that leaves the volume"),
        Error::InternalDir => std_code(
            S3ErrorCode::InvalidArgument,
            "Invalid object key: it leads through a link into the reserved internal directory",
        ),
        Error::BucketNotEmpty => std_code(S3ErrorCode::BucketNotEmpty, "The bucket you tried to delete is not empty"),
        Error::BucketExists => std_code(S3ErrorCode::BucketAlreadyOwnedByYou, "The bucket already exists"),
        Error::NoSuchUpload => std_code(S3ErrorCode::NoSuchUpload, "The specified multipart upload does not exist."),
        Error::InvalidPart(why) => std_code(S3ErrorCode::InvalidPart, why),
        Error::BadDigest(why) => std_code(S3ErrorCode::BadDigest, why),
        Error::InvalidPartOrder => {
            std_code(S3ErrorCode::InvalidPartOrder, "The list of parts was not in ascending order.")
        }
        Error::InvalidPartNumber => {
            std_code(S3ErrorCode::InvalidArgument, "Part number must be an integer between 1 and 10000")
        }
        Error::PreconditionFailed => {
            std_code(S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        Error::ConditionalConflict => std_code(
            S3ErrorCode::ConditionalRequestConflict,
            "A conflicting operation occurred. If using PutObject you can retry the request.",
        ),
        Error::Io(io) => {
            error!(error = %io, kind = ?io.kind(), "internal i/o error");
            std_code(S3ErrorCode::InternalError, "We encountered an internal error. Please try again.")
        }
    }
}

/// Maps an error from a request body stream. `s3s` keeps its body error types private, so
/// they are told apart by their text: a payload hash mismatch, a chunk signature mismatch,
/// or a body that ended early.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> S3Error {
    if let Some(s3) = e.downcast_ref::<S3Error>() {
        return S3Error::with_message(s3.code().clone(), s3.message().unwrap_or("").to_owned());
    }
    let text = e.to_string();
    if text.contains("Sha256Mismatch") {
        custom(
            "XAmzContentSHA256Mismatch",
            StatusCode::BAD_REQUEST,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else if text.contains("ChunkTooLarge") {
        std_code(
            S3ErrorCode::InvalidRequest,
            "An aws-chunked chunk is larger than this server accepts (max_chunk_size)",
        )
    } else if text.contains("ChunkMalformed") {
        std_code(S3ErrorCode::IncompleteBody, "The aws-chunked framing of the request body is malformed")
    } else if text.contains("RequestTimeout") {
        std_code(
            S3ErrorCode::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period.",
        )
    } else if text.contains("SignatureMismatch") {
        std_code(S3ErrorCode::SignatureDoesNotMatch, "A chunk signature of the aws-chunked body does not match")
    } else {
        std_code(S3ErrorCode::IncompleteBody, "The request body ended before the declared length, or was malformed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases: Vec<(Error, &str, u16)> = vec![
            (Error::InvalidKey("x"), "InvalidArgument", 400),
            (Error::KeyTooLong, "KeyTooLongError", 400),
            (Error::NotFound, "NoSuchKey", 404),
            (Error::NoSuchBucket, "NoSuchBucket", 404),
            (Error::Unavailable, "ServiceUnavailable", 503),
            (Error::ParentIsFile, "ObjectParentIsFile", 409),
            (Error::IsDirectory, "ExistingObjectIsDirectory", 409),
            (Error::NoSpace, "InsufficientStorage", 507),
            (Error::QuotaExceeded, "QuotaExceeded", 403),
            (Error::PermissionDenied, "AccessDenied", 403),
            (Error::EntityTooLarge, "EntityTooLarge", 400),
            (Error::BodyLength { declared: 3, received: 5 }, "IncompleteBody", 400),
            (Error::EntityTooSmall { part: 1, size: 1, min: 5 }, "EntityTooSmall", 400),
            (Error::ContentTypeNotAllowed, "InvalidArgument", 400),
            (Error::ReadOnly, "AccessDenied", 403),
            (Error::NoSuchUpload, "NoSuchUpload", 404),
            (Error::InvalidPartOrder, "InvalidPartOrder", 400),
            (Error::BadDigest("x".into()), "BadDigest", 400),
            (Error::Io(std::io::Error::other("boom /secret/path")), "InternalError", 500),
        ];
        for (err, code, status) in cases {
            let s3 = to_s3(err);
            assert_eq!(s3.code().as_str(), code);
            let got = s3.status_code().unwrap_or_else(|| s3.code().status_code().unwrap());
            assert_eq!(got.as_u16(), status, "{code}");
            assert!(!s3.message().unwrap_or("").contains("/secret"), "no paths in messages");
        }
    }
}
