//! Membership: who is up, by heartbeats inside and between watching clusters,
//! news floods, and the RTT probes behind proximity.

use super::{Proxy, Transmit};
use crate::addr::Group;
use crate::proximity;
use crate::time::Instant;
use crate::wire::{Coord, Message, ProxyId, ReplayWindow};
use alloc::vec::Vec;

#[derive(Clone, Debug)]
/// What this proxy has learnt about another. A roster member without an
/// entry is up and has not been heard from; entries are made on first contact
/// or news, so a proxy of a large deployment holds state only for the peers it
/// talks to (its watched peers, the RAPs and JAPs of its groups).
pub(super) struct Peer {
    pub(super) up: bool,
    /// Highest sequence of news this peer originated that we have seen.
    pub(super) news_seen: u32,
    pub(super) last_heard: Instant,
    pub(super) coord: Option<Coord>,
    pub(super) replay: ReplayWindow,
}

impl Peer {
    pub(super) fn fresh(now: Instant) -> Peer {
        Peer {
            up: true,
            news_seen: 0,
            last_heard: now,
            coord: None,
            replay: ReplayWindow::default(),
        }
    }
}

/// News being sent to every live peer, one message per `poll_transmit` once
/// the queue is empty: a flood to 20,000 peers needs no 20,000-slot queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Flood {
    pub(super) news_seq: u32,
    pub(super) subject: ProxyId,
    pub(super) up: bool,
    /// Next roster position to send to.
    pub(super) next: usize,
}

impl Proxy {
    pub(super) fn next_flood_message(&mut self) -> Option<Transmit> {
        while let Some(f) = self.floods.as_slice().first().copied() {
            let ids = self.roster.ids();
            let found = (f.next..ids.len()).find(|&i| {
                let p = ids[i];
                p != f.subject && p != self.cfg.id && self.peer_up(p)
            });
            let Some(i) = found else {
                self.floods.retain(|x| x.news_seq != f.news_seq);
                continue;
            };
            let to = ids[i];
            if let Some(first) = self.floods.as_mut_slice().first_mut() {
                first.next = i + 1;
            }
            let msg = Message::News {
                origin: self.cfg.id,
                news_seq: f.news_seq,
                subject: f.subject,
                up: f.up,
            };
            let key = self.cfg.deployment_key.clone();
            if let Some(bytes) = self.encode(&msg, &key, self.cfg.id) {
                self.counters.news_sent += 1;
                return Some(Transmit::Proxy { to, bytes });
            }
        }
        None
    }

    pub(super) fn send_heartbeats(&mut self, now: Instant) {
        let msg = Message::Heartbeat {
            cluster: self.cfg.cluster,
            coord: self.coord,
        };
        for i in 0..self.watchers.len() {
            let to = self.watchers[i];
            self.send_proxy(now, to, &msg);
        }
    }

    pub(super) fn detect_dead_peers(&mut self, now: Instant) {
        let dead_after = self.cfg.peer_dead;
        let dead: Vec<ProxyId> = self
            .watched
            .iter()
            .copied()
            .filter(|p| {
                self.peers
                    .get(p)
                    .is_some_and(|x| x.up && now.saturating_sub(x.last_heard) > dead_after)
            })
            .collect();
        for p in dead {
            self.announce(now, p, false);
        }
    }

    /// A verified message from `p`: if we thought it down, it is back.
    pub(super) fn heard_from(&mut self, now: Instant, p: ProxyId) {
        if self.peers.get(&p).is_some_and(|x| !x.up) {
            self.announce(now, p, true);
        }
    }

    /// Applies and floods news that `subject` is up or down.
    pub(super) fn announce(&mut self, now: Instant, subject: ProxyId, up: bool) {
        self.news_seq += 1;
        let seq = self.news_seq;
        let _ = self.apply_news(now, subject, up);
        let flood = Flood {
            news_seq: seq,
            subject,
            up,
            next: 0,
        };
        if self.floods.push(flood).is_err() {
            self.counters.capacity_refusals += 1;
        }
    }

