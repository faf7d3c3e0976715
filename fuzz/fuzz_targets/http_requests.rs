//! Request heads on the metrics port: the parser never panics, a parsed head
//! lies within the bytes it was given and within `MAX_HEAD`, and only a head
//! shorter than `MAX_HEAD` is left waiting for more.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias_net::metrics::http::{parse, Parsed, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Request(r) => {
            assert!(r.len <= data.len() && r.len <= MAX_HEAD);
            // The same head alone parses the same.
            assert_eq!(parse(&data[..r.len]), Parsed::Request(r));
        }
        Parsed::Incomplete => assert!(data.len() < MAX_HEAD),
        Parsed::Error(_) => {}
    }
});
