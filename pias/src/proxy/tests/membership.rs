//! Membership tests: who is up, in a large deployment, through news and
//! refutations, with bounded peer state, and what a proxy hears.

use super::*;

/// Proxy 1's config and the list of `n` proxies in clusters of `per_cluster`.
fn deployment(n: u32, per_cluster: u32) -> (ProxyConfig, Vec<PeerInfo>) {
    let mut cfg = ProxyConfig::new(1, 0, DK);
    cfg.max_peers = n as usize;
    cfg.max_groups = 16;
    cfg.max_flows = 16;
    cfg.max_targets = 64;
    cfg.max_rap_entries = 64;
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
    assert_eq!(p.counters().membership.peers_refused, 1);
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
    let c = p.counters();
    assert_eq!(c.wire.tx_queue_full, 0);
    assert_eq!(c.membership.floods_refused, 0);
    assert!(!p.has_transmit());
}

#[test]
fn news_of_our_own_death_is_refuted_with_a_later_incarnation() {
    let mut p = proxy(1, 4);
    let me = p.incarnation();
    let news = Message::News {
        subject: 1,
        incarnation: me,
        up: false,
    };
    p.handle_message(T0, target(0), &from_peer(2, 10, &news));
    assert_eq!(p.incarnation().refutation, me.refutation + 1);
    let ups: Vec<Incarnation> = drain(&mut p)
        .iter()
        .filter_map(|t| match t {
            Transmit::Proxy { bytes, .. } => match wire::parse(bytes).ok()?.message {
                Message::News {
                    subject: 1,
                    incarnation,
                    up: true,
                } => Some(incarnation),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(!ups.is_empty() && ups.iter().all(|i| *i > me));
    // News about an earlier life of ours is old news.
    let old = Message::News {
        subject: 1,
        incarnation: Incarnation {
            boot: me.boot - 1,
            refutation: 9,
        },
        up: false,
    };
    p.handle_message(T0, target(0), &from_peer(2, 11, &old));
    assert_eq!(p.incarnation().refutation, me.refutation + 1);
}

#[test]
fn a_peer_in_a_later_life_is_believed_and_down_news_of_its_old_life_is_not() {
    let mut p = proxy(1, 4);
    let hb = Message::Heartbeat {
        cluster: 2,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(2, 1_000, &hb));
    // Proxy 2 restarts: its sequence starts over at 1 in its new life.
    let new_life = Sender::Proxy {
        id: 2,
        boot: T0 + SEC,
    };
    p.handle_message(
        T0 + 2 * SEC,
        target(0),
        &signed(new_life, T0 + SEC + 1, &hb, &DK),
    );
    let c = p.counters();
    assert_eq!((c.wire.stale, c.membership.restarts_seen), (0, 1), "{c:?}");
    assert_eq!(p.peer_incarnation(2).map(|i| i.boot), Some(T0 + SEC));
    let stale_death = Message::News {
        subject: 2,
        incarnation: Incarnation {
            boot: BOOT,
            refutation: 0,
        },
        up: false,
    };
    p.handle_message(T0 + 3 * SEC, target(0), &from_peer(3, 5, &stale_death));
    assert!(p.peer_up(2), "news of an earlier life is ignored");
}

#[test]
fn peer_state_is_bounded_and_a_forgotten_peers_old_messages_stay_refused() {
    // Proxy 1 alone in its cluster, watching no one; room for 8 peers' state.
    let mut cfg = ProxyConfig::new(1, 0, DK);
    cfg.watch_clusters = 0;
    cfg.max_peer_state = 8;
    let list: Vec<PeerInfo> = (1..=20)
        .map(|id| PeerInfo {
            id,
            cluster: 100 + id,
        })
        .collect();
    let mut p = Proxy::new(cfg, &list, T0);
    let hb = Message::Heartbeat {
        cluster: 0,
        coord: Coord::default(),
    };
    let captured = from_peer(2, SEC, &hb);
    p.handle_message(T0, target(0), &captured);
    for id in 3..=9 {
        p.handle_message(T0, target(0), &from_peer(id, SEC, &hb));
    }
    assert_eq!(p.table_fill()[1], ("peer_state", 8, 8));
    // Full of peers heard within the freshness window: the ninth is refused.
    p.handle_message(T0 + SEC, target(0), &from_peer(10, 2 * SEC, &hb));
    assert_eq!(p.counters().membership.peers_refused, 1);
    // 40 s later the least recently heard is forgotten to make room.
    p.handle_message(T0 + 40 * SEC, target(0), &from_peer(10, 41 * SEC, &hb));
    let c = p.counters().membership;
    assert_eq!((c.peers_refused, c.peers_forgotten), (1, 1));
    // Proxy 2's entry was forgotten; its message from 40 s ago, replayed, is
    // older than the freshness window for the state made afresh: refused.
    // Refused before any state is made for it: nothing else is forgotten.
    p.handle_message(T0 + 40 * SEC, target(0), &captured);
    assert_eq!(p.counters().wire.stale, 1);
    assert_eq!(p.counters().membership.peers_forgotten, 1);
    // A fresh message from it is welcome (another silent peer makes room).
    p.handle_message(T0 + 40 * SEC, target(0), &from_peer(2, 41 * SEC, &hb));
    assert_eq!(p.counters().wire.stale, 1);
    assert_eq!(p.counters().membership.peers_forgotten, 2);
    // News of a death never goes unheld for want of room: a peer heard
    // recently is forgotten for it (a peer without state would count as up).
    let mut cfg = ProxyConfig::new(1, 0, DK);
    cfg.watch_clusters = 0;
    cfg.max_peer_state = 8;
    let mut p = Proxy::new(cfg, &list, T0);
    for id in 2..=9 {
        p.handle_message(T0, target(0), &from_peer(id, SEC, &hb));
    }
    let death = Message::News {
        subject: 15,
        incarnation: Incarnation::default(),
        up: false,
    };
    p.handle_message(T0 + SEC, target(0), &from_peer(2, 2 * SEC, &death));
    assert!(!p.peer_up(15), "the death is held");
    let c = p.counters().membership;
    assert_eq!((c.peers_forgotten, c.peers_refused), (1, 0));
}

#[test]
fn hearing_counts_recently_heard_peers_in_and_outside_the_cluster() {
    let list: Vec<PeerInfo> = (1..=8)
        .map(|id| PeerInfo {
            id,
            cluster: id % 4,
        })
        .collect();
    // Proxy 1 is in cluster 1 with proxy 5; six others are elsewhere.
    let mut p = Proxy::new(ProxyConfig::new(1, 1, DK), &list, T0);
    let within = 3 * SEC;
    let heard = |h: Hearing| (h.cluster_heard, h.remote_heard);
    let h = p.hearing(T0, within);
    assert_eq!(h.cluster_peers, 1);
    assert!(h.remote_peers >= 1, "{h:?}");
    assert_eq!(heard(h), (0, 0), "nobody heard yet");
    let hb = |cluster| Message::Heartbeat {
        cluster,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(5, 1, &hb(1)));
    p.handle_message(T0 + SEC, target(0), &from_peer(2, 1, &hb(2)));
    assert_eq!(heard(p.hearing(T0 + SEC, within)), (1, 1));
    // Proxy 5 falls silent first.
    assert_eq!(heard(p.hearing(T0 + within + SEC / 2, within)), (0, 1));
    assert_eq!(heard(p.hearing(T0 + within + 2 * SEC, within)), (0, 0));
    // A forged message is not hearing.
    p.handle_message(
        T0 + 10 * SEC,
        target(0),
        &signed(
            Sender::Proxy { id: 5, boot: BOOT },
            BOOT + 2,
            &hb(1),
            &Key([9; 32]),
        ),
    );
    assert_eq!(heard(p.hearing(T0 + 10 * SEC, within)), (0, 0));
}
