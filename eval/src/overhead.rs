//! Membership, proximity and soft-state overhead (beyond the paper): messages
//! per second per proxy in steady state and per proxy failure, and memory per
//! proxy, for deployments of 1,000–20,000 unchanged `pias::Proxy` instances,
//! each the JAP of a few groups with a member, so that the count reports'
//! periodic refresh is part of the steady state.

use crate::sizing;
use pias::addr::{Group, Ipv4, Transport};
use pias::proxy::{Counters, GroupConfig, Policy, ProxyConfig, SEC};
use pias::wire::{Key, ProxyId, KINDS, KIND_NAMES};
use pias_sim::{Pos, Sim, GROUP_KEY};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const COUNT_REPORT: usize = 6;
const REPORT_ACK: usize = 7;
const HEARTBEAT: usize = 12;
const NEWS: usize = 13;
const RTT_PROBE: usize = 14;
const RTT_REPLY: usize = 15;

/// Members join during the first `JOIN_SECS` of the 5 s warm-up, so their
/// first reports are acknowledged before the steady state starts and every
/// (group, JAP) refresh falls inside it once per refresh period.
const WARM_UP_SECS: u64 = 5;
const JOIN_SECS: u64 = 4;

/// RTT probe partners a proxy hears from during a run at the probe period
/// (45 s: about 2 it probes, and about as many that probe it, Poisson), with
/// a wide margin; the start-up probes a second apart come on top
/// (`probe_peers`).
pub const PROBE_PEERS: usize = 16;

/// RTT probe partners a proxy of `cfg` hears from during a run: the start-up
/// probes it sends and about as many it receives, and `PROBE_PEERS`.
pub fn probe_peers(cfg: &ProxyConfig) -> usize {
    PROBE_PEERS + 2 * usize::from(cfg.rtt_warmup_probes)
}

/// The groups of the experiment: every proxy is the JAP of `jap_groups` of
/// them, with one member each; each group has `japs_per_group` JAPs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Groups {
    pub jap_groups: usize,
    pub japs_per_group: usize,
}

impl Groups {
    /// Groups in the deployment: every proxy's `jap_groups`, `japs_per_group` to a group.
    pub fn count(&self, proxies: usize) -> usize {
        (proxies * self.jap_groups).div_ceil(self.japs_per_group.max(1))
    }

    /// The groups proxy index `i` (id `i + 1`) is the JAP of: `(i·G + j) mod M`
    /// for j < G, so each group gets its JAPs from all over the deployment.
    pub fn of(&self, proxies: usize, i: usize) -> impl Iterator<Item = usize> {
        let m = self.count(proxies).max(1);
        let g = self.jap_groups;
        (0..g).map(move |j| (i * g + j) % m)
    }
}

/// Group number `m`'s anycast address (10.9.0.0/16, port 53).
pub fn group(m: usize) -> Group {
    Group {
        ip: Ipv4([10, 9, (m >> 8) as u8, m as u8]),
        port: 53,
        transport: Transport::Udp,
    }
}

/// What one deployment size measured.
#[derive(Clone, Debug, Default)]
pub struct Overhead {
    pub proxies: usize,
    pub cluster_size: usize,
    pub groups: Groups,
    /// Steady state, per proxy per second.
    pub heartbeat_per_s: f64,
    pub rtt_per_s: f64,
    /// Steady state: CountReport + ReportAck messages on the network, per
    /// proxy per second (the soft state's refresh), and the formula
    /// G × k × 2 / report_refresh (a JAP's G groups, k RAPs each, a report
    /// and its ack per refresh period).
    pub refresh_per_s: f64,
    pub refresh_formula_per_s: f64,
    /// Share of the reports a JAP sent to itself (it is one of the group's
    /// RAPs): counted by the core, not on the network.
    pub self_report_share: f64,
    /// Count reports a proxy received as RAP per second: mean over proxies,
    /// and the busiest; and the JAP entries the busiest held.
    pub rap_reports_mean_per_s: f64,
    pub rap_reports_max_per_s: f64,
    pub rap_entries_max: usize,
    /// Report retries in the steady state (expected 0: no loss).
    pub report_retries: u64,
    /// Messages per proxy caused by one proxy's death (news and its re-flood).
    pub news_per_failure: f64,
    /// CountReport + ReportAck messages in the whole deployment caused by
    /// the death (the dead RAP's JAPs report to its successor), and the JAP
    /// entries the dead proxy held as RAP.
    pub report_msgs_after_failure: u64,
    pub victim_rap_entries: usize,
    /// Live proxies that learnt of the death, and how long the last one took (s).
    pub informed: usize,
    pub informed_within_s: f64,
    /// Heap reserved per proxy (tables sized for the deployment), bytes.
    pub reserved_per_proxy: f64,
    /// Heap shared by all proxies of the process (roster and ring), bytes.
    pub shared_bytes: usize,
    /// Messages of every kind sent in the whole run.
    pub by_kind: [u64; KINDS],
    /// Refusals and queue overflows summed over all proxies (expected 0).
    pub refusals: u64,
    /// Of them, messages refused for want of peer state (`max_peer_state`
    /// too small); and peers forgotten to make room (0: sized so none need be).
    pub peers_refused: u64,
    pub peers_forgotten: u64,
}

