//! The JAP's delivery: a client packet to the target its flow is bound to, or
//! to the least-loaded member by weight; flows end when idle, giving their count back.

use super::jap::{Flow, Health, Jap, TargetEntry};
use super::timers::Timer;
use super::Proxy;
use crate::addr::{Endpoint, Group};
use crate::time::Instant;
use crate::wire::{Bounced, Message, ProxyId, Tried};

impl Proxy {
    /// A client packet to deliver (from an IAP, or a RAP on a lookup).
    pub(super) fn jap_forward(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        iap: ProxyId,
        tried: &Tried,
        packet: &[u8],
    ) {
        let Some(target) = self.choose_target(now, group, client) else {
            self.counters.jap.invalidations_sent += 1;
            let gone = self.jap.live_weight(&group).0 == 0;
            let mut tried = tried.clone();
            let offered = tried.contains(&self.cfg.id) || tried.push(self.cfg.id).is_ok();
            let msg = Message::Invalidate {
                group,
                gone,
                // Offered to every JAP the list can name: drop it here.
                bounced: offered.then_some(Bounced {
                    client,
                    tried,
                    packet,
                }),
            };
            self.send_proxy(now, iap, &msg);
            return;
        };
        if packet.len() > crate::wire::MAX_MESSAGE {
            self.counters.wire.oversized += 1;
            return;
        }
        self.note_delivery(now, group, target, iap);
        self.out.push_packet(group, client, Some(target), packet);
    }

