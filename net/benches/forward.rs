//! What the data path costs per packet on the host: one client's UDP query
//! through an established flow of a single appliance (IAP = JAP = RAP), NATed
//! to its target: classification, the proxy core's flow lookup, the NAT, and
//! the frame built for the target, as `DataPlane::ingress` does it per frame.
//! TCG runs the same code some twenty times slower (docs/benchmarks.md).

use criterion::{criterion_group, criterion_main, Criterion};
use pias::addr::{Endpoint, Group, Ipv4, Ipv4Prefix, Transport};
use pias::ids::PeerInfo;
use pias::proxy::{Proxy, ProxyConfig};
use pias::time::{Instant, SEC};
use pias::wire::{self, JoinOptions, Key, Message, Registration, Sender};
use pias_net::dataplane::packet::{self, Addressing};
use pias_net::dataplane::{DataPlane, DataPlaneConfig, FrameSink, NatTimeouts};
use std::hint::black_box;

const T0: Instant = 1_700_000_000 * SEC;
const SECRET: Key = Key([9; 32]);
const OURS: Ipv4 = Ipv4([198, 18, 0, 2]);
const OUR_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const CLIENT: Ipv4 = Ipv4([198, 18, 0, 10]);
const TARGET: Ipv4 = Ipv4([198, 18, 0, 20]);
const TARGET_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 20];
const GROUP: Group = Group {
    ip: Ipv4([203, 0, 113, 10]),
    port: 53,
    transport: Transport::Udp,
};

/// Counts what the data plane sends.
struct Count(usize);
impl FrameSink for Count {
    fn send_frame(&mut self, f: &[u8]) -> bool {
        self.0 += f.len();
        true
    }
}

/// A UDP frame from `src` (its MAC the address's last byte) to us.
fn udp(src: Ipv4, sport: u16, dst: Ipv4, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let a = Addressing {
        src_mac: [0x52, 0x54, 0, 0, 0, src.0[3]],
        dst_mac: OUR_MAC,
        src,
        dst,
        ident: 1,
    };
    // Host-only bench setup: the bench's own frames are a few dozen bytes in a
    // 1,600-byte buffer, so this cannot fail.
    let n = packet::udp_frame(&mut buf, &a, sport, dport, payload).expect("a small frame");
    buf.truncate(n);
    buf
}

/// One appliance with the target joined to `GROUP` and known by ARP.
fn joined_plane() -> DataPlane {
    let cfg = DataPlaneConfig {
        mac: OUR_MAC,
        address: Ipv4Prefix::new(OURS, 24),
        gateway: None,
        mtu: 1500,
        anycast: vec![Ipv4Prefix::new(GROUP.ip, 24)],
        registration_port: 7000,
        proxy_port: 7002,
        nat_first_port: 20000,
        nat_ports: 1000,
        max_flows: 64,
        nat_timeouts: NatTimeouts::default(),
        proxies: vec![(1, OURS)],
        bgp_neighbours: vec![],
        hash_key: [1; 16],
    };
    let mut pc = ProxyConfig::new(1, 1, Key([1; 32]));
    pc.group_secret = Some(SECRET);
    pc.anycast = vec![Ipv4Prefix::new(GROUP.ip, 24)];
    let proxy = Proxy::new(pc, &[PeerInfo { id: 1, cluster: 1 }], T0);
    let mut plane = DataPlane::new(cfg, proxy, T0);
    let mut sink = Count(0);
    // The target's ARP answer, then its agent's join.
    let mut arp = [0u8; 64];
    let n = packet::arp_reply(&mut arp, TARGET_MAC, TARGET, OUR_MAC, OURS);
    plane.ingress(T0, &arp[..n], &mut sink);
    let join = Message::Join(Registration {
        group: GROUP,
        target: Endpoint {
            ip: TARGET,
            port: GROUP.port,
        },
        timestamp_ms: T0 / 1000,
        nonce: 1,
        options: JoinOptions::default(),
    });
    let mut msg = vec![0u8; wire::MAX_MESSAGE];
    let key = pias::keys::group_key(&SECRET, &GROUP);
    // Host-only bench setup: a join with no options fits MAX_MESSAGE, so this
    // cannot fail.
    let n = wire::encode(Sender::Target, 0, T0 / 1000, &join, &key, &mut msg).expect("encode");
    plane.ingress(
        T0,
        &udp(TARGET, 40000, GROUP.ip, 7000, &msg[..n]),
        &mut sink,
    );
    assert_eq!(plane.proxy().targets_held(&GROUP), 1, "the target joined");
    plane
}

fn forward(c: &mut Criterion) {
    let mut plane = joined_plane();
    let query = udp(CLIENT, 6000, GROUP.ip, GROUP.port, &[0x5a; 40]);
    let mut sink = Count(0);
    // The flow's first packet opens it (and the NAT mapping).
    plane.ingress(T0, &query, &mut sink);
    let before = plane.counters().tx_deliver;
    c.bench_function("UDP packet through an established flow (IAP = JAP)", |b| {
        b.iter(|| plane.ingress(T0, black_box(&query), &mut sink))
    });
    assert!(
        plane.counters().tx_deliver > before,
        "the queries were not delivered"
    );
}

criterion_group!(benches, forward);
criterion_main!(benches);
