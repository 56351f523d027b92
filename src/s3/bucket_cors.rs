//! PutBucketCors, GetBucketCors and DeleteBucketCors (SPEC.md "Authentication and
//! access"), and [`LiveCors`]: the rules the CORS layer applies to a bucket, the stored
//! ones when the volume has some, else the config's.
//!
//! The configuration lives on the volume ([`crate::store::bucket_cors`]), so that every
//! node serving it answers with the rules the last PutBucketCors stored, at once: each
//! lookup asks the file system whether the file changed (one `fstat` on the volume's
//! bounded blocking path) and re-reads it only when it did. Nothing is cached past that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::S3Vol;
use super::body::{VOLUME, blocking};
use crate::cors::{CORS_METHODS, CorsRule, CorsRules, RawCorsRule};
use crate::store::Volumes;
use crate::store::bucket_cors::{MAX_STORED, Signature, Stored};

/// S3: a CORS configuration holds at most 100 rules.
pub const MAX_RULES: usize = 100;

/// The stored file's shape: `{"rules": [...]}` (version 1).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConfig {
    rules: Vec<RawCorsRule>,
}

/// Checks a PutBucketCors configuration as S3 does and turns it into the rules to store.
///
/// Errors (S3's): no rule, more than [`MAX_RULES`], or a rule without an origin or a
/// method: `MalformedXML`; a method other than GET, PUT, HEAD, POST or DELETE:
/// `InvalidRequest` ("Found unsupported HTTP method in CORS config. ..."); an origin or
/// allowed header with more than one `*`, an ID over 255 characters, a negative max age,
/// or values that cannot be headers: `InvalidRequest`.
fn checked_rules(cfg: CORSConfiguration) -> S3Result<Vec<RawCorsRule>> {
    let malformed = || {
        s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        )
    };
    if cfg.cors_rules.is_empty() || cfg.cors_rules.len() > MAX_RULES {
        return Err(malformed());
    }
    let mut out = Vec::with_capacity(cfg.cors_rules.len());
    for r in cfg.cors_rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(malformed());
        }
        if let Some(m) = r.allowed_methods.iter().find(|m| !CORS_METHODS.contains(&m.as_str())) {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            ));
        }
        for o in &r.allowed_origins {
            if o.matches('*').count() > 1 {
                return Err(s3_error!(InvalidRequest, "AllowedOrigin \"{o}\" can not have more than one wildcard."));
            }
        }
        for h in r.allowed_headers.iter().flatten() {
            if h.matches('*').count() > 1 {
                return Err(s3_error!(InvalidRequest, "AllowedHeader \"{h}\" can not have more than one wildcard."));
            }
        }
        if r.id.as_ref().is_some_and(|id| id.chars().count() > 255) {
            return Err(s3_error!(InvalidRequest, "The ID of a CORS rule must be at most 255 characters long."));
        }
        let max_age = match r.max_age_seconds {
            None => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| malformed())?),
        };
        let raw = RawCorsRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers.unwrap_or_default(),
            expose_headers: r.expose_headers.unwrap_or_default(),
            max_age_seconds: max_age,
        };
        CorsRule::from_raw(&raw).map_err(|e| s3_error!(InvalidRequest, "Invalid CORS rule: {e}"))?;
        out.push(raw);
    }
    Ok(out)
}

/// The stored bytes of `rules`.
fn encode(rules: Vec<RawCorsRule>) -> S3Result<Vec<u8>> {
    let bytes = serde_json::to_vec(&StoredConfig { rules }).map_err(s3s::S3Error::internal_error)?;
    if bytes.len() as u64 > MAX_STORED {
        return Err(s3_error!(EntityTooLarge, "The CORS configuration is larger than the 64 KB S3 allows."));
    }
    Ok(bytes)
}

/// The rules in stored bytes; `None` (and a warning) for a file that does not parse or
/// whose rules do not check (a pod wrote it): then the config's rules apply.
fn decode(bytes: &[u8]) -> Option<Vec<RawCorsRule>> {
    let parsed: StoredConfig = match serde_json::from_slice(bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the stored bucket CORS configuration does not parse: ignored");
            return None;
        }
    };
    (parsed.rules.len() <= MAX_RULES).then_some(parsed.rules)
}

fn to_dto(r: RawCorsRule) -> CORSRule {
    let opt = |v: Vec<String>| (!v.is_empty()).then_some(v);
    CORSRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: opt(r.allowed_headers),
        expose_headers: opt(r.expose_headers),
        max_age_seconds: r.max_age_seconds.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

fn no_configuration() -> s3s::S3Error {
    s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist")
}

impl S3Vol {
    pub(super) async fn do_put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let vol = self.volume(&req.input.bucket)?;
        let bytes = encode(checked_rules(req.input.cors_configuration)?)?;
        blocking(move || vol.write_bucket_cors(&bytes)).await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    /// The stored configuration only: the config's default rules are the operator's, not
    /// the bucket's, so a volume with none stored answers 404 NoSuchCORSConfiguration.
    pub(super) async fn do_get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let vol = self.volume(&req.input.bucket)?;
        let Stored::Bytes(_, bytes) = blocking(move || vol.read_bucket_cors(None)).await? else {
            return Err(no_configuration());
        };
        let rules = decode(&bytes).ok_or_else(no_configuration)?;
        let rules = rules.into_iter().map(to_dto).collect();
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules) }))
    }

    pub(super) async fn do_delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let vol = self.volume(&req.input.bucket)?;
        blocking(move || vol.delete_bucket_cors()).await?;
        Ok(S3Response::with_status(DeleteBucketCorsOutput::default(), http::StatusCode::NO_CONTENT))
    }
}

