//! BGP in the appliance: one `pias_bgp::Session` per neighbour, each carried
//! by its own smoltcp TCP socket (TTL 255 out, GTSM checked on the way in by
//! the data path), and one `Announcer` deciding from the proxy's health and
//! the operator's drain what every neighbour is told; `bfd` runs single-hop
//! BFD beside the sessions that ask for it. The kernel calls `poll` each turn
//! of its loop; nothing here allocates after `new`.

mod bfd;

pub use self::bfd::BfdSockets;

use alloc::vec::Vec;
use pias::addr::Ipv4;
use pias::config::Config;
use pias::proxy::Hearing;
use pias::status::BfdStatus;
use pias::status::{Advertised, BgpState, NeighbourReport, RouteHealth, RoutingReport};
use pias_bgp::bfd::{BfdSession, BfdState};
use pias_bgp::session::Route;
use pias_bgp::wire::{Attrs, Prefix};
use pias_bgp::{AnnounceConfig, Announcer, Health, Millis, Session, SessionConfig, State};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// BGP's TCP port.
pub const BGP_PORT: u16 = 179;
/// How often health is checked.
const CHECK_EVERY: Millis = 1_000;
/// How long a closing connection may take to send its last bytes and FIN.
const CLOSE_GRACE: Millis = 1_000;

/// One neighbour: its session and the socket that carries it.
struct Neighbour {
    address: Ipv4,
    session: Session,
    socket: SocketHandle,
    closing_since: Option<Millis>,
    /// A connection attempt is under way for the current Connect state (a
    /// refused one waits for the retry timer instead of trying at once).
    dialing: bool,
    /// Its BFD session, if configured.
    bfd: Option<BfdSession>,
    /// Where its BFD packets go: 3784 (single hop), or 4784 once it sends
    /// multihop BFD (RFC 5883; FRR does toward a ttl-security neighbour).
    bfd_port: u16,
}

/// Health from what the proxy hears: Down if it hears no other proxy at all
/// (it is cut off, or just booted), Degraded if it hears only its own cluster
/// while proxies elsewhere exist (Down instead when `require_remote`), else
/// Up. A deployment of one proxy is always Up.
pub fn health_of(h: Hearing, require_remote: bool) -> Health {
    if h.cluster_peers + h.remote_peers == 0 {
        return Health::Up;
    }
    if h.cluster_heard + h.remote_heard == 0 {
        return Health::Down;
    }
    if h.remote_peers > 0 && h.remote_heard == 0 {
        return if require_remote {
            Health::Down
        } else {
            Health::Degraded
        };
    }
    Health::Up
}

/// The BGP speaker of one appliance.
pub struct Routing {
    neighbours: Vec<Neighbour>,
    announcer: Announcer,
    require_remote: bool,
    next_check: Millis,
    /// Local ports of outgoing connections: below the NAT's, none of the
    /// appliance's own services.
    ports: core::ops::Range<u16>,
    avoid: [u16; 3],
    next_port: u16,
    withdrawing: bool,
    /// BFD's UDP sockets.
    bfd_sockets: Option<BfdSockets>,
}

