//! s3vol: an S3 API over POSIX network volumes. Each bucket is a mounted volume and each
//! object key a real file path on it, so S3 clients and pods see the same files.
//!
//! Two halves: [`store`] speaks files (volumes, keys as paths, atomic writes, listing,
//! multipart staging) and knows nothing about HTTP; [`s3`] speaks S3 through `s3s` and is
//! the only place its request and response types appear.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod cors;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod ids;
pub mod keywatch;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod presign;
pub mod request;
pub mod s3;
pub mod server;
pub mod store;
pub mod telemetry;
