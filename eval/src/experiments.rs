//! The experiments as the `pias-eval` command runs them: parameters (full or
//! smoke), parallel runs, CSV files, SVG plots and a printed summary.

use crate::internet::Internet;
use crate::topology::{load_cch, load_cities, load_graphml, Unlocated};
use crate::workload::{Kind, Workload};
use crate::{failover, figures, groupdyn, overhead, par, sizing};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub type Res<T> = Result<T, Box<dyn Error>>;

/// What every experiment is run with.
pub struct Settings {
    pub out: PathBuf,
    pub data: PathBuf,
    pub isps: Vec<String>,
    pub graphml: Vec<PathBuf>,
    pub threads: usize,
    pub seed: u64,
    /// Reduced sizes for the test suite: same code, minutes → seconds.
    pub smoke: bool,
    pub quiet: bool,
    /// The process's allocated heap bytes (the binary's counting allocator),
    /// for the memory figures and the memory checks.
    pub heap_bytes: fn() -> usize,
}

impl Settings {
    fn file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }
}

fn write(path: &Path, text: &str) -> Res<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

// ------------------------------------------------------------------ stretch

/// Builds the multi-ISP graph the settings name (Rocketfuel ISPs and/or GraphML files).
pub fn internet(s: &Settings) -> Res<Internet> {
    let mut topos = Vec::new();
    if !s.isps.is_empty() {
        let cities = load_cities(&s.data.join("rocketfuel/derived/city_locations.txt"))?;
        for asn in &s.isps {
            let file = s.data.join(format!("rocketfuel/maps/{asn}.r0.cch"));
            let (t, dropped) = load_cch(&file, &cities, asn, Unlocated::Drop)?;
            s.say(&format!(
                "AS{asn}: {} POPs, {} links; {} cities without coordinates left out",
                t.pops.len(),
                t.links.len(),
                dropped.len()
            ));
            topos.push(t);
        }
    }
    for file in &s.graphml {
        let name = file
            .file_stem()
            .map_or("graphml".into(), |x| x.to_string_lossy().into_owned());
        let (t, dropped) = load_graphml(file, &name, Unlocated::Drop)?;
        s.say(&format!(
            "{name}: {} POPs, {} links; {} nodes without coordinates left out",
            t.pops.len(),
            t.links.len(),
            dropped.len()
        ));
        topos.push(t);
    }
    Ok(Internet::build(topos)?)
}

/// Fig 8: stretch percentiles per proxy count. Returns (proxies, p50, p90) rows.
pub fn stretch(s: &Settings, proxies: &[usize], pairs: usize) -> Res<Vec<(usize, f64, f64)>> {
    let net = internet(s)?;
    let n = net.pops.len();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut csv = String::from("proxies,pairs,p5,p25,p50,p75,p90,p95\n");
    s.say(&format!(
        "stretch over {n} POPs of {} ISPs, {pairs} pairs per proxy count (seed {})",
        net.isps.len(),
        s.seed
    ));
    s.say(&format!(
        "{:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "proxies", "p25", "p50", "p75", "p90", "p95"
    ));
    let quantiles = [0.05, 0.25, 0.5, 0.75, 0.9, 0.95];
    let mut rows = Vec::new();
    for &k in proxies {
        let k = k.min(n);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let chosen = &order[..k];
        let mut v: Vec<f64> = Vec::with_capacity(pairs);
        let mut tries = 0;
        while v.len() < pairs && tries < pairs * 4 {
            tries += 1;
            let (c, t) = (rng.random_range(0..n), rng.random_range(0..n));
            if let Some(x) = net.stretch(c, t, chosen) {
                v.push(x);
            }
        }
        let v = sorted(&v);
        let p: Vec<f64> = quantiles.iter().map(|&q| percentile(&v, q)).collect();
        s.say(&format!(
            "{k:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            p[1], p[2], p[3], p[4], p[5]
        ));
        let _ = writeln!(
            csv,
            "{k},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}",
            v.len(),
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            p[5]
        );
        rows.push((k, p[2], p[4]));
    }
    write(&s.file(figures::STRETCH_CSV), &csv)?;
    figures::stretch(&s.out)?;
    Ok(rows)
}

