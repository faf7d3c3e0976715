//! The data path driven over a simulated LAN: two appliances (IAP and JAP),
//! a client and a target, frames carried between them by a tiny switch that
//! also answers ARP for the hosts; the proxies are the real core.

use super::packet::{self, tcp_flags, Addressing};
use super::*;
use pias::addr::{Endpoint, Group, Transport};
use pias::ids::PeerInfo;
use pias::proxy::ProxyConfig;
use pias::wire::{self, JoinOptions, Key, Message, Registration, Sender};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

mod arp;
mod icmp;
mod large;
mod nat;
mod refusals;

const T0: Instant = 1_700_000_000 * SEC;
const DK: Key = Key([1; 32]);
const SECRET: Key = Key([9; 32]);
const NET: [u8; 3] = [198, 18, 0];

fn ip(last: u8) -> Ipv4 {
    Ipv4([NET[0], NET[1], NET[2], last])
}
fn mac(last: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, last]
}
/// Appliance `id` is at .(1 + id); the client at .10, the target at .20.
fn appliance_ip(id: u32) -> Ipv4 {
    ip(1 + id as u8)
}
const CLIENT: u8 = 10;
const TARGET: u8 = 20;
const AGENT_PORT: u16 = 40000;
/// The BGP neighbour of every test appliance: the gateway.
const GATEWAY_BGP: Ipv4 = Ipv4([198, 18, 0, 1]);

fn group(t: Transport, port: u16) -> Group {
    Group {
        ip: Ipv4([203, 0, 113, 10]),
        port,
        transport: t,
    }
}

fn config(id: u32) -> DataPlaneConfig {
    DataPlaneConfig {
        mac: mac(1 + id as u8),
        address: Ipv4Prefix::new(appliance_ip(id), 24),
        gateway: Some(ip(1)),
        mtu: 1500,
        anycast: vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)],
        registration_port: 7000,
        proxy_port: 7002,
        nat_first_port: 20000,
        nat_ports: 1000,
        max_flows: 64,
        nat_timeouts: NatTimeouts::default(),
        proxies: (1..=2).map(|i| (i, appliance_ip(i))).collect(),
        bgp_neighbours: vec![GATEWAY_BGP],
        hash_key: [id as u8; 16],
    }
}

fn plane(id: u32) -> DataPlane {
    plane_with(config(id))
}

/// A data plane whose start-up ARP announcements are already out (the
/// tests of other concerns count every frame); `announcing_plane` keeps them.
fn plane_with(cfg: DataPlaneConfig) -> DataPlane {
    let mut p = announcing_plane(cfg);
    p.announce_left = 0;
    p
}

fn announcing_plane(cfg: DataPlaneConfig) -> DataPlane {
    let id = cfg
        .proxies
        .iter()
        .find(|p| p.1 == cfg.address.addr)
        .map_or(1, |p| p.0);
    let mut pc = ProxyConfig::new(id, id, DK);
    pc.group_secret = Some(SECRET);
    pc.anycast = vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)];
    let peers = [
        PeerInfo { id: 1, cluster: 1 },
        PeerInfo { id: 2, cluster: 2 },
    ];
    DataPlane::new(cfg, Proxy::new(pc, &peers, T0), T0)
}

#[derive(Default)]
struct Out(VecDeque<Vec<u8>>);
impl FrameSink for Out {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.0.push_back(frame.to_vec());
        true
    }
}

/// What a host (client or target) received: (src, dst, transport, segment).
#[derive(Clone, Debug)]
struct Got {
    src: Endpoint,
    dst: Endpoint,
    t: Option<Transport>,
    seg: Vec<u8>,
    /// The IPv4 identification.
    ident: u16,
}

struct Lan {
    now: Instant,
    planes: Vec<DataPlane>,
    /// Which appliance (index) anycast traffic from each host reaches.
    nearest_for_client: usize,
    nearest_for_target: usize,
    client_got: Vec<Got>,
    target_got: Vec<Got>,
    /// Answer every UDP packet to the target's service port with this.
    target_answers: bool,
}

/// (source, destination, protocol, transport segment) of an IPv4 frame,
/// its checksums checked.
type Parsed = (Ipv4, Ipv4, IpProtocol, Vec<u8>);

