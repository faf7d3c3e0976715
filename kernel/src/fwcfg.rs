//! QEMU's fw_cfg interface over port I/O (selector 0x510, data 0x511):
//! finds a named file in the directory and reads it.

use crate::port::{inb, outw};

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: 0x510 is fw_cfg's selector register: the write only chooses the
    // item the data port reads and rewinds its offset. fw_cfg's DMA interface
    // (0x514) is never used, so the device writes no memory. Without fw_cfg the
    // port is unclaimed.
    unsafe { outw(SELECTOR, key) };
}

fn read_bytes(out: &mut [u8]) {
    for b in out.iter_mut() {
        // SAFETY: a read of fw_cfg's data port (0x511) returns the next byte of the
        // selected item and advances the offset; it touches no memory. Without
        // fw_cfg the port is unclaimed (`present` then sees no signature).
        *b = unsafe { inb(DATA) };
    }
}

pub fn present() -> bool {
    select(SIGNATURE);
    let mut sig = [0u8; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Selector and size of the named file, if fw_cfg has it.
pub fn find(name: &str) -> Option<(u16, usize)> {
    if !present() {
        return None;
    }
    select(FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    let count = u32::from_be_bytes(count).min(4096);
    for _ in 0..count {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as usize;
        let sel = u16::from_be_bytes([entry[4], entry[5]]);
        let raw = &entry[8..];
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        if &raw[..len] == name.as_bytes() {
            return Some((sel, size));
        }
    }
    None
}

/// Reads the first `out.len()` bytes of the selected item.
pub fn read(selector: u16, out: &mut [u8]) {
    select(selector);
    read_bytes(out);
}
