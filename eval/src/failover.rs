//! Failover seen by clients (beyond the paper): clients send to a group every
//! `PROBE` and the replies are timed while a JAP or a RAP of the group dies.
//! Default protocol timers throughout, so the figures are the appliance's.

use pias::addr::Group;
use pias::proxy::{GroupConfig, Policy, ProxyConfig, MS, SEC};
use pias::wire::ProxyId;
use pias_sim::{udp_group, Pos, Sim, GROUP_KEY};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How often each client sends, and the resolution of the reply clock.
pub const PROBE: u64 = 50 * MS;
const STEP: u64 = 10 * MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// The JAP serving the most clients.
    Jap,
    /// A RAP of the group that is not also a JAP.
    Rap,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Failover {
    /// JAP death: for each client the JAP served, the longest time without a
    /// reply around the death, less one probe interval (s).
    pub outages: Vec<f64>,
    /// RAP death: for each client that starts after the death (sending every
    /// PROBE until answered), the time from its first packet to its first
    /// reply (s); and the same before the death.
    pub first_reply_after: Vec<f64>,
    pub first_reply_before: Vec<f64>,
    /// Clients left without a reply: a dead JAP's clients that got none after
    /// the death, or new clients unanswered within 3 s.
    pub never: usize,
}

fn tune(cfg: &mut ProxyConfig) {
    cfg.groups = vec![GroupConfig {
        group: group(),
        key: GROUP_KEY,
        policy: Policy::Proximity,
        band_pct: 10,
    }];
}

pub fn group() -> Group {
    udp_group(7)
}

fn random_pos(rng: &mut ChaCha8Rng) -> Pos {
    Pos(rng.random::<f64>() * 100.0, rng.random::<f64>() * 100.0)
}

/// Simulated time the deployment runs before the experiment: 20 RTT probes
/// per proxy, so the Vivaldi coordinates the RAPs rank JAPs by have settled.
pub const WARM_UP: u64 = 600 * SEC;

/// 20 POPs of 3 proxies and 10 members at random places; returns the POPs too.
fn build(seed: u64) -> (Sim, Vec<Pos>, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6661_696c);
    let pops: Vec<(Pos, usize)> = (0..20).map(|_| (random_pos(&mut rng), 3)).collect();
    let mut sim = Sim::new(seed, &pops, tune);
    sim.run_for(WARM_UP);
    for _ in 0..10 {
        let pos = random_pos(&mut rng);
        let t = sim.add_target(group(), GROUP_KEY, pos);
        sim.register(t, true);
    }
    sim.run_for(2 * SEC);
    (sim, pops.into_iter().map(|(p, _)| p).collect(), rng)
}

/// Records replies that arrived since the last call at the current time (to STEP).
fn collect(sim: &Sim, clients: &[usize], replies: &mut [Vec<u64>], seen: &mut [usize]) {
    for &c in clients {
        let n = sim.clients[c].replies.len();
        for _ in seen[c]..n {
            replies[c].push(sim.now);
        }
        seen[c] = n;
    }
}

/// Sends from every client every PROBE for `secs`, recording reply times.
fn drive(sim: &mut Sim, secs: u64, replies: &mut [Vec<u64>], seen: &mut [usize]) {
    let all: Vec<usize> = (0..sim.clients.len()).collect();
    let end = sim.now + secs * SEC;
    let mut next_send = sim.now;
    while sim.now < end {
        if sim.now >= next_send {
            for &c in &all {
                sim.client_send(c, group(), b"probe");
            }
            next_send += PROBE;
        }
        sim.run_for(STEP);
        collect(sim, &all, replies, seen);
    }
}

/// One death of `victim` kind; deterministic for `seed`.
pub fn run(victim: Victim, seed: u64) -> Failover {
    match victim {
        Victim::Jap => jap_death(seed),
        Victim::Rap => rap_death(seed),
    }
}

