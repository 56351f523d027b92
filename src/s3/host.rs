//! Virtual-hosted-style addressing: `BUCKET.s3.example.com` names bucket `BUCKET` when
//! `s3.example.com` is one of the configured base domains. Every other `Host` (an IP
//! address, `localhost`, a base domain itself, any unrelated name) is path style, so
//! turning the option on never breaks a path-style client.
//!
//! Unlike `s3s::host::SingleDomain`, an unknown host is never taken as a bucket name
//! (the CNAME convention): behind a load balancer or on a node's own name that would
//! route `http://node7:9000/bucket/key` to a bucket called `node7`.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

/// The one decision of which bucket a request names (path style or virtual-hosted), made
/// as `s3s` routes it: routing (through the [`S3Host`] this hands to `s3s`), the CORS
/// rules and the request's log line all take their bucket from here, so they cannot
/// disagree (issue 15 item 4: a path-only guess sent `vol-a.s3.example.com/dir/x` to the
/// CORS rules of a bucket named `dir`).
#[derive(Debug, Clone, Default)]
pub struct BucketResolver {
    hosts: Option<VirtualHosts>,
}

impl BucketResolver {
    /// `domains`: the configured base domains (empty: path style only), already checked.
    pub fn new(domains: &[String]) -> Self {
        Self { hosts: (!domains.is_empty()).then(|| VirtualHosts::new(domains)) }
    }

    /// The [`S3Host`] for `s3s`'s router, when virtual-hosted style is on.
    pub fn s3_host(&self) -> Option<VirtualHosts> {
        self.hosts.clone()
    }

    /// The bucket the request names, or `None` for the service root or a path that does
    /// not decode. As `s3s`: the `Host` header (or the HTTP/2 authority) names the bucket
    /// when it is `BUCKET.<domain>` (lower-cased); an IP address, a base domain or any
    /// other host is path style, where the bucket is the first segment of the
    /// percent-decoded path.
    pub fn bucket(&self, version: http::Version, uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
        self.target(version, uri, headers).0
    }

    /// The bucket ([`Self::bucket`]) and whether the request names an object key in it
    /// (`/bucket/key` path style, `/key` virtual-hosted): a PUT without one is a bucket
    /// operation whose body `s3s` reads whole.
    pub fn target(&self, version: http::Version, uri: &http::Uri, headers: &http::HeaderMap) -> (Option<String>, bool) {
        if let Some(b) = self.host_bucket(version, uri, headers) {
            return (Some(b), uri.path().len() > 1);
        }
        let Ok(path) = urlencoding::decode(uri.path()) else { return (None, false) };
        let Some(rest) = path.strip_prefix('/') else { return (None, false) };
        let (seg, key) = rest.split_once('/').unwrap_or((rest, ""));
        if seg.is_empty() {
            return (None, false);
        }
        (Some(seg.to_owned()), !key.is_empty())
    }

    /// The bucket and object key the request names, as `s3s` parses them (percent-decoded
    /// path; `/bucket/key` path style, `/key` virtual-hosted; `s3s`'s
    /// `normalize_forward_slash_path` is off), or `None` when it names no object.
    pub fn object(
        &self,
        version: http::Version,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<(String, String)> {
        let path = urlencoding::decode(uri.path()).ok()?;
        let rest = path.strip_prefix('/')?;
        let (bucket, key) = match self.host_bucket(version, uri, headers) {
            Some(bucket) => (bucket, rest),
            // Path style: the first segment is the bucket.
            None => rest.split_once('/').map(|(b, k)| (b.to_owned(), k))?,
        };
        (!bucket.is_empty() && !key.is_empty()).then(|| (bucket, key.to_owned()))
    }

    /// The bucket the request's host names (virtual-hosted style), lower-cased, if it does.
    fn host_bucket(&self, version: http::Version, uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
        let hosts = self.hosts.as_ref()?;
        let host = request_host(version, uri, headers).filter(|h| !is_ip_host(h))?;
        hosts.bucket_of(host).map(|b| b.to_ascii_lowercase())
    }
}

/// The host a request is sent to, as `s3s` reads it: the `Host` header, else (HTTP/2 and
/// 3 only) the `:authority`. An HTTP/1 absolute-form target's authority is not the host
/// `s3s` routes by.
pub fn request_host<'a>(version: http::Version, uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    match headers.get(http::header::HOST) {
        Some(v) => v.to_str().ok(),
        None if matches!(version, http::Version::HTTP_2 | http::Version::HTTP_3) => {
            uri.authority().map(http::uri::Authority::as_str)
        }
        None => None,
    }
}

/// True for `1.2.3.4`, `1.2.3.4:80`, `[::1]:80` or `::1`: `s3s` routes these path style
/// without asking the [`S3Host`].
fn is_ip_host(host: &str) -> bool {
    host.parse::<std::net::SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok()
}

/// The configured base domains, lower case, longest first (so that with both
/// `example.com` and `s3.example.com`, `b.s3.example.com` is bucket `b`).
#[derive(Debug, Clone)]
pub struct VirtualHosts {
    domains: Vec<String>,
}

impl VirtualHosts {
    /// `domains` must already be checked ([`crate::config::valid_domain`]).
    pub fn new(domains: &[String]) -> Self {
        let mut domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        domains.sort_by_key(|d| std::cmp::Reverse(d.len()));
        Self { domains }
    }

    /// The bucket a `Host` header value names, if it is virtual-hosted style.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = strip_port(host);
        if self.domains.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            return None;
        }
        self.domains.iter().find_map(|d| {
            let cut = name.len().checked_sub(d.len() + 1)?;
            let rest = name.get(cut..)?; // None unless `cut` is a character boundary
            let bucket = &name[..cut];
            (rest.starts_with('.') && rest[1..].eq_ignore_ascii_case(d) && !bucket.is_empty()).then_some(bucket)
        })
    }
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            // Host names are case-insensitive; bucket names are lower case.
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket.to_ascii_lowercase()),
            None => VirtualHost::new(host),
        })
    }
}

