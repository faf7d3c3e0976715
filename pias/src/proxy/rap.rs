//! The RAP role: each group's JAPs with their approximate counts (soft state:
//! acknowledged, refreshed, expired), the band in its acks, and the lookup.

use super::select;
use super::timers::Timer;
use super::{Policy, Proxy};
use crate::addr::{Endpoint, Group};
use crate::fixed::FixedMap;
use crate::pool::{List, ListPool};
use crate::proximity;
use crate::ring::mix64;
use crate::time::{Instant, SEC};
use crate::wire::{Coord, Message, ProxyId, RankedJap, Tried, MAX_RANKED};
use heapless::Vec as HVec;

/// One JAP of a group as its RAP holds it.
#[derive(Clone, Copy, Debug)]
pub(super) struct JapEntry {
    pub(super) jap: ProxyId,
    pub(super) count: u32,
    pub(super) coord: Coord,
    /// When its last report arrived: the entry expires `report_expiry` later.
    pub(super) refreshed: Instant,
}

/// The RAP's tables: a list of JAPs per group, all in one pool.
pub(super) struct Rap {
    pub(super) groups: FixedMap<Group, List>,
    pub(super) japs: ListPool<JapEntry>,
}

/// A `Lookup` as the RAP handles it.
pub(super) struct LookupArgs<'p> {
    pub(super) group: Group,
    pub(super) client: Endpoint,
    pub(super) iap_coord: Coord,
    pub(super) tried: &'p Tried,
    pub(super) packet: Option<&'p [u8]>,
}

impl Rap {
    pub(super) fn new(cfg: &super::ProxyConfig) -> Rap {
        Rap {
            groups: FixedMap::with_capacity(cfg.max_groups),
            japs: ListPool::with_capacity(cfg.max_rap_entries),
        }
    }

    /// The fuller of the group table and the entry pool, in percent.
    pub(super) fn fill_pct(&self) -> usize {
        let g = self.groups.len() * 100 / self.groups.capacity().max(1);
        let e = self.japs.len() * 100 / self.japs.capacity().max(1);
        g.max(e)
    }
}

impl Proxy {
    /// The band a RAP asks its JAPs to keep: the group's own while the RAP's
    /// tables are under half full, twice it up to 80%, four times it beyond.
    pub(super) fn band_for_load(&self, g: &Group) -> u8 {
        let base = self.cfg.group_policy(g).map_or(10, |c| c.band_pct);
        match self.rap.fill_pct() {
            0..=49 => base,
            50..=79 => base.saturating_mul(2).min(100),
            _ => base.saturating_mul(4).min(100),
        }
    }

    pub(super) fn rap_report(
        &mut self,
        now: Instant,
        from: ProxyId,
        group: Group,
        count: u32,
        coord: Coord,
    ) {
        self.counters.rap.reports += 1;
        self.learn_coord(from, coord);
        let per_group = self.cfg.max_japs_per_group;
        let rap = &mut self.rap;
        if count == 0 {
            if let Some(list) = rap.groups.get_mut(&group) {
                rap.japs.retain(list, |e| e.jap != from);
                if list.is_empty() {
                    rap.groups.remove(&group);
                }
            }
        } else {
            match rap.groups.get_or_insert_with(group, List::default) {
                Ok(list) => {
                    if let Some(e) = rap.japs.find_mut(list, |e| e.jap == from) {
                        e.count = count;
                        e.coord = coord;
                        e.refreshed = now;
                    } else if list.len() >= per_group
                        || rap
                            .japs
                            .push(
                                list,
                                JapEntry {
                                    jap: from,
                                    count,
                                    coord,
                                    refreshed: now,
                                },
                            )
                            .is_err()
                    {
                        self.counters.rap.refused += 1;
                        if list.is_empty() {
                            rap.groups.remove(&group);
                        }
                        // No ack: the JAP retries, and may find room later.
                        return;
                    }
                }
                Err(_) => {
                    self.counters.rap.refused += 1;
                    return;
                }
            }
            if self.timers.get(Timer::RapExpiry).is_none() {
                self.timers
                    .set(Timer::RapExpiry, now + self.cfg.report_expiry / 4);
            }
        }
        let band_pct = self.band_for_load(&group);
        let ack = Message::ReportAck {
            group,
            count,
            band_pct,
        };
        self.send_proxy(now, from, &ack);
    }

    /// Forgets JAP entries not refreshed within `report_expiry`.
    pub(super) fn rap_expire(&mut self, now: Instant) {
        let expiry = self.cfg.report_expiry;
        let Rap { groups, japs } = &mut self.rap;
        let mut expired = 0u64;
        groups.retain(|_, list| {
            japs.retain(list, |e| {
                let keep = now.saturating_sub(e.refreshed) < expiry;
                expired += u64::from(!keep);
                keep
            });
            !list.is_empty()
        });
        self.counters.rap.expired += expired;
        if self.rap.groups.is_empty() {
            self.timers.stop(Timer::RapExpiry);
        } else {
            self.timers
                .set(Timer::RapExpiry, now + (expiry / 4).max(SEC));
        }
    }

