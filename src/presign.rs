//! `s3vol presign`: SigV4 query signing (presigned URLs) for operators and scripts.
//!
//! Pure computation over a key from the credentials file; it never logs the secret or the
//! URL it prints (the URL is a bearer credential until it expires).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::{KeySet, MAX_PRESIGNED_EXPIRES_SECS};
use crate::cli::PresignArgs;
use crate::store::key::BucketName;

/// What a presigned URL allows: one method on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// Download (GET; SigV4 signs the method, so the URL is good for nothing else).
    Get,
    /// Upload (PUT, unsigned payload).
    Put,
}

impl PresignMethod {
    /// The HTTP method name.
    pub fn as_str(self) -> &'static str {
        match self {
            PresignMethod::Get => "GET",
            PresignMethod::Put => "PUT",
        }
    }
}

/// Everything a presigned URL is made of.
#[derive(Debug, Clone)]
pub struct Presign<'a> {
    /// GET or PUT.
    pub method: PresignMethod,
    /// `http://host[:port]` or `https://host[:port]` (a trailing `/` is fine; no path).
    pub endpoint: &'a str,
    /// Bucket (volume) name.
    pub bucket: &'a str,
    /// Object key, as the client would send it (UTF-8, `/` separated).
    pub key: &'a str,
    /// Access key id.
    pub access_key: &'a str,
    /// Secret key.
    pub secret_key: &'a str,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Lifetime in seconds, 1..=604800.
    pub expires_secs: u64,
    /// Signing time.
    pub now: OffsetDateTime,
}

/// SigV4 URI encoding: unreserved bytes stay, everything else is `%XX` (upper case);
/// `/` stays unless `encode_slash`.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits an endpoint URL into scheme and authority (default port dropped, so that the
/// signed host is what HTTP clients send). Errors: another scheme, user info, a path, a
/// query or an empty host.
pub fn parse_endpoint(endpoint: &str) -> Result<(&'static str, String), String> {
    let (scheme, rest) = if let Some(r) = endpoint.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = endpoint.strip_prefix("https://") {
        ("https", r)
    } else {
        return Err(format!("--endpoint {endpoint:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return Err(format!("--endpoint {endpoint:?}: expected http://HOST[:PORT] or https://HOST[:PORT], no path"));
    }
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok((scheme, authority.to_ascii_lowercase()))
}

/// The SigV4 query-string signature of `method host path` with `params` (without
/// `X-Amz-Signature`), payload `UNSIGNED-PAYLOAD`, only `host` signed, at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`). Returns the hex signature.
pub fn query_signature(
    method: &str,
    host: &str,
    canonical_path: &str,
    params: &[(&str, String)],
    secret_key: &str,
    amz_date: &str,
    region: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let mut q: Vec<(String, String)> = params.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
    q.sort();
    let canonical_query = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical_request =
        format!("{method}\n{canonical_path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let k = hmac(format!("AWS4{secret_key}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, "s3");
    let k = hmac(&k, "aws4_request");
    hex(&hmac(&k, &string_to_sign))
}

/// Builds a path-style presigned URL: `ENDPOINT/BUCKET/KEY?X-Amz-...&X-Amz-Signature=...`.
///
/// Errors: an expiry outside 1..=604800 seconds, an invalid bucket name, an empty key, or
/// a malformed endpoint.
pub fn presign(p: &Presign<'_>) -> Result<String, String> {
    if p.expires_secs == 0 || p.expires_secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(format!(
            "--expires {}: a presigned URL lives 1 to {MAX_PRESIGNED_EXPIRES_SECS} seconds (7 days)",
            p.expires_secs
        ));
    }
    if !BucketName::is_valid(p.bucket) {
        return Err(format!("bucket {:?} is not a valid bucket name", p.bucket));
    }
    if p.key.is_empty() {
        return Err("the key is empty".into());
    }
    let (scheme, host) = parse_endpoint(p.endpoint)?;
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = p.now.to_offset(time::UtcOffset::UTC).format(&fmt).map_err(|e| e.to_string())?;
    let date = &amz_date[..8];
    let path = format!("/{}/{}", uri_encode(p.bucket, true), uri_encode(p.key, false));
    let params = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("X-Amz-Credential", format!("{}/{date}/{}/s3/aws4_request", p.access_key, p.region)),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", p.expires_secs.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    let sig = query_signature(p.method.as_str(), &host, &path, &params, p.secret_key, &amz_date, p.region);
    let query = params.iter().map(|(k, v)| format!("{k}={}", uri_encode(v, true))).collect::<Vec<_>>().join("&");
    Ok(format!("{scheme}://{host}{path}?{query}&X-Amz-Signature={sig}"))
}

/// `s3vol presign`: loads the credentials file, finds the key by name and signs.
/// Errors (exit 2): unreadable credentials, no key of that name, or [`presign`]'s errors.
pub fn run(args: &PresignArgs) -> Result<String, String> {
    let keys = KeySet::load(&args.credentials)?;
    let key = keys
        .by_name(&args.key_name)
        .ok_or_else(|| format!("no key named {:?} in {}", args.key_name, args.credentials.display()))?;
    let method = match args.method.to_ascii_uppercase().as_str() {
        "GET" => PresignMethod::Get,
        "PUT" => PresignMethod::Put,
        other => return Err(format!("--method {other:?}: GET or PUT")),
    };
    presign(&Presign {
        method,
        endpoint: &args.endpoint,
        bucket: &args.bucket,
        key: &args.key,
        access_key: &key.access_key,
        secret_key: &key.secret_key,
        region: &args.region,
        expires_secs: args.expires,
        now: OffsetDateTime::now_utc(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's "Authenticating Requests: Using Query Parameters" page.
    #[test]
    fn aws_documentation_example() {
        let params = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
            ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request".to_owned()),
            ("X-Amz-Date", "20130524T000000Z".to_owned()),
            ("X-Amz-Expires", "86400".to_owned()),
            ("X-Amz-SignedHeaders", "host".to_owned()),
        ];
        let sig = query_signature(
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            &params,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524T000000Z",
            "us-east-1",
        );
        assert_eq!(sig, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    }

    fn req(expires: u64) -> Presign<'static> {
        Presign {
            method: PresignMethod::Put,
            endpoint: "http://127.0.0.1:9000/",
            bucket: "vol-a",
            key: "dir/a b+é.txt",
            access_key: "AK",
            secret_key: "secret",
            region: "us-east-1",
            expires_secs: expires,
            now: time::macros::datetime!(2024-01-02 03:04:05 UTC),
        }
    }

    #[test]
    fn url_shape() {
        let url = presign(&req(604_800)).unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/vol-a/dir/a%20b%2B%C3%A9.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240102%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240102T030405Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature="),
            "{url}"
        );
    }

    #[test]
    fn refusals() {
        assert!(presign(&req(604_801)).unwrap_err().contains("604800"));
        assert!(presign(&req(0)).is_err());
        let mut r = req(60);
        r.bucket = "Bad_Bucket";
        assert!(presign(&r).is_err());
        for bad in ["ftp://h", "http://", "http://h/path", "http://u@h", "127.0.0.1:9000"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_endpoint("https://Host:443").unwrap(), ("https", "host".to_owned()));
        assert_eq!(parse_endpoint("http://h:8080/").unwrap(), ("http", "h:8080".to_owned()));
    }
}
