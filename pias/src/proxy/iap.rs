//! The IAP role: each group's cached JAP list (or the memory that it has no
//! member), lookups through the nearest RAP with retries, and bounced packets.

use super::select;
use super::timers::Timer;
use super::{Policy, Proxy, MAX_K};
use crate::addr::{Endpoint, Group};
use crate::fixed::FixedMap;
use crate::time::{Instant, SEC};
use crate::wire::{Message, ProxyId, RankedJap, Tried, MAX_CARRIED, MAX_RANKED};
use heapless::Vec as HVec;

/// A group's JAPs as a RAP ranked them; an empty list means no RAP knows a
/// member (a negative entry, kept for `negative_ttl`).
#[derive(Clone, Debug)]
pub(super) struct CacheEntry {
    pub(super) japs: HVec<RankedJap, MAX_RANKED>,
    pub(super) expires: Instant,
    /// After this a packet to the group also asks a RAP for a fresh list
    /// (JAPs joined, counts moved), without waiting for `expires`.
    pub(super) refresh_at: Instant,
}

/// A lookup in progress.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    /// Which of the group's RAPs (nearest first) was asked, and who that is.
    pub(super) rap_index: usize,
    pub(super) asked: ProxyId,
    pub(super) deadline: Instant,
    pub(super) client: Endpoint,
    /// The packet that started it, while no RAP may have delivered it: an
    /// empty answer passes it to the next RAP; a timeout drops it (the RAP
    /// may have delivered it, and a duplicate is worse than a loss).
    pub(super) packet: Option<HVec<u8, MAX_CARRIED>>,
    pub(super) tried: Tried,
}

/// The IAP's tables.
pub(super) struct Iap {
    pub(super) cache: FixedMap<Group, CacheEntry>,
    pub(super) pending: FixedMap<Group, Pending>,
}

/// Lookups handled per pass of the timer (a stack batch).
const BATCH: usize = 16;

impl Iap {
    pub(super) fn new(cfg: &super::ProxyConfig) -> Iap {
        Iap {
            cache: FixedMap::with_capacity(cfg.max_groups),
            pending: FixedMap::with_capacity(cfg.max_pending),
        }
    }
}

impl Proxy {
    /// Sends a client packet on: to the cached JAP for this client, else
    /// through a RAP. `tried` are JAPs that bounced it already.
    pub(super) fn iap_send(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        packet: &[u8],
        tried: &Tried,
    ) {
        let policy = self
            .cfg
            .group_policy(&group)
            .map_or(Policy::Proximity, |g| g.policy);
        let me = self.cfg.id;
        if let Some(c) = self.iap.cache.get(&group) {
            if now < c.expires {
                if c.japs.is_empty() {
                    self.counters.iap.negative_hits += 1;
                    return;
                }
                let stale = now >= c.refresh_at;
                let pick = select::pick(policy, &c.japs, client, me, tried, |j| self.peer_up(j));
                if stale && !self.iap.pending.contains_key(&group) {
                    self.refresh_list(now, group, client);
                }
                if let Some(jap) = pick {
                    self.counters.iap.forwards += 1;
                    let msg = Message::Forward {
                        group,
                        client,
                        iap: me,
                        tried: tried.clone(),
                        packet,
                    };
                    self.send_proxy(now, jap, &msg);
                    return;
                }
                // Every cached JAP bounced it or is down: a RAP may know others.
            } else {
                self.iap.cache.remove(&group);
            }
        }
        if tried.is_full() {
            self.counters.iap.bounced_drops += 1;
            return;
        }
        self.lookup(now, group, client, Some(packet), tried);
    }

