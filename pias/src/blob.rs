//! The boot-time config blob: a 16-byte header (magic, format version,
//! payload length, CRC-32 of the payload) followed by the postcard payload.
//!
//! `decode` is total: any byte string gives a valid `Config` or a `BlobError`
//! whose `exit_code` the kernel reports through QEMU's debug-exit device.

use crate::config::{Config, ConfigError};
use core::fmt;

/// "PIAS" followed by "CF": the first six bytes of every blob.
pub const MAGIC: [u8; 6] = *b"PIASCF";
/// The payload format this build reads and writes (2: the deployment section
/// and the NAT idle times; 3: the management key; 4: the BGP section).
pub const FORMAT_VERSION: u16 = 5;
/// Header size in bytes: magic (6), version (2), payload length (4), CRC-32 (4).
pub const HEADER_LEN: usize = 16;
/// The largest payload accepted: 512 KiB. A deployment of 20,000 proxies
/// (`config::MAX_PEERS`) encodes to about 200 KiB (docs/config.md), so this
/// leaves more than twice that as headroom.
pub const MAX_PAYLOAD: usize = 512 * 1024;
/// The largest whole blob.
pub const MAX_BLOB: usize = HEADER_LEN + MAX_PAYLOAD;

const OFF_VERSION: usize = 6;
const OFF_LEN: usize = 8;
const OFF_CRC: usize = 12;

/// CRC-32/ISO-HDLC (the zlib/Ethernet CRC), so `crc32` tools can check a blob.
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why a blob was refused. Each kind has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// No config was supplied at all (reported by the loader, not by `decode`).
    Missing,
    /// Shorter than the header.
    TooShort {
        /// The blob's whole length in bytes (less than `HEADER_LEN`).
        len: usize,
    },
    /// The first six bytes are not "PIASCF".
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion {
        /// The version in the header (this build reads `FORMAT_VERSION`).
        found: u16,
    },
    /// The header declares more payload than is present.
    Truncated {
        /// Payload bytes the header's length field announces.
        declared: usize,
        /// Payload bytes after the header (fewer than `declared`).
        present: usize,
    },
    /// Bytes follow the declared payload, or the declared payload is too large.
    BadLength {
        /// Payload bytes the header's length field announces.
        declared: usize,
        /// Payload bytes after the header (more than `declared`, or any number
        /// when `declared` exceeds `MAX_PAYLOAD`).
        present: usize,
    },
    /// The payload does not match its CRC.
    BadCrc {
        /// The CRC-32 in the header.
        expected: u32,
        /// The CRC-32 of the payload as received.
        computed: u32,
    },
    /// The payload is not a postcard `Config` (or has bytes left over).
    Decode,
    /// The payload decoded but broke a rule of docs/config.md.
    Invalid(ConfigError),
}

impl BlobError {
    /// The value the kernel writes to the debug-exit port; QEMU then exits
    /// with status `(code << 1) | 1`.
    pub fn exit_code(&self) -> u8 {
        match self {
            BlobError::Missing => 0x20,
            BlobError::TooShort { .. } => 0x21,
            BlobError::BadMagic => 0x22,
            BlobError::UnsupportedVersion { .. } => 0x23,
            BlobError::Truncated { .. } => 0x24,
            BlobError::BadLength { .. } => 0x25,
            BlobError::BadCrc { .. } => 0x26,
            BlobError::Decode => 0x27,
            BlobError::Invalid(_) => 0x28,
        }
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::Missing => f.write_str(
                "no config blob: pass one with -fw_cfg name=opt/pias/config,file=F, -initrd F, or a multiboot2 module",
            ),
            BlobError::TooShort { len } => {
                write!(f, "config blob is {len} bytes, shorter than its {HEADER_LEN}-byte header")
            }
            BlobError::BadMagic => f.write_str("config blob has a bad magic (not a PIAS config)"),
            BlobError::UnsupportedVersion { found } => write!(
                f,
                "config blob format version {found} is not supported (this build reads {FORMAT_VERSION})"
            ),
            BlobError::Truncated { declared, present } => write!(
                f,
                "config blob truncated: header declares {declared} payload bytes, {present} present"
            ),
            BlobError::BadLength { declared, present } => write!(
                f,
                "config blob length mismatch: header declares {declared} payload bytes, {present} present (limit {MAX_PAYLOAD})"
            ),
            BlobError::BadCrc { expected, computed } => write!(
                f,
                "config blob CRC mismatch: header {expected:#010x}, payload {computed:#010x}"
            ),
            BlobError::Decode => f.write_str("config payload does not decode as this version's schema"),
            BlobError::Invalid(e) => write!(f, "config field {e}"),
        }
    }
}

