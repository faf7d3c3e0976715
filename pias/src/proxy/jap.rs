//! The JAP role: its tables, targets' registrations and their health checks.
//! Delivery and flows are in `flows`, count reports in `reports`.

use super::timers::Timer;
use super::{Proxy, MAX_K};
use crate::addr::{Endpoint, Group};
use crate::fixed::{FixedMap, KeyedBuild};
use crate::pool::{List, ListPool};
use crate::replay::{NonceCache, NonceError};
use crate::ring::mix64;
use crate::time::{Instant, MS};
use crate::wire::{Message, NackReason, ProxyId, Registration};
use heapless::Vec as HVec;

/// A target's health as its JAP sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Answering.
    Up,
    /// Missed a ping; still gets its flows.
    Suspect,
    /// Missed `target_fall` pings: no flows; pinged until it rises or is forgotten.
    Down,
}

#[derive(Clone, Debug)]
pub(super) struct TargetEntry {
    /// The service's endpoint: where client packets go.
    pub(super) ep: Endpoint,
    /// Where its registration came from (the target's agent, on the same
    /// address): where health pings go, since the service owns `ep`.
    pub(super) ctl: Endpoint,
    pub(super) weight: u16,
    pub(super) health: Health,
    pub(super) misses: u8,
    /// Unanswered pings in a row excused by receive overruns (at most
    /// `EXCUSED_MISSES_PER_FALL` × `target_fall` before misses count again).
    pub(super) excused: u8,
    pub(super) good: u8,
    pub(super) ping_nonce: u64,
    pub(super) ping_outstanding: bool,
    pub(super) next_ping: Instant,
    pub(super) awaiting_since: Option<Instant>,
    pub(super) down_since: Option<Instant>,
    /// Flows currently mapped to it (decremented when they end).
    pub(super) flows: u32,
    /// It left gracefully while flows were bound to it: those flows stay
    /// with it (affinity) until they end or `drain_limit` passes; it gets no
    /// new flow, no ping, and no longer counts toward the group's members.
    pub(super) draining_since: Option<Instant>,
}

impl TargetEntry {
    /// Whether it takes new flows.
    pub(super) fn takes_new_flows(&self) -> bool {
        self.health == Health::Up && self.draining_since.is_none()
    }

    /// Whether it takes new flows when no target of its group is up: a
    /// suspect one does too (it has missed pings, but fewer than
    /// `target_fall`).
    pub(super) fn could_take_new_flows(&self) -> bool {
        self.health != Health::Down && self.draining_since.is_none()
    }

    /// Whether it counts as a member (reported to the RAPs).
    pub(super) fn counts(&self) -> bool {
        self.health != Health::Down && self.draining_since.is_none()
    }
}

/// The JAP's state for one group.
#[derive(Clone, Debug)]
pub(super) struct JapGroup {
    pub(super) targets: List,
    /// IAPs that sent this group's packets here (newest last), told when the group empties.
    pub(super) iaps: HVec<ProxyId, MAX_IAPS_PER_GROUP>,
    pub(super) band_pct: u8,
    /// The count last sent to the RAPs (None: nothing yet).
    pub(super) reported: Option<u32>,
    /// The RAPs that count went to, and those that acknowledged it.
    pub(super) raps: HVec<ProxyId, MAX_K>,
    pub(super) acked: HVec<ProxyId, MAX_K>,
    pub(super) retries: u8,
    pub(super) retry_at: Option<Instant>,
    pub(super) refresh_at: Instant,
    /// Something changed (targets, RAP set): re-examine at the next report timer.
    pub(super) dirty: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Flow {
    pub(super) target: Endpoint,
    pub(super) last: Instant,
}

/// The JAP's tables, all reserved at start.
pub(super) struct Jap {
    pub(super) groups: FixedMap<Group, JapGroup>,
    pub(super) targets: ListPool<TargetEntry>,
    /// Client flows: clients choose these keys, so they hash with a secret key.
    pub(super) flows: FixedMap<(Group, Endpoint), Flow, KeyedBuild>,
    pub(super) nonces: NonceCache,
    /// When the host last fell a receive ring behind (`Proxy::handle_receive_overrun`).
    pub(super) overrun_at: Option<Instant>,
}

/// IAPs remembered per JAP group for proactive invalidation; older ones learn
/// on their next packet instead.
pub(super) const MAX_IAPS_PER_GROUP: usize = 16;
/// How long a target may stay down (in pings) before it is treated as having left.
const DOWN_FORGET_PINGS: u64 = 30;
/// Receive overruns excuse at most this many times `target_fall` unanswered
/// pings in a row (30 with the defaults: a minute of 2 s pings): an overload
/// that long, or frames sent to cause overruns, no longer keeps a silent
/// target from going down; it goes down `target_fall` pings later.
const EXCUSED_MISSES_PER_FALL: u8 = 10;

impl Jap {
    /// The JAP's tables for `cfg`; `flow_key` keys the flow table's hash.
    pub(super) fn new(cfg: &super::ProxyConfig, flow_key: [u8; 16]) -> Jap {
        let nonce_slots = crate::replay::nonce_capacity(cfg.join_rate, cfg.freshness);
        Jap {
            groups: FixedMap::with_capacity(cfg.max_groups),
            targets: ListPool::with_capacity(cfg.max_targets),
            flows: FixedMap::with_capacity_and_hasher(cfg.max_flows, KeyedBuild::new(flow_key)),
            nonces: NonceCache::with_capacity(nonce_slots),
            overrun_at: None,
        }
    }