/// `host:port` -> `host` (s3s routes IP addresses, v4 and `[v6]`, as path style itself).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_the_bucket_and_decoded_key_in_either_style() {
        let r = BucketResolver::new(&["s3.example.com".into()]);
        let at = |host: &str, path: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::HOST, host.parse().unwrap());
            r.object(http::Version::HTTP_11, &path.parse().unwrap(), &h)
        };
        let pair = |b: &str, k: &str| Some((b.to_owned(), k.to_owned()));
        assert_eq!(at("127.0.0.1:9000", "/vol-a/d/%C3%BC%20x?uploadId=1"), pair("vol-a", "d/ü x"));
        assert_eq!(at("vol-a.s3.example.com", "/vol-a/k"), pair("vol-a", "vol-a/k"));
        assert_eq!(at("VOL-A.s3.example.com", "/k/"), pair("vol-a", "k/"));
        assert_eq!(at("127.0.0.1", "/vol-a/"), None);
        assert_eq!(at("127.0.0.1", "/vol-a"), None);
        assert_eq!(at("vol-a.s3.example.com", "/"), None);
    }

    #[test]
    fn virtual_hosted_names_route_to_their_bucket() {
        let v = VirtualHosts::new(&["s3.example.com".into(), "Example.org".into()]);
        for (host, bucket) in [
            ("vol-a.s3.example.com", Some("vol-a")),
            ("vol-a.s3.example.com:9000", Some("vol-a")),
            ("VOL-A.S3.EXAMPLE.COM", Some("VOL-A")),
            ("my.dotted.bucket.s3.example.com", Some("my.dotted.bucket")),
            ("x.example.org", Some("x")),
            ("s3.example.org", Some("s3")),
            ("s3.example.com", None),
            ("s3.example.com:9000", None),
            (".s3.example.com", None),
            ("vol-as3.example.com", None),
            ("127.0.0.1:9000", None),
            ("localhost:9000", None),
            ("node7", None),
            ("[::1]:9000", None),
            ("ü.s3.example.com", Some("ü")),
            ("xs3.exampleü.com", None),
        ] {
            assert_eq!(v.bucket_of(host), bucket, "{host}");
        }
        let nested = VirtualHosts::new(&["example.com".into(), "s3.example.com".into()]);
        assert_eq!(nested.bucket_of("b.s3.example.com"), Some("b"));
        assert_eq!(nested.bucket_of("s3.example.com"), None);
        assert_eq!(nested.bucket_of("s4.example.com"), Some("s4"));
    }

    fn resolve(r: &BucketResolver, host: Option<&str>, target: &str) -> Option<String> {
        let uri: http::Uri = target.parse().unwrap();
        let mut h = http::HeaderMap::new();
        if let Some(host) = host {
            h.insert(http::header::HOST, host.parse().unwrap());
        }
        r.bucket(http::Version::HTTP_11, &uri, &h)
    }

    #[test]
    fn one_bucket_per_request_path_or_virtual_host() {
        let vh = BucketResolver::new(&["s3.example.com".into()]);
        let path_only = BucketResolver::new(&[]);
        for (r, host, target, want) in [
            (&vh, Some("vol-a.s3.example.com"), "/dir/x", Some("vol-a")),
            (&vh, Some("VOL-A.s3.example.com:9000"), "/dir/x", Some("vol-a")),
            (&vh, Some("vol-a.s3.example.com"), "/", Some("vol-a")),
            (&vh, Some("s3.example.com"), "/vol-b/x", Some("vol-b")),
            (&vh, Some("127.0.0.1:9000"), "/vol-b/x", Some("vol-b")),
            (&vh, Some("node7:9000"), "/vol-b/x", Some("vol-b")),
            (&vh, None, "/vol-b/x", Some("vol-b")),
            (&vh, Some("s3.example.com"), "/", None),
            (&path_only, Some("vol-a.s3.example.com"), "/dir/x", Some("dir")),
            (&path_only, None, "/vol%2Da/k", Some("vol-a")),
            // s3s decodes the whole path before it splits it.
            (&path_only, None, "/vol%2Fa/k", Some("vol")),
            (&path_only, None, "/", None),
        ] {
            assert_eq!(resolve(r, host, target).as_deref(), want, "{host:?} {target}");
        }
        let h2: http::Uri = "https://vol-c.s3.example.com/k".parse().unwrap();
        assert_eq!(
            vh.bucket(http::Version::HTTP_2, &h2, &http::HeaderMap::new()).as_deref(),
            Some("vol-c"),
            "HTTP/2 authority"
        );
        let key_of = |r: &BucketResolver, host: &str, target: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::HOST, host.parse().unwrap());
            r.target(http::Version::HTTP_11, &target.parse().unwrap(), &h).1
        };
        assert!(key_of(&vh, "vol-a.s3.example.com", "/k"));
        assert!(!key_of(&vh, "vol-a.s3.example.com", "/"));
        assert!(key_of(&vh, "s3.example.com", "/vol-a/k"));
        assert!(!key_of(&vh, "s3.example.com", "/vol-a"));
        assert!(!key_of(&vh, "s3.example.com", "/vol-a/"));
        // HTTP/1.1 absolute form without Host: s3s routes by path, and so does CORS.
        let abs: http::Uri = "http://vol-b.s3.example.com/vol-p/obj".parse().unwrap();
        assert_eq!(vh.bucket(http::Version::HTTP_11, &abs, &http::HeaderMap::new()).as_deref(), Some("vol-p"));
    }
}
