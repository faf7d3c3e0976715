//! The metrics server over smoltcp: an appliance and clients (smoltcp TCP
//! sockets) on one simulated Ethernet hub, time advanced by hand.

use super::Fake;
use crate::metrics::http::MAX_HEAD;
use crate::metrics::{
    socket, MetricsServer, CLOSE_TIMEOUT_US, REQUEST_TIMEOUT_US, SLOTS, SOCKET_RX_BYTES,
    SOCKET_TX_BYTES,
};
use crate::{Nic, NicDevice, NicError, Offload};
use pias::status::MgmtCounters;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

const PORT: u16 = 9100;
const SERVER: [u8; 4] = [198, 18, 0, 1];

type Queues = Rc<RefCell<Vec<VecDeque<Vec<u8>>>>>;

/// Ports unplugged from the hub: nothing goes to or comes from them.
type Unplugged = Rc<RefCell<Vec<bool>>>;

/// One port of a hub that repeats every frame to every other port.
struct HubPort {
    hub: Queues,
    unplugged: Unplugged,
    me: usize,
}

impl Nic for HubPort {
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, self.me as u8 + 1]
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Offload)>, NicError> {
        Ok(self.hub.borrow_mut()[self.me].pop_front().map(|f| {
            buf[..f.len()].copy_from_slice(&f);
            (f.len(), Offload::NONE)
        }))
    }
    fn can_transmit(&mut self) -> bool {
        true
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        let off = self.unplugged.borrow();
        for (i, q) in self.hub.borrow_mut().iter_mut().enumerate() {
            if i != self.me && !off[i] && !off[self.me] {
                q.push_back(frame.to_vec());
            }
        }
        Ok(())
    }
}

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

struct Host {
    iface: Interface,
    dev: NicDevice<HubPort>,
    sockets: SocketSet<'static>,
}

