//! The console: until the loop starts, lines are written in place (a boot
//! that hangs still shows how far it got); from then on they wait in a fixed
//! queue (`pias_net::console`) and the loop writes them to the UART when it
//! can (`drain`), so a slow serial line never stalls packets. The exit, panic
//! and exception paths write what waits first (`flush`).
//!
//! A 16550 at 115,200 baud takes 87 µs a byte, so a 100-byte warning written
//! in place stopped the loop for 9 ms on hardware; under TCG each byte is an
//! exit and a host write. A line that finds the queue full is dropped whole,
//! counted (`Status::console_dropped`) and reported once the queue drains.

use crate::serial::Serial;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use pias_net::console::ConsoleQueue;

/// Bytes the queue holds: many seconds of a busy log.
const SIZE: usize = 16 * 1024;
/// The longest line; a longer one is cut and says so.
const LINE_MAX: usize = 512;
/// Bytes an empty 16550A transmitter takes at once (its FIFO, enabled by
/// `Serial::init`).
const FIFO: usize = 16;

static QUEUE: spin::Mutex<ConsoleQueue<SIZE>> = spin::Mutex::new(ConsoleQueue::new());
/// Lines queue (the loop runs) rather than being written in place.
static QUEUEING: AtomicBool = AtomicBool::new(false);

/// Writes one line (`args` and a newline): in place during the boot, else
/// queued whole or, without room, dropped whole.
pub fn line(args: fmt::Arguments<'_>) {
    let mut text: heapless::String<LINE_MAX> = heapless::String::new();
    if text.write_fmt(args).is_err() {
        // Cut at a piece that did not fit; say so at the end.
        const CUT: &str = " [line cut]";
        while text.len() > LINE_MAX - CUT.len() {
            text.pop();
        }
        let _ = text.push_str(CUT);
    }
    if QUEUEING.load(Ordering::Relaxed) {
        QUEUE.lock().push_line(&[text.as_bytes(), b"\n"]);
    } else {
        let _ = writeln!(Serial, "{text}");
    }
}

/// From now on lines queue: the loop starts and drains them.
pub fn start_queueing() {
    QUEUEING.store(true, Ordering::Relaxed);
}

/// Whether bytes wait.
pub fn pending() -> bool {
    !QUEUE.lock().is_empty()
}

/// Bytes dropped since boot because the queue was full.
pub fn dropped() -> u64 {
    QUEUE.lock().dropped()
}

/// Writes up to `budget` waiting bytes, a FIFO's worth each time the UART's
/// transmitter is found empty, never waiting for it; true if bytes still wait.
pub fn drain(budget: usize) -> bool {
    let mut q = QUEUE.lock();
    let mut left = budget;
    while left > 0 && !q.is_empty() && Serial::transmitter_empty() {
        for _ in 0..left.min(FIFO) {
            let Some(b) = q.pop() else {
                break;
            };
            Serial::write_byte(b);
        }
        left = left.saturating_sub(FIFO);
    }
    !q.is_empty()
}

/// Writes everything that waits, waiting for the UART (boundedly, byte by
/// byte): before the appliance exits. From a panic or a CPU exception, what
/// holds the queue may be the code that failed: then nothing is written.
pub fn flush() {
    let Some(mut q) = QUEUE.try_lock() else {
        return;
    };
    while let Some(b) = q.pop() {
        Serial::put(b);
    }
}
