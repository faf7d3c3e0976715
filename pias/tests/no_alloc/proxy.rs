//! A deployment of proxies run for a simulated minute, from the first join:
//! registrations, health checks, count reports and their refreshes, lookups,
//! client packets and replies, news, a restart, and garbage, forged, replayed
//! and misdirected datagrams — and not one allocation after the proxies were built.

use super::{allocations_during, next};
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::proxy::{
    Buf, GroupConfig, Instant, PeerInfo, Policy, Proxy, ProxyConfig, Transmit, MS, SEC,
};
use pias::roster::Roster;
use pias::wire::{self, JoinOptions, Key, Message, ProxyId, Registration, Sender, MAX_MESSAGE};
use std::collections::VecDeque;
use std::sync::Arc;

const DEPLOYMENT: Key = Key([1; 32]);
const GROUP_KEY: Key = Key([2; 32]);
const T0: Instant = 1_700_000_000 * SEC;
const PROXIES: u32 = 6;
const GROUPS: u16 = 8;

fn group(i: u16) -> Group {
    Group {
        ip: Ipv4([203, 0, 113, 1]),
        port: 1000 + i,
        transport: Transport::Udp,
    }
}

fn config(id: ProxyId) -> ProxyConfig {
    let mut cfg = ProxyConfig::new(id, id % 3, DEPLOYMENT);
    let policies = [
        Policy::Proximity,
        Policy::Load,
        Policy::ClientHash,
        Policy::Random,
    ];
    for i in 0..GROUPS {
        cfg.groups.push(GroupConfig {
            group: group(i),
            key: GROUP_KEY,
            policy: policies[usize::from(i) % 4],
            band_pct: 10,
        });
    }
    cfg.max_peers = 16;
    cfg.max_groups = 32;
    cfg.max_targets = 256;
    cfg.max_rap_entries = 256;
    cfg.max_flows = 512;
    cfg.max_pending = 32;
    cfg.tx_queue = 512;
    cfg.heartbeat = 100 * MS;
    cfg.peer_dead = 350 * MS;
    cfg.target_ping = 200 * MS;
    cfg.rtt_probe = 250 * MS;
    cfg.report_refresh = 2 * SEC;
    cfg.report_expiry = 7 * SEC;
    cfg.flow_idle_udp = 4 * SEC;
    cfg
}

fn target(i: u16) -> Endpoint {
    Endpoint {
        ip: Ipv4([198, 19, 1, i as u8]),
        port: 5000,
    }
}

/// A datagram in flight: to a proxy, from `src`.
type Datagram = (ProxyId, Endpoint, Buf);

