//! The console's output queue: text waits here until the serial line takes
//! it, a byte at a time (`pop`), so that a slow console never stalls
//! the loop; a line that finds it full is dropped whole (`push_line`),
//! counted and reported in one line once it has drained.

use core::fmt::{self, Write};

/// Bytes of text waiting for a serial line, newlines stored as CR LF.
pub struct ConsoleQueue<const N: usize> {
    buf: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    len: usize,
    /// Bytes dropped since the start, and those not yet reported.
    dropped: u64,
    unreported: u64,
}

impl<const N: usize> Default for ConsoleQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ConsoleQueue<N> {
    /// An empty queue (`const`: it can be a static's).
    pub const fn new() -> Self {
        ConsoleQueue {
            buf: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
            unreported: 0,
        }
    }

    /// Queues the concatenation of `parts` whole, each newline as CR LF, or,
    /// without room for all of it, none of it (counted as dropped): a line is
    /// never cut or spliced with another. True if queued.
    pub fn push_line(&mut self, parts: &[&[u8]]) -> bool {
        let need: usize = parts
            .iter()
            .flat_map(|p| p.iter())
            .map(|&b| if b == b'\n' { 2 } else { 1 })
            .sum();
        if N - self.len < need {
            let lost: usize = parts.iter().map(|p| p.len()).sum();
            self.dropped += lost as u64;
            self.unreported += lost as u64;
            return false;
        }
        for p in parts {
            self.push(p);
        }
        true
    }

    /// Queues `bytes`, each newline as CR LF; from the first byte that finds
    /// no room, the rest is dropped and counted (`push_line` and the drop
    /// report's own line).
    fn push(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let need = if b == b'\n' { 2 } else { 1 };
            if N - self.len < need {
                let lost = (bytes.len() - i) as u64;
                self.dropped += lost;
                self.unreported += lost;
                return;
            }
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    fn put(&mut self, b: u8) {
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
    }

    /// The oldest waiting byte, taken off the queue. Once it is empty, a
    /// line saying how many bytes were dropped (if any were since the last
    /// such line) is queued first.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 && self.unreported > 0 {
            let n = core::mem::take(&mut self.unreported);
            let (dropped, unreported) = (self.dropped, self.unreported);
            let _ = writeln!(self, "[console: {n} bytes of log dropped, queue full]");
            // A queue too small for the report cuts it; that is no news.
            (self.dropped, self.unreported) = (dropped, unreported);
        }
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits (a drop report may still be due: see `pop`).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.unreported == 0
    }

    /// Bytes dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<const N: usize> Write for ConsoleQueue<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn drain<const N: usize>(q: &mut ConsoleQueue<N>) -> Vec<u8> {
        core::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn text_comes_out_in_order_with_crlf_newlines() {
        let mut q = ConsoleQueue::<64>::new();
        let _ = writeln!(q, "ready: {}", 7);
        q.push(b"two\n");
        assert_eq!(drain(&mut q), b"ready: 7\r\ntwo\r\n");
        assert!(q.is_empty());
    }

    #[test]
    fn it_wraps_around_its_storage() {
        let mut q = ConsoleQueue::<8>::new();
        for round in 0..20u8 {
            let line = [b'a' + round % 26, b'b', b'c', b'd', b'e'];
            q.push(&line);
            assert_eq!(drain(&mut q), line);
        }
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_the_rest_counts_it_and_says_so_once_drained() {
        let mut q = ConsoleQueue::<16>::new();
        q.push(b"0123456789");
        // 6 bytes of room: "abcde" fits, "\n" needs two and does not.
        q.push(b"abcde\nfgh");
        assert_eq!(q.len(), 16 - 1);
        assert_eq!(q.dropped(), 4);
        // The next push finds one byte of room: "x" goes, "\n" does not.
        q.push(b"x\n");
        assert_eq!(q.dropped(), 5);
        let out = drain(&mut q);
        let text = std::string::String::from_utf8(out).unwrap();
        assert!(text.starts_with("0123456789abcdex"), "{text:?}");
        // Cut to the queue's size, the report still begins as it should,
        // and its own cut is not counted (nor reported again).
        assert_eq!(&text[16..], "[console: 5 byte", "{text:?}");
        assert_eq!(drain(&mut q), b"", "reported once");
        assert_eq!(q.dropped(), 5, "the count stays");
    }

    #[test]
    fn a_line_goes_whole_or_not_at_all() {
        let mut q = ConsoleQueue::<16>::new();
        assert!(q.push_line(&[b"[1] INFO ", b"up!\n"]));
        assert_eq!(q.len(), 14, "CR LF");
        // 2 bytes of room: a 3-byte line is dropped whole, nothing spliced.
        assert!(!q.push_line(&[b"ab", b"c"]));
        assert_eq!((q.len(), q.dropped()), (14, 3));
        assert!(!q.push_line(&[b"x\n"]), "3 bytes with its CR");
        assert!(q.push_line(&[b"y"]));
        assert_eq!(q.dropped(), 5);
        let text = std::string::String::from_utf8(drain(&mut q)).unwrap();
        assert!(text.starts_with("[1] INFO up!\r\ny"), "{text:?}");
        assert!(!text.contains("ab") && !text.contains('x'), "{text:?}");
    }
}
