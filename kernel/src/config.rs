//! Finds and decodes the boot-time config blob: QEMU fw_cfg file
//! `opt/pias/config` first, else the first boot module (PVH -initrd, GRUB module).

use crate::bootinfo::BootInfo;
use crate::{fwcfg, phys};
use alloc::vec::Vec;
use pias::blob::{self, BlobError, HEADER_LEN, MAX_BLOB};
use pias::Config;

pub const FW_CFG_NAME: &str = "opt/pias/config";

#[derive(Clone, Copy, Debug)]
pub enum Source {
    FwCfg,
    Module,
}

fn declared_len(head: &[u8]) -> usize {
    phys::u32_at(head, 8).unwrap_or(0) as usize
}

fn oversized(bytes: &[u8], total: usize) -> BlobError {
    // Refuse before decoding; still distinguish a foreign file from a huge config.
    match blob::payload(&bytes[..HEADER_LEN.min(bytes.len())]) {
        Err(
            e @ (BlobError::BadMagic
            | BlobError::UnsupportedVersion { .. }
            | BlobError::TooShort { .. }),
        ) => e,
        _ => BlobError::BadLength {
            declared: declared_len(bytes),
            present: total.saturating_sub(HEADER_LEN),
        },
    }
}

/// Loads the config; needs the arena (`arena::init`): a fw_cfg blob is read
/// into a buffer taken from it (up to `MAX_BLOB`, 512 KiB: too big for the
/// stack) and freed once decoded.
pub fn load(info: &BootInfo) -> Result<(Config, Source, usize), BlobError> {
    if let Some((selector, size)) = fwcfg::find(FW_CFG_NAME) {
        if size > MAX_BLOB {
            // Only the header is needed to say what is wrong.
            let mut head = [0u8; HEADER_LEN];
            fwcfg::read(selector, &mut head);
            return Err(oversized(&head, size));
        }
        let mut buf: Vec<u8> = Vec::new();
        if buf.try_reserve_exact(size).is_err() {
            log::error!("config: no room in the arena for a {size}-byte blob (give more memory)");
            crate::exit::exit(pias::exit::OUT_OF_MEMORY)
        }
        buf.resize(size, 0);
        // DMA where QEMU has it: one exit instead of one per byte (a port
        // read costs tens of µs under some hypervisors; docs/config.md).
        if !(fwcfg::has_dma() && fwcfg::read_dma(selector, &mut buf)) {
            fwcfg::read(selector, &mut buf);
        }
        return blob::decode(blob::unpad(&buf)).map(|c| (c, Source::FwCfg, size));
    }
    if let Some(m) = info.modules.first() {
        let len = usize::try_from(m.len).unwrap_or(usize::MAX);
        let shown = phys::slice(m.start, len.min(MAX_BLOB)).ok_or(BlobError::Missing)?;
        if len > MAX_BLOB {
            return Err(oversized(shown, len));
        }
        // A disk image's config sits in a fixed slot, padded with zeros.
        return blob::decode(blob::unpad(shown)).map(|c| (c, Source::Module, len));
    }
    Err(BlobError::Missing)
}
