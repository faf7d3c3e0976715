//! The IAP role: each group's cached JAP list, lookups through the nearest
//! RAP with retries, and the next JAP when one bounces a packet.

use super::Proxy;
use crate::addr::{Endpoint, Group};
use crate::time::{Instant, SEC};
use crate::wire::{Message, ProxyId, RankedJap, MAX_CARRIED, MAX_RANKED};
use alloc::vec::Vec;
use heapless::Vec as HVec;

#[derive(Clone, Debug)]
pub(super) struct CacheEntry {
    pub(super) japs: HVec<RankedJap, MAX_RANKED>,
    pub(super) expires: Instant,
}

#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) rap_index: usize,
    pub(super) deadline: Instant,
    pub(super) client: Endpoint,
    pub(super) packet: HVec<u8, MAX_CARRIED>,
}

impl Proxy {
    /// Sends a client packet on: to a cached JAP, else through a RAP.
    /// `not` excludes a JAP that just bounced it.
    pub(super) fn iap_send(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        packet: &[u8],
        not: Option<ProxyId>,
    ) {
        if let Some(c) = self.cache.get(&group) {
            if now < c.expires {
                let me = self.cfg.id;
                let jap = c
                    .japs
                    .iter()
                    .map(|r| r.jap)
                    .find(|&j| Some(j) != not && (j == me || self.peer_up(j)));
                if let Some(jap) = jap {
                    self.counters.forwards_sent += 1;
                    let msg = Message::Forward {
                        group,
                        client,
                        iap: me,
                        packet,
                    };
                    self.send_proxy(now, jap, &msg);
                    return;
                }
            }
            self.cache.remove(&group);
        }
        let raps = self.raps_of(&group);
        let index = self.pending.get(&group).map_or(0, |p| p.rap_index);
        let Some(rap) = self.nearest(&raps, index) else {
            self.counters.lookups_failed += 1;
            return;
        };
        let copy = HVec::from_slice(packet).unwrap_or_default();
        let deadline = now + self.cfg.lookup_timeout;
        if !self.pending.contains_key(&group) {
            let p = Pending {
                rap_index: index,
                deadline,
                client,
                packet: copy,
            };
            if self.pending.insert(group, p).is_err() {
                self.counters.capacity_refusals += 1;
            }
        }
        self.counters.lookups_sent += 1;
        let msg = Message::Lookup {
            group,
            client,
            iap_coord: self.coord,
            exclude: not.unwrap_or(0),
            packet,
        };
        self.send_proxy(now, rap, &msg);
    }

    /// The RAPs ordered by nearness (self, own cluster, then predicted RTT);
    /// returns the `index`-th (wrapping), so retries walk the list.
    pub(super) fn nearest(&self, raps: &[ProxyId], index: usize) -> Option<ProxyId> {
        if raps.is_empty() {
            return None;
        }
        let mut order: Vec<(u64, ProxyId)> = raps
            .iter()
            .map(|&r| {
                let score = if r == self.cfg.id {
                    0
                } else if self.roster.cluster_of(r) == Some(self.cfg.cluster) {
                    1
                } else {
                    self.predicted_rtt_ms(r)
                        .map_or(u64::MAX / 2, |ms| 2 + (ms * 1000.0) as u64)
                };
                (score, r)
            })
            .collect();
        order.sort_unstable();
        Some(order[index % order.len()].1)
    }

    pub(super) fn iap_install(
        &mut self,
        now: Instant,
        group: Group,
        japs: &[RankedJap],
        ttl_s: u32,
    ) {
        // The lookup is answered; a late or duplicate answer is still a valid list.
        self.pending.remove(&group);
        if !japs.is_empty() {
            self.install(now, group, japs, ttl_s);
        }
    }

    pub(super) fn install(&mut self, now: Instant, group: Group, japs: &[RankedJap], ttl_s: u32) {
        let ttl = (u64::from(ttl_s) * SEC).min(self.cfg.cache_ttl);
        let entry = CacheEntry {
            japs: japs.iter().copied().take(MAX_RANKED).collect(),
            expires: now + ttl,
        };
        if self.cache.insert(group, entry).is_err() {
            self.counters.capacity_refusals += 1;
        }
    }

    pub(super) fn pending_timers(&mut self, now: Instant) {
        let k = self.cfg.k_raps.max(1);
        let due: Vec<Group> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(g, _)| *g)
            .collect();
        for g in due {
            let Some(mut p) = self.pending.remove(&g) else {
                continue;
            };
            p.rap_index += 1;
            if p.rap_index >= k {
                self.counters.lookups_failed += 1;
                continue;
            }
            self.counters.lookup_retries += 1;
            let (client, packet) = (p.client, p.packet.clone());
            let _ = self.pending.insert(g, p);
            self.iap_send(now, g, client, &packet, None);
            if let Some(p) = self.pending.get_mut(&g) {
                p.deadline = now + self.cfg.lookup_timeout;
            }
        }
    }
}
