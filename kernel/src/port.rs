//! x86 port I/O.

use core::arch::asm;

/// # Safety
/// The caller must know what the device at `port` does on a read.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: `in al, dx` reads the port into `al` and touches no memory, stack
    // or flags (the options say so); what the device does on the read is the
    // caller's to vouch for (`# Safety`).
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// # Safety
/// The caller must know what the device at `port` does on this write.
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: `out dx, al` writes `al` to the port and touches no memory, stack
    // or flags; what the device does on the write (DMA included) is the
    // caller's to vouch for (`# Safety`).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// # Safety
/// As `outb`.
pub unsafe fn outw(port: u16, v: u16) {
    // SAFETY: `out dx, ax` writes `ax` to the port and touches no memory, stack
    // or flags; the device's reaction is the caller's to vouch for.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

/// # Safety
/// As `inb`.
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: `in eax, dx` reads the port into `eax` and touches no memory,
    // stack or flags; the device's reaction is the caller's to vouch for.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// # Safety
/// As `outb`.
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: `out dx, eax` writes `eax` to the port and touches no memory,
    // stack or flags; the device's reaction is the caller's to vouch for.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// # Safety
/// As `outb`. Unlike `outl`, the compiler treats the write as reading and
/// writing any memory: stores before it are done first and loads after it
/// are made afresh, as a write that starts a device's DMA needs.
pub unsafe fn outl_dma(port: u16, v: u32) {
    // SAFETY: `out dx, eax` writes `eax` to the port and touches no stack or
    // flags; without `nomem` the compiler assumes it may touch memory (so it
    // orders memory accesses around it); the device's reaction, DMA included,
    // is the caller's to vouch for.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) };
}