    /// Asks the nearest RAP of `group` (the next one while a lookup is pending).
    fn lookup(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        packet: Option<&[u8]>,
        tried: &Tried,
    ) {
        let raps = self.raps_of(&group);
        let index = self.iap.pending.get(&group).map_or(0, |p| p.rap_index);
        let Some(rap) = self.nearest(&raps, index) else {
            self.counters.iap.lookups_failed += 1;
            return;
        };
        if !self.iap.pending.contains_key(&group) {
            let p = Pending {
                rap_index: index,
                asked: rap,
                deadline: now + self.cfg.lookup_timeout,
                client,
                packet: packet.and_then(|b| HVec::from_slice(b).ok()),
                tried: tried.clone(),
            };
            if self.iap.pending.insert(group, p).is_err() {
                self.counters.iap.refused += 1;
            } else {
                self.timers
                    .set_earliest(Timer::Lookups, now + self.cfg.lookup_timeout);
            }
        }
        self.send_lookup(now, rap, group, client, packet, tried);
    }

    fn send_lookup(
        &mut self,
        now: Instant,
        rap: ProxyId,
        group: Group,
        client: Endpoint,
        packet: Option<&[u8]>,
        tried: &Tried,
    ) {
        self.counters.iap.lookups_sent += 1;
        let msg = Message::Lookup {
            group,
            client,
            iap_coord: self.coord,
            tried: tried.clone(),
            packet,
        };
        self.send_proxy(now, rap, &msg);
    }

    /// The RAPs ordered by nearness (self, own cluster, then predicted RTT);
    /// returns the `index`-th, so retries walk the list.
    fn nearest(&self, raps: &[ProxyId], index: usize) -> Option<ProxyId> {
        let mut order: HVec<(u64, ProxyId), MAX_K> = raps
            .iter()
            .map(|&r| {
                let score = if r == self.cfg.id {
                    0
                } else if self.roster.cluster_of(r) == Some(self.cfg.cluster) {
                    1
                } else {
                    // The cast saturates (a huge distance too): no overflow.
                    self.predicted_rtt_ms(r)
                        .map_or(u64::MAX / 2, |ms| ((ms * 1000.0) as u64).saturating_add(2))
                };
                (score, r)
            })
            .collect();
        order.sort_unstable();
        order.get(index).map(|&(_, r)| r)
    }

    /// A RAP's answer. An empty list from the RAP we asked sends the lookup
    /// (with its packet) to the next RAP: one RAP may have lost its state.
    pub(super) fn iap_install(
        &mut self,
        now: Instant,
        from: ProxyId,
        group: Group,
        japs: &[RankedJap],
        ttl_s: u32,
    ) {
        if !japs.is_empty() {
            self.iap.pending.remove(&group);
            let ttl = (u64::from(ttl_s) * SEC).min(self.cfg.cache_ttl);
            self.install(now, group, japs, now + ttl);
            return;
        }
        let Some(p) = self.iap.pending.get(&group) else {
            return;
        };
        if p.asked != from {
            // A late answer from a RAP we no longer wait for.
            return;
        }
        self.next_rap(now, group, true);
    }

    /// Asks the nearest RAP for the group's list again (no packet), at most
    /// once per `report_refresh` while the group has traffic.
    pub(super) fn refresh_list(&mut self, now: Instant, group: Group, client: Endpoint) {
        if let Some(c) = self.iap.cache.get_mut(&group) {
            c.refresh_at = now.saturating_add(self.cfg.report_refresh);
        }
        let raps = self.raps_of(&group);
        if let Some(rap) = self.nearest(&raps, 0) {
            self.counters.iap.list_refreshes += 1;
            self.send_lookup(now, rap, group, client, None, &Tried::new());
        }
    }

    fn install(&mut self, now: Instant, group: Group, japs: &[RankedJap], expires: Instant) {
        let entry = CacheEntry {
            japs: japs.iter().copied().take(MAX_RANKED).collect(),
            expires,
            refresh_at: now.saturating_add(self.cfg.report_refresh).min(expires),
        };
        if self.iap.cache.insert(group, entry).is_err() {
            self.counters.iap.refused += 1;
        }
    }

