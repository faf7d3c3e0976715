//! The metrics port: Prometheus text over HTTP/1.x on a few smoltcp TCP
//! sockets, served from the polling loop without ever holding it up.
//!
//! Each connection slot is a small state machine driven by `poll(now, …)`:
//! listen → (source allowed?) read a request head → write the answer → read
//! the next (keep-alive) or close. Every phase has a deadline, so a slow or
//! half-open client loses its slot; at most one exposition is rendered per
//! turn of the loop, so a flood of requests cannot starve the data path.

pub mod exposition;
pub mod http;
pub mod text;

use crate::mgmt::Reports;
use alloc::vec;
use alloc::vec::Vec;
use http::{Answer, HttpError, Parsed, MAX_HEAD, MAX_RESPONSE_HEAD};
use pias::addr::{Ipv4, Ipv4Prefix};
use pias::status::{HttpCounters, MgmtCounters};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};

/// Bytes an answer may take: the largest exposition (every table, every BGP
/// neighbours, every counter at its largest) fits, a test checks it.
pub const RESPONSE_BYTES: usize = 48 * 1024;
/// Connections served at once; further attempts are reset and counted.
pub const SLOTS: usize = 4;
/// Each connection's smoltcp receive buffer.
pub const SOCKET_RX_BYTES: usize = 2 * 1024;
/// Each connection's smoltcp send buffer.
pub const SOCKET_TX_BYTES: usize = 16 * 1024;
/// A request must arrive whole within this long of the connection (or of the
/// previous answer, on a kept-alive connection), in µs.
pub const REQUEST_TIMEOUT_US: u64 = 10_000_000;
/// An answer must be taken by the client within this long, in µs.
pub const WRITE_TIMEOUT_US: u64 = 10_000_000;
/// A closing connection that lingers longer once its answer is all
/// acknowledged is reset, in µs; so is a reset that cannot be sent (the
/// slot listens again regardless).
pub const CLOSE_TIMEOUT_US: u64 = 2_000_000;
/// A handshake not completed within this is given up, in µs: a spoofed SYN
/// holds a slot this long, not a request timeout.
pub const SYN_TIMEOUT_US: u64 = 1_000_000;

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its socket listens (or is about to).
    Listening,
    /// A connection is open; a request head is awaited.
    Reading,
    /// An answer is being written.
    Writing,
    /// The answer is out; the connection is closing.
    Closing,
}

/// One connection slot: its socket, buffers and deadline.
struct Slot {
    handle: SocketHandle,
    phase: Phase,
    request: Vec<u8>,
    request_len: usize,
    response: Vec<u8>,
    /// The answer's bytes still to send: `response[sent..end]`.
    sent: usize,
    end: usize,
    keep_alive: bool,
    /// This connection has had an answer (an idle keep-alive connection is
    /// then closed politely, not counted as a timeout).
    answered: bool,
    deadline: u64,
    /// The peer the slot accepted (a socket found with another is a new
    /// connection, to be accepted afresh).
    peer: Option<IpEndpoint>,
    /// When the connection was accepted (the handshake's deadline runs from it).
    accepted_at: u64,
    /// The handshake is complete.
    established: bool,
    /// Bytes arrived (or were left by a pipelined request) since the last parse.
    fresh: bool,
    /// Closing: the answer is all acknowledged (the close clock runs).
    drained: bool,
    /// When the slot aborted a connection: it listens again once the reset
    /// is out, or `CLOSE_TIMEOUT_US` after this at the latest.
    aborted_at: Option<u64>,
}

/// The metrics server: its slots, the allow-list and its counters.
pub struct MetricsServer {
    port: u16,
    allow: Vec<Ipv4Prefix>,
    slots: Vec<Slot>,
    /// What it counted: the status report's `http`.
    pub counters: HttpCounters,
}

/// The socket buffers of one slot, for the caller to reserve.
pub fn socket<'a>(rx: &'a mut [u8], tx: &'a mut [u8]) -> tcp::Socket<'a> {
    tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx))
}

impl MetricsServer {
    /// A server on TCP `port` over the sockets `handles` (each a fresh
    /// `tcp::Socket`, e.g. from `socket`), answering sources in `allow`;
    /// reserves its buffers now.
    pub fn new(port: u16, allow: &[Ipv4Prefix], handles: &[SocketHandle]) -> MetricsServer {
        MetricsServer {
            port,
            allow: allow.to_vec(),
            slots: handles
                .iter()
                .map(|&handle| Slot {
                    handle,
                    phase: Phase::Listening,
                    request: vec![0; MAX_HEAD],
                    request_len: 0,
                    response: vec![0; RESPONSE_BYTES],
                    sent: 0,
                    end: 0,
                    keep_alive: false,
                    answered: false,
                    deadline: 0,
                    peer: None,
                    accepted_at: 0,
                    established: false,
                    fresh: false,
                    drained: false,
                    aborted_at: None,
                })
                .collect(),
            counters: HttpCounters::default(),
        }
    }

