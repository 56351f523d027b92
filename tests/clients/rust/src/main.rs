//! The aws-sdk-s3 (Rust) driver of the client matrix: one S3 operation per run, so that
//! tests/clients/clients.py drives it exactly as it drives every other client.
//!
//! Environment: S3_ENDPOINT (`http(s)://127.0.0.1:PORT`), S3_CA (PEM file to trust, for
//! HTTPS), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
//!
//! Operations (output on stdout):
//!   version
//!   list-buckets                    one name per line
//!   put BUCKET KEY FILE             PutObject, prints the ETag
//!   get BUCKET KEY FILE             GetObject into FILE
//!   upload BUCKET KEY FILE          multipart upload in 8 MiB parts, prints the ETag
//!   list BUCKET PREFIX [DELIMITER]  ListObjectsV2 (all pages): `key\tK` / `prefix\tP` lines
//!   copy SRC_BUCKET SRC_KEY BUCKET KEY
//!   delete BUCKET KEY
//!   delete-many BUCKET KEY...       one DeleteObjects request
//!   presign BUCKET KEY              a presigned GET URL valid for 10 minutes
use std::error::Error;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use tokio::io::AsyncWriteExt;

type Res<T = ()> = Result<T, Box<dyn Error>>;

const PART: usize = 8 * 1024 * 1024;

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn client() -> Res<Client> {
    let creds = Credentials::new(env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?, None, None, "env");
    let mut b = Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(env("S3_ENDPOINT")?)
        .region(Region::new(env("AWS_REGION")?))
        .credentials_provider(creds)
        .force_path_style(true);
    if let Ok(ca) = std::env::var("S3_CA") {
        let pem = std::fs::read(&ca)?;
        let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(pem);
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(TlsContext::builder().with_trust_store(trust).build()?)
            .build_https();
        b = b.http_client(http);
    }
    Ok(Client::from_conf(b.build()))
}

/// The SDK sends `x-amz-copy-source` as given: the caller must URL-encode the key.
fn encode_copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn run(args: &[String]) -> Res {
    let a = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let op = a(0)?;
    if op == "version" {
        println!("{}", env!("AWS_SDK_S3_VERSION"));
        return Ok(());
    }
    let s3 = client()?;
    match op {
        "list-buckets" => {
            for b in s3.list_buckets().send().await?.buckets() {
                println!("{}", b.name().unwrap_or_default());
            }
        }
        "put" => {
            let r = s3.put_object().bucket(a(1)?).key(a(2)?).body(ByteStream::from_path(a(3)?).await?).send().await?;
            println!("{}", r.e_tag().unwrap_or_default());
        }
        "get" => {
            let r = s3.get_object().bucket(a(1)?).key(a(2)?).send().await?;
            let bytes = r.body.collect().await?.into_bytes();
            let mut f = tokio::fs::File::create(a(3)?).await?;
            f.write_all(&bytes).await?;
            f.flush().await?;
        }
        "upload" => {
            let (bucket, key) = (a(1)?, a(2)?);
            let data = tokio::fs::read(a(3)?).await?;
            let up = s3.create_multipart_upload().bucket(bucket).key(key).send().await?;
            let id = up.upload_id().ok_or("no upload id")?;
            let mut parts = Vec::new();
            for (i, chunk) in data.chunks(PART).enumerate() {
                let n = i32::try_from(i + 1)?;
                let r = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await?;
                parts.push(CompletedPart::builder().part_number(n).set_e_tag(r.e_tag().map(Into::into)).build());
            }
            let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
            let r = s3
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(done)
                .send()
                .await?;
            println!("{}", r.e_tag().unwrap_or_default());
        }
        "list" => {
            let mut req = s3.list_objects_v2().bucket(a(1)?).prefix(a(2)?);
            if let Ok(d) = a(3) {
                req = req.delimiter(d);
            }
            let mut pages = req.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page?;
                for o in page.contents() {
                    println!("key\t{}", o.key().unwrap_or_default());
                }
                for p in page.common_prefixes() {
                    println!("prefix\t{}", p.prefix().unwrap_or_default());
                }
            }
        }
        "copy" => {
            s3.copy_object().copy_source(encode_copy_source(a(1)?, a(2)?)).bucket(a(3)?).key(a(4)?).send().await?;
        }
        "delete" => {
            s3.delete_object().bucket(a(1)?).key(a(2)?).send().await?;
        }
        "delete-many" => {
            let ids =
                args[2..].iter().map(|k| ObjectIdentifier::builder().key(k).build()).collect::<Result<Vec<_>, _>>()?;
            let r = s3
                .delete_objects()
                .bucket(a(1)?)
                .delete(Delete::builder().set_objects(Some(ids)).build()?)
                .send()
                .await?;
            if !r.errors().is_empty() {
                return Err(format!("DeleteObjects errors: {:?}", r.errors()).into());
            }
        }
        "presign" => {
            let cfg = PresigningConfig::expires_in(Duration::from_secs(600))?;
            let r = s3.get_object().bucket(a(1)?).key(a(2)?).presigned(cfg).await?;
            println!("{}", r.uri());
        }
        other => return Err(format!("unknown operation {other:?}").into()),
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args).await {
        // The SDK's Display is terse; Debug carries the service's error code and message.
        eprintln!("error: {e}\n{e:?}");
        std::process::exit(1);
    }
}
