//! One PIAS proxy: the IAP, JAP and RAP roles, membership and proximity,
//! composed as a sans-IO state machine (quinn-proto style). Inputs are
//! `handle_message`, `handle_client_packet`, `handle_target_packet` and
//! `handle_timeout`, each with `now`; outputs are drained with `poll_transmit`;
//! `poll_timeout` says when to call `handle_timeout` next (`None`: never).
//! Every table is sized in `ProxyConfig` and reserved in `Proxy::new`; a full
//! table refuses and counts it, and no input allocates.
//!
//! One file per concern: `config`, `counters`, `timers`, `transmit`,
//! `membership` (peers, news, probes), the JAP in `jap` (registrations,
//! health), `flows` (delivery) and `reports` (soft state to the RAPs), `rap`,
//! `iap`, and `select` (the JAP choice that the RAP and the IAP share).

mod config;
mod counters;
mod flows;
mod iap;
mod jap;
mod membership;
mod rap;
mod reports;
mod select;
#[cfg(test)]
mod tests;
mod timers;
mod transmit;
mod view;

pub use self::config::{GroupConfig, GroupPolicy, Policy, ProxyConfig};
pub use self::counters::{
    Counters, IapCounters, JapCounters, MembershipCounters, RapCounters, WireCounters,
};
pub use self::jap::Health;
pub use self::select::pick;
pub use self::timers::Timer;
pub use self::transmit::{Buf, Lent, Transmit};
pub use crate::ids::{Incarnation, PeerInfo};
pub use crate::time::{Instant, MS, SEC};

use self::iap::Iap;
use self::jap::Jap;
use self::membership::{Flood, Life, Peer};
use self::rap::{LookupArgs, Rap};
use self::timers::TimerTable;
use self::transmit::Outbox;
use crate::addr::{Endpoint, Group};
use crate::fixed::{FixedMap, FixedVec};
use crate::proximity;
use crate::replay::SeqError;
use crate::ring::mix64;
use crate::roster::Roster;
use crate::wire::{self, Coord, Message, ProxyId, Sender, Tried, MAX_CARRIED};
use alloc::sync::Arc;
use alloc::vec::Vec;
use heapless::Vec as HVec;

/// RAPs per group, at most.
pub const MAX_K: usize = 8;
/// RTT probes outstanding at once.
const MAX_PROBES: usize = 16;
/// Floods of news in progress at once, one per subject (a mass failure of
/// more watched peers than this is refused past it, and counted).
const MAX_FLOODS: usize = 256;

/// How many other proxies a proxy knows and hears (`Proxy::hearing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hearing {
    /// Other proxies of its cluster.
    pub cluster_peers: usize,
    /// Of those, heard from lately.
    pub cluster_heard: usize,
    /// Proxies of other clusters.
    pub remote_peers: usize,
    /// Of those, heard from lately.
    pub remote_heard: usize,
}

/// One proxy.
pub struct Proxy {
    cfg: ProxyConfig,
    /// This life of the proxy.
    incarnation: Incarnation,
    coord: Coord,
    rng: u64,
    roster: Arc<Roster>,
    peers: FixedMap<ProxyId, Peer>,
    /// Peers we monitor (our cluster and the next `watch_clusters`), sorted.
    watched: Vec<ProxyId>,
    /// Peers that monitor us: we send them heartbeats.
    watchers: Vec<ProxyId>,
    floods: FixedVec<Flood>,
    probes: FixedMap<u64, (ProxyId, Instant)>,
    jap: Jap,
    rap: Rap,
    iap: Iap,
    timers: TimerTable,
    /// RTT probes still to send at the start-up rate (one a second).
    warmup_probes: u8,
    out: Outbox,
    counters: Counters,
}

impl Proxy {
    /// A proxy that knows `peers` (itself may be among them) and starts at `now`.
    /// All tables are reserved here, once. Beyond `max_peers` the rest are
    /// refused (absent from the ring) and counted in `peers_refused`.
    pub fn new(cfg: ProxyConfig, peers: &[PeerInfo], now: Instant) -> Proxy {
        let me = PeerInfo {
            id: cfg.id,
            cluster: cfg.cluster,
        };
        let others: Vec<PeerInfo> = peers.iter().copied().filter(|p| p.id != cfg.id).collect();
        // The proxy itself first, so a full roster never leaves it out.
        let mut all = Vec::with_capacity(others.len() + 1);
        all.push(me);
        all.extend(others.iter().take(cfg.max_peers).copied());
        let refused = others.len().saturating_sub(cfg.max_peers);
        let roster = Roster::new(&all, cfg.max_peers + 1);
        let mut proxy = Proxy::with_roster(cfg, Arc::new(roster), now);
        proxy.counters.membership.peers_refused += refused as u64;
        proxy
    }

