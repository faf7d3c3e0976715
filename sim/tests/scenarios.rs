//! The paper's scenarios end to end, over the in-process network.

use pias::proxy::{Policy, MS, SEC};
use pias::wire::{Key, NackReason};
use pias_sim::{
    five_pops as clusters, scenario as sim, scenario_group as group, scenario_tune as tune, Pos,
    Sim,
};

const KEY: Key = pias_sim::GROUP_KEY;

#[test]
fn join_reaches_the_jap_and_its_raps() {
    let mut s = sim(Policy::Proximity);
    let t = s.add_target(group(), KEY, Pos(1.0, 1.0));
    s.register(t, true);
    s.run_for(SEC);
    assert_eq!(s.targets[t].acks, 1);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 1);
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    assert_eq!(raps.len(), 4);
    for r in raps {
        assert_eq!(
            s.proxy(r).unwrap().rap_entries(&group()),
            vec![(jap, 1)],
            "RAP {r}"
        );
    }
}

#[test]
fn first_packet_via_rap_then_straight_to_the_jap() {
    let mut s = sim(Policy::Proximity);
    let t = s.add_target(group(), KEY, Pos(1.0, 1.0));
    s.register(t, true);
    s.run_for(SEC);
    let c = s.add_client(Pos(99.0, 1.0));
    let iap = s.client_send(c, group(), b"first").unwrap();
    s.run_for(SEC);
    assert_eq!(
        s.targets[t].received.len(),
        1,
        "the first packet arrives, once"
    );
    assert_eq!(s.clients[c].replies.len(), 1, "and the reply comes back");
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    let p = s.proxy(iap).unwrap();
    assert_eq!(p.counters().iap.lookups_sent, 1);
    assert_eq!(p.cached_japs(&group()), vec![jap]);
    for i in 0..5u8 {
        s.client_send(c, group(), &[i]);
    }
    s.run_for(SEC);
    assert_eq!(s.targets[t].received.len(), 6);
    assert_eq!(
        s.proxy(iap).unwrap().counters().iap.lookups_sent,
        1,
        "later packets skip the RAP"
    );
}

#[test]
fn a_dead_target_gets_nothing_once_detected() {
    let mut s = sim(Policy::Proximity);
    let t0 = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let t1 = s.add_target(group(), KEY, Pos(1.0, 2.0));
    s.register(t0, true);
    s.register(t1, true);
    s.run_for(SEC);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 2);
    s.targets[t0].alive = false;
    s.run_for(2 * SEC); // 3 missed pings at 200 ms
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 1);
    let before = s.targets[t0].received.len();
    for i in 0..10 {
        let c = s.add_client(Pos(60.0 + i as f64, 0.0));
        s.client_send(c, group(), b"x");
    }
    s.run_for(2 * SEC);
    assert_eq!(s.targets[t0].received.len(), before);
    assert_eq!(s.targets[t1].received.len(), 10);
}

#[test]
fn jap_failure_fails_over_to_another_jap() {
    let mut s = sim(Policy::Proximity);
    let near = s.add_target(group(), KEY, Pos(99.0, 2.0)); // JAP in POP 2
    let far = s.add_target(group(), KEY, Pos(1.0, 49.0)); // JAP in POP 3
    s.register(near, true);
    s.register(far, true);
    s.run_for(SEC);
    let c = s.add_client(Pos(98.0, 0.0));
    s.client_send(c, group(), b"a");
    s.run_for(SEC);
    assert_eq!(
        s.targets[near].received.len(),
        1,
        "proximity picks the JAP beside the client"
    );
    let jap = s.anycast(&Pos(99.0, 2.0)).unwrap();
    s.crash(jap);
    s.run_for(2 * SEC); // detection and news
    s.client_send(c, group(), b"b");
    s.run_for(SEC);
    assert_eq!(
        s.targets[far].received.len(),
        1,
        "after the JAP died the other JAP serves"
    );
}

#[test]
fn rap_failure_retries_the_next_rap_and_japs_re_report() {
    let mut s = sim(Policy::Proximity);
    let (t, jap) = s.one_member(group(), KEY, Pos(1.0, 1.0));
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    let doomed: Vec<_> = raps.iter().copied().filter(|&r| r != jap).take(2).collect();
    for &r in &doomed {
        s.crash(r);
    }
    // Immediately: the IAP may still ask a dead RAP; it must retry, not give
    // up. A retry carries no packet (the first RAP may have delivered it, and
    // a duplicate is worse than a loss), so the client's own retry gets through.
    let c = s.add_client(Pos(50.0, 49.0));
    s.client_send(c, group(), b"q");
    s.run_for(SEC);
    s.client_send(c, group(), b"q again");
    s.run_for(2 * SEC);
    let got: Vec<&[u8]> = s.targets[t].received.iter().map(|(_, p)| &p[..]).collect();
    assert!(got.contains(&&b"q again"[..]), "{got:?}");
    assert!(got.len() <= 2, "no packet twice: {got:?}");
    let new_raps = s.proxy(jap).unwrap().raps_of(&group());
    assert!(doomed.iter().all(|d| !new_raps.contains(d)));
    for r in new_raps {
        assert_eq!(
            s.proxy(r).unwrap().rap_entries(&group()),
            vec![(jap, 1)],
            "RAP {r} learned the JAP"
        );
    }
}

