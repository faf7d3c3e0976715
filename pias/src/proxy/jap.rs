//! The JAP role: targets' registrations and health, count reports to the
//! RAPs, and the choice of a target for each client flow.

use super::transmit::{Buf, Transmit};
use super::MAX_K;
use super::{Proxy, DOWN_FORGET_PINGS, MAX_IAPS_PER_GROUP, RECENT_NONCES};
use crate::addr::{Endpoint, Group};
use crate::fixed::FixedVec;
use crate::ring::mix64;
use crate::time::{Instant, MS};
use crate::wire::{Message, NackReason, ProxyId, Registration};
use alloc::vec::Vec;
use heapless::Vec as HVec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Suspect,
    Down,
}

#[derive(Clone, Debug)]
pub(super) struct TargetEntry {
    pub(super) ep: Endpoint,
    pub(super) health: Health,
    pub(super) misses: u8,
    pub(super) good: u8,
    pub(super) ping_nonce: u64,
    pub(super) ping_outstanding: bool,
    pub(super) next_ping: Instant,
    pub(super) awaiting_since: Option<Instant>,
    pub(super) down_since: Option<Instant>,
    pub(super) flows: u32,
}

#[derive(Clone, Debug)]
pub(super) struct JapGroup {
    pub(super) targets: FixedVec<TargetEntry>,
    /// IAPs that sent this group's packets here (newest last), told when the group empties.
    pub(super) iaps: HVec<ProxyId, MAX_IAPS_PER_GROUP>,
    pub(super) reported: Option<u32>,
    pub(super) reported_to: HVec<ProxyId, MAX_K>,
    pub(super) band_pct: u8,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Flow {
    pub(super) target: Endpoint,
    pub(super) last: Instant,
}

impl Proxy {
    pub(super) fn nack(&mut self, r: &Registration, reason: NackReason) {
        match reason {
            NackReason::Capacity => self.counters.nack_capacity += 1,
            NackReason::Auth => self.counters.nack_auth += 1,
            _ => self.counters.nack_bad_request += 1,
        }
        let msg = Message::Nack {
            group: r.group,
            target: r.target,
            nonce: r.nonce,
            reason,
        };
        self.send_target(r.target, &r.group, &msg);
    }

    pub(super) fn on_target_message(&mut self, now: Instant, src: Endpoint, msg: &Message) {
        match *msg {
            Message::Join(ref r) | Message::Leave(ref r) => {
                let join = matches!(msg, Message::Join(_));
                let age = now.abs_diff(r.timestamp_ms.saturating_mul(MS));
                if age > self.cfg.freshness {
                    self.counters.stale += 1;
                    self.nack(r, NackReason::Auth);
                    return;
                }
                if self.recent_nonces.iter().any(|&(n, _)| n == r.nonce) {
                    self.counters.replayed += 1;
                    self.nack(r, NackReason::Auth);
                    return;
                }
                if self.recent_nonces.len() >= RECENT_NONCES {
                    self.recent_nonces.swap_remove(0);
                }
                let _ = self.recent_nonces.push((r.nonce, now));
                if src.ip != r.target.ip {
                    self.nack(r, NackReason::BadRequest);
                    return;
                }
                let result = if join {
                    self.jap_join(now, r)
                } else {
                    self.jap_leave(now, r)
                };
                match result {
                    Ok(()) => {
                        let ack = Message::Ack {
                            group: r.group,
                            target: r.target,
                            nonce: r.nonce,
                        };
                        self.send_target(r.target, &r.group, &ack);
                        self.report_if_needed(now, r.group, false);
                    }
                    Err(reason) => self.nack(r, reason),
                }
            }
            Message::Pong {
                group,
                target,
                nonce,
            } => {
                let rise = self.cfg.target_rise;
                let mut changed = false;
                if let Some(j) = self.jap.get_mut(&group) {
                    if let Some(t) = j.targets.as_mut_slice().iter_mut().find(|t| t.ep == target) {
                        if t.ping_outstanding && t.ping_nonce == nonce {
                            t.ping_outstanding = false;
                            t.misses = 0;
                            t.awaiting_since = None;
                            t.good = t.good.saturating_add(1);
                            if t.health == Health::Suspect
                                || (t.health == Health::Down && t.good >= rise)
                            {
                                changed = t.health == Health::Down;
                                t.health = Health::Up;
                                t.down_since = None;
                            }
                        }
                    }
                }
                if changed {
                    self.report_if_needed(now, group, false);
                }
            }
            _ => self.counters.malformed += 1,
        }
    }

