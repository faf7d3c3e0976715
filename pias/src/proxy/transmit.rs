//! What the proxy asks its I/O layer to send (`Transmit`), and the outbox that
//! signs, numbers and queues it for `poll_transmit` without allocating.

use crate::addr::{Endpoint, Group};
use crate::wire::{self, Key, Message, ProxyId, Sender, MAX_MESSAGE};
use alloc::collections::VecDeque;
use heapless::Vec as HVec;

/// A message or packet as bytes, at most one datagram.
pub type Buf = HVec<u8, MAX_MESSAGE>;

/// What the proxy asks its I/O layer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A signed message to another proxy's unicast address and proxy port.
    Proxy {
        /// The proxy it is for.
        to: ProxyId,
        /// The signed message.
        bytes: Buf,
    },
    /// A signed message to a target, from the registration port of `group`'s address.
    Target {
        /// The group whose address it comes from.
        group: Group,
        /// The target.
        to: Endpoint,
        /// The signed message.
        bytes: Buf,
    },
    /// A client packet to a target (the I/O layer NATs it: from the JAP to `target`).
    Deliver {
        /// The group it was sent to.
        group: Group,
        /// The client that sent it.
        client: Endpoint,
        /// The target chosen for it.
        target: Endpoint,
        /// The client's transport segment.
        packet: Buf,
    },
    /// A target's reply to a client, sourced from the group address.
    ToClient {
        /// The group it answers for.
        group: Group,
        /// The client.
        client: Endpoint,
        /// The target's transport segment.
        packet: Buf,
    },
}

/// The queued transmits, lent to the I/O layer to read in place
/// (`Proxy::lend_transmits`): a `Transmit` holds a whole datagram's room,
/// 1.4 KB, which each move out of the queue would copy. Hand it back
/// (`Proxy::return_transmits`): the queue's reserved room goes with it.
/// While it is out, the proxy queues into a new, growing queue (it
/// allocates): the appliance's data plane calls into the proxy only after
/// handing it back.
#[derive(Debug)]
#[must_use = "a lent queue holds the outbox's reserved room: hand it back"]
pub struct Lent(VecDeque<Transmit>);

impl Lent {
    /// The transmits, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Transmit> {
        self.0.iter()
    }
}

/// Signs and queues outgoing datagrams; its capacity is fixed at start.
pub(super) struct Outbox {
    id: ProxyId,
    boot: u64,
    /// The last sequence number used; numbers follow the clock (µs, and
    /// strictly increase), so a receiver can refuse very old ones.
    seq: u64,
    /// The clock as of the latest input.
    clock: u64,
    queue: VecDeque<Transmit>,
    cap: usize,
    /// Datagrams dropped because the queue was full.
    pub(super) full: u64,
    /// Messages that did not fit a datagram.
    pub(super) oversized: u64,
}

impl Outbox {
    pub(super) fn new(id: ProxyId, boot: u64, cap: usize) -> Outbox {
        Outbox {
            id,
            boot,
            seq: 0,
            clock: boot,
            queue: VecDeque::with_capacity(cap),
            cap,
            full: 0,
            oversized: 0,
        }
    }

    /// The clock advanced to `now` (called at every input).
    pub(super) fn set_clock(&mut self, now: u64) {
        self.clock = self.clock.max(now);
    }

    /// Whether a datagram would be queued now.
    pub(super) fn has_room(&self) -> bool {
        self.queue.len() < self.cap
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(super) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// The queue, lent out whole (a pointer's move; the empty queue left
    /// behind holds no memory).
    pub(super) fn lend(&mut self) -> Lent {
        Lent(core::mem::take(&mut self.queue))
    }

    /// Takes back a lent queue, emptied, its room kept; anything queued
    /// meanwhile stays, after what was lent. Of the two queues the one with
    /// more room stays (that of the outbox's capacity, as reserved at start).
    pub(super) fn give_back(&mut self, mut lent: Lent) {
        lent.0.clear();
        if lent.0.capacity() >= self.queue.capacity() {
            lent.0.append(&mut self.queue);
            self.queue = lent.0;
        }
    }

    /// Queues `t`, or counts it dropped when the queue is full.
    pub(super) fn push(&mut self, t: Transmit) {
        if self.queue.len() >= self.cap {
            self.full += 1;
            return;
        }
        self.queue.push_back(t);
    }

    /// Queues a client's packet for `target` (`Transmit::Deliver`), or a
    /// target's reply for `client` (`Transmit::ToClient`, with `target`
    /// None), its bytes copied into place: a `Transmit` built whole and
    /// moved in is copied at its full size. False if `packet` exceeds a
    /// datagram (nothing queued); a full queue counts it dropped.
    pub(super) fn push_packet(
        &mut self,
        group: Group,
        client: Endpoint,
        target: Option<Endpoint>,
        packet: &[u8],
    ) -> bool {
        if packet.len() > MAX_MESSAGE {
            return false;
        }
        if self.queue.len() >= self.cap {
            self.full += 1;
            return true;
        }
        let packet_room = Buf::new();
        self.queue.push_back(match target {
            Some(target) => Transmit::Deliver {
                group,
                client,
                target,
                packet: packet_room,
            },
            None => Transmit::ToClient {
                group,
                client,
                packet: packet_room,
            },
        });
        if let Some(Transmit::Deliver { packet: p, .. } | Transmit::ToClient { packet: p, .. }) =
            self.queue.back_mut()
        {
            // Fits: checked above against the Buf's capacity.
            let _ = p.extend_from_slice(packet);
        }
        true
    }

    /// `msg` to proxy `to` (0: a target) signed with `key`, with the next
    /// sequence number of this life.
    pub(super) fn sign(&mut self, to: ProxyId, msg: &Message, key: &Key) -> Option<Buf> {
        self.seq = self.seq.saturating_add(1).max(self.clock);
        let mut buf = Buf::new();
        // A Buf is MAX_MESSAGE bytes: fill it, encode, then cut to length.
        let _ = buf.resize(MAX_MESSAGE, 0);
        let sender = Sender::Proxy {
            id: self.id,
            boot: self.boot,
        };
        match wire::encode(sender, to, self.seq, msg, key, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => {
                self.oversized += 1;
                None
            }
        }
    }

    /// Queues `msg` to proxy `to` (never this proxy: see `Proxy::send_proxy`).
    pub(super) fn queue_proxy(&mut self, to: ProxyId, msg: &Message, key: &Key) {
        if !self.has_room() {
            self.full += 1;
            return;
        }
        if let Some(bytes) = self.sign(to, msg, key) {
            self.push(Transmit::Proxy { to, bytes });
        }
    }

    /// Queues `msg` to target `to` of `group`, signed with the group's key.
    pub(super) fn queue_target(&mut self, group: Group, to: Endpoint, msg: &Message, key: &Key) {
        if !self.has_room() {
            self.full += 1;
            return;
        }
        if let Some(bytes) = self.sign(0, msg, key) {
            self.push(Transmit::Target { group, to, bytes });
        }
    }
}
