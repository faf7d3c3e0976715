//! What the proxy asks its I/O layer to send (`Transmit`), and the queue,
//! signing and addressing behind `poll_transmit`.

use super::{GroupConfig, Proxy};
use crate::addr::{Endpoint, Group};
use crate::time::Instant;
use crate::wire::{self, Key, Message, ProxyId, MAX_MESSAGE};
use heapless::Vec as HVec;

/// A message or packet as bytes, at most one datagram.
pub type Buf = HVec<u8, MAX_MESSAGE>;

/// What the proxy asks its I/O layer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A signed message to another proxy's unicast address and proxy port.
    Proxy { to: ProxyId, bytes: Buf },
    /// A signed message to a target, from the registration port of the group's address.
    Target { to: Endpoint, bytes: Buf },
    /// A client packet to a target (the I/O layer NATs it: from the JAP to `target`).
    Deliver {
        group: Group,
        client: Endpoint,
        target: Endpoint,
        packet: Buf,
    },
    /// A target's reply to a client, sourced from the group address.
    ToClient {
        group: Group,
        client: Endpoint,
        packet: Buf,
    },
}

impl Proxy {
    /// The next datagram to send: the queue first, then our news floods.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.tx.pop_front() {
            return Some(t);
        }
        self.next_flood_message()
    }

    /// Whether anything is waiting for `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        !self.tx.is_empty() || !self.floods.is_empty()
    }

    pub(super) fn push(&mut self, t: Transmit) {
        if self.tx.len() >= self.tx_cap {
            self.counters.tx_queue_full += 1;
            return;
        }
        self.tx.push_back(t);
    }

    pub(super) fn encode(&mut self, msg: &Message, key: &Key, sender: ProxyId) -> Option<Buf> {
        self.seq += 1;
        let mut buf = Buf::new();
        // A Buf is MAX_MESSAGE bytes: fill it, encode, then cut to length.
        let _ = buf.resize(MAX_MESSAGE, 0);
        match wire::encode(sender, self.seq, msg, key, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => {
                self.counters.oversized += 1;
                None
            }
        }
    }

    /// Sends to a proxy; a message to itself is handled at once.
    pub(super) fn send_proxy(&mut self, now: Instant, to: ProxyId, msg: &Message) {
        if to == self.cfg.id {
            self.on_proxy_message(now, to, msg);
            return;
        }
        let key = self.cfg.deployment_key.clone();
        if let Some(bytes) = self.encode(msg, &key, self.cfg.id) {
            self.push(Transmit::Proxy { to, bytes });
        }
    }

    pub(super) fn send_target(&mut self, to: Endpoint, group: &Group, msg: &Message) {
        let Some(key) = self.group_key(group) else {
            return;
        };
        if let Some(bytes) = self.encode(msg, &key, self.cfg.id) {
            self.push(Transmit::Target { to, bytes });
        }
    }

    pub(super) fn group_cfg(&self, g: &Group) -> Option<&GroupConfig> {
        self.cfg.groups.iter().find(|c| c.group == *g)
    }

    pub(super) fn group_key(&self, g: &Group) -> Option<Key> {
        self.group_cfg(g).map(|c| c.key.clone())
    }
}
