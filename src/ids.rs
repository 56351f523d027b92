//! The request's identifiers on every response (issue 14 item 5): `x-amz-request-id` and
//! `x-amz-id-2` headers, and in every S3 error body a `<RequestId>` equal to the first and a
//! `<HostId>` equal to the second, as S3 sends them and as SDKs report them in errors.
//!
//! Errors come from `s3s` (its own checks, and our handlers' `S3Error`s, which `s3s` 0.14.1
//! serializes without either element) and from the refusals answered before `s3s`; this
//! stamps them all in one place, after the fact, so that no error path can miss it.

use bytes::Bytes;

/// A fresh `x-amz-id-2` for one request: 32 random bytes in base64, the shape S3 uses. It
/// names nothing about the node (no host name reaches a client); the request id in the
/// logs is what finds the request.
pub fn host_id() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source works");
    base64_simd::STANDARD.encode_to_string(b)
}

/// Sets the id headers on `resp`, and adds `<RequestId>` and `<HostId>` to an error body
/// that lacks them. Only whole (non-streamed) error bodies are rewritten: a streamed body
/// (a keep-alive CompleteMultipartUpload) is left as is.
pub fn stamp(resp: &mut http::Response<s3s::Body>, request_id: &str, host_id: &str) {
    for (name, v) in [("x-amz-request-id", request_id), ("x-amz-id-2", host_id)] {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            resp.headers_mut().insert(name, v);
        }
    }
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let Some(body) = resp.body().bytes() else { return };
    if let Some(stamped) = with_ids(&body, request_id, host_id) {
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = s3s::Body::from(stamped);
    }
}

/// `xml`, an S3 `<Error>` document, with the missing id elements added before `</Error>`;
/// `None` when it is not one or already has both.
fn with_ids(xml: &[u8], request_id: &str, host_id: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(xml).ok()?;
    let trimmed = text.trim_end();
    let head = trimmed.strip_suffix("</Error>")?;
    if !text.contains("<Error>") {
        return None;
    }
    let mut extra = String::new();
    if !head.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{request_id}</RequestId>"));
    }
    if !head.contains("<HostId>") {
        extra.push_str(&format!("<HostId>{host_id}</HostId>"));
    }
    if extra.is_empty() {
        return None;
    }
    Some(Bytes::from(format!("{head}{extra}</Error>")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_get_both_ids_once() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>"#;
        let out = with_ids(xml, "ABC", "aGk=").unwrap();
        assert_eq!(
            &out[..],
            br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>m</Message><RequestId>ABC</RequestId><HostId>aGk=</HostId></Error>"#
        );
        assert!(with_ids(&out, "ABC", "aGk=").is_none(), "already stamped");
        let with_rid = b"<Error><Code>X</Code><RequestId>ABC</RequestId></Error>\n";
        assert_eq!(
            &with_ids(with_rid, "ABC", "h").unwrap()[..],
            b"<Error><Code>X</Code><RequestId>ABC</RequestId><HostId>h</HostId></Error>"
        );
        assert!(with_ids(b"<ListBucketResult></ListBucketResult>", "A", "h").is_none());
        assert!(with_ids(b"", "A", "h").is_none());
    }

    #[test]
    fn host_ids_are_base64_of_32_bytes() {
        let h = host_id();
        assert_eq!(base64_simd::STANDARD.decode_to_vec(&h).unwrap().len(), 32);
        assert_ne!(h, host_id());
    }
}