    /// A proxy of a deployment whose members are `roster` (shared with the
    /// other proxies of this process; it must include this proxy's id, or the
    /// proxy never counts itself as a RAP). The peer table holds up to one
    /// entry per roster member, reserved here. `now` is also this life's
    /// boot: a proxy restarted later gets a later incarnation.
    pub fn with_roster(cfg: ProxyConfig, roster: Arc<Roster>, now: Instant) -> Proxy {
        let (watched, watchers) = watch_sets(&roster, &cfg);
        let room = cfg
            .max_peer_state
            .max(watched.len() + 1)
            .min(roster.len().max(1));
        let mut peer_map = FixedMap::with_capacity(room);
        let floor = now.saturating_sub(cfg.freshness);
        for &p in &watched {
            // The table has room for every watched peer, so this cannot be refused.
            let _ = peer_map.insert(p, Peer::fresh(now, floor));
        }
        let boot = now.max(1);
        let mut timers = TimerTable::default();
        timers.set(Timer::Heartbeat, now);
        let first_probe = if cfg.rtt_warmup_probes > 0 {
            (cfg.rtt_probe / 4).min(SEC)
        } else {
            cfg.rtt_probe / 4
        };
        timers.set(Timer::Probe, now + first_probe.max(1));
        timers.set(Timer::Sweep, now + cfg.sweep_period());
        Proxy {
            incarnation: Incarnation {
                boot,
                refutation: 0,
            },
            coord: proximity::fresh(),
            rng: mix64(u64::from(cfg.id) ^ now),
            peers: peer_map,
            watched,
            watchers,
            roster,
            floods: FixedVec::with_capacity(MAX_FLOODS),
            probes: FixedMap::with_capacity(MAX_PROBES),
            jap: Jap::new(&cfg, flow_key(&cfg.deployment_key, cfg.id, boot)),
            rap: Rap::new(&cfg),
            iap: Iap::new(&cfg),
            timers,
            warmup_probes: cfg.rtt_warmup_probes,
            out: Outbox::new(cfg.id, boot, cfg.tx_queue),
            counters: Counters::default(),
            cfg,
        }
    }

    /// This proxy's id.
    pub fn id(&self) -> ProxyId {
        self.cfg.id
    }

    /// This proxy's life: its boot and refutations so far.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Its network coordinate.
    pub fn coord(&self) -> Coord {
        self.coord
    }

