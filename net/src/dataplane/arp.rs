//! The data path's neighbour table: IPv4 → MAC for next hops, learned only
//! from ARP addressed to us (no gratuitous learning), with a small queue of
//! frames waiting for an answer. Fixed size; the oldest entry makes room.

use crate::dataplane::packet::ETH_LEN;
use pias::addr::Ipv4;
use pias::time::{Instant, MS, SEC};

/// Neighbours remembered.
pub const NEIGHBOURS: usize = 64;
/// Frames held while their next hop is being resolved.
pub const PENDING: usize = 16;
/// The largest frame held.
pub const PENDING_FRAME: usize = crate::device::FRAME_MAX;
/// How long an answer is believed.
pub const REACHABLE: u64 = 60 * SEC;
/// How long a frame waits for an answer before it is dropped.
pub const PENDING_WAIT: u64 = SEC;
/// Requests for one address at most this often.
pub const REQUEST_GAP: u64 = 200 * MS;

#[derive(Clone, Copy)]
struct Neighbour {
    ip: Ipv4,
    mac: [u8; 6],
    learned: Instant,
}

/// A frame waiting for its next hop's MAC.
pub struct Pending {
    /// The next hop.
    pub hop: Ipv4,
    /// When it was queued.
    pub since: Instant,
    /// Frame length in `frame`.
    pub len: usize,
    /// The frame; bytes 0..6 (destination MAC) are filled in on answer.
    pub frame: [u8; PENDING_FRAME],
}

/// Neighbour table and pending frames.
pub struct Neighbours {
    table: [Option<Neighbour>; NEIGHBOURS],
    asked: [(Ipv4, Instant); 8],
    pending: heapless::Deque<Pending, PENDING>,
}

impl Default for Neighbours {
    fn default() -> Self {
        Neighbours {
            table: [None; NEIGHBOURS],
            asked: [(Ipv4([0; 4]), 0); 8],
            pending: heapless::Deque::new(),
        }
    }
}

impl Neighbours {
    /// The MAC of `ip`, if known and fresh.
    pub fn lookup(&self, now: Instant, ip: Ipv4) -> Option<[u8; 6]> {
        self.table
            .iter()
            .flatten()
            .find(|n| n.ip == ip && now.saturating_sub(n.learned) < REACHABLE)
            .map(|n| n.mac)
    }

    /// Learns `ip` at `mac` (from ARP addressed to us).
    pub fn learn(&mut self, now: Instant, ip: Ipv4, mac: [u8; 6]) {
        let slot = self
            .table
            .iter()
            .position(|n| n.is_some_and(|n| n.ip == ip))
            .or_else(|| self.table.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                // Full: replace the oldest.
                let mut oldest = 0;
                for (i, n) in self.table.iter().enumerate() {
                    if let (Some(n), Some(o)) = (n, &self.table[oldest]) {
                        if n.learned < o.learned {
                            oldest = i;
                        }
                    }
                }
                oldest
            });
        self.table[slot] = Some(Neighbour {
            ip,
            mac,
            learned: now,
        });
    }

    /// Whether a request for `hop` should go out now (not asked within
    /// `REQUEST_GAP`); records it if so.
    pub fn should_ask(&mut self, now: Instant, hop: Ipv4) -> bool {
        if let Some(a) = self.asked.iter_mut().find(|a| a.0 == hop) {
            if now.saturating_sub(a.1) < REQUEST_GAP {
                return false;
            }
            a.1 = now;
            return true;
        }
        let oldest = self.asked.iter_mut().min_by_key(|a| a.1).map(|a| {
            *a = (hop, now);
        });
        oldest.is_some()
    }

    /// Holds `frame` for `hop`; false (and nothing held) when the queue is full.
    pub fn hold(&mut self, now: Instant, hop: Ipv4, frame: &[u8]) -> bool {
        if frame.len() > PENDING_FRAME || self.pending.is_full() {
            return false;
        }
        let mut p = Pending {
            hop,
            since: now,
            len: frame.len(),
            frame: [0; PENDING_FRAME],
        };
        p.frame[..frame.len()].copy_from_slice(frame);
        self.pending.push_back(p).is_ok()
    }

    /// Sends (through `send`) every held frame whose hop is now known, drops
    /// those that waited too long; returns (sent, dropped).
    pub fn release(&mut self, now: Instant, mut send: impl FnMut(&[u8]) -> bool) -> (u64, u64) {
        let (mut sent, mut dropped) = (0, 0);
        for _ in 0..self.pending.len() {
            let Some(mut p) = self.pending.pop_front() else {
                break;
            };
            if let Some(mac) = self.lookup(now, p.hop) {
                p.frame[..6].copy_from_slice(&mac);
                if send(&p.frame[..p.len]) {
                    sent += 1;
                } else {
                    dropped += 1;
                }
            } else if now.saturating_sub(p.since) >= PENDING_WAIT
                || self.pending.push_back(p).is_err()
            {
                dropped += 1;
            }
        }
        (sent, dropped)
    }

    /// Whether frames are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Entries in use, and the table's size.
    pub fn fill(&self) -> (usize, usize) {
        (self.table.iter().flatten().count(), NEIGHBOURS)
    }
}

/// What an ARP packet means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpView {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender MAC and IP.
    pub sender_mac: [u8; 6],
    /// Sender IPv4.
    pub sender_ip: Ipv4,
    /// Target IPv4.
    pub target_ip: Ipv4,
}