#[test]
fn client_hash_keeps_a_flow_on_its_target_when_the_iap_changes() {
    let mut s = sim(Policy::ClientHash);
    let a = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let b = s.add_target(group(), KEY, Pos(99.0, 1.0));
    s.register(a, true);
    s.register(b, true);
    s.run_for(SEC);
    let c = s.add_client(Pos(50.0, 1.0));
    let iap1 = s.client_send(c, group(), b"1").unwrap();
    s.run_for(SEC);
    let first = if s.targets[a].received.len() == 1 {
        a
    } else {
        b
    };
    s.clients[c].pos = Pos(1.0, 50.0); // routing change: another IAP
    let iap2 = s.client_send(c, group(), b"2").unwrap();
    assert_ne!(iap1, iap2);
    s.run_for(SEC);
    assert_eq!(
        s.targets[first].received.len(),
        2,
        "both packets on one target"
    );
}

#[test]
fn a_member_sending_to_its_own_group_reaches_another_member() {
    let mut s = sim(Policy::Proximity);
    let t0 = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let t1 = s.add_target(group(), KEY, Pos(2.0, 1.0));
    s.register(t0, true);
    s.register(t1, true);
    s.run_for(SEC);
    for _ in 0..5 {
        s.target_send(t0, group(), b"peer?");
    }
    s.run_for(SEC);
    assert_eq!(s.targets[t0].received.len(), 0, "never the sender");
    assert_eq!(s.targets[t1].received.len(), 5);
}

#[test]
fn forged_and_replayed_joins_are_refused() {
    let mut s = sim(Policy::Proximity);
    let honest = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let forger = s.add_target(group(), Key([1; 32]), Pos(1.0, 2.0));
    s.register(forger, true);
    s.run_for(SEC);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 0);
    assert!(s.proxy(jap).unwrap().counters().wire.bad_tag >= 1);
    assert!(
        s.targets[forger].nacks.is_empty(),
        "a forged join gets no reply"
    );
    s.register(honest, true);
    s.run_for(SEC);
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 1);
    // Replay: the same join bytes again are refused.
    let replayed_before = s.proxy(jap).unwrap().counters().jap.replayed_registrations;
    let acks_before = s.targets[honest].acks;
    s.targets[honest].nacks.clear();
    // Craft one join and send it twice.
    let r = pias::wire::Registration {
        group: group(),
        target: s.targets[honest].ep,
        timestamp_ms: s.now / MS,
        nonce: 12345,
        options: pias::wire::JoinOptions::default(),
    };
    let mut buf = vec![0u8; pias::wire::MAX_MESSAGE];
    let join = pias::wire::Message::Join(r);
    let n = pias::wire::encode(pias::wire::Sender::Target, 0, 1, &join, &KEY, &mut buf).unwrap();
    buf.truncate(n);
    s.send_from_target(honest, buf.clone());
    s.send_from_target(honest, buf);
    s.run_for(SEC);
    let c = s.proxy(jap).unwrap().counters();
    assert_eq!(c.jap.replayed_registrations, replayed_before + 1);
    assert_eq!(
        s.targets[honest].acks,
        acks_before + 1,
        "the first is acked"
    );
    assert!(
        s.targets[honest].nacks.is_empty(),
        "the replay gets no reply"
    );
}

#[test]
fn a_full_target_table_says_capacity_and_keeps_its_members() {
    let mut s = Sim::new(3, &clusters(), |cfg| {
        tune(Policy::Proximity)(cfg);
        cfg.max_targets_per_group = 2;
    });
    s.run_for(SEC);
    let ts: Vec<_> = (0..3)
        .map(|i| s.add_target(group(), KEY, Pos(1.0, 1.0 + i as f64 * 0.1)))
        .collect();
    for &t in &ts {
        s.register(t, true);
        s.run_for(200 * MS);
    }
    s.run_for(SEC);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 2);
    assert_eq!(s.targets[ts[2]].nacks, vec![NackReason::Capacity]);
    assert_eq!(s.proxy(jap).unwrap().counters().jap.nack_capacity, 1);
}

#[test]
fn iaps_are_told_when_a_jap_loses_its_last_target() {
    let mut s = sim(Policy::Proximity);
    let t = s.add_target(group(), KEY, Pos(1.0, 1.0));
    s.register(t, true);
    s.run_for(SEC);
    let c = s.add_client(Pos(99.0, 1.0));
    let iap = s.client_send(c, group(), b"hi").unwrap();
    s.run_for(SEC);
    assert_eq!(s.proxy(iap).unwrap().cached_japs(&group()).len(), 1);
    s.register(t, false);
    s.run_for(SEC);
    assert!(
        s.proxy(iap).unwrap().cached_japs(&group()).is_empty(),
        "the IAP dropped the JAP without sending a packet"
    );
    let raps = s.proxy(iap).unwrap().raps_of(&group());
    for r in raps {
        assert!(
            s.proxy(r).unwrap().rap_entries(&group()).is_empty(),
            "RAP {r} forgot the JAP"
        );
    }
}

#[test]
fn a_death_reaches_everyone_and_each_proxy_refloods_it_at_most_once() {
    let pops: Vec<(Pos, usize)> = (0..8).map(|i| (Pos(f64::from(i) * 10.0, 0.0), 5)).collect();
    let mut s = Sim::new(3, &pops, pias_sim::fast_timers);
    s.run_for(2 * SEC);
    let news_before = s.sent_by_kind[13];
    s.crash(1);
    s.run_for(2 * SEC);
    for p in 2..=40 {
        assert!(
            !s.proxy(p).unwrap().peer_up(1),
            "proxy {p} still thinks 1 is up"
        );
    }
    // At most the 14 watchers of proxy 1 flood the 38 others, and every proxy
    // re-floods to its 4 cluster mates once: 14 * 38 + 39 * 4.
    let news = s.sent_by_kind[13] - news_before;
    assert!(news > 0 && news <= 14 * 38 + 39 * 4, "{news} news messages");
}
