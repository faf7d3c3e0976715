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

fn plane_with(cfg: DataPlaneConfig) -> DataPlane {
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

#[test]
fn the_first_frame_to_an_unknown_next_hop_waits_for_arp_then_goes() {
    let mut p = plane(1);
    let mut out = Out::default();
    // A join from the target reaches appliance 1; its ack must go to the
    // agent, whose MAC nobody knows yet.
    let key = pias::keys::group_key(&SECRET, &udp_group());
    let r = Registration {
        group: udp_group(),
        target: Endpoint {
            ip: ip(TARGET),
            port: 53,
        },
        timestamp_ms: T0 / 1000,
        nonce: 5,
        options: JoinOptions::default(),
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let n = wire::encode(Sender::Target, 0, 1, &Message::Join(r), &key, &mut buf).unwrap();
    let f = host_udp(
        ip(TARGET),
        AGENT_PORT,
        Ipv4([203, 0, 113, 10]),
        7000,
        &buf[..n],
    );
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    // Only ARP requests left (for the agent, and for the RAP its report
    // goes to): the ack waits.
    assert!(out.0.iter().all(|f| f[12..14] == [8, 6]));
    let asked: Vec<Ipv4> = out
        .0
        .iter()
        .map(|f| super::arp::parse_arp(f).unwrap().target_ip)
        .collect();
    assert!(asked.contains(&ip(TARGET)), "{asked:?}");
    assert_eq!(p.counters().arp_requests, asked.len() as u64);
    let mut reply = [0u8; 64];
    let n = packet::arp_reply(&mut reply, mac(TARGET), ip(TARGET), mac(2), appliance_ip(1));
    let mut out = Out::default();
    assert_eq!(p.ingress(T0 + MS, &reply[..n], &mut out), Verdict::Stack);
    assert_eq!(out.0.len(), 1, "the held ack goes out");
    let (_, dst, _, seg) = parse(&out.0[0]).unwrap();
    assert_eq!(out.0[0][..6], mac(TARGET));
    assert_eq!((dst, packet::ports(&seg).1), (ip(TARGET), AGENT_PORT));
    assert_eq!(p.counters().arp_released, 1);
}

#[test]
fn an_unanswered_arp_drops_the_held_frame_after_a_second() {
    let mut p = plane(1);
    let mut out = Out::default();
    let f = host_udp(
        ip(CLIENT),
        5,
        Ipv4([203, 0, 113, 10]),
        99,
        &[1; 2000][..1400],
    );
    // A client packet too large to carry: an ICMP error toward the client,
    // which waits for ARP (gateway-less on-link host).
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().client_too_big, 1);
    assert_eq!(p.counters().arp_requests, 1);
    p.handle_timeout(T0 + 500 * MS, &mut out);
    assert_eq!(p.counters().arp_dropped, 0);
    p.handle_timeout(T0 + 1100 * MS, &mut out);
    assert_eq!(p.counters().arp_dropped, 1);
    // Each reason bumps its own counter only (the ARP requests: the client,
    // and the peers the proxy's first messages go to).
    assert_eq!(
        p.counters(),
        DataCounters {
            client_too_big: 1,
            tx_proxy: 2,
            tx_icmp: 1,
            arp_requests: 3,
            arp_dropped: 1,
            ..DataCounters::default()
        }
    );
}

#[test]
fn oversized_udp_gets_fragmentation_needed_with_the_carry_limit() {
    let mut lan = joined();
    let big = vec![7u8; 1300];
    lan.client_sends(Transport::Udp, 6000, udp_group(), &big);
    let icmp: Vec<&Got> = lan.client_got.iter().filter(|g| g.t.is_none()).collect();
    assert_eq!(icmp.len(), 1);
    let b = &icmp[0].seg;
    assert_eq!((b[0], b[1]), (3, 4));
    let limit = config(1).carry_limit();
    assert_eq!(u16::from_be_bytes([b[6], b[7]]) as usize, limit + 20);
    assert_eq!(icmp[0].src.ip, Ipv4([203, 0, 113, 10]));
    // The quoted header is the client's own packet.
    assert_eq!(&b[8 + 12..8 + 16], &ip(CLIENT).0);
    assert!(lan.target_got.iter().all(|g| g.dst.port != 53));
    // One byte less is carried.
    lan.client_sends(Transport::Udp, 6001, udp_group(), &big[..limit - 8]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().any(|g| g.dst.port == 53));
    // The refused packet adds its own counters and nothing else.
    let base = iap_after_one_query();
    assert_eq!(
        lan.planes[0].counters(),
        DataCounters {
            rx_to_stack: base.rx_to_stack + 1,
            client_too_big: 1,
            tx_icmp: 1,
            arp_requests: base.arp_requests + 1,
            arp_released: base.arp_released + 1,
            ..base
        }
    );
    assert_eq!(lan.planes[1].counters(), jap_after_one_query());
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

#[test]
fn tcp_syn_mss_is_clamped_at_the_iap_and_the_syn_ack_at_the_jap() {
    let mut lan = Lan::new();
    let (g, syn) = tcp_syn_sent(&mut lan);
    let clamp = config(1).mss_clamp();
    assert_eq!(&syn.seg[20..24], &[2, 4, (clamp >> 8) as u8, clamp as u8]);
    assert_eq!(lan.planes[0].counters().mss_clamped, 1);
    // The target's SYN-ACK (MSS 1460) to the NAT port is clamped on its way.
    let nat = syn.src;
    let f = host_tcp(
        ip(TARGET),
        80,
        nat.ip,
        nat.port,
        tcp_flags::SYN | tcp_flags::ACK,
        &[2, 4, 0x05, 0xb4],
    );
    lan.run(VecDeque::from([(usize::MAX, f)]));
    let sa = lan
        .client_got
        .last()
        .expect("the SYN-ACK reached the client");
    assert_eq!(sa.src, Endpoint { ip: g.ip, port: 80 });
    assert_eq!(&sa.seg[20..24], &[2, 4, (clamp >> 8) as u8, clamp as u8]);
    assert_eq!(lan.planes[1].counters().mss_clamped, 1);
    let clamped = |c: DataCounters| DataCounters {
        mss_clamped: 1,
        ..c
    };
    assert_eq!(lan.planes[0].counters(), clamped(iap_after_one_query()));
    assert_eq!(lan.planes[1].counters(), clamped(jap_after_one_query()));
}

#[test]
fn replies_to_unknown_nat_ports_or_from_the_wrong_source_are_dropped() {
    let mut lan = joined();
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q");
    lan.advance(400 * MS);
    let nat = lan
        .target_got
        .iter()
        .find(|g| g.dst.port == 53)
        .unwrap()
        .src;
    let before = lan.client_got.len();
    // Unused NAT port.
    let f = host_udp(ip(TARGET), 53, nat.ip, nat.port + 1, b"x");
    lan.run(VecDeque::from([(usize::MAX, f)]));
    // Right port, wrong source port.
    let f = host_udp(ip(TARGET), 54, nat.ip, nat.port, b"x");
    lan.run(VecDeque::from([(usize::MAX, f)]));
    assert_eq!(lan.client_got.len(), before);
    assert_eq!(lan.planes[1].counters().drop_no_flow, 2);
    assert_eq!(lan.planes[0].counters(), iap_after_one_query());
    assert_eq!(
        lan.planes[1].counters(),
        DataCounters {
            drop_no_flow: 2,
            ..jap_after_one_query()
        }
    );
}

#[test]
fn port_unreachable_from_a_target_reaches_the_client_without_private_addresses() {
    let (mut lan, q) = unanswered_query();
    // The target's ICMP port unreachable quoting the JAP's packet to it.
    let mut quoted = Vec::new();
    let hdr = [0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, 17, 0, 0];
    quoted.extend_from_slice(&hdr);
    quoted.extend_from_slice(&q.src.ip.0);
    quoted.extend_from_slice(&q.dst.ip.0);
    quoted.extend_from_slice(&q.seg[..8]);
    let a = Addressing {
        src_mac: mac(TARGET),
        dst_mac: mac(3),
        src: ip(TARGET),
        dst: q.src.ip,
        ident: 3,
    };
    let mut buf = vec![0u8; 200];
    let n = packet::icmp_error(&mut buf, &a, 3, 3, 0, &quoted).unwrap();
    lan.run(VecDeque::from([(usize::MAX, buf[..n].to_vec())]));
    let icmp = lan
        .client_got
        .iter()
        .find(|g| g.t.is_none())
        .expect("translated");
    let b = &icmp.seg;
    assert_eq!((b[0], b[1]), (3, 3));
    assert_eq!(icmp.src.ip, udp_group().ip);
    // Inner: client → group, client's port → group's port; no 198.18.0.3/.20 inside.
    assert_eq!(&b[8 + 12..8 + 16], &ip(CLIENT).0);
    assert_eq!(&b[8 + 16..8 + 20], &udp_group().ip.0);
    assert_eq!(u16::from_be_bytes([b[28], b[29]]), 5555);
    assert_eq!(u16::from_be_bytes([b[30], b[31]]), 53);
    assert!(!b
        .windows(4)
        .any(|w| w == ip(TARGET).0 || w == appliance_ip(2).0));
    assert_eq!(lan.planes[1].counters().icmp_translated, 1);
    // No reply from the target: an ICMP error translated and sent instead.
    assert_eq!(lan.planes[0].counters(), iap_after_one_query());
    assert_eq!(
        lan.planes[1].counters(),
        DataCounters {
            rx_target_reply: 0,
            tx_to_client: 0,
            icmp_translated: 1,
            tx_icmp: 1,
            ..jap_after_one_query()
        }
    );
}

#[test]
fn traffic_that_is_not_ours_is_counted_by_reason() {
    let mut p = plane(1);
    let mut out = Out::default();
    let f = host_udp(ip(CLIENT), 1, ip(77), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().drop_not_ours, 1);
    // ICMP echo to an anycast address: not served.
    let a = Addressing {
        src_mac: mac(CLIENT),
        dst_mac: mac(2),
        src: ip(CLIENT),
        dst: Ipv4([203, 0, 113, 1]),
        ident: 1,
    };
    let mut buf = vec![0u8; 200];
    let n = packet::icmp_error(&mut buf, &a, 8, 0, 0, &[0; 8]).unwrap();
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Done);
    assert_eq!(p.counters().drop_anycast_protocol, 1);
    // The management port of the unicast address is the stack's.
    let f = host_udp(ip(CLIENT), 1, appliance_ip(1), 7001, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    // A client packet to a group with no member: a lookup, no delivery.
    let f = host_udp(ip(CLIENT), 1, Ipv4([203, 0, 113, 99]), 9999, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().rx_client, 1);
    assert_eq!(p.counters().tx_deliver, 0);
    assert_eq!(
        p.counters(),
        DataCounters {
            rx_client: 1,
            rx_to_stack: 1,
            drop_not_ours: 1,
            drop_anycast_protocol: 1,
            tx_proxy: 1,
            arp_requests: 1,
            ..DataCounters::default()
        }
    );
}

/// `frame` with its IPv4 TTL set to `ttl` (header checksum redone).
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    let mut p = Ipv4Packet::new_unchecked(&mut frame[14..]);
    p.set_hop_limit(ttl);
    p.fill_checksum();
    frame
}

#[test]
fn bgp_from_a_neighbour_needs_ttl_255() {
    let mut p = plane(1);
    let mut out = Out::default();
    let me = appliance_ip(1);
    let cases = [
        // (source, source port, destination port, TTL, verdict, GTSM drops so far)
        (GATEWAY_BGP, 179, 50_000, 64, Verdict::Done, 1),
        (GATEWAY_BGP, 179, 50_000, 254, Verdict::Done, 2),
        (GATEWAY_BGP, 50_000, 179, 1, Verdict::Done, 3),
        (GATEWAY_BGP, 179, 50_000, 255, Verdict::Stack, 3),
        (GATEWAY_BGP, 50_000, 179, 255, Verdict::Stack, 3),
        // Not BGP: the stack's.
        (GATEWAY_BGP, 80, 50_000, 64, Verdict::Stack, 3),
        // BGP from anyone but a neighbour, whatever its TTL: dropped.
        (ip(CLIENT), 50_000, 179, 64, Verdict::Done, 4),
        (ip(CLIENT), 50_000, 179, 255, Verdict::Done, 5),
    ];
    for (src, sport, dport, ttl, verdict, drops) in cases {
        let f = with_ttl(host_tcp(src, sport, me, dport, 0x10, &[]), ttl);
        assert_eq!(
            p.ingress(T0, &f, &mut out),
            verdict,
            "{src} {sport}->{dport} ttl {ttl}"
        );
        assert_eq!(
            p.counters().drop_gtsm,
            drops,
            "{src} {sport}->{dport} ttl {ttl}"
        );
    }
    // BFD: UDP to 3784 from the neighbour, the same rule.
    let cases = [
        (GATEWAY_BGP, 49_152, 3784, 254, Verdict::Done, 6),
        (GATEWAY_BGP, 49_152, 3784, 255, Verdict::Stack, 6),
        (ip(CLIENT), 49_152, 3784, 255, Verdict::Done, 7),
        // Multihop BFD (RFC 5883), the same rule.
        (GATEWAY_BGP, 49_152, 4784, 64, Verdict::Done, 8),
        (GATEWAY_BGP, 49_152, 4784, 255, Verdict::Stack, 8),
    ];
    for (src, sport, dport, ttl, verdict, drops) in cases {
        let f = with_ttl(host_udp(src, sport, me, dport, &[0; 24]), ttl);
        assert_eq!(
            p.ingress(T0, &f, &mut out),
            verdict,
            "{src} {sport}->{dport} ttl {ttl}"
        );
        assert_eq!(
            p.counters().drop_gtsm,
            drops,
            "{src} {sport}->{dport} ttl {ttl}"
        );
    }
}

#[test]
fn the_carry_limit_and_the_mss_clamp_fit_a_proxy_message_in_the_mtu() {
    for (mtu, carry, mss) in [
        (1500, 1300, 1240),
        (1400, 1272, 1212),
        (576, 448, 388),
        (100, 0, 0),
    ] {
        let c = DataPlaneConfig { mtu, ..config(1) };
        assert_eq!((c.carry_limit(), c.mss_clamp()), (carry, mss), "MTU {mtu}");
        if carry > 0 {
            // The carried segment, in a proxy message, in UDP, in IPv4: the MTU.
            let overhead = MAX_MESSAGE - MAX_CARRIED;
            assert!(packet::IP_LEN + packet::UDP_LEN + overhead + carry <= usize::from(mtu));
        }
    }
}

#[test]
fn idle_nat_flows_are_swept_once_a_second_and_counted() {
    let short = NatTimeouts {
        udp: 3 * SEC,
        ..NatTimeouts::default()
    };
    let mut lan = lan_with_jap(DataPlaneConfig {
        nat_timeouts: short,
        ..config(2)
    });
    lan.advance(10 * MS);
    lan.join(udp_group(), 1);
    lan.advance(100 * MS);
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q");
    lan.advance(50 * MS);
    let fill = |lan: &Lan| lan.planes[1].table_fill();
    assert_eq!(fill(&lan)[0], ("nat_flows", 1, 64));
    let (name, used, cap) = fill(&lan)[1];
    assert_eq!(name, "neighbours");
    assert!(used >= 2 && cap > used, "{used} of {cap}");
    // The data path wakes for its sweep at least once a second.
    assert!(lan.planes[1].poll_timeout() <= lan.now + SEC);
    lan.advance(2 * SEC);
    assert_eq!(fill(&lan)[0].1, 1, "idle 2 s of 3: kept");
    lan.advance(2 * SEC);
    assert_eq!(fill(&lan)[0].1, 0, "idle 4 s: swept");
    assert_eq!(lan.planes[1].counters().nat_expired, 1);
}

#[test]
fn each_packet_sent_has_its_own_ip_identification() {
    let mut lan = joined();
    lan.target_answers = false;
    let mut seen = Vec::new();
    for sport in [6000, 6001, 6002] {
        lan.client_sends(Transport::Udp, sport, udp_group(), b"q");
        lan.advance(20 * MS);
    }
    for g in lan.target_got.iter().filter(|g| g.dst.port == 53) {
        seen.push(g.ident);
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
}

#[test]
fn arp_teaches_only_what_is_addressed_to_us_from_our_subnet() {
    let mut p = plane(1);
    let mut out = Out::default();
    let me = appliance_ip(1);
    let neighbours = |p: &DataPlane| p.table_fill()[1].1;
    let mut buf = [0u8; 64];
    // A request for another host of the LAN: smoltcp's business, not learned.
    let n = packet::arp_request(&mut buf, mac(CLIENT), ip(CLIENT), ip(77));
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 0);
    // A request for us from outside our subnet: not learned either.
    let n = packet::arp_request(&mut buf, mac(CLIENT), Ipv4([10, 0, 0, 1]), me);
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 0);
    // A request for us from the LAN: learned.
    let n = packet::arp_request(&mut buf, mac(CLIENT), ip(CLIENT), me);
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 1);
    assert_eq!(p.counters().rx_to_stack, 3);
}

