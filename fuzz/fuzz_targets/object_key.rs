//! `ObjectKey::parse`: the key-to-path boundary (see `s3vol::fuzzing::object_key`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3vol::fuzzing::object_key(data));