    /// The group's live (not down) targets' summed weights, and its entries.
    pub(super) fn live_weight(&self, g: &Group) -> (u32, usize) {
        self.groups.get(g).map_or((0, 0), |j| {
            let live = self
                .targets
                .iter(&j.targets)
                .filter(|t| t.counts())
                .map(|t| u32::from(t.weight))
                .sum();
            (live, j.targets.len())
        })
    }

    /// Forgets `client`'s flow and gives its target one flow back.
    /// A target that left gracefully is forgotten with its last flow.
    pub(super) fn end_flow(&mut self, g: &Group, client: &Endpoint) {
        if let Some(f) = self.flows.remove(&(*g, *client)) {
            if let Some(j) = self.groups.get_mut(g) {
                let mut drained = false;
                if let Some(t) = self.targets.find_mut(&j.targets, |t| t.ep == f.target) {
                    t.flows = t.flows.saturating_sub(1);
                    drained = t.flows == 0 && t.draining_since.is_some();
                }
                if drained {
                    self.targets.retain(&mut j.targets, |t| t.ep != f.target);
                }
            }
        }
    }
}

impl Proxy {
    /// A verified target message: join, leave or pong. Nothing but a fresh,
    /// first-seen registration from the target's own address gets an answer.
    pub(super) fn on_target_message(&mut self, now: Instant, src: Endpoint, msg: &Message) {
        match *msg {
            Message::Join(ref r) | Message::Leave(ref r) => {
                if src.ip != r.target.ip {
                    self.counters.jap.wrong_source += 1;
                    return;
                }
                let ts = r.timestamp_ms.saturating_mul(MS);
                if now.abs_diff(ts) > self.cfg.freshness {
                    self.counters.jap.stale_registrations += 1;
                    return;
                }
                let expires = ts.saturating_add(self.cfg.freshness);
                match self.jap.nonces.insert(r.nonce, expires, now) {
                    Ok(()) => {}
                    Err(NonceError::Replayed) => {
                        self.counters.jap.replayed_registrations += 1;
                        return;
                    }
                    Err(NonceError::Full) => {
                        self.nack(src, r, NackReason::Capacity);
                        return;
                    }
                }
                let result = if matches!(msg, Message::Join(_)) {
                    self.jap_join(now, src, r)
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
                        self.send_target(r.group, src, &ack);
                        self.report_if_needed(now, r.group);
                    }
                    Err(reason) => self.nack(src, r, reason),
                }
            }
            Message::Pong {
                group,
                target,
                nonce,
            } => {
                if src.ip != target.ip {
                    self.counters.jap.wrong_source += 1;
                    return;
                }
                self.on_pong(now, src, group, target, nonce);
            }
            _ => self.counters.wire.malformed += 1,
        }
    }

