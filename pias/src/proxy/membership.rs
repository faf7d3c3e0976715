//! Membership: who is up, by heartbeats inside and between watching clusters,
//! news floods ordered by incarnation (SWIM), flap damping, and RTT probes.

use super::timers::Timer;
use super::{Proxy, Transmit};
use crate::ids::Incarnation;
use crate::proximity;
use crate::replay::{SeqError, SeqWindow};
use crate::time::{Instant, MS, SEC};
use crate::wire::{Coord, Message, ProxyId};

/// What this proxy has learnt about another. A roster member without an
/// entry is up and has not been heard from; entries are made on first contact
/// or news, so a proxy of a large deployment holds state only for the peers it
/// talks to (its watched peers, the RAPs and JAPs of its groups).
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) up: bool,
    /// The life of the peer we know of (None: never heard of it).
    pub(super) incarnation: Option<Incarnation>,
    pub(super) last_heard: Instant,
    pub(super) coord: Option<Coord>,
    /// Anti-replay over the sequence numbers of its current life.
    pub(super) replay: SeqWindow,
    /// We declared it down and it has not come back since.
    pub(super) declared: bool,
    /// Declarations of ours it refuted: each doubles the silence we need
    /// before declaring it again (up to `max_flap_doublings`).
    pub(super) flaps: u8,
    /// When `flaps` last changed (it decays after a long calm).
    pub(super) flapped_at: Instant,
    /// A damped declaration was counted for the current silence.
    pub(super) damping_noted: bool,
}

impl Peer {
    /// A peer first heard of at `now`; its messages numbered at or below
    /// `floor` (older than the freshness window, by their sender's clock) are refused.
    pub(super) fn fresh(now: Instant, floor: u64) -> Peer {
        Peer {
            up: true,
            incarnation: None,
            last_heard: now,
            coord: None,
            replay: SeqWindow::above(floor),
            declared: false,
            flaps: 0,
            flapped_at: now,
            damping_noted: false,
        }
    }
}

/// News being sent to every live peer, one message per `poll_transmit` once
/// the queue is empty: a flood to 20,000 peers needs no 20,000-slot queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Flood {
    pub(super) subject: ProxyId,
    pub(super) incarnation: Incarnation,
    pub(super) up: bool,
    /// Next roster position to send to.
    pub(super) next: usize,
}

/// How a verified message's header compares with the sender's known life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// The life we know (or the first we hear of).
    Current,
    /// A later life: the sender restarted.
    Restarted,
    /// An earlier life: a message from before its restart.
    Old,
}

/// Calm periods (in units of the damped dead time) before a flap is forgiven.
const FLAP_DECAY: u64 = 16;

impl Proxy {
    /// Where a verified message from `sender` in its life `boot`, numbered
    /// `seq`, stands: its life against the one we know, and its number
    /// against that life's replay window (a window made above `floor` for a
    /// life or a peer we have no state for). Changes nothing.
    pub(super) fn judge(
        &self,
        sender: ProxyId,
        boot: u64,
        seq: u64,
        floor: u64,
    ) -> (Life, Result<(), SeqError>) {
        let fresh = || SeqWindow::above(floor).check(seq);
        let Some(peer) = self.peers.get(&sender) else {
            return (Life::Current, fresh());
        };
        match peer.incarnation {
            Some(k) if boot < k.boot => (Life::Old, Ok(())),
            Some(k) if boot > k.boot => (Life::Restarted, fresh()),
            _ => (Life::Current, peer.replay.check(seq)),
        }
    }

    /// Makes the state of `sender` if absent, recording its first life
    /// heard of (a later one is recorded by `peer_restarted`); false if the
    /// table has no room (counted).
    pub(super) fn record_life(&mut self, now: Instant, sender: ProxyId, boot: u64) -> bool {
        let Some(peer) = self.peer_entry(now, sender, false) else {
            return false;
        };
        if peer.incarnation.is_none() {
            peer.incarnation = Some(Incarnation {
                boot,
                refutation: 0,
            });
        }
        true
    }

