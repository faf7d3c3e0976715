//! Regression scenarios for the defects a review of the core found (issue 8),
//! one test per defect, each named for what used to go wrong.

use pias::proxy::{Policy, MS, SEC};
use pias::wire::{Key, KINDS};
use pias_sim::{
    five_pops as pops, scenario as sim, scenario_group as group, scenario_tune as tune, Pos, Sim,
};
use std::collections::HashMap;

const KEY: Key = pias_sim::GROUP_KEY;
const NEWS: usize = 13;
const FORWARD: usize = 10;
const INVALIDATE: usize = 11;
const COUNT_REPORT: usize = 6;

/// A client in every POP sends one packet; returns how many reached `t`.
fn reached_from_every_pop(s: &mut Sim, t: usize) -> usize {
    let before = s.targets[t].received.len();
    let clients: Vec<usize> = pops()
        .iter()
        .map(|(p, _)| s.add_client(Pos(p.0 + 0.5, p.1 + 0.5)))
        .collect();
    for &c in &clients {
        s.client_send(c, group(), b"hello");
    }
    s.run_for(SEC);
    s.targets[t].received.len() - before
}

#[test]
fn a_count_report_lost_in_a_50ms_partition_is_retried_until_every_rap_has_it() {
    let mut s = sim(Policy::Proximity);
    let t = s.add_target(group(), KEY, Pos(100.0, 1.0));
    let jap = s.anycast(&Pos(100.0, 1.0)).unwrap();
    let cluster = s.cluster_of(jap);
    for other in 0..5 {
        if other != cluster {
            s.partition(cluster, other);
        }
    }
    s.register(t, true);
    s.run_for(50 * MS);
    s.heal();
    s.run_for(2 * SEC);
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    for r in raps {
        assert_eq!(
            s.proxy(r).unwrap().rap_entries(&group()),
            vec![(jap, 1)],
            "RAP {r} has the JAP's count"
        );
    }
    assert_eq!(reached_from_every_pop(&mut s, t), 5);
}

#[test]
fn a_rap_restarted_faster_than_peer_dead_relearns_its_japs() {
    let mut s = sim(Policy::Proximity);
    let (t, jap) = s.one_member(group(), KEY, Pos(1.0, 1.0));
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    let r = raps.iter().copied().find(|&r| r != jap).unwrap();
    s.crash(r);
    s.run_for(100 * MS); // shorter than peer_dead (350 ms): nobody noticed
    s.start(r);
    assert!(s.proxy(r).unwrap().rap_entries(&group()).is_empty());
    s.run_for(SEC);
    assert_eq!(
        s.proxy(r).unwrap().rap_entries(&group()),
        vec![(jap, 1)],
        "the restarted RAP learned the JAP again"
    );
    assert!(s.proxy(jap).unwrap().counters().membership.restarts_seen <= 1);
    assert_eq!(reached_from_every_pop(&mut s, t), 5);
}

#[test]
fn news_from_a_restarted_proxy_is_believed() {
    // Clusters watch only themselves, so the one other proxy of a POP is the
    // only one that can declare its POP-mate dead.
    let mut s = Sim::new(7, &pops(), |cfg| {
        tune(Policy::Proximity)(cfg);
        cfg.watch_clusters = 0;
    });
    s.run_for(2 * SEC);
    // Proxy 1 announces a death once (its news counter advances) ...
    s.crash(2);
    s.run_for(2 * SEC);
    assert!((3..=10).all(|p| !s.proxy(p).unwrap().peer_up(2)));
    s.start(2);
    s.run_for(2 * SEC);
    assert!((3..=10).all(|p| s.proxy(p).unwrap().peer_up(2)));
    // ... then restarts, and later is again the only witness of 2's death.
    s.crash(1);
    s.run_for(100 * MS);
    s.start(1);
    s.run_for(2 * SEC);
    s.crash(2);
    s.run_for(2 * SEC);
    for p in 3..=10 {
        assert!(
            !s.proxy(p).unwrap().peer_up(2),
            "proxy {p} did not believe the restarted proxy 1"
        );
    }
}

