//! The authentication parameters of one request, decoded once, and the checks `s3s` 0.14
//! does not make: exactly one auth mechanism, every `x-amz-*` header signed, the SigV2
//! date window, SigV2 switched off, the credential scope's service, empty digests.
//!
//! The query string is decoded here exactly as `s3s` decodes it (`serde_urlencoded`, a
//! parameter given twice counts as absent), so the presign cap and `strict_region` in
//! `auth` read the very values the signature check used: a percent-encoded parameter
//! name (`X-Amz-%45xpires`) or a decoy `Authorization` beside a presigned query changes
//! nothing.

use http::{HeaderMap, Method, StatusCode, Uri};

use super::Refusal;

/// How a request authenticates, as `s3s` 0.14.1 will decide it (a POST form first, then
/// SigV2 query or header, then SigV4 query or header; see its `ops/signature.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// No signature: anonymous.
    None,
    /// A browser form upload (POST `multipart/form-data`): the signature is a form field.
    PostForm,
    /// SigV4 `Authorization` header.
    V4Header {
        /// Lower-case header names from `SignedHeaders=`.
        signed_headers: Vec<String>,
        /// The credential scope's region and service.
        region: String,
        service: String,
    },
    /// SigV4 presigned URL (`X-Amz-Signature` in the query).
    V4Query {
        signed_headers: Vec<String>,
        region: String,
        service: String,
        /// `X-Amz-Expires`, seconds (`u64::MAX` when not a number).
        expires: u64,
    },
    /// SigV2 `Authorization: AWS AK:SIG` header.
    V2Header,
    /// SigV2 presigned URL (`Signature` and `Expires` in the query).
    V2Query {
        /// `Expires` as a Unix time (`i64::MAX` when not a number).
        expires_at: i64,
    },
}

/// What the guard found out about a request's authentication; put into the request's
/// extensions for the access hook ([`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    pub mechanism: Mechanism,
}

impl AuthParams {
    /// The region a SigV4 request is signed for (its credential scope), if any.
    pub fn region(&self) -> Option<&str> {
        match &self.mechanism {
            Mechanism::V4Header { region, .. } | Mechanism::V4Query { region, .. } => Some(region),
            _ => None,
        }
    }

    /// The lifetime a presigned URL asks for, in seconds (SigV2: its absolute `Expires`
    /// minus `now`); `None` unless presigned.
    pub fn presigned_lifetime(&self, now: i64) -> Option<u64> {
        match &self.mechanism {
            Mechanism::V4Query { expires, .. } => Some(*expires),
            Mechanism::V2Query { expires_at } => Some(u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0)),
            _ => None,
        }
    }
}

/// The query string decoded as `s3s` decodes it: `(name, value)` pairs, percent- and
/// `+`-decoded. `None` when it does not decode (s3s answers `InvalidURI`).
pub fn decode_query(query: &str) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).ok()
}

/// The value of `name` when it is given exactly once (as `s3s`'s `get_unique`).
fn unique<'a>(qs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut it = qs.iter().filter(|(k, _)| k == name);
    let first = it.next()?;
    if it.next().is_some() { None } else { Some(first.1.as_str()) }
}

fn count(qs: &[(String, String)], name: &str) -> usize {
    qs.iter().filter(|(k, _)| k == name).count()
}

/// Settings of the checks (config keys `sigv2` and the skew window).
#[derive(Debug, Clone, Copy)]
pub struct AuthRules {
    /// SigV2 (header, presigned URL and POST form) accepted.
    pub sigv2: bool,
    /// Clock skew accepted on a SigV2 header date, seconds (SPEC.md: one hour).
    pub max_skew_secs: i64,
}

/// S3's answer when a request names more than one way to authenticate.
fn more_than_one() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
    )
}

/// S3's answer to SigV2 where only SigV4 is accepted.
fn v2_refused() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

