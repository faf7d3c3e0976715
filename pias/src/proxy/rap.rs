//! The RAP role: each group's JAPs with their approximate counts, the band
//! in its acks, and the ranking that answers an IAP's lookup.

use super::{Policy, Proxy};
use crate::addr::{Endpoint, Group};
use crate::fixed::FixedVec;
use crate::proximity;
use crate::ring::mix64;
use crate::time::{Instant, SEC};
use crate::wire::{Coord, Message, ProxyId, RankedJap, MAX_RANKED};
use alloc::vec::Vec;
use heapless::Vec as HVec;

#[derive(Clone, Copy, Debug)]
pub(super) struct JapEntry {
    pub(super) jap: ProxyId,
    pub(super) count: u32,
    pub(super) coord: Coord,
}

/// A `Lookup` as the RAP handles it.
pub(super) struct LookupArgs<'p> {
    pub(super) group: Group,
    pub(super) client: Endpoint,
    pub(super) iap_coord: Coord,
    pub(super) exclude: ProxyId,
    pub(super) packet: &'p [u8],
}

impl Proxy {
    pub(super) fn band_for_load(&self, g: &Group) -> u8 {
        let base = self.group_cfg(g).map_or(10, |c| c.band_pct);
        let fill = self.rap.len() * 100 / self.rap.capacity().max(1);
        match fill {
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
        self.learn_coord(from, coord);
        let cap = self.cfg.max_japs_per_group;
        if count == 0 {
            if let Some(v) = self.rap.get_mut(&group) {
                v.retain(|e| e.jap != from);
                if v.is_empty() {
                    self.rap.remove(&group);
                }
            }
        } else {
            match self
                .rap
                .get_or_insert_with(group, || FixedVec::with_capacity(cap))
            {
                Ok(v) => {
                    if let Some(e) = v.as_mut_slice().iter_mut().find(|e| e.jap == from) {
                        e.count = count;
                        e.coord = coord;
                    } else if v
                        .push(JapEntry {
                            jap: from,
                            count,
                            coord,
                        })
                        .is_err()
                    {
                        self.counters.capacity_refusals += 1;
                    }
                }
                Err(_) => self.counters.capacity_refusals += 1,
            }
        }
        let band_pct = self.band_for_load(&group);
        self.send_proxy(
            now,
            from,
            &Message::ReportAck {
                group,
                count,
                band_pct,
            },
        );
    }

    pub(super) fn rap_lookup(&mut self, now: Instant, iap: ProxyId, args: LookupArgs) {
        let LookupArgs {
            group,
            client,
            iap_coord,
            exclude,
            packet,
        } = args;
        let policy = self
            .group_cfg(&group)
            .map_or(Policy::Proximity, |g| g.policy);
        let mut ranked: Vec<(u64, JapEntry)> = Vec::new();
        if let Some(v) = self.rap.get(&group) {
            for e in v.iter().filter(|e| self.peer_up(e.jap)) {
                let score = match policy {
                    Policy::Proximity => {
                        (proximity::distance(&iap_coord, &e.coord) * 1000.0) as u64
                    }
                    Policy::Load => u64::from(u32::MAX - e.count),
                    Policy::Random => mix64(self.rng ^ u64::from(e.jap) ^ now),
                    Policy::ClientHash => {
                        mix64(u64::from(client.ip.to_u32()) << 32 ^ u64::from(e.jap))
                    }
                };
                ranked.push((score, *e));
            }
        }
        ranked.sort_unstable_by_key(|&(s, e)| (s, e.jap));
        let japs: HVec<RankedJap, MAX_RANKED> = ranked
            .iter()
            .take(MAX_RANKED)
            .map(|(_, e)| RankedJap {
                jap: e.jap,
                count: e.count,
            })
            .collect();
        let ttl_s = (self.cfg.cache_ttl / SEC) as u32;
        if let Some(first) = japs.iter().map(|r| r.jap).find(|&j| j != exclude) {
            self.counters.forwards_sent += 1;
            self.send_proxy(
                now,
                first,
                &Message::Forward {
                    group,
                    client,
                    iap,
                    packet,
                },
            );
        } else {
            self.counters.no_member_drops += 1;
        }
        self.send_proxy(now, iap, &Message::JapList { group, japs, ttl_s });
    }
}