    fn on_pong(&mut self, now: Instant, src: Endpoint, group: Group, target: Endpoint, nonce: u64) {
        let rise = self.cfg.target_rise;
        let Some(j) = self.jap.groups.get(&group) else {
            self.ask_rejoin(src, group, target, nonce);
            return;
        };
        let Some(t) = self.jap.targets.find_mut(&j.targets, |t| t.ep == target) else {
            self.ask_rejoin(src, group, target, nonce);
            return;
        };
        if !(t.ping_outstanding && t.ping_nonce == nonce) {
            self.counters.jap.unexpected_pongs += 1;
            return;
        }
        t.ping_outstanding = false;
        t.misses = 0;
        t.excused = 0;
        t.awaiting_since = None;
        t.good = t.good.saturating_add(1);
        let back = t.health == Health::Down && t.good >= rise;
        if t.health == Health::Suspect || back {
            t.health = Health::Up;
            t.down_since = None;
        }
        if back {
            self.report_if_needed(now, group);
            self.iap_forget_negative(&group);
        }
    }

    /// A pong from a target we do not hold: its JAP died and anycast brought
    /// it here (paper §3.6.2). Ask it to register again (same size as the
    /// pong, to the address named in its verified body only, at the port the
    /// pong came from: the target's agent).
    fn ask_rejoin(&mut self, src: Endpoint, group: Group, target: Endpoint, nonce: u64) {
        self.counters.jap.rejoins_sent += 1;
        let msg = Message::Rejoin {
            group,
            target,
            nonce,
        };
        self.send_target(group, src, &msg);
    }

    /// Refuses a registration; `src` (the target's address, checked) hears why.
    fn nack(&mut self, src: Endpoint, r: &Registration, reason: NackReason) {
        match reason {
            NackReason::Capacity => self.counters.jap.nack_capacity += 1,
            _ => self.counters.jap.nack_not_responsible += 1,
        }
        let msg = Message::Nack {
            group: r.group,
            target: r.target,
            nonce: r.nonce,
            reason,
        };
        self.send_target(r.group, src, &msg);
    }

    fn jap_join(
        &mut self,
        now: Instant,
        src: Endpoint,
        r: &Registration,
    ) -> Result<(), NackReason> {
        let per_group = self.cfg.max_targets_per_group;
        let band = self.cfg.group_policy(&r.group).map_or(10, |g| g.band_pct);
        let ping = self.cfg.target_ping;
        let Ok(entry) = self.jap.groups.get_or_insert_with(r.group, || JapGroup {
            targets: List::default(),
            iaps: HVec::new(),
            band_pct: band,
            reported: None,
            raps: HVec::new(),
            acked: HVec::new(),
            retries: 0,
            retry_at: None,
            refresh_at: now,
            dirty: false,
        }) else {
            self.counters.jap.groups_refused += 1;
            return Err(NackReason::Capacity);
        };
        let weight = r.options.weight.max(1);
        if let Some(t) = self
            .jap
            .targets
            .find_mut(&entry.targets, |t| t.ep == r.target)
        {
            t.weight = weight;
            t.ctl = src;
            t.draining_since = None;
            t.health = Health::Up;
            t.misses = 0;
            t.down_since = None;
            self.iap_forget_negative(&r.group);
            return Ok(());
        }
        if entry.targets.len() >= per_group {
            if entry.targets.is_empty() {
                self.jap.groups.remove(&r.group);
            }
            return Err(NackReason::Capacity);
        }
        let nonce = mix64(now ^ u64::from(r.target.port) ^ u64::from(r.target.ip.to_u32()));
        let added = self.jap.targets.push(
            &mut entry.targets,
            TargetEntry {
                ep: r.target,
                ctl: src,
                weight,
                health: Health::Up,
                misses: 0,
                excused: 0,
                good: 0,
                ping_nonce: nonce,
                ping_outstanding: false,
                next_ping: now + ping,
                awaiting_since: None,
                down_since: None,
                flows: 0,
                draining_since: None,
            },
        );
        if added.is_err() {
            if entry.targets.is_empty() {
                self.jap.groups.remove(&r.group);
            }
            return Err(NackReason::Capacity);
        }
        self.counters.jap.joins += 1;
        self.timers.set_earliest(Timer::Targets, now + ping);
        self.iap_forget_negative(&r.group);
        Ok(())
    }

    /// A graceful leave: the target gets no new flow at once; flows bound to
    /// it stay with it until they end (affinity), then it is forgotten.
    fn jap_leave(&mut self, now: Instant, r: &Registration) -> Result<(), NackReason> {
        let Some(j) = self.jap.groups.get_mut(&r.group) else {
            return Err(NackReason::NotResponsible);
        };
        let Some(t) = self.jap.targets.find_mut(&j.targets, |t| t.ep == r.target) else {
            return Err(NackReason::NotResponsible);
        };
        if t.flows > 0 {
            if t.draining_since.is_none() {
                t.draining_since = Some(now);
            }
            j.dirty = true;
            self.timers.set_earliest(Timer::Targets, now);
        } else {
            self.jap
                .targets
                .retain(&mut j.targets, |t| t.ep != r.target);
        }
        self.counters.jap.leaves += 1;
        Ok(())
    }

