//! Invariants over random scenarios (proptest): exactly-once delivery to a
//! live target, never to the sender, nothing for a target detected down, RAP
//! counts within the band of the truth, and no input sequence panics.

use pias::addr::Group;
use pias::proxy::{GroupConfig, Policy, ProxyConfig, MS, SEC};
use pias::wire::Key;
use pias_sim::{Pos, Sim};
use proptest::prelude::*;

const KEY: Key = pias_sim::GROUP_KEY;

fn group() -> Group {
    pias_sim::udp_group(10)
}

fn tune(cfg: &mut ProxyConfig) {
    cfg.groups.push(GroupConfig {
        group: group(),
        key: KEY,
        policy: Policy::Proximity,
        band_pct: 20,
    });
    pias_sim::fast_timers(cfg);
}

fn world(seed: u64) -> Sim {
    let clusters = [
        (Pos(0.0, 0.0), 2),
        (Pos(60.0, 0.0), 2),
        (Pos(0.0, 60.0), 2),
        (Pos(60.0, 60.0), 2),
    ];
    let mut s = Sim::new(seed, &clusters, tune);
    s.run_for(SEC);
    s
}

fn pos() -> impl Strategy<Value = Pos> {
    (0.0..60.0f64, 0.0..60.0f64).prop_map(|(x, y)| Pos(x, y))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn each_packet_reaches_exactly_one_live_target_never_its_sender(
        seed in any::<u64>(),
        targets in proptest::collection::vec(pos(), 2..5),
        clients in proptest::collection::vec(pos(), 1..6),
        p2p in any::<bool>(),
    ) {
        let mut s = world(seed);
        let ts: Vec<usize> = targets.iter().map(|p| s.add_target(group(), KEY, *p)).collect();
        for &t in &ts {
            s.register(t, true);
        }
        s.run_for(SEC);
        let cs: Vec<usize> = clients.iter().map(|p| s.add_client(*p)).collect();
        let mut sent = 0u32;
        for round in 0..3u32 {
            for &c in &cs {
                s.client_send(c, group(), &(sent).to_be_bytes());
                sent += 1;
            }
            if p2p {
                s.target_send(ts[0], group(), &(1_000_000 + round).to_be_bytes());
            }
            s.run_for(300 * MS);
        }
        s.run_for(SEC);
        let mut seen = std::collections::HashMap::new();
        for (i, t) in s.targets.iter().enumerate() {
            for (client, payload) in &t.received {
                prop_assert_ne!(*client, t.ep, "target {} got its own packet", i);
                *seen.entry(payload.clone()).or_insert(0) += 1;
            }
        }
        for id in 0..sent {
            prop_assert_eq!(seen.get(id.to_be_bytes().as_slice()).copied(), Some(1), "packet {} not delivered exactly once", id);
        }
        if p2p {
            for round in 0..3u32 {
                prop_assert_eq!(seen.get((1_000_000 + round).to_be_bytes().as_slice()).copied(), Some(1));
            }
        }
    }

    #[test]
    fn a_target_detected_down_gets_nothing_afterwards(seed in any::<u64>(), victim in 0usize..3) {
        let mut s = world(seed);
        let ts: Vec<usize> = (0..3).map(|i| s.add_target(group(), KEY, Pos(5.0 + i as f64 * 20.0, 5.0))).collect();
        for &t in &ts {
            s.register(t, true);
        }
        s.run_for(SEC);
        // Hung: alive and receiving, but silent to pings and to clients.
        s.targets[ts[victim]].answers_pings = false;
        s.targets[ts[victim]].echo = false;
        s.run_for(2 * SEC);
        let before = s.targets[ts[victim]].received.len();
        let c = s.add_client(Pos(30.0, 30.0));
        for i in 0..10u8 {
            s.client_send(c, group(), &[i]);
        }
        s.run_for(SEC);
        // It would have received any packet sent to it: none may come.
        prop_assert_eq!(s.targets[ts[victim]].received.len(), before);
        // And the packets went to the other members.
        let others: usize = ts.iter().enumerate().filter(|(i, _)| *i != victim)
            .map(|(_, &t)| s.targets[t].received.len()).sum();
        prop_assert_eq!(others, 10);
    }

    #[test]
    fn rap_counts_stay_within_the_band_of_the_truth(
        seed in any::<u64>(),
        ops in proptest::collection::vec((any::<bool>(), 0usize..12), 1..40),
    ) {
        let mut s = world(seed);
        let ts: Vec<usize> = (0..12).map(|i| s.add_target(group(), KEY, Pos(1.0 + (i % 3) as f64 * 0.1, 1.0 + i as f64 * 0.05))).collect();
        for (join, t) in ops {
            s.register(ts[t], join);
            s.run_for(50 * MS);
        }
        s.run_for(SEC);
        let jap = s.anycast(&Pos(1.0, 1.0)).unwrap();
        let truth = s.proxy(jap).unwrap().live_targets(&group()) as f64;
        for r in s.proxy(jap).unwrap().raps_of(&group()) {
            let held: Vec<_> = s.proxy(r).unwrap().rap_entries(&group());
            match held.iter().find(|(j, _)| *j == jap) {
                Some(&(_, count)) => {
                    let count = f64::from(count);
                    prop_assert!((count - truth).abs() <= count * 0.2 + 1.0, "RAP {} holds {} for truth {}", r, count, truth);
                }
                None => prop_assert_eq!(truth, 0.0, "RAP {} lacks the JAP", r),
            }
        }
    }

    #[test]
    fn no_sequence_of_events_panics(
        seed in any::<u64>(),
        ops in proptest::collection::vec((0u8..9, any::<u8>()), 1..60),
    ) {
        let mut s = world(seed);
        let ts: Vec<usize> = (0..4).map(|i| s.add_target(group(), KEY, Pos(i as f64 * 15.0, 10.0))).collect();
        let cs: Vec<usize> = (0..3).map(|i| s.add_client(Pos(50.0, i as f64 * 20.0))).collect();
        for &t in &ts {
            s.set_watchdog(t, 700 * MS);
        }
        s.loss = 0.05;
        for (op, arg) in ops {
            let a = usize::from(arg);
            match op {
                0 => s.register(ts[a % 4], true),
                1 => s.register(ts[a % 4], false),
                2 => { s.client_send(cs[a % 3], group(), &[arg]); }
                3 => s.crash((a % s.proxies()) as u32 + 1),
                4 => s.start((a % s.proxies()) as u32 + 1),
                5 => s.targets[ts[a % 4]].alive = !s.targets[ts[a % 4]].alive,
                6 => s.send_from_target(ts[a % 4], vec![arg; a % 200]),
                7 => s.cut((a % s.proxies()) as u32 + 1, ((a / 7) % s.proxies()) as u32 + 1),
                _ => s.partition((a % 4) as u32, ((a / 4) % 4) as u32),
            }
            s.run_for(u64::from(arg) * MS);
        }
        s.heal();
        s.run_for(2 * SEC);
    }
}