fn parse(frame: &[u8]) -> Option<Parsed> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let p = Ipv4Packet::new_checked(eth.payload()).ok()?;
    assert!(p.verify_checksum(), "IPv4 checksum");
    let (s, d) = (IpAddress::Ipv4(p.src_addr()), IpAddress::Ipv4(p.dst_addr()));
    match p.next_header() {
        IpProtocol::Udp => {
            assert!(
                UdpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(&s, &d),
                "UDP checksum"
            );
        }
        IpProtocol::Tcp => {
            assert!(
                TcpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(&s, &d),
                "TCP checksum"
            );
        }
        _ => {}
    }
    Some((
        packet::ip_of(p.src_addr()),
        packet::ip_of(p.dst_addr()),
        p.next_header(),
        p.payload().to_vec(),
    ))
}

impl Lan {
    fn new() -> Lan {
        Lan {
            now: T0,
            planes: vec![plane(1), plane(2)],
            nearest_for_client: 0,
            nearest_for_target: 1,
            client_got: vec![],
            target_got: vec![],
            target_answers: true,
        }
    }

    /// Carries frames until none are left (bounded).
    fn run(&mut self, mut frames: VecDeque<(usize, Vec<u8>)>) {
        for _ in 0..10_000 {
            let Some((from, f)) = frames.pop_front() else {
                return;
            };
            self.carry(from, f, &mut frames);
        }
        panic!("the LAN never went quiet");
    }

    /// `from` is the index of the sending appliance (usize::MAX: a host).
    fn carry(&mut self, from: usize, f: Vec<u8>, q: &mut VecDeque<(usize, Vec<u8>)>) {
        if f[12..14] == [8, 6] {
            // ARP request from an appliance: the owner answers.
            let a = super::arp::parse_arp(&f).unwrap();
            let owner = (1..=2u32).find(|&i| appliance_ip(i) == a.target_ip);
            let owner_mac = match owner {
                Some(i) => mac(1 + i as u8),
                None => mac(a.target_ip.0[3]),
            };
            let mut reply = [0u8; 64];
            let n = packet::arp_reply(
                &mut reply,
                owner_mac,
                a.target_ip,
                a.sender_mac,
                a.sender_ip,
            );
            let mut out = Out::default();
            let idx = (1..=2)
                .position(|i| appliance_ip(i) == a.sender_ip)
                .unwrap();
            let v = self.planes[idx].ingress(self.now, &reply[..n], &mut out);
            assert_eq!(v, Verdict::Stack);
            q.extend(out.0.into_iter().map(|f| (idx, f)));
            return;
        }
        let (src, dst, proto, seg) = parse(&f).expect("an IPv4 frame");
        let t = match proto {
            IpProtocol::Udp => Some(Transport::Udp),
            IpProtocol::Tcp => Some(Transport::Tcp),
            _ => None,
        };
        let (sp, dp) = packet::ports(&seg);
        let got = Got {
            src: Endpoint { ip: src, port: sp },
            dst: Endpoint { ip: dst, port: dp },
            t,
            seg: seg.clone(),
            ident: u16::from_be_bytes([f[14 + 4], f[14 + 5]]),
        };
        let to = if let Some(i) = (1..=2).position(|i| appliance_ip(i) == dst) {
            Some(i)
        } else if dst.0[0] == 203 {
            Some(if src == ip(CLIENT) {
                self.nearest_for_client
            } else {
                self.nearest_for_target
            })
        } else {
            None
        };
        let _ = from;
        match to {
            Some(i) => {
                let mut out = Out::default();
                self.planes[i].ingress(self.now, &f, &mut out);
                q.extend(out.0.into_iter().map(|f| (i, f)));
            }
            None if dst == ip(CLIENT) => self.client_got.push(got),
            None if dst == ip(TARGET) => {
                self.target_got.push(got.clone());
                self.target_reacts(&got, q);
            }
            None => panic!("frame to nowhere: {dst:?}"),
        }
    }

    /// The target's agent answers pings; its service echoes UDP "answer:…".
    fn target_reacts(&mut self, got: &Got, q: &mut VecDeque<(usize, Vec<u8>)>) {
        let body = &got.seg[8..];
        if got.dst.port == AGENT_PORT {
            let p = wire::parse(body).unwrap();
            let key = pias::keys::group_key(&SECRET, &p.message.target_group().unwrap());
            p.verify(&key).unwrap();
            if let Message::Ping {
                group,
                target,
                nonce,
            } = p.message
            {
                let pong = Message::Pong {
                    group,
                    target,
                    nonce,
                };
                q.push_back((usize::MAX, self.signed_from_agent(&pong, &key)));
            }
            return;
        }
        if self.target_answers && got.t == Some(Transport::Udp) {
            let mut answer = b"answer:".to_vec();
            answer.extend_from_slice(body);
            let f = host_udp(ip(TARGET), got.dst.port, got.src.ip, got.src.port, &answer);
            q.push_back((usize::MAX, f));
        }
    }