/// Query parameters that choose the operation (`s3s`'s router reads them) but are not in
/// the SigV2 string to sign (`s3s`'s `INCLUDED_QUERY`): with SigV2, a captured request
/// could gain one and become another operation, so SigV2 requests carrying one are
/// refused. (`list-type` and `x-id` are left out: they only choose between two listings
/// of the same permission.)
const V2_UNSIGNED_SUBRESOURCES: [&str; 11] = [
    "attributes",
    "encryption",
    "intelligent-tiering",
    "legal-hold",
    "metadataTable",
    "ownershipControls",
    "policyStatus",
    "publicAccessBlock",
    "retention",
    "session",
    "id",
];

/// Parameters in the query string that carry authentication: given twice, `s3s` would
/// read them as absent, so they are refused instead.
const QUERY_AUTH_PARAMS: [&str; 10] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "Signature",
    "Expires",
    "AWSAccessKeyId",
    "X-Amz-Security-Token",
];

/// Decides how the request authenticates and refuses what S3 refuses before any
/// signature is computed (SPEC.md "Authentication and access"; issue 12 item 2).
///
/// `now` is the Unix time in seconds. Errors: the [`Refusal`] to answer, without
/// reading the body.
pub fn inspect(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    rules: AuthRules,
    now: i64,
) -> Result<AuthParams, Refusal> {
    let qs = match uri.query() {
        Some(q) => decode_query(q)
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "InvalidURI", "Couldn't parse the specified URI."))?,
        None => Vec::new(),
    };
    for name in QUERY_AUTH_PARAMS {
        if count(&qs, name) > 1 {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                &format!("The query parameter {name} is given more than once"),
            ));
        }
    }
    let auth_headers = headers.get_all(http::header::AUTHORIZATION).iter().count();
    if auth_headers > 1 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "The Authorization header is given more than once",
        ));
    }
    for digest in [http::HeaderName::from_static("content-md5")] {
        if headers.get(&digest).is_some_and(|v| v.as_bytes().iter().all(u8::is_ascii_whitespace)) {
            return Err(invalid_digest());
        }
    }
    for (name, value) in headers {
        if name.as_str().starts_with("x-amz-checksum-")
            && name.as_str() != "x-amz-checksum-mode"
            && name.as_str() != "x-amz-checksum-type"
            && value.as_bytes().iter().all(u8::is_ascii_whitespace)
        {
            return Err(invalid_digest());
        }
    }
    let auth_header = headers.get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let v4_query = qs.iter().any(|(k, _)| k == "X-Amz-Signature");
    let v2_query = qs.iter().any(|(k, _)| k == "Signature");
    let form = is_form_upload(method, headers);
    let mechanisms =
        usize::from(auth_header.is_some()) + usize::from(v4_query) + usize::from(v2_query) + usize::from(form);
    if mechanisms > 1 || (qs.iter().any(|(k, _)| k == "X-Amz-Algorithm") && (auth_header.is_some() || v2_query)) {
        return Err(more_than_one());
    }
    let mechanism = if form {
        // The signature is a form field, checked by s3s once the fields are read.
        Mechanism::PostForm
    } else if v2_query {
        if !rules.sigv2 {
            return Err(v2_refused());
        }
        let expires_at = unique(&qs, "Expires").map_or(i64::MAX, |e| e.parse().unwrap_or(i64::MAX));
        Mechanism::V2Query { expires_at }
    } else if let Some(auth) = auth_header {
        if auth.starts_with("AWS ") {
            if !rules.sigv2 {
                return Err(v2_refused());
            }
            check_v2_date(headers, rules.max_skew_secs, now)?;
            Mechanism::V2Header
        } else if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") {
            let (signed_headers, region, service) = parse_v4_authorization(rest).ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationHeaderMalformed",
                    "The authorization header is malformed",
                )
            })?;
            Mechanism::V4Header { signed_headers, region, service }
        } else {
            // Neither form: s3s treats it as anonymous; refuse instead of guessing.
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "InvalidArgument", "Unsupported Authorization Type"));
        }
    } else if v4_query {
        let signed_headers = unique(&qs, "X-Amz-SignedHeaders").and_then(strict_signed).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-SignedHeaders must list lower-case header names separated by ';'",
            )
        })?;
        let credential = unique(&qs, "X-Amz-Credential").unwrap_or("");
        let (region, service) = scope(credential).unwrap_or_default();
        let expires = unique(&qs, "X-Amz-Expires").map_or(u64::MAX, |e| e.parse().unwrap_or(u64::MAX));
        Mechanism::V4Query { signed_headers, region, service, expires }
    } else {
        Mechanism::None
    };
    if matches!(mechanism, Mechanism::V2Header | Mechanism::V2Query { .. })
        && let Some(k) = qs.iter().map(|(k, _)| k.as_str()).find(|k| V2_UNSIGNED_SUBRESOURCES.contains(k))
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            &format!("The {k} subresource needs AWS4-HMAC-SHA256: SigV2 does not sign it"),
        ));
    }
    match &mechanism {
        Mechanism::V4Header { signed_headers, service, .. } | Mechanism::V4Query { signed_headers, service, .. } => {
            if service != "s3" {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationHeaderMalformed",
                    &format!("The credential scope names service {service:?}; this endpoint is s3"),
                ));
            }
            // Every signed name must be present: `s3s` drops an absent one from the
            // canonical request, which would let a captured signature "sign" a header the
            // attacker adds later. `host` is required, as S3 requires it (a request routed
            // by virtual host would otherwise be movable to another bucket).
            let has_host = headers.contains_key(http::header::HOST) || uri.authority().is_some();
            if !signed_headers.iter().any(|n| n == "host") {
                return Err(Refusal::new(StatusCode::FORBIDDEN, "AccessDenied", "The host header must be signed"));
            }
            if let Some(missing) =
                signed_headers.iter().find(|n| !(headers.contains_key(n.as_str()) || (*n == "host" && has_host)))
            {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "SignatureDoesNotMatch",
                    &format!("The signed header {missing} is not in the request"),
                ));
            }
            let unsigned = unsigned_amz_headers(headers, signed_headers);
            if !unsigned.is_empty() {
                let mut r = Refusal::new(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "There were headers present in the request which were not signed",
                );
                r.extra = Some(("HeadersNotSigned", unsigned.join(", ")));
                return Err(r);
            }
        }
        _ => {}
    }
    Ok(AuthParams { mechanism })
}