// ----------------------------------------------------------- group dynamics

/// One point of Fig 7, averaged over seeds.
#[derive(Clone, Debug)]
pub struct GroupPoint {
    pub workload: Kind,
    pub proxies: usize,
    pub max_group: usize,
    pub inaccuracy: u8,
    pub mean_per_s: f64,
    pub std_per_s: f64,
    pub seeds: usize,
    pub nacks: u64,
    pub peak_size: usize,
    /// Largest |RAP's sum of counts − true size| / size at the end, over seeds.
    pub worst_rap_error: f64,
    /// Report retries and periodic refreshes, summed over the seeds (both 0
    /// expected: no loss, refresh period beyond the event).
    pub report_retries: u64,
    pub report_refreshes: u64,
    /// Peers refused for want of peer state (a run with any fails) and
    /// forgotten to make room, summed over the seeds (both 0 expected).
    pub peers_refused: u64,
    pub peers_forgotten: u64,
}

pub struct GroupPlan {
    pub proxies: Vec<usize>,
    pub groups: Vec<usize>,
    pub inaccuracies: Vec<u8>,
    pub seeds: usize,
    /// The workloads run, one set of figures each.
    pub workloads: Vec<Kind>,
    /// The workload of a kind with a group bound.
    pub workload: fn(Kind, usize) -> Workload,
    /// Proxies and group bound of the Fig 6 timeline, and its inaccuracies.
    pub timeline: (usize, usize),
    pub timeline_inaccuracies: Vec<u8>,
}

impl GroupPlan {
    pub fn full() -> GroupPlan {
        GroupPlan {
            proxies: vec![100, 1000, 10_000],
            groups: vec![90_000, 30_000],
            inaccuracies: (0..=10).map(|i| i * 10).collect(),
            seeds: 3,
            workloads: Kind::ALL.to_vec(),
            workload: Kind::workload,
            timeline: (1000, 90_000),
            timeline_inaccuracies: vec![0, 10, 20, 50, 100],
        }
    }

    pub fn smoke() -> GroupPlan {
        GroupPlan {
            proxies: vec![20, 80],
            groups: vec![1800, 60],
            inaccuracies: vec![0, 50, 100],
            seeds: 2,
            workloads: Kind::ALL.to_vec(),
            workload: |k, g| {
                let mut w = k.workload(90_000).reduced(6, 50.0);
                w.max_group = g;
                w
            },
            timeline: (80, 1800),
            timeline_inaccuracies: vec![0, 50, 100],
        }
    }

    /// Every workload of the plan, checked, with the largest bound (the
    /// memory check's).
    fn workloads(&self) -> Res<Vec<(Kind, usize)>> {
        let mut out = Vec::new();
        for &k in &self.workloads {
            for &g in &self.groups {
                (self.workload)(k, g).validate()?;
                out.push((k, g));
            }
        }
        Ok(out)
    }
}

/// Refuses the runs of `plan` if the largest ones, `s.threads` at once, need
/// more memory than the host has.
pub fn check_group_memory(s: &Settings, plan: &GroupPlan) -> Res<()> {
    let Some(largest) = plan.proxies.iter().copied().max() else {
        return Ok(());
    };
    let Some(&bound) = plan.groups.iter().max() else {
        return Ok(());
    };
    let mut need = 0;
    let mut per_proxy = 0;
    for &k in &plan.workloads {
        let w = (plan.workload)(k, bound);
        let one = groupdyn::reserved_per_proxy(largest, &w, false, &s.heap_bytes);
        // The group's 4 RAPs keep state for the whole roster.
        let per_rap = groupdyn::reserved_per_proxy(largest, &w, true, &s.heap_bytes);
        let raps = 4.min(largest);
        let at_once = s
            .threads
            .clamp(1, plan.groups.len() * plan.inaccuracies.len() * plan.seeds);
        let n = at_once
            * (sizing::resident_estimate(largest - raps, one)
                + raps * per_rap.saturating_sub(one) * 5 / 4);
        if n > need {
            (need, per_proxy) = (n, one);
        }
    }
    Ok(sizing::check_memory(
        &format!(
            "the group runs at {largest} proxies ({} at once, {} KiB reserved per proxy)",
            s.threads,
            per_proxy >> 10
        ),
        need,
    )?)
}

