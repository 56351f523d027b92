//! Records the resolved aws-sdk-s3 version (from Cargo.lock) for `version`.
fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut lines = lock.lines();
    let mut version = "unknown".to_owned();
    while let Some(l) = lines.next() {
        if l == "name = \"aws-sdk-s3\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                version = v.trim_end_matches('"').to_owned();
            }
            break;
        }
    }
    println!("cargo:rustc-env=AWS_SDK_S3_VERSION={version}");
}
