//! Group dynamics (paper §4.2, Figs 6 and 7): one large churning group over N
//! unchanged `pias::Proxy` state machines in `pias-sim`, counting JAP→RAP reports.
//!
//! The workload (arrivals, sessions, bound) is `crate::workload`.

use crate::sizing;
use crate::workload::{schedule, Workload};
use pias::proxy::{GroupConfig, Policy, ProxyConfig, MS, SEC};
use pias::wire::{Key, ProxyId};
use pias_sim::{udp_group, Pos, Sim, GROUP_KEY};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Header kind of a count report (JAP→RAP) and of its acknowledgement.
const COUNT_REPORT: usize = 6;
const REPORT_ACK: usize = 7;

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// JAP→RAP count reports sent in each minute (every copy to every RAP).
    pub reports_per_minute: Vec<u64>,
    /// Group size at the end of each minute.
    pub size_per_minute: Vec<usize>,
    pub reports: u64,
    pub report_acks: u64,
    pub joins: usize,
    pub leaves: usize,
    pub turned_away: usize,
    /// Members the JAPs acknowledged / refused.
    pub acks: u64,
    pub nacks: u64,
    /// Count reports re-sent for want of an ack, and periodic refreshes, over
    /// all JAPs (both among `reports`; expected 0 here: no loss, and the
    /// refresh period is beyond the event).
    pub report_retries: u64,
    pub report_refreshes: u64,
    /// Messages refused because the receiver's peer-state table was full
    /// (an error: `tune` sizes it), and peers forgotten to make room (0:
    /// it is sized so that none need be).
    pub peers_refused: u64,
    pub peers_forgotten: u64,
    /// Sum of the counts the first RAP holds at the end, and the true size.
    pub rap_total: u64,
    pub final_size: usize,
    pub raps: usize,
}

impl RunResult {
    /// Mean JAP→RAP messages per second over the event.
    pub fn mean_per_sec(&self) -> f64 {
        self.reports as f64 / (self.reports_per_minute.len().max(1) as f64 * 60.0)
    }
}

/// Configuration of every proxy in the experiment: one group with report
/// band `inaccuracy_pct`, 4 RAPs, tables sized for the run (RAP entries only
/// on the group's RAPs, `rap`), and membership, proximity, health-check and
/// soft-state refresh timers beyond the event: Figs 6–7 count the reports
/// that group dynamics cause, as the paper does; heartbeats, probes and
/// refreshes are measured on their own in `overhead`, and members leave
/// explicitly. Report retries keep the default (1 s): without loss there
/// are none (`RunResult::report_retries`).
pub fn tune(cfg: &mut ProxyConfig, proxies: usize, w: &Workload, inaccuracy_pct: u8, rap: bool) {
    let quiet = (w.duration_secs + 3600) * SEC;
    cfg.groups = vec![GroupConfig {
        group: udp_group(1),
        key: GROUP_KEY,
        policy: Policy::Load,
        band_pct: inaccuracy_pct,
    }];
    cfg.k_raps = 4;
    cfg.max_peers = proxies;
    cfg.max_groups = 4;
    cfg.max_flows = 16;
    cfg.max_pending = 16;
    cfg.tx_queue = 64;
    cfg.max_japs_per_group = proxies;
    // Room for four times the even share of the largest group, and never under 64.
    cfg.max_targets_per_group = (4 * w.max_group / proxies.max(1)).max(64);
    // One group: the target pool is that group's room.
    cfg.max_targets = cfg.max_targets_per_group;
    // A RAP holds one entry per JAP; more than twice that, so its table stays
    // under half full and it never widens the band (`band_for_load`).
    cfg.max_rap_entries = if rap { 2 * proxies + 2 } else { 0 };
    // Peer state: a RAP hears from every JAP of the group, here every proxy,
    // so it keeps the roster; any other proxy keeps its watched peers (one
    // heartbeat round at start, and the core holds them from the start) and
    // the group's k RAPs that ack its reports: no probes, no deaths, no
    // lookups. (With the first RTT probe inside the event, at a quarter of
    // `quiet`, a probed JAP would refuse its prober: 1,826 refusals at 1,000
    // proxies and 0%.)
    cfg.max_peer_state = if rap {
        proxies
    } else {
        sizing::peer_state(cfg, 1, cfg.k_raps)
    };
    // The replay cache sized for 8× a JAP's even share of the peak arrival
    // rate (joins and leaves together are at most about twice it), so
    // Poisson bursts fit; no member is refused (`nacks`, 0 in every run).
    let peak = w.flash_rate.max(w.rate_after);
    cfg.join_rate = (8.0 * peak / proxies.max(1) as f64).ceil().max(2.0) as u32;
    cfg.heartbeat = quiet;
    cfg.peer_dead = quiet;
    cfg.target_ping = quiet;
    // The first probe goes out a quarter period after start: beyond the event
    // too (no warm-up probes a second apart from the start).
    cfg.rtt_probe = 4 * quiet;
    cfg.rtt_warmup_probes = 0;
    cfg.flow_idle_udp = quiet;
    cfg.flow_idle_tcp = quiet;
    cfg.report_refresh = quiet;
    cfg.report_expiry = 2 * quiet;
    cfg.lookup_timeout = 300 * MS;
}