#[test]
fn a_stand_in_raps_entries_expire_once_the_rap_is_back() {
    let mut s = sim(Policy::Proximity);
    let (_, jap) = s.one_member(group(), KEY, Pos(1.0, 1.0));
    let before = s.proxy(jap).unwrap().raps_of(&group());
    let r = before.iter().copied().find(|&r| r != jap).unwrap();
    s.crash(r);
    s.run_for(2 * SEC);
    let during = s.proxy(jap).unwrap().raps_of(&group());
    let stand_in = during
        .iter()
        .copied()
        .find(|x| !before.contains(x))
        .unwrap();
    assert_eq!(
        s.proxy(stand_in).unwrap().rap_entries(&group()),
        vec![(jap, 1)]
    );
    s.start(r);
    s.run_for(2 * SEC);
    assert_eq!(s.proxy(jap).unwrap().raps_of(&group()), before);
    // The stand-in is no longer reported to: its entry expires (10 s here).
    s.run_for(12 * SEC);
    assert!(
        s.proxy(stand_in).unwrap().rap_entries(&group()).is_empty(),
        "stale stand-in entry kept"
    );
    assert!(s.proxy(stand_in).unwrap().counters().rap.expired >= 1);
    assert_eq!(s.proxy(r).unwrap().rap_entries(&group()), vec![(jap, 1)]);
}

#[test]
fn the_last_target_going_down_keeps_its_group_and_is_pinged_back_up() {
    let mut s = sim(Policy::Proximity);
    let (t, jap) = s.one_member(group(), KEY, Pos(1.0, 1.0));
    s.targets[t].alive = false;
    s.run_for(2 * SEC);
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 0);
    assert_eq!(s.proxy(jap).unwrap().targets_held(&group()), 1);
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    assert!(raps
        .iter()
        .all(|&r| s.proxy(r).unwrap().rap_entries(&group()).is_empty()));
    // The target recovers: the JAP's pings find it, and it serves again.
    s.targets[t].alive = true;
    s.run_for(2 * SEC);
    assert_eq!(s.proxy(jap).unwrap().live_targets(&group()), 1);
    for r in raps {
        assert_eq!(s.proxy(r).unwrap().rap_entries(&group()), vec![(jap, 1)]);
    }
    s.run_for(SEC); // negative caches of the down time expire
    assert_eq!(reached_from_every_pop(&mut s, t), 5);
}

#[test]
fn targets_of_a_dead_jap_rejoin_through_another_proxy() {
    let mut s = sim(Policy::Proximity);
    let t = s.add_target(group(), KEY, Pos(1.0, 1.0));
    s.set_watchdog(t, SEC);
    s.register(t, true);
    s.run_for(SEC);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    s.crash(jap);
    s.run_for(4 * SEC);
    let new_jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_ne!(new_jap, jap);
    assert!(
        s.targets[t].rejoins >= 1,
        "the new proxy asked it to rejoin"
    );
    assert_eq!(s.proxy(new_jap).unwrap().live_targets(&group()), 1);
    assert_eq!(reached_from_every_pop(&mut s, t), 5);
}

/// A deployment whose targets go down after `fall` missed pings, with
/// members `a` at (1, 1) and `b` at (100, 1) joined to the group, and a
/// client at `client` that has sent one packet; returns (sim, a, b).
fn two_members(fall: u8, client: Pos) -> (Sim, usize, usize) {
    let mut s = Sim::new(7, &pops(), |cfg| {
        tune(Policy::Proximity)(cfg);
        cfg.target_fall = fall;
    });
    s.run_for(2 * SEC);
    let a = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let b = s.add_target(group(), KEY, Pos(100.0, 1.0));
    s.register(a, true);
    s.register(b, true);
    s.run_for(SEC);
    let c = s.add_client(client);
    s.client_send(c, group(), b"warm");
    s.run_for(SEC);
    (s, a, b)
}

