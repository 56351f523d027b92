//! Cross-origin resource sharing: each volume's `[[volume.cors]]` rules, the answer to a
//! browser's preflight `OPTIONS`, and the headers added to actual responses (SPEC.md
//! "Authentication and access").
//!
//! The rules follow S3's: the first rule whose origin, method and (for a preflight) every
//! requested header match wins. This module decides and builds headers; it never
//! authenticates anything: a preflight carries no credentials and grants nothing but the
//! browser's permission to send the real, signed request.

use std::collections::HashMap;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

/// Methods a CORS rule may allow (as S3).
pub const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One `[[volume.cors]]` table as written; also one rule of a PutBucketCors
/// configuration as stored on the volume (JSON, [`encode_stored`]).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawCorsRule {
    /// The rule's `ID` (S3 CORSRule ID, up to 255 characters), returned by GetBucketCors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins allowed, e.g. `https://app.example.com`; each may hold one `*` wildcard.
    pub allowed_origins: Vec<String>,
    /// Methods allowed: GET, PUT, POST, DELETE, HEAD.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for; each may hold one `*` wildcard (default none).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser lets the page read, e.g. `ETag` (default none).
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds (default: not sent).
    pub max_age_seconds: Option<u32>,
}

/// A checked CORS rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRule {
    origins: Vec<String>,
    methods: Vec<Method>,
    /// Lower-case header patterns.
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: Option<u32>,
}

impl CorsRule {
    /// Checks a raw rule. Errors: no origin, no method, a method S3 does not allow in CORS,
    /// a pattern with more than one `*`, or a value that cannot be a header.
    pub fn from_raw(raw: &RawCorsRule) -> Result<Self, String> {
        if raw.allowed_origins.is_empty() {
            return Err("allowed_origins is empty".into());
        }
        if raw.allowed_methods.is_empty() {
            return Err("allowed_methods is empty".into());
        }
        for p in raw.allowed_origins.iter().chain(&raw.allowed_headers) {
            if p.matches('*').count() > 1 {
                return Err(format!("{p:?} has more than one '*' wildcard"));
            }
            if p.is_empty() || HeaderValue::from_str(p).is_err() {
                return Err(format!("{p:?} is not a valid origin or header pattern"));
            }
        }
        let mut methods = Vec::new();
        for m in &raw.allowed_methods {
            if !CORS_METHODS.contains(&m.as_str()) {
                return Err(format!("allowed_methods: {m:?} is not one of {}", CORS_METHODS.join(", ")));
            }
            methods.push(Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?);
        }
        for h in &raw.expose_headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!("expose_headers: {h:?} is not a header name"));
            }
        }
        Ok(Self {
            origins: raw.allowed_origins.clone(),
            methods,
            headers: raw.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            expose: raw.expose_headers.clone(),
            max_age: raw.max_age_seconds,
        })
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| wildcard_match(p, origin))
    }

    fn allows_method(&self, m: &Method) -> bool {
        self.methods.contains(m)
    }

    fn allows_header(&self, h: &str) -> bool {
        let h = h.to_ascii_lowercase();
        self.headers.iter().any(|p| wildcard_match(p, &h))
    }

    fn methods_value(&self) -> String {
        self.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// True when `s` matches `pattern`, which may hold one `*` standing for any run of bytes
/// other than `/ @ ? #`: a wildcard origin like `https://*.example.com` must not match
/// `https://evil.test/.example.com` (no browser sends that, but other clients may).
///
/// A bare `*` matches everything (S3's "any origin"; an origin always holds a `/`).
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len()
                && s.starts_with(pre)
                && s.ends_with(post)
                && !s[pre.len()..s.len() - post.len()].contains(['/', '@', '?', '#'])
        }
    }
}

/// Every volume's CORS rules; volumes under `volumes_root` share the default rules.
#[derive(Debug, Clone, Default)]
pub struct CorsRules {
    volumes: HashMap<String, Vec<CorsRule>>,
    defaults: Vec<CorsRule>,
}

