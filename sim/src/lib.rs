//! A deterministic, in-process network for `pias::proxy::Proxy` state
//! machines. Proxies sit in clusters on a plane (distance = RTT in ms); targets
//! and clients are simulated hosts placed on the same plane. Native anycast
//! delivers a host's packet to the nearest live proxy. Messages between proxies
//! take the one-way delay of their distance, may be lost (seeded), cut by a
//! partition between clusters, or vanish into a crashed proxy.

use pias::addr::{Endpoint, Group, Ipv4};
use pias::proxy::{GroupConfig, Instant, PeerInfo, Policy, Proxy, ProxyConfig, Transmit, MS, SEC};
use pias::ring::mix64;
use pias::roster::Roster;
use pias::wire::{self, JoinOptions, Key, Message, ProxyId, Registration, Sender, KINDS};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

/// Where something sits: a point on the plane, in ms of RTT.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pos(pub f64, pub f64);

impl Pos {
    pub fn rtt_ms(&self, o: &Pos) -> f64 {
        ((self.0 - o.0).powi(2) + (self.1 - o.1).powi(2)).sqrt() + 0.2
    }
}

/// A simulated anycast target (group member).
pub struct Target {
    pub ep: Endpoint,
    pub group: Group,
    pub key: Key,
    pub pos: Pos,
    /// A dead target answers nothing (pings included).
    pub alive: bool,
    /// Whether it answers client packets (through its JAP).
    pub echo: bool,
    /// Whether it answers its JAP's health pings (and its watchdog sends
    /// pongs). A live target that does not is hung to its JAP but still
    /// receives what it is sent: what a test of "down means no packets" needs.
    pub answers_pings: bool,
    /// (client, packet) received.
    pub received: Vec<(Endpoint, Vec<u8>)>,
    pub acks: u32,
    pub nacks: Vec<wire::NackReason>,
    /// Pins the target's anycast catchment to one proxy (while it is up),
    /// instead of the nearest: for workloads that spread members evenly.
    pub via: Option<ProxyId>,
    /// A quiet target only counts what its JAP sends it (acks, nacks) and
    /// answers nothing: for large workloads whose health checks are off.
    pub quiet: bool,
    /// Its capacity relative to the group's other members (join option).
    pub weight: u16,
    /// When it last heard a ping, and the nonce of that ping.
    pub last_ping: Option<(Instant, u64)>,
    /// Without a ping for this long, it sends its last pong again by anycast
    /// (its JAP may have died: another proxy then asks it to rejoin).
    pub watchdog: Option<Instant>,
    /// Rejoin requests it received.
    pub rejoins: u32,
    /// It wants to be a member (joined and not left): only then does it
    /// answer a rejoin request.
    pub member: bool,
}

/// A simulated client.
pub struct Client {
    pub ep: Endpoint,
    pub pos: Pos,
    /// Replies received (group, packet).
    pub replies: Vec<(Group, Vec<u8>)>,
}

#[derive(Debug)]
enum Event {
    /// Proxy `node`'s timer, valid while its generation is `gen`.
    Timer { node: usize, gen: u64 },
    /// Bytes for proxy `to` from source endpoint `src`.
    ToProxy {
        to: ProxyId,
        src: Endpoint,
        bytes: Vec<u8>,
    },
    /// A client packet arriving by anycast at proxy `to`.
    ClientPacket {
        to: ProxyId,
        group: Group,
        client: Endpoint,
        packet: Vec<u8>,
    },
    /// A target's reply reaching its JAP `to`.
    TargetReply {
        to: ProxyId,
        group: Group,
        target: Endpoint,
        client: Endpoint,
        packet: Vec<u8>,
    },
    /// Bytes from a proxy for target index `target`.
    ToTarget { target: usize, bytes: Vec<u8> },
    /// A data packet for target index `target`, delivered by JAP `from`.
    Deliver {
        target: usize,
        from: ProxyId,
        group: Group,
        client: Endpoint,
        packet: Vec<u8>,
    },
    /// A reply for client index `client`.
    ToClient {
        client: usize,
        group: Group,
        packet: Vec<u8>,
    },
    /// Target `target`'s watchdog looks at when it last heard a ping.
    TargetWatchdog { target: usize },
}

struct Node {
    proxy: Option<Proxy>,
    /// Bumped whenever the proxy's timer is re-armed; older Timer events are stale.
    timer_gen: u64,
    /// The deadline of the live Timer event (Instant::MAX: none).
    armed_at: Instant,
    /// Proxy-to-proxy messages this node has sent.
    sent: u64,
    cluster: u32,
    pos: Pos,
    cfg: ProxyConfig,
}

