//! The PIAS target agent: runs beside an unmodified server (say dnsmasq on
//! 198.18.1.20:53) and makes it a member of one anycast group (paper §3.1,
//! §3.6.2). It joins through the group's anycast address, so the nearest
//! proxy becomes its JAP; it answers that JAP's health pings while the service
//! is healthy; it leaves when the service fails or the agent is stopped, and
//! joins again when its JAP falls silent (anycast then reaches the
//! next-nearest proxy).
//!
//! [`Agent`] is the protocol as a sans-IO state machine: datagrams, timeouts
//! and health verdicts go in with `now` (Unix ms), datagrams and log events
//! come out. `main.rs` owns the socket, the signals and the health checks.
//! [`RiseFall`] turns check results into verdicts; [`parse_key`] reads a key.

#![forbid(unsafe_code)]

use pias::addr::{Endpoint, Group};
use pias::wire::{self, JoinOptions, Key, Message, NackReason, ProxyId, Registration, Sender};
use std::collections::VecDeque;
use std::fmt;

/// How the agent is set up for one group.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The anycast group joined.
    pub group: Group,
    /// The service's endpoint: where the JAP sends client packets. The agent's
    /// socket must be on the same address (the JAP checks the source).
    pub service: Endpoint,
    /// The deployment's registration port (`ports.registration`, 7000 by default).
    pub registration_port: u16,
    /// The group's key (`keys::group_key(group secret, group)`).
    pub key: Key,
    /// The service's weight among the group's members (1..=1000; clamped).
    pub weight: u16,
    /// No verified ping for this long while joined: join again.
    pub ping_timeout_ms: u64,
    /// First wait for an answer to a join or leave; doubles per try.
    pub retry_ms: u64,
    /// The longest wait between tries.
    pub retry_cap_ms: u64,
    /// Tries of a leave before giving up (the JAP then finds the target
    /// silent and marks it down by itself).
    pub leave_tries: u32,
    /// First wait for a leave's answer while shutting down (the caller waits
    /// about a second in all).
    pub shutdown_retry_ms: u64,
}

impl AgentConfig {
    /// Defaults: registration port 7000, weight 1, ping timeout 7 s (three of
    /// the appliance's 2 s pings and a margin), retries after 1 s, 2 s, 4 s …
    /// at most 30 s apart, 4 tries of a leave.
    pub fn new(group: Group, service: Endpoint, key: Key) -> Self {
        AgentConfig {
            group,
            service,
            registration_port: 7000,
            key,
            weight: 1,
            ping_timeout_ms: 7_000,
            retry_ms: 1_000,
            retry_cap_ms: 30_000,
            leave_tries: 4,
            shutdown_retry_ms: 300,
        }
    }

    /// Where registrations go: the group's anycast address, registration port.
    pub fn registration(&self) -> Endpoint {
        Endpoint {
            ip: self.group.ip,
            port: self.registration_port,
        }
    }
}

/// A datagram for the I/O layer to send from the agent's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Endpoint,
    /// The signed message.
    pub bytes: Vec<u8>,
}

/// A registration the agent sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `join(AA:g, AT:r)`.
    Join,
    /// `leave(AA:g, AT:r)`.
    Leave,
}

/// A change worth one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The join was acknowledged by this proxy (now the JAP).
    Joined {
        /// The JAP's id.
        proxy: ProxyId,
    },
    /// The leave was acknowledged (or the JAP did not hold the target).
    Left,
    /// A proxy refused a join or leave.
    Refused {
        /// What it refused.
        request: Request,
        /// Why.
        reason: NackReason,
    },
    /// The first try of a registration went unanswered; retrying.
    NoAnswer {
        /// Which registration.
        request: Request,
        /// Where it went.
        to: Endpoint,
        /// How long the agent waited.
        waited_ms: u64,
    },
    /// Gave up on a leave after its last try.
    LeaveUnanswered,
    /// No verified ping for the ping timeout while joined: joining again.
    Silent {
        /// The JAP that fell silent.
        proxy: ProxyId,
        /// For how long.
        for_ms: u64,
    },
    /// A proxy that does not hold the target asked it to register again.
    RejoinAsked {
        /// The proxy that asked.
        proxy: ProxyId,
    },
    /// The health check passed (again): joining.
    Healthy,
    /// The health check failed: leaving, no more pongs.
    Unhealthy,
    /// The first health check failed: not joining until it passes.
    Waiting,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Request::Join => "join",
            Request::Leave => "leave",
        })
    }
}