impl Host {
    fn new(hub: &Queues, unplugged: &Unplugged, me: usize, addr: [u8; 4], gated: bool) -> Host {
        let nic = HubPort {
            hub: hub.clone(),
            unplugged: unplugged.clone(),
            me,
        };
        let mut dev = if gated {
            NicDevice::gated(nic, 1500)
        } else {
            NicDevice::new(nic, 1500)
        };
        let cfg = Config::new(EthernetAddress(dev.mac()).into());
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(addr)), 16));
        });
        let storage = leak((0..16).map(|_| SocketStorage::EMPTY).collect());
        Host {
            iface,
            dev,
            sockets: SocketSet::new(storage),
        }
    }

    fn add_tcp(&mut self, rx: usize, tx: usize) -> SocketHandle {
        let s = socket(leak(vec![0; rx]), leak(vec![0; tx]));
        self.sockets.add(s)
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

/// An appliance serving metrics and clients on a hub.
struct Lab {
    now_ms: u64,
    appliance: Host,
    server: MetricsServer,
    clients: Vec<Host>,
    reports: Fake,
    next_port: u16,
    unplugged: Unplugged,
}

impl Lab {
    /// Clients at 198.18.0.2, .3, …; the allow-list takes 198.18.0.2 and
    /// 198.18.0.3 only.
    fn new(clients: usize) -> Lab {
        let hub: Queues = Rc::new(RefCell::new(vec![VecDeque::new(); clients + 1]));
        let unplugged: Unplugged = Rc::new(RefCell::new(vec![false; clients + 1]));
        let mut appliance = Host::new(&hub, &unplugged, 0, SERVER, true);
        let handles: Vec<_> = (0..SLOTS)
            .map(|_| appliance.add_tcp(SOCKET_RX_BYTES, SOCKET_TX_BYTES))
            .collect();
        let allow = [
            "198.18.0.2/32".parse().unwrap(),
            "198.18.0.3/32".parse().unwrap(),
        ];
        Lab {
            now_ms: 0,
            appliance,
            server: MetricsServer::new(PORT, &allow, &handles),
            clients: (0..clients)
                .map(|i| Host::new(&hub, &unplugged, i + 1, [198, 18, 0, i as u8 + 2], false))
                .collect(),
            reports: Fake::default(),
            next_port: 40_000,
            unplugged,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms as i64)
    }

    /// One millisecond: the appliance as the kernel runs it (frames one at a
    /// time, SYNs to the port admitted first), the server, then the clients.
    fn tick(&mut self) {
        self.now_ms += 1;
        self.pump_appliance();
        let now = self.now();
        let a = &mut self.appliance;
        self.server.poll(
            self.now_ms * 1000,
            &mut a.sockets,
            &self.reports,
            &MgmtCounters::default(),
        );
        a.iface.poll(now, &mut a.dev, &mut a.sockets);
        for c in &mut self.clients {
            c.iface.poll(now, &mut c.dev, &mut c.sockets);
        }
    }

    /// The appliance's stack, without the server.
    fn pump_appliance(&mut self) {
        let now = self.now();
        let a = &mut self.appliance;
        while a.dev.pull() {
            let (frame, _, _) = a.dev.split();
            if !self.server.admit(frame, &a.sockets) {
                continue;
            }
            a.dev.hold_for_stack();
            a.iface.poll_ingress_single(now, &mut a.dev, &mut a.sockets);
        }
        a.iface.poll(now, &mut a.dev, &mut a.sockets);
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms {
            self.tick();
        }
    }

    /// A client socket connecting to the metrics port.
    fn connect(&mut self, client: usize) -> SocketHandle {
        self.next_port += 1;
        let port = self.next_port;
        let c = &mut self.clients[client];
        let h = c.add_tcp(64 * 1024, 4 * 1024);
        let remote = (IpAddress::Ipv4(Ipv4Address::from(SERVER)), PORT);
        let cx = c.iface.context();
        c.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, remote, port)
            .unwrap();
        h
    }

    fn send(&mut self, client: usize, h: SocketHandle, bytes: &[u8]) {
        let s = self.clients[client].tcp(h);
        let state = s.state();
        let n = s
            .send_slice(bytes)
            .unwrap_or_else(|e| panic!("send in {state}: {e:?}"));
        assert_eq!(n, bytes.len());
    }

    /// What the client received so far.
    fn take(&mut self, client: usize, h: SocketHandle) -> Vec<u8> {
        let s = self.clients[client].tcp(h);
        let mut out = Vec::new();
        while s.can_recv() {
            let _ = s.recv(|b| {
                out.extend_from_slice(b);
                (b.len(), ())
            });
        }
        out
    }

    /// The slots whose sockets listen.
    fn listening(&self) -> usize {
        self.server
            .slots
            .iter()
            .filter(|s| {
                self.appliance
                    .sockets
                    .get::<tcp::Socket>(s.handle)
                    .is_listening()
            })
            .count()
    }

    /// Takes `client` off the hub: it vanishes without a word.
    fn unplug(&mut self, client: usize) {
        self.unplugged.borrow_mut()[client + 1] = true;
    }

    fn state(&mut self, client: usize, h: SocketHandle) -> tcp::State {
        self.clients[client].tcp(h).state()
    }
}

/// Splits HTTP answers: (status line, headers, body) for each, by
/// Content-Length.
fn answers(mut bytes: &[u8]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let text = std::str::from_utf8(bytes).unwrap();
        let end = text.find("\r\n\r\n").expect("a whole head") + 4;
        let head = &text[..end];
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .unwrap();
        let status = head.lines().next().unwrap().to_owned();
        out.push((status, head.to_owned(), text[end..end + len].to_owned()));
        bytes = &bytes[end + len..];
    }
    out
}

const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: pias\r\n\r\n";

