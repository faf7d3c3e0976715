//! Costs of the proxy core: a client packet on the cached path, a join, a RAP
//! lookup at 20,000 proxies; and bytes per table entry, printed as a table.
//! Run: cargo bench -p pias --bench core

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::proxy::{GroupConfig, PeerInfo, Policy, Proxy, ProxyConfig, MS, SEC};
use pias::ring::Ring;
use pias::wire::{self, JoinOptions, Key, Message, RankedJap, Registration, Sender};
use std::hint::black_box;

const DEPLOYMENT: Key = Key([1; 32]);
const GROUP_KEY: Key = Key([2; 32]);
const T0: u64 = 1_700_000_000 * SEC;

fn group(i: u32) -> Group {
    Group {
        ip: Ipv4([203, 0, 113, (i % 256) as u8]),
        port: 1000 + (i / 256) as u16,
        transport: Transport::Udp,
    }
}

fn proxy(id: u32) -> Proxy {
    let mut cfg = ProxyConfig::new(id, 0, DEPLOYMENT);
    cfg.groups.push(GroupConfig {
        group: group(0),
        key: GROUP_KEY,
        policy: Policy::Proximity,
        band_pct: 10,
    });
    let peers: Vec<PeerInfo> = (1..=8)
        .map(|id| PeerInfo {
            id,
            cluster: id % 3,
        })
        .collect();
    Proxy::new(cfg, &peers, T0)
}

/// A proxy's message (a target's when `sender` is 0).
fn signed(sender: u32, seq: u64, msg: &Message, key: &Key) -> Vec<u8> {
    let sender = match sender {
        0 => Sender::Target,
        id => Sender::Proxy { id, boot: T0 },
    };
    let mut out = vec![0u8; wire::MAX_MESSAGE];
    let to = if msg.target_group().is_some() { 0 } else { 1 };
    let n = wire::encode(sender, to, seq, msg, key, &mut out).unwrap();
    out.truncate(n);
    out
}

fn bench(c: &mut Criterion) {
    let ring = Ring::from_proxies(20_000, 1..=20_000).unwrap();
    let mut i = 0u32;
    c.bench_function("rap lookup, 20000 proxies, k=4", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let mut out = [0u32; 4];
            black_box(ring.raps(&group(i), 4, |_| true, &mut out))
        })
    });

    // IAP with a cached JAP list: a client packet is one signed Forward.
    let mut iap = proxy(1);
    let mut japs = heapless::Vec::new();
    japs.push(RankedJap { jap: 2, count: 5 }).unwrap();
    let list = signed(
        2,
        T0 + 10,
        &Message::JapList {
            group: group(0),
            japs,
            ttl_s: 3600,
        },
        &DEPLOYMENT,
    );
    let src = Endpoint {
        ip: Ipv4([198, 18, 0, 2]),
        port: 7002,
    };
    iap.handle_message(T0 + MS, src, &list);
    assert_eq!(iap.cached_japs(&group(0)), vec![2]);
    let client = Endpoint {
        ip: Ipv4([198, 19, 0, 1]),
        port: 40000,
    };
    let payload = [0u8; 512];
    c.bench_function("client packet, cached path (512 B)", |b| {
        b.iter(|| {
            iap.handle_client_packet(T0 + 2 * MS, group(0), client, &payload);
            black_box(iap.poll_transmit())
        })
    });

    // JAP: a signed join from a new target, then its leave (keeps the table
    // steady); the clock moves 30 ms a pair, within the replay cache's rated rate.
    let mut jap = proxy(3);
    let mut n = 0u64;
    let now = |n: u64| T0 + n * 30 * MS;
    c.bench_function("join + leave (verify, table update, ack, report)", |b| {
        b.iter_batched(
            || {
                n += 1;
                let target = Endpoint {
                    ip: Ipv4([198, 19, 1, 1]),
                    port: 5000,
                };
                let reg = |nonce| Registration {
                    group: group(0),
                    target,
                    timestamp_ms: now(n) / MS,
                    nonce,
                    options: JoinOptions::default(),
                };
                (
                    signed(0, 1, &Message::Join(reg(2 * n)), &GROUP_KEY),
                    signed(0, 1, &Message::Leave(reg(2 * n + 1)), &GROUP_KEY),
                    target,
                    now(n),
                )
            },
            |(join, leave, target, at)| {
                jap.handle_message(at, target, &join);
                jap.handle_message(at, target, &leave);
                while jap.poll_transmit().is_some() {}
                assert_eq!(jap.counters().jap.nack_capacity, 0);
            },
            BatchSize::SmallInput,
        )
    });

    println!(
        "\nbytes per table entry (fixed hash tables reserve 8/7 to 16/7 slots \
         per unit of capacity; pool entries include their link):"
    );
    for (name, bytes) in Proxy::entry_sizes() {
        println!("  {name:<10} {bytes:>5}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
