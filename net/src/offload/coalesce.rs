//! Receive coalescing: in-order TCP/IPv4 segments of one flow, arriving back
//! to back, merged into one large frame (as Linux's GRO does), so that a
//! flow whose segments arrive one by one can cross the NAT whole too. The
//! merged frame carries a partial checksum for the device to finish, and
//! cuts back into exactly the segments it was made of.

use super::Offload;
use smoltcp::wire::checksum;

const ETH: usize = 14;
const IP_LEN: usize = 20;
const TCP: usize = ETH + IP_LEN;
/// TCP flag bits.
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A run of segments being merged into a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Payload bytes of the first segment: every segment but the last has as many.
    mss: usize,
    /// TCP header length, the same in every segment.
    thl: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// Segments merged so far.
    pub segments: usize,
    /// No more: a short segment or PSH ended it, or the frame is full.
    closed: bool,
}

/// A plain data segment: (sequence number, TCP header length, payload length).
fn plain(frame: &[u8], o: Offload) -> Option<(u32, usize, usize)> {
    if o.gso_size != 0 || frame.len() < TCP + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // IPv4 without options, TCP, not a fragment, no Ethernet padding.
    if ip[0] != 0x45 || ip[9] != 6 || ip[6] & 0x3f != 0 || ip[7] != 0 || total != ip.len() {
        return None;
    }
    let t = &frame[TCP..];
    let thl = usize::from(t[12] >> 4) * 4;
    // ACK, perhaps PSH; nothing else (no SYN, FIN, RST, URG, ECE, CWR).
    if thl < 20 || thl > t.len() || t[13] & !PSH != ACK {
        return None;
    }
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    Some((seq, thl, t.len() - thl)).filter(|s| s.2 > 0)
}

/// A run starting with `frame`, if it is a plain data segment.
pub fn start(frame: &[u8], o: Offload) -> Option<Run> {
    let (seq, thl, len) = plain(frame, o)?;
    Some(Run {
        mss: len,
        thl,
        next_seq: seq.wrapping_add(len as u32),
        segments: 1,
        closed: frame[TCP + 13] & PSH != 0,
    })
}

impl Run {
    /// Whether another segment may join.
    pub fn open(&self) -> bool {
        !self.closed
    }

    /// Appends `seg` to the frame `big[..*len]` if it is the run's next
    /// segment (same link and IP header fields, same ports, ACK number and
    /// options, the next sequence number, no more payload than the first);
    /// false, nothing changed, if not. `big` bounds the frame.
    pub fn append(&mut self, big: &mut [u8], len: &mut usize, seg: &[u8], o: Offload) -> bool {
        let Some((seq, thl, n)) = plain(seg, o) else {
            return false;
        };
        let hdrs = TCP + thl;
        let same = |a: core::ops::Range<usize>| big.get(a.clone()) == seg.get(a);
        let fits = *len + n <= big.len() && *len - ETH + n <= usize::from(u16::MAX);
        let continues = self.open()
            && fits
            && thl == self.thl
            && seq == self.next_seq
            && n <= self.mss
            && same(0..12) // MACs
            && same(ETH + 1..ETH + 2) // TOS
            && same(ETH + 6..ETH + 7) // DF
            && same(ETH + 8..ETH + 9) // TTL
            && same(ETH + 12..ETH + 20) // addresses
            && same(TCP..TCP + 4) // ports
            && same(TCP + 8..TCP + 12) // ACK number
            && same(TCP + 20..hdrs); // options
        if !continues {
            return false;
        }
        big[*len..*len + n].copy_from_slice(&seg[hdrs..]);
        *len += n;
        // The latest window; PSH from the last segment.
        big[TCP + 14..TCP + 16].copy_from_slice(&seg[TCP + 14..TCP + 16]);
        big[TCP + 13] |= seg[TCP + 13] & PSH;
        self.next_seq = seq.wrapping_add(n as u32);
        self.segments += 1;
        self.closed = n < self.mss || seg[TCP + 13] & PSH != 0;
        true
    }

    /// Finishes the merged frame `big[..len]`: IPv4 length and checksum, and
    /// the TCP checksum field holding the pseudo-header sum, for the device
    /// (or `LargeTcp::segment`) to finish; what describes it.
    pub fn finish(&self, big: &mut [u8], len: usize) -> Offload {
        let total = (len - ETH) as u16;
        big[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        big[ETH + 10..ETH + 12].fill(0);
        let ip_sum = !checksum::data(&big[ETH..TCP]);
        big[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let mut proto_len = [0u8; 4];
        proto_len[1] = 6;
        proto_len[2..].copy_from_slice(&(total - IP_LEN as u16).to_be_bytes());
        let pseudo = checksum::combine(&[
            checksum::data(&big[ETH + 12..ETH + 20]),
            checksum::data(&proto_len),
        ]);
        big[TCP + 16..TCP + 18].copy_from_slice(&pseudo.to_be_bytes());
        Offload {
            partial: Some((TCP as u16, 16)),
            valid: false,
            gso_size: self.mss as u16,
        }
    }
}