#[test]
fn other_protocols_and_broadcasts_go_to_the_stack_not_to_a_drop() {
    let mut p = plane(1);
    let mut out = Out::default();
    // GRE (47) to our address: neither ICMP nor ours to proxy.
    let mut f = host_udp(ip(CLIENT), 1, appliance_ip(1), 2, b"x");
    {
        let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip4.set_next_header(IpProtocol::Unknown(47));
        ip4.fill_checksum();
    }
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    // The subnet's broadcast and a multicast group: the stack's.
    let f = host_udp(ip(CLIENT), 1, Ipv4([198, 18, 0, 255]), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    let f = host_udp(ip(CLIENT), 1, Ipv4([224, 0, 0, 5]), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    assert_eq!(p.counters().drop_not_ours, 0);
    assert_eq!(p.counters().rx_to_stack, 3);
}

#[test]
fn a_tcp_flow_closed_from_both_sides_ends_after_the_transitory_time() {
    let short = NatTimeouts {
        udp: 60 * SEC,
        tcp_established: 60 * SEC,
        tcp_transitory: 2 * SEC,
    };
    let mut lan = lan_with_jap(DataPlaneConfig {
        nat_timeouts: short,
        ..config(2)
    });
    let (g, syn) = tcp_syn_sent(&mut lan);
    let nat = syn.src;
    let from_target = |flags| host_tcp(ip(TARGET), 80, nat.ip, nat.port, flags, &[]);
    let from_client = |flags| host_tcp(ip(CLIENT), 7000, g.ip, g.port, flags, &[]);
    lan.run(VecDeque::from([(
        usize::MAX,
        from_target(tcp_flags::SYN | tcp_flags::ACK),
    )]));
    // Established: idle 3 s (past the transitory time) keeps it.
    lan.advance(3 * SEC);
    assert_eq!(lan.planes[1].table_fill()[0].1, 1, "established flow kept");
    // FIN from the client, then from the target: the wait shortens.
    lan.run(VecDeque::from([(
        usize::MAX,
        from_client(tcp_flags::FIN | tcp_flags::ACK),
    )]));
    lan.advance(100 * MS);
    lan.run(VecDeque::from([(
        usize::MAX,
        from_target(tcp_flags::FIN | tcp_flags::ACK),
    )]));
    lan.advance(3 * SEC);
    assert_eq!(lan.planes[1].table_fill()[0].1, 0, "closed flow swept");
    assert_eq!(lan.planes[1].counters().nat_expired, 1);
}

/// A device whose transmit ring is always full.
struct Refusing;
impl FrameSink for Refusing {
    fn send_frame(&mut self, _: &[u8]) -> bool {
        false
    }
}

#[test]
fn refusals_by_the_device_and_messages_to_unknown_proxies_are_counted() {
    // Proxy 2 is in the core's roster but its address is missing here.
    let mut p = plane_with(DataPlaneConfig {
        proxies: vec![(1, appliance_ip(1))],
        ..config(1)
    });
    let mut out = Out::default();
    p.handle_timeout(T0 + SEC, &mut out);
    assert!(p.counters().tx_unknown_proxy > 0);
    assert_eq!(p.counters().tx_proxy, 0);
    // Every frame refused: each refusal counted, nothing counted as sent.
    let mut p = plane(1);
    let f = host_udp(ip(CLIENT), 5, Ipv4([203, 0, 113, 10]), 99, &[1; 1400]);
    assert_eq!(p.ingress(T0, &f, &mut Refusing), Verdict::Done);
    let c = p.counters();
    assert_eq!(c.client_too_big, 1);
    assert!(c.tx_device_refused >= 1, "{c:?}");
    assert_eq!(
        c.arp_requests, 0,
        "a refused request is not counted as asked"
    );
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

#[test]
fn icmp_errors_are_translated_only_when_they_quote_one_of_our_flows() {
    let (_, q) = unanswered_query();
    // The JAP's packet to the target as quoted: IPv4 header (options, if
    // `ihl` > 5) and its first 8 bytes.
    let quote = |ihl: u8, proto: u8, src: Ipv4, dst: Ipv4, sport: u16, dport: u16| {
        let mut b = vec![0x40 | ihl, 0, 0, 30, 0, 1, 0x40, 0, 64, proto, 0, 0];
        b.extend_from_slice(&src.0);
        b.extend_from_slice(&dst.0);
        b.resize(usize::from(ihl) * 4, 1); // NOP options
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&[0, 9, 0, 0]);
        b
    };
    let (me, tgt) = (q.src.ip, q.dst.ip);
    let (np, tp) = (q.src.port, q.dst.port);
    let good = quote(5, 17, me, tgt, np, tp);
    let mut v6 = good.clone();
    v6[0] = 0x65;
    let cases: Vec<(&str, u8, Vec<u8>, bool)> = vec![
        ("port unreachable", 3, good.clone(), true),
        ("time exceeded", 11, good.clone(), true),
        ("with IP options", 3, quote(6, 17, me, tgt, np, tp), true),
        (
            "too short a quote",
            3,
            good[..good.len() - 1].to_vec(),
            false,
        ),
        (
            "header length below 20",
            3,
            quote(4, 17, me, tgt, np, tp),
            false,
        ),
        ("not IPv4", 3, v6, false),
        ("not UDP or TCP", 3, quote(5, 1, me, tgt, np, tp), false),
        ("TCP for a UDP flow", 3, quote(5, 6, me, tgt, np, tp), false),
        ("not from us", 3, quote(5, 17, ip(99), tgt, np, tp), false),
        (
            "another NAT port",
            3,
            quote(5, 17, me, tgt, np + 1, tp),
            false,
        ),
        ("another target", 3, quote(5, 17, me, ip(21), np, tp), false),
        (
            "another target port",
            3,
            quote(5, 17, me, tgt, np, tp + 1),
            false,
        ),
    ];
    for (what, kind, body, translated) in cases {
        let (mut lan, _) = unanswered_query();
        let before = lan.planes[1].counters();
        let clients = lan.client_got.len();
        lan.run(VecDeque::from([(
            usize::MAX,
            icmp_from_target(me, kind, &body),
        )]));
        let after = lan.planes[1].counters();
        let moved = (
            after.icmp_translated - before.icmp_translated,
            after.icmp_unmatched - before.icmp_unmatched,
            after.tx_icmp - before.tx_icmp,
        );
        if translated {
            assert_eq!(moved, (1, 0, 1), "{what}");
            let icmp = &lan.client_got[clients].seg;
            assert_eq!(icmp[0], kind, "{what}");
            // Quoted as the client sent it: a plain 20-byte header, then the
            // client's and the group's ports.
            assert_eq!(icmp[8], 0x45, "{what}");
            assert_eq!(u16::from_be_bytes([icmp[28], icmp[29]]), 5555, "{what}");
            assert_eq!(u16::from_be_bytes([icmp[30], icmp[31]]), 53, "{what}");
        } else {
            assert_eq!(moved, (0, 1, 0), "{what}");
            assert_eq!(lan.client_got.len(), clients, "{what}");
        }
    }
    // An ICMP message that is no error (echo) and one too short to quote.
    let (mut lan, _) = unanswered_query();
    let mut out = Out::default();
    let echo = icmp_from_target(me, 8, &[0; 8]);
    assert_eq!(
        lan.planes[1].ingress(lan.now, &echo, &mut out),
        Verdict::Stack
    );
    let mut short = icmp_from_target(me, 3, &[]);
    let before = lan.planes[1].counters().icmp_unmatched;
    short.truncate(short.len() - 4);
    {
        let total = (short.len() - 14) as u16;
        let mut ip4 = Ipv4Packet::new_unchecked(&mut short[14..]);
        ip4.set_total_len(total);
        ip4.fill_checksum();
    }
    assert_eq!(
        lan.planes[1].ingress(lan.now, &short, &mut out),
        Verdict::Done
    );
    assert_eq!(lan.planes[1].counters().icmp_unmatched, before + 1);
}

#[test]
fn a_packet_larger_than_the_jap_s_mtu_is_counted_not_sent() {
    let mut lan = lan_with_jap(DataPlaneConfig {
        mtu: 576,
        ..config(2)
    });
    lan.advance(10 * MS);
    lan.join(udp_group(), 1);
    lan.advance(100 * MS);
    // Within the IAP's carry limit (MTU 1500), beyond the JAP's MTU.
    lan.client_sends(Transport::Udp, 5555, udp_group(), &[7; 1000]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().all(|g| g.dst.port != 53));
    let jap = lan.planes[1].counters();
    assert_eq!((jap.tx_too_big, jap.tx_deliver), (1, 0), "{jap:?}");
    // A packet that fits the JAP's MTU still goes.
    lan.client_sends(Transport::Udp, 5556, udp_group(), &[7; 500]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().any(|g| g.dst.port == 53));
    assert_eq!(lan.planes[1].counters().tx_deliver, 1);
}
