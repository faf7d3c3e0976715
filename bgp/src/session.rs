//! One BGP session (RFC 4271 §8), sans-IO: the caller owns the TCP
//! connection. It opens one when the session `needs_transport`, reports it
//! with `handle_connected` / `handle_closed`, feeds received bytes to
//! `handle_bytes`, sends what `transmit` holds (then `consume`s it), closes
//! the connection when `close_requested`, and runs `handle_timeout` at
//! `poll_timeout`. The route to announce is set with `set_route`.
//!
//! Collisions (RFC 4271 §6.8) are avoided rather than resolved: an active
//! session only connects out and a passive one only accepts, so there is
//! never more than one connection per neighbour.

use crate::wire::{
    code, emit_keepalive, emit_notification, frame, Attrs, Error, Message, OpenRepr, Prefix,
    UpdateRepr, MAX_LEN,
};
use crate::Millis;

/// Most prefixes one session announces.
pub const MAX_PREFIXES: usize = 8;
/// Bytes of not yet sent messages held (our messages are small).
const TX_CAP: usize = 2048;
/// The hold time while waiting for the peer's OPEN (RFC 4271 suggests 4 min).
const OPEN_HOLD: Millis = 240_000;
const SEC: Millis = 1000;

/// One neighbour's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS number.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: [u8; 4],
    /// The AS the neighbour must have.
    pub peer_as: u32,
    /// Our proposed hold time in seconds (0, or 3 and more).
    pub hold_time: u16,
    /// Wait for the neighbour to connect instead of connecting.
    pub passive: bool,
    /// NEXT_HOP of our announcements: our own address.
    pub next_hop: [u8; 4],
    /// Wait between connection attempts.
    pub connect_retry: Millis,
}

/// RFC 4271's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not connected; waiting for the retry timer (or stopped).
    Idle,
    /// Connecting out (active).
    Connect,
    /// Waiting for the neighbour to connect (passive).
    Active,
    /// Our OPEN is sent; waiting for theirs.
    OpenSent,
    /// OPENs exchanged; waiting for their KEEPALIVE.
    OpenConfirm,
    /// Up: routes flow.
    Established,
}

/// What we announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Nothing: the prefixes are withdrawn.
    Withdrawn,
    /// The prefixes, with these attributes.
    Announced(Attrs),
}

/// What happened on the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections asked of the caller.
    pub connect_attempts: u64,
    /// Times the session reached Established.
    pub established: u64,
    /// Times it left Established.
    pub dropped: u64,
    /// Messages received, by type.
    pub opens_in: u64,
    /// UPDATEs received.
    pub updates_in: u64,
    /// KEEPALIVEs received.
    pub keepalives_in: u64,
    /// NOTIFICATIONs received.
    pub notifications_in: u64,
    /// Prefixes announced to us (counted, not installed).
    pub prefixes_in: u64,
    /// Prefixes withdrawn by the peer.
    pub withdrawals_in: u64,
    /// OPENs sent.
    pub opens_out: u64,
    /// UPDATEs sent.
    pub updates_out: u64,
    /// KEEPALIVEs sent.
    pub keepalives_out: u64,
    /// NOTIFICATIONs sent (each an error we found, or a stop).
    pub notifications_out: u64,
    /// Of those, for malformed messages (header, OPEN or UPDATE errors).
    pub malformed: u64,
    /// Hold timer expiries.
    pub hold_expired: u64,
    /// Connections lost without a NOTIFICATION.
    pub connection_lost: u64,
    /// Bytes received while no session was running (dropped).
    pub bytes_ignored: u64,
}

/// One BGP session toward one neighbour.
pub struct Session {
    cfg: SessionConfig,
    prefixes: [Prefix; MAX_PREFIXES],
    n_prefixes: usize,
    state: State,
    enabled: bool,
    want: Route,
    sent: Route,
    /// Negotiated hold time (s).
    hold: u16,
    retry_at: Option<Millis>,
    hold_at: Option<Millis>,
    keepalive_at: Option<Millis>,
    close: bool,
    rx: [u8; MAX_LEN],
    rx_len: usize,
    tx: [u8; TX_CAP],
    tx_len: usize,
    counters: Counters,
    last_sent: Option<Error>,
    last_received: Option<(u8, u8)>,
    /// The latest `now` given to any `handle_*` call.
    now: Millis,
}