    /// Everything counted so far.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.wire.tx_queue_full = self.out.full;
        c.wire.oversized += self.out.oversized;
        c
    }

    /// Whether this proxy believes `p` is up (itself always is).
    pub fn peer_up(&self, p: ProxyId) -> bool {
        p == self.cfg.id || (self.roster.contains(p) && self.peers.get(&p).is_none_or(|x| x.up))
    }

    /// What this proxy hears of the others, for deciding whether to announce
    /// the anycast prefix: a proxy counts as heard if it is up and a
    /// verified message of its came within `within` before `now`.
    pub fn hearing(&self, now: Instant, within: Instant) -> Hearing {
        let mut h = Hearing::default();
        let me = self.cfg.cluster;
        for (&id, peer) in self.peers.iter() {
            if id == self.cfg.id {
                continue;
            }
            let heard = peer.up
                && peer.incarnation.is_some()
                && now.saturating_sub(peer.last_heard) <= within;
            if self.roster.cluster_of(id) == Some(me) {
                h.cluster_peers += 1;
                h.cluster_heard += usize::from(heard);
            } else {
                h.remote_peers += 1;
                h.remote_heard += usize::from(heard);
            }
        }
        h
    }

    /// The incarnation this proxy knows for `p`, if it heard of one.
    pub fn peer_incarnation(&self, p: ProxyId) -> Option<Incarnation> {
        self.peers.get(&p).and_then(|x| x.incarnation)
    }

    /// Live targets (not down, not draining after a leave) this proxy holds as JAP for `g`.
    pub fn live_targets(&self, g: &Group) -> usize {
        self.jap.groups.get(g).map_or(0, |j| {
            self.jap
                .targets
                .iter(&j.targets)
                .filter(|t| t.counts())
                .count()
        })
    }

    /// Targets (any health) this proxy holds as JAP for `g`.
    pub fn targets_held(&self, g: &Group) -> usize {
        self.jap.groups.get(g).map_or(0, |j| j.targets.len())
    }

    /// Flows currently mapped to each target of `g` (target, weight, flows).
    pub fn target_flows(&self, g: &Group) -> Vec<(Endpoint, u16, u32)> {
        self.jap.groups.get(g).map_or(Vec::new(), |j| {
            self.jap
                .targets
                .iter(&j.targets)
                .map(|t| (t.ep, t.weight, t.flows))
                .collect()
        })
    }

    /// The live RAPs of `g` as this proxy sees the membership.
    pub fn raps_of(&self, g: &Group) -> HVec<ProxyId, MAX_K> {
        let mut out = [0; MAX_K];
        let k = self.cfg.k_raps.min(MAX_K);
        let n = self
            .roster
            .ring()
            .raps(g, k, |p| self.peer_up(p), &mut out[..k]);
        out[..n].iter().copied().collect()
    }

    /// Table fill, for the status report: (name, used, capacity). Targets
    /// count every entry, down ones included.
    pub fn table_fill(&self) -> [(&'static str, usize, usize); 11] {
        let roster_peers = self.roster.len().saturating_sub(1);
        [
            ("peers", roster_peers, self.cfg.max_peers.max(roster_peers)),
            ("peer_state", self.peers.len(), self.peers.capacity()),
            (
                "jap_groups",
                self.jap.groups.len(),
                self.jap.groups.capacity(),
            ),
            (
                "targets",
                self.jap.targets.len(),
                self.jap.targets.capacity(),
            ),
            ("flows", self.jap.flows.len(), self.jap.flows.capacity()),
            ("nonces", self.jap.nonces.len(), self.jap.nonces.capacity()),
            (
                "rap_groups",
                self.rap.groups.len(),
                self.rap.groups.capacity(),
            ),
            ("rap_entries", self.rap.japs.len(), self.rap.japs.capacity()),
            ("iap_cache", self.iap.cache.len(), self.iap.cache.capacity()),
            (
                "pending",
                self.iap.pending.len(),
                self.iap.pending.capacity(),
            ),
            ("floods", self.floods.len(), self.floods.capacity()),
        ]
    }

    /// Bytes per entry of each table: the entry itself (pool entries with
    /// their link). Fixed hash tables reserve 8/7 to 16/7 slots per unit of
    /// capacity (a power of two, at most 7/8 full).
    pub fn entry_sizes() -> [(&'static str, usize); 8] {
        use core::mem::size_of;
        [
            (
                "peer",
                size_of::<(ProxyId, Peer)>()
                    + crate::ring::VNODES * size_of::<(u64, ProxyId)>()
                    + 3 * size_of::<ProxyId>(),
            ),
            ("jap group", size_of::<(Group, jap::JapGroup)>()),
            ("target", size_of::<jap::TargetEntry>() + 8),
            ("flow", size_of::<((Group, Endpoint), jap::Flow)>()),
            ("rap group", size_of::<(Group, crate::pool::List)>()),
            ("rap jap", size_of::<rap::JapEntry>() + 8),
            ("iap cache", size_of::<(Group, iap::CacheEntry)>()),
            ("pending lookup", size_of::<(Group, iap::Pending)>()),
        ]
    }

    /// Predicted RTT (ms) to proxy `p`, if its coordinate is known.
    pub fn predicted_rtt_ms(&self, p: ProxyId) -> Option<f32> {
        self.peers
            .get(&p)
            .and_then(|x| x.coord)
            .map(|c| proximity::distance(&self.coord, &c))
    }

    /// The next datagram to send: the queue first, then our news floods.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.out.pop() {
            return Some(t);
        }
        self.next_flood_message()
    }

    /// The queued transmits, lent to be read in place, oldest first; hand
    /// them back with `return_transmits` (which forgets them), then
    /// `poll_transmit` has only what was not queued (news floods, made as
    /// they are asked for). For an I/O layer on a budget: no transmit is
    /// copied out of the queue.
    #[must_use = "hand the lent queue back with return_transmits"]
    pub fn lend_transmits(&mut self) -> Lent {
        self.out.lend()
    }

    /// Takes back what `lend_transmits` lent, as sent.
    pub fn return_transmits(&mut self, lent: Lent) {
        self.out.give_back(lent);
    }

    /// Whether anything is waiting for `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty() || !self.floods.is_empty()
    }

    /// When `handle_timeout` must next be called; `None` when no timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn next_random(&mut self) -> u64 {
        self.rng = mix64(self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
        self.rng
    }

    /// Sends to a proxy; a message to itself is handled at once.
    fn send_proxy(&mut self, now: Instant, to: ProxyId, msg: &Message) {
        if to == self.cfg.id {
            self.on_proxy_message(now, to, msg);
            return;
        }
        self.out.queue_proxy(to, msg, &self.cfg.deployment_key);
    }

    /// Sends to a target of `group`, signed with the group's key.
    fn send_target(&mut self, group: Group, to: Endpoint, msg: &Message) {
        if let Some(key) = self.cfg.group_key(&group) {
            self.out.queue_target(group, to, msg, &key);
        }
    }

    /// A datagram on the proxy port (from a proxy) or the registration port
    /// (from a target); `src` is its UDP source. Nothing that fails to verify
    /// changes any state or causes any output.
    pub fn handle_message(&mut self, now: Instant, src: Endpoint, bytes: &[u8]) {
        self.out.set_clock(now);
        let parsed = match wire::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.counters.wire.malformed += 1;
                return;
            }
        };
        let (sender, boot) = match parsed.sender {
            Sender::Target => {
                let Some(group) = parsed.message.target_group() else {
                    self.counters.wire.malformed += 1;
                    return;
                };
                let Some(key) = self.cfg.group_key(&group) else {
                    self.counters.wire.unknown_group += 1;
                    return;
                };
                if parsed.verify(&key).is_err() {
                    self.counters.wire.bad_tag += 1;
                    return;
                }
                self.on_target_message(now, src, &parsed.message);
                return;
            }
            Sender::Proxy { id, boot } => (id, boot),
        };
        if sender == self.cfg.id || !self.roster.contains(sender) {
            self.counters.wire.unknown_sender += 1;
            return;
        }
        if parsed.to != self.cfg.id {
            // Addressed (and signed) for another proxy: a replay from elsewhere.
            self.counters.wire.misdirected += 1;
            return;
        }
        if parsed.verify(&self.cfg.deployment_key).is_err() {
            self.counters.wire.bad_tag += 1;
            return;
        }
        // Judge the message against the sender's life and replay window
        // before anything changes: a stale or replayed message changes nothing.
        let floor = now.saturating_sub(self.cfg.freshness);
        let (life, verdict) = self.judge(sender, boot, parsed.seq, floor);
        match (life, verdict) {
            (Life::Old, _) => {
                self.counters.wire.stale_incarnation += 1;
                return;
            }
            (_, Err(SeqError::Replay)) => {
                self.counters.wire.replayed += 1;
                return;
            }
            (_, Err(SeqError::Stale)) => {
                self.counters.wire.stale += 1;
                return;
            }
            _ => {}
        }
        if !self.record_life(now, sender, boot) {
            return;
        }
        if life == Life::Restarted {
            // A later life, authenticated: its state starts over.
            self.peer_restarted(now, sender, boot);
        }
        if let Some(peer) = self.peers.get_mut(&sender) {
            peer.replay.record(parsed.seq);
        }
        self.heard_from(now, sender);
        if parsed.message.target_group().is_some() {
            // Target-facing kinds are never sent to a proxy.
            self.counters.wire.malformed += 1;
            return;
        }
        self.on_proxy_message(now, sender, &parsed.message);
    }

    /// A client's packet to `group`, arrived by native anycast (IAP role).
    /// Packets to groups this deployment does not serve cause no lookup.
    pub fn handle_client_packet(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        packet: &[u8],
    ) {
        self.out.set_clock(now);
        if packet.len() > MAX_CARRIED {
            self.counters.wire.oversized += 1;
            return;
        }
        if self.cfg.group_policy(&group).is_none() {
            self.counters.iap.unknown_group += 1;
            return;
        }
        self.iap_send(now, group, client, packet, &Tried::new());
    }

    /// A target's reply to a client (JAP role; the I/O layer's NAT found the flow).
    pub fn handle_target_packet(
        &mut self,
        now: Instant,
        group: Group,
        target: Endpoint,
        client: Endpoint,
        packet: &[u8],
    ) {
        self.out.set_clock(now);
        self.jap_target_reply(now, group, target, client);
        if !self.out.push_packet(group, client, None, packet) {
            self.counters.wire.oversized += 1;
        }
    }

    /// The host fell behind its receive path at `now`: frames may have been
    /// lost before this proxy saw them (`pias_net`'s `NicDevice` counts these
    /// as `rx_overruns`). A target ping outstanding then that goes unanswered
    /// is not counted against the target (`jap.misses_excused`), so that an
    /// appliance's own overload, a flood, does not take healthy targets down;
    /// misses outside overruns count as before.
    pub fn handle_receive_overrun(&mut self, now: Instant) {
        self.jap.overrun_at = Some(self.jap.overrun_at.map_or(now, |o| o.max(now)));
    }

    /// Runs every timer due at `now`, in `Timer::ALL`'s order; each re-arms
    /// itself (or stops when nothing is left to do).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.set_clock(now);
        for t in Timer::ALL {
            if !self.timers.is_due(t, now) {
                continue;
            }
            match t {
                Timer::Heartbeat | Timer::Probe => self.membership_timers(now),
                Timer::Targets => self.target_timers(now),
                Timer::Reports => self.report_timers(now),
                Timer::Lookups => self.lookup_timers(now),
                Timer::RapExpiry => self.rap_expire(now),
                Timer::Sweep => {
                    self.timers.set(Timer::Sweep, now + self.cfg.sweep_period());
                    self.sweep_flows(now);
                    self.sweep_probes(now);
                }
            }
        }
    }

    fn on_proxy_message(&mut self, now: Instant, from: ProxyId, msg: &Message) {
        match *msg {
            Message::Heartbeat { coord, .. } => self.learn_coord(from, coord),
            Message::News {
                subject,
                incarnation,
                up,
            } => self.on_news(now, from, subject, incarnation, up),
            Message::RttProbe { nonce } => {
                let reply = Message::RttReply {
                    nonce,
                    coord: self.coord,
                };
                self.send_proxy(now, from, &reply);
            }
            Message::RttReply { nonce, coord } => self.on_rtt_reply(now, from, nonce, coord),
            Message::CountReport {
                group,
                count,
                coord,
            } => self.rap_report(now, from, group, count, coord),
            Message::ReportAck {
                group,
                count,
                band_pct,
            } => self.on_report_ack(from, group, count, band_pct),
            Message::Lookup {
                group,
                client,
                iap_coord,
                ref tried,
                packet,
            } => self.rap_lookup(
                now,
                from,
                LookupArgs {
                    group,
                    client,
                    iap_coord,
                    tried,
                    packet,
                },
            ),
            Message::JapList {
                group,
                ref japs,
                ttl_s,
            } => self.iap_install(now, from, group, japs, ttl_s),
            Message::Forward {
                group,
                client,
                iap,
                ref tried,
                packet,
            } => self.jap_forward(now, group, client, iap, tried, packet),
            Message::Invalidate {
                group,
                gone,
                ref bounced,
            } => {
                let b = bounced.as_ref().map(|b| (b.client, &b.tried, b.packet));
                self.on_invalidate(now, from, group, gone, b);
            }
            // Target-facing messages never arrive signed with the deployment key.
            Message::Join(_)
            | Message::Leave(_)
            | Message::Ack { .. }
            | Message::Nack { .. }
            | Message::Ping { .. }
            | Message::Pong { .. }
            | Message::Rejoin { .. } => self.counters.wire.malformed += 1,
        }
    }
}

