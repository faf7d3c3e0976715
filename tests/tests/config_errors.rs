//! Each kind of bad config blob: one clear console line and its own exit
//! status, within a time bound, never a hang.

use pias::blob::{BlobError, FORMAT_VERSION, HEADER_LEN, MAGIC};
use pias::exit::qemu_status;
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, test_accel};
use std::time::Duration;

fn crc32(data: &[u8]) -> u32 {
    // Bitwise CRC-32/ISO-HDLC, independent of the implementation under test.
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn blob_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&crc32(payload).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn good() -> Vec<u8> {
    pias_image::encode(&pias::Config::example()).unwrap()
}

/// Boots `spec` in a lab of its own until it exits (bounded): QEMU's
/// status (None if it did not exit in time) and the console.
fn boot_until_exit(tag: &str, spec: Spec) -> (Option<i32>, String) {
    let mut lab = Lab::new(tag).unwrap();
    lab.boot(&kernel(), spec).unwrap();
    let code = lab.appliances[0]
        .wait_exit(Duration::from_secs(20))
        .unwrap();
    (code, lab.appliances[0].console())
}

fn expect_refusal(machine: Machine, blob: Option<Vec<u8>>, want: BlobError, needle: &str) {
    let mut spec = Spec::new(machine, test_accel(), Vec::new());
    spec.blob = blob;
    spec.nic = false;
    let (code, console) = boot_until_exit("cfgerr", spec);
    assert_eq!(
        code,
        Some(qemu_status(want.exit_code())),
        "{want:?} on {machine}; console:\n{console}"
    );
    let line = console
        .lines()
        .find(|l| l.contains("ERROR config:"))
        .unwrap_or_default();
    assert!(
        line.contains(needle),
        "{want:?} on {machine}: console line {line:?} lacks {needle:?}"
    );
}

#[test]
fn every_defect_has_its_own_message_and_status() {
    let mut bad_magic = good();
    bad_magic[0] = b'X';
    let mut bad_crc = good();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let mut bad_version = good();
    bad_version[6] = 7;
    let good_len = good().len();
    let truncated = good()[..good_len - 5].to_vec();
    // Zeros after the payload are a padded slot (trimmed by the loader, see
    // grub.rs); anything else after it is refused.
    let mut trailing = good();
    trailing.extend_from_slice(&[0, 7, 0]);

    let mut invalid = pias::Config::example();
    invalid.capacity.peers = 0;
    let invalid = blob_with_payload(&postcard_bytes(&invalid));
    let undecodable = blob_with_payload(&[0xff; 40]);

    let cases: Vec<(Option<Vec<u8>>, BlobError, &str)> = vec![
        (None, BlobError::Missing, "no config blob"),
        (
            Some(good()[..9].to_vec()),
            BlobError::TooShort { len: 9 },
            "shorter than",
        ),
        (Some(bad_magic), BlobError::BadMagic, "bad magic"),
        (
            Some(bad_version),
            BlobError::UnsupportedVersion { found: 7 },
            "version 7 is not supported",
        ),
        (
            Some(truncated),
            BlobError::Truncated {
                declared: 0,
                present: 0,
            },
            "truncated",
        ),
        (
            Some(trailing),
            BlobError::BadLength {
                declared: 0,
                present: 0,
            },
            "length mismatch",
        ),
        (
            Some(bad_crc),
            BlobError::BadCrc {
                expected: 0,
                computed: 0,
            },
            "CRC mismatch",
        ),
        (Some(undecodable), BlobError::Decode, "does not decode"),
        (
            Some(invalid),
            BlobError::Invalid(dummy()),
            "capacity.peers: must be 1..=20000",
        ),
    ];
    let mut statuses = std::collections::HashSet::new();
    for (blob, want, needle) in cases {
        assert!(
            statuses.insert(want.exit_code()),
            "two cases share a status"
        );
        expect_refusal(Machine::Microvm, blob, want, needle);
    }
}

#[test]
fn q35_reports_config_errors_the_same_way() {
    expect_refusal(Machine::Q35, None, BlobError::Missing, "no config blob");
    let mut bad_crc = good();
    bad_crc[HEADER_LEN] ^= 1;
    expect_refusal(
        Machine::Q35,
        Some(bad_crc),
        BlobError::BadCrc {
            expected: 0,
            computed: 0,
        },
        "CRC mismatch",
    );
}

#[test]
fn deployment_errors_name_their_field_at_boot() {
    let mut weak = pias::Config::example();
    weak.deployment.key = pias::wire::Key([0x42; 32]);
    expect_refusal(
        Machine::Microvm,
        Some(blob_with_payload(&postcard_bytes(&weak))),
        BlobError::Invalid(dummy()),
        "deployment.key: weak key: fewer than 16 distinct byte values",
    );
    let mut elsewhere = pias::Config::example();
    elsewhere.deployment.proxies[0].address = pias::Ipv4([198, 18, 0, 99]);
    expect_refusal(
        Machine::Microvm,
        Some(blob_with_payload(&postcard_bytes(&elsewhere))),
        BlobError::Invalid(dummy()),
        "deployment.proxies[0].address: differs from this node's interfaces[0].address",
    );
}

fn dummy() -> pias::config::ConfigError {
    pias::config::ConfigError {
        field: Default::default(),
        reason: "",
    }
}

/// The postcard payload of a config, without validation (to make invalid blobs).
fn postcard_bytes(cfg: &pias::Config) -> Vec<u8> {
    postcard::to_allocvec(cfg).expect("a config serializes")
}

/// Capacities the RAM cannot hold: a clear out-of-memory exit, never a
/// panic, and never "ready" first (every table is reserved before it).
#[test]
fn too_little_memory_is_an_out_of_memory_exit_not_a_panic() {
    for memory_mb in [3, 4, 6, 8, 10, 11] {
        let mut spec = Spec::new(Machine::Microvm, test_accel(), Vec::new());
        spec.blob = Some(good());
        spec.memory_mb = memory_mb;
        let (code, console) = boot_until_exit("oom", spec);
        assert_eq!(
            code,
            Some(qemu_status(pias::exit::OUT_OF_MEMORY)),
            "-m {memory_mb}; console:\n{console}"
        );
        assert!(
            console.contains("ERROR memory:") && !console.contains("PANIC"),
            "-m {memory_mb}; console:\n{console}"
        );
        assert!(
            !console.contains("ready:"),
            "-m {memory_mb}; console:\n{console}"
        );
    }
}