pub struct Sim {
    pub now: Instant,
    nodes: Vec<Node>,
    roster: Arc<Roster>,
    pub targets: Vec<Target>,
    target_index: HashMap<Endpoint, usize>,
    pub clients: Vec<Client>,
    client_index: HashMap<Endpoint, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: Vec<Option<Event>>,
    /// Event slots free for reuse.
    free: Vec<usize>,
    /// Proxy-to-proxy messages sent, by kind (lost ones included).
    pub sent_by_kind: [u64; KINDS],
    seq: u64,
    rng: u64,
    /// Probability (0..1) that a proxy-to-proxy message is lost.
    pub loss: f64,
    partitions: HashSet<(u32, u32)>,
    /// Pairs of proxies that cannot reach each other (a partial partition).
    cuts: HashSet<(ProxyId, ProxyId)>,
    /// Messages lost to loss, partitions or crashed proxies.
    pub dropped: u64,
}

/// The group key the simulation tests give their groups and targets.
pub const GROUP_KEY: Key = Key([9; 32]);

/// The group `203.0.113.<last>:53/udp` (the anycast prefix of the examples).
pub fn udp_group(last: u8) -> Group {
    Group {
        ip: Ipv4([203, 0, 113, last]),
        port: 53,
        transport: pias::addr::Transport::Udp,
    }
}

/// Timers scaled down for simulations that must detect failures within a few
/// simulated seconds (heartbeats every 100 ms, a peer dead after 350 ms, a
/// target pinged every 200 ms, counts refreshed every 3 s and expired after 10 s).
pub fn fast_timers(cfg: &mut ProxyConfig) {
    cfg.heartbeat = 100 * MS;
    cfg.peer_dead = 350 * MS;
    cfg.target_ping = 200 * MS;
    cfg.lookup_timeout = 150 * MS;
    cfg.negative_ttl = 500 * MS;
    cfg.rtt_probe = 250 * MS;
    cfg.passive_timeout = 100 * MS;
    cfg.report_retry = 200 * MS;
    cfg.report_refresh = 3 * SEC;
    cfg.report_expiry = 10 * SEC;
}

/// The scenario tests' world: five POPs of two proxies each, 50 ms apart.
pub fn five_pops() -> Vec<(Pos, usize)> {
    vec![
        (Pos(0.0, 0.0), 2),
        (Pos(50.0, 0.0), 2),
        (Pos(100.0, 0.0), 2),
        (Pos(0.0, 50.0), 2),
        (Pos(50.0, 50.0), 2),
    ]
}

/// The scenario tests' group, `203.0.113.10:53/udp`.
pub fn scenario_group() -> Group {
    udp_group(10)
}

/// The scenario tests' proxy config: `scenario_group()` with `GROUP_KEY`, a
/// 10% band and `policy`, on `fast_timers`.
pub fn scenario_tune(policy: Policy) -> impl Fn(&mut ProxyConfig) {
    move |cfg: &mut ProxyConfig| {
        cfg.groups.push(GroupConfig {
            group: scenario_group(),
            key: GROUP_KEY,
            policy,
            band_pct: 10,
        });
        fast_timers(cfg);
    }
}

/// `five_pops` with `scenario_tune(policy)`, after 2 s of heartbeats and probes.
pub fn scenario(policy: Policy) -> Sim {
    let mut s = Sim::new(7, &five_pops(), scenario_tune(policy));
    s.run_for(2 * SEC);
    s
}

pub fn proxy_ip(id: ProxyId) -> Ipv4 {
    Ipv4([198, 18, (id >> 8) as u8, id as u8])
}