#[test]
fn a_scrape_gets_the_exposition_and_the_connection_stays_open() {
    let mut lab = Lab::new(1);
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, GET);
    lab.run_ms(50);
    let got = lab.take(0, h);
    let a = answers(&got);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0, "HTTP/1.1 200 OK");
    assert!(a[0]
        .1
        .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(a[0].1.contains("Connection: keep-alive\r\n"));
    assert!(
        a[0].2.contains("\npias_http_served_total 1\n"),
        "this request is counted in its own answer"
    );
    assert!(a[0].2.contains("\npias_http_connections_total 1\n"));
    assert_eq!(lab.state(0, h), tcp::State::Established);

    // The same connection, again; then HEAD.
    lab.send(0, h, GET);
    lab.run_ms(50);
    lab.send(0, h, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    lab.run_ms(50);
    let got = lab.take(0, h);
    let text = String::from_utf8(got).unwrap();
    let (first, head_only) = text.split_at(text.rfind("HTTP/1.1 200 OK").unwrap());
    assert!(answers(first.as_bytes())[0]
        .2
        .contains("\npias_http_served_total 2\n"));
    assert!(
        head_only.ends_with("\r\n\r\n") && head_only.contains("Content-Length: "),
        "HEAD: the head only"
    );
    assert_eq!(lab.server.counters.connections, 1);
    assert_eq!(lab.server.counters.served, 3);
}

#[test]
fn a_connection_seen_before_its_handshake_ends_is_served() {
    let mut lab = Lab::new(1);
    lab.run_ms(1); // the slots listen
    let h = lab.connect(0);
    // ARP, the SYN, the appliance's SYN-ACK: the server first sees the
    // connection in SYN-RECEIVED, before the client's ACK.
    let slot = lab.server.slots[0].handle;
    let mut state = tcp::State::Listen;
    for _ in 0..10 {
        lab.now_ms += 1;
        let now = lab.now();
        let c = &mut lab.clients[0];
        c.iface.poll(now, &mut c.dev, &mut c.sockets);
        lab.pump_appliance();
        state = lab.appliance.tcp(slot).state();
        if state != tcp::State::Listen {
            break;
        }
    }
    assert_eq!(state, tcp::State::SynReceived);
    lab.server.poll(
        lab.now_ms * 1000,
        &mut lab.appliance.sockets,
        &lab.reports,
        &MgmtCounters::default(),
    );
    lab.run_ms(20);
    lab.send(0, h, GET);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(0, h))[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn pipelined_requests_are_answered_in_order_one_render_per_turn() {
    let mut lab = Lab::new(1);
    let h = lab.connect(0);
    lab.run_ms(20);
    let mut two = GET.to_vec();
    two.extend_from_slice(b"GET /other HTTP/1.1\r\n\r\n");
    two.extend_from_slice(GET);
    lab.send(0, h, &two);
    lab.run_ms(50);
    let got = lab.take(0, h);
    let a = answers(&got);
    let statuses: Vec<_> = a.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK"
        ]
    );
    assert_eq!(lab.server.counters.not_found, 1);
    assert_eq!(lab.server.counters.served, 2);
}

#[test]
fn two_waiting_requests_take_two_turns() {
    let mut lab = Lab::new(2);
    let h0 = lab.connect(0);
    let h1 = lab.connect(1);
    lab.run_ms(20);
    lab.send(0, h0, GET);
    lab.send(1, h1, GET);
    // Deliver both requests to the appliance's sockets without serving.
    for _ in 0..5 {
        let now = lab.now();
        for c in &mut lab.clients {
            c.iface.poll(now, &mut c.dev, &mut c.sockets);
        }
        lab.pump_appliance();
    }
    let before = lab.server.counters.served;
    lab.server.poll(
        lab.now_ms * 1000,
        &mut lab.appliance.sockets,
        &lab.reports,
        &MgmtCounters::default(),
    );
    assert_eq!(
        lab.server.counters.served,
        before + 1,
        "one render per turn"
    );
    lab.server.poll(
        lab.now_ms * 1000,
        &mut lab.appliance.sockets,
        &lab.reports,
        &MgmtCounters::default(),
    );
    assert_eq!(lab.server.counters.served, before + 2);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(0, h0)).len(), 1);
    assert_eq!(answers(&lab.take(1, h1)).len(), 1);
}