/// A received message, copied out of the receive buffer.
enum Event {
    Open(crate::wire::Open),
    Update { announced: u64, withdrawn: u64 },
    Notification(u8, u8),
    Keepalive,
}

impl Session {
    /// A session announcing (once told to) the first `MAX_PREFIXES` of
    /// `prefixes`; it starts at once.
    pub fn new(cfg: SessionConfig, prefixes: &[Prefix], now: Millis) -> Session {
        let mut p = [Prefix::default(); MAX_PREFIXES];
        let n = prefixes.len().min(MAX_PREFIXES);
        p[..n].copy_from_slice(&prefixes[..n]);
        Session {
            cfg,
            prefixes: p,
            n_prefixes: n,
            state: State::Idle,
            enabled: true,
            want: Route::Withdrawn,
            sent: Route::Withdrawn,
            hold: 0,
            retry_at: Some(now),
            hold_at: None,
            keepalive_at: None,
            close: false,
            rx: [0; MAX_LEN],
            rx_len: 0,
            tx: [0; TX_CAP],
            tx_len: 0,
            counters: Counters::default(),
            last_sent: None,
            last_received: None,
            now,
        }
    }

    /// The neighbour's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The FSM's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What happened so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The negotiated hold time (s); 0 before Established or when none.
    pub fn hold_time(&self) -> u16 {
        self.hold
    }

    /// The last NOTIFICATION we sent.
    pub fn last_error_sent(&self) -> Option<Error> {
        self.last_sent
    }

    /// The last NOTIFICATION received: (code, subcode).
    pub fn last_error_received(&self) -> Option<(u8, u8)> {
        self.last_received
    }

    /// What the neighbour has from us now.
    pub fn advertised(&self) -> Route {
        self.sent
    }

    /// Whether the caller should be connecting (active) or accepting
    /// (passive) a connection for this session.
    pub fn needs_transport(&self) -> bool {
        matches!(self.state, State::Connect | State::Active)
    }

    /// Whether the caller should close the connection once `transmit` has
    /// been sent; `handle_closed` clears it.
    pub fn close_requested(&self) -> bool {
        self.close
    }

    /// Bytes to send on the connection.
    pub fn transmit(&self) -> &[u8] {
        &self.tx[..self.tx_len]
    }

