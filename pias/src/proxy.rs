//! One PIAS proxy: the IAP, JAP and RAP roles, membership and proximity,
//! composed as a sans-IO state machine (quinn-proto style). Inputs are
//! `handle_message`, `handle_client_packet`, `handle_target_packet` and
//! `handle_timeout`, each with `now`; outputs are drained with `poll_transmit`;
//! `poll_timeout` says when to call `handle_timeout` next. Every table is sized
//! in `ProxyConfig` and never grows; a full table refuses and counts it.

use crate::addr::{Endpoint, Group};
use crate::fixed::{FixedMap, FixedVec};
use crate::proximity;
use crate::ring::mix64;
use crate::roster::Roster;
use crate::wire::{
    self, Coord, Key, Message, NackReason, ProxyId, RankedJap, Registration, ReplayWindow,
    MAX_CARRIED, MAX_MESSAGE, MAX_RANKED,
};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use heapless::Vec as HVec;

/// Time in microseconds. The proxy treats it as wall-clock time for the
/// freshness of registrations (the caller's clock must be roughly in sync).
pub type Instant = u64;
pub const MS: u64 = 1_000;
pub const SEC: u64 = 1_000_000;
/// RAPs per group, at most.
pub const MAX_K: usize = 8;

/// How a RAP picks among a group's JAPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The JAP nearest the client's IAP.
    Proximity,
    /// The JAP with the most targets (capacity follows members).
    Load,
    /// Any JAP, at random.
    Random,
    /// A JAP chosen by the client's address, the same from every IAP (affinity).
    ClientHash,
}

/// A group this deployment serves.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub group: Group,
    /// Key of the group's join/leave/ping messages.
    pub key: Key,
    pub policy: Policy,
    /// Initial count-report band, percent.
    pub band_pct: u8,
}

/// Sizes and timers of one proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub id: ProxyId,
    pub cluster: u32,
    pub k_raps: usize,
    pub max_peers: usize,
    pub max_groups: usize,
    pub max_targets_per_group: usize,
    pub max_japs_per_group: usize,
    pub max_flows: usize,
    pub max_pending: usize,
    pub tx_queue: usize,
    pub heartbeat: u64,
    pub peer_dead: u64,
    /// Clusters each cluster watches besides itself.
    pub watch_clusters: usize,
    pub target_ping: u64,
    pub target_rise: u8,
    pub target_fall: u8,
    /// A delivered packet with no reply within this time triggers an early ping.
    pub passive_timeout: u64,
    pub cache_ttl: u64,
    pub lookup_timeout: u64,
    pub rtt_probe: u64,
    /// Registrations whose timestamp is further than this from `now` are refused.
    pub freshness: u64,
    pub flow_idle: u64,
    pub deployment_key: Key,
    pub groups: Vec<GroupConfig>,
}

impl ProxyConfig {
    /// Defaults matching docs/config.md's example, for proxy `id` in `cluster`.
    pub fn new(id: ProxyId, cluster: u32, deployment_key: Key) -> Self {
        ProxyConfig {
            id,
            cluster,
            k_raps: 4,
            max_peers: 1024,
            max_groups: 4096,
            max_targets_per_group: 64,
            max_japs_per_group: 64,
            max_flows: 16384,
            max_pending: 256,
            tx_queue: 256,
            heartbeat: SEC,
            peer_dead: 3500 * MS,
            watch_clusters: 2,
            target_ping: 2 * SEC,
            target_rise: 2,
            target_fall: 3,
            passive_timeout: 500 * MS,
            cache_ttl: 3600 * SEC,
            lookup_timeout: 300 * MS,
            rtt_probe: 30 * SEC,
            freshness: 30 * SEC,
            flow_idle: 120 * SEC,
            deployment_key,
            groups: Vec::new(),
        }
    }
}

/// Another proxy, as the deployment lists it.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    pub id: ProxyId,
    pub cluster: u32,
}

pub type Buf = HVec<u8, MAX_MESSAGE>;

/// What the proxy asks its I/O layer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A signed message to another proxy's unicast address and proxy port.
    Proxy { to: ProxyId, bytes: Buf },
    /// A signed message to a target, from the registration port of the group's address.
    Target { to: Endpoint, bytes: Buf },
    /// A client packet to a target (the I/O layer NATs it: from the JAP to `target`).
    Deliver {
        group: Group,
        client: Endpoint,
        target: Endpoint,
        packet: Buf,
    },
    /// A target's reply to a client, sourced from the group address.
    ToClient {
        group: Group,
        client: Endpoint,
        packet: Buf,
    },
}