/// Parses and validates a blob.
pub fn decode(bytes: &[u8]) -> Result<Config, BlobError> {
    let payload = payload(bytes)?;
    let (config, rest) =
        postcard::take_from_bytes::<Config>(payload).map_err(|_| BlobError::Decode)?;
    if !rest.is_empty() {
        return Err(BlobError::Decode);
    }
    config.validate().map_err(BlobError::Invalid)?;
    Ok(config)
}

/// A blob stored in a fixed-size slot (a disk image's config file, which
/// `pias-image set-config` rewrites in place) is followed by zeros up to the
/// slot's end: returns it without them. Anything else (no header, a declared
/// length beyond the bytes, a non-zero byte after the payload) comes back
/// whole, for `decode` to refuse with its own reason.
pub fn unpad(bytes: &[u8]) -> &[u8] {
    if bytes.len() < HEADER_LEN || bytes[..OFF_VERSION] != MAGIC {
        return bytes;
    }
    let end = HEADER_LEN.saturating_add(read_u32(bytes, OFF_LEN) as usize);
    match bytes.get(end..) {
        Some(rest) if rest.iter().all(|&b| b == 0) => &bytes[..end],
        _ => bytes,
    }
}

/// Checks the header and CRC and returns the payload.
pub fn payload(bytes: &[u8]) -> Result<&[u8], BlobError> {
    if bytes.len() < HEADER_LEN {
        return Err(BlobError::TooShort { len: bytes.len() });
    }
    if bytes[..OFF_VERSION] != MAGIC {
        return Err(BlobError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[OFF_VERSION], bytes[OFF_VERSION + 1]]);
    if version != FORMAT_VERSION {
        return Err(BlobError::UnsupportedVersion { found: version });
    }
    let declared = read_u32(bytes, OFF_LEN) as usize;
    let expected = read_u32(bytes, OFF_CRC);
    let present = bytes.len() - HEADER_LEN;
    if declared > MAX_PAYLOAD {
        return Err(BlobError::BadLength { declared, present });
    }
    if present < declared {
        return Err(BlobError::Truncated { declared, present });
    }
    if present > declared {
        return Err(BlobError::BadLength { declared, present });
    }
    let payload = &bytes[HEADER_LEN..];
    let computed = CRC32.checksum(payload);
    if computed != expected {
        return Err(BlobError::BadCrc { expected, computed });
    }
    Ok(payload)
}

fn read_u32(bytes: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(b)
}

/// Why a config could not be written as a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The config breaks a rule; nothing is written.
    Invalid(ConfigError),
    /// The output buffer is too small (or the payload exceeds `MAX_PAYLOAD`).
    NoSpace,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Invalid(e) => write!(f, "config field {e}"),
            EncodeError::NoSpace => write!(f, "config does not fit in a {MAX_BLOB}-byte blob"),
        }
    }
}

