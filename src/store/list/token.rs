//! The continuation token of ListObjectsV2.

use crate::store::key::MAX_KEY_LEN;

/// Encodes a continuation token: the last key or CommonPrefix of the page, nothing else, so
/// any daemon on any node can serve the next page (SPEC.md: stateless, no secret).
pub fn encode_token(last: &str) -> String {
    let mut raw = String::with_capacity(last.len() + 1);
    raw.push('1');
    raw.push_str(last);
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(raw.as_bytes())
}

/// Decodes a continuation token; `None` when it is not one of ours.
pub fn decode_token(token: &str) -> Option<String> {
    let raw = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(token.as_bytes()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let last = s.strip_prefix('1')?;
    (!last.is_empty() && last.len() <= MAX_KEY_LEN).then(|| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_token_round_trip() {
        for k in ["a", "dir/", "données/é ü.txt", "a+b#c%d?e"] {
            assert_eq!(decode_token(&encode_token(k)).as_deref(), Some(k));
        }
        assert_eq!(decode_token("not base64!"), None);
        assert_eq!(decode_token(&base64_simd::URL_SAFE_NO_PAD.encode_to_string(b"2abc")), None);
        assert_eq!(decode_token(&base64_simd::URL_SAFE_NO_PAD.encode_to_string(b"1")), None);
        assert_eq!(decode_token(""), None);
    }
}
