//! Larger deployments: 1,000 proxies end to end, and the prediction error of
//! the Vivaldi coordinates against the simulated RTTs.

use pias::addr::Group;
use pias::proxy::{GroupConfig, Policy, ProxyConfig, MS, SEC};
use pias::ring::mix64;
use pias::wire::Key;
use pias_sim::{Pos, Sim};

const KEY: Key = pias_sim::GROUP_KEY;

fn group(i: u8) -> Group {
    pias_sim::udp_group(i)
}

fn small(cfg: &mut ProxyConfig) {
    for i in 0..4 {
        cfg.groups.push(GroupConfig {
            group: group(i),
            key: KEY,
            policy: Policy::Proximity,
            band_pct: 10,
        });
    }
    cfg.max_peers = 1024;
    cfg.max_groups = 16;
    cfg.max_flows = 64;
    cfg.max_pending = 16;
    cfg.tx_queue = 2048;
    cfg.heartbeat = 200 * MS;
    cfg.peer_dead = 700 * MS;
    cfg.target_ping = 300 * MS;
    cfg.lookup_timeout = 300 * MS;
    cfg.rtt_probe = 500 * MS;
}

/// Cluster positions scattered over a 200 x 100 ms plane.
fn scattered(n: usize, per: usize, seed: u64) -> Vec<(Pos, usize)> {
    let mut r = seed;
    (0..n)
        .map(|_| {
            r = mix64(r + 1);
            let x = (r % 20_000) as f64 / 100.0;
            r = mix64(r + 1);
            let y = (r % 10_000) as f64 / 100.0;
            (Pos(x, y), per)
        })
        .collect()
}

#[test]
fn a_thousand_proxies_serve_groups_and_survive_a_jap_failure() {
    let mut s = Sim::new(11, &scattered(250, 4, 5), small);
    assert_eq!(s.proxies(), 1000);
    s.run_for(SEC);
    let mut targets = Vec::new();
    for g in 0..4u8 {
        for k in 0..3 {
            let t = s.add_target(
                group(g),
                KEY,
                Pos(20.0 + 50.0 * k as f64, 10.0 + 20.0 * g as f64),
            );
            s.register(t, true);
            targets.push(t);
        }
    }
    s.run_for(SEC);
    assert!(targets.iter().all(|&t| s.targets[t].acks == 1));
    let clients: Vec<usize> = (0..20)
        .map(|i| s.add_client(Pos(10.0 * i as f64, 50.0)))
        .collect();
    for (i, &c) in clients.iter().enumerate() {
        s.client_send(c, group((i % 4) as u8), b"hello");
    }
    s.run_for(SEC);
    let delivered: usize = targets.iter().map(|&t| s.targets[t].received.len()).sum();
    assert_eq!(delivered, 20);
    // Kill the JAP of the first target; its group's clients fail over.
    let jap = s.anycast(&s.targets[targets[0]].pos).unwrap();
    s.crash(jap);
    s.run_for(3 * SEC);
    for (i, &c) in clients.iter().enumerate() {
        s.client_send(c, group((i % 4) as u8), b"again");
    }
    s.run_for(2 * SEC);
    let delivered: usize = targets.iter().map(|&t| s.targets[t].received.len()).sum();
    assert_eq!(
        delivered, 40,
        "every packet after the failure found a live target"
    );
}

#[test]
fn vivaldi_predicts_rtt_within_a_modest_error() {
    let mut s = Sim::new(3, &scattered(60, 2, 9), |cfg| {
        small(cfg);
        cfg.rtt_probe = 250 * MS;
    });
    s.run_for(60 * SEC);
    let n = s.proxies() as u32;
    let mut errors = Vec::new();
    for a in 1..=n {
        for b in (a + 1)..=n {
            let (ca, cb) = (s.proxy(a).unwrap().coord(), s.proxy(b).unwrap().coord());
            let predicted = f64::from(pias::proximity::distance(&ca, &cb));
            let truth = s.rtt_ms(a, b);
            errors.push((predicted - truth).abs() / truth);
        }
    }
    errors.sort_by(|x, y| x.total_cmp(y));
    let median = errors[errors.len() / 2];
    let p90 = errors[errors.len() * 9 / 10];
    println!(
        "vivaldi over {} pairs: median relative error {:.3}, 90th percentile {:.3}",
        errors.len(),
        median,
        p90
    );
    // Measured: median 0.022, 90th percentile 0.122 (deterministic for this
    // seed). Bounds at about twice that: a Vivaldi step or error weight gone
    // wrong fails them, where the old bound of 0.25 let the median grow 11×.
    assert!(median < 0.05, "median relative error {median}");
    assert!(p90 < 0.25, "90th percentile relative error {p90}");
}