    /// The state of peer `id`, made if absent. When the table is full the
    /// least recently heard peer that is up, not watched, not damped and
    /// silent for `freshness` is forgotten to make room; if there is none,
    /// `None` (counted). `urgent` (news of a death, which a peer without state
    /// could not hold: it would count as up) may forget a peer heard within
    /// `freshness` too.
    fn peer_entry(&mut self, now: Instant, id: ProxyId, urgent: bool) -> Option<&mut Peer> {
        let window = self.cfg.freshness;
        if !self.peers.contains_key(&id) && self.peers.len() >= self.peers.capacity() {
            let victim = self
                .peers
                .iter()
                .filter(|(p, x)| {
                    x.up && !x.declared
                        && x.flaps == 0
                        && (urgent || now.saturating_sub(x.last_heard) > window)
                        && self.watched.binary_search(p).is_err()
                })
                .min_by_key(|(p, x)| (x.last_heard, **p))
                .map(|(p, _)| *p);
            if let Some(v) = victim {
                self.peers.remove(&v);
                self.counters.membership.peers_forgotten += 1;
            }
        }
        let floor = now.saturating_sub(window);
        match self
            .peers
            .get_or_insert_with(id, || Peer::fresh(now, floor))
        {
            Ok(peer) => Some(peer),
            Err(_) => {
                self.counters.membership.peers_refused += 1;
                None
            }
        }
    }

    /// A verified message from `p` in a life later than we knew: its state
    /// (replay window, the RAP entries it held) starts over.
    pub(super) fn peer_restarted(&mut self, now: Instant, p: ProxyId, boot: u64) {
        self.counters.membership.restarts_seen += 1;
        let inc = Incarnation {
            boot,
            refutation: 0,
        };
        self.apply_news(now, p, inc, true);
        // Its watchers tell everyone, so that JAPs re-report to it at once.
        if self.watched.binary_search(&p).is_ok() {
            self.start_flood(p, inc, true);
        }
    }

    /// A verified message in `p`'s current life: it is alive.
    pub(super) fn heard_from(&mut self, now: Instant, p: ProxyId) {
        let Some(peer) = self.peers.get_mut(&p) else {
            return;
        };
        peer.last_heard = now;
        peer.damping_noted = false;
        if !peer.up {
            // Direct evidence. The others learn from its own refutation, so
            // tell it the news it may have missed (one message, to it only).
            let news = Message::News {
                subject: p,
                incarnation: peer.incarnation.unwrap_or_default(),
                up: false,
            };
            self.counters.membership.news_sent += 1;
            self.out.queue_proxy(p, &news, &self.cfg.deployment_key);
            self.set_up(now, p, true, true);
        }
    }

    pub(super) fn send_heartbeats(&mut self) {
        let msg = Message::Heartbeat {
            cluster: self.cfg.cluster,
            coord: self.coord,
        };
        for &to in &self.watchers {
            self.out.queue_proxy(to, &msg, &self.cfg.deployment_key);
        }
    }

    /// Declares down the watched peers silent for their (damped) dead time,
    /// and forgives old flaps of peers that have been calm.
    pub(super) fn detect_dead_peers(&mut self, now: Instant) {
        let base = self.cfg.peer_dead;
        for i in 0..self.watched.len() {
            let p = self.watched[i];
            let Some(peer) = self.peers.get_mut(&p) else {
                continue;
            };
            if !peer.up {
                continue;
            }
            let damped = base << peer.flaps.min(16);
            let silent = now.saturating_sub(peer.last_heard);
            if silent <= base {
                if peer.flaps > 0
                    && now.saturating_sub(peer.flapped_at) > FLAP_DECAY.saturating_mul(damped)
                {
                    peer.flaps -= 1;
                    peer.flapped_at = now;
                }
                continue;
            }
            if silent <= damped {
                if !peer.damping_noted {
                    peer.damping_noted = true;
                    self.counters.membership.damped += 1;
                }
                continue;
            }
            peer.declared = true;
            let inc = peer.incarnation.unwrap_or_default();
            self.announce(now, p, inc, false);
        }
    }