    /// The TCP port served.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Looks at a frame about to reach the stack. A TCP segment to the port
    /// from outside the allow-list is dropped (false): strangers get no
    /// answer, not even a reset, and take no slot; their connection
    /// attempts (SYNs) are counted. A SYN no slot can take (and that is not
    /// a retransmission for a slot's own connection) is counted and left to
    /// the stack, which resets it.
    pub fn admit(&mut self, frame: &[u8], sockets: &SocketSet<'_>) -> bool {
        let Some((source, syn)) = tcp_to(frame, self.port) else {
            return true;
        };
        if !self.allow.iter().any(|p| p.contains(source.ip)) {
            if syn {
                self.counters.refused_source += 1;
            }
            return false;
        }
        if syn {
            let from = IpEndpoint::new(IpAddress::Ipv4(source.ip.0.into()), source.port);
            let (mut free, mut own) = (false, false);
            for s in &self.slots {
                let sock = sockets.get::<tcp::Socket>(s.handle);
                free |= sock.is_listening();
                own |= sock.remote_endpoint() == Some(from);
            }
            if !free && !own {
                self.counters.refused_busy += 1;
            }
        }
        true
    }

    /// The earliest deadline of an open connection (µs), when `poll` must
    /// run even if no frame arrives.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| match (s.phase, s.aborted_at) {
                (Phase::Listening, None) => None,
                (Phase::Listening, Some(at)) => Some(at.saturating_add(CLOSE_TIMEOUT_US)),
                // A handshake still pending has its own, earlier deadline.
                (Phase::Reading, _) if !s.established => {
                    Some(s.deadline.min(s.accepted_at.saturating_add(SYN_TIMEOUT_US)))
                }
                _ => Some(s.deadline),
            })
            .map(|t| t.saturating_add(1))
            .min()
    }

    /// Runs every slot once at `now_us` (µs, monotonic); renders at most one
    /// exposition from `reports` (with `mgmt` as its management counters).
    pub fn poll(
        &mut self,
        now_us: u64,
        sockets: &mut SocketSet<'_>,
        reports: &impl Reports,
        mgmt: &MgmtCounters,
    ) {
        let mut may_render = true;
        for i in 0..self.slots.len() {
            let handle = self.slots[i].handle;
            let sock = sockets.get_mut::<tcp::Socket>(handle);
            self.step(i, now_us, sock, reports, mgmt, &mut may_render);
        }
    }

    fn allowed(&self, sock: &tcp::Socket<'_>) -> bool {
        match sock.remote_endpoint() {
            Some(ep) => {
                let IpAddress::Ipv4(a) = ep.addr;
                let a = Ipv4(a.octets());
                self.allow.iter().any(|p| p.contains(a))
            }
            None => false,
        }
    }

    fn step(
        &mut self,
        i: usize,
        now: u64,
        sock: &mut tcp::Socket<'_>,
        reports: &impl Reports,
        mgmt: &MgmtCounters,
        may_render: &mut bool,
    ) {
        let phase = self.slots[i].phase;
        let state = sock.state();
        if phase != Phase::Listening
            && (state == State::Closed
                || state == State::Listen
                || sock.remote_endpoint() != self.slots[i].peer)
        {
            // Reset by the peer or closed (a socket reset in SYN-RECEIVED
            // listens again by itself, and may have taken another
            // connection since): the slot starts over, and a new connection
            // is accepted, checked and counted as such.
            self.slots[i].phase = Phase::Listening;
        }
        match self.slots[i].phase {
            Phase::Listening => self.listen(i, now, sock),
            Phase::Reading => self.read(i, now, sock, reports, mgmt, may_render),
            Phase::Writing => self.write(i, now, sock),
            Phase::Closing => {
                let slot = &mut self.slots[i];
                if !slot.drained && sock.send_queue() == 0 {
                    // The answer is all acknowledged: the close clock runs.
                    slot.drained = true;
                    slot.deadline = now + CLOSE_TIMEOUT_US;
                }
                if sock.state() == State::TimeWait {
                    // Nothing is left to say: skip TIME-WAIT (the slot is needed).
                    sock.abort();
                    slot.phase = Phase::Listening;
                } else if now > slot.deadline {
                    // A peer that never finishes the close, or never takes
                    // the end of its answer (counted: it was cut short).
                    if !slot.drained {
                        self.counters.timeouts += 1;
                    }
                    Self::abort(slot, sock, now);
                }
            }
        }
    }

    /// Resets the slot's connection; the slot listens again (see `listen`).
    fn abort(slot: &mut Slot, sock: &mut tcp::Socket<'_>, now: u64) {
        sock.abort();
        slot.phase = Phase::Listening;
        slot.aborted_at = Some(now);
    }

    fn listen(&mut self, i: usize, now: u64, sock: &mut tcp::Socket<'_>) {
        if !sock.is_open() {
            // Closed: listen (cannot fail on a closed socket and a port ≠ 0),
            // once the reset of an aborted connection has gone out (listening
            // forgets the peer, and the reset with it: the peer would send
            // its SYN again), or after `CLOSE_TIMEOUT_US` if it cannot go
            // out (a vanished peer whose address no longer resolves).
            let slot = &mut self.slots[i];
            let given_up = slot
                .aborted_at
                .is_none_or(|at| now > at.saturating_add(CLOSE_TIMEOUT_US));
            if sock.remote_endpoint().is_none() || given_up {
                let _ = sock.listen(self.port);
                slot.aborted_at = None;
            }
            return;
        }
        if sock.is_listening() {
            return;
        }
        // A connection is arriving (its SYN passed `admit`; checked again
        // here should the caller not filter).
        if !self.allowed(sock) {
            self.counters.refused_source += 1;
            Self::abort(&mut self.slots[i], sock, now);
            return;
        }
        self.counters.connections += 1;
        let slot = &mut self.slots[i];
        slot.phase = Phase::Reading;
        slot.peer = sock.remote_endpoint();
        slot.request_len = 0;
        slot.answered = false;
        slot.fresh = false;
        slot.established = false;
        slot.accepted_at = now;
        slot.deadline = now + REQUEST_TIMEOUT_US;
    }

    fn read(
        &mut self,
        i: usize,
        now: u64,
        sock: &mut tcp::Socket<'_>,
        reports: &impl Reports,
        mgmt: &MgmtCounters,
        may_render: &mut bool,
    ) {
        let slot = &mut self.slots[i];
        if sock.state() == State::SynReceived {
            if now > slot.accepted_at.saturating_add(SYN_TIMEOUT_US) {
                // A handshake never completed (a spoofed or vanished peer).
                self.counters.timeouts += 1;
                Self::abort(slot, sock, now);
            }
            return;
        }
        slot.established = true;
        if sock.can_recv() && slot.request_len < MAX_HEAD {
            if let Ok(n) = sock.recv_slice(&mut slot.request[slot.request_len..]) {
                slot.request_len += n;
                slot.fresh |= n > 0;
            }
        }
        // Parse only what is new: a slow client costs nothing while silent.
        let parsed = if core::mem::take(&mut slot.fresh) {
            http::parse(&slot.request[..slot.request_len])
        } else {
            Parsed::Incomplete
        };
        match parsed {
            Parsed::Incomplete => {
                if !sock.may_recv() {
                    // The client closed its side with no (whole) request.
                    if slot.request_len > 0 {
                        self.counters.bad_requests += 1;
                    }
                    slot.close(sock, now);
                } else if now > slot.deadline {
                    if slot.request_len > 0 || !slot.answered {
                        // Slow, or connected and silent (half-open).
                        self.counters.timeouts += 1;
                        Self::abort(slot, sock, now);
                    } else {
                        // An idle kept-alive connection: close it politely.
                        slot.close(sock, now);
                    }
                }
            }
            Parsed::Error(e) => {
                let (answer, counter) = match e {
                    HttpError::Malformed => (Answer::BadRequest, &mut self.counters.bad_requests),
                    HttpError::Method => (Answer::MethodNotAllowed, &mut self.counters.bad_method),
                    HttpError::TooLarge => (Answer::TooLarge, &mut self.counters.too_large),
                };
                *counter += 1;
                self.slots[i].answer_error(answer, false, false, now);
            }
            Parsed::Request(r) => {
                if !r.metrics {
                    self.counters.not_found += 1;
                    self.slots[i].answer_error(Answer::NotFound, r.keep_alive, r.head_only, now);
                } else if *may_render {
                    *may_render = false;
                    self.counters.served += 1;
                    // The status shows this server's counters, this request
                    // included.
                    let fresh = WithHttp {
                        reports,
                        http: self.counters,
                    };
                    self.slots[i].answer_metrics(&fresh, mgmt, r, now);
                } else {
                    // Another slot rendered this turn; this one waits for the
                    // next (the request stays in its buffer, to parse again).
                    self.slots[i].fresh = true;
                    return;
                }
                self.slots[i].consume(r.len);
            }
        }
    }

    fn write(&mut self, i: usize, now: u64, sock: &mut tcp::Socket<'_>) {
        let slot = &mut self.slots[i];
        if !sock.may_send() {
            // The peer reset or stopped reading for good.
            Self::abort(slot, sock, now);
            return;
        }
        if slot.sent < slot.end {
            if let Ok(n) = sock.send_slice(&slot.response[slot.sent..slot.end]) {
                slot.sent += n;
            }
        }
        if slot.sent == slot.end {
            if slot.keep_alive {
                slot.phase = Phase::Reading;
                slot.deadline = now + REQUEST_TIMEOUT_US;
                // A pipelined request may be waiting in the buffer already.
                slot.fresh = slot.request_len > 0;
            } else {
                // The write deadline stands until the answer is all
                // acknowledged (see the Closing phase).
                sock.close();
                slot.phase = Phase::Closing;
                slot.drained = false;
            }
        } else if now > slot.deadline {
            self.counters.timeouts += 1;
            Self::abort(slot, sock, now);
        }
    }
}