impl Sim {
    /// `clusters[i]` = (position, proxies in it). Proxy ids start at 1.
    /// `tune` adjusts each proxy's config (groups, timers) before it starts.
    pub fn new(seed: u64, clusters: &[(Pos, usize)], tune: impl Fn(&mut ProxyConfig)) -> Sim {
        let key = Key([0x42; 32]);
        let mut nodes = Vec::new();
        let mut peers = Vec::new();
        let mut id = 1;
        for (c, &(pos, n)) in clusters.iter().enumerate() {
            for i in 0..n {
                let mut cfg = ProxyConfig::new(id, c as u32, key.clone());
                tune(&mut cfg);
                // Proxies of one cluster share a POP: a little apart so anycast picks one.
                let p = Pos(pos.0 + i as f64 * 0.01, pos.1);
                nodes.push(Node {
                    proxy: None,
                    timer_gen: 0,
                    armed_at: Instant::MAX,
                    sent: 0,
                    cluster: c as u32,
                    pos: p,
                    cfg,
                });
                peers.push(PeerInfo {
                    id,
                    cluster: c as u32,
                });
                id += 1;
            }
        }
        // One roster for all: every proxy knows the whole deployment.
        let roster = Arc::new(Roster::new(&peers, peers.len()));
        let mut sim = Sim {
            now: 1_700_000_000 * 1_000_000,
            nodes,
            roster,
            targets: Vec::new(),
            target_index: HashMap::new(),
            clients: Vec::new(),
            client_index: HashMap::new(),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            sent_by_kind: [0; KINDS],
            seq: 0,
            rng: seed,
            loss: 0.0,
            partitions: HashSet::new(),
            cuts: HashSet::new(),
            dropped: 0,
        };
        for i in 0..sim.nodes.len() {
            sim.start(i as ProxyId + 1);
        }
        sim
    }

    pub fn proxies(&self) -> usize {
        self.nodes.len()
    }

    pub fn proxy(&self, id: ProxyId) -> Option<&Proxy> {
        self.nodes
            .get(id as usize - 1)
            .and_then(|n| n.proxy.as_ref())
    }

    pub fn cluster_of(&self, id: ProxyId) -> u32 {
        self.nodes[id as usize - 1].cluster
    }

    /// True RTT in ms between two proxies.
    pub fn rtt_ms(&self, a: ProxyId, b: ProxyId) -> f64 {
        self.nodes[a as usize - 1]
            .pos
            .rtt_ms(&self.nodes[b as usize - 1].pos)
    }

    /// Starts (or restarts, with empty state) proxy `id`.
    pub fn start(&mut self, id: ProxyId) {
        let i = id as usize - 1;
        let cfg = self.nodes[i].cfg.clone();
        self.nodes[i].proxy = Some(Proxy::with_roster(cfg, self.roster.clone(), self.now));
        self.nodes[i].armed_at = Instant::MAX;
        self.rearm(i);
    }

    /// Schedules proxy `i`'s next timeout (replacing any earlier one; an
    /// unchanged deadline keeps its event).
    fn rearm(&mut self, i: usize) {
        let next = self.nodes[i].proxy.as_ref().and_then(|p| p.poll_timeout());
        let at = next.map_or(Instant::MAX, |t| t.max(self.now));
        if at == self.nodes[i].armed_at {
            return;
        }
        self.nodes[i].timer_gen += 1;
        self.nodes[i].armed_at = at;
        let gen = self.nodes[i].timer_gen;
        if at != Instant::MAX {
            self.seq += 1;
            let slot = self.slot(Event::Timer { node: i, gen });
            self.queue.push(Reverse((at, self.seq, slot)));
        }
    }

    fn slot(&mut self, e: Event) -> usize {
        match self.free.pop() {
            Some(s) => {
                self.events[s] = Some(e);
                s
            }
            None => {
                self.events.push(Some(e));
                self.events.len() - 1
            }
        }
    }

    pub fn crash(&mut self, id: ProxyId) {
        self.nodes[id as usize - 1].proxy = None;
        self.nodes[id as usize - 1].armed_at = Instant::MAX;
    }

    /// Proxy-to-proxy messages proxy `id` has sent.
    pub fn sent_by(&self, id: ProxyId) -> u64 {
        self.nodes.get(id as usize - 1).map_or(0, |n| n.sent)
    }