/// The outcome of a preflight `OPTIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Allowed: 200 with these headers.
    Allowed(HeaderMap),
    /// Refused: the status, S3 error code and message.
    Refused(StatusCode, &'static str, &'static str),
}

impl CorsRules {
    /// Rules for explicit volumes by name, and `defaults` for any other volume.
    pub fn new(volumes: HashMap<String, Vec<CorsRule>>, defaults: Vec<CorsRule>) -> Self {
        Self { volumes, defaults }
    }

    /// True when no volume has a rule (then nothing here runs per request).
    pub fn is_empty(&self) -> bool {
        self.defaults.is_empty() && self.volumes.values().all(Vec::is_empty)
    }

    /// The config's rules for `bucket`: its own, or the defaults.
    pub fn configured(&self, bucket: &str) -> &[CorsRule] {
        self.volumes.get(bucket).map_or(&self.defaults, Vec::as_slice)
    }

    /// Answers a preflight for `bucket` (`None`: the service root, which has no rules)
    /// under the config's rules.
    pub fn preflight(&self, bucket: Option<&str>, h: &HeaderMap) -> Preflight {
        preflight(bucket.map(|b| self.configured(b)).unwrap_or_default(), h)
    }

    /// The CORS headers for an actual request to `bucket` under the config's rules
    /// ([`actual`]).
    pub fn actual(&self, bucket: Option<&str>, method: &Method, h: &HeaderMap) -> HeaderMap {
        actual(bucket.map(|b| self.configured(b)).unwrap_or_default(), method, h)
    }
}

