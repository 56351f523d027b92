//! `decode_token`: the continuation-token parser (see `s3vol::fuzzing::continuation_token`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3vol::fuzzing::continuation_token(data));