#[test]
fn a_packet_that_no_jap_can_place_is_offered_to_each_jap_once() {
    // One missed ping takes a target down; a client beside `a` fills its
    // proxy's JAP list (both JAPs).
    let (mut s, a, b) = two_members(1, Pos(1.0, 2.0));
    let iap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    assert_eq!(s.proxy(iap).unwrap().cached_japs(&group()).len(), 2);
    assert_eq!(s.targets[a].received.len(), 1);
    // `b` goes down (its JAP keeps the group and pings it); then `a` sends
    // to its own group, P2P: its JAP may not give it itself, `b`'s JAP has
    // no target up. Neither can place the packet.
    s.targets[b].alive = false;
    s.run_for(SEC);
    let (fwd, inv) = (s.sent_by_kind[FORWARD], s.sent_by_kind[INVALIDATE]);
    let forwards_before = s.proxy(iap).unwrap().counters().iap.forwards;
    s.target_send(a, group(), b"nowhere");
    s.run_for(SEC);
    let forwards = s.sent_by_kind[FORWARD] - fwd;
    let invalidations = s.sent_by_kind[INVALIDATE] - inv;
    // Over the network: to `b`'s JAP and back (the IAP's own JAP is local).
    assert_eq!(
        (forwards, invalidations),
        (1, 1),
        "bounced {forwards} forwards, {invalidations} invalidations"
    );
    let drops: u64 = (1..=10)
        .filter_map(|p| s.proxy(p))
        .map(|p| p.counters().iap.bounced_drops + p.counters().rap.no_member_drops)
        .sum();
    assert_eq!(drops, 1, "the packet is dropped once, and counted");
    assert_eq!(s.targets[a].received.len(), 1);
    assert!(s.targets[b].received.is_empty());
    // The IAP offered it to each cached JAP once (itself, then `b`'s), then
    // asked a RAP, which had no JAP left to try.
    assert_eq!(
        s.proxy(iap).unwrap().counters().iap.forwards - forwards_before,
        2
    );
}

#[test]
fn a_group_whose_targets_all_missed_a_ping_still_takes_new_clients() {
    // Targets stay suspect (live, not down) for a long time.
    let (mut s, a, b) = two_members(100, Pos(50.0, 1.0));
    // Both targets' pongs are lost: suspect, not down, and alive.
    s.targets[a].answers_pings = false;
    s.targets[b].answers_pings = false;
    s.run_for(SEC);
    let (fwd, inv) = (s.sent_by_kind[FORWARD], s.sent_by_kind[INVALIDATE]);
    let received = s.targets[a].received.len() + s.targets[b].received.len();
    let c2 = s.add_client(Pos(50.0, 2.0));
    s.client_send(c2, group(), b"new");
    s.run_for(SEC);
    // The first JAP offered it places it on its suspect target: no bounce.
    assert_eq!(s.sent_by_kind[INVALIDATE] - inv, 0);
    assert!(s.sent_by_kind[FORWARD] - fwd <= 1);
    assert_eq!(
        s.targets[a].received.len() + s.targets[b].received.len(),
        received + 1
    );
}

/// News per minute while proxy 1 (POP 0, a watcher of POP 1) and proxy 3
/// (POP 1) cannot reach each other, both reaching everyone else: (one crash,
/// minute 1, mean of minutes 2..10), with `doublings` of flap damping.
fn news_under_a_cut(doublings: u8) -> (u64, u64, u64, Sim) {
    let mut s = Sim::new(7, &pops(), |cfg| {
        tune(Policy::Proximity)(cfg);
        cfg.max_flap_doublings = doublings;
    });
    s.run_for(3 * SEC);
    let before = s.sent_by_kind[NEWS];
    s.crash(10);
    s.run_for(3 * SEC);
    let crash = s.sent_by_kind[NEWS] - before;
    s.start(10);
    s.run_for(10 * SEC);
    let start = s.sent_by_kind[NEWS];
    s.cut(1, 3);
    s.run_for(60 * SEC);
    let first_minute = s.sent_by_kind[NEWS] - start;
    let later = s.sent_by_kind[NEWS];
    s.run_for(9 * 60 * SEC);
    let per_minute = (s.sent_by_kind[NEWS] - later) / 9;
    (crash, first_minute, per_minute, s)
}

