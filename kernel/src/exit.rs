//! Leaving the appliance: QEMU's isa-debug-exit device, else halt forever.

use crate::port::outb;

/// The iobase the harness gives `-device isa-debug-exit`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Exits QEMU with status `(code << 1) | 1`; on bare metal (no such device) halts.
pub fn exit(code: u8) -> ! {
    // SAFETY: writing a byte to the debug-exit port; on hardware without the device
    // the write goes nowhere.
    unsafe { outb(DEBUG_EXIT_PORT, code) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: interrupts off, then hlt: the CPU stops here for good.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