/// The reports with this server's counters in the status.
struct WithHttp<'r, R> {
    reports: &'r R,
    http: HttpCounters,
}

impl<R: Reports> Reports for WithHttp<'_, R> {
    fn status(&self, m: &MgmtCounters) -> pias::status::Status {
        pias::status::Status {
            http: self.http,
            ..self.reports.status(m)
        }
    }
    fn proxy(&self) -> pias::status::ProxyReport {
        self.reports.proxy()
    }
    fn routing(&self) -> pias::status::RoutingReport {
        self.reports.routing()
    }
    fn group(&self, g: &pias::addr::Group) -> pias::status::GroupReport {
        self.reports.group(g)
    }
}

impl Slot {
    /// Drops the first `len` bytes of the request buffer (a request
    /// answered), keeping what a pipelining client sent after it.
    fn consume(&mut self, len: usize) {
        let len = len.min(self.request_len);
        self.request.copy_within(len..self.request_len, 0);
        self.request_len -= len;
    }

    /// Closes our side politely; the close clock starts at once (nothing
    /// of an answer is waiting).
    fn close(&mut self, sock: &mut tcp::Socket<'_>, now: u64) {
        sock.close();
        self.phase = Phase::Closing;
        self.drained = true;
        self.deadline = now + CLOSE_TIMEOUT_US;
    }