/// A stored file's signature and its checked rules (`None`: they did not check).
type Seen = (Signature, Option<Arc<[CorsRule]>>);

/// The CORS rules in force for each bucket: the volume's stored configuration, else the
/// config's rules ([`CorsRules`]).
#[derive(Debug)]
pub struct LiveCors {
    config: CorsRules,
    volumes: Arc<Volumes>,
    /// Per volume: the signature of the stored file last read and its checked rules
    /// (`None`: it did not check). Revalidated on every lookup, so never stale.
    seen: Mutex<HashMap<String, Seen>>,
}

impl LiveCors {
    /// The config's rules, and the volumes whose stored configurations override them.
    pub fn new(config: CorsRules, volumes: Arc<Volumes>) -> Self {
        Self { config, volumes, seen: Mutex::default() }
    }

    /// The rules for `bucket` (`None`: the service root, which has none). A volume that
    /// is unknown, unavailable or cannot be read gets the config's rules: a preflight never
    /// fails for it, and the real request then reports the volume's state.
    pub async fn rules(&self, bucket: Option<&str>) -> Arc<[CorsRule]> {
        let Some(bucket) = bucket else { return Arc::from([]) };
        let configured = || Arc::from(self.config.configured(bucket));
        let Ok(vol) = self.volumes.get(bucket) else { return configured() };
        let known = self.seen.lock().unwrap().get(bucket).map(|(sig, _)| *sig);
        let read = VOLUME.scope(vol.clone(), blocking(move || vol.read_bucket_cors(known))).await;
        let mut seen = self.seen.lock().unwrap();
        match read {
            Ok(Stored::Unchanged) => match seen.get(bucket) {
                Some((_, Some(rules))) => rules.clone(),
                _ => configured(),
            },
            Ok(Stored::Bytes(sig, bytes)) => {
                let rules: Option<Arc<[CorsRule]>> = decode(&bytes)
                    .and_then(|raw| raw.iter().map(CorsRule::from_raw).collect::<Result<Vec<_>, _>>().ok())
                    .map(Arc::from);
                seen.insert(bucket.to_owned(), (sig, rules.clone()));
                rules.unwrap_or_else(configured)
            }
            Ok(Stored::Absent) => {
                seen.remove(bucket);
                configured()
            }
            Err(e) => {
                tracing::debug!(volume = bucket, error = %e, "cannot read the stored bucket CORS configuration");
                configured()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], origins: &[&str]) -> CORSRule {
        CORSRule {
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn put_bucket_cors_is_checked_as_s3_checks_it() {
        let ok = checked_rules(CORSConfiguration { cors_rules: vec![rule(&["GET", "PUT"], &["https://a.test"])] });
        assert_eq!(ok.unwrap()[0].allowed_methods, ["GET", "PUT"]);
        let code = |rules: Vec<CORSRule>| checked_rules(CORSConfiguration { cors_rules: rules }).unwrap_err();
        assert_eq!(code(vec![rule(&["PATCH"], &["*"])]).code().as_str(), "InvalidRequest");
        assert!(code(vec![rule(&["PATCH"], &["*"])]).message().unwrap().contains("Unsupported method is PATCH"));
        assert_eq!(code(vec![rule(&["get"], &["*"])]).code().as_str(), "InvalidRequest", "methods are upper case");
        assert_eq!(code(vec![rule(&["GET"], &["https://*.*.test"])]).code().as_str(), "InvalidRequest");
        assert_eq!(code(vec![rule(&[], &["*"])]).code().as_str(), "MalformedXML");
        assert_eq!(code(vec![rule(&["GET"], &[])]).code().as_str(), "MalformedXML");
        assert_eq!(code(vec![]).code().as_str(), "MalformedXML");
        assert_eq!(code(vec![rule(&["GET"], &["*"]); MAX_RULES + 1]).code().as_str(), "MalformedXML");
        assert!(checked_rules(CORSConfiguration { cors_rules: vec![rule(&["GET"], &["*"]); MAX_RULES] }).is_ok());
    }

    #[test]
    fn stored_configuration_round_trips_and_refuses_junk() {
        let rules = checked_rules(CORSConfiguration {
            cors_rules: vec![CORSRule {
                id: Some("r1".into()),
                allowed_headers: Some(vec!["*".into()]),
                expose_headers: Some(vec!["ETag".into()]),
                max_age_seconds: Some(60),
                ..rule(&["GET"], &["https://a.test"])
            }],
        })
        .unwrap();
        let bytes = encode(rules.clone()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), rules);
        assert!(decode(b"{\"rules\": 3}").is_none());
        assert!(decode(b"not json").is_none());
        assert!(decode(b"{\"rules\": [], \"extra\": 1}").is_none());
        let huge = vec![RawCorsRule { allowed_origins: vec!["x".repeat(1000)], ..rules[0].clone() }; 100];
        assert_eq!(encode(huge).unwrap_err().code().as_str(), "EntityTooLarge");
    }
}