    pub(super) fn jap_join(&mut self, now: Instant, r: &Registration) -> Result<(), NackReason> {
        let cap = self.cfg.max_targets_per_group;
        let band = self.group_cfg(&r.group).map_or(10, |g| g.band_pct);
        let ping = self.cfg.target_ping;
        let entry = self
            .jap
            .get_or_insert_with(r.group, || JapGroup {
                targets: FixedVec::with_capacity(cap),
                iaps: HVec::new(),
                reported: None,
                reported_to: HVec::new(),
                band_pct: band,
            })
            .map_err(|_| NackReason::Capacity)?;
        if let Some(t) = entry
            .targets
            .as_mut_slice()
            .iter_mut()
            .find(|t| t.ep == r.target)
        {
            t.health = Health::Up;
            t.misses = 0;
            t.down_since = None;
            return Ok(());
        }
        let nonce = mix64(now ^ u64::from(r.target.port));
        entry
            .targets
            .push(TargetEntry {
                ep: r.target,
                health: Health::Up,
                misses: 0,
                good: 0,
                ping_nonce: nonce,
                ping_outstanding: false,
                next_ping: now + ping,
                awaiting_since: None,
                down_since: None,
                flows: 0,
            })
            .map_err(|_| NackReason::Capacity)?;
        self.counters.joins += 1;
        self.target_deadline = self.target_deadline.min(now + ping);
        Ok(())
    }

    pub(super) fn jap_leave(&mut self, _now: Instant, r: &Registration) -> Result<(), NackReason> {
        let Some(j) = self.jap.get_mut(&r.group) else {
            return Err(NackReason::NotResponsible);
        };
        let before = j.targets.len();
        j.targets.retain(|t| t.ep != r.target);
        if j.targets.len() == before {
            return Err(NackReason::NotResponsible);
        }
        self.flows
            .retain(|(g, _), f| !(*g == r.group && f.target == r.target));
        self.counters.leaves += 1;
        Ok(())
    }

    /// Reports the group's live count to its RAPs when it left the band, when
    /// it is the first report, or when the RAP set changed (`force` resends).
    pub(super) fn report_if_needed(&mut self, now: Instant, g: Group, force: bool) {
        let raps = self.raps_of(&g);
        let Some(j) = self.jap.get(&g) else { return };
        let live = j
            .targets
            .iter()
            .filter(|t| t.health != Health::Down)
            .count() as u32;
        let out_of_band = match j.reported {
            None => live > 0,
            Some(last) => {
                let band = u64::from(last) * u64::from(j.band_pct) / 100;
                let lo = u64::from(last).saturating_sub(band);
                let hi = u64::from(last) + band;
                live == 0 || u64::from(live) < lo || u64::from(live) > hi
            }
        };
        let new_raps: HVec<ProxyId, MAX_K> = raps
            .iter()
            .copied()
            .filter(|r| !j.reported_to.contains(r))
            .collect();
        let send_to: HVec<ProxyId, MAX_K> = if force || out_of_band || j.reported.is_none() {
            raps.clone()
        } else {
            new_raps
        };
        if send_to.is_empty() || (j.reported.is_none() && live == 0) {
            return;
        }
        let count = if out_of_band || j.reported.is_none() {
            live
        } else {
            j.reported.unwrap_or(live)
        };
        if let Some(j) = self.jap.get_mut(&g) {
            j.reported = Some(count);
            j.reported_to = raps;
        }
        let msg = Message::CountReport {
            group: g,
            count,
            coord: self.coord,
        };
        for to in send_to {
            self.counters.reports_sent += 1;
            self.send_proxy(now, to, &msg);
        }
        if count == 0 {
            // No target left: tell the IAPs that use this JAP for the group now,
            // rather than at their next packet.
            let iaps = self.jap.remove(&g).map(|j| j.iaps).unwrap_or_default();
            let unspecified = Endpoint {
                ip: crate::addr::Ipv4::UNSPECIFIED,
                port: 0,
            };
            for iap in iaps {
                self.counters.invalidations_sent += 1;
                let msg = Message::Invalidate {
                    group: g,
                    client: unspecified,
                    gone: true,
                    packet: &[],
                };
                self.send_proxy(now, iap, &msg);
            }
        }
    }