/// Heap one proxy of this experiment reserves at `proxies` proxies, as one
/// of the group's RAPs (`rap`) or not, for the memory check before the runs.
pub fn reserved_per_proxy(
    proxies: usize,
    w: &Workload,
    rap: bool,
    heap_bytes: &dyn Fn() -> usize,
) -> usize {
    let pops = vec![(Pos(0.0, 0.0), 1); proxies.max(1)];
    let roster = Arc::new(sizing::roster(&pops));
    let mut cfg = ProxyConfig::new(1, 0, Key([0x42; 32]));
    tune(&mut cfg, proxies, w, 0, rap);
    sizing::reserved_bytes(cfg, &roster, heap_bytes)
}

/// Runs the group over `proxies` proxies (one per POP, POPs at random on a
/// 100 ms × 100 ms plane), members spread uniformly over the JAPs.
pub fn run(
    proxies: usize,
    inaccuracy_pct: u8,
    w: &Workload,
    seed: u64,
) -> Result<RunResult, String> {
    if proxies == 0 {
        return Err("the group needs at least one proxy".into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6772_6f75_7064_796e);
    let pops: Vec<(Pos, usize)> = (0..proxies)
        .map(|_| {
            (
                Pos(rng.random::<f64>() * 100.0, rng.random::<f64>() * 100.0),
                1,
            )
        })
        .collect();
    let group = udp_group(1);
    let raps = sizing::raps(&sizing::roster(&pops), &group, 4, |_| true);
    let mut sim = Sim::new(seed, &pops, |cfg| {
        let rap = raps.contains(&cfg.id);
        tune(cfg, proxies, w, inaccuracy_pct, rap)
    });
    let start = sim.now;
    let (changes, turned_away) = schedule(w, seed)?;
    let mut target_of: Vec<usize> = Vec::new();
    let mut r = RunResult {
        turned_away,
        ..RunResult::default()
    };
    let mut size = 0usize;
    let mut next = 0;
    let mut last_reports = 0;
    for minute in 0..w.minutes() {
        let end = start + ((minute as u64 + 1) * 60 * SEC).min(w.duration_secs * SEC);
        while let Some(c) = changes.get(next).filter(|c| start + c.at < end) {
            next += 1;
            sim.run_until(start + c.at);
            if c.join {
                let jap = rng.random_range(0..proxies);
                let t = sim.add_target(group, GROUP_KEY, pops[jap].0);
                sim.targets[t].via = Some(jap as ProxyId + 1);
                sim.targets[t].quiet = true;
                debug_assert_eq!(target_of.len(), c.member);
                target_of.push(t);
                sim.register(t, true);
                size += 1;
                r.joins += 1;
            } else if let Some(&t) = target_of.get(c.member) {
                sim.register(t, false);
                size -= 1;
                r.leaves += 1;
            }
        }
        sim.run_until(end);
        let total = sim.sent_by_kind[COUNT_REPORT];
        r.reports_per_minute.push(total - last_reports);
        r.size_per_minute.push(size);
        last_reports = total;
    }
    // Let the last reports land before reading the RAP's table.
    sim.run_for(SEC);
    r.reports = r.reports_per_minute.iter().sum();
    r.report_acks = sim.sent_by_kind[REPORT_ACK];
    r.acks = sim.targets.iter().map(|t| u64::from(t.acks)).sum();
    r.nacks = sim.targets.iter().map(|t| t.nacks.len() as u64).sum();
    r.final_size = size;
    let mut refused = 0;
    for p in (1..=proxies as ProxyId).filter_map(|p| sim.proxy(p)) {
        let c = p.counters();
        r.report_retries += c.jap.report_retries;
        r.report_refreshes += c.jap.report_refreshes;
        r.peers_refused += c.membership.peers_refused;
        r.peers_forgotten += c.membership.peers_forgotten;
        refused += c.rap.refused + c.rap.expired;
    }
    if refused > 0 {
        return Err(format!(
            "{proxies} proxies, {inaccuracy_pct}%: {refused} count reports refused or expired at a RAP (tables or timers sized wrong)"
        ));
    }
    if r.peers_refused > 0 {
        return Err(format!(
            "{proxies} proxies, {inaccuracy_pct}%: {} messages refused for want of peer state (max_peer_state sized too small)",
            r.peers_refused
        ));
    }
    if let Some(p) = sim.proxy(1) {
        let found = p.raps_of(&group);
        if found.as_slice() != raps.as_slice() {
            return Err(format!(
                "the group's RAPs are {found:?}, the sizing assumed {raps:?}"
            ));
        }
        r.raps = found.len();
        if let Some(rap) = raps.first().and_then(|&id| sim.proxy(id)) {
            r.rap_total = rap
                .rap_entries(&group)
                .iter()
                .map(|&(_, c)| u64::from(c))
                .sum();
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_needs_a_proxy() {
        let w = Workload::heavy(90_000).reduced(6, 50.0);
        assert!(run(0, 10, &w, 1).is_err());
    }
}