/// Parses an Ethernet/IPv4 ARP packet (the frame's payload after the
/// Ethernet header).
pub fn parse_arp(frame: &[u8]) -> Option<ArpView> {
    let p = frame.get(ETH_LEN..ETH_LEN + 28)?;
    if p[0..2] != [0, 1] || p[2..4] != [8, 0] || p[4] != 6 || p[5] != 4 {
        return None;
    }
    let mut sender_mac = [0; 6];
    sender_mac.copy_from_slice(&p[8..14]);
    Some(ArpView {
        op: u16::from_be_bytes([p[6], p[7]]),
        sender_mac,
        sender_ip: Ipv4([p[14], p[15], p[16], p[17]]),
        target_ip: Ipv4([p[24], p[25], p[26], p[27]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::packet;
    use std::vec::Vec;

    fn ip(i: u8) -> Ipv4 {
        Ipv4([198, 18, 0, i])
    }

    #[test]
    fn an_answer_is_believed_for_a_minute_and_the_oldest_makes_room() {
        let mut n = Neighbours::default();
        assert_eq!(n.fill(), (0, NEIGHBOURS));
        n.learn(0, ip(1), [1; 6]);
        assert_eq!(n.lookup(60 * SEC - 1, ip(1)), Some([1; 6]));
        assert_eq!(n.lookup(60 * SEC, ip(1)), None, "REACHABLE is 60 s");
        // Learning again refreshes the same entry (no second one).
        n.learn(10, ip(1), [2; 6]);
        assert_eq!(n.fill(), (1, NEIGHBOURS));
        assert_eq!(n.lookup(11, ip(1)), Some([2; 6]));
        // Full: the entry learned longest ago goes, whatever its slot.
        for i in 2..=NEIGHBOURS as u8 {
            n.learn(100 + u64::from(i), ip(i), [i; 6]);
        }
        assert_eq!(n.fill(), (NEIGHBOURS, NEIGHBOURS));
        n.learn(1000, ip(200), [200; 6]);
        assert_eq!(
            n.lookup(1000, ip(1)),
            None,
            "the oldest (learned at 10) went"
        );
        assert_eq!(n.lookup(1000, ip(2)), Some([2; 6]));
        assert_eq!(n.lookup(1000, ip(200)), Some([200; 6]));
        n.learn(1001, ip(201), [201; 6]);
        assert_eq!(n.lookup(1001, ip(2)), None, "then the next oldest");
        assert_eq!(n.lookup(1001, ip(3)), Some([3; 6]));
    }

    #[test]
    fn one_request_per_address_per_gap() {
        // (Times well after 0: a free slot of the asked table reads as asked at 0.)
        let t = 10 * SEC;
        let mut n = Neighbours::default();
        assert!(n.should_ask(t, ip(1)));
        assert!(!n.should_ask(t + 199 * MS, ip(1)), "REQUEST_GAP is 200 ms");
        assert!(n.should_ask(t, ip(2)), "another address is asked at once");
        assert!(n.should_ask(t + 200 * MS, ip(1)));
        assert!(!n.should_ask(t + 201 * MS, ip(1)));
        assert!(!n.should_ask(t + 100 * MS, ip(2)));
    }

    #[test]
    fn held_frames_go_once_answered_or_drop_after_a_second() {
        let mut n = Neighbours::default();
        assert!(!n.has_pending());
        let frame = [0xaau8; 60];
        assert!(n.hold(0, ip(1), &frame));
        assert!(n.hold(0, ip(2), &frame));
        assert!(n.has_pending());
        assert!(
            !n.hold(0, ip(1), &[0; PENDING_FRAME + 1]),
            "too big to hold"
        );
        assert!(
            n.hold(0, ip(3), &[0; PENDING_FRAME]),
            "the largest frame is held"
        );
        // ip(1) answers: its frame goes with the MAC filled in.
        n.learn(5, ip(1), [7; 6]);
        let mut sent = Vec::new();
        assert_eq!(
            n.release(5, |f| {
                sent.push(f.to_vec());
                true
            }),
            (1, 0)
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0][..6].to_vec(), sent[0].len()),
            ([7u8; 6].to_vec(), 60)
        );
        // A device that refuses the frame: counted as dropped.
        n.learn(6, ip(2), [8; 6]);
        assert_eq!(n.release(6, |_| false), (0, 1));
        // The unanswered one waits up to PENDING_WAIT, then goes.
        assert_eq!(n.release(SEC - 1, |_| true), (0, 0));
        assert!(n.has_pending());
        assert_eq!(n.release(SEC, |_| true), (0, 1));
        assert!(!n.has_pending());
        // At most PENDING frames wait.
        for _ in 0..PENDING {
            assert!(n.hold(2 * SEC, ip(9), &frame));
        }
        assert!(!n.hold(2 * SEC, ip(9), &frame));
    }

    #[test]
    fn only_ethernet_ipv4_arp_is_parsed() {
        let mut buf = [0u8; 64];
        let len = packet::arp_request(&mut buf, [2; 6], ip(2), ip(3));
        let good = buf[..len].to_vec();
        let v = parse_arp(&good).unwrap();
        assert_eq!(
            (v.op, v.sender_mac, v.sender_ip, v.target_ip),
            (1, [2; 6], ip(2), ip(3))
        );
        // Hardware type, protocol type, and the two address lengths.
        for (at, value) in [(0, 6), (1, 2), (2, 0x86), (3, 0xdd), (4, 8), (5, 16)] {
            let mut b = good.clone();
            b[ETH_LEN + at] = value;
            assert_eq!(parse_arp(&b), None, "byte {at}");
        }
        assert_eq!(parse_arp(&good[..ETH_LEN + 27]), None);
    }
}