#[test]
fn a_partial_partition_does_not_make_news_flap() {
    let (crash, undamped_first, undamped, _) = news_under_a_cut(0);
    let (_, first, later, s) = news_under_a_cut(6);
    eprintln!(
        "news: one crash {crash}; undamped {undamped_first} then {undamped}/min; \
         damped {first} then {later}/min"
    );
    // Undamped, proxy 1 declares 3 dead every few heartbeats and 3 refutes.
    assert!(undamped > 20 * crash, "the scenario flaps without damping");
    // Damped, each refuted declaration doubles proxy 1's patience.
    assert!(
        later <= undamped / 20,
        "{later}/min damped vs {undamped}/min"
    );
    // At most 64 × peer_dead between declarations: a few crashes' worth a minute.
    assert!(later <= 3 * crash, "{later}/min vs {crash} per crash");
    assert!(
        first < undamped_first,
        "{first} vs {undamped_first} in minute 1"
    );
    // Everyone who can reach proxy 3 believes it up.
    for p in (2..=10).filter(|&p| p != 3) {
        assert!(s.proxy(p).unwrap().peer_up(3), "proxy {p} thinks 3 is down");
    }
}

#[test]
fn load_spreads_flows_over_japs_in_proportion_to_members_with_affinity() {
    let mut s = sim(Policy::Load);
    // Three JAPs with 1, 2 and 5 members.
    let mut members = Vec::new();
    for (pos, n) in [
        (Pos(0.0, 1.0), 1),
        (Pos(100.0, 1.0), 2),
        (Pos(50.0, 51.0), 5),
    ] {
        for i in 0..n {
            let t = s.add_target(group(), KEY, Pos(pos.0, pos.1 + i as f64 * 0.01));
            s.register(t, true);
            members.push((t, pos));
        }
    }
    s.run_for(2 * SEC);
    // 800 clients spread over the POPs, three packets each.
    let clients: Vec<usize> = (0..800)
        .map(|i| {
            let p = pops()[i % 5].0;
            s.add_client(Pos(p.0 + 1.0, p.1 + (i / 5) as f64 * 0.001))
        })
        .collect();
    for round in 0..3u8 {
        for &c in &clients {
            s.client_send(c, group(), &[round]);
        }
        s.run_for(SEC);
    }
    let mut per_target: HashMap<usize, usize> = HashMap::new();
    let mut target_of: HashMap<pias::addr::Endpoint, std::collections::HashSet<usize>> =
        HashMap::new();
    for &(t, _) in &members {
        for (client, _) in &s.targets[t].received {
            *per_target.entry(t).or_default() += 1;
            target_of.entry(*client).or_default().insert(t);
        }
    }
    let total: usize = per_target.values().sum();
    assert_eq!(total, 2400, "every packet delivered once");
    assert!(
        target_of.values().all(|ts| ts.len() == 1),
        "a client's packets stay on one target"
    );
    // Share per JAP: 1/8, 2/8, 5/8 of the clients.
    let mut per_jap = [0usize; 3];
    for (i, &(t, _)) in members.iter().enumerate() {
        let jap = match i {
            0 => 0,
            1 | 2 => 1,
            _ => 2,
        };
        per_jap[jap] += per_target.get(&t).copied().unwrap_or(0);
    }
    for (got, want) in per_jap.iter().zip([1.0, 2.0, 5.0]) {
        let share = *got as f64 / total as f64;
        assert!(
            (share - want / 8.0).abs() < 0.06,
            "JAP share {share:.3}, want {:.3} ({per_jap:?})",
            want / 8.0
        );
    }
    // Within the 5-member JAP, flows spread evenly over its members.
    let big: Vec<usize> = members[3..]
        .iter()
        .map(|&(t, _)| per_target.get(&t).copied().unwrap_or(0))
        .collect();
    let mean = big.iter().sum::<usize>() as f64 / 5.0;
    assert!(
        big.iter()
            .all(|&n| (n as f64 - mean).abs() <= 3.0 + mean * 0.1),
        "{big:?}"
    );
}