    /// A proxy went down: its reports no longer count.
    pub(super) fn rap_forget_jap(&mut self, p: ProxyId) {
        let Rap { groups, japs } = &mut self.rap;
        groups.retain(|_, list| {
            japs.retain(list, |e| e.jap != p);
            !list.is_empty()
        });
    }

    /// Up to `MAX_RANKED` of the live JAPs this proxy holds as RAP for `g`,
    /// best first for `policy` and the asking IAP:
    /// - `Proximity`: nearest `iap_coord`.
    /// - `Load` and `Random`: a uniform sample drawn per IAP (rendezvous on
    ///   the IAP's id), so that beyond 8 JAPs every JAP is in some IAPs'
    ///   lists; the IAP then weighs the 8 by count (`Load`), which keeps the
    ///   overall spread close to proportional (a sample weighted by count too
    ///   would weigh the heavy JAPs twice). With 8 or fewer, all.
    /// - `ClientHash`: most members, then lowest id: the same list for every
    ///   IAP, so a client maps to the same JAP from any of them.
    fn ranked(
        &self,
        g: &Group,
        policy: Policy,
        iap: ProxyId,
        iap_coord: &Coord,
    ) -> HVec<RankedJap, MAX_RANKED> {
        let mut best: HVec<(f64, RankedJap), MAX_RANKED> = HVec::new();
        let Some(list) = self.rap.groups.get(g) else {
            return HVec::new();
        };
        let better = |a: &(f64, RankedJap), b: &(f64, RankedJap)| {
            a.0.total_cmp(&b.0)
                .then(b.1.count.cmp(&a.1.count))
                .then(a.1.jap.cmp(&b.1.jap))
                .is_lt()
        };
        let draw = |jap: ProxyId| mix64(mix64(u64::from(iap)) ^ u64::from(jap));
        for e in self.rap.japs.iter(list).filter(|e| self.peer_up(e.jap)) {
            // Lower is better.
            let score = match policy {
                // The IAP itself, when it is a JAP of the group, is nearest
                // whatever the coordinates say (they are noisy, and fresh ones
                // say nothing).
                Policy::Proximity if e.jap == iap => f64::NEG_INFINITY,
                Policy::Proximity => f64::from(proximity::distance(iap_coord, &e.coord)),
                Policy::Load | Policy::Random => -select::weighted_score(draw(e.jap), 1),
                Policy::ClientHash => 0.0,
            };
            let item = (
                score,
                RankedJap {
                    jap: e.jap,
                    count: e.count,
                },
            );
            let pos = best
                .iter()
                .position(|b| better(&item, b))
                .unwrap_or(best.len());
            if pos < MAX_RANKED {
                if best.is_full() {
                    best.pop();
                }
                let _ = best.insert(pos, item);
            }
        }
        best.iter().map(|(_, r)| *r).collect()
    }

    pub(super) fn rap_lookup(&mut self, now: Instant, iap: ProxyId, args: LookupArgs) {
        let LookupArgs {
            group,
            client,
            iap_coord,
            tried,
            packet,
        } = args;
        self.counters.rap.lookups += 1;
        let policy = self
            .cfg
            .group_policy(&group)
            .map_or(Policy::Proximity, |g| g.policy);
        let japs = self.ranked(&group, policy, iap, &iap_coord);
        if let Some(packet) = packet {
            // The same choice the IAP makes for the client's later packets.
            match select::pick(policy, &japs, client, iap, tried, |j| self.peer_up(j)) {
                Some(jap) => {
                    self.counters.rap.forwards += 1;
                    let msg = Message::Forward {
                        group,
                        client,
                        iap,
                        tried: tried.clone(),
                        packet,
                    };
                    self.send_proxy(now, jap, &msg);
                }
                None => self.counters.rap.no_member_drops += 1,
            }
        }
        let ttl_s = u32::try_from(self.cfg.cache_ttl / SEC).unwrap_or(u32::MAX);
        self.send_proxy(now, iap, &Message::JapList { group, japs, ttl_s });
    }

    /// The JAPs and counts this proxy holds as RAP for `g`.
    pub fn rap_entries(&self, g: &Group) -> alloc::vec::Vec<(ProxyId, u32)> {
        self.rap.groups.get(g).map_or(alloc::vec::Vec::new(), |l| {
            self.rap.japs.iter(l).map(|e| (e.jap, e.count)).collect()
        })
    }
}