/// Figs 6 and 7, for every workload of the plan in turn. Returns Fig 7's points.
pub fn group_dynamics(s: &Settings, plan: &GroupPlan) -> Res<Vec<GroupPoint>> {
    check_group_memory(s, plan)?;
    plan.workloads()?;
    let mut points = Vec::new();
    for &k in &plan.workloads {
        points.extend(group_workload(s, plan, k)?);
    }
    if plan.workloads.len() == Kind::ALL.len() {
        figures::fig6_means(&s.out)?;
    }
    Ok(points)
}

/// Figs 6 and 7 for one workload.
fn group_workload(s: &Settings, plan: &GroupPlan, kind: Kind) -> Res<Vec<GroupPoint>> {
    let mut jobs = Vec::new();
    for &p in &plan.proxies {
        for &g in &plan.groups {
            for &i in &plan.inaccuracies {
                for seed in 0..plan.seeds as u64 {
                    jobs.push((p, g, i, s.seed + seed));
                }
            }
        }
    }
    // Largest deployments first, so the last jobs are short and both threads finish together.
    jobs.sort_by_key(|&(p, _, i, _)| (std::cmp::Reverse(p), i));
    let pb = par::bar(jobs.len(), &format!("groups, {}", kind.name()), s.quiet);
    let results = par::map(&jobs, s.threads, &pb, |&(p, g, i, seed)| {
        groupdyn::run(p, i, &(plan.workload)(kind, g), seed)
    })
    .into_iter()
    .collect::<Result<Vec<_>, String>>()?;
    let mut points = Vec::new();
    let mut csv = String::from(
        "proxies,max_group,inaccuracy_pct,seeds,mean_msgs_per_s,std_msgs_per_s,mean_per_rap_msgs_per_s,joins,leaves,peak_size,nacks,worst_rap_error,report_retries,report_refreshes,peers_refused,peers_forgotten\n",
    );
    for &p in &plan.proxies {
        for &g in &plan.groups {
            for &i in &plan.inaccuracies {
                let runs: Vec<&groupdyn::RunResult> = jobs
                    .iter()
                    .zip(&results)
                    .filter(|(j, _)| j.0 == p && j.1 == g && j.2 == i)
                    .map(|(_, r)| r)
                    .collect();
                let n = runs.len().max(1) as f64;
                let rates: Vec<f64> = runs.iter().map(|r| r.mean_per_sec()).collect();
                let mean = rates.iter().sum::<f64>() / n;
                let var = rates.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                let point = GroupPoint {
                    workload: kind,
                    proxies: p,
                    max_group: g,
                    inaccuracy: i,
                    mean_per_s: mean,
                    std_per_s: var.sqrt(),
                    seeds: runs.len(),
                    nacks: runs.iter().map(|r| r.nacks).sum(),
                    peak_size: runs
                        .iter()
                        .flat_map(|r| r.size_per_minute.iter().copied())
                        .max()
                        .unwrap_or(0),
                    worst_rap_error: runs
                        .iter()
                        .map(|r| {
                            (r.rap_total as f64 - r.final_size as f64).abs()
                                / r.final_size.max(1) as f64
                        })
                        .fold(0.0, f64::max),
                    report_retries: runs.iter().map(|r| r.report_retries).sum(),
                    report_refreshes: runs.iter().map(|r| r.report_refreshes).sum(),
                    peers_refused: runs.iter().map(|r| r.peers_refused).sum(),
                    peers_forgotten: runs.iter().map(|r| r.peers_forgotten).sum(),
                };
                let raps = runs.first().map_or(4, |r| r.raps.max(1)) as f64;
                let joins: usize = runs.iter().map(|r| r.joins).sum::<usize>() / runs.len().max(1);
                let leaves: usize =
                    runs.iter().map(|r| r.leaves).sum::<usize>() / runs.len().max(1);
                let _ = writeln!(
                    csv,
                    "{p},{g},{i},{},{:.4},{:.4},{:.4},{joins},{leaves},{},{},{:.4},{},{},{},{}",
                    point.seeds,
                    point.mean_per_s,
                    point.std_per_s,
                    point.mean_per_s / raps,
                    point.peak_size,
                    point.nacks,
                    point.worst_rap_error,
                    point.report_retries,
                    point.report_refreshes,
                    point.peers_refused,
                    point.peers_forgotten
                );
                points.push(point);
            }
        }
    }
    write(&s.file(&figures::fig7_csv(kind)), &csv)?;
    figures::fig7(&s.out, kind)?;
    s.say(&format!(
        "Fig 7, {} workload: mean JAP→RAP messages/s (all 4 RAPs; per RAP = /4), averaged over seeds",
        kind.name()
    ));
    let mut header = format!("{:>8} {:>8}", "proxies", "group≤");
    for i in &plan.inaccuracies {
        let _ = write!(header, " {:>8}", format!("{i}%"));
    }
    s.say(&header);
    for &p in &plan.proxies {
        for &g in &plan.groups {
            let mut line = format!("{p:>8} {g:>8}");
            for x in points.iter().filter(|x| x.proxies == p && x.max_group == g) {
                let _ = write!(line, " {:>8.2}", x.mean_per_s);
            }
            s.say(&line);
        }
    }
    s.say(&format!(
        "  counted: reports caused by group dynamics; over all {} runs {} report retries, {} refreshes (refresh period beyond the event)",
        results.len(),
        results.iter().map(|r| r.report_retries).sum::<u64>(),
        results.iter().map(|r| r.report_refreshes).sum::<u64>()
    ));
    timeline(s, plan, kind, &jobs, &results)?;
    Ok(points)
}