    /// Applies news to our view; returns whether it changed it.
    pub(super) fn apply_news(&mut self, now: Instant, subject: ProxyId, up: bool) -> bool {
        if subject == self.cfg.id || !self.roster.contains(subject) {
            return false;
        }
        let Ok(peer) = self.peers.get_or_insert_with(subject, || Peer::fresh(now)) else {
            self.counters.capacity_refusals += 1;
            return false;
        };
        if peer.up == up {
            return false;
        }
        peer.up = up;
        if up {
            peer.last_heard = now;
            self.counters.peers_up += 1;
        } else {
            self.counters.peers_down += 1;
            // IAP: a dead JAP leaves every cached list.
            for (_, c) in self.cache.iter_mut() {
                c.japs.retain(|r| r.jap != subject);
            }
            self.cache.retain(|_, c| !c.japs.is_empty());
            // RAP: its reports no longer count.
            for (_, v) in self.rap.iter_mut() {
                v.retain(|e| e.jap != subject);
            }
            self.rap.retain(|_, v| !v.is_empty());
        }
        // JAP: RAP sets may have changed; report to any new RAP.
        let groups: Vec<Group> = self.jap.iter().map(|(g, _)| *g).collect();
        for g in groups {
            self.report_if_needed(now, g, false);
        }
        true
    }

    pub(super) fn on_news(
        &mut self,
        now: Instant,
        from: ProxyId,
        origin: ProxyId,
        news_seq: u32,
        subject: ProxyId,
        up: bool,
    ) {
        // Our own news coming back is a duplicate; other origins are roster
        // members (the sender was checked), each with an entry made on contact.
        if origin == self.cfg.id || !self.roster.contains(origin) {
            self.counters.news_duplicates += 1;
            return;
        }
        let Ok(entry) = self.peers.get_or_insert_with(origin, || Peer::fresh(now)) else {
            self.counters.capacity_refusals += 1;
            return;
        };
        if news_seq <= entry.news_seen {
            self.counters.news_duplicates += 1;
            return;
        }
        entry.news_seen = news_seq;
        if subject == self.cfg.id {
            if !up {
                // Others think we are down: refute.
                self.announce(now, self.cfg.id, true);
            }
            return;
        }
        // Re-flood inside our cluster so one lost copy does not leave a cluster
        // unaware, but only news that was news to us: the same death announced
        // by each of its watchers is re-flooded once, not once per watcher.
        if !self.apply_news(now, subject, up) {
            return;
        }
        let msg = Message::News {
            origin,
            news_seq,
            subject,
            up,
        };
        let roster = self.roster.clone();
        for &(_, to) in roster.cluster_members(self.cfg.cluster) {
            if to == from || to == origin || to == subject || to == self.cfg.id {
                continue;
            }
            if self.peer_up(to) {
                self.send_proxy(now, to, &msg);
            }
        }
    }

    pub(super) fn send_probe(&mut self, now: Instant) {
        let Some(to) = self.random_live_peer() else {
            return;
        };
        let nonce = self.next_random();
        if self.probes.insert(nonce, (to, now)).is_err() {
            return;
        }
        self.send_proxy(now, to, &Message::RttProbe { nonce });
    }

    /// A live peer other than ourselves, uniformly at random: a few random
    /// draws, then the first live one after the last draw.
    pub(super) fn random_live_peer(&mut self) -> Option<ProxyId> {
        let n = self.roster.len();
        if n == 0 {
            return None;
        }
        let mut i = 0;
        for _ in 0..8 {
            i = (self.next_random() % n as u64) as usize;
            let p = self.roster.ids()[i];
            if p != self.cfg.id && self.peer_up(p) {
                return Some(p);
            }
        }
        (0..n)
            .map(|k| self.roster.ids()[(i + k) % n])
            .find(|&p| p != self.cfg.id && self.peer_up(p))
    }

    /// Heard only from a verified message, so the sender has an entry.
    pub(super) fn learn_coord(&mut self, p: ProxyId, c: Coord) {
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.coord = Some(c);
        }
    }

    /// Predicted RTT (ms) to proxy `p`, if its coordinate is known.
    pub fn predicted_rtt_ms(&self, p: ProxyId) -> Option<f32> {
        self.peers
            .get(&p)
            .and_then(|x| x.coord)
            .map(|c| proximity::distance(&self.coord, &c))
    }
}
