//! Unit tests of one proxy, role by role.

use super::*;
use crate::addr::{Ipv4, Transport};
use crate::wire::{Key, Registration, MAX_MESSAGE};

const DK: Key = Key([1; 32]);
const GK: Key = Key([2; 32]);
const T0: Instant = 1_700_000_000 * SEC;

fn g() -> Group {
    Group {
        ip: Ipv4([203, 0, 113, 7]),
        port: 53,
        transport: Transport::Udp,
    }
}

fn proxy(id: ProxyId, peers: u32) -> Proxy {
    let mut cfg = ProxyConfig::new(id, 0, DK);
    cfg.groups.push(GroupConfig {
        group: g(),
        key: GK,
        policy: Policy::Proximity,
        band_pct: 10,
    });
    let list: Vec<PeerInfo> = (1..=peers)
        .map(|id| PeerInfo {
            id,
            cluster: id % 4,
        })
        .collect();
    Proxy::new(cfg, &list, T0)
}

fn signed(sender: ProxyId, seq: u64, msg: &Message, key: &Key) -> Vec<u8> {
    let mut out = vec![0u8; MAX_MESSAGE];
    let n = wire::encode(sender, seq, msg, key, &mut out).unwrap();
    out.truncate(n);
    out
}

fn target(i: u8) -> Endpoint {
    Endpoint {
        ip: Ipv4([198, 19, 0, i]),
        port: 5000,
    }
}

fn join(p: &mut Proxy, i: u8, nonce: u64) {
    let r = Registration {
        group: g(),
        target: target(i),
        timestamp_ms: T0 / MS,
        nonce,
    };
    p.handle_message(T0, target(i), &signed(0, 1, &Message::Join(r), &GK));
}

fn reports(p: &mut Proxy) -> Vec<(ProxyId, u32)> {
    let mut out = Vec::new();
    while let Some(t) = p.poll_transmit() {
        if let Transmit::Proxy { to, bytes } = t {
            if let Ok(parsed) = wire::parse(&bytes) {
                if let Message::CountReport { count, .. } = parsed.message {
                    out.push((to, count));
                }
            }
        }
    }
    out
}

#[test]
fn jap_reports_the_first_member_then_only_outside_the_band() {
    let mut p = proxy(1, 12);
    join(&mut p, 1, 1);
    let first = reports(&mut p);
    assert_eq!(first.len(), 4, "the first member goes to all four RAPs");
    assert!(first.iter().all(|&(_, c)| c == 1));
    // 1 -> 2 leaves a 10% band around 1 (which is empty): report again.
    join(&mut p, 2, 2);
    assert_eq!(reports(&mut p).len(), 4);
    // The RAPs widen the band to 100%: 3 and 4 stay inside [0, 4] of 2.
    for (rap, _) in p.raps_of(&g()).iter().map(|r| (*r, ())) {
        let ack = Message::ReportAck {
            group: g(),
            count: 2,
            band_pct: 100,
        };
        p.handle_message(T0 + 1, target(0), &signed(rap, T0 + 5, &ack, &DK));
    }
    join(&mut p, 3, 3);
    join(&mut p, 4, 4);
    assert!(reports(&mut p).is_empty(), "inside the band: no report");
    join(&mut p, 5, 5);
    assert_eq!(reports(&mut p).len(), 4, "5 is outside [0, 4]");
}

#[test]
fn rap_band_widens_as_its_table_fills() {
    let mut p = proxy(1, 4);
    let cap = p.rap.capacity();
    assert_eq!(p.band_for_load(&g()), 10);
    for i in 0..cap * 6 / 10 {
        let grp = Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: i as u16,
            transport: Transport::Tcp,
        };
        let _ = p.rap.insert(grp, FixedVec::with_capacity(1));
    }
    assert_eq!(p.band_for_load(&g()), 20);
}

#[test]
fn stale_and_forged_proxy_messages_change_nothing() {
    let mut p = proxy(1, 4);
    let hb = Message::Heartbeat {
        cluster: 2,
        coord: Coord::default(),
    };
    let good = signed(2, T0 + 100, &hb, &DK);
    p.handle_message(T0, target(0), &good);
    p.handle_message(T0, target(0), &good);
    assert_eq!(p.counters.replayed, 1);
    p.handle_message(T0, target(0), &signed(2, T0 + 101, &hb, &Key([9; 32])));
    assert_eq!(p.counters.bad_tag, 1);
    p.handle_message(T0, target(0), &signed(99, T0 + 102, &hb, &DK));
    assert_eq!(p.counters.unknown_sender, 1);
    p.handle_message(T0, target(0), &signed(2, 5, &hb, &DK));
    assert_eq!(p.counters.stale, 1);
}

/// Proxy 1's config and the list of `n` proxies in clusters of `per_cluster`.
fn deployment(n: u32, per_cluster: u32) -> (ProxyConfig, Vec<PeerInfo>) {
    let mut cfg = ProxyConfig::new(1, 0, DK);
    cfg.max_peers = n as usize;
    cfg.max_groups = 16;
    cfg.max_flows = 16;
    let list = (1..=n)
        .map(|id| PeerInfo {
            id,
            cluster: id / per_cluster,
        })
        .collect();
    (cfg, list)
}

#[test]
fn knows_twenty_thousand_proxies() {
    let (cfg, list) = deployment(20_000, 4);
    let p = Proxy::new(cfg, &list, T0);
    assert_eq!(p.table_fill()[0], ("peers", 19_999, 20_000));
    // State only for the watched peers (own cluster and the next two).
    let (_, state, cap) = p.table_fill()[1];
    assert!(state <= 12, "{state} peer states");
    assert_eq!(cap, 20_000);
    assert_eq!(p.raps_of(&g()).len(), 4);
    let mut bigger: Vec<PeerInfo> = list.clone();
    bigger.extend((20_001..=20_002).map(|id| PeerInfo { id, cluster: 0 }));
    let (cfg, _) = deployment(20_000, 4);
    let p = Proxy::new(cfg, &bigger, T0);
    assert_eq!(p.counters.capacity_refusals, 1);
    assert_eq!(p.table_fill()[0].1, 20_000);
}

#[test]
fn news_floods_every_live_peer_through_a_small_queue() {
    let (mut cfg, list) = deployment(2000, 10);
    // Room for one heartbeat round (29 watchers), not for a flood (55,188).
    cfg.tx_queue = 64;
    let mut p = Proxy::new(cfg, &list, T0);
    p.handle_timeout(T0);
    while p.poll_transmit().is_some() {}
    // The 28 watched peers (clusters 0, 1, 2 but ourselves) stay silent.
    p.handle_timeout(T0 + 4 * SEC);
    let mut per_subject: alloc::collections::BTreeMap<ProxyId, Vec<ProxyId>> = Default::default();
    while let Some(t) = p.poll_transmit() {
        if let Transmit::Proxy { to, bytes } = t {
            if let Ok(Message::News { subject, up, .. }) = wire::parse(&bytes).map(|x| x.message) {
                assert!(!up);
                per_subject.entry(subject).or_default().push(to);
            }
        }
    }
    assert_eq!(per_subject.len(), 28);
    for (subject, to) in per_subject {
        assert!((2..=29).contains(&subject));
        assert_eq!(to.len(), 2000 - 1 - 28, "news of {subject}");
        assert!(
            to.iter().all(|&x| x >= 30),
            "news of {subject} to a dead peer"
        );
    }
    assert_eq!(p.counters.tx_queue_full, 0);
    assert_eq!(p.counters.capacity_refusals, 0);
    assert!(!p.has_transmit());
}
