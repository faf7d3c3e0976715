//! QEMU's fw_cfg interface over port I/O (selector 0x510, data 0x511):
//! finds a named file in the directory and reads it, a byte per port read or,
//! for a large item where QEMU offers it, by one DMA transfer (0x514/0x518).

use crate::port::{inb, outl_dma, outw};
use alloc::boxed::Box;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;
const ID: u16 = 0x0001;
/// Bit of the ID item: the DMA interface is present.
const FEATURE_DMA: u32 = 1 << 1;
/// DMA address registers: the high 32 bits, then the low 32 bits (the write
/// that starts the transfer), each big-endian.
const DMA_HIGH: u16 = 0x514;
const DMA_LOW: u16 = 0x518;
const DMA_ERROR: u32 = 0x01;
const DMA_READ: u32 = 0x02;
const DMA_SELECT: u32 = 0x08;

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

/// Whether QEMU offers the DMA interface (the ID item's bit 1).
pub fn has_dma() -> bool {
    select(ID);
    let mut id = [0u8; 4];
    read_bytes(&mut id);
    u32::from_le_bytes(id) & FEATURE_DMA != 0
}

/// QEMU's `FWCfgDmaAccess`: every field big-endian.
#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

/// Reads the first `out.len()` bytes of item `selector` by one DMA transfer.
/// `out` must lie in identity-mapped RAM (the arena). False if the device
/// reported an error or did not finish (`out` is then not to be trusted).
pub fn read_dma(selector: u16, out: &mut [u8]) -> bool {
    let Ok(length) = u32::try_from(out.len()) else {
        return false;
    };
    // In the arena, so identity-mapped: its address is its physical address.
    let access = Box::new(DmaAccess {
        control: ((u32::from(selector) << 16) | DMA_SELECT | DMA_READ).to_be(),
        length: length.to_be(),
        address: (out.as_mut_ptr() as u64).to_be(),
    });
    let at = Box::into_raw(access);
    let phys = at as u64;
    // SAFETY: fw_cfg's DMA registers: writing the access structure's physical
    // address (high half, then low half, which starts it) makes QEMU read the
    // structure and write `length` bytes of the item to `address`, then clear
    // `control`. Both the structure (a live Box) and `out` (a live `&mut`
    // slice, exactly `length` bytes) are identity-mapped arena RAM that nothing
    // else uses meanwhile; `outl_dma` makes the compiler finish the stores
    // before the transfer and reload memory after it. Without fw_cfg DMA the
    // caller does not get here (`has_dma`).
    unsafe {
        outl_dma(DMA_HIGH, ((phys >> 32) as u32).to_be());
        outl_dma(DMA_LOW, (phys as u32).to_be());
    }
    let mut done = false;
    // QEMU completes the transfer within the port write; the bound only keeps
    // a broken device from hanging the boot.
    for _ in 0..1_000_000 {
        // SAFETY: `at` is the live Box's pointer, aligned and initialised;
        // the volatile read sees QEMU's update of `control`.
        let control = u32::from_be(unsafe { core::ptr::read_volatile(&raw const (*at).control) });
        if control & !DMA_ERROR == 0 {
            done = control & DMA_ERROR == 0;
            break;
        }
        core::hint::spin_loop();
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    // The transfer is over; an abandoned one's structure is leaked rather
    // than reused.
    if done {
        // SAFETY: `at` came from `Box::into_raw` above and is freed once, here.
        drop(unsafe { Box::from_raw(at) });
    }
    done
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