/// True for a request `s3s` may read as a browser form upload: a POST whose Content-Type
/// holds `multipart/form-data` anywhere, compared as bytes. A superset of what `s3s`
/// accepts (it parses the value with the `mime` crate, which takes non-ASCII bytes in
/// quoted parameters that `HeaderValue::to_str` refuses), so no form slips past the form
/// limits by an odd Content-Type.
pub fn is_form_upload(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::POST
        && headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
            let lower = v.as_bytes().to_ascii_lowercase();
            lower.windows(b"multipart/form-data".len()).any(|w| w == b"multipart/form-data")
        })
}

fn invalid_digest() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "InvalidDigest",
        "The Content-MD5 or checksum value that you specified is not valid.",
    )
}

/// `x-amz-*` headers present but not named in `signed` (sorted, lower case).
///
/// `x-amz-content-sha256` is the one exception, as in S3: its value is the last line of
/// the canonical request whether it is listed or not, so changing it breaks the signature.
pub fn unsigned_amz_headers(headers: &HeaderMap, signed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-") && *n != "x-amz-content-sha256")
        .filter(|n| !signed.iter().any(|s| s == n))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `(region, service)` of a credential `AK/DATE/REGION/SERVICE/aws4_request`.
fn scope(credential: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() < 5 {
        return None;
    }
    let n = parts.len();
    // The access key may itself hold a '/', so count from the end.
    Some((parts[n - 3].to_owned(), parts[n - 2].to_owned()))
}

/// `(signed headers, region, service)` from what follows `AWS4-HMAC-SHA256 `, read in the
/// order `s3s` reads it (`Credential=...,` then `SignedHeaders=...,` then `Signature=`).
/// `None` when the signed header names are not plain lower-case names: `s3s` looks each
/// name up as written and silently leaves out one it does not find, so a name padded with
/// a space or written in capitals would count as signed here and as absent there.
fn parse_v4_authorization(rest: &str) -> Option<(Vec<String>, String, String)> {
    let rest = rest.trim_start();
    let after_cred = rest.strip_prefix("Credential=")?;
    let (credential, after) = after_cred.split_once(',')?;
    let after = after.trim_start().strip_prefix("SignedHeaders=")?;
    let (signed, _) = after.split_once(',')?;
    let (region, service) = scope(credential)?;
    Some((strict_signed(signed)?, region, service))
}

/// `;`-separated header names, each non-empty and only of `a-z`, `0-9` and `-`; else `None`.
fn strict_signed(s: &str) -> Option<Vec<String>> {
    let names: Vec<String> = s.split(';').map(str::to_owned).collect();
    names
        .iter()
        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        .then_some(names)
}

/// SigV2 header auth: the request's date (`x-amz-date` when present, which SigV2 then
/// signs in place of `Date`) must lie within the skew window (issue 12: a captured SigV2
/// request could otherwise be replayed forever).
fn check_v2_date(headers: &HeaderMap, max_skew: i64, now: i64) -> Result<(), Refusal> {
    let date = headers
        .get("x-amz-date")
        .filter(|v| !v.is_empty())
        .or_else(|| headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok());
    let Some(date) = date else {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let Some(at) = parse_http_date(date) else {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    if (now - at).abs() > max_skew {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    Ok(())
}

/// A date as HTTP and SigV2 clients write it (RFC 7231 IMF-fixdate, RFC 850, asctime, or
/// RFC 2822 with a numeric zone), as Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    if let Ok(t) = httpdate::parse_http_date(s.trim()) {
        return t.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok());
    }
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc2822)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: AuthRules = AuthRules { sigv2: true, max_skew_secs: 3600 };
    const NOW: i64 = 1_900_000_000;

    fn run(method: &str, uri: &str, headers: &[(&str, &str)], rules: AuthRules) -> Result<AuthParams, Refusal> {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "s3.test".parse().unwrap());
        for (k, v) in headers {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        inspect(&method.parse().unwrap(), &uri.parse().unwrap(), &h, rules, NOW)
    }

    fn code(r: Result<AuthParams, Refusal>) -> String {
        r.map_or_else(|e| e.code.to_owned(), |_| "ok".into())
    }

    const V4: &str = "AWS4-HMAC-SHA256 Credential=AK/20300101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00";

    #[test]
    fn unsigned_amz_headers_are_refused() {
        let ok = run(
            "GET",
            "/b/k",
            &[("authorization", V4), ("x-amz-date", "x"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
            RULES,
        );
        assert_eq!(code(ok), "ok");
        let signed = [("authorization", V4), ("x-amz-date", "x"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")];
        let r = run("PUT", "/b/k", &[&signed[..], &[("x-amz-copy-source", "/other/k")]].concat(), RULES);
        let e = r.unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (403, "AccessDenied"));
        assert_eq!(e.extra.unwrap().1, "x-amz-copy-source");
        // Presigned: the same rule with X-Amz-SignedHeaders.
        let q = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20300101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20300101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        assert_eq!(code(run("GET", q, &[], RULES)), "ok");
        assert_eq!(code(run("GET", q, &[("x-amz-copy-source", "/o/k")], RULES)), "AccessDenied");
    }

    #[test]
    fn one_mechanism_and_one_decoding() {
        let q = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20300101%2Feu-x-1%2Fs3%2Faws4_request&X-Amz-Date=20300101T000000Z&X-Amz-%45xpires=999999999&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        let p = run("GET", q, &[], RULES).unwrap();
        // The percent-encoded name is the parameter s3s reads.
        assert_eq!(p.presigned_lifetime(NOW), Some(999_999_999));
        assert_eq!(p.region(), Some("eu-x-1"));
        assert_eq!(code(run("GET", q, &[("authorization", V4)], RULES)), "InvalidArgument");
        assert_eq!(code(run("GET", &format!("{q}&X-Amz-Expires=1"), &[], RULES)), "AuthorizationQueryParametersError");
        assert_eq!(
            code(run("GET", "/b/k?Signature=x&Expires=1&AWSAccessKeyId=a", &[("authorization", V4)], RULES)),
            "InvalidArgument"
        );
    }

    #[test]
    fn sigv2_dates_and_switch() {
        let fresh = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64 - 60));
        let old = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64 - 7200));
        assert_eq!(code(run("GET", "/b/k", &[("authorization", "AWS AK:sig"), ("date", &fresh)], RULES)), "ok");
        assert_eq!(
            code(run("GET", "/b/k", &[("authorization", "AWS AK:sig"), ("date", &old)], RULES)),
            "RequestTimeTooSkewed"
        );
        assert_eq!(code(run("GET", "/b/k", &[("authorization", "AWS AK:sig")], RULES)), "AccessDenied");
        // x-amz-date, when present, is the date SigV2 signs.
        assert_eq!(
            code(run("GET", "/b/k", &[("authorization", "AWS AK:sig"), ("date", &fresh), ("x-amz-date", &old)], RULES)),
            "RequestTimeTooSkewed"
        );
        assert_eq!(
            code(run(
                "GET",
                "/b/k",
                &[("authorization", "AWS AK:sig"), ("date", "Fri, 24 Jan 2030 12:00:00 +0000")],
                AuthRules { max_skew_secs: i64::MAX / 2, ..RULES }
            )),
            "ok"
        );
        let off = AuthRules { sigv2: false, ..RULES };
        assert_eq!(
            code(run("GET", "/b/k", &[("authorization", "AWS AK:sig"), ("date", &fresh)], off)),
            "InvalidRequest"
        );
        assert_eq!(code(run("GET", "/b/k?AWSAccessKeyId=a&Expires=1&Signature=x", &[], off)), "InvalidRequest");
    }

    #[test]
    fn signed_header_names_are_taken_as_s3s_reads_them() {
        // A name s3s would not find (capitals, padding) cannot make a header "signed".
        for list in ["host;X-Amz-Copy-Source", "host;x-amz-copy-source ", "host; x-amz-copy-source", "host;;x-amz-date"]
        {
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AK/20300101/us-east-1/s3/aws4_request, SignedHeaders={list}, Signature=00"
            );
            let r = run("PUT", "/b/k", &[("authorization", &auth), ("x-amz-copy-source", "/b/src")], RULES);
            assert_eq!(code(r), "AuthorizationHeaderMalformed", "{list}");
        }
        // Every signed header must be present, and host must be signed.
        let auth = "AWS4-HMAC-SHA256 Credential=AK/20300101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-meta-a, Signature=00";
        assert_eq!(code(run("PUT", "/b/k", &[("authorization", auth)], RULES)), "SignatureDoesNotMatch");
        let auth =
            "AWS4-HMAC-SHA256 Credential=AK/20300101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=00";
        assert_eq!(code(run("GET", "/b/k", &[("authorization", auth), ("x-amz-date", "x")], RULES)), "AccessDenied");
        let q = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20300101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20300101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3BX-Amz-Copy-Source&X-Amz-Signature=00";
        assert_eq!(code(run("GET", q, &[("x-amz-copy-source", "/b/s")], RULES)), "AuthorizationQueryParametersError");
    }

    #[test]
    fn forms_are_found_by_their_bytes_and_sigv2_cannot_gain_a_subresource() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_bytes("multipart/form-data; boundary=B; x=\"é\"".as_bytes()).unwrap(),
        );
        assert!(is_form_upload(&Method::POST, &h));
        assert!(!is_form_upload(&Method::PUT, &h));
        let fresh = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64));
        let v2 = [("authorization", "AWS AK:sig"), ("date", fresh.as_str())];
        assert_eq!(code(run("GET", "/b/k?retention", &v2, RULES)), "InvalidRequest");
        assert_eq!(code(run("GET", "/b/k?legal-hold", &v2, RULES)), "InvalidRequest");
        assert_eq!(code(run("GET", "/b?list-type=2&prefix=a", &v2, RULES)), "ok");
    }

    #[test]
    fn empty_digests_and_other_services() {
        assert_eq!(code(run("PUT", "/b/k", &[("content-md5", "")], RULES)), "InvalidDigest");
        assert_eq!(code(run("PUT", "/b/k", &[("x-amz-checksum-crc32", "")], RULES)), "InvalidDigest");
        let sts = V4.replace("/s3/", "/sts/");
        assert_eq!(code(run("GET", "/b/k", &[("authorization", &sts)], RULES)), "AuthorizationHeaderMalformed");
    }
}