    /// Moves a pending lookup to the next RAP; after the last one, remembers
    /// for `negative_ttl` that the group has no member anywhere.
    fn next_rap(&mut self, now: Instant, group: Group, with_packet: bool) {
        let k = self.cfg.k_raps.clamp(1, MAX_K);
        let raps = self.raps_of(&group);
        let Some(mut p) = self.iap.pending.remove(&group) else {
            return;
        };
        p.rap_index += 1;
        let next = if p.rap_index < k {
            self.nearest(&raps, p.rap_index)
        } else {
            None
        };
        let Some(rap) = next else {
            self.counters.iap.lookups_failed += 1;
            // No RAP knows a member yet, but this proxy holds one (it joined
            // while the lookup was out, before its report reached them): no
            // negative entry, so the next packet looks up again.
            if self.live_targets(&group) == 0 {
                self.install(now, group, &[], now + self.cfg.negative_ttl);
            }
            return;
        };
        self.counters.iap.lookup_retries += 1;
        if !with_packet {
            p.packet = None;
        }
        p.asked = rap;
        p.deadline = now + self.cfg.lookup_timeout;
        let (client, tried) = (p.client, p.tried.clone());
        let packet = p.packet.clone();
        if self.iap.pending.insert(group, p).is_ok() {
            self.timers
                .set_earliest(Timer::Lookups, now + self.cfg.lookup_timeout);
        }
        self.send_lookup(now, rap, group, client, packet.as_deref(), &tried);
    }

    /// Lookups whose RAP did not answer in time go to the next RAP, without
    /// their packet.
    pub(super) fn lookup_timers(&mut self, now: Instant) {
        for _ in 0..=self.iap.pending.len() / BATCH + 1 {
            let due: HVec<Group, BATCH> = self.iap.pending.keys_where(|p| p.deadline <= now);
            if due.is_empty() {
                break;
            }
            for g in due {
                self.next_rap(now, g, false);
            }
        }
        match self.iap.pending.iter().map(|(_, p)| p.deadline).min() {
            Some(d) => self.timers.set(Timer::Lookups, d.max(now + 1)),
            None => self.timers.stop(Timer::Lookups),
        }
    }

    /// A JAP's invalidation: drop it from the cache when it has no target
    /// left; offer a bounced packet to a JAP that has not had it.
    pub(super) fn on_invalidate(
        &mut self,
        now: Instant,
        from: ProxyId,
        group: Group,
        gone: bool,
        bounced: Option<(Endpoint, &Tried, &[u8])>,
    ) {
        self.counters.iap.invalidations += 1;
        if gone {
            if let Some(c) = self.iap.cache.get_mut(&group) {
                c.japs.retain(|r| r.jap != from);
                if c.japs.is_empty() {
                    self.iap.cache.remove(&group);
                }
            }
        }
        let Some((client, tried, packet)) = bounced else {
            return;
        };
        let mut tried = tried.clone();
        if !tried.contains(&from) && tried.push(from).is_err() {
            self.counters.iap.bounced_drops += 1;
            return;
        }
        self.iap_send(now, group, client, packet, &tried);
    }

    /// A proxy went down: the RAP sets may change, so the memory that no RAP
    /// knows a member goes. (A down JAP stays in the cached lists, skipped
    /// while down, used again when it is believed up.)
    pub(super) fn iap_drop_negative(&mut self) {
        self.iap.cache.retain(|_, c| !c.japs.is_empty());
    }

    /// A member of `group` joined here: a negative entry for it (a RAP said
    /// no member anywhere) is wrong now, and would drop this proxy's own
    /// clients' packets until it expires; forget it, so the next packet
    /// looks the group up again.
    pub(super) fn iap_forget_negative(&mut self, group: &Group) {
        if self.iap.cache.get(group).is_some_and(|c| c.japs.is_empty()) {
            self.iap.cache.remove(group);
        }
    }

    /// The IAP's cached JAP list for `g`.
    pub fn cached_japs(&self, g: &Group) -> alloc::vec::Vec<ProxyId> {
        self.iap.cache.get(g).map_or(alloc::vec::Vec::new(), |c| {
            c.japs.iter().map(|r| r.jap).collect()
        })
    }
}