    /// The roster every proxy of this simulation shares.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// Events waiting in the queue (stale timers included).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    pub fn partition(&mut self, a: u32, b: u32) {
        self.partitions.insert((a.min(b), a.max(b)));
    }

    /// Proxies `a` and `b` lose each other (both still reach everyone else).
    pub fn cut(&mut self, a: ProxyId, b: ProxyId) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Ends every partition and cut.
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.partitions.clear();
    }

    fn random(&mut self) -> u64 {
        self.rng = mix64(self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
        self.rng
    }

    fn schedule(&mut self, delay: Instant, e: Event) {
        self.seq += 1;
        let slot = self.slot(e);
        self.queue
            .push(Reverse((self.now + delay.max(1), self.seq, slot)));
    }

    fn one_way(a: &Pos, b: &Pos) -> Instant {
        (a.rtt_ms(b) / 2.0 * MS as f64) as Instant
    }

    /// The live proxy nearest `pos`: native anycast.
    pub fn anycast(&self, pos: &Pos) -> Option<ProxyId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.proxy.is_some())
            .min_by(|a, b| a.1.pos.rtt_ms(pos).total_cmp(&b.1.pos.rtt_ms(pos)))
            .map(|(i, _)| i as ProxyId + 1)
    }

    pub fn add_target(&mut self, group: Group, key: Key, pos: Pos) -> usize {
        let n = self.targets.len();
        // 51,200 addresses in 198.19.0.0-198.19.199.255, then the next port.
        let ep = Endpoint {
            ip: Ipv4([198, 19, ((n >> 8) % 200) as u8, n as u8]),
            port: 5000 + (n / 51_200) as u16,
        };
        self.target_index.insert(ep, n);
        self.targets.push(Target {
            ep,
            group,
            key,
            pos,
            alive: true,
            echo: true,
            answers_pings: true,
            received: Vec::new(),
            acks: 0,
            nacks: Vec::new(),
            via: None,
            quiet: false,
            weight: 1,
            last_ping: None,
            watchdog: None,
            rejoins: 0,
            member: false,
        });
        n
    }

    /// Arms target `t`'s watchdog: every `period` without a ping it sends its
    /// last pong again to the anycast registration address.
    pub fn set_watchdog(&mut self, t: usize, period: Instant) {
        self.targets[t].watchdog = Some(period);
        self.schedule(period, Event::TargetWatchdog { target: t });
    }

    pub fn add_client(&mut self, pos: Pos) -> usize {
        let n = self.clients.len();
        let ep = Endpoint {
            ip: Ipv4([198, 19, 200 + ((n >> 8) % 56) as u8, n as u8]),
            port: 40000 + (n / 14_336) as u16,
        };
        self.client_index.insert(ep, n);
        self.clients.push(Client {
            ep,
            pos,
            replies: Vec::new(),
        });
        n
    }

    fn registration_bytes(&mut self, t: usize, join: bool) -> Vec<u8> {
        let nonce = self.random();
        let tg = &self.targets[t];
        let r = Registration {
            group: tg.group,
            target: tg.ep,
            timestamp_ms: self.now / MS,
            nonce,
            options: JoinOptions { weight: tg.weight },
        };
        let msg = if join {
            Message::Join(r)
        } else {
            Message::Leave(r)
        };
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        let n = wire::encode(Sender::Target, 0, 1, &msg, &tg.key, &mut buf)
            .expect("registration encodes");
        buf.truncate(n);
        buf
    }

    /// A target of `group` at `pos` that joins, after a second to settle:
    /// (its index, its JAP: the proxy anycast takes it to).
    pub fn one_member(&mut self, group: Group, key: Key, pos: Pos) -> (usize, ProxyId) {
        let t = self.add_target(group, key, pos);
        self.register(t, true);
        self.run_for(1000 * MS);
        let jap = self.anycast(&pos).expect("a live proxy takes the target");
        (t, jap)
    }

    /// Target `t` sends join (or leave) to the anycast registration address.
    pub fn register(&mut self, t: usize, join: bool) {
        self.targets[t].member = join;
        let bytes = self.registration_bytes(t, join);
        self.send_from_target(t, bytes);
    }

    /// Sends raw bytes from target `t` by anycast (for forged and replayed input).
    pub fn send_from_target(&mut self, t: usize, bytes: Vec<u8>) {
        let pos = self.targets[t].pos;
        let src = self.targets[t].ep;
        let pinned = self.targets[t]
            .via
            .filter(|&p| self.proxy(p).is_some())
            .or_else(|| self.anycast(&pos));
        if let Some(to) = pinned {
            let d = Self::one_way(&pos, &self.nodes[to as usize - 1].pos);
            self.schedule(d, Event::ToProxy { to, src, bytes });
        }
    }

    /// Client `c` sends a packet to `group` by anycast; returns the IAP.
    pub fn client_send(&mut self, c: usize, group: Group, packet: &[u8]) -> Option<ProxyId> {
        let (pos, ep) = (self.clients[c].pos, self.clients[c].ep);
        self.send_to_group(pos, ep, group, packet)
    }

    /// Target `t` (as a client of its own group, P2P) sends a packet.
    pub fn target_send(&mut self, t: usize, group: Group, packet: &[u8]) -> Option<ProxyId> {
        let (pos, ep) = (self.targets[t].pos, self.targets[t].ep);
        self.send_to_group(pos, ep, group, packet)
    }

    /// A packet from a host at `pos` with address `client` to `group`, by anycast.
    fn send_to_group(
        &mut self,
        pos: Pos,
        client: Endpoint,
        group: Group,
        packet: &[u8],
    ) -> Option<ProxyId> {
        let to = self.anycast(&pos)?;
        let d = Self::one_way(&pos, &self.nodes[to as usize - 1].pos);
        let packet = packet.to_vec();
        self.schedule(
            d,
            Event::ClientPacket {
                to,
                group,
                client,
                packet,
            },
        );
        Some(to)
    }

    fn drain(&mut self, id: ProxyId) {
        let i = id as usize - 1;
        let mut out = Vec::new();
        if let Some(p) = self.nodes[i].proxy.as_mut() {
            while let Some(t) = p.poll_transmit() {
                out.push(t);
            }
        }
        self.rearm(i);
        let from_pos = self.nodes[i].pos;
        let from_cluster = self.nodes[i].cluster;
        for t in out {
            // Where the datagram goes and the event of its arrival; None: lost or nowhere.
            let arrival: Option<(Pos, Event)> = match t {
                Transmit::Proxy { to, bytes } => {
                    if let Some(k) = wire::peek_kind(&bytes) {
                        self.sent_by_kind[usize::from(k) % KINDS] += 1;
                    }
                    self.nodes[i].sent += 1;
                    let Some(dest) = (to as usize).checked_sub(1).and_then(|j| self.nodes.get(j))
                    else {
                        continue;
                    };
                    let (dest_cluster, dest_pos) = (dest.cluster, dest.pos);
                    let (a, b) = (
                        from_cluster.min(dest_cluster),
                        from_cluster.max(dest_cluster),
                    );
                    let lost =
                        self.loss > 0.0 && (self.random() % 1_000_000) as f64 / 1e6 < self.loss;
                    let cut = self.cuts.contains(&(id.min(to), id.max(to)));
                    if lost || cut || self.partitions.contains(&(a, b)) {
                        self.dropped += 1;
                        continue;
                    }
                    let src = Endpoint {
                        ip: proxy_ip(id),
                        port: 7002,
                    };
                    let bytes = bytes.to_vec();
                    Some((dest_pos, Event::ToProxy { to, src, bytes }))
                }
                Transmit::Target { to, bytes, .. } => match self.target_index.get(&to) {
                    Some(&t) if self.targets[t].quiet => {
                        self.quiet_target(t, &bytes);
                        None
                    }
                    Some(&t) => {
                        let bytes = bytes.to_vec();
                        Some((self.targets[t].pos, Event::ToTarget { target: t, bytes }))
                    }
                    None => None,
                },
                Transmit::Deliver {
                    group,
                    client,
                    target,
                    packet,
                } => self.target_index.get(&target).map(|&t| {
                    let event = Event::Deliver {
                        target: t,
                        from: id,
                        group,
                        client,
                        packet: packet.to_vec(),
                    };
                    (self.targets[t].pos, event)
                }),
                Transmit::ToClient {
                    group,
                    client,
                    packet,
                } => self.client_index.get(&client).map(|&c| {
                    let event = Event::ToClient {
                        client: c,
                        group,
                        packet: packet.to_vec(),
                    };
                    (self.clients[c].pos, event)
                }),
            };
            if let Some((pos, event)) = arrival {
                self.schedule(Self::one_way(&from_pos, &pos), event);
            }
        }
    }

    /// What a quiet target counts: the kind from the header (its JAP signed it).
    fn quiet_target(&mut self, t: usize, bytes: &[u8]) {
        match wire::peek_kind(bytes) {
            Some(2) => self.targets[t].acks += 1,
            _ => {
                if let Ok(wire::Parsed {
                    message: Message::Nack { reason, .. },
                    ..
                }) = wire::parse(bytes)
                {
                    self.targets[t].nacks.push(reason);
                }
            }
        }
    }

    fn target_event(&mut self, t: usize, bytes: &[u8]) {
        if !self.targets[t].alive {
            return;
        }
        let Ok(p) = wire::parse(bytes) else { return };
        if p.verify(&self.targets[t].key).is_err() {
            return;
        }
        match p.message {
            Message::Ack { .. } => self.targets[t].acks += 1,
            Message::Nack { reason, .. } => self.targets[t].nacks.push(reason),
            Message::Ping {
                group,
                target,
                nonce,
            } => {
                self.targets[t].last_ping = Some((self.now, nonce));
                if self.targets[t].answers_pings {
                    self.send_pong(t, group, target, nonce);
                }
            }
            Message::Rejoin { .. } => {
                self.targets[t].rejoins += 1;
                if self.targets[t].member {
                    self.register(t, true);
                }
            }
            _ => {}
        }
    }

    fn send_pong(&mut self, t: usize, group: Group, target: Endpoint, nonce: u64) {
        let pong = Message::Pong {
            group,
            target,
            nonce,
        };
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        let n = wire::encode(Sender::Target, 0, 1, &pong, &self.targets[t].key, &mut buf)
            .expect("pong encodes");
        buf.truncate(n);
        self.send_from_target(t, buf);
    }

    /// A target's watchdog: silent JAP, so the last pong goes out again.
    fn watchdog(&mut self, t: usize) {
        let Some(period) = self.targets[t].watchdog else {
            return;
        };
        let tg = &self.targets[t];
        let silent = tg.last_ping.is_none_or(|(at, _)| self.now - at >= period);
        if tg.alive && tg.answers_pings && silent {
            let (group, ep) = (tg.group, tg.ep);
            let nonce = tg.last_ping.map_or(0, |(_, n)| n);
            self.send_pong(t, group, ep, nonce);
        }
        self.schedule(period, Event::TargetWatchdog { target: t });
    }

    /// Runs until `until`, handling events and proxy timers in time order.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(&Reverse((t, _, slot))) = self.queue.peek() {
            if t > until {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(t);
            let Some(e) = self.events[slot].take() else {
                continue;
            };
            self.free.push(slot);
            self.handle(e);
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Instant) {
        self.run_until(self.now + d);
    }

    fn handle(&mut self, e: Event) {
        match e {
            Event::ToProxy { to, src, bytes } => {
                let now = self.now;
                match self.nodes[to as usize - 1].proxy.as_mut() {
                    Some(p) => p.handle_message(now, src, &bytes),
                    None => {
                        self.dropped += 1;
                        return;
                    }
                }
                self.drain(to);
            }
            Event::ClientPacket {
                to,
                group,
                client,
                packet,
            } => {
                let now = self.now;
                let Some(p) = self.nodes[to as usize - 1].proxy.as_mut() else {
                    self.dropped += 1;
                    return;
                };
                p.handle_client_packet(now, group, client, &packet);
                self.drain(to);
            }
            Event::TargetReply {
                to,
                group,
                target,
                client,
                packet,
            } => {
                let now = self.now;
                let Some(p) = self.nodes[to as usize - 1].proxy.as_mut() else {
                    self.dropped += 1;
                    return;
                };
                p.handle_target_packet(now, group, target, client, &packet);
                self.drain(to);
            }
            Event::ToTarget { target, bytes } => self.target_event(target, &bytes),
            Event::Deliver {
                target,
                from,
                group,
                client,
                packet,
            } => {
                let tg = &mut self.targets[target];
                if !tg.alive {
                    return;
                }
                tg.received.push((client, packet.clone()));
                if tg.echo {
                    let ep = tg.ep;
                    let pos = tg.pos;
                    let d = Self::one_way(&pos, &self.nodes[from as usize - 1].pos);
                    self.schedule(
                        d,
                        Event::TargetReply {
                            to: from,
                            group,
                            target: ep,
                            client,
                            packet,
                        },
                    );
                }
            }
            Event::ToClient {
                client,
                group,
                packet,
            } => self.clients[client].replies.push((group, packet)),
            Event::TargetWatchdog { target } => self.watchdog(target),
            Event::Timer { node, gen } => {
                if self.nodes[node].timer_gen != gen {
                    return;
                }
                self.nodes[node].armed_at = Instant::MAX;
                let now = self.now;
                let Some(p) = self.nodes[node].proxy.as_mut() else {
                    return;
                };
                p.handle_timeout(now);
                // A timer still due after being handled would spin for ever.
                let again = p.poll_timeout().unwrap_or(Instant::MAX);
                assert!(
                    again > now,
                    "proxy {} asks for a timeout at {again} <= now {now}",
                    node + 1
                );
                self.drain(node as ProxyId + 1);
            }
        }
    }
}
