//! A compact AWS Signature V4 signer for header-signed requests with
//! `x-amz-content-sha256: UNSIGNED-PAYLOAD`, so the client never hashes a body.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// `YYYYMMDDTHHMMSSZ` for now (UTC).
pub fn amz_date() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// S3's URI encoding: unreserved bytes kept, the rest `%XX`; `/` kept when `path`.
pub fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (path && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Credentials and a cached signing key (recomputed when the UTC day changes).
pub struct Signer {
    access: String,
    secret: String,
    region: String,
    cache: std::sync::Mutex<(String, [u8; 32])>,
}

impl Signer {
    pub fn new(access: &str, secret: &str, region: &str) -> Self {
        Self {
            access: access.into(),
            secret: secret.into(),
            region: region.into(),
            cache: std::sync::Mutex::new((String::new(), [0; 32])),
        }
    }

    fn key(&self, day: &str) -> [u8; 32] {
        let mut c = self.cache.lock().unwrap();
        if c.0 != day {
            let k = hmac(format!("AWS4{}", self.secret).as_bytes(), day.as_bytes());
            let k = hmac(&k, self.region.as_bytes());
            let k = hmac(&k, b"s3");
            *c = (day.to_owned(), hmac(&k, b"aws4_request"));
        }
        c.1
    }

    /// Returns `(x-amz-date, Authorization)` for a request. `path` is already URI-encoded;
    /// `query` holds decoded `(name, value)` pairs.
    pub fn sign(&self, method: &str, host: &str, path: &str, query: &[(&str, &str)]) -> (String, String) {
        let date = amz_date();
        let day = &date[..8];
        let mut q: Vec<(String, String)> =
            query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
        q.sort();
        let cq = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let creq = format!(
            "{method}\n{path}\n{cq}\nhost:{host}\nx-amz-content-sha256:{UNSIGNED}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{UNSIGNED}"
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let sts = format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(creq.as_bytes())));
        let sig = hex(&hmac(&self.key(day), sts.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}",
            self.access
        );
        (date, auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case_2() {
        let got = hex(&hmac(b"Jefe", b"what do ya want for nothing?"));
        assert_eq!(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
        assert_eq!(uri_encode("a b/c", true), "a%20b/c");
    }
}