/// The flow table's hash key for this life: secret (from the deployment key)
/// and different per proxy and per boot.
fn flow_key(key: &wire::Key, id: ProxyId, boot: u64) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"pias flow hash");
    h.update(key.0);
    h.update(id.to_le_bytes());
    h.update(boot.to_le_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// (watched, watchers) of a proxy, each sorted: with its deployment's clusters
/// in a cycle, cluster i watches clusters i..=i+w and is watched by i-w..=i.
fn watch_sets(roster: &Roster, cfg: &ProxyConfig) -> (Vec<ProxyId>, Vec<ProxyId>) {
    let clusters = roster.clusters();
    let n = clusters.len();
    let Ok(mine) = clusters.binary_search(&cfg.cluster) else {
        // Our cluster is not in the roster: we watch, and are watched by, no one.
        return (Vec::new(), Vec::new());
    };
    let w = cfg.watch_clusters.min(n.saturating_sub(1));
    let members = |offsets: &mut dyn Iterator<Item = usize>| -> Vec<ProxyId> {
        let mut v: Vec<ProxyId> = offsets
            .flat_map(|c| roster.cluster_members(clusters[c]).iter().map(|&(_, p)| p))
            .filter(|&p| p != cfg.id)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let watched = members(&mut (0..=w).map(|i| (mine + i) % n));
    let watchers = members(&mut (0..=w).map(|i| (mine + n - i) % n));
    (watched, watchers)
}
