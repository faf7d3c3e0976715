//! Membership and proximity overhead (beyond the paper): messages per second
//! per proxy in steady state and per proxy failure, and memory per proxy, for
//! deployments of 1,000–20,000 unchanged `pias::Proxy` instances.

use pias::proxy::{ProxyConfig, SEC};
use pias::wire::{KINDS, KIND_NAMES};
use pias_sim::{Pos, Sim};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HEARTBEAT: usize = 12;
const NEWS: usize = 13;
const RTT_PROBE: usize = 14;
const RTT_REPLY: usize = 15;

/// What one deployment size measured.
#[derive(Clone, Debug, Default)]
pub struct Overhead {
    pub proxies: usize,
    pub cluster_size: usize,
    /// Steady state, per proxy per second.
    pub heartbeat_per_s: f64,
    pub rtt_per_s: f64,
    /// Messages per proxy caused by one proxy's death (news and its re-flood).
    pub news_per_failure: f64,
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

/// Default protocol timers (heartbeat 1 s, dead after 3.5 s, RTT probe every
/// 30 s, 2 watched clusters); the peer table sized for `proxies`; the group,
/// flow and lookup tables small (no groups run here) and a 64-slot send queue
/// (a heartbeat round is 29 messages; floods do not queue), so that 20,000
/// proxies fit in one host's memory.
pub fn tune(cfg: &mut ProxyConfig, proxies: usize) {
    cfg.max_peers = proxies;
    cfg.tx_queue = 64;
    cfg.max_groups = 16;
    cfg.max_flows = 64;
    cfg.max_pending = 16;
}

/// Runs `proxies` proxies in POPs of `cluster_size` for `steady_secs`
/// (after a 5 s warm-up), then kills one and runs 10 s more. `heap_bytes`
/// reads the process's allocated bytes (the caller's counting allocator).
pub fn run(
    proxies: usize,
    cluster_size: usize,
    steady_secs: u64,
    seed: u64,
    heap_bytes: &dyn Fn() -> usize,
) -> Result<Overhead, String> {
    if proxies < 2 {
        return Err(format!(
            "a failure needs at least 2 proxies (got {proxies})"
        ));
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
    let before = heap_bytes();
    let mut sim = Sim::new(seed, &pops, |cfg| tune(cfg, proxies));
    let after = heap_bytes();
    let shared_bytes = sim.roster().heap_bytes();
    let mut o = Overhead {
        proxies,
        cluster_size,
        shared_bytes,
        reserved_per_proxy: after.saturating_sub(before).saturating_sub(shared_bytes) as f64
            / proxies as f64,
        ..Overhead::default()
    };
    sim.run_for(5 * SEC);
    let k0 = sim.sent_by_kind;
    sim.run_for(steady_secs * SEC);
    let k1 = sim.sent_by_kind;
    let per = |k: usize| (k1[k] - k0[k]) as f64 / (proxies as f64 * steady_secs as f64);
    o.heartbeat_per_s = per(HEARTBEAT);
    o.rtt_per_s = per(RTT_PROBE) + per(RTT_REPLY);
    // One death, at random; its news is every News message from now on.
    let victim = rng.random_range(1..=proxies as u32);
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
    o.news_per_failure = (sim.sent_by_kind[NEWS] - k1[NEWS]) as f64 / (proxies - 1) as f64;
    o.informed = informed;
    o.informed_within_s = (informed_at - crash_at) as f64 / SEC as f64;
    o.by_kind = sim.sent_by_kind;
    o.refusals = (1..=proxies as u32)
        .filter_map(|p| sim.proxy(p))
        .map(|p| {
            let c = p.counters();
            c.membership.floods_refused + c.membership.peers_refused + c.wire.tx_queue_full
        })
        .sum();
    Ok(o)
}