fn jap_death(seed: u64) -> Failover {
    let clients = 60;
    let (mut sim, _, mut rng) = build(seed);
    for _ in 0..clients {
        let pos = random_pos(&mut rng);
        sim.add_client(pos);
    }
    let mut replies = vec![Vec::new(); clients];
    let mut seen = vec![0; clients];
    let mut out = Failover::default();
    drive(&mut sim, 5, &mut replies, &mut seen);
    // The busiest JAP: the proxy that delivered the most packets to targets.
    let Some(jap) = (1..=sim.proxies() as ProxyId)
        .filter_map(|p| sim.proxy(p).map(|x| (x.counters().jap.delivered, p)))
        .max()
        .filter(|&(d, _)| d > 0)
        .map(|(_, p)| p)
    else {
        return out;
    };
    // Its clients: those its members heard from during one more second.
    let members: Vec<usize> = (0..sim.targets.len())
        .filter(|&t| sim.anycast(&sim.targets[t].pos) == Some(jap))
        .collect();
    let marks: Vec<usize> = members
        .iter()
        .map(|&t| sim.targets[t].received.len())
        .collect();
    drive(&mut sim, 1, &mut replies, &mut seen);
    let served: Vec<usize> = (0..clients)
        .filter(|&c| {
            let ep = sim.clients[c].ep;
            members
                .iter()
                .zip(&marks)
                .any(|(&t, &m)| sim.targets[t].received[m..].iter().any(|(cl, _)| *cl == ep))
        })
        .collect();
    let crash_at = sim.now;
    sim.crash(jap);
    drive(&mut sim, 20, &mut replies, &mut seen);
    for c in served {
        let times: Vec<u64> = replies[c]
            .iter()
            .copied()
            .filter(|&t| t >= crash_at)
            .collect();
        let Some(&first) = times.first() else {
            out.never += 1;
            continue;
        };
        let longest = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain(core::iter::once(first - crash_at))
            .max()
            .unwrap_or(0);
        out.outages
            .push(longest.saturating_sub(PROBE) as f64 / SEC as f64);
    }
    out
}

fn rap_death(seed: u64) -> Failover {
    let (mut sim, pops, mut rng) = build(seed);
    let mut out = Failover::default();
    let Some(jap) = (1..=sim.proxies() as ProxyId)
        .find(|&p| sim.proxy(p).is_some_and(|x| x.live_targets(&group()) > 0))
    else {
        return out;
    };
    let raps = sim
        .proxy(jap)
        .map(|p| p.raps_of(&group()))
        .unwrap_or_default();
    let Some(&rap) = raps
        .iter()
        .find(|&&r| sim.proxy(r).is_some_and(|x| x.live_targets(&group()) == 0))
    else {
        return out;
    };
    // New clients, each at a different POP (so its IAP has no cached list):
    // half start before the death, half in the 5 s after it, 0.5 s apart.
    let mut order: Vec<usize> = (0..pops.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let half = order.len() / 2;
    for (i, &pop) in order.iter().enumerate() {
        let after = i >= half;
        if i == half {
            sim.crash(rap);
        }
        let start = sim.now + if after { SEC / 2 } else { SEC / 10 };
        sim.run_until(start);
        let c = sim.add_client(pops[pop]);
        // Like every client here it sends every PROBE, until its first reply:
        // a lookup that times out goes to the next RAP without the packet
        // (the dead RAP may have delivered it), so a later packet is answered.
        let deadline = start + 3 * SEC;
        let mut next_send = start;
        while sim.now < deadline && sim.clients[c].replies.is_empty() {
            if sim.now >= next_send {
                sim.client_send(c, group(), b"first");
                next_send += PROBE;
            }
            sim.run_for(STEP);
        }
        if sim.clients[c].replies.is_empty() {
            out.never += 1;
            continue;
        }
        let d = (sim.now - start) as f64 / SEC as f64;
        if after {
            out.first_reply_after.push(d);
        } else {
            out.first_reply_before.push(d);
        }
    }
    out
}