    /// Applies and floods news that `subject` is up or down in life `inc`.
    pub(super) fn announce(&mut self, now: Instant, subject: ProxyId, inc: Incarnation, up: bool) {
        if subject != self.cfg.id {
            self.apply_news(now, subject, inc, up);
        }
        self.start_flood(subject, inc, up);
    }

    /// Starts sending news to every live peer; it replaces a flood about the
    /// same subject still in progress (the new news supersedes it).
    fn start_flood(&mut self, subject: ProxyId, incarnation: Incarnation, up: bool) {
        let flood = Flood {
            subject,
            incarnation,
            up,
            next: 0,
        };
        if let Some(f) = self
            .floods
            .as_mut_slice()
            .iter_mut()
            .find(|f| f.subject == subject)
        {
            *f = flood;
        } else if self.floods.push(flood).is_err() {
            self.counters.membership.floods_refused += 1;
        }
    }

    /// Applies news to our view (SWIM's order: a later life or refutation
    /// wins; in the same one, down wins); returns whether it changed it.
    pub(super) fn apply_news(
        &mut self,
        now: Instant,
        subject: ProxyId,
        inc: Incarnation,
        up: bool,
    ) -> bool {
        if subject == self.cfg.id || !self.roster.contains(subject) {
            return false;
        }
        let floor = now.saturating_sub(self.cfg.freshness);
        let Some(peer) = self.peer_entry(now, subject, !up) else {
            return false;
        };
        match peer.incarnation {
            Some(k) if inc < k => false,
            Some(k) if inc == k => {
                if !up && peer.up {
                    self.set_up(now, subject, false, false);
                    true
                } else {
                    false
                }
            }
            known => {
                let restarted = known.is_some_and(|k| inc.boot > k.boot);
                peer.incarnation = Some(inc);
                if restarted {
                    peer.replay = SeqWindow::above(floor);
                }
                if peer.up != up {
                    // A refutation means a declaration was wrong; a restart does not.
                    self.set_up(now, subject, up, !restarted);
                }
                if restarted {
                    // Its state is gone: our JAP groups report to it again, and
                    // what it reported as a JAP no longer holds.
                    self.jap_peer_restarted(now, subject);
                    self.rap_forget_jap(subject);
                }
                true
            }
        }
    }

    /// Marks `p` up or down and updates what depends on it. `refuted`: an up
    /// in the same life, so a declaration of its death was wrong (damped);
    /// a restart is a real death and is not.
    ///
    /// A down peer's RAP entries and IAP cache places are kept: every choice
    /// skips down peers, and when it is believed up again (a false death
    /// refuted) it is used at once instead of after a refresh or a TTL.
    fn set_up(&mut self, now: Instant, p: ProxyId, up: bool, refuted: bool) {
        let Some(peer) = self.peers.get_mut(&p) else {
            return;
        };
        peer.up = up;
        if up {
            peer.last_heard = now;
            if peer.declared && refuted {
                peer.flaps = peer
                    .flaps
                    .saturating_add(1)
                    .min(self.cfg.max_flap_doublings);
                peer.flapped_at = now;
            }
            peer.declared = false;
            self.counters.membership.peers_up += 1;
        } else {
            self.counters.membership.peers_down += 1;
            self.iap_drop_negative();
        }
        // RAP sets may have changed: every JAP group checks its RAPs.
        self.jap_raps_changed(now);
    }