/// Everything counted, for the status report. Every refusal has a counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub malformed: u64,
    pub bad_tag: u64,
    pub replayed: u64,
    pub stale: u64,
    pub unknown_sender: u64,
    pub unknown_group: u64,
    pub joins: u64,
    pub leaves: u64,
    pub nack_capacity: u64,
    pub nack_auth: u64,
    pub nack_bad_request: u64,
    pub capacity_refusals: u64,
    pub tx_queue_full: u64,
    pub lookups_sent: u64,
    pub lookup_retries: u64,
    pub lookups_failed: u64,
    pub forwards_sent: u64,
    pub delivered: u64,
    pub no_member_drops: u64,
    pub invalidations_sent: u64,
    pub invalidations_received: u64,
    pub targets_down: u64,
    pub peers_down: u64,
    pub peers_up: u64,
    pub news_sent: u64,
    pub news_duplicates: u64,
    pub reports_sent: u64,
    pub oversized: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Suspect,
    Down,
}

#[derive(Clone, Debug)]
/// What this proxy has learnt about another. A roster member without an
/// entry is up and has not been heard from; entries are made on first contact
/// or news, so a proxy of a large deployment holds state only for the peers it
/// talks to (its watched peers, the RAPs and JAPs of its groups).
struct Peer {
    up: bool,
    /// Highest sequence of news this peer originated that we have seen.
    news_seen: u32,
    last_heard: Instant,
    coord: Option<Coord>,
    replay: ReplayWindow,
}

impl Peer {
    fn fresh(now: Instant) -> Peer {
        Peer {
            up: true,
            news_seen: 0,
            last_heard: now,
            coord: None,
            replay: ReplayWindow::default(),
        }
    }
}

#[derive(Clone, Debug)]
struct TargetEntry {
    ep: Endpoint,
    health: Health,
    misses: u8,
    good: u8,
    ping_nonce: u64,
    ping_outstanding: bool,
    next_ping: Instant,
    awaiting_since: Option<Instant>,
    down_since: Option<Instant>,
    flows: u32,
}

#[derive(Clone, Debug)]
struct JapGroup {
    targets: FixedVec<TargetEntry>,
    /// IAPs that sent this group's packets here (newest last), told when the group empties.
    iaps: HVec<ProxyId, MAX_IAPS_PER_GROUP>,
    reported: Option<u32>,
    reported_to: HVec<ProxyId, MAX_K>,
    band_pct: u8,
}

#[derive(Clone, Copy, Debug)]
struct JapEntry {
    jap: ProxyId,
    count: u32,
    coord: Coord,
}

#[derive(Clone, Debug)]
struct CacheEntry {
    japs: HVec<RankedJap, MAX_RANKED>,
    expires: Instant,
}

#[derive(Clone, Debug)]
struct Pending {
    rap_index: usize,
    deadline: Instant,
    client: Endpoint,
    packet: HVec<u8, MAX_CARRIED>,
}

/// A `Lookup` as the RAP handles it.
struct LookupArgs<'p> {
    group: Group,
    client: Endpoint,
    iap_coord: Coord,
    exclude: ProxyId,
    packet: &'p [u8],
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    target: Endpoint,
    last: Instant,
}

/// News being sent to every live peer, one message per `poll_transmit` once
/// the queue is empty: a flood to 20,000 peers needs no 20,000-slot queue.
#[derive(Clone, Copy, Debug)]
struct Flood {
    news_seq: u32,
    subject: ProxyId,
    up: bool,
    /// Next roster position to send to.
    next: usize,
}