    /// What a delivery to `target` changes: passive health starts waiting
    /// for its answer, `iap` is remembered as one of the group's IAPs.
    fn note_delivery(&mut self, now: Instant, group: Group, target: Endpoint, iap: ProxyId) {
        let passive = self.cfg.passive_timeout;
        if let Some(j) = self.jap.groups.get_mut(&group) {
            if let Some(t) = self.jap.targets.find_mut(&j.targets, |t| t.ep == target) {
                if t.awaiting_since.is_none() {
                    t.awaiting_since = Some(now);
                    if !t.ping_outstanding {
                        self.timers.set_earliest(Timer::Targets, now + passive);
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
        self.counters.jap.delivered += 1;
    }

    /// Whether a client's TCP segment may go whole, past the MTU, to
    /// `target` without passing through the core's queues (the I/O layer
    /// NATs it itself): the group's cached JAP list has not expired, this
    /// proxy is the IAP's pick for the client among them, and the client's
    /// flow here is bound to `target` (the NAT's), which is not down. If so
    /// the delivery is counted and noted (and a stale list refreshed) as
    /// `handle_client_packet` would; if not, nothing changes, and the
    /// segment is to go through `handle_client_packet` in pieces.
    pub fn whole_client_segment(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        target: Endpoint,
    ) -> bool {
        self.out.set_clock(now);
        let me = self.cfg.id;
        let Some(policy) = self.cfg.group_policy(&group).map(|g| g.policy) else {
            return false;
        };
        let Some(c) = self.iap.cache.get(&group) else {
            return false;
        };
        if now >= c.expires {
            return false;
        }
        let stale = now >= c.refresh_at;
        let pick = super::select::pick(policy, &c.japs, client, me, &Tried::new(), |j| {
            self.peer_up(j)
        });
        if pick != Some(me) {
            return false;
        }
        let Some(j) = self.jap.groups.get(&group) else {
            return false;
        };
        let bound = self.jap.flows.get(&(group, client)).map(|f| f.target);
        let up = self
            .jap
            .targets
            .iter(&j.targets)
            .any(|t| t.ep == target && t.health != Health::Down);
        if bound != Some(target) || !up {
            return false;
        }
        if let Some(f) = self.jap.flows.get_mut(&(group, client)) {
            f.last = now;
        }
        // As `iap_send`: a stale list is used while a fresh one is asked for.
        if stale && !self.iap.pending.contains_key(&group) {
            self.refresh_list(now, group, client);
        }
        self.counters.iap.forwards += 1;
        self.note_delivery(now, group, target, me);
        true
    }

    /// Affinity first (the flow's target while it is not down), then the up
    /// target with the fewest current flows per unit of weight, or if none is
    /// up the suspect one so chosen; never the client itself.
    fn choose_target(&mut self, now: Instant, group: Group, client: Endpoint) -> Option<Endpoint> {
        let j = self.jap.groups.get(&group)?;
        if let Some(f) = self.jap.flows.get_mut(&(group, client)) {
            let t = f.target;
            if self
                .jap
                .targets
                .iter(&j.targets)
                .any(|x| x.ep == t && x.health != Health::Down)
            {
                f.last = now;
                return Some(t);
            }
        }
        // The old flow's target is down or gone: the flow starts over.
        self.jap.end_flow(&group, &client);
        let j = self.jap.groups.get(&group)?;
        let best = self
            .jap
            .targets
            .iter(&j.targets)
            .filter(|t| t.could_take_new_flows() && t.ep.ip != client.ip)
            .min_by(|a, b| {
                // Up before suspect: a suspect target (one that missed a
                // ping, not yet down) gets a new flow only when no target
                // here is up; refusing it would refuse every new client.
                let tier = |t: &TargetEntry| !t.takes_new_flows();
                // a.flows / a.weight against b.flows / b.weight, exactly.
                let l = u64::from(a.flows) * u64::from(b.weight);
                let r = u64::from(b.flows) * u64::from(a.weight);
                tier(a)
                    .cmp(&tier(b))
                    .then(l.cmp(&r))
                    .then(b.weight.cmp(&a.weight))
            })
            .map(|t| t.ep)?;
        let flow = Flow {
            target: best,
            last: now,
        };
        match self.jap.flows.insert((group, client), flow) {
            Ok(_) => {
                if let Some(t) = self.jap.targets.find_mut(&j.targets, |t| t.ep == best) {
                    t.flows = t.flows.saturating_add(1);
                }
            }
            Err(_) => self.counters.jap.flows_refused += 1,
        }
        Some(best)
    }

    /// A target's reply to a client: passive health, the flow stays fresh.
    /// The I/O layer calls it for a reply it sends on whole (past the MTU);
    /// `handle_target_packet` does the same for every other.
    pub fn jap_target_reply(
        &mut self,
        now: Instant,
        group: Group,
        target: Endpoint,
        client: Endpoint,
    ) {
        if let Some(j) = self.jap.groups.get(&group) {
            if let Some(t) = self.jap.targets.find_mut(&j.targets, |t| t.ep == target) {
                t.awaiting_since = None;
                if t.health == Health::Suspect {
                    t.health = Health::Up;
                    t.misses = 0;
                }
            }
        }
        if let Some(f) = self.jap.flows.get_mut(&(group, client)) {
            f.last = now;
        }
    }

    /// Ends `client`'s flow in `group` now (the I/O layer saw its TCP
    /// connection close): its next packet picks a target afresh.
    pub fn end_flow(&mut self, group: Group, client: Endpoint) {
        self.jap.end_flow(&group, &client);
    }

    /// Forgets idle flows, giving each its target's flow back.
    pub(super) fn sweep_flows(&mut self, now: Instant) {
        let cfg = &self.cfg;
        let Jap {
            groups,
            targets,
            flows,
            nonces,
            overrun_at: _,
        } = &mut self.jap;
        flows.retain(|(g, _), f| {
            let keep = now.saturating_sub(f.last) < cfg.flow_idle(g);
            if !keep {
                if let Some(j) = groups.get(g) {
                    if let Some(t) = targets.find_mut(&j.targets, |t| t.ep == f.target) {
                        t.flows = t.flows.saturating_sub(1);
                    }
                }
            }
            keep
        });
        nonces.expire(now);
    }
}