    pub(super) fn on_news(
        &mut self,
        now: Instant,
        from: ProxyId,
        subject: ProxyId,
        inc: Incarnation,
        up: bool,
    ) {
        if subject == self.cfg.id {
            let me = self.incarnation;
            if !up && inc.boot == me.boot && inc.refutation >= me.refutation {
                // Others think we are down: refute with a later incarnation.
                self.incarnation.refutation = inc.refutation.saturating_add(1);
                self.counters.membership.refutations += 1;
                let me = self.incarnation;
                self.start_flood(self.cfg.id, me, true);
                // Our RAPs may have dropped our counts (or be stand-ins that
                // never had them): every group reports again.
                self.jap_report_all_again(now);
            } else {
                self.counters.membership.news_duplicates += 1;
            }
            return;
        }
        // Re-flood inside our cluster so one lost copy does not leave a cluster
        // unaware, but only news that was news to us: the same death announced
        // by each of its watchers is re-flooded once, not once per watcher.
        if !self.apply_news(now, subject, inc, up) {
            self.counters.membership.news_duplicates += 1;
            return;
        }
        let msg = Message::News {
            subject,
            incarnation: inc,
            up,
        };
        for &(_, to) in self.roster.cluster_members(self.cfg.cluster) {
            if to == from || to == subject || to == self.cfg.id || !self.peer_up(to) {
                continue;
            }
            self.counters.membership.news_sent += 1;
            self.out.queue_proxy(to, &msg, &self.cfg.deployment_key);
        }
    }

    /// The next message of the oldest flood in progress.
    pub(super) fn next_flood_message(&mut self) -> Option<Transmit> {
        while let Some(f) = self.floods.as_slice().first().copied() {
            let ids = self.roster.ids();
            let found = (f.next..ids.len()).find(|&i| {
                let p = ids[i];
                p != f.subject && p != self.cfg.id && self.peer_up(p)
            });
            let Some(i) = found else {
                self.floods.retain(|x| x.subject != f.subject);
                continue;
            };
            let to = ids[i];
            if let Some(first) = self.floods.as_mut_slice().first_mut() {
                first.next = i + 1;
            }
            let msg = Message::News {
                subject: f.subject,
                incarnation: f.incarnation,
                up: f.up,
            };
            if let Some(bytes) = self.out.sign(to, &msg, &self.cfg.deployment_key) {
                self.counters.membership.news_sent += 1;
                return Some(Transmit::Proxy { to, bytes });
            }
        }
        None
    }

    pub(super) fn send_probe(&mut self, now: Instant) {
        let Some(to) = self.random_live_peer() else {
            return;
        };
        let nonce = self.next_random();
        if self.probes.insert(nonce, (to, now)).is_err() {
            return;
        }
        self.out
            .queue_proxy(to, &Message::RttProbe { nonce }, &self.cfg.deployment_key);
    }

    pub(super) fn on_rtt_reply(&mut self, now: Instant, from: ProxyId, nonce: u64, coord: Coord) {
        if let Some((to, sent)) = self.probes.remove(&nonce) {
            if to == from {
                let rtt_ms = (now.saturating_sub(sent)) as f32 / MS as f32;
                let jitter = self.next_random();
                proximity::update(&mut self.coord, &coord, rtt_ms.max(0.001), jitter);
                self.learn_coord(from, coord);
            }
        }
    }

    /// Forgets probes that were never answered.
    pub(super) fn sweep_probes(&mut self, now: Instant) {
        self.probes
            .retain(|_, (_, t)| now.saturating_sub(*t) < 10 * SEC);
    }

    /// A live peer other than ourselves, uniformly at random: a few random
    /// draws, then the first live one after the last draw.
    fn random_live_peer(&mut self) -> Option<ProxyId> {
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

    /// Arms the heartbeat and probe timers after they fired.
    pub(super) fn membership_timers(&mut self, now: Instant) {
        if self.timers.is_due(Timer::Heartbeat, now) {
            self.timers
                .set(Timer::Heartbeat, now + self.cfg.heartbeat.max(1));
            self.send_heartbeats();
            self.detect_dead_peers(now);
        }
        if self.timers.is_due(Timer::Probe, now) {
            // A fresh coordinate means nothing: the first probes go out a
            // second apart, so proximity works within seconds of a start.
            let every = if self.warmup_probes > 0 {
                self.warmup_probes -= 1;
                self.cfg.rtt_probe.min(SEC)
            } else {
                self.cfg.rtt_probe
            };
            self.timers.set(Timer::Probe, now + every.max(1));
            self.send_probe(now);
        }
    }
}
