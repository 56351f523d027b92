//! CompleteMultipartUpload with a signed body that lists part checksums `s3s` 0.14.1 does
//! not parse (see [`super::complete_xml`]): botocore over HTTP signs the body's SHA-256, so
//! the elements cannot be blanked before `s3s` verifies it. The server reads such a body up
//! front and marks the request ([`Routed`]); `s3s` checks its signature and hands it to
//! this custom route ([`CompleteRoute`]), which reads the body through `s3s`'s hashing
//! stream (so the signed SHA-256 is verified), takes the five algorithms' values out,
//! parses the rest as `s3s` would and runs the same handler as the ordinary operation.
//!
//! `s3s` bypasses [`s3s::access::S3Access`] for a custom route: [`CompleteRoute`] makes the
//! same decision itself ([`KeyRing::check_route`]).

use bytes::Bytes;
use hyper::http::Extensions;
use hyper::{HeaderMap, Method, Uri};
use s3s::dto::{CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CompletedMultipartUpload, ETagCondition};
use s3s::route::S3Route;
use s3s::xml::{Deserialize, Serialize};
use s3s::{Body, S3Error, S3Request, S3Response, S3Result, s3_error};
use tracing::Instrument;

use super::S3Vol;
use super::complete_xml::{CompleteBody, blank, listed_checksums};
use crate::auth::KeyRing;

/// The operation this route serves, as `s3s` names it (for access and the log line).
const OP: &str = "CompleteMultipartUpload";

/// Request extension set by the server on a CompleteMultipartUpload whose signed body
/// (not aws-chunked, at most [`crate::server::XML_MAX_BODY`], held whole) lists part
/// checksums of [`super::complete_xml::UNPARSED`] algorithms: the bucket and key the
/// request names ([`super::host::BucketResolver::object`]).
#[derive(Debug, Clone)]
pub struct Routed {
    pub bucket: String,
    pub key: String,
}

/// The `s3s` custom route for the requests marked [`Routed`].
#[derive(Clone)]
pub struct CompleteRoute {
    s3: S3Vol,
    keys: KeyRing,
}

impl CompleteRoute {
    /// Completes with `s3`'s handler, authorized by `keys`.
    pub fn new(s3: S3Vol, keys: KeyRing) -> Self {
        Self { s3, keys }
    }
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema."
    )
}

/// The request's `uploadId` query parameter, percent-decoded.
fn upload_id(uri: &Uri) -> S3Result<String> {
    let qs = uri.query().and_then(crate::guard::auth_params::decode_query).unwrap_or_default();
    let mut ids = qs.into_iter().filter(|(k, _)| k == "uploadId").map(|(_, v)| v);
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        _ => Err(s3_error!(InvalidArgument, "invalid query: uploadId")),
    }
}

/// An `If-Match` / `If-None-Match` header, parsed as `s3s` parses it.
fn condition(headers: &HeaderMap, name: http::header::HeaderName) -> S3Result<Option<ETagCondition>> {
    let mut all = headers.get_all(&name).into_iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return match headers.contains_key(&name) {
            false => Ok(None),
            true => Err(s3_error!(InvalidArgument, "invalid header: {}", name.as_str())),
        };
    };
    ETagCondition::parse_http_header(v.as_bytes())
        .map(Some)
        .map_err(|_| s3_error!(InvalidArgument, "invalid header: {}: {:?}", name.as_str(), v))
}

/// The body's `<CompleteMultipartUpload>` as `s3s` deserializes it (an empty body is
/// `MalformedXML`, as `s3s` answers), with the [`super::complete_xml::UNPARSED`] values
/// taken out.
fn parse(body: &[u8]) -> S3Result<(CompletedMultipartUpload, CompleteBody)> {
    let (values, spans) = listed_checksums(body)?;
    let mut xml = body.to_vec();
    blank(&mut xml, &spans);
    if xml.is_empty() {
        return Err(malformed());
    }
    let mut d = s3s::xml::Deserializer::new(&xml);
    let parsed = CompletedMultipartUpload::deserialize(&mut d).map_err(|_| malformed())?;
    d.expect_eof().map_err(|_| malformed())?;
    Ok((parsed, CompleteBody::with(values)))
}

/// The response `s3s` gives for a CompleteMultipartUpload output: the XML declaration and
/// `<CompleteMultipartUploadResult xmlns=...>` (application/xml), and the headers its
/// fields map to.
fn serialize(out: &CompleteMultipartUploadOutput) -> S3Result<(Vec<u8>, HeaderMap)> {
    let mut buf = Vec::with_capacity(512);
    let mut ser = s3s::xml::Serializer::new(&mut buf);
    ser.decl().and_then(|()| out.serialize(&mut ser)).map_err(S3Error::internal_error)?;
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    let fields = [
        ("x-amz-server-side-encryption-bucket-key-enabled", out.bucket_key_enabled.map(|b| b.to_string())),
        ("x-amz-expiration", out.expiration.clone()),
        ("x-amz-request-charged", out.request_charged.as_ref().map(|v| v.as_str().to_owned())),
        ("x-amz-server-side-encryption-aws-kms-key-id", out.ssekms_key_id.clone()),
        ("x-amz-server-side-encryption", out.server_side_encryption.as_ref().map(|v| v.as_str().to_owned())),
        ("x-amz-version-id", out.version_id.clone()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            h.insert(name, http::HeaderValue::try_from(v).map_err(S3Error::internal_error)?);
        }
    }
    Ok((buf, h))
}