/// What a refusal means and what to do about it, in a few words.
pub fn explain(request: Request, reason: NackReason) -> &'static str {
    match (request, reason) {
        (_, NackReason::Capacity) => {
            "its tables are full: retrying with backoff; ask the operator to raise the \
             proxy's target or group limits"
        }
        (_, NackReason::Auth) => {
            "the request failed authentication (wrong key, or a clock more than 30 s off): \
             check --key-file and the host's clock"
        }
        (_, NackReason::UnknownGroup) => {
            "this deployment does not serve the group: check --group against the \
             deployment's anycast prefixes"
        }
        (_, NackReason::BadRequest) => {
            "the request is malformed or contradictory: check --group, --service and --weight"
        }
        (Request::Join, NackReason::NotResponsible) => {
            "this proxy does not serve the group or address: retrying with backoff; check \
             --group and --service"
        }
        (Request::Leave, NackReason::NotResponsible) => {
            "it does not hold this target (already gone): nothing to leave"
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Joined { proxy } => write!(f, "joined: proxy {proxy} is the JAP"),
            Event::Left => f.write_str("left the group"),
            Event::Refused { request, reason } => write!(
                f,
                "{request} refused by the proxy: {reason:?}: {}",
                explain(*request, *reason)
            ),
            Event::NoAnswer {
                request,
                to,
                waited_ms,
            } => write!(
                f,
                "no answer to the {request} sent to {to} within {waited_ms} ms: retrying with \
                 backoff (no PIAS proxy there, the registration port is wrong, or the group \
                 key is wrong: a proxy ignores a bad signature)"
            ),
            Event::LeaveUnanswered => f.write_str(
                "no answer to the leave: giving up (the JAP will find the target silent and \
                 stop sending it clients)",
            ),
            Event::Silent { proxy, for_ms } => write!(
                f,
                "no ping from proxy {proxy} for {for_ms} ms: rejoining (the JAP restarted or \
                 died; anycast takes the join to the next-nearest proxy)"
            ),
            Event::RejoinAsked { proxy } => {
                write!(f, "proxy {proxy} does not hold this target: rejoining")
            }
            Event::Healthy => f.write_str("service healthy: joining"),
            Event::Unhealthy => {
                f.write_str("service unhealthy: leaving the group, not answering pings")
            }
            Event::Waiting => f.write_str("service unhealthy: joining once it passes its check"),
        }
    }
}

/// Why the agent ignored a datagram (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Not a PIAS message, not from a proxy, or for another group or target.
    pub foreign: u64,
    /// The tag did not verify with the group key.
    pub forged: u64,
    /// Not newer than the last message from the same proxy life.
    pub replayed: u64,
    /// Verified, but not expected now (an ack of another request, a ping
    /// while unhealthy).
    pub unexpected: u64,
}

/// A registration in progress: every nonce sent for it (each try has a fresh
/// one, since a JAP treats a repeated nonce as a replay) and when to try next.
#[derive(Clone, Debug)]
struct Pending {
    nonces: VecDeque<u64>,
    tries: u32,
    next: u64,
    started: u64,
}

/// Nonces remembered per registration: an answer to any of its last tries counts.
const MAX_NONCES: usize = 8;
/// Proxy lives remembered for the replay check.
const MAX_PROXIES: usize = 16;
/// A `Rejoin` does not restart a join younger than this.
const REJOIN_HOLDOFF_MS: u64 = 1_000;

impl Pending {
    fn new(now: u64) -> Self {
        Pending {
            nonces: VecDeque::with_capacity(MAX_NONCES),
            tries: 0,
            next: now,
            started: now,
        }
    }
}

#[derive(Clone, Debug)]
enum Phase {
    /// Not a member and not trying: not started, or unhealthy.
    Idle,
    Joining(Pending),
    Joined {
        proxy: ProxyId,
        last_ping: u64,
    },
    Leaving(Pending),
    /// Shut down: left, or gave up leaving.
    Done,
}

/// One group membership of one service, as a state machine.
pub struct Agent {
    cfg: AgentConfig,
    phase: Phase,
    /// The latest health verdict (None: none yet, so not joining).
    healthy: Option<bool>,
    stopping: bool,
    seq: u64,
    rng: u64,
    /// (proxy, boot, last seq) of the proxy lives heard from, newest last.
    lives: VecDeque<(ProxyId, u64, u64)>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    ignored: Ignored,
}