/// Sends `request` on a fresh connection; returns the answers and whether
/// the appliance closed the connection afterwards.
fn one_shot(lab: &mut Lab, request: &[u8]) -> (Vec<(String, String, String)>, bool) {
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, request);
    lab.run_ms(100);
    let got = lab.take(0, h);
    let closed = !lab.clients[0].tcp(h).may_recv();
    lab.clients[0].tcp(h).close();
    lab.run_ms(20);
    (answers(&got), closed)
}

#[test]
fn bad_requests_are_answered_counted_and_closed() {
    let mut lab = Lab::new(1);
    let (a, closed) = one_shot(&mut lab, b"GET /metrics HTTP/9\r\n\r\n");
    assert_eq!(a[0].0, "HTTP/1.1 400 Bad Request");
    assert!(closed && a[0].1.contains("Connection: close"));
    let (a, closed) = one_shot(&mut lab, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(a[0].0, "HTTP/1.1 405 Method Not Allowed");
    assert!(closed && a[0].1.contains("Allow: GET, HEAD\r\n"));
    let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    long.resize(MAX_HEAD + 10, b'x');
    let (a, closed) = one_shot(&mut lab, &long);
    assert_eq!(a[0].0, "HTTP/1.1 431 Request Header Fields Too Large");
    assert!(closed);
    let (a, closed) = one_shot(&mut lab, b"GET /nothing HTTP/1.1\r\n\r\n");
    assert_eq!(a[0].0, "HTTP/1.1 404 Not Found");
    assert!(!closed, "404 keeps a kept-alive connection");
    let c = lab.server.counters;
    assert_eq!(
        (
            c.bad_requests,
            c.bad_method,
            c.too_large,
            c.not_found,
            c.served
        ),
        (1, 1, 1, 1, 0)
    );
    // The slots came back: a good request is still served.
    let (a, _) = one_shot(&mut lab, GET);
    assert_eq!(a[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn a_source_outside_the_allow_list_gets_no_answer_and_no_slot() {
    let mut lab = Lab::new(3);
    lab.run_ms(1);
    let h = lab.connect(2); // 198.18.0.4: not allowed
    lab.run_ms(20);
    assert_eq!(lab.state(2, h), tcp::State::SynSent, "no answer at all");
    assert_eq!(lab.server.counters.refused_source, 1);
    assert_eq!(lab.server.counters.connections, 0);
    let listening = lab.listening();
    assert_eq!(listening, SLOTS, "no slot taken");
    // 198.18.0.3 is allowed.
    let h = lab.connect(1);
    lab.run_ms(20);
    lab.send(1, h, GET);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(1, h))[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn slow_and_silent_clients_lose_their_slot_and_are_counted() {
    let mut lab = Lab::new(1);
    let slow = lab.connect(0);
    let silent = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, slow, b"GET /met");
    let timeout_ms = REQUEST_TIMEOUT_US / 1000;
    let due = lab
        .server
        .poll_timeout()
        .expect("open connections have deadlines");
    assert!(
        (REQUEST_TIMEOUT_US..REQUEST_TIMEOUT_US + 20_000).contains(&due),
        "a request timeout from the accept: {due}"
    );
    lab.run_ms(timeout_ms - 100);
    assert_eq!(lab.state(0, slow), tcp::State::Established, "not yet");
    assert_eq!(lab.server.counters.timeouts, 0);
    lab.run_ms(200);
    assert_eq!(lab.state(0, slow), tcp::State::Closed, "reset");
    assert_eq!(lab.state(0, silent), tcp::State::Closed, "reset");
    assert_eq!(lab.server.counters.timeouts, 2);
    // A served connection left idle is closed politely, not counted.
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, GET);
    lab.run_ms(timeout_ms + 100);
    assert_eq!(answers(&lab.take(0, h)).len(), 1);
    assert!(!lab.clients[0].tcp(h).may_recv(), "closed by the appliance");
    assert_eq!(lab.server.counters.timeouts, 2);
}

#[test]
fn a_client_that_stops_reading_loses_its_slot() {
    let mut lab = Lab::new(1);
    // A receive window far smaller than the answer, never read.
    lab.next_port += 1;
    let port = lab.next_port;
    let c = &mut lab.clients[0];
    let h = c.add_tcp(512, 4 * 1024);
    let cx = c.iface.context();
    c.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(cx, (IpAddress::Ipv4(Ipv4Address::from(SERVER)), PORT), port)
        .unwrap();
    lab.run_ms(20);
    lab.send(0, h, GET);
    lab.run_ms(crate::metrics::WRITE_TIMEOUT_US / 1000 + 500);
    assert_eq!(lab.server.counters.timeouts, 1);
    // Its slot serves again.
    let (a, _) = one_shot(&mut lab, GET);
    assert_eq!(a[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn connections_beyond_the_slots_are_reset_and_counted() {
    let mut lab = Lab::new(1);
    let extra = 6;
    let hs: Vec<_> = (0..SLOTS + extra).map(|_| lab.connect(0)).collect();
    lab.run_ms(50);
    let open = hs
        .iter()
        .filter(|&&h| lab.state(0, h) == tcp::State::Established)
        .count();
    assert_eq!(open, SLOTS);
    assert_eq!(lab.server.counters.connections, SLOTS as u64);
    assert_eq!(lab.server.counters.refused_busy, extra as u64);
    // Every connected client is served, one render per turn.
    for &h in &hs {
        if lab.state(0, h) == tcp::State::Established {
            lab.send(0, h, GET);
        }
    }
    lab.run_ms(100);
    assert_eq!(lab.server.counters.served, SLOTS as u64);
}

#[test]
fn head_of_another_path_gets_a_head_and_no_body() {
    let mut lab = Lab::new(1);
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, b"HEAD /nothing HTTP/1.1\r\n\r\n");
    lab.run_ms(50);
    let text = String::from_utf8(lab.take(0, h)).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "a head only: {text:?}");
    // The kept-alive connection is in step: the next answer starts clean.
    lab.send(0, h, GET);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(0, h))[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn a_client_closing_mid_request_is_counted_and_gets_nothing() {
    let mut lab = Lab::new(1);
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, b"GET /met");
    lab.run_ms(10);
    lab.clients[0].tcp(h).close();
    lab.run_ms(100);
    assert!(lab.take(0, h).is_empty());
    assert_eq!(lab.server.counters.bad_requests, 1);
    assert_eq!(lab.server.counters.served, 0);
    // The slot is back: a whole request is served.
    let h = lab.connect(0);
    lab.run_ms(20);
    lab.send(0, h, GET);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(0, h))[0].0, "HTTP/1.1 200 OK");
}

#[test]
fn a_peer_vanishing_in_the_handshake_frees_its_slot_in_a_second() {
    let mut lab = Lab::new(2);
    lab.run_ms(1);
    let h = lab.connect(0);
    // The SYN out (after ARP), then the client is gone before it can ACK.
    let slot = lab.server.slots[0].handle;
    for _ in 0..20 {
        lab.now_ms += 1;
        let now = lab.now();
        let c = &mut lab.clients[0];
        c.iface.poll(now, &mut c.dev, &mut c.sockets);
        lab.pump_appliance();
        if lab.appliance.tcp(slot).state() == tcp::State::SynReceived {
            break;
        }
    }
    assert_eq!(lab.appliance.tcp(slot).state(), tcp::State::SynReceived);
    lab.unplug(0);
    let _ = h;
    lab.run_ms(900);
    assert_eq!(lab.server.counters.timeouts, 0, "not yet");
    lab.run_ms(300);
    assert_eq!(lab.server.counters.timeouts, 1, "given up after 1 s");
    // Every slot serves again (the reset could not go out: no wait on it).
    lab.run_ms(CLOSE_TIMEOUT_US / 1000 + 100);
    let listening = lab.listening();
    assert_eq!(listening, SLOTS);
    let h = lab.connect(1);
    lab.run_ms(20);
    lab.send(1, h, GET);
    lab.run_ms(50);
    assert_eq!(answers(&lab.take(1, h))[0].0, "HTTP/1.1 200 OK");
}