/// Validates `config` and writes its blob into `out`, returning the blob's length.
/// An invalid config is never written.
pub fn encode(config: &Config, out: &mut [u8]) -> Result<usize, EncodeError> {
    config.validate().map_err(EncodeError::Invalid)?;
    if out.len() < HEADER_LEN {
        return Err(EncodeError::NoSpace);
    }
    let (head, body) = out.split_at_mut(HEADER_LEN);
    let body_len = body.len().min(MAX_PAYLOAD);
    let used = postcard::to_slice(config, &mut body[..body_len])
        .map_err(|_| EncodeError::NoSpace)?
        .len();
    let crc = CRC32.checksum(&body[..used]);
    head[..OFF_VERSION].copy_from_slice(&MAGIC);
    head[OFF_VERSION..OFF_LEN].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[OFF_LEN..OFF_CRC].copy_from_slice(&(used as u32).to_le_bytes());
    head[OFF_CRC..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER_LEN + used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example_blob() -> Vec<u8> {
        let mut buf = vec![0u8; MAX_BLOB];
        let n = encode(&Config::example(), &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn reseal(blob: &mut [u8]) {
        let crc = CRC32.checksum(&blob[HEADER_LEN..]);
        blob[OFF_CRC..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_blob_padded_with_zeros_to_its_slot_decodes_after_unpad() {
        let blob = example_blob();
        let mut slot = blob.clone();
        slot.resize(MAX_BLOB, 0);
        // Strict decoding refuses the padding; unpad gives back the blob.
        assert!(matches!(decode(&slot), Err(BlobError::BadLength { .. })));
        assert_eq!(unpad(&slot), &blob[..]);
        assert_eq!(decode(unpad(&slot)), decode(&blob));
        assert_eq!(unpad(&blob), &blob[..], "nothing to trim");
        // A non-zero byte after the payload is not padding.
        slot[blob.len() + 100] = 1;
        assert_eq!(unpad(&slot).len(), MAX_BLOB);
        // Too short, wrong magic, or a length beyond the bytes: untouched.
        assert_eq!(unpad(&blob[..HEADER_LEN - 1]).len(), HEADER_LEN - 1);
        let mut other = blob.clone();
        other[0] ^= 1;
        other.extend_from_slice(&[0; 8]);
        assert_eq!(unpad(&other).len(), blob.len() + 8);
        let cut = &blob[..blob.len() - 1];
        assert_eq!(unpad(cut), cut);
        assert!(matches!(
            decode(unpad(cut)),
            Err(BlobError::Truncated { .. })
        ));
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&example_blob()).unwrap(), Config::example());
    }

    /// The blob's CRC is CRC-32/ISO-HDLC (what `crc32` and zlib compute), pinned
    /// by its standard check value rather than by the constant the code uses.
    #[test]
    fn the_blob_crc_is_the_standard_crc32() {
        assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
        let blob = example_blob();
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&blob[OFF_CRC..HEADER_LEN]);
        assert_eq!(
            u32::from_le_bytes(crc),
            CRC32.checksum(&blob[HEADER_LEN..]),
            "the header holds the payload's CRC-32"
        );
    }

    /// The example config's blob, byte for byte, as `pias-image encode
    /// docs/example.toml` wrote it: pins the header, the CRC variant and the
    /// payload encoding that appliances and tools of different builds must
    /// agree on. A deliberate format change regenerates it with that command
    /// (to pias/testdata/example.blob) and bumps the blob version.
    #[test]
    fn the_example_blob_is_golden() {
        let golden: &[u8] = include_bytes!("../testdata/example.blob");
        assert_eq!(example_blob().as_slice(), golden);
        assert_eq!(decode(golden).unwrap(), Config::example());
    }

    #[test]
    fn each_defect_has_its_own_error_and_code() {
        let good = example_blob();
        let mut cases: Vec<(Vec<u8>, BlobError)> = Vec::new();
        cases.push((good[..10].to_vec(), BlobError::TooShort { len: 10 }));
        let mut m = good.clone();
        m[0] = b'X';
        cases.push((m, BlobError::BadMagic));
        let mut v = good.clone();
        v[OFF_VERSION] = 9;
        cases.push((v, BlobError::UnsupportedVersion { found: 9 }));
        let t = good[..good.len() - 3].to_vec();
        let present = t.len() - HEADER_LEN;
        cases.push((
            t,
            BlobError::Truncated {
                declared: present + 3,
                present,
            },
        ));
        let mut long = good.clone();
        long.push(0);
        cases.push((
            long,
            BlobError::BadLength {
                declared: good.len() - HEADER_LEN,
                present: good.len() - HEADER_LEN + 1,
            },
        ));
        let mut c = good.clone();
        let last = c.len() - 1;
        c[last] ^= 0xff;
        let computed = CRC32.checksum(&c[HEADER_LEN..]);
        let expected = CRC32.checksum(&good[HEADER_LEN..]);
        cases.push((c, BlobError::BadCrc { expected, computed }));
        let mut codes = std::collections::HashSet::new();
        for (bytes, want) in cases {
            assert_eq!(decode(&bytes).unwrap_err(), want);
            assert!(codes.insert(want.exit_code()));
        }
    }

    #[test]
    fn invalid_field_is_refused_after_decoding() {
        let mut bad = Config::example();
        bad.timers.target_rise = 0;
        // encode refuses it outright...
        let mut out = vec![0u8; MAX_BLOB];
        assert!(matches!(
            encode(&bad, &mut out),
            Err(EncodeError::Invalid(_))
        ));
        // ...and a hand-made blob carrying it is refused by decode.
        let payload = postcard::to_allocvec(&bad).unwrap();
        let mut blob = good_header(payload.len());
        blob.extend_from_slice(&payload);
        reseal(&mut blob);
        match decode(&blob) {
            Err(BlobError::Invalid(e)) => assert_eq!(e.field.as_str(), "timers.target_rise"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The largest deployment fits, with room to spare, and round-trips.
    #[test]
    fn twenty_thousand_proxies_fit() {
        let c = crate::config::tests::big(crate::config::MAX_PEERS);
        let mut buf = vec![0u8; MAX_BLOB];
        let n = encode(&c, &mut buf).unwrap();
        std::println!("20000-proxy blob: {n} bytes");
        assert!(n < MAX_BLOB / 2, "{n} bytes leaves too little headroom");
        assert_eq!(decode(&buf[..n]).unwrap(), c);
    }

    #[test]
    fn trailing_payload_bytes_are_refused() {
        let mut payload = postcard::to_allocvec(&Config::example()).unwrap();
        payload.push(0);
        let mut blob = good_header(payload.len());
        blob.extend_from_slice(&payload);
        reseal(&mut blob);
        assert_eq!(decode(&blob), Err(BlobError::Decode));
    }

    /// A header for `payload` with its true length and CRC.
    fn sealed(payload: &[u8]) -> Vec<u8> {
        let mut b = good_header(payload.len());
        b[OFF_CRC..HEADER_LEN].copy_from_slice(&CRC32.checksum(payload).to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn payload_lengths_at_their_bounds() {
        // The largest whole blob is the header and the largest payload.
        let largest = sealed(&vec![7u8; MAX_PAYLOAD]);
        assert_eq!(largest.len(), MAX_BLOB);
        assert_eq!(payload(&largest).map(<[u8]>::len), Ok(MAX_PAYLOAD));
        let over = sealed(&vec![7u8; MAX_PAYLOAD + 1]);
        assert_eq!(
            payload(&over),
            Err(BlobError::BadLength {
                declared: MAX_PAYLOAD + 1,
                present: MAX_PAYLOAD + 1
            })
        );
        // A header alone, declaring nothing: a valid (empty) payload that
        // does not decode, not a short blob.
        let empty = sealed(&[]);
        assert_eq!(empty.len(), HEADER_LEN);
        assert_eq!(payload(&empty), Ok(&[][..]));
        assert_eq!(decode(&empty), Err(BlobError::Decode));
        assert_eq!(
            payload(&empty[..HEADER_LEN - 1]),
            Err(BlobError::TooShort {
                len: HEADER_LEN - 1
            })
        );
        // Encoding into less than a header is refused, not a panic.
        let mut tiny = [0u8; HEADER_LEN - 1];
        assert_eq!(
            encode(&Config::example(), &mut tiny),
            Err(EncodeError::NoSpace)
        );
        let mut header_only = [0u8; HEADER_LEN];
        assert_eq!(
            encode(&Config::example(), &mut header_only),
            Err(EncodeError::NoSpace)
        );
    }

    /// A real validation error: node id 0.
    fn invalid() -> ConfigError {
        let mut c = Config::example();
        c.node.id = 0;
        c.validate().unwrap_err()
    }

    #[test]
    fn every_error_says_what_went_wrong() {
        let cases: [(BlobError, &str); 9] = [
            (BlobError::Missing, "no config blob"),
            (BlobError::TooShort { len: 3 }, "3 bytes"),
            (BlobError::BadMagic, "bad magic"),
            (BlobError::UnsupportedVersion { found: 9 }, "version 9"),
            (
                BlobError::Truncated {
                    declared: 10,
                    present: 4,
                },
                "declares 10 payload bytes, 4 present",
            ),
            (
                BlobError::BadLength {
                    declared: 10,
                    present: 12,
                },
                "declares 10 payload bytes, 12 present",
            ),
            (
                BlobError::BadCrc {
                    expected: 1,
                    computed: 2,
                },
                "header 0x00000001, payload 0x00000002",
            ),
            (BlobError::Decode, "does not decode"),
            (BlobError::Invalid(invalid()), "config field node.id"),
        ];
        for (e, says) in cases {
            let text = std::format!("{e}");
            assert!(text.contains(says), "{e:?}: {text}");
        }
        let text = std::format!("{}", EncodeError::NoSpace);
        assert!(text.contains("does not fit"), "{text}");
        let text = std::format!("{}", EncodeError::Invalid(invalid()));
        assert!(text.contains("config field node.id"), "{text}");
    }

    fn good_header(len: usize) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&(len as u32).to_le_bytes());
        h.extend_from_slice(&[0; 4]);
        h
    }

    proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            // Random bytes lack the magic (and the CRC): never a config.
            prop_assert!(decode(&bytes).is_err());
            prop_assert!(decode(unpad(&bytes)).is_err());
        }

        #[test]
        fn resealed_garbage_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut blob = good_header(payload.len());
            blob.extend_from_slice(&payload);
            reseal(&mut blob);
            if let Ok(c) = decode(&blob) {
                // What decodes re-encodes to a blob that decodes to it again.
                let mut again = vec![0u8; MAX_BLOB];
                let n = encode(&c, &mut again).unwrap();
                prop_assert_eq!(decode(&again[..n]).unwrap(), c);
            }
        }
    }
}