/// splitmix64's finaliser: a bijection, so distinct inputs give distinct nonces.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Agent {
    /// An agent that waits for its first health verdict (`set_healthy`)
    /// before joining. `seed` must be random (nonces derive from it: a
    /// restarted agent must not repeat the last one's within 30 s).
    pub fn new(mut cfg: AgentConfig, seed: u64) -> Self {
        cfg.weight = cfg.weight.clamp(1, JoinOptions::MAX_WEIGHT);
        cfg.retry_ms = cfg.retry_ms.max(1);
        cfg.shutdown_retry_ms = cfg.shutdown_retry_ms.max(1);
        cfg.retry_cap_ms = cfg.retry_cap_ms.max(cfg.retry_ms);
        Agent {
            cfg,
            phase: Phase::Idle,
            healthy: None,
            stopping: false,
            seq: 0,
            rng: seed,
            lives: VecDeque::with_capacity(MAX_PROXIES),
            out: VecDeque::new(),
            events: VecDeque::new(),
            ignored: Ignored::default(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// Whether a JAP acknowledged the latest join (and no leave since).
    pub fn is_joined(&self) -> bool {
        matches!(self.phase, Phase::Joined { .. })
    }

    /// Whether it has shut down (left, or gave up leaving): the caller may exit.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The datagrams it ignored, by reason.
    pub fn ignored(&self) -> Ignored {
        self.ignored
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event to log.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called (Unix ms); None: never.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.phase {
            Phase::Joining(p) | Phase::Leaving(p) => Some(p.next),
            Phase::Joined { last_ping, .. } => {
                Some(last_ping.saturating_add(self.cfg.ping_timeout_ms))
            }
            Phase::Idle | Phase::Done => None,
        }
    }

    /// The health check's verdict changed (or the first one came).
    pub fn set_healthy(&mut self, now: u64, healthy: bool) {
        if self.stopping || self.healthy == Some(healthy) {
            return;
        }
        let first = self.healthy.is_none();
        self.healthy = Some(healthy);
        if healthy {
            if !first {
                self.events.push_back(Event::Healthy);
            }
            if matches!(self.phase, Phase::Idle | Phase::Leaving(_)) {
                self.start(now, Request::Join);
            }
        } else {
            self.events.push_back(if first {
                Event::Waiting
            } else {
                Event::Unhealthy
            });
            if matches!(self.phase, Phase::Joining(_) | Phase::Joined { .. }) {
                self.start(now, Request::Leave);
            }
        }
    }

    /// Stop: leave the group (if in it or joining) and then be done.
    pub fn shutdown(&mut self, now: u64) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        match self.phase {
            Phase::Joining(_) | Phase::Joined { .. } => self.start(now, Request::Leave),
            Phase::Leaving(ref mut p) => {
                // Already leaving: try again at once, at the shutdown pace.
                p.next = now;
                p.tries = 0;
                self.handle_timeout(now);
            }
            Phase::Idle | Phase::Done => self.phase = Phase::Done,
        }
    }

    /// Runs what is due at `now`: a registration's (re)try, or the silence check.
    pub fn handle_timeout(&mut self, now: u64) {
        match self.phase {
            Phase::Joined { proxy, last_ping } => {
                let silent = now.saturating_sub(last_ping);
                if silent >= self.cfg.ping_timeout_ms {
                    self.events.push_back(Event::Silent {
                        proxy,
                        for_ms: silent,
                    });
                    self.start(now, Request::Join);
                }
            }
            Phase::Joining(ref p) | Phase::Leaving(ref p) if now >= p.next => {
                let request = if matches!(self.phase, Phase::Joining(_)) {
                    Request::Join
                } else {
                    Request::Leave
                };
                let (tries, started) = (p.tries, p.started);
                if request == Request::Leave && tries >= self.cfg.leave_tries.max(1) {
                    self.events.push_back(Event::LeaveUnanswered);
                    self.phase = self.after_leave();
                    return;
                }
                if tries == 1 {
                    self.events.push_back(Event::NoAnswer {
                        request,
                        to: self.cfg.registration(),
                        waited_ms: now.saturating_sub(started),
                    });
                }
                self.send_registration(now, request);
            }
            _ => {}
        }
    }

    /// A datagram on the agent's socket from `src`. Only a message that parses,
    /// comes from a proxy, names this group and service, verifies with the
    /// group key and is newer than the last from the same proxy life counts.
    pub fn handle_datagram(&mut self, now: u64, src: Endpoint, bytes: &[u8]) {
        let Ok(parsed) = wire::parse(bytes) else {
            self.ignored.foreign += 1;
            return;
        };
        let Sender::Proxy { id, boot } = parsed.sender else {
            self.ignored.foreign += 1;
            return;
        };
        if parsed.message.target_group() != Some(self.cfg.group) {
            self.ignored.foreign += 1;
            return;
        }
        let target = match parsed.message {
            Message::Ack { target, .. }
            | Message::Nack { target, .. }
            | Message::Ping { target, .. }
            | Message::Rejoin { target, .. } => target,
            _ => {
                self.ignored.foreign += 1;
                return;
            }
        };
        if target != self.cfg.service {
            self.ignored.foreign += 1;
            return;
        }
        if parsed.verify(&self.cfg.key).is_err() {
            self.ignored.forged += 1;
            return;
        }
        if !self.fresh(id, boot, parsed.seq) {
            self.ignored.replayed += 1;
            return;
        }
        match parsed.message {
            Message::Ack { nonce, .. } => self.on_ack(now, id, nonce),
            Message::Nack { nonce, reason, .. } => self.on_nack(nonce, reason),
            Message::Ping { nonce, .. } => self.on_ping(now, src, nonce),
            Message::Rejoin { .. } => self.on_rejoin(now, id),
            _ => self.ignored.unexpected += 1,
        }
    }

    /// Whether `seq` is newer than anything heard from this life of proxy `id`
    /// (and records it). A later boot of the proxy starts afresh; an earlier
    /// one is refused.
    fn fresh(&mut self, id: ProxyId, boot: u64, seq: u64) -> bool {
        if let Some(i) = self.lives.iter().position(|&(p, _, _)| p == id) {
            let (_, b, s) = self.lives[i];
            if boot < b || (boot == b && seq <= s) {
                return false;
            }
            self.lives.remove(i);
        } else if self.lives.len() >= MAX_PROXIES {
            self.lives.pop_front();
        }
        self.lives.push_back((id, boot, seq));
        true
    }

    fn answering(&self) -> bool {
        self.healthy == Some(true)
            && !self.stopping
            && matches!(self.phase, Phase::Joining(_) | Phase::Joined { .. })
    }

    fn on_ack(&mut self, now: u64, proxy: ProxyId, nonce: u64) {
        match &self.phase {
            Phase::Joining(p) if p.nonces.contains(&nonce) => {
                self.phase = Phase::Joined {
                    proxy,
                    last_ping: now,
                };
                self.events.push_back(Event::Joined { proxy });
            }
            Phase::Leaving(p) if p.nonces.contains(&nonce) => {
                self.events.push_back(Event::Left);
                self.phase = self.after_leave();
            }
            _ => self.ignored.unexpected += 1,
        }
    }

    fn on_nack(&mut self, nonce: u64, reason: NackReason) {
        match &self.phase {
            Phase::Joining(p) if p.nonces.contains(&nonce) => {
                // The retry stays as scheduled: a refusal never speeds it up.
                self.events.push_back(Event::Refused {
                    request: Request::Join,
                    reason,
                });
            }
            Phase::Leaving(p) if p.nonces.contains(&nonce) => {
                self.events.push_back(Event::Refused {
                    request: Request::Leave,
                    reason,
                });
                if reason == NackReason::NotResponsible {
                    self.phase = self.after_leave();
                }
            }
            _ => self.ignored.unexpected += 1,
        }
    }

    fn on_ping(&mut self, now: u64, src: Endpoint, nonce: u64) {
        if !self.answering() {
            self.ignored.unexpected += 1;
            return;
        }
        if let Phase::Joined { last_ping, .. } = &mut self.phase {
            *last_ping = now;
        }
        let pong = Message::Pong {
            group: self.cfg.group,
            target: self.cfg.service,
            nonce,
        };
        self.send(now, src, &pong);
    }

    fn on_rejoin(&mut self, now: u64, proxy: ProxyId) {
        let recent = matches!(&self.phase, Phase::Joining(p)
            if now.saturating_sub(p.started) < REJOIN_HOLDOFF_MS);
        if !self.answering() || recent {
            self.ignored.unexpected += 1;
            return;
        }
        self.events.push_back(Event::RejoinAsked { proxy });
        self.start(now, Request::Join);
    }

    fn after_leave(&self) -> Phase {
        if self.stopping {
            Phase::Done
        } else {
            Phase::Idle
        }
    }

    /// Begins a registration and sends its first try now.
    fn start(&mut self, now: u64, request: Request) {
        self.phase = match request {
            Request::Join => Phase::Joining(Pending::new(now)),
            Request::Leave => Phase::Leaving(Pending::new(now)),
        };
        self.send_registration(now, request);
    }

    /// One try of the registration in progress: a fresh nonce and timestamp,
    /// and the next try after the backoff.
    fn send_registration(&mut self, now: u64, request: Request) {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let nonce = mix64(self.rng);
        let base = if self.stopping {
            self.cfg.shutdown_retry_ms
        } else {
            self.cfg.retry_ms
        };
        let cap = self.cfg.retry_cap_ms.max(base);
        let (Phase::Joining(p) | Phase::Leaving(p)) = &mut self.phase else {
            return;
        };
        let wait = base.saturating_mul(1u64 << p.tries.min(20)).min(cap);
        p.tries = p.tries.saturating_add(1);
        p.next = now.saturating_add(wait);
        if p.nonces.len() >= MAX_NONCES {
            p.nonces.pop_front();
        }
        p.nonces.push_back(nonce);
        let r = Registration {
            group: self.cfg.group,
            target: self.cfg.service,
            timestamp_ms: now,
            nonce,
            options: JoinOptions {
                weight: self.cfg.weight,
            },
        };
        let msg = match request {
            Request::Join => Message::Join(r),
            Request::Leave => Message::Leave(r),
        };
        let to = self.cfg.registration();
        self.send(now, to, &msg);
    }

    /// Signs `msg` with the group key and queues it to `to`.
    fn send(&mut self, now: u64, to: Endpoint, msg: &Message) {
        self.seq = self.seq.saturating_add(1).max(now);
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        // Registrations and pongs are a few dozen bytes and the weight is
        // clamped, so encoding cannot fail; if it did, nothing is sent.
        if let Ok(n) = wire::encode(Sender::Target, 0, self.seq, msg, &self.cfg.key, &mut buf) {
            buf.truncate(n);
            self.out.push_back(Transmit { to, bytes: buf });
        }
    }
}

/// Health verdicts from check results, ExaBGP-healthcheck style: the first
/// result decides; after that `rise` passes in a row make a failed service
/// healthy and `fall` failures in a row make a healthy one unhealthy.
#[derive(Clone, Debug)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    state: Option<bool>,
    run: u32,
}