    /// Prepares a short error answer (its head only, for HEAD).
    fn answer_error(&mut self, answer: Answer, keep_alive: bool, head_only: bool, now: u64) {
        let body = answer.error_body().as_bytes();
        let n = http::write_head(
            answer,
            "text/plain",
            body.len(),
            keep_alive,
            &mut self.response,
        )
        .unwrap_or(0);
        self.response[n..n + body.len()].copy_from_slice(body);
        let end = if head_only { n } else { n + body.len() };
        self.start(0, end, keep_alive, now);
    }

    /// Renders the exposition after room for its head, then writes the head
    /// just before it.
    fn answer_metrics(
        &mut self,
        reports: &impl Reports,
        mgmt: &MgmtCounters,
        r: http::Request,
        now: u64,
    ) {
        let body = &mut self.response[MAX_RESPONSE_HEAD..];
        let Some(len) = exposition::render(reports, mgmt, body) else {
            self.answer_error(Answer::Internal, false, r.head_only, now);
            return;
        };
        let mut head = [0u8; MAX_RESPONSE_HEAD];
        let h = http::write_head(
            Answer::Ok,
            exposition::CONTENT_TYPE,
            len,
            r.keep_alive,
            &mut head,
        )
        .unwrap_or(0);
        let start = MAX_RESPONSE_HEAD - h;
        self.response[start..MAX_RESPONSE_HEAD].copy_from_slice(&head[..h]);
        let end = if r.head_only {
            MAX_RESPONSE_HEAD
        } else {
            MAX_RESPONSE_HEAD + len
        };
        self.start(start, end, r.keep_alive, now);
    }

    fn start(&mut self, from: usize, to: usize, keep_alive: bool, now: u64) {
        self.sent = from;
        self.end = to;
        self.keep_alive = keep_alive;
        self.answered = true;
        self.phase = Phase::Writing;
        self.deadline = now + WRITE_TIMEOUT_US;
    }
}

/// The source of `frame` (Ethernet, already classified as well-formed) if
/// it is a TCP segment to `port`, and whether it is a connection attempt
/// (SYN without ACK).
fn tcp_to(frame: &[u8], port: u16) -> Option<(pias::Endpoint, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if tcp.dst_port() != port {
        return None;
    }
    let from = pias::Endpoint {
        ip: Ipv4(ip.src_addr().octets()),
        port: tcp.src_port(),
    };
    Some((from, tcp.syn() && !tcp.ack()))
}

#[cfg(test)]
mod tests;