#[async_trait::async_trait]
impl S3Route for CompleteRoute {
    fn is_match(&self, method: &Method, uri: &Uri, _headers: &HeaderMap, extensions: &mut Extensions) -> bool {
        // Only a plain Complete: `uploadId` and presigned-URL parameters, nothing s3s would
        // route elsewhere (`uploads`, `select`, `restore`, ...).
        method == Method::POST
            && uri.query().is_some_and(|q| {
                let names = || q.split('&').map(|p| p.split('=').next().unwrap_or(""));
                names().any(|n| n == "uploadId") && names().all(|n| n == "uploadId" || n.starts_with("X-Amz-"))
            })
            && extensions.get::<Routed>().is_some()
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(Routed { bucket, key }) = req.extensions.get::<Routed>().cloned() else {
            return Err(s3_error!(InternalError));
        };
        self.keys.check_route(req, OP, &bucket, &key)
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let Some(Routed { bucket, key }) = req.extensions.get::<Routed>().cloned() else {
            return Err(s3_error!(InternalError));
        };
        let span = tracing::info_span!("op", op = OP, bucket = %bucket, key = %key);
        // Read through s3s's stream, which compares the bytes with the signed SHA-256. The
        // server held the body within the cap already; the limit only backs that up.
        let mut input = req.input;
        let body: Bytes = match input.store_all_limited(crate::server::XML_MAX_BODY as usize).await {
            Ok(b) => b,
            // s3s's BodySizeLimitExceeded is private: told apart by its text, as body_error does.
            Err(e) if e.to_string().contains("exceeds limit") => {
                return Err(s3_error!(MaxMessageLengthExceeded, "Your request was too big."));
            }
            Err(e) => return Err(super::error::body_error(&*e)),
        };
        let (parsed, listed) = parse(&body)?;
        let headers = &req.headers;
        let input = CompleteMultipartUploadInput {
            bucket: bucket.clone(),
            key,
            upload_id: upload_id(&req.uri)?,
            if_match: condition(headers, http::header::IF_MATCH)?,
            if_none_match: condition(headers, http::header::IF_NONE_MATCH)?,
            checksum_type: headers
                .get("x-amz-checksum-type")
                .map(|v| v.to_str().map(|s| s.to_owned().into()))
                .transpose()
                .map_err(|_| s3_error!(InvalidArgument, "invalid header: x-amz-checksum-type"))?,
            multipart_upload: Some(parsed),
            ..Default::default()
        };
        let mut extensions = req.extensions;
        extensions.insert(listed);
        let call = S3Request {
            input,
            method: req.method,
            uri: req.uri,
            headers: req.headers,
            extensions,
            credentials: req.credentials,
            region: req.region,
            service: req.service,
            trailing_headers: req.trailing_headers,
        };
        let done = self.s3.on(&bucket, self.s3.do_complete_multipart_upload(call)).instrument(span).await?;
        let (mut output, status, extra, extensions) = (done.output, done.status, done.headers, done.extensions);
        // A long assembly hands back a future (s3s streams spaces while it runs). This rare
        // path awaits it instead: s3s's keep-alive body is private, and the client sees no
        // bytes until the assembly ends.
        if let Some(fut) = output.future.take() {
            output = fut.await?;
        }
        let (xml, mut headers) = serialize(&output)?;
        headers.extend(extra);
        let mut resp = S3Response::new(Body::from(xml));
        resp.status = status;
        resp.headers = headers;
        resp.extensions = extensions;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_s3s_parses_with_the_new_algorithms_taken_out() {
        let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload \
                    xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><ETag>\"e\"</ETag>\
                    <PartNumber>1</PartNumber><ChecksumSHA512>abc=</ChecksumSHA512>\
                    <ChecksumCRC32>x</ChecksumCRC32></Part></CompleteMultipartUpload>";
        let (parsed, listed) = parse(xml).unwrap();
        let parts = parsed.parts.unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].part_number, Some(1));
        assert_eq!(parts[0].checksum_crc32.as_deref(), Some("x"));
        assert_eq!(listed.listed(), vec![(1, crate::store::checksum::Algorithm::Sha512, "abc=".to_owned())]);
        let code = |xml: &[u8]| parse(xml).unwrap_err().code().as_str().to_owned();
        assert_eq!(code(b""), "MalformedXML", "empty");
        assert_eq!(
            code(b"<CompleteMultipartUpload><Part><Bogus>1</Bogus></Part></CompleteMultipartUpload>"),
            "MalformedXML",
            "unknown"
        );
        assert_eq!(code(b"<Other></Other>"), "MalformedXML", "root");
    }

    #[test]
    fn serializes_as_s3s_does() {
        let out = CompleteMultipartUploadOutput {
            bucket: Some("b".into()),
            key: Some("k".into()),
            version_id: Some("v1".into()),
            ..Default::default()
        };
        let (xml, h) = serialize(&out).unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
        assert!(
            xml.contains("<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"),
            "{xml}"
        );
        assert!(xml.contains("<Bucket>b</Bucket><Key>k</Key>"), "{xml}");
        assert_eq!(h["content-type"], "application/xml");
        assert_eq!(h["x-amz-version-id"], "v1");
    }

    #[test]
    fn reads_the_upload_id_and_conditions() {
        assert_eq!(upload_id(&"/b/k?uploadId=a%2Bb".parse().unwrap()).unwrap(), "a+b");
        assert!(upload_id(&"/b/k?uploadId=a&uploadId=b".parse().unwrap()).is_err());
        let mut h = HeaderMap::new();
        assert!(condition(&h, http::header::IF_MATCH).unwrap().is_none());
        h.insert(http::header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(matches!(condition(&h, http::header::IF_NONE_MATCH).unwrap(), Some(ETagCondition::Any)));
    }
}
