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
}