/// Fig 6: messages per minute over the event for a few inaccuracies, averaged over seeds.
fn timeline(
    s: &Settings,
    plan: &GroupPlan,
    kind: Kind,
    jobs: &[(usize, usize, u8, u64)],
    results: &[groupdyn::RunResult],
) -> Res<()> {
    let (p, g) = plan.timeline;
    let pick = |i: u8| -> Vec<&groupdyn::RunResult> {
        jobs.iter()
            .zip(results)
            .filter(|(j, _)| j.0 == p && j.1 == g && j.2 == i)
            .map(|(_, r)| r)
            .collect()
    };
    let minutes = (plan.workload)(kind, g).minutes();
    let avg = |runs: &[&groupdyn::RunResult], f: &dyn Fn(&groupdyn::RunResult, usize) -> f64| {
        (0..minutes)
            .map(|m| runs.iter().map(|r| f(r, m)).sum::<f64>() / runs.len().max(1) as f64)
            .collect::<Vec<f64>>()
    };
    let inacc: Vec<u8> = plan
        .timeline_inaccuracies
        .iter()
        .copied()
        .filter(|i| plan.inaccuracies.contains(i))
        .collect();
    let base = pick(inacc.first().copied().unwrap_or(0));
    let size = avg(&base, &|r, m| {
        r.size_per_minute.get(m).copied().unwrap_or(0) as f64
    });
    let per: Vec<Vec<f64>> = inacc
        .iter()
        .map(|&i| {
            avg(&pick(i), &|r, m| {
                r.reports_per_minute.get(m).copied().unwrap_or(0) as f64
            })
        })
        .collect();
    let mut csv = String::from("proxies,max_group,minute,group_size");
    for i in &inacc {
        let _ = write!(csv, ",msgs_per_min_inaccuracy_{i}");
    }
    csv.push('\n');
    for m in 0..minutes {
        let _ = write!(csv, "{p},{g},{},{:.1}", m + 1, size[m]);
        for v in &per {
            let _ = write!(csv, ",{:.1}", v[m]);
        }
        csv.push('\n');
    }
    write(&s.file(&figures::fig6_csv(kind)), &csv)?;
    figures::fig6(&s.out, kind)?;
    s.say(&format!(
        "Fig 6 ({p} proxies, group ≤ {g}, {} workload): mean JAP→RAP messages per minute over the event",
        kind.name()
    ));
    for (i, v) in inacc.iter().zip(&per) {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        s.say(&format!(
            "  {i:>3}% inaccuracy: {mean:>9.1}/min to all RAPs ({:.1}/min per RAP); first minute {:.0}, last {:.0}",
            mean / 4.0,
            v.first().copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0)
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------- overhead

pub struct OverheadPlan {
    /// Deployments simulated.
    pub proxies: Vec<usize>,
    /// Deployments whose memory per proxy is measured on one proxy built at
    /// that size (no simulation), besides those simulated.
    pub memory_proxies: Vec<usize>,
    pub cluster_size: usize,
    pub steady_secs: u64,
    /// Groups each proxy is the JAP of (one member each), JAPs per group.
    pub groups: overhead::Groups,
}

impl OverheadPlan {
    /// Every proxy the JAP of 4 groups, 10 JAPs to a group.
    pub const GROUPS: overhead::Groups = overhead::Groups {
        jap_groups: 4,
        japs_per_group: 10,
    };

    pub fn full() -> OverheadPlan {
        OverheadPlan {
            proxies: vec![1000, 2000, 5000, 10_000, 20_000],
            memory_proxies: vec![1000, 2000, 5000, 10_000, 20_000],
            cluster_size: 10,
            // One full RTT-probe and report-refresh period (30 s), so every
            // proxy probes once and every (group, JAP) refreshes once.
            steady_secs: 30,
            groups: Self::GROUPS,
        }
    }

    pub fn smoke() -> OverheadPlan {
        OverheadPlan {
            proxies: vec![100, 300],
            memory_proxies: vec![100, 300, 1000],
            cluster_size: 10,
            // One refresh period, as in the full run: the test checks the formula.
            steady_secs: 30,
            groups: Self::GROUPS,
        }
    }
}

/// Refuses the simulations of `plan` if the largest needs more memory than
/// the host has (one deployment runs at a time): before the first run rather
/// than after the host starts swapping.
pub fn check_overhead_memory(s: &Settings, plan: &OverheadPlan) -> Res<()> {
    let Some(largest) = plan.proxies.iter().copied().max() else {
        return Ok(());
    };
    let (per_proxy, shared) =
        overhead::reserved_one(largest, plan.cluster_size, &plan.groups, &s.heap_bytes);
    let need = sizing::resident_estimate(largest, per_proxy) + shared;
    Ok(sizing::check_memory(
        &format!(
            "the overhead run at {largest} proxies ({} KiB reserved per proxy)",
            per_proxy >> 10
        ),
        need,
    )?)
}

/// Memory per proxy of each deployment of `plan.memory_proxies`, from one
/// proxy built at that size: (proxies, reserved per proxy, shared) rows,
/// also written to overhead_memory.csv.
pub fn overhead_memory(s: &Settings, plan: &OverheadPlan) -> Res<Vec<(usize, usize, usize)>> {
    let mut csv = String::from(
        "proxies,reserved_bytes_per_proxy,shared_bytes,simulated_resident_estimate_bytes\n",
    );
    let mut rows = Vec::new();
    s.say("memory per proxy, one proxy built at each size (no simulation)");
    s.say(&format!(
        "{:>8} {:>14} {:>12} {:>22}",
        "proxies", "reserved KiB", "shared KiB", "simulating them, MiB"
    ));
    for &n in &plan.memory_proxies {
        let (per_proxy, shared) =
            overhead::reserved_one(n, plan.cluster_size, &plan.groups, &s.heap_bytes);
        let sim = sizing::resident_estimate(n, per_proxy) + shared;
        let _ = writeln!(csv, "{n},{per_proxy},{shared},{sim}");
        s.say(&format!(
            "{n:>8} {:>14.0} {:>12.0} {:>22}",
            per_proxy as f64 / 1024.0,
            shared as f64 / 1024.0,
            sim >> 20
        ));
        rows.push((n, per_proxy, shared));
    }
    write(&s.file(figures::OVERHEAD_MEMORY_CSV), &csv)?;
    Ok(rows)
}

/// Membership, proximity and soft-state overhead, one deployment at a time
/// (they are the memory-hungry runs, and the heap counter must see one at a
/// time); then the memory per proxy of `plan.memory_proxies`.
pub fn overhead(s: &Settings, plan: &OverheadPlan) -> Res<Vec<overhead::Overhead>> {
    check_overhead_memory(s, plan)?;
    let pb = par::bar(plan.proxies.len(), "overhead", s.quiet);
    let mut rows = Vec::new();
    for &n in &plan.proxies {
        pb.set_message(format!("{n} proxies"));
        rows.push(overhead::run(
            n,
            plan.cluster_size,
            plan.groups,
            plan.steady_secs,
            s.seed,
            &s.heap_bytes,
        )?);
        par::release_free_memory();
        pb.inc(1);
    }
    pb.finish();
    let mut csv = String::from(
        "proxies,cluster_size,heartbeat_msgs_per_s,rtt_msgs_per_s,news_msgs_per_failure,informed,informed_within_s,reserved_bytes_per_proxy,shared_bytes,refusals,\
         jap_groups,japs_per_group,refresh_msgs_per_s,refresh_formula_msgs_per_s,self_report_share,rap_reports_mean_per_s,rap_reports_max_per_s,rap_entries_max,report_retries,report_msgs_after_failure,victim_rap_entries,peers_refused,peers_forgotten\n",
    );
    let g = plan.groups;
    s.say(&format!(
        "membership, proximity and soft-state overhead per proxy (default timers; POPs of {} proxies; \
         each proxy the JAP of {} groups with one member, {} JAPs to a group)",
        plan.cluster_size, g.jap_groups, g.japs_per_group
    ));
    s.say(&format!(
        "{:>8} {:>12} {:>10} {:>14} {:>16} {:>14} {:>12} {:>14} {:>12}",
        "proxies",
        "heartbeat/s",
        "rtt/s",
        "news/failure",
        "informed (s)",
        "reserved KiB",
        "shared KiB",
        "reports+acks/s",
        "RAP max rx/s"
    ));
    for o in &rows {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{:.4},{:.2},{},{:.2},{:.0},{},{},{},{},{:.4},{:.4},{:.5},{:.4},{:.4},{},{},{},{},{},{}",
            o.proxies,
            o.cluster_size,
            o.heartbeat_per_s,
            o.rtt_per_s,
            o.news_per_failure,
            o.informed,
            o.informed_within_s,
            o.reserved_per_proxy,
            o.shared_bytes,
            o.refusals,
            o.groups.jap_groups,
            o.groups.japs_per_group,
            o.refresh_per_s,
            o.refresh_formula_per_s,
            o.self_report_share,
            o.rap_reports_mean_per_s,
            o.rap_reports_max_per_s,
            o.rap_entries_max,
            o.report_retries,
            o.report_msgs_after_failure,
            o.victim_rap_entries,
            o.peers_refused,
            o.peers_forgotten
        );
        s.say(&format!(
            "{:>8} {:>12.2} {:>10.3} {:>14.1} {:>9}/{:<6} {:>14.0} {:>12.0} {:>14.3} {:>12.2}",
            o.proxies,
            o.heartbeat_per_s,
            o.rtt_per_s,
            o.news_per_failure,
            o.informed,
            format!("{:.1}", o.informed_within_s),
            o.reserved_per_proxy / 1024.0,
            o.shared_bytes as f64 / 1024.0,
            o.refresh_per_s,
            o.rap_reports_max_per_s
        ));
    }
    if let Some(o) = rows.first() {
        s.say(&format!(
            "  soft state: reports+acks/s per proxy against G×k×2/report_refresh = {:.3} for G = {} \
             (less the {:.2}% a JAP sends itself as one of the RAPs); a RAP receives {:.3} reports/s on average; \
             {} report retries in all steady states",
            o.refresh_formula_per_s,
            g.jap_groups,
            100.0 * o.self_report_share,
            o.rap_reports_mean_per_s,
            rows.iter().map(|o| o.report_retries).sum::<u64>()
        ));
    }
    write(&s.file(figures::OVERHEAD_CSV), &csv)?;
    figures::overhead(&s.out)?;
    overhead_memory(s, plan)?;
    Ok(rows)
}

// ----------------------------------------------------------------- failover

/// Client-seen failover over `seeds` runs of each victim kind.
pub fn failover(s: &Settings, seeds: usize) -> Res<(failover::Failover, failover::Failover)> {
    let jobs: Vec<(failover::Victim, u64)> = [failover::Victim::Jap, failover::Victim::Rap]
        .iter()
        .flat_map(|&v| (0..seeds as u64).map(move |i| (v, s.seed + i)))
        .collect();
    let pb = par::bar(jobs.len(), "failover", s.quiet);
    let results = par::map(&jobs, s.threads, &pb, |&(v, seed)| failover::run(v, seed));
    let mut jap = failover::Failover::default();
    let mut rap = failover::Failover::default();
    let mut csv = String::from("measure,seed,seconds\n");
    for ((v, seed), r) in jobs.iter().zip(&results) {
        let into = if *v == failover::Victim::Jap {
            &mut jap
        } else {
            &mut rap
        };
        for (name, vals) in [
            ("jap_death_outage", &r.outages),
            ("rap_death_first_reply", &r.first_reply_after),
            ("no_death_first_reply", &r.first_reply_before),
        ] {
            for x in vals.iter() {
                let _ = writeln!(csv, "{name},{seed},{x:.3}");
            }
        }
        into.outages.extend(&r.outages);
        into.first_reply_after.extend(&r.first_reply_after);
        into.first_reply_before.extend(&r.first_reply_before);
        into.never += r.never;
    }
    write(&s.file(figures::FAILOVER_CSV), &csv)?;
    figures::failover(&s.out)?;
    let summary = |name: &str, v: &[f64]| {
        let v = sorted(v);
        s.say(&format!(
            "  {name:<44} n={:<4} p10 {:.2}  median {:.2}  p90 {:.2}  max {:.2} s",
            v.len(),
            percentile(&v, 0.1),
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            v.last().copied().unwrap_or(f64::NAN)
        ))
    };
    let t = pias::config::Timers::default();
    s.say(&format!(
        "failover seen by clients (default timers: heartbeat {} ms, dead after {} ms, lookup timeout 300 ms)",
        t.heartbeat_ms, t.peer_dead_ms
    ));
    summary("outage of clients whose JAP died", &jap.outages);
    summary(
        "first reply of new clients, a RAP just died",
        &rap.first_reply_after,
    );
    summary(
        "first reply of new clients, no death",
        &rap.first_reply_before,
    );
    s.say(&format!(
        "  clients never answered: {} (JAP runs), {} (RAP runs)",
        jap.never, rap.never
    ));
    Ok((jap, rap))
}