    fn signed_from_agent(&self, msg: &Message, key: &Key) -> Vec<u8> {
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        let n = wire::encode(Sender::Target, 0, self.now / 1000, msg, key, &mut buf).unwrap();
        host_udp(
            ip(TARGET),
            AGENT_PORT,
            Ipv4([203, 0, 113, 10]),
            7000,
            &buf[..n],
        )
    }

    fn join(&mut self, g: Group, nonce: u64) {
        let key = pias::keys::group_key(&SECRET, &g);
        let r = Registration {
            group: g,
            target: Endpoint {
                ip: ip(TARGET),
                port: g.port,
            },
            timestamp_ms: self.now / 1000,
            nonce,
            options: JoinOptions::default(),
        };
        let f = self.signed_from_agent(&Message::Join(r), &key);
        self.run(VecDeque::from([(usize::MAX, f)]));
    }

    /// Advances time by `dt`, running every due timer on the way (1 ms steps).
    fn advance(&mut self, dt: u64) {
        let end = self.now + dt;
        while self.now < end {
            self.now = (self.now + MS).min(end);
            let mut q = VecDeque::new();
            for (i, p) in self.planes.iter_mut().enumerate() {
                if p.poll_timeout() <= self.now {
                    let mut out = Out::default();
                    p.handle_timeout(self.now, &mut out);
                    q.extend(out.0.into_iter().map(|f| (i, f)));
                }
            }
            self.run(q);
        }
    }

    fn client_sends(&mut self, t: Transport, sport: u16, g: Group, seg_payload: &[u8]) {
        let f = match t {
            Transport::Udp => host_udp(ip(CLIENT), sport, g.ip, g.port, seg_payload),
            Transport::Tcp => host_tcp(
                ip(CLIENT),
                sport,
                g.ip,
                g.port,
                tcp_flags::SYN,
                &[2, 4, 0x05, 0xb4],
            ),
        };
        self.run(VecDeque::from([(usize::MAX, f)]));
    }
}

/// A UDP frame from a host.
fn host_udp(src: Ipv4, sport: u16, dst: Ipv4, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let a = Addressing {
        src_mac: mac(src.0[3]),
        dst_mac: mac(99),
        src,
        dst,
        ident: 1,
    };
    let n = packet::udp_frame(&mut buf, &a, sport, dport, payload).unwrap();
    buf.truncate(n);
    buf
}

/// A TCP frame with `flags` and raw `options` (a multiple of 4 bytes).
fn host_tcp(src: Ipv4, sport: u16, dst: Ipv4, dport: u16, flags: u8, options: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 20 + options.len()];
    seg[12] = (((20 + options.len()) / 4) as u8) << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
    seg[20..].copy_from_slice(options);
    let mut buf = vec![0u8; 1600];
    let a = Addressing {
        src_mac: mac(src.0[3]),
        dst_mac: mac(99),
        src,
        dst,
        ident: 1,
    };
    let n = packet::segment_frame(&mut buf, &a, Transport::Tcp, sport, dport, &seg).unwrap();
    buf.truncate(n);
    buf
}

fn udp_group() -> Group {
    group(Transport::Udp, 53)
}

/// A LAN with the target joined at appliance 2 and the reports settled.
fn joined() -> Lan {
    let mut lan = Lan::new();
    lan.advance(10 * MS);
    lan.join(udp_group(), 1);
    assert_eq!(lan.planes[1].proxy().targets_held(&udp_group()), 1);
    lan.advance(100 * MS);
    lan
}

/// The IAP's counters after `joined` and one query answered: each proxy
/// message sent is received (6 one way, 5 the other: join news, report,
/// lookup, forward, heartbeats), each ARP request answered and its held frame
/// released, nothing dropped or refused.
fn iap_after_one_query() -> DataCounters {
    DataCounters {
        rx_proxy: 5,
        rx_client: 1,
        rx_to_stack: 1,
        tx_proxy: 6,
        arp_requests: 1,
        arp_released: 1,
        ..DataCounters::default()
    }
}

/// The JAP's counters after `joined` and one query answered by the target.
fn jap_after_one_query() -> DataCounters {
    DataCounters {
        rx_proxy: 6,
        rx_registration: 1,
        rx_target_reply: 1,
        rx_to_stack: 3,
        tx_proxy: 5,
        tx_target: 1,
        tx_deliver: 1,
        tx_to_client: 1,
        arp_requests: 3,
        arp_released: 3,
        ..DataCounters::default()
    }
}