#[test]
fn flow_counts_fall_when_flows_end_so_least_loaded_means_now() {
    let mut s = Sim::new(7, &pops(), |cfg| {
        tune(Policy::Proximity)(cfg);
        cfg.flow_idle_udp = 2 * SEC;
    });
    s.run_for(2 * SEC);
    let (_, jap) = s.one_member(group(), KEY, Pos(1.0, 1.0));
    for i in 0..20 {
        let c = s.add_client(Pos(2.0, 1.0 + i as f64 * 0.01));
        s.client_send(c, group(), b"x");
    }
    s.run_for(SEC);
    let flows = |s: &Sim| s.proxy(jap).unwrap().target_flows(&group())[0].2;
    assert_eq!(flows(&s), 20);
    s.run_for(5 * SEC);
    assert_eq!(flows(&s), 0, "idle flows gave their count back");
    // A new member now gets new flows alongside the old one, not all of them.
    let b = s.add_target(group(), KEY, Pos(1.0, 1.1));
    s.register(b, true);
    s.run_for(SEC);
    for i in 0..20 {
        let c = s.add_client(Pos(2.0, 2.0 + i as f64 * 0.01));
        s.client_send(c, group(), b"y");
    }
    s.run_for(SEC);
    let split: Vec<u32> = s
        .proxy(jap)
        .unwrap()
        .target_flows(&group())
        .iter()
        .map(|x| x.2)
        .collect();
    assert_eq!(split, vec![10, 10]);
}

#[test]
fn a_members_weight_sets_its_share_of_new_flows() {
    let mut s = sim(Policy::Proximity);
    let light = s.add_target(group(), KEY, Pos(1.0, 1.0));
    let heavy = s.add_target(group(), KEY, Pos(1.0, 1.1));
    s.targets[heavy].weight = 3;
    s.register(light, true);
    s.register(heavy, true);
    s.run_for(SEC);
    let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
    let raps = s.proxy(jap).unwrap().raps_of(&group());
    assert_eq!(
        s.proxy(raps[0]).unwrap().rap_entries(&group()),
        vec![(jap, 4)],
        "the JAP reports its members' summed weight"
    );
    for i in 0..40 {
        let c = s.add_client(Pos(2.0, 1.0 + i as f64 * 0.01));
        s.client_send(c, group(), b"x");
    }
    s.run_for(SEC);
    assert_eq!(s.targets[light].received.len(), 10);
    assert_eq!(s.targets[heavy].received.len(), 30);
}

#[test]
fn soft_state_costs_a_bounded_refresh_rate() {
    // One member at each of three JAPs: every refresh period each JAP sends
    // one report to each of the group's RAPs, and nothing else is resent.
    let mut s = sim(Policy::Proximity);
    for pos in [Pos(1.0, 1.0), Pos(100.0, 1.0), Pos(50.0, 51.0)] {
        let t = s.add_target(group(), KEY, pos);
        s.register(t, true);
    }
    s.run_for(5 * SEC);
    let before = s.sent_by_kind[COUNT_REPORT];
    s.run_for(30 * SEC); // ten refresh periods of 3 s
    let reports = s.sent_by_kind[COUNT_REPORT] - before;
    // 3 JAPs × 4 RAPs × 10 periods (a JAP that is its own RAP sends itself nothing).
    assert!((90..=120).contains(&reports), "{reports} reports");
    let kinds: u64 = s.sent_by_kind.iter().take(KINDS).sum();
    assert!(kinds > reports);
}

/// The shipped soft-state periods (30 s refresh, 100 s expiry), not the
/// simulation's short ones: what a false death costs in a real deployment.
fn shipped_refresh(policy: Policy) -> impl Fn(&mut pias::proxy::ProxyConfig) {
    move |cfg| {
        tune(policy)(cfg);
        cfg.report_refresh = 30 * SEC;
        cfg.report_expiry = 100 * SEC;
    }
}