impl Routing {
    /// The speaker for `cfg.bgp`, one socket of `sockets` per neighbour (the
    /// caller made them, with their buffers). Outgoing connections take their
    /// local port from `ports` (which must not overlap the NAT's: segments to
    /// a NAT port are the data path's), skipping the configured service
    /// ports; `seed` picks the first. Neighbours with `bfd` get a BFD
    /// session over `bfd_sockets` (the caller bound them).
    /// `now_us` is the monotonic clock in microseconds.
    pub fn new(
        cfg: &Config,
        sockets: &mut SocketSet<'_>,
        handles: &[SocketHandle],
        bfd_sockets: Option<BfdSockets>,
        now_us: u64,
        ports: core::ops::Range<u16>,
        seed: u16,
    ) -> Routing {
        let now = now_us / 1_000;
        let b = &cfg.bgp;
        if let Some(BfdSockets { tx, .. }) = bfd_sockets {
            // Single-hop BFD: TTL 255 (RFC 5881 §5).
            sockets
                .get_mut::<smoltcp::socket::udp::Socket>(tx)
                .set_hop_limit(Some(255));
        }
        let prefixes: Vec<Prefix> = cfg
            .bgp_prefixes()
            .iter()
            .map(|p| Prefix {
                addr: p.addr.0,
                len: p.len,
            })
            .collect();
        let next_hop = cfg.interfaces.first().map_or([0; 4], |i| i.address.addr.0);
        let neighbours = b
            .neighbours
            .iter()
            .zip(handles)
            .enumerate()
            .map(|(i, (n, &socket))| {
                sockets
                    .get_mut::<tcp::Socket>(socket)
                    .set_hop_limit(Some(255));
                let s = SessionConfig {
                    local_as: b.local_as,
                    router_id: cfg.bgp_router_id().0,
                    peer_as: n.remote_as,
                    hold_time: n.hold_time_s,
                    passive: n.passive,
                    next_hop,
                    connect_retry: Millis::from(b.connect_retry_s) * 1_000,
                };
                Neighbour {
                    address: n.address,
                    session: Session::new(s, &prefixes, now),
                    socket,
                    closing_since: None,
                    dialing: false,
                    bfd_port: pias_bgp::bfd::PORT,
                    bfd: (n.bfd && bfd_sockets.is_some()).then(|| bfd::session(i, seed, now_us)),
                }
            })
            .collect();
        let degraded = (b.degraded_prepend > 0 || b.degraded_med.is_some()).then_some(Attrs {
            prepend: b.degraded_prepend,
            med: b.degraded_med,
            graceful_shutdown: false,
        });
        Routing {
            neighbours,
            announcer: Announcer::new(AnnounceConfig {
                rise: b.rise,
                fall: b.fall,
                drain_delay: Millis::from(b.drain_delay_ms),
                // Without degraded attributes a degraded appliance still
                // announces as usual (it can serve); with them, it is worse.
                degraded: Some(degraded.unwrap_or_default()),
            }),
            require_remote: b.require_remote,
            next_check: now,
            next_port: ports.start + seed % ports.len().max(1) as u16,
            avoid: [
                cfg.ports.management,
                cfg.ports.proxy,
                cfg.ports.registration,
            ],
            ports,
            withdrawing: false,
            bfd_sockets,
        }
    }

    /// Whether any neighbour is configured.
    pub fn enabled(&self) -> bool {
        !self.neighbours.is_empty()
    }

    /// Starts a drain: GRACEFUL_SHUTDOWN now, withdrawn after the delay.
    pub fn drain(&mut self, now: Millis) {
        self.announcer.drain(now);
    }

    /// Ends a drain.
    pub fn undrain(&mut self) {
        self.announcer.undrain();
    }

    /// Withdraws from every neighbour at once, for good (a clean shutdown).
    pub fn withdraw_all(&mut self) {
        self.withdrawing = true;
        for n in &mut self.neighbours {
            n.session.set_route(Route::Withdrawn);
        }
    }

    /// Whether every neighbour has been sent everything and acknowledged it
    /// (after `withdraw_all`: the routers have the withdrawal).
    pub fn flushed(&self, sockets: &SocketSet<'_>) -> bool {
        self.neighbours.iter().all(|n| {
            let s = sockets.get::<tcp::Socket>(n.socket);
            n.session.transmit().is_empty() && (s.send_queue() == 0 || !s.may_send())
        })
    }

    /// Ends every session (Cease, administrative shutdown) and closes the
    /// sockets; for a clean shutdown after `withdraw_all` and `flushed`.
    pub fn stop(&mut self, now: Millis, sockets: &mut SocketSet<'_>) {
        for n in &mut self.neighbours {
            n.session.stop();
            let sock = sockets.get_mut::<tcp::Socket>(n.socket);
            Self::send(&mut n.session, sock);
            sock.close();
            n.closing_since = Some(now);
        }
    }

    /// When `poll` has work next, in microseconds (timers only; received
    /// bytes wake the loop).
    pub fn poll_timeout(&self) -> Option<u64> {
        let bgp = self.bgp_timeout()?.saturating_mul(1_000);
        Some(self.bfd_timeout().map_or(bgp, |b| b.min(bgp)))
    }

    fn bgp_timeout(&self) -> Option<Millis> {
        if self.neighbours.is_empty() {
            return None;
        }
        let mut at = self.next_check;
        for n in &self.neighbours {
            if let Some(t) = n.session.poll_timeout() {
                at = at.min(t);
            }
            if let Some(t) = n.closing_since {
                at = at.min(t.saturating_add(CLOSE_GRACE));
            }
        }
        if let Some(t) = self.announcer.poll_timeout() {
            at = at.min(t);
        }
        Some(at)
    }