#[test]
fn a_client_query_goes_iap_to_jap_to_target_and_the_answer_comes_from_the_group() {
    let mut lan = joined();
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q1");
    lan.advance(400 * MS);
    // The target saw the query from the JAP's NAT port, not from the client.
    let q: Vec<&Got> = lan.target_got.iter().filter(|g| g.dst.port == 53).collect();
    assert_eq!(q.len(), 1, "{:?}", lan.target_got);
    assert_eq!(q[0].src.ip, appliance_ip(2));
    assert!((20000..21000).contains(&q[0].src.port));
    assert_eq!(&q[0].seg[8..], b"q1");
    // The client got the answer from 203.0.113.10:53 to its own port.
    assert_eq!(lan.client_got.len(), 1, "{:?}", lan.client_got);
    let a = &lan.client_got[0];
    assert_eq!(
        a.src,
        Endpoint {
            ip: Ipv4([203, 0, 113, 10]),
            port: 53
        }
    );
    assert_eq!(
        a.dst,
        Endpoint {
            ip: ip(CLIENT),
            port: 5555
        }
    );
    assert_eq!(&a.seg[8..], b"answer:q1");
    let (iap, jap) = (lan.planes[0].counters(), lan.planes[1].counters());
    // Every counter of the whole exchange, join included.
    assert_eq!((iap.tx_proxy, jap.rx_proxy), (6, 6));
    assert_eq!((jap.tx_proxy, iap.rx_proxy), (5, 5));
    assert_eq!(iap, iap_after_one_query());
    assert_eq!(jap, jap_after_one_query());
    // A second query from the same client port reuses its NAT port.
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q2");
    lan.advance(50 * MS);
    let ports: Vec<u16> = lan
        .target_got
        .iter()
        .filter(|g| g.dst.port == 53)
        .map(|g| g.src.port)
        .collect();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0], ports[1]);
    assert_eq!(lan.client_got.len(), 2);
}

/// Joins a TCP group on port 80 and sends a client's SYN from port 7000
/// (the target does not answer); the group and the SYN as the target got it.
fn tcp_syn_sent(lan: &mut Lan) -> (Group, Got) {
    let g = group(Transport::Tcp, 80);
    lan.advance(10 * MS);
    lan.join(g, 2);
    lan.advance(100 * MS);
    lan.target_answers = false;
    lan.client_sends(Transport::Tcp, 7000, g, &[]);
    lan.advance(400 * MS);
    let syn = lan
        .target_got
        .iter()
        .find(|x| x.dst.port == 80)
        .expect("the SYN arrived")
        .clone();
    (g, syn)
}

/// A LAN whose JAP (appliance 2) runs with `cfg`.
fn lan_with_jap(cfg: DataPlaneConfig) -> Lan {
    let mut lan = Lan::new();
    lan.planes[1] = plane_with(cfg);
    lan
}

/// `frame` with its IPv4 TTL set to `ttl` (header checksum redone).
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    let mut p = Ipv4Packet::new_unchecked(&mut frame[14..]);
    p.set_hop_limit(ttl);
    p.fill_checksum();
    frame
}

/// A device whose transmit ring is always full.
struct Refusing;
impl FrameSink for Refusing {
    fn send_frame(&mut self, _: &[u8]) -> bool {
        false
    }
}

/// A lab after one query the target did not answer, and what the JAP sent
/// the target: the packet an ICMP error from the target would quote.
fn unanswered_query() -> (Lan, Got) {
    let mut lan = joined();
    lan.target_answers = false;
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q");
    lan.advance(400 * MS);
    let q = lan
        .target_got
        .iter()
        .find(|g| g.dst.port == 53)
        .unwrap()
        .clone();
    (lan, q)
}

/// An ICMP message of `kind` from the target to `to` with `body` after its
/// 8-byte header.
fn icmp_from_target(to: Ipv4, kind: u8, body: &[u8]) -> Vec<u8> {
    let a = Addressing {
        src_mac: mac(TARGET),
        dst_mac: mac(3),
        src: ip(TARGET),
        dst: to,
        ident: 3,
    };
    let mut buf = vec![0u8; 300];
    let n = packet::icmp_error(&mut buf, &a, kind, 3, 0, body).unwrap();
    buf.truncate(n);
    buf
}