    pub(super) fn jap_forward(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        iap: ProxyId,
        packet: &[u8],
    ) {
        let target = self.choose_target(now, group, client);
        let Some(target) = target else {
            self.counters.invalidations_sent += 1;
            let gone = self.live_targets(&group) == 0;
            let msg = Message::Invalidate {
                group,
                client,
                gone,
                packet,
            };
            self.send_proxy(now, iap, &msg);
            return;
        };
        let Ok(buf) = Buf::from_slice(packet) else {
            self.counters.oversized += 1;
            return;
        };
        if let Some(j) = self.jap.get_mut(&group) {
            if let Some(t) = j.targets.as_mut_slice().iter_mut().find(|t| t.ep == target) {
                if t.awaiting_since.is_none() {
                    t.awaiting_since = Some(now);
                    if !t.ping_outstanding {
                        self.target_deadline =
                            self.target_deadline.min(now + self.cfg.passive_timeout);
                    }
                }
            }
            if !j.iaps.contains(&iap) {
                if j.iaps.is_full() {
                    j.iaps.remove(0);
                }
                let _ = j.iaps.push(iap);
            }
        }
        self.counters.delivered += 1;
        self.push(Transmit::Deliver {
            group,
            client,
            target,
            packet: buf,
        });
    }

    /// Affinity first, then the least-loaded live target; never the client itself.
    pub(super) fn choose_target(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
    ) -> Option<Endpoint> {
        let j = self.jap.get(&group)?;
        if let Some(f) = self.flows.get(&(group, client)) {
            let t = f.target;
            if j.targets
                .iter()
                .any(|x| x.ep == t && x.health == Health::Up)
            {
                if let Some(f) = self.flows.get_mut(&(group, client)) {
                    f.last = now;
                }
                return Some(t);
            }
        }
        let best = j
            .targets
            .iter()
            .filter(|t| t.health == Health::Up && t.ep.ip != client.ip)
            .min_by_key(|t| t.flows)
            .map(|t| t.ep)?;
        match self.flows.insert(
            (group, client),
            Flow {
                target: best,
                last: now,
            },
        ) {
            Ok(_) => {
                if let Some(j) = self.jap.get_mut(&group) {
                    if let Some(t) = j.targets.as_mut_slice().iter_mut().find(|t| t.ep == best) {
                        t.flows = t.flows.saturating_add(1);
                    }
                }
            }
            Err(_) => self.counters.capacity_refusals += 1,
        }
        Some(best)
    }

    pub(super) fn target_timers(&mut self, now: Instant) {
        let ping_every = self.cfg.target_ping;
        let fall = self.cfg.target_fall;
        let passive = self.cfg.passive_timeout;
        let forget = ping_every * DOWN_FORGET_PINGS;
        let mut pings: Vec<(Group, Endpoint, u64)> = Vec::new();
        let mut changed: Vec<Group> = Vec::new();
        let mut went_down: Vec<(Group, Endpoint)> = Vec::new();
        let mut deadline = Instant::MAX;
        let mut seed = self.next_random();
        for (g, j) in self.jap.iter_mut() {
            let mut group_changed = false;
            for t in j.targets.as_mut_slice().iter_mut() {
                let passive_due =
                    t.awaiting_since.is_some_and(|a| now >= a + passive) && !t.ping_outstanding;
                if now < t.next_ping && !passive_due {
                    continue;
                }
                if t.ping_outstanding {
                    t.misses = t.misses.saturating_add(1);
                    t.good = 0;
                    if t.misses >= fall && t.health != Health::Down {
                        t.health = Health::Down;
                        t.down_since = Some(now);
                        group_changed = true;
                        went_down.push((*g, t.ep));
                    } else if t.health == Health::Up {
                        t.health = Health::Suspect;
                    }
                }
                if passive_due {
                    t.awaiting_since = None;
                }
                seed = mix64(seed);
                t.ping_nonce = seed;
                t.ping_outstanding = true;
                t.next_ping = now + ping_every;
                pings.push((*g, t.ep, seed));
            }
            let before = j.targets.len();
            j.targets
                .retain(|t| t.down_since.is_none_or(|d| now.saturating_sub(d) < forget));
            if group_changed || j.targets.len() != before {
                changed.push(*g);
            }
            for t in j.targets.iter() {
                deadline = deadline.min(t.next_ping);
                if let (Some(a), false) = (t.awaiting_since, t.ping_outstanding) {
                    deadline = deadline.min(a + passive);
                }
            }
        }
        self.target_deadline = deadline;
        for (g, ep) in went_down {
            self.counters.targets_down += 1;
            self.flows
                .retain(|(fg, _), f| !(*fg == g && f.target == ep));
        }
        for (g, ep, nonce) in pings {
            let msg = Message::Ping {
                group: g,
                target: ep,
                nonce,
            };
            self.send_target(ep, &g, &msg);
        }
        for g in changed {
            self.report_if_needed(now, g, false);
        }
    }
}