    /// One turn at `now_us` (monotonic µs): BFD, health (once a second, from
    /// `hearing`), each session's timers, its socket's state, bytes in and out.
    pub fn poll(
        &mut self,
        now_us: u64,
        hearing: impl FnOnce() -> Hearing,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) {
        if self.neighbours.is_empty() {
            return;
        }
        let now = now_us / 1_000;
        self.poll_bfd(now_us, sockets);
        if now >= self.next_check {
            self.next_check = now.saturating_add(CHECK_EVERY);
            self.announcer
                .observe(health_of(hearing(), self.require_remote));
        }
        let route = if self.withdrawing {
            Route::Withdrawn
        } else {
            self.announcer.route(now)
        };
        for i in 0..self.neighbours.len() {
            self.neighbours[i].session.set_route(route);
            if let Some(j) = self.drive(i, now, iface, sockets) {
                // Neighbour j's connection reached i's listening socket (both
                // passive, both listen on 179): give it to j, and j's still
                // listening socket to i.
                let (a, b) = (self.neighbours[i].socket, self.neighbours[j].socket);
                self.neighbours[i].socket = b;
                self.neighbours[j].socket = a;
            }
        }
    }

    /// The next local port for an outgoing connection.
    fn take_port(&mut self) -> u16 {
        for _ in 0..8 {
            let p = self.next_port;
            self.next_port = if p.saturating_add(1) >= self.ports.end {
                self.ports.start
            } else {
                p + 1
            };
            if !self.avoid.contains(&p) && p != BGP_PORT {
                return p;
            }
        }
        self.next_port
    }

