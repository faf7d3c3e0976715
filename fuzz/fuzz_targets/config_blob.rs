//! Any byte string is a valid config or a `BlobError`; a decoded config always validates.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = pias::blob::decode(data) {
        assert!(cfg.validate().is_ok());
        let mut out = vec![0u8; pias::blob::MAX_BLOB];
        let n = pias::blob::encode(&cfg, &mut out).expect("a decoded config re-encodes");
        assert_eq!(pias::blob::decode(&out[..n]).ok(), Some(cfg));
    }
});
