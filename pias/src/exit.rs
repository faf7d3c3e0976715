//! Exit codes the appliance writes to QEMU's debug-exit port (iobase 0xf4).
//! QEMU then exits with status `(code << 1) | 1`; `qemu_status` computes it.
//! Config errors use `blob::BlobError::exit_code` (0x20..=0x28).

/// A management request asked for a clean shutdown.
pub const SHUTDOWN: u8 = 0x10;
/// A Rust panic (a bug: the message and location are on the console).
pub const PANIC: u8 = 0x11;
/// A CPU exception (a bug: vector and RIP are on the console).
pub const CPU_EXCEPTION: u8 = 0x12;
/// No usable virtio-net device was found.
pub const NO_NIC: u8 = 0x13;
/// The boot loader's information was missing or malformed.
pub const BAD_BOOT_INFO: u8 = 0x14;
/// Not enough memory for the tables the config asks for.
pub const OUT_OF_MEMORY: u8 = 0x15;

/// The process exit status QEMU reports for a debug-exit `code`.
pub const fn qemu_status(code: u8) -> i32 {
    ((code as i32) << 1) | 1
}

/// A short name for an exit status, for harness messages.
pub fn describe_qemu_status(status: i32) -> &'static str {
    let names: [(u8, &'static str); 15] = [
        (SHUTDOWN, "clean shutdown"),
        (PANIC, "panic"),
        (CPU_EXCEPTION, "cpu exception"),
        (NO_NIC, "no network device"),
        (BAD_BOOT_INFO, "bad boot info"),
        (OUT_OF_MEMORY, "out of memory"),
        (0x20, "config missing"),
        (0x21, "config too short"),
        (0x22, "config bad magic"),
        (0x23, "config unsupported version"),
        (0x24, "config truncated"),
        (0x25, "config length mismatch"),
        (0x26, "config bad crc"),
        (0x27, "config undecodable"),
        (0x28, "config invalid field"),
    ];
    names
        .iter()
        .find(|(c, _)| qemu_status(*c) == status)
        .map(|(_, n)| *n)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobError;

    #[test]
    fn statuses_are_distinct_and_named() {
        let config_errors = [
            BlobError::Missing,
            BlobError::TooShort { len: 0 },
            BlobError::BadMagic,
            BlobError::UnsupportedVersion { found: 2 },
            BlobError::Truncated {
                declared: 1,
                present: 0,
            },
            BlobError::BadLength {
                declared: 0,
                present: 1,
            },
            BlobError::BadCrc {
                expected: 0,
                computed: 1,
            },
            BlobError::Decode,
        ];
        let mut seen = std::collections::HashSet::new();
        for code in [
            SHUTDOWN,
            PANIC,
            CPU_EXCEPTION,
            NO_NIC,
            BAD_BOOT_INFO,
            OUT_OF_MEMORY,
        ]
        .into_iter()
        .chain(config_errors.iter().map(|e| e.exit_code()))
        {
            assert!(seen.insert(code), "duplicate code {code:#x}");
            assert_ne!(describe_qemu_status(qemu_status(code)), "unknown");
        }
        assert_eq!(qemu_status(SHUTDOWN), 33);
    }
}