/// One proxy.
pub struct Proxy {
    cfg: ProxyConfig,
    seq: u64,
    coord: Coord,
    rng: u64,
    roster: Arc<Roster>,
    peers: FixedMap<ProxyId, Peer>,
    /// Peers we monitor (our cluster and the next `watch_clusters`).
    watched: Vec<ProxyId>,
    /// Peers that monitor us: we send them heartbeats.
    watchers: Vec<ProxyId>,
    news_seq: u32,
    jap: FixedMap<Group, JapGroup>,
    flows: FixedMap<(Group, Endpoint), Flow>,
    recent_nonces: FixedVec<(u64, Instant)>,
    rap: FixedMap<Group, FixedVec<JapEntry>>,
    cache: FixedMap<Group, CacheEntry>,
    pending: FixedMap<Group, Pending>,
    probes: FixedMap<u64, (ProxyId, Instant)>,
    tx: VecDeque<Transmit>,
    tx_cap: usize,
    floods: FixedVec<Flood>,
    next_heartbeat: Instant,
    next_probe: Instant,
    next_sweep: Instant,
    /// The earliest target ping or passive check over all JAP groups; kept up
    /// to date on every change so no timer query has to scan the targets.
    target_deadline: Instant,
    pub counters: Counters,
}

const RECENT_NONCES: usize = 1024;
/// IAPs remembered per JAP group for proactive invalidation; older ones learn
/// on their next packet instead.
const MAX_IAPS_PER_GROUP: usize = 16;
const MAX_PROBES: usize = 16;
/// Floods of our own news in progress at once (a mass failure of more
/// watched peers than this is refused past it, and counted).
const MAX_FLOODS: usize = 256;

/// How long a target may stay down before it is treated as having left.
const DOWN_FORGET_PINGS: u64 = 30;

