//! One PIAS proxy: the IAP, JAP and RAP roles, membership and proximity,
//! composed as a sans-IO state machine (quinn-proto style). Inputs are
//! `handle_message`, `handle_client_packet`, `handle_target_packet` and
//! `handle_timeout`, each with `now`; outputs are drained with `poll_transmit`;
//! `poll_timeout` says when to call `handle_timeout` next. Every table is sized
//! in `ProxyConfig` and never grows; a full table refuses and counts it.

mod config;
mod counters;
mod iap;
mod jap;
mod membership;
mod rap;
#[cfg(test)]
mod tests;
mod transmit;

pub use self::config::{GroupConfig, Policy, ProxyConfig};
pub use self::counters::Counters;
pub use self::jap::Health;
pub use self::transmit::{Buf, Transmit};
pub use crate::ids::PeerInfo;
pub use crate::time::{Instant, MS, SEC};

use self::iap::{CacheEntry, Pending};
use self::jap::{Flow, JapGroup, TargetEntry};
use self::membership::{Flood, Peer};
use self::rap::{JapEntry, LookupArgs};
use crate::addr::{Endpoint, Group};
use crate::fixed::{FixedMap, FixedVec};
use crate::proximity;
use crate::ring::mix64;
use crate::roster::Roster;
use crate::wire::{self, Coord, Message, NackReason, ProxyId, MAX_CARRIED};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use heapless::Vec as HVec;

/// RAPs per group, at most.
pub const MAX_K: usize = 8;

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
