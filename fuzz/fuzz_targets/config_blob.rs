//! Any byte string is a valid config or a `BlobError`; a decoded config always
//! validates and re-encodes to itself. The input is tried both as a whole blob
//! and as a payload behind a correct header, so the fuzzer gets past the CRC.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias::blob::{decode, encode, FORMAT_VERSION, MAGIC, MAX_BLOB};

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fn check(bytes: &[u8]) {
    if let Ok(cfg) = decode(bytes) {
        assert!(cfg.validate().is_ok());
        let mut out = vec![0u8; MAX_BLOB];
        let n = encode(&cfg, &mut out).expect("a decoded config re-encodes");
        assert_eq!(decode(&out[..n]).ok(), Some(cfg));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    sealed.extend_from_slice(&(data.len() as u32).to_le_bytes());
    sealed.extend_from_slice(&CRC32.checksum(data).to_le_bytes());
    sealed.extend_from_slice(data);
    check(&sealed);
});