#[test]
fn a_refuted_false_death_keeps_the_japs_rap_entries() {
    let mut s = Sim::new(7, &pops(), shipped_refresh(Policy::Proximity));
    s.run_for(2 * SEC);
    let (t, jap) = s.one_member(group(), KEY, Pos(50.0, 1.0));
    assert_eq!(reached_from_every_pop(&mut s, t), 5);
    // Proxy 1 (POP 0 watches POP 1) loses the JAP for a second: it declares
    // it dead, everyone believes it, the JAP refutes.
    s.cut(1, jap);
    s.run_for(SEC);
    s.heal();
    s.run_for(2 * SEC);
    assert!((1..=10).all(|p| s.proxy(p).unwrap().peer_up(jap)));
    assert!(s.proxy(jap).unwrap().counters().membership.refutations >= 1);
    for r in s.proxy(jap).unwrap().raps_of(&group()) {
        assert_eq!(
            s.proxy(r).unwrap().rap_entries(&group()),
            vec![(jap, 1)],
            "RAP {r} lost the JAP"
        );
    }
    assert_eq!(
        reached_from_every_pop(&mut s, t),
        5,
        "well before a refresh"
    );
}

#[test]
fn a_jap_falsely_declared_dead_gets_new_flows_again_once_believed_up() {
    let mut s = Sim::new(7, &pops(), shipped_refresh(Policy::Load));
    s.run_for(2 * SEC);
    let a = s.add_target(group(), KEY, Pos(50.0, 1.0));
    let b = s.add_target(group(), KEY, Pos(0.0, 51.0));
    s.register(a, true);
    s.register(b, true);
    s.run_for(2 * SEC);
    let jap_a = s.anycast(&Pos(50.0, 1.0)).unwrap();
    let send = |s: &mut Sim, base: f64| {
        let (ra, rb) = (s.targets[a].received.len(), s.targets[b].received.len());
        for i in 0..200 {
            let c = s.add_client(Pos(0.5, base + i as f64 * 0.001));
            s.client_send(c, group(), b"x");
        }
        s.run_for(SEC);
        (
            s.targets[a].received.len() - ra,
            s.targets[b].received.len() - rb,
        )
    };
    let before = send(&mut s, 0.5);
    assert!(before.0 > 50 && before.1 > 50, "{before:?}");
    s.cut(1, jap_a);
    s.run_for(SEC);
    s.heal();
    s.run_for(3 * SEC);
    let after = send(&mut s, 0.6);
    assert!(after.0 > 50, "A gets no new flows: {after:?}");
}

#[test]
fn a_crash_loop_is_not_damped_like_a_flap() {
    let mut s = Sim::new(7, &pops(), tune(Policy::Proximity));
    s.run_for(3 * SEC);
    let mut times = Vec::new();
    for _ in 0..5 {
        s.crash(10);
        let mut waited = 0;
        while s.proxy(2).unwrap().peer_up(10) && waited < 60 * SEC {
            s.run_for(50 * MS);
            waited += 50 * MS;
        }
        times.push(waited / MS);
        s.run_for(SEC);
        s.start(10);
        s.run_for(3 * SEC);
    }
    assert!(
        times.iter().all(|&t| t <= times[0] + 200),
        "detection times {times:?} ms"
    );
}

