//! COM1 (16550 UART at 0x3f8), polled output only.

use crate::port::{inb, outb};
use core::fmt;

const COM1: u16 = 0x3f8;

pub struct Serial;

impl Serial {
    pub fn init() {
        // SAFETY: these are COM1's own 16550 registers (0x3f8..=0x3fc): interrupt
        // enable (kept 0), line control with the divisor latch, FIFO control and
        // modem control, giving 115200 8N1. The UART does no DMA and, with IER 0,
        // raises no interrupt, so the writes change nothing but the UART. Without
        // a COM1 the ports are unclaimed and the writes are dropped.
        unsafe {
            outb(COM1 + 1, 0x00);
            outb(COM1 + 3, 0x80);
            outb(COM1, 0x01);
            outb(COM1 + 1, 0x00);
            outb(COM1 + 3, 0x03);
            outb(COM1 + 2, 0xc7);
            outb(COM1 + 4, 0x03);
        }
    }

    /// Writes one byte as it is, waiting (boundedly) for the transmitter.
    pub fn put(b: u8) {
        // SAFETY: reading COM1's line status register (0x3fd) only reports the
        // transmitter state; writing its transmit holding register (0x3f8) sends
        // one byte. Neither touches memory; with IER 0 neither raises an interrupt.
        unsafe {
            // Bounded wait for the transmitter; if no UART answers (bare metal without
            // COM1), output is dropped rather than hanging the appliance.
            for _ in 0..100_000 {
                if inb(COM1 + 5) & 0x20 != 0 {
                    break;
                }
            }
            outb(COM1, b);
        }
    }

    /// Whether the transmitter is empty (its FIFO can take 16 bytes).
    pub fn transmitter_empty() -> bool {
        // SAFETY: a read of COM1's line status register (0x3fd) only reports
        // the transmitter's state; it touches no memory and raises nothing.
        unsafe { inb(COM1 + 5) & 0x20 != 0 }
    }

    /// Writes one byte as it is, not waiting: after `transmitter_empty`,
    /// up to a FIFO's worth.
    pub fn write_byte(b: u8) {
        // SAFETY: a write of COM1's transmit holding register (0x3f8) sends
        // one byte; it touches no memory and, with IER 0, raises nothing.
        unsafe { outb(COM1, b) };
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Serial::put(b'\r');
            }
            Serial::put(b);
        }
        Ok(())
    }
}
