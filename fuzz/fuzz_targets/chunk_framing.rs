//! The aws-chunked framing guard in front of s3s (see `s3vol::fuzzing::chunk_framing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3vol::fuzzing::chunk_framing(data));