#[test]
fn load_beyond_eight_japs_reaches_every_jap_in_proportion() {
    // Forty POPs of one proxy (forty IAPs, each drawing its own sample of
    // 8); twelve JAPs with 1, 2 or 3 members.
    let pops: Vec<(Pos, usize)> = (0..40)
        .map(|i| (Pos(f64::from(i % 8) * 30.0, f64::from(i / 8) * 30.0), 1))
        .collect();
    let mut s = Sim::new(11, &pops, tune(Policy::Load));
    s.run_for(2 * SEC);
    let mut members: Vec<(usize, u32)> = Vec::new();
    for (i, (p, _)) in pops.iter().take(12).enumerate() {
        let weight = (i % 3) as u32 + 1;
        for k in 0..weight {
            let t = s.add_target(
                group(),
                KEY,
                Pos(p.0 + 0.1, p.1 + 0.1 + f64::from(k) * 0.01),
            );
            s.register(t, true);
            members.push((t, weight));
        }
    }
    s.run_for(2 * SEC);
    for i in 0..4000 {
        let p = pops[i % 40].0;
        let c = s.add_client(Pos(p.0 + 1.0, p.1 + (i / 14) as f64 * 0.001));
        s.client_send(c, group(), b"x");
    }
    s.run_for(2 * SEC);
    // Per JAP (the POP of its members): packets per member.
    let mut per_weight: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut per_jap: HashMap<(u32, u64), usize> = HashMap::new();
    for &(t, w) in &members {
        let key = (
            w,
            s.targets[t].pos.0.to_bits() ^ s.targets[t].pos.1.floor().to_bits(),
        );
        *per_jap.entry(key).or_default() += s.targets[t].received.len();
    }
    for ((w, _), n) in per_jap {
        per_weight.entry(w).or_default().push(n);
    }
    let total: usize = per_weight.values().flatten().sum();
    assert_eq!(total, 4000);
    assert!(
        per_weight.values().flatten().all(|&n| n > 0),
        "a JAP beyond the first eight got nothing: {per_weight:?}"
    );
    // Each weight class's share within a quarter of its fair share (1/24,
    // 2/24, 3/24 per JAP): counts are not weighed twice.
    for (w, ns) in &per_weight {
        let share = ns.iter().sum::<usize>() as f64 / ns.len() as f64 / total as f64;
        let fair = f64::from(*w) / 24.0;
        assert!(
            (share - fair).abs() < fair / 4.0 && ns.iter().all(|&n| n > 0),
            "weight {w}: share {share:.4}, fair {fair:.4} ({per_weight:?})"
        );
    }
}

#[test]
fn japs_that_gain_members_later_get_their_share_from_caching_iaps() {
    let mut s = sim(Policy::Load);
    let a = s.add_target(group(), KEY, Pos(0.0, 1.0));
    s.register(a, true);
    s.run_for(2 * SEC);
    // Every POP's IAP caches a list with A alone.
    for i in 0..50 {
        let p = pops()[i % 5].0;
        let c = s.add_client(Pos(p.0 + 1.0, p.1 + i as f64 * 0.001));
        s.client_send(c, group(), b"warm");
    }
    s.run_for(2 * SEC);
    // B gains five members; the IAPs' lists are refreshed while in use.
    let bs: Vec<usize> = (0..5)
        .map(|k| {
            let b = s.add_target(group(), KEY, Pos(100.0, 1.0 + f64::from(k) * 0.01));
            s.register(b, true);
            b
        })
        .collect();
    for round in 0..20 {
        s.run_for(SEC);
        let p = pops()[round % 5].0;
        let c = s.add_client(Pos(p.0 + 1.5, p.1 + round as f64 * 0.001));
        s.client_send(c, group(), b"keep-alive");
    }
    s.run_for(5 * SEC);
    let ra = s.targets[a].received.len();
    let rb: usize = bs.iter().map(|&b| s.targets[b].received.len()).sum();
    for i in 0..600 {
        let p = pops()[i % 5].0;
        let c = s.add_client(Pos(p.0 + 2.0, p.1 + i as f64 * 0.001));
        s.client_send(c, group(), b"new");
    }
    s.run_for(2 * SEC);
    let na = s.targets[a].received.len() - ra;
    let nb: usize = bs
        .iter()
        .map(|&b| s.targets[b].received.len())
        .sum::<usize>()
        - rb;
    assert_eq!(na + nb, 600);
    let share = nb as f64 / 600.0;
    assert!(
        (share - 5.0 / 6.0).abs() < 0.06,
        "B has 5 of 6 members but got {nb} of 600 new clients (A {na})"
    );
}