/// Signs a target's message into a `Buf` (no allocation).
fn from_target(msg: &Message) -> Buf {
    let mut buf = Buf::new();
    let _ = buf.resize(MAX_MESSAGE, 0);
    let n = wire::encode(Sender::Target, 0, 1, msg, &GROUP_KEY, &mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// The proxy a target's or client's anycast packet reaches.
fn nearest(ip: Ipv4) -> ProxyId {
    u32::from(ip.0[3]) % PROXIES + 1
}

#[test]
fn a_deployment_runs_a_minute_without_one_allocation() {
    let peers: Vec<PeerInfo> = (1..=PROXIES)
        .map(|id| PeerInfo {
            id,
            cluster: id % 3,
        })
        .collect();
    let roster = Arc::new(Roster::new(&peers, 16));
    let mut proxies: Vec<Proxy> = (1..=PROXIES)
        .map(|id| Proxy::with_roster(config(id), roster.clone(), T0))
        .collect();
    // Proxy 4 restarts at 30 s: its next life is built now, swapped in then.
    let mut reborn = Some(Proxy::with_roster(config(4), roster.clone(), T0 + 30 * SEC));
    let mut net: VecDeque<Datagram> = VecDeque::with_capacity(1 << 16);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let (mut delivered, mut replies, mut pongs) = (0u64, 0u64, 0u64);
    let mut captured: Option<Datagram> = None;
    let proxy_src = |id: ProxyId| Endpoint {
        ip: Ipv4([198, 18, 0, id as u8]),
        port: 7002,
    };

    let allocations = allocations_during(|| {
        let mut now = T0;
        while now < T0 + 60 * SEC {
            now += 10 * MS;
            let tick = (now - T0) / (10 * MS);
            if now == T0 + 30 * SEC {
                if let Some(p) = reborn.take() {
                    proxies[3] = p;
                }
            }
            // Targets join (first second), leave and rejoin (later).
            if tick <= 40 || tick.is_multiple_of(500) {
                let t = (tick % 40) as u16;
                let reg = Registration {
                    group: group(t % GROUPS),
                    target: target(t),
                    timestamp_ms: now / MS,
                    nonce: next(&mut rng),
                    options: JoinOptions { weight: 1 + t % 3 },
                };
                let msg = if tick % 1000 == 500 {
                    Message::Leave(reg)
                } else {
                    Message::Join(reg)
                };
                net.push_back((nearest(target(t).ip), target(t), from_target(&msg)));
            }
            // Clients: a packet to a group every tick from a rotating address.
            let client = Endpoint {
                ip: Ipv4([198, 19, 200, (tick % 250) as u8]),
                port: 40000 + (tick % 7) as u16,
            };
            let iap = nearest(client.ip);
            proxies[iap as usize - 1].handle_client_packet(
                now,
                group((tick % u64::from(GROUPS)) as u16),
                client,
                b"query",
            );
            // Garbage, forged, replayed and misdirected datagrams.
            if tick.is_multiple_of(50) {
                let mut junk = [0u8; 64];
                for b in junk.iter_mut() {
                    *b = next(&mut rng) as u8;
                }
                let to = (next(&mut rng) % u64::from(PROXIES)) as usize;
                proxies[to].handle_message(now, client, &junk);
                let forged = Message::Heartbeat {
                    cluster: 1,
                    coord: Default::default(),
                };
                let mut buf = [0u8; MAX_MESSAGE];
                let sender = Sender::Proxy { id: 2, boot: T0 };
                let to_id = to as ProxyId + 1;
                if let Ok(n) = wire::encode(sender, to_id, tick, &forged, &Key([9; 32]), &mut buf) {
                    proxies[to].handle_message(now, proxy_src(2), &buf[..n]);
                }
                if let Some((dest, src, bytes)) = &captured {
                    // The same datagram again, and to another proxy.
                    let other = (*dest as usize) % PROXIES as usize;
                    proxies[*dest as usize - 1].handle_message(now, *src, bytes);
                    proxies[other].handle_message(now, *src, bytes);
                }
            }
            for (i, p) in proxies.iter_mut().enumerate() {
                if p.poll_timeout().is_some_and(|t| t <= now) {
                    p.handle_timeout(now);
                }
                let id = i as ProxyId + 1;
                while let Some(t) = p.poll_transmit() {
                    match t {
                        Transmit::Proxy { to, bytes } => {
                            if net.len() < net.capacity() {
                                net.push_back((to, proxy_src(id), bytes));
                            }
                        }
                        Transmit::Target { to, bytes, .. } => {
                            // The target answers pings (and rejoin requests are
                            // counted but not answered here).
                            if let Ok(parsed) = wire::parse(&bytes) {
                                if let Message::Ping {
                                    group,
                                    target,
                                    nonce,
                                } = parsed.message
                                {
                                    let pong = Message::Pong {
                                        group,
                                        target,
                                        nonce,
                                    };
                                    pongs += 1;
                                    net.push_back((nearest(to.ip), to, from_target(&pong)));
                                }
                            }
                        }
                        Transmit::Deliver {
                            group,
                            client,
                            target,
                            packet,
                        } => {
                            // The target answers through its JAP (the NAT's return path).
                            delivered += 1;
                            p.handle_target_packet(now, group, target, client, &packet);
                        }
                        Transmit::ToClient { .. } => replies += 1,
                    }
                }
            }
            // Deliver what is in flight (10 ms hops), targets replying to deliveries.
            let n = net.len();
            for _ in 0..n {
                let Some((to, src, bytes)) = net.pop_front() else {
                    break;
                };
                if captured.is_none() && tick > 100 && src.port == 7002 {
                    captured = Some((to, src, bytes.clone()));
                }
                if let Some(p) = proxies.get_mut(to as usize - 1) {
                    p.handle_message(now, src, &bytes);
                }
            }
        }
    });
    assert_eq!(allocations, 0, "allocations after construction");
    // The minute really exercised the paths.
    assert!(delivered > 3000, "delivered {delivered}");
    assert!(pongs > 1000, "pongs {pongs}");
    assert_eq!(replies, delivered, "every target reply reached its client");
    let c: Vec<_> = proxies.iter().map(Proxy::counters).collect();
    let sum = |f: &dyn Fn(&pias::proxy::Counters) -> u64| c.iter().map(f).sum::<u64>();
    // (Proxy 4's counters started over at its restart.)
    assert!(sum(&|c| c.jap.joins) >= 30);
    assert!(sum(&|c| c.jap.report_refreshes) > 0);
    assert!(sum(&|c| c.iap.lookups_sent) > 0);
    assert!(sum(&|c| c.rap.lookups) > 0);
    assert!(sum(&|c| c.membership.restarts_seen) > 0);
    assert!(sum(&|c| c.wire.malformed) > 0);
    assert!(sum(&|c| c.wire.bad_tag) > 0);
    assert!(sum(&|c| c.wire.replayed) > 0);
    assert!(sum(&|c| c.wire.misdirected) > 0);
}