    /// The caller sent the first `n` bytes of `transmit`.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.tx_len);
        self.tx.copy_within(n..self.tx_len, 0);
        self.tx_len -= n;
    }

    /// When `handle_timeout` should run next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [self.retry_at, self.hold_at, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The route to announce from now on; sent at once when Established.
    pub fn set_route(&mut self, route: Route) {
        self.want = route;
        if self.state == State::Established {
            self.send_route();
        }
    }

    /// Stops the session (Cease, administrative shutdown) and keeps it down.
    pub fn stop(&mut self) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            self.notify(Error::new(code::CEASE, code::ADMINISTRATIVE_SHUTDOWN));
        }
        self.enabled = false;
        self.enter_idle(self.now);
        self.retry_at = None;
    }

    /// Starts a stopped session.
    pub fn start(&mut self, now: Millis) {
        self.now = now;
        if !self.enabled {
            self.enabled = true;
            self.retry_at = Some(now);
        }
    }

    /// The caller's connection is up: send our OPEN.
    pub fn handle_connected(&mut self, now: Millis) {
        self.now = now;
        if !self.needs_transport() {
            return;
        }
        self.rx_len = 0;
        self.tx_len = 0;
        let open = OpenRepr {
            asn: self.cfg.local_as,
            hold_time: self.cfg.hold_time,
            bgp_id: self.cfg.router_id,
        };
        if self.queue(|b| open.emit(b)) {
            self.counters.opens_out += 1;
            self.state = State::OpenSent;
            self.retry_at = None;
            self.hold_at = Some(now.saturating_add(OPEN_HOLD));
        }
    }

    /// The caller's connection is gone (closed by either side, or failed).
    pub fn handle_closed(&mut self, now: Millis) {
        self.now = now;
        self.close = false;
        if self.state != State::Idle {
            self.counters.connection_lost += 1;
            self.enter_idle(now);
            self.close = false;
        }
        self.tx_len = 0;
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        if self.hold_at.is_some_and(|t| t <= now) {
            self.counters.hold_expired += 1;
            self.fail(now, Error::new(code::HOLD_TIMER_EXPIRED, 0));
            return;
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = Some(now.saturating_add(self.keepalive_interval()));
            if self.queue(emit_keepalive) {
                self.counters.keepalives_out += 1;
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            match self.state {
                State::Idle if !self.close && self.enabled => {
                    self.counters.connect_attempts += 1;
                    self.state = if self.cfg.passive {
                        State::Active
                    } else {
                        State::Connect
                    };
                    self.retry_at =
                        (!self.cfg.passive).then_some(now.saturating_add(self.cfg.connect_retry));
                }
                // The connection did not come up in time: give it up and
                // try again after the retry interval.
                State::Connect => self.enter_idle(now),
                // Still closing the last connection: look again shortly.
                _ => self.retry_at = Some(now.saturating_add(SEC / 10)),
            }
        }
    }

    /// Bytes received on the connection.
    pub fn handle_bytes(&mut self, now: Millis, mut data: &[u8]) {
        self.now = now;
        while !data.is_empty() {
            if !self.reading() {
                self.counters.bytes_ignored += data.len() as u64;
                return;
            }
            let n = data.len().min(MAX_LEN - self.rx_len);
            self.rx[self.rx_len..self.rx_len + n].copy_from_slice(&data[..n]);
            self.rx_len += n;
            data = &data[n..];
            while self.reading() {
                let len = match frame(&self.rx[..self.rx_len]) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        self.counters.malformed += 1;
                        self.fail(now, e);
                        return;
                    }
                };
                let event = Message::parse(&self.rx[..len]).map(Event::from);
                self.rx.copy_within(len..self.rx_len, 0);
                self.rx_len -= len;
                match event {
                    Ok(ev) => self.handle_event(now, ev),
                    Err(e) => {
                        self.counters.malformed += 1;
                        self.fail(now, e);
                    }
                }
            }
        }
    }

    fn reading(&self) -> bool {
        !self.close
            && matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            )
    }

    fn handle_event(&mut self, now: Millis, ev: Event) {
        match &ev {
            Event::Open(_) => self.counters.opens_in += 1,
            Event::Update {
                announced,
                withdrawn,
            } => {
                self.counters.updates_in += 1;
                self.counters.prefixes_in += announced;
                self.counters.withdrawals_in += withdrawn;
            }
            Event::Keepalive => self.counters.keepalives_in += 1,
            Event::Notification(c, s) => {
                self.counters.notifications_in += 1;
                self.last_received = Some((*c, *s));
                self.enter_idle(now);
                return;
            }
        }
        match (self.state, ev) {
            (State::OpenSent, Event::Open(open)) => self.handle_open(now, &open),
            (State::OpenConfirm, Event::Keepalive) => {
                self.state = State::Established;
                self.counters.established += 1;
                self.restart_hold(now);
                self.send_route();
            }
            (State::Established, Event::Keepalive | Event::Update { .. }) => self.restart_hold(now),
            (State::OpenSent, _) => self.fail(now, Error::new(code::FSM, code::FSM_IN_OPEN_SENT)),
            (State::OpenConfirm, _) => {
                self.fail(now, Error::new(code::FSM, code::FSM_IN_OPEN_CONFIRM))
            }
            (State::Established, _) => {
                self.fail(now, Error::new(code::FSM, code::FSM_IN_ESTABLISHED))
            }
            _ => {}
        }
    }

    fn handle_open(&mut self, now: Millis, open: &crate::wire::Open) {
        let cfg = self.cfg;
        let mine = OpenRepr {
            asn: cfg.local_as,
            hold_time: cfg.hold_time,
            bgp_id: cfg.router_id,
        };
        let err = if open.asn() != cfg.peer_as {
            Some(Error::with_data(
                code::OPEN,
                code::BAD_PEER_AS,
                &open.my_as.to_be_bytes(),
            ))
        } else if open.as4.is_none() {
            Some(Error::with_data(
                code::OPEN,
                code::UNSUPPORTED_CAPABILITY,
                &mine.as4_capability(),
            ))
        } else if !open.ipv4_unicast() {
            Some(Error::with_data(
                code::OPEN,
                code::UNSUPPORTED_CAPABILITY,
                &OpenRepr::mp_capability(),
            ))
        } else if open.bgp_id == cfg.router_id && cfg.peer_as == cfg.local_as {
            Some(Error::new(code::OPEN, code::BAD_BGP_IDENTIFIER))
        } else {
            None
        };
        if let Some(e) = err {
            self.counters.malformed += 1;
            self.fail(now, e);
            return;
        }
        self.hold = cfg.hold_time.min(open.hold_time);
        if !self.queue(emit_keepalive) {
            // The queue was full: the session has ended (Cease, out of resources).
            return;
        }
        self.counters.keepalives_out += 1;
        self.state = State::OpenConfirm;
        self.restart_hold(now);
        self.keepalive_at = (self.hold > 0).then(|| now.saturating_add(self.keepalive_interval()));
    }

    fn keepalive_interval(&self) -> Millis {
        (Millis::from(self.hold) * SEC / 3).max(SEC)
    }

    fn restart_hold(&mut self, now: Millis) {
        self.hold_at = (self.hold > 0).then(|| now.saturating_add(Millis::from(self.hold) * SEC));
    }

    /// Sends what differs between the route we want and what the peer has.
    fn send_route(&mut self) {
        if self.want == self.sent {
            return;
        }
        let prefixes = self.prefixes;
        let prefixes = &prefixes[..self.n_prefixes];
        let (withdrawn, announced, attrs) = match self.want {
            Route::Withdrawn => (prefixes, &[][..], Attrs::default()),
            Route::Announced(a) => (&[][..], prefixes, a),
        };
        let update = UpdateRepr {
            withdrawn,
            announced,
            local_as: self.cfg.local_as,
            next_hop: self.cfg.next_hop,
            attrs,
        };
        if self.queue(|b| update.emit(b)) {
            self.counters.updates_out += 1;
            self.sent = self.want;
        }
    }

    /// Writes a message with `emit` after what is queued; on a full queue the
    /// session ends (Cease, out of resources) and false is returned.
    fn queue(&mut self, emit: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        match emit(&mut self.tx[self.tx_len..]) {
            Some(n) => {
                self.tx_len += n;
                true
            }
            None => {
                // Nothing queued was sent yet: replace it with the reason.
                self.tx_len = 0;
                self.fail(self.now, Error::new(code::CEASE, code::OUT_OF_RESOURCES));
                false
            }
        }
    }

    /// Sends a NOTIFICATION (bytes queued before it go first).
    fn notify(&mut self, e: Error) {
        let fits = emit_notification(&mut self.tx[self.tx_len..], &e);
        let n = fits.or_else(|| {
            self.tx_len = 0;
            emit_notification(&mut self.tx, &e)
        });
        self.tx_len += n.unwrap_or(0);
        self.counters.notifications_out += 1;
        self.last_sent = Some(e);
    }

    /// Ends the session with a NOTIFICATION for `e`.
    fn fail(&mut self, now: Millis, e: Error) {
        if self.state != State::Idle {
            self.notify(e);
        }
        self.enter_idle(now);
    }

    fn enter_idle(&mut self, now: Millis) {
        if self.state == State::Established {
            self.counters.dropped += 1;
        }
        if self.state != State::Idle {
            self.close = true;
        }
        self.state = State::Idle;
        self.hold = 0;
        self.hold_at = None;
        self.keepalive_at = None;
        self.sent = Route::Withdrawn;
        self.rx_len = 0;
        self.retry_at = self
            .enabled
            .then(|| now.saturating_add(self.cfg.connect_retry));
    }
}

impl Event {
    fn from(m: Message<'_>) -> Event {
        match m {
            Message::Open(o) => Event::Open(o),
            Message::Update(u) => Event::Update {
                announced: u.announced().count() as u64,
                withdrawn: u.withdrawn().count() as u64,
            },
            Message::Notification(n) => Event::Notification(n.code, n.subcode),
            Message::Keepalive => Event::Keepalive,
        }
    }
}

#[cfg(test)]
mod tests;