impl Proxy {
    /// A proxy that knows `peers` (itself may be among them) and starts at `now`.
    /// All tables are reserved here, once. Beyond `max_peers` the rest are
    /// refused (absent from the ring) and counted in `capacity_refusals`.
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
        proxy.counters.capacity_refusals += refused as u64;
        proxy
    }

    /// A proxy of a deployment whose members are `roster` (shared with the
    /// other proxies of this process; it must include this proxy's id, or the
    /// proxy never counts itself as a RAP). The peer table holds up to one
    /// entry per roster member, reserved here.
    pub fn with_roster(cfg: ProxyConfig, roster: Arc<Roster>, now: Instant) -> Proxy {
        let (watched, watchers) = watch_sets(&roster, &cfg);
        let mut peer_map = FixedMap::with_capacity(roster.len());
        for &p in &watched {
            // Capacity is the roster's size, so this cannot be refused.
            let _ = peer_map.insert(p, Peer::fresh(now));
        }
        Proxy {
            seq: now.max(1),
            coord: proximity::fresh(),
            rng: mix64(u64::from(cfg.id) ^ now),
            peers: peer_map,
            watched,
            watchers,
            roster,
            news_seq: 0,
            jap: FixedMap::with_capacity(cfg.max_groups),
            flows: FixedMap::with_capacity(cfg.max_flows),
            recent_nonces: FixedVec::with_capacity(RECENT_NONCES),
            rap: FixedMap::with_capacity(cfg.max_groups),
            cache: FixedMap::with_capacity(cfg.max_groups),
            pending: FixedMap::with_capacity(cfg.max_pending),
            probes: FixedMap::with_capacity(MAX_PROBES),
            tx: VecDeque::with_capacity(cfg.tx_queue),
            tx_cap: cfg.tx_queue,
            floods: FixedVec::with_capacity(MAX_FLOODS),
            next_heartbeat: now,
            next_probe: now + cfg.rtt_probe / 4,
            next_sweep: now + cfg.flow_idle / 2,
            target_deadline: Instant::MAX,
            counters: Counters::default(),
            cfg,
        }
    }

    pub fn id(&self) -> ProxyId {
        self.cfg.id
    }

    pub fn coord(&self) -> Coord {
        self.coord
    }

    /// Whether this proxy believes `p` is up (itself always is).
    pub fn peer_up(&self, p: ProxyId) -> bool {
        p == self.cfg.id || (self.roster.contains(p) && self.peers.get(&p).is_none_or(|x| x.up))
    }

    /// Live targets this proxy holds as JAP for `g`.
    pub fn live_targets(&self, g: &Group) -> usize {
        self.jap.get(g).map_or(0, |j| {
            j.targets
                .iter()
                .filter(|t| t.health != Health::Down)
                .count()
        })
    }

    /// The JAPs and counts this proxy holds as RAP for `g`.
    pub fn rap_entries(&self, g: &Group) -> Vec<(ProxyId, u32)> {
        self.rap
            .get(g)
            .map_or(Vec::new(), |v| v.iter().map(|e| (e.jap, e.count)).collect())
    }

    /// The IAP's cached JAP list for `g`.
    pub fn cached_japs(&self, g: &Group) -> Vec<ProxyId> {
        self.cache
            .get(g)
            .map_or(Vec::new(), |c| c.japs.iter().map(|r| r.jap).collect())
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

    /// Table fill, for the status report: (name, used, capacity).
    pub fn table_fill(&self) -> [(&'static str, usize, usize); 7] {
        [
            (
                "peers",
                self.roster.len().saturating_sub(1),
                self.cfg.max_peers.max(self.roster.len().saturating_sub(1)),
            ),
            ("peer_state", self.peers.len(), self.peers.capacity()),
            ("jap_groups", self.jap.len(), self.jap.capacity()),
            ("rap_groups", self.rap.len(), self.rap.capacity()),
            ("iap_cache", self.cache.len(), self.cache.capacity()),
            ("flows", self.flows.len(), self.flows.capacity()),
            ("pending", self.pending.len(), self.pending.capacity()),
        ]
    }

    /// Bytes per entry of each table (the entry itself; hash tables add about
    /// one control byte per slot and keep 1/8 of slots free).
    pub fn entry_sizes() -> [(&'static str, usize); 7] {
        use core::mem::size_of;
        [
            (
                "peer",
                size_of::<(ProxyId, Peer)>()
                    + crate::ring::VNODES * size_of::<(u64, ProxyId)>()
                    + 3 * size_of::<ProxyId>(),
            ),
            ("jap group", size_of::<(Group, JapGroup)>()),
            ("target", size_of::<TargetEntry>()),
            ("flow", size_of::<((Group, Endpoint), Flow)>()),
            ("rap group", size_of::<(Group, FixedVec<JapEntry>)>()),
            ("rap jap", size_of::<JapEntry>()),
            ("iap cache", size_of::<(Group, CacheEntry)>()),
        ]
    }

    /// The next datagram to send: the queue first, then our news floods.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.tx.pop_front() {
            return Some(t);
        }
        self.next_flood_message()
    }

    /// Whether anything is waiting for `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        !self.tx.is_empty() || !self.floods.is_empty()
    }

    fn next_flood_message(&mut self) -> Option<Transmit> {
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

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self
            .next_heartbeat
            .min(self.next_probe)
            .min(self.next_sweep)
            .min(self.target_deadline);
        for (_, p) in self.pending.iter() {
            t = t.min(p.deadline);
        }
        Some(t)
    }

    fn next_random(&mut self) -> u64 {
        self.rng = mix64(self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
        self.rng
    }

    fn push(&mut self, t: Transmit) {
        if self.tx.len() >= self.tx_cap {
            self.counters.tx_queue_full += 1;
            return;
        }
        self.tx.push_back(t);
    }

    fn encode(&mut self, msg: &Message, key: &Key, sender: ProxyId) -> Option<Buf> {
        self.seq += 1;
        let mut buf = Buf::new();
        // A Buf is MAX_MESSAGE bytes: fill it, encode, then cut to length.
        let _ = buf.resize(MAX_MESSAGE, 0);
        match wire::encode(sender, self.seq, msg, key, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => {
                self.counters.oversized += 1;
                None
            }
        }
    }

    /// Sends to a proxy; a message to itself is handled at once.
    fn send_proxy(&mut self, now: Instant, to: ProxyId, msg: &Message) {
        if to == self.cfg.id {
            self.on_proxy_message(now, to, msg);
            return;
        }
        let key = self.cfg.deployment_key.clone();
        if let Some(bytes) = self.encode(msg, &key, self.cfg.id) {
            self.push(Transmit::Proxy { to, bytes });
        }
    }

    fn send_target(&mut self, to: Endpoint, group: &Group, msg: &Message) {
        let Some(key) = self.group_key(group) else {
            return;
        };
        if let Some(bytes) = self.encode(msg, &key, self.cfg.id) {
            self.push(Transmit::Target { to, bytes });
        }
    }

    fn group_cfg(&self, g: &Group) -> Option<&GroupConfig> {
        self.cfg.groups.iter().find(|c| c.group == *g)
    }

    fn group_key(&self, g: &Group) -> Option<Key> {
        self.group_cfg(g).map(|c| c.key.clone())
    }

    // ---------------------------------------------------------------- input

    /// A datagram on the proxy port (from a proxy) or the registration port
    /// (from a target); `src` is its UDP source.
    pub fn handle_message(&mut self, now: Instant, src: Endpoint, bytes: &[u8]) {
        let parsed = match wire::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        if let Some(group) = parsed.message.target_group() {
            let Some(key) = self.group_key(&group) else {
                self.counters.unknown_group += 1;
                return;
            };
            if parsed.verify(&key).is_err() {
                self.counters.bad_tag += 1;
                if let Message::Join(r) | Message::Leave(r) = &parsed.message {
                    self.nack(r, NackReason::Auth);
                }
                return;
            }
            self.on_target_message(now, src, &parsed.message);
            return;
        }
        let sender = parsed.sender;
        if sender == self.cfg.id || !self.roster.contains(sender) {
            self.counters.unknown_sender += 1;
            return;
        }
        if parsed.verify(&self.cfg.deployment_key).is_err() {
            self.counters.bad_tag += 1;
            return;
        }
        let Ok(peer) = self.peers.get_or_insert_with(sender, || Peer::fresh(now)) else {
            // Cannot happen (one entry per roster member fits); refuse rather than skip the replay check.
            self.counters.capacity_refusals += 1;
            return;
        };
        {
            match peer.replay.check(parsed.seq) {
                Ok(()) => peer.replay.record(parsed.seq),
                Err(wire::WireError::Replay) => {
                    self.counters.replayed += 1;
                    return;
                }
                Err(_) => {
                    self.counters.stale += 1;
                    return;
                }
            }
            peer.last_heard = now;
        }
        self.heard_from(now, sender);
        self.on_proxy_message(now, sender, &parsed.message);
    }

    /// A client's packet to `group`, arrived by native anycast (IAP role).
    pub fn handle_client_packet(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        packet: &[u8],
    ) {
        if packet.len() > MAX_CARRIED {
            self.counters.oversized += 1;
            return;
        }
        self.iap_send(now, group, client, packet, None);
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
        if let Some(j) = self.jap.get_mut(&group) {
            if let Some(t) = j.targets.as_mut_slice().iter_mut().find(|t| t.ep == target) {
                t.awaiting_since = None;
                if t.health == Health::Suspect {
                    t.health = Health::Up;
                    t.misses = 0;
                }
            }
        }
        if let Some(f) = self.flows.get_mut(&(group, client)) {
            f.last = now;
        }
        let Ok(packet) = Buf::from_slice(packet) else {
            self.counters.oversized += 1;
            return;
        };
        self.push(Transmit::ToClient {
            group,
            client,
            packet,
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat;
            self.send_heartbeats(now);
            self.detect_dead_peers(now);
        }
        if now >= self.target_deadline {
            self.target_timers(now);
        }
        self.pending_timers(now);
        if now >= self.next_probe {
            self.next_probe = now + self.cfg.rtt_probe;
            self.send_probe(now);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + self.cfg.flow_idle / 2;
            let idle = self.cfg.flow_idle;
            self.flows.retain(|_, f| now.saturating_sub(f.last) < idle);
            let fresh = self.cfg.freshness;
            self.recent_nonces
                .retain(|&(_, t)| now.saturating_sub(t) < 2 * fresh);
            self.probes
                .retain(|_, (_, t)| now.saturating_sub(*t) < 10 * SEC);
        }
    }

    // ------------------------------------------------------- membership

    fn send_heartbeats(&mut self, now: Instant) {
        let msg = Message::Heartbeat {
            cluster: self.cfg.cluster,
            coord: self.coord,
        };
        for i in 0..self.watchers.len() {
            let to = self.watchers[i];
            self.send_proxy(now, to, &msg);
        }
    }

    fn detect_dead_peers(&mut self, now: Instant) {
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
    fn heard_from(&mut self, now: Instant, p: ProxyId) {
        if self.peers.get(&p).is_some_and(|x| !x.up) {
            self.announce(now, p, true);
        }
    }

    /// Applies and floods news that `subject` is up or down.
    fn announce(&mut self, now: Instant, subject: ProxyId, up: bool) {
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
    fn apply_news(&mut self, now: Instant, subject: ProxyId, up: bool) -> bool {
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

    fn on_news(
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

    // --------------------------------------------------------- proximity

    fn send_probe(&mut self, now: Instant) {
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
    fn learn_coord(&mut self, p: ProxyId, c: Coord) {
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

    // ------------------------------------------------------ proxy messages

    fn on_proxy_message(&mut self, now: Instant, from: ProxyId, msg: &Message) {
        match *msg {
            Message::Heartbeat { coord, .. } => self.learn_coord(from, coord),
            Message::News {
                origin,
                news_seq,
                subject,
                up,
            } => self.on_news(now, from, origin, news_seq, subject, up),
            Message::RttProbe { nonce } => {
                let reply = Message::RttReply {
                    nonce,
                    coord: self.coord,
                };
                self.send_proxy(now, from, &reply);
            }
            Message::RttReply { nonce, coord } => {
                if let Some((to, sent)) = self.probes.remove(&nonce) {
                    if to == from {
                        let rtt_ms = (now.saturating_sub(sent)) as f32 / MS as f32;
                        let jitter = self.next_random();
                        proximity::update(&mut self.coord, &coord, rtt_ms.max(0.001), jitter);
                        self.learn_coord(from, coord);
                    }
                }
            }
            Message::CountReport {
                group,
                count,
                coord,
            } => self.rap_report(now, from, group, count, coord),
            Message::ReportAck {
                group,
                count,
                band_pct,
            } => {
                if let Some(j) = self.jap.get_mut(&group) {
                    if j.reported == Some(count) {
                        // 0 means exact counts (every change is reported).
                        j.band_pct = band_pct.min(100);
                    }
                }
            }
            Message::Lookup {
                group,
                client,
                iap_coord,
                exclude,
                packet,
            } => self.rap_lookup(
                now,
                from,
                LookupArgs {
                    group,
                    client,
                    iap_coord,
                    exclude,
                    packet,
                },
            ),
            Message::JapList {
                group,
                ref japs,
                ttl_s,
            } => self.iap_install(now, group, japs, ttl_s),
            Message::Forward {
                group,
                client,
                iap,
                packet,
            } => self.jap_forward(now, group, client, iap, packet),
            Message::Invalidate {
                group,
                client,
                gone,
                packet,
            } => {
                self.counters.invalidations_received += 1;
                if gone {
                    if let Some(c) = self.cache.get_mut(&group) {
                        c.japs.retain(|r| r.jap != from);
                        if c.japs.is_empty() {
                            self.cache.remove(&group);
                        }
                    }
                }
                if !packet.is_empty() {
                    self.iap_send(now, group, client, packet, Some(from));
                }
            }
            // Target-facing messages never arrive signed with the deployment key.
            Message::Join(_)
            | Message::Leave(_)
            | Message::Ack { .. }
            | Message::Nack { .. }
            | Message::Ping { .. }
            | Message::Pong { .. } => self.counters.malformed += 1,
        }
    }

    // ------------------------------------------------------------- JAP

    fn nack(&mut self, r: &Registration, reason: NackReason) {
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

    fn on_target_message(&mut self, now: Instant, src: Endpoint, msg: &Message) {
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

    fn jap_join(&mut self, now: Instant, r: &Registration) -> Result<(), NackReason> {
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

    fn jap_leave(&mut self, _now: Instant, r: &Registration) -> Result<(), NackReason> {
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
    fn report_if_needed(&mut self, now: Instant, g: Group, force: bool) {
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

    fn jap_forward(
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
    fn choose_target(&mut self, now: Instant, group: Group, client: Endpoint) -> Option<Endpoint> {
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

    fn target_timers(&mut self, now: Instant) {
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

    // ------------------------------------------------------------- RAP

    fn band_for_load(&self, g: &Group) -> u8 {
        let base = self.group_cfg(g).map_or(10, |c| c.band_pct);
        let fill = self.rap.len() * 100 / self.rap.capacity().max(1);
        match fill {
            0..=49 => base,
            50..=79 => base.saturating_mul(2).min(100),
            _ => base.saturating_mul(4).min(100),
        }
    }

    fn rap_report(&mut self, now: Instant, from: ProxyId, group: Group, count: u32, coord: Coord) {
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

    fn rap_lookup(&mut self, now: Instant, iap: ProxyId, args: LookupArgs) {
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

    // ------------------------------------------------------------- IAP

    /// Sends a client packet on: to a cached JAP, else through a RAP.
    /// `not` excludes a JAP that just bounced it.
    fn iap_send(
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
    fn nearest(&self, raps: &[ProxyId], index: usize) -> Option<ProxyId> {
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

    fn iap_install(&mut self, now: Instant, group: Group, japs: &[RankedJap], ttl_s: u32) {
        // The lookup is answered; a late or duplicate answer is still a valid list.
        self.pending.remove(&group);
        if !japs.is_empty() {
            self.install(now, group, japs, ttl_s);
        }
    }

    fn install(&mut self, now: Instant, group: Group, japs: &[RankedJap], ttl_s: u32) {
        let ttl = (u64::from(ttl_s) * SEC).min(self.cfg.cache_ttl);
        let entry = CacheEntry {
            japs: japs.iter().copied().take(MAX_RANKED).collect(),
            expires: now + ttl,
        };
        if self.cache.insert(group, entry).is_err() {
            self.counters.capacity_refusals += 1;
        }
    }

    fn pending_timers(&mut self, now: Instant) {
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

/// (watched, watchers) of a proxy: with its deployment's clusters in a cycle,
/// cluster i watches clusters i..=i+w and is watched by i-w..=i.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4, Transport};

    const DK: Key = Key([1; 32]);
    const GK: Key = Key([2; 32]);
    const T0: Instant = 1_700_000_000 * SEC;

    fn g() -> Group {
        Group {
            ip: Ipv4([203, 0, 113, 7]),
            port: 53,
            transport: Transport::Udp,
        }
    }

    fn proxy(id: ProxyId, peers: u32) -> Proxy {
        let mut cfg = ProxyConfig::new(id, 0, DK);
        cfg.groups.push(GroupConfig {
            group: g(),
            key: GK,
            policy: Policy::Proximity,
            band_pct: 10,
        });
        let list: Vec<PeerInfo> = (1..=peers)
            .map(|id| PeerInfo {
                id,
                cluster: id % 4,
            })
            .collect();
        Proxy::new(cfg, &list, T0)
    }

    fn signed(sender: ProxyId, seq: u64, msg: &Message, key: &Key) -> Vec<u8> {
        let mut out = vec![0u8; MAX_MESSAGE];
        let n = wire::encode(sender, seq, msg, key, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn target(i: u8) -> Endpoint {
        Endpoint {
            ip: Ipv4([198, 19, 0, i]),
            port: 5000,
        }
    }

    fn join(p: &mut Proxy, i: u8, nonce: u64) {
        let r = Registration {
            group: g(),
            target: target(i),
            timestamp_ms: T0 / MS,
            nonce,
        };
        p.handle_message(T0, target(i), &signed(0, 1, &Message::Join(r), &GK));
    }

    fn reports(p: &mut Proxy) -> Vec<(ProxyId, u32)> {
        let mut out = Vec::new();
        while let Some(t) = p.poll_transmit() {
            if let Transmit::Proxy { to, bytes } = t {
                if let Ok(parsed) = wire::parse(&bytes) {
                    if let Message::CountReport { count, .. } = parsed.message {
                        out.push((to, count));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn jap_reports_the_first_member_then_only_outside_the_band() {
        let mut p = proxy(1, 12);
        join(&mut p, 1, 1);
        let first = reports(&mut p);
        assert_eq!(first.len(), 4, "the first member goes to all four RAPs");
        assert!(first.iter().all(|&(_, c)| c == 1));
        // 1 -> 2 leaves a 10% band around 1 (which is empty): report again.
        join(&mut p, 2, 2);
        assert_eq!(reports(&mut p).len(), 4);
        // The RAPs widen the band to 100%: 3 and 4 stay inside [0, 4] of 2.
        for (rap, _) in p.raps_of(&g()).iter().map(|r| (*r, ())) {
            let ack = Message::ReportAck {
                group: g(),
                count: 2,
                band_pct: 100,
            };
            p.handle_message(T0 + 1, target(0), &signed(rap, T0 + 5, &ack, &DK));
        }
        join(&mut p, 3, 3);
        join(&mut p, 4, 4);
        assert!(reports(&mut p).is_empty(), "inside the band: no report");
        join(&mut p, 5, 5);
        assert_eq!(reports(&mut p).len(), 4, "5 is outside [0, 4]");
    }

    #[test]
    fn rap_band_widens_as_its_table_fills() {
        let mut p = proxy(1, 4);
        let cap = p.rap.capacity();
        assert_eq!(p.band_for_load(&g()), 10);
        for i in 0..cap * 6 / 10 {
            let grp = Group {
                ip: Ipv4([203, 0, 113, 1]),
                port: i as u16,
                transport: Transport::Tcp,
            };
            let _ = p.rap.insert(grp, FixedVec::with_capacity(1));
        }
        assert_eq!(p.band_for_load(&g()), 20);
    }

    #[test]
    fn stale_and_forged_proxy_messages_change_nothing() {
        let mut p = proxy(1, 4);
        let hb = Message::Heartbeat {
            cluster: 2,
            coord: Coord::default(),
        };
        let good = signed(2, T0 + 100, &hb, &DK);
        p.handle_message(T0, target(0), &good);
        p.handle_message(T0, target(0), &good);
        assert_eq!(p.counters.replayed, 1);
        p.handle_message(T0, target(0), &signed(2, T0 + 101, &hb, &Key([9; 32])));
        assert_eq!(p.counters.bad_tag, 1);
        p.handle_message(T0, target(0), &signed(99, T0 + 102, &hb, &DK));
        assert_eq!(p.counters.unknown_sender, 1);
        p.handle_message(T0, target(0), &signed(2, 5, &hb, &DK));
        assert_eq!(p.counters.stale, 1);
    }

    /// Proxy 1's config and the list of `n` proxies in clusters of `per_cluster`.
    fn deployment(n: u32, per_cluster: u32) -> (ProxyConfig, Vec<PeerInfo>) {
        let mut cfg = ProxyConfig::new(1, 0, DK);
        cfg.max_peers = n as usize;
        cfg.max_groups = 16;
        cfg.max_flows = 16;
        let list = (1..=n)
            .map(|id| PeerInfo {
                id,
                cluster: id / per_cluster,
            })
            .collect();
        (cfg, list)
    }

    #[test]
    fn knows_twenty_thousand_proxies() {
        let (cfg, list) = deployment(20_000, 4);
        let p = Proxy::new(cfg, &list, T0);
        assert_eq!(p.table_fill()[0], ("peers", 19_999, 20_000));
        // State only for the watched peers (own cluster and the next two).
        let (_, state, cap) = p.table_fill()[1];
        assert!(state <= 12, "{state} peer states");
        assert_eq!(cap, 20_000);
        assert_eq!(p.raps_of(&g()).len(), 4);
        let mut bigger: Vec<PeerInfo> = list.clone();
        bigger.extend((20_001..=20_002).map(|id| PeerInfo { id, cluster: 0 }));
        let (cfg, _) = deployment(20_000, 4);
        let p = Proxy::new(cfg, &bigger, T0);
        assert_eq!(p.counters.capacity_refusals, 1);
        assert_eq!(p.table_fill()[0].1, 20_000);
    }

    #[test]
    fn news_floods_every_live_peer_through_a_small_queue() {
        let (mut cfg, list) = deployment(2000, 10);
        // Room for one heartbeat round (29 watchers), not for a flood (55,188).
        cfg.tx_queue = 64;
        let mut p = Proxy::new(cfg, &list, T0);
        p.handle_timeout(T0);
        while p.poll_transmit().is_some() {}
        // The 28 watched peers (clusters 0, 1, 2 but ourselves) stay silent.
        p.handle_timeout(T0 + 4 * SEC);
        let mut per_subject: alloc::collections::BTreeMap<ProxyId, Vec<ProxyId>> =
            Default::default();
        while let Some(t) = p.poll_transmit() {
            if let Transmit::Proxy { to, bytes } = t {
                if let Ok(Message::News { subject, up, .. }) =
                    wire::parse(&bytes).map(|x| x.message)
                {
                    assert!(!up);
                    per_subject.entry(subject).or_default().push(to);
                }
            }
        }
        assert_eq!(per_subject.len(), 28);
        for (subject, to) in per_subject {
            assert!((2..=29).contains(&subject));
            assert_eq!(to.len(), 2000 - 1 - 28, "news of {subject}");
            assert!(
                to.iter().all(|&x| x >= 30),
                "news of {subject} to a dead peer"
            );
        }
        assert_eq!(p.counters.tx_queue_full, 0);
        assert_eq!(p.counters.capacity_refusals, 0);
        assert!(!p.has_transmit());
    }
}