/// Answers a preflight under `rules` (empty: CORS is not enabled for the bucket).
pub fn preflight(rules: &[CorsRule], h: &HeaderMap) -> Preflight {
    let origin = h.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
    let method = h.get(http::header::ACCESS_CONTROL_REQUEST_METHOD).and_then(|v| Method::from_bytes(v.as_bytes()).ok());
    let (Some(origin), Some(method)) = (origin, method) else {
        return Preflight::Refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        );
    };
    if rules.is_empty() {
        return Preflight::Refused(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: CORS is not enabled for this bucket.",
        );
    }
    let requested: Vec<&str> = h
        .get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(rule) = rules
        .iter()
        .find(|r| r.allows_origin(origin) && r.allows_method(&method) && requested.iter().all(|h| r.allows_header(h)))
    else {
        return Preflight::Refused(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        );
    };
    let mut out = base_headers(rule, origin);
    if !requested.is_empty()
        && let Ok(v) = HeaderValue::from_str(&requested.join(", ").to_ascii_lowercase())
    {
        out.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = rule.max_age {
        out.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    out.insert(
        http::header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
    );
    Preflight::Allowed(out)
}

/// The CORS headers for an actual (non-preflight) request with `method` under `rules`:
/// empty unless it carries an `Origin` some rule allows with that method.
pub fn actual(rules: &[CorsRule], method: &Method, h: &HeaderMap) -> HeaderMap {
    let Some(origin) = h.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return HeaderMap::new();
    };
    let Some(rule) = rules.iter().find(|r| r.allows_origin(origin) && r.allows_method(method)) else {
        return HeaderMap::new();
    };
    let mut out = base_headers(rule, origin);
    if !rule.expose.is_empty()
        && let Ok(v) = HeaderValue::from_str(&rule.expose.join(", "))
    {
        out.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if let Some(age) = rule.max_age {
        out.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    out.insert(http::header::VARY, HeaderValue::from_static("Origin"));
    out
}

/// The requesting origin is echoed (never `*`), so caches must vary on it.
fn base_headers(rule: &CorsRule, origin: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(origin) {
        out.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rule.methods_value()) {
        out.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule::from_raw(&RawCorsRule {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: headers.iter().map(|s| (*s).to_owned()).collect(),
            expose_headers: vec!["ETag".into()],
            max_age_seconds: Some(600),
            id: None,
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*", "https://any.test"), "a bare * allows every origin");
        assert!(wildcard_match("https://*.example.com", "https://app.example.com"));
        assert!(!wildcard_match("https://*.example.com", "https://example.com.evil.net"));
        assert!(!wildcard_match("https://*.example.com", "https://evil.test/.example.com"));
        assert!(!wildcard_match("https://*.example.com", "https://u@evil.test#.example.com"));
        assert!(wildcard_match("http://localhost:*", "http://localhost:8080"));
        assert!(!wildcard_match("https://*.example.com", "http://app.example.com"));
        assert!(wildcard_match("x-amz-*", "x-amz-date"));
        assert!(!wildcard_match("ab*ba", "aba"), "prefix and suffix must not overlap");
        assert!(wildcard_match("exact", "exact") && !wildcard_match("exact", "exact2"));
    }

    #[test]
    fn bad_rules_refused() {
        let mut r = RawCorsRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["PATCH".into()],
            ..Default::default()
        };
        assert!(CorsRule::from_raw(&r).unwrap_err().contains("PATCH"));
        r.allowed_methods = vec!["GET".into()];
        r.allowed_origins = vec!["https://*.*.com".into()];
        assert!(CorsRule::from_raw(&r).is_err());
        r.allowed_origins = vec![];
        assert!(CorsRule::from_raw(&r).is_err());
    }

    #[test]
    fn preflight_rules() {
        let rules = CorsRules::new(
            HashMap::from([
                ("vol-a".to_owned(), vec![rule(&["http://good.test"], &["GET", "PUT"], &["content-type", "x-amz-*"])]),
                ("vol-b".to_owned(), vec![]),
            ]),
            vec![],
        );
        let ok = headers(&[
            ("origin", "http://good.test"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "Content-Type, x-amz-meta-a"),
        ]);
        let Preflight::Allowed(h) = rules.preflight(Some("vol-a"), &ok) else { panic!("refused") };
        assert_eq!(h["access-control-allow-origin"], "http://good.test");
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        assert_eq!(h["access-control-allow-headers"], "content-type, x-amz-meta-a");
        assert_eq!(h["access-control-max-age"], "600");
        let refused = |pairs: &[(&'static str, &str)], bucket| match rules.preflight(bucket, &headers(pairs)) {
            Preflight::Refused(s, _, _) => s,
            Preflight::Allowed(_) => StatusCode::OK,
        };
        let evil = [("origin", "http://evil.test"), ("access-control-request-method", "PUT")];
        assert_eq!(refused(&evil, Some("vol-a")), StatusCode::FORBIDDEN);
        let delete = [("origin", "http://good.test"), ("access-control-request-method", "DELETE")];
        assert_eq!(refused(&delete, Some("vol-a")), StatusCode::FORBIDDEN);
        let hdr = [
            ("origin", "http://good.test"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "authorization"),
        ];
        assert_eq!(refused(&hdr, Some("vol-a")), StatusCode::FORBIDDEN);
        let good = [("origin", "http://good.test"), ("access-control-request-method", "GET")];
        assert_eq!(refused(&good, Some("vol-b")), StatusCode::FORBIDDEN, "no rules");
        assert_eq!(refused(&good, Some("other")), StatusCode::FORBIDDEN, "no rules");
        assert_eq!(refused(&good, None), StatusCode::FORBIDDEN, "the service root");
        assert_eq!(refused(&[("origin", "http://good.test")], Some("vol-a")), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn actual_response_headers() {
        let rules = CorsRules::new(HashMap::new(), vec![rule(&["http://*.good.test"], &["PUT"], &[])]);
        let h = rules.actual(Some("any"), &Method::PUT, &headers(&[("origin", "http://app.good.test")]));
        assert_eq!(h["access-control-allow-origin"], "http://app.good.test");
        assert_eq!(h["access-control-expose-headers"], "ETag");
        assert_eq!(h["vary"], "Origin");
        assert!(rules.actual(Some("any"), &Method::GET, &headers(&[("origin", "http://app.good.test")])).is_empty());
        assert!(rules.actual(Some("any"), &Method::PUT, &headers(&[("origin", "http://evil.test")])).is_empty());
        assert!(rules.actual(Some("any"), &Method::PUT, &HeaderMap::new()).is_empty());
        assert!(rules.actual(None, &Method::PUT, &headers(&[("origin", "http://app.good.test")])).is_empty());
    }
}