impl RiseFall {
    /// Counts `rise` and `fall` (0 counts as 1).
    pub fn new(rise: u32, fall: u32) -> Self {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            state: None,
            run: 0,
        }
    }

    /// One check result; the new verdict if it changed (or is the first).
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        let Some(state) = self.state else {
            self.state = Some(ok);
            return Some(ok);
        };
        if ok == state {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.run >= needed {
            self.state = Some(ok);
            self.run = 0;
            return Some(ok);
        }
        None
    }
}

/// Why a key was refused. Never shows the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Neither 64 hex digits nor 32 raw bytes; the length found.
    BadLength(usize),
    /// 64 characters, not all hex digits.
    NotHex,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadLength(n) => write!(
                f,
                "a group key is 64 hex digits or 32 raw bytes; this one has {n} bytes"
            ),
            KeyError::NotHex => f.write_str("a group key of 64 characters must be all hex digits"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A key from a file's bytes or a flag: 64 hex digits (surrounding
/// whitespace ignored), or exactly 32 raw bytes.
pub fn parse_key(bytes: &[u8]) -> Result<Key, KeyError> {
    let text = bytes.trim_ascii();
    if text.len() == 64 {
        let mut key = [0u8; 32];
        for (k, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(KeyError::NotHex)?;
            let lo = hex_digit(pair[1]).ok_or(KeyError::NotHex)?;
            *k = hi << 4 | lo;
        }
        return Ok(Key(key));
    }
    <[u8; 32]>::try_from(bytes)
        .map(Key)
        .map_err(|_| KeyError::BadLength(bytes.len()))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
