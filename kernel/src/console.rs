//! The console: log lines wait in a fixed queue (`pias_net::console`) and the
//! loop writes them to the UART when it can (`drain`), so a slow serial line
//! never stalls packets; the exit and panic paths write what waits first
//! (`flush`).
//!
//! A 16550 at 115,200 baud takes 87 µs a byte, so a 100-byte line written in
//! place stopped the loop for 9 ms on hardware; under TCG each byte is an
//! exit and a host write (~5 µs), and the boot's own lines held the first
//! packet back by milliseconds. Lines that find the queue full are dropped,
//! counted (`Status::console_dropped`) and reported once it drains.

use crate::serial::Serial;
use core::fmt::{self, Write};
use pias_net::console::ConsoleQueue;

/// Bytes the queue holds: a boot's lines many times over.
const SIZE: usize = 16 * 1024;

static QUEUE: spin::Mutex<ConsoleQueue<SIZE>> = spin::Mutex::new(ConsoleQueue::new());

/// Queues text for the console (`write!(Console, …)`).
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        QUEUE.lock().push(s.as_bytes());
        Ok(())
    }
}

/// Whether bytes wait.
pub fn pending() -> bool {
    !QUEUE.lock().is_empty()
}

/// Bytes dropped since boot because the queue was full.
pub fn dropped() -> u64 {
    QUEUE.lock().dropped()
}

/// Writes up to `budget` waiting bytes while the UART takes them without
/// waiting; true if bytes still wait.
pub fn drain(budget: usize) -> bool {
    let mut q = QUEUE.lock();
    for _ in 0..budget {
        let Some(b) = q.pop() else {
            break;
        };
        if !Serial::try_put(b) {
            q.unpop(b);
            break;
        }
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
