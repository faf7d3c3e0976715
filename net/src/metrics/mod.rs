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
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
};

/// Bytes an answer may take: the largest exposition (every table, eight BGP
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
/// A closing connection that lingers longer is reset, in µs.
pub const CLOSE_TIMEOUT_US: u64 = 2_000_000;

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
                })
                .collect(),
            counters: HttpCounters::default(),
        }
    }

    /// The TCP port served.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Looks at a frame about to reach the stack: a connection attempt (TCP
    /// SYN) to the port from outside the allow-list is dropped (false) and
    /// counted, so strangers get no answer and take no slot; one that no
    /// slot can take is counted and left to the stack, which resets it.
    pub fn admit(&mut self, frame: &[u8], sockets: &SocketSet<'_>) -> bool {
        let Some(source) = syn_source(frame, self.port) else {
            return true;
        };
        if !self.allow.iter().any(|p| p.contains(source)) {
            self.counters.refused_source += 1;
            return false;
        }
        let free = self
            .slots
            .iter()
            .any(|s| sockets.get::<tcp::Socket>(s.handle).is_listening());
        if !free {
            self.counters.refused_busy += 1;
        }
        true
    }

    /// The earliest deadline of an open connection (µs), when `poll` must
    /// run even if no frame arrives.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.phase != Phase::Listening)
            .map(|s| s.deadline.saturating_add(1))
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
        if phase != Phase::Listening && sock.state() == State::Closed {
            // Reset by the peer, or closed: the slot listens again.
            self.slots[i].phase = Phase::Listening;
        }
        match self.slots[i].phase {
            Phase::Listening => self.listen(i, now, sock),
            Phase::Reading => self.read(i, now, sock, reports, mgmt, may_render),
            Phase::Writing => self.write(i, now, sock),
            Phase::Closing => {
                let slot = &mut self.slots[i];
                // Nothing is left to say: skip TIME-WAIT (the slot is needed),
                // or give up on a peer that never finishes the close.
                if sock.state() == State::TimeWait || now > slot.deadline {
                    sock.abort();
                    slot.phase = Phase::Listening;
                }
            }
        }
    }

    fn listen(&mut self, i: usize, now: u64, sock: &mut tcp::Socket<'_>) {
        if !sock.is_open() {
            // Closed: listen (cannot fail on a closed socket and a port ≠ 0),
            // but only once the reset of an aborted connection has gone out
            // (listening forgets the peer, and the reset with it: the peer
            // would send its SYN again and be counted twice).
            if sock.remote_endpoint().is_none() {
                let _ = sock.listen(self.port);
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
            sock.abort();
            return;
        }
        self.counters.connections += 1;
        let slot = &mut self.slots[i];
        slot.phase = Phase::Reading;
        slot.request_len = 0;
        slot.answered = false;
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
        if sock.can_recv() && slot.request_len < MAX_HEAD {
            if let Ok(n) = sock.recv_slice(&mut slot.request[slot.request_len..]) {
                slot.request_len += n;
            }
        }
        let parsed = http::parse(&slot.request[..slot.request_len]);
        match parsed {
            Parsed::Incomplete => {
                if !sock.may_recv() && sock.state() != State::SynReceived {
                    // The client closed its side with no (whole) request
                    // (before the handshake ends, nothing can be received
                    // yet either: that is not a close).
                    if slot.request_len > 0 {
                        self.counters.bad_requests += 1;
                    }
                    sock.close();
                    slot.phase = Phase::Closing;
                    slot.deadline = now + CLOSE_TIMEOUT_US;
                } else if now > slot.deadline {
                    if slot.request_len > 0 || !slot.answered {
                        // Slow, or connected and silent (half-open).
                        self.counters.timeouts += 1;
                        sock.abort();
                        slot.phase = Phase::Listening;
                    } else {
                        // An idle kept-alive connection: close it politely.
                        sock.close();
                        slot.phase = Phase::Closing;
                        slot.deadline = now + CLOSE_TIMEOUT_US;
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
                self.slots[i].answer_error(answer, false, now);
            }
            Parsed::Request(r) => {
                if !r.metrics {
                    self.counters.not_found += 1;
                    self.slots[i].answer_error(Answer::NotFound, r.keep_alive, now);
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
                    // next (the request stays in its buffer).
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
            sock.abort();
            slot.phase = Phase::Listening;
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
            } else {
                sock.close();
                slot.phase = Phase::Closing;
                slot.deadline = now + CLOSE_TIMEOUT_US;
            }
        } else if now > slot.deadline {
            self.counters.timeouts += 1;
            sock.abort();
            slot.phase = Phase::Listening;
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

    /// Prepares a short error answer.
    fn answer_error(&mut self, answer: Answer, keep_alive: bool, now: u64) {
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
        self.start(0, n + body.len(), keep_alive, now);
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
            self.answer_error(Answer::Internal, false, now);
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
/// it is a TCP SYN without ACK to `port`: a connection attempt.
fn syn_source(frame: &[u8], port: u16) -> Option<Ipv4> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    (tcp.dst_port() == port && tcp.syn() && !tcp.ack()).then(|| Ipv4(ip.src_addr().octets()))
}

#[cfg(test)]
mod tests;
