//! S3's answer to a browser form upload (PostObject) whose POST policy does not hold.
//!
//! `s3s` checks the policy's conditions itself and answers 400 `InvalidPolicyDocument`
//! ("Policy condition 'eq' for field 'bucket' failed: ..."), also for a form whose
//! `bucket` field names another bucket than the URL. S3 answers a well-formed policy whose
//! conditions fail with 403 `AccessDenied`, "Invalid according to Policy: Policy Condition
//! failed: [...]", and an expired one with "Invalid according to Policy: Policy expired.":
//! browsers' upload widgets and SDK tests branch on that. This turns `s3s`'s error body into
//! S3's; a policy that does not parse stays 400 `InvalidPolicyDocument`, as in S3.

use http::StatusCode;

use super::Refusal;

/// S3's refusal for `s3s`'s error answer to a form upload (`status`, XML `body`), or
/// `None` when the answer is not a failed or expired policy.
pub fn refusal(status: StatusCode, body: &[u8]) -> Option<Refusal> {
    let text = std::str::from_utf8(body).ok()?;
    let code = between(text, "<Code>", "</Code>")?;
    let message = unescape(between(text, "<Message>", "</Message>").unwrap_or_default());
    let message = message.as_str();
    let denied = |why: String| {
        Some(Refusal::new(StatusCode::FORBIDDEN, "AccessDenied", &format!("Invalid according to Policy: {why}")))
    };
    match (status, code) {
        (StatusCode::FORBIDDEN, "AccessDenied") if message == "Request has expired" => denied("Policy expired.".into()),
        (StatusCode::BAD_REQUEST, "InvalidPolicyDocument") => {
            let failed = |cond: &str, field: &str, value: &str| {
                denied(format!("Policy Condition failed: [\"{cond}\", \"${field}\", \"{value}\"]"))
            };
            // "Policy condition 'eq' for field 'F' failed: expected 'V', got 'X'"
            if let Some(rest) = message.strip_prefix("Policy condition '") {
                let (cond, rest) = rest.split_once("' for field '")?;
                let (field, rest) = rest.split_once("' failed: expected ")?;
                let value = rest.strip_prefix("prefix ").unwrap_or(rest).strip_prefix('\'')?;
                let (value, _) = value.split_once("', got ")?;
                return failed(cond, field, value);
            }
            // "Bucket in form field 'F' does not match bucket in URL 'U'"
            let rest = message.strip_prefix("Bucket in form field '")?;
            let (form_bucket, _) = rest.split_once("' does not match bucket in URL")?;
            failed("eq", "bucket", form_bucket)
        }
        _ => None,
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// Undoes the XML escaping of `s3s`'s error body (the message is escaped again on output).
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, message: &str) -> Vec<u8> {
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>").into_bytes()
    }

    #[test]
    fn failed_conditions_become_access_denied_as_s3() {
        let r = refusal(
            StatusCode::BAD_REQUEST,
            &body(
                "InvalidPolicyDocument",
                "Policy condition 'eq' for field 'bucket' failed: expected 'vol-b', got 'vol-a'",
            ),
        )
        .unwrap();
        assert_eq!((r.status, r.code), (StatusCode::FORBIDDEN, "AccessDenied"));
        assert_eq!(r.message, "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$bucket\", \"vol-b\"]");
        let r = refusal(
            StatusCode::BAD_REQUEST,
            &body(
                "InvalidPolicyDocument",
                "Policy condition 'starts-with' for field 'key' failed: expected prefix 'up/', got 'x'",
            ),
        )
        .unwrap();
        assert_eq!(
            r.message,
            "Invalid according to Policy: Policy Condition failed: [\"starts-with\", \"$key\", \"up/\"]"
        );
        let r = refusal(
            StatusCode::BAD_REQUEST,
            &body("InvalidPolicyDocument", "Bucket in form field 'vol-b' does not match bucket in URL 'vol-a'"),
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = refusal(StatusCode::FORBIDDEN, &body("AccessDenied", "Request has expired")).unwrap();
        assert_eq!(r.message, "Invalid according to Policy: Policy expired.");
        // A policy that does not parse, and every other error, stay as they are.
        assert!(
            refusal(StatusCode::BAD_REQUEST, &body("InvalidPolicyDocument", "failed to parse POST policy")).is_none()
        );
        assert!(refusal(StatusCode::FORBIDDEN, &body("AccessDenied", "Access Denied")).is_none());
        assert!(refusal(StatusCode::BAD_REQUEST, b"junk").is_none());
    }
}