    /// Drives neighbour `i`; another passive neighbour whose connection
    /// landed on `i`'s socket, if one did.
    fn drive(
        &mut self,
        i: usize,
        now: Millis,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Option<usize> {
        {
            let n = &mut self.neighbours[i];
            if n.session.poll_timeout().is_some_and(|t| t <= now) {
                n.session.handle_timeout(now);
            }
            if n.session.state() != State::Connect {
                n.dialing = false;
            }
        }
        let connecting = {
            let n = &self.neighbours[i];
            n.session.state() == State::Connect
                && !n.dialing
                && !sockets.get::<tcp::Socket>(n.socket).is_open()
        };
        let owner_of = |remote: Option<IpEndpoint>, neighbours: &[Neighbour]| {
            let IpAddress::Ipv4(a) = remote?.addr;
            neighbours
                .iter()
                .position(|m| m.address.0 == a.octets() && m.session.state() == State::Active)
        };
        let stray = {
            let n = &self.neighbours[i];
            let s = sockets.get::<tcp::Socket>(n.socket);
            let peer = IpAddress::Ipv4(Ipv4Address::from(n.address.0));
            (n.session.state() == State::Active
                && s.state() == tcp::State::Established
                && s.remote_endpoint().is_some_and(|r| r.addr != peer))
            .then(|| owner_of(s.remote_endpoint(), &self.neighbours))
        };
        if let Some(owner) = stray {
            if owner.is_some() {
                return owner;
            }
        }
        let port = if connecting { self.take_port() } else { 0 };
        let n = &mut self.neighbours[i];
        let sock = sockets.get_mut::<tcp::Socket>(n.socket);
        if n.session.close_requested() || n.closing_since.is_some() {
            // Send what is left (a NOTIFICATION, say), FIN, then let go.
            Self::send(&mut n.session, sock);
            let since = *n.closing_since.get_or_insert(now);
            if n.session.transmit().is_empty() || now >= since.saturating_add(CLOSE_GRACE) {
                sock.close();
            }
            if !sock.is_open() || now >= since.saturating_add(2 * CLOSE_GRACE) {
                sock.abort();
                n.session.handle_closed(now);
                n.closing_since = None;
            }
            return None;
        }
        let peer = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(n.address.0)), BGP_PORT);
        match n.session.state() {
            State::Connect if !sock.is_open() && n.dialing => {
                // Refused or reset: this attempt is over; the retry timer
                // says when the next one goes (no SYN storm at a dead peer).
                n.dialing = false;
                n.session.handle_closed(now);
            }
            State::Connect if !sock.is_open() => {
                if sock.connect(iface.context(), peer, port).is_ok() {
                    n.dialing = true;
                } else {
                    // No source address or port: give this attempt up.
                    n.session.handle_closed(now);
                }
            }
            State::Active if !sock.is_open() => {
                let _ = sock.listen(BGP_PORT);
            }
            State::Connect | State::Active if sock.state() == tcp::State::Established => {
                if sock.remote_endpoint() == Some(peer) {
                    n.session.handle_connected(now);
                } else {
                    // Someone else connected to a passive neighbour's socket.
                    sock.abort();
                }
            }
            State::OpenSent | State::OpenConfirm | State::Established
                if !sock.may_recv() || !sock.is_active() =>
            {
                // The neighbour closed (or reset) the connection.
                sock.abort();
                n.session.handle_closed(now);
                return None;
            }
            State::Idle if sock.is_open() => sock.abort(),
            _ => {}
        }
        while sock.can_recv() {
            let got = sock.recv(|buf| {
                n.session.handle_bytes(now, buf);
                (buf.len(), buf.len())
            });
            if !matches!(got, Ok(k) if k > 0) {
                break;
            }
        }
        Self::send(&mut n.session, sock);
        None
    }

    fn send(session: &mut Session, sock: &mut tcp::Socket<'_>) {
        if !session.transmit().is_empty() && sock.can_send() {
            if let Ok(k) = sock.send_slice(session.transmit()) {
                session.consume(k);
            }
        }
    }

    /// What BGP is doing (the kernel fills in `gtsm_dropped`).
    pub fn report(&self) -> RoutingReport {
        let health = match self.announcer.health() {
            Health::Down => RouteHealth::Down,
            Health::Degraded => RouteHealth::Degraded,
            Health::Up => RouteHealth::Up,
        };
        let mut r = RoutingReport {
            enabled: self.enabled(),
            health,
            serving: self.announcer.serving(),
            draining: self.announcer.draining(),
            flips: self.announcer.flips(),
            gtsm_dropped: 0,
            neighbours: heapless::Vec::new(),
        };
        for n in &self.neighbours {
            let s = &n.session;
            let c = s.counters();
            let advertised = match s.advertised() {
                Route::Withdrawn => Advertised::Nothing,
                Route::Announced(a) if a.graceful_shutdown => Advertised::GracefulShutdown,
                Route::Announced(a) if a != Attrs::default() => Advertised::Degraded,
                Route::Announced(_) => Advertised::Announced,
            };
            let _ = r.neighbours.push(NeighbourReport {
                address: n.address,
                remote_as: s.config().peer_as,
                state: match s.state() {
                    State::Idle => BgpState::Idle,
                    State::Connect => BgpState::Connect,
                    State::Active => BgpState::Active,
                    State::OpenSent => BgpState::OpenSent,
                    State::OpenConfirm => BgpState::OpenConfirm,
                    State::Established => BgpState::Established,
                },
                advertised,
                hold_time_s: s.hold_time(),
                established: c.established,
                dropped: c.dropped,
                connect_attempts: c.connect_attempts,
                updates_in: c.updates_in,
                updates_out: c.updates_out,
                prefixes_in: c.prefixes_in,
                notifications_in: c.notifications_in,
                notifications_out: c.notifications_out,
                malformed: c.malformed,
                hold_expired: c.hold_expired,
                connection_lost: c.connection_lost,
                last_error_sent: s.last_error_sent().map(|e| (e.code, e.subcode)),
                last_error_received: s.last_error_received(),
                bfd: n.bfd.as_ref().map_or(BfdStatus::Off, |b| match b.state() {
                    BfdState::AdminDown => BfdStatus::AdminDown,
                    BfdState::Down => BfdStatus::Down,
                    BfdState::Init => BfdStatus::Init,
                    BfdState::Up => BfdStatus::Up,
                }),
                bfd_downs: n.bfd.as_ref().map_or(0, |b| b.counters().downs),
                bfd_rx_bad: n.bfd.as_ref().map_or(0, |b| b.counters().rx_bad),
            });
        }
        r
    }

    /// The neighbours' addresses (the data path checks their TTL).
    pub fn neighbour_addresses(&self) -> impl Iterator<Item = Ipv4> + '_ {
        self.neighbours.iter().map(|n| n.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(
        cluster_peers: usize,
        cluster_heard: usize,
        remote_peers: usize,
        remote_heard: usize,
    ) -> Hearing {
        Hearing {
            cluster_peers,
            cluster_heard,
            remote_peers,
            remote_heard,
        }
    }

    #[test]
    fn health_from_hearing() {
        assert_eq!(health_of(h(0, 0, 0, 0), true), Health::Up, "alone");
        assert_eq!(health_of(h(1, 0, 5, 0), false), Health::Down, "cut off");
        assert_eq!(health_of(h(1, 1, 5, 0), false), Health::Degraded);
        assert_eq!(health_of(h(1, 1, 5, 0), true), Health::Down);
        assert_eq!(
            health_of(h(1, 0, 5, 1), true),
            Health::Up,
            "its POP peer died"
        );
        assert_eq!(health_of(h(3, 2, 0, 0), true), Health::Up, "one cluster");
    }
}