    /// Pings due targets, marks silent ones suspect then down, forgets targets
    /// down too long; the groups that changed report at the next report timer.
    /// A ping left unanswered while the host fell behind its receive ring
    /// (`overrun_at` at or after the ping went out) is not counted against the
    /// target: its pong may have been lost before this proxy saw it.
    pub(super) fn target_timers(&mut self, now: Instant) {
        let ping_every = self.cfg.target_ping;
        let fall = self.cfg.target_fall;
        let passive = self.cfg.passive_timeout;
        let forget = ping_every.saturating_mul(DOWN_FORGET_PINGS);
        let drain_limit = self.cfg.flow_idle_udp;
        let mut seed = self.next_random();
        let mut deadline = Instant::MAX;
        let mut changed = false;
        let Proxy {
            jap,
            out,
            cfg,
            counters,
            ..
        } = self;
        let Jap {
            groups,
            targets,
            flows,
            overrun_at,
            ..
        } = jap;
        let overrun_at = *overrun_at;
        for (g, j) in groups.iter_mut() {
            let Some(key) = cfg.group_key(g) else {
                continue;
            };
            let mut group_changed = false;
            targets.for_each_mut(&j.targets, |t| {
                if t.draining_since.is_some() {
                    return;
                }
                let passive_due =
                    t.awaiting_since.is_some_and(|a| now >= a + passive) && !t.ping_outstanding;
                if now < t.next_ping && !passive_due {
                    return;
                }
                // The outstanding ping went out one period before `next_ping`.
                let sent = t.next_ping.saturating_sub(ping_every);
                let excusable = t.excused < fall.saturating_mul(EXCUSED_MISSES_PER_FALL);
                if t.ping_outstanding && excusable && overrun_at.is_some_and(|o| o >= sent) {
                    // No evidence against the target: its state stands (a
                    // suspect one would refuse new flows while the overload
                    // lasts, and it is the overload that loses the pongs).
                    t.excused += 1;
                    counters.jap.misses_excused += 1;
                } else if t.ping_outstanding {
                    t.misses = t.misses.saturating_add(1);
                    t.good = 0;
                    if t.misses >= fall && t.health != Health::Down {
                        t.health = Health::Down;
                        t.down_since = Some(now);
                        group_changed = true;
                        counters.jap.targets_down += 1;
                        if t.flows > 0 {
                            let (fg, ep) = (*g, t.ep);
                            flows.retain(|(k, _), f| !(*k == fg && f.target == ep));
                        }
                        t.flows = 0;
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
                let ping = Message::Ping {
                    group: *g,
                    target: t.ep,
                    nonce: seed,
                };
                out.queue_target(*g, t.ctl, &ping, &key);
            });
            let before = j.targets.len();
            targets.retain(&mut j.targets, |t| {
                let drained = t
                    .draining_since
                    .is_some_and(|d| t.flows == 0 || now.saturating_sub(d) >= drain_limit);
                if drained && t.flows > 0 {
                    // Past the limit: its flows pick a target afresh.
                    let (fg, ep) = (*g, t.ep);
                    flows.retain(|(k, _), f| !(*k == fg && f.target == ep));
                }
                !drained && t.down_since.is_none_or(|d| now.saturating_sub(d) < forget)
            });
            if group_changed || j.targets.len() != before {
                j.dirty = true;
                changed = true;
            }
            for t in targets.iter(&j.targets) {
                if t.draining_since.is_some() {
                    // Looked at again each ping period: gone once its flows are.
                    deadline = deadline.min(now + ping_every);
                    continue;
                }
                deadline = deadline.min(t.next_ping);
                if let (Some(a), false) = (t.awaiting_since, t.ping_outstanding) {
                    deadline = deadline.min(a + passive);
                }
            }
        }
        if deadline == Instant::MAX {
            self.timers.stop(Timer::Targets);
        } else {
            self.timers.set(Timer::Targets, deadline.max(now + 1));
        }
        if changed {
            self.timers.set_earliest(Timer::Reports, now);
        }
    }
}