impl Overhead {
    pub fn by_kind_text(&self) -> String {
        KIND_NAMES
            .iter()
            .zip(self.by_kind.iter())
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a proxy holds as RAP: groups and JAP entries, before and after the
/// death of `victim` (its groups move to the next proxy on the ring).
#[derive(Clone, Copy, Debug, Default)]
pub struct RapLoad {
    pub groups: usize,
    pub entries: usize,
}

/// Each proxy's RAP load (index = id − 1), the most of before and after the
/// death of `victim`, and the load before it alone.
fn rap_loads(
    pops: &[(Pos, usize)],
    proxies: usize,
    k: usize,
    groups: &Groups,
    victim: ProxyId,
) -> (Vec<RapLoad>, Vec<RapLoad>) {
    let roster = sizing::roster(pops);
    let m = groups.count(proxies);
    let mut japs = vec![0usize; m];
    for i in 0..proxies {
        for g in groups.of(proxies, i) {
            japs[g] += 1;
        }
    }
    let mut before = vec![RapLoad::default(); proxies];
    let mut after = vec![RapLoad::default(); proxies];
    for (g, &n) in japs.iter().enumerate().filter(|(_, &n)| n > 0) {
        for (load, up) in [(&mut before, None), (&mut after, Some(victim))] {
            for r in sizing::raps(&roster, &group(g), k, |p| Some(p) != up) {
                let l = &mut load[r as usize - 1];
                l.groups += 1;
                l.entries += n;
            }
        }
    }
    let most = before
        .iter()
        .zip(&after)
        .map(|(b, a)| RapLoad {
            groups: b.groups.max(a.groups),
            entries: b.entries.max(a.entries),
        })
        .collect();
    (most, before)
}

/// Default protocol timers (heartbeat 150 ms, dead after 600 ms, RTT probe
/// every 30 s after 20 a second apart, 2 watched clusters, target health check every 2 s, count reports
/// retried after 1 s, refreshed every 30 s, expired after 100 s) and k = 4
/// RAPs. Tables sized for the deployment: the peer table for `proxies`; the
/// JAP's `jap_groups` groups, with one member each (and their keys); the RAP
/// tables for what this proxy holds before and after the death (`rap`); the
/// replay cache for the few joins; flow and lookup tables small, and a 64-slot
/// send queue (a heartbeat round is 29 messages; floods do not queue); the
/// peer state for the peers this proxy hears from (`probe_peers`), so that
/// 20,000 proxies fit in one host's memory.
pub fn tune(
    cfg: &mut ProxyConfig,
    proxies: usize,
    cluster_size: usize,
    groups: &Groups,
    rap: RapLoad,
) {
    cfg.max_peers = proxies;
    cfg.tx_queue = 64;
    cfg.max_flows = 64;
    cfg.max_pending = 16;
    let mine: Vec<usize> = groups.of(proxies, cfg.id as usize - 1).collect();
    cfg.groups = mine
        .iter()
        .map(|&m| GroupConfig {
            group: group(m),
            key: GROUP_KEY,
            policy: Policy::Load,
            band_pct: 10,
        })
        .collect();
    cfg.max_groups = 16.max(mine.len()).max(rap.groups);
    cfg.max_targets = mine.len();
    cfg.max_targets_per_group = 1;
    cfg.max_japs_per_group = groups.japs_per_group.max(1);
    cfg.max_rap_entries = rap.entries;
    // Peer state, an upper bound on the peers it hears from in the run: its
    // watched POPs (heartbeats); as RAP, the JAPs of its entries (one peer
    // each at most); as JAP, its groups' k RAPs and, after the death, each
    // group's new one; RTT probe partners, both ways; and after the death
    // the dead proxy and the watchers that flood its news. No peer has to
    // be forgotten, and none may be refused (`refusals`, 0).
    let news = (cfg.watch_clusters + 1) * cluster_size.max(1);
    cfg.max_peer_state = sizing::peer_state(
        cfg,
        cluster_size,
        rap.entries + mine.len() * (cfg.k_raps + 1) + probe_peers(cfg) + news,
    );
    // Its joins all come in the warm-up: a replay cache of 60 per freshness
    // window per unit of rate.
    cfg.join_rate = (mine.len() as u32).div_ceil(60).max(1);
}

/// Heap a proxy of a deployment of `proxies` reserves in this experiment, on
/// average, and the heap shared by all (the roster): the memory per proxy
/// without simulating the deployment. The proxies differ only in their RAP
/// load (from the ring), so one proxy is built for each distinct load and
/// weighted by how many proxies carry it (before any death).
pub fn reserved_one(
    proxies: usize,
    cluster_size: usize,
    groups: &Groups,
    heap_bytes: &dyn Fn() -> usize,
) -> (usize, usize) {
    let cluster_size = cluster_size.max(1);
    let pops: Vec<(Pos, usize)> = (0..proxies.div_ceil(cluster_size))
        .map(|i| (Pos(0.0, 0.0), cluster_size.min(proxies - i * cluster_size)))
        .collect();
    let roster = Arc::new(sizing::roster(&pops));
    let k = ProxyConfig::new(1, 0, Key([0; 32])).k_raps;
    // No proxy has id 0: no death, the loads before it.
    let (_, loads) = rap_loads(&pops, proxies, k, groups, 0);
    let mut distinct: Vec<((usize, usize), usize)> = Vec::new();
    for l in &loads {
        match distinct
            .iter_mut()
            .find(|(x, _)| *x == (l.groups, l.entries))
        {
            Some((_, n)) => *n += 1,
            None => distinct.push(((l.groups, l.entries), 1)),
        }
    }
    let mut total = 0usize;
    for &((groups_held, entries), n) in &distinct {
        let mut cfg = ProxyConfig::new(1, 0, Key([0x42; 32]));
        let load = RapLoad {
            groups: groups_held,
            entries,
        };
        tune(&mut cfg, proxies, cluster_size, groups, load);
        total += n * sizing::reserved_bytes(cfg, &roster, heap_bytes);
    }
    (total / proxies.max(1), roster.heap_bytes())
}

/// Runs `proxies` proxies in POPs of `cluster_size`, each the JAP of
/// `groups.jap_groups` groups with one member (joining in the first 4 s of a
/// 5 s warm-up), for `steady_secs`, then kills one and runs 10 s more.
/// `heap_bytes` reads the process's allocated bytes (the caller's counting
/// allocator). With `steady_secs` a multiple of the refresh period (30 s),
/// every (group, JAP) refreshes the same number of times in the steady state.
pub fn run(
    proxies: usize,
    cluster_size: usize,
    groups: Groups,
    steady_secs: u64,
    seed: u64,
    heap_bytes: &dyn Fn() -> usize,
) -> Result<Overhead, String> {
    if proxies < 2 {
        return Err(format!(
            "a failure needs at least 2 proxies (got {proxies})"
        ));
    }
    if groups.jap_groups > 0 && !(1..=proxies).contains(&groups.japs_per_group) {
        return Err(format!(
            "a group needs 1 to {proxies} JAPs (got {})",
            groups.japs_per_group
        ));
    }
    if groups.count(proxies) > 1 << 16 {
        return Err(format!(
            "{} groups: at most 65,536 (fewer groups per proxy, or more JAPs per group)",
            groups.count(proxies)
        ));
    }
    if steady_secs == 0 {
        return Err("the steady state needs a length".into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6f76_6572);
    let cluster_size = cluster_size.max(1);
    let pops: Vec<(Pos, usize)> = (0..proxies.div_ceil(cluster_size))
        .map(|i| {
            let n = cluster_size.min(proxies - i * cluster_size);
            (
                Pos(rng.random::<f64>() * 100.0, rng.random::<f64>() * 100.0),
                n,
            )
        })
        .collect();
    // The death, at random, chosen now so the RAP tables can be sized for it.
    let victim = rng.random_range(1..=proxies as u32);
    let defaults = ProxyConfig::new(1, 0, Key([0; 32]));
    let k = defaults.k_raps;
    let refresh = defaults.report_refresh;
    let (rap_room, rap_before) = rap_loads(&pops, proxies, k, &groups, victim);
    let before = heap_bytes();
    let mut sim = Sim::new(seed, &pops, |cfg| {
        let room = rap_room[cfg.id as usize - 1];
        tune(cfg, proxies, cluster_size, &groups, room)
    });
    let after = heap_bytes();
    let shared_bytes = sim.roster().heap_bytes();
    let mut o = Overhead {
        proxies,
        cluster_size,
        groups,
        shared_bytes,
        reserved_per_proxy: after.saturating_sub(before).saturating_sub(shared_bytes) as f64
            / proxies as f64,
        refresh_formula_per_s: (groups.jap_groups * k * 2) as f64 / (refresh as f64 / SEC as f64),
        rap_entries_max: rap_before.iter().map(|l| l.entries).max().unwrap_or(0),
        victim_rap_entries: rap_before[victim as usize - 1].entries,
        ..Overhead::default()
    };
    // One member per (proxy, group), at its JAP's POP, joining at a random
    // time in the first JOIN_SECS; it answers the JAP's health checks.
    let start = sim.now;
    let mut joins: Vec<(u64, usize)> = Vec::with_capacity(proxies * groups.jap_groups);
    for i in 0..proxies {
        let id = i as ProxyId + 1;
        let pos = pops[sim.cluster_of(id) as usize].0;
        for m in groups.of(proxies, i) {
            let t = sim.add_target(group(m), GROUP_KEY, pos);
            sim.targets[t].via = Some(id);
            joins.push((rng.random_range(0..JOIN_SECS * SEC), t));
        }
    }
    joins.sort_unstable();
    for (at, t) in joins {
        sim.run_until(start + at);
        sim.register(t, true);
    }
    sim.run_until(start + WARM_UP_SECS * SEC);
    let counters = |sim: &Sim| -> Vec<Counters> {
        (1..=proxies as ProxyId)
            .map(|p| sim.proxy(p).map(|x| x.counters()).unwrap_or_default())
            .collect()
    };
    let k0 = sim.sent_by_kind;
    let c0 = counters(&sim);
    sim.run_for(steady_secs * SEC);
    let k1 = sim.sent_by_kind;
    let c1 = counters(&sim);
    let secs = steady_secs as f64;
    let per = |k: usize| (k1[k] - k0[k]) as f64 / (proxies as f64 * secs);
    o.heartbeat_per_s = per(HEARTBEAT);
    o.rtt_per_s = per(RTT_PROBE) + per(RTT_REPLY);
    o.refresh_per_s = per(COUNT_REPORT) + per(REPORT_ACK);
    let delta = |f: &dyn Fn(&Counters) -> u64| -> Vec<u64> {
        c0.iter().zip(&c1).map(|(a, b)| f(b) - f(a)).collect()
    };
    let sent: u64 = delta(&|c| c.jap.reports_sent).iter().sum();
    let on_wire = k1[COUNT_REPORT] - k0[COUNT_REPORT];
    o.self_report_share = if sent > 0 {
        1.0 - on_wire as f64 / sent as f64
    } else {
        0.0
    };
    let received = delta(&|c| c.rap.reports);
    o.rap_reports_mean_per_s = received.iter().sum::<u64>() as f64 / (proxies as f64 * secs);
    o.rap_reports_max_per_s = received.iter().copied().max().unwrap_or(0) as f64 / secs;
    o.report_retries = delta(&|c| c.jap.report_retries).iter().sum();
    let crash_at = sim.now;
    sim.crash(victim);
    let mut informed_at = crash_at;
    let mut informed = 0;
    for _ in 0..100 {
        sim.run_for(SEC / 10);
        let n = (1..=proxies as u32)
            .filter(|&p| p != victim)
            .filter(|&p| sim.proxy(p).is_some_and(|x| !x.peer_up(victim)))
            .count();
        if n > informed {
            informed = n;
            informed_at = sim.now;
        }
    }
    let after_crash = |k: usize| sim.sent_by_kind[k] - k1[k];
    o.news_per_failure = after_crash(NEWS) as f64 / (proxies - 1) as f64;
    o.report_msgs_after_failure = after_crash(COUNT_REPORT) + after_crash(REPORT_ACK);
    o.informed = informed;
    o.informed_within_s = (informed_at - crash_at) as f64 / SEC as f64;
    o.by_kind = sim.sent_by_kind;
    for p in (1..=proxies as u32).filter_map(|p| sim.proxy(p)) {
        o.peers_refused += p.counters().membership.peers_refused;
        o.peers_forgotten += p.counters().membership.peers_forgotten;
    }
    o.refusals = (1..=proxies as u32)
        .filter_map(|p| sim.proxy(p))
        .map(|p| {
            let c = p.counters();
            c.membership.floods_refused
                + c.membership.peers_refused
                + c.wire.tx_queue_full
                + c.jap.nack_capacity
                + c.jap.groups_refused
                + c.rap.refused
                + c.rap.expired
                + c.iap.refused
        })
        .sum();
    Ok(o)
}
