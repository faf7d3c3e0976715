//! Leaving the appliance: QEMU's isa-debug-exit device, else halt forever.

use crate::port::outb;

/// The iobase the harness gives `-device isa-debug-exit`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Writes out the console's queue, then exits QEMU with status
/// `(code << 1) | 1`; on bare metal (no such device) halts.
pub fn exit(code: u8) -> ! {
    // What the console still holds goes first: often the reason.
    crate::console::flush();
    // SAFETY: 0xf4 is the isa-debug-exit port the harness configures; the write
    // ends the VM and touches no memory. Without that device (bare metal, other
    // QEMU command lines) the port is unclaimed and the byte is dropped.
    unsafe { outb(DEBUG_EXIT_PORT, code) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` clears IF and stops the CPU; it touches no memory or
        // stack. An NMI can still resume after `hlt`, so the loop halts again.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
