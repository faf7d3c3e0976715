//! `pias-qemu bgpbench`: BGP and BFD figures in the three-POP lab with BIRD
//! routers, repeated: how long a hung appliance keeps its route (the router's
//! withdrawal after it is frozen with SIGSTOP) and what a client at its POP
//! sees meanwhile, with the hold timer alone (3 s) and with BFD (100 ms × 3);
//! how long the session takes to come back when it thaws; and the queries
//! lost while a POP drains. Min/median/max per figure, in a table and in
//! out/bench/bgp.csv. Figures, not pass/fail: the machine is shared.

use crate::pops::{Routers, TopoLab, TopoOptions};
use crate::rr::{longest_outage, DnsClient};
use crate::topo::{Topology, DNS_WHOAMI};
use crate::{build, Accel};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const AA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const ANSWER: Duration = Duration::from_secs(2);
const PROBE_GAP: Duration = Duration::from_millis(10);

/// One mode's lab: the hold timer alone, or BFD beside it.
#[derive(Clone, Copy, Debug)]
struct Mode {
    name: &'static str,
    hold_s: u16,
    bfd: bool,
}

const MODES: [Mode; 2] = [
    Mode {
        name: "hold timer 3 s",
        hold_s: 3,
        bfd: false,
    },
    Mode {
        name: "BFD 100 ms x 3 (hold 9 s)",
        hold_s: 9,
        bfd: true,
    },
];

/// min, median, max of `v` (ms).
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    match v {
        [] => (f64::NAN, f64::NAN, f64::NAN),
        _ => (v[0], v[v.len() / 2], v[v.len() - 1]),
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

/// Waits until POP `p`'s router routes the prefix away from its appliance.
fn wait_away(lab: &TopoLab, p: usize, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let own = format!("via {} ", lab.topology.pops[p].appliance_ip());
    loop {
        let r = format!("{} ", lab.anycast_route(p)?);
        if !r.contains(&own) && r.contains("via ") {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("the route of POP {} stayed {r:?}", p + 1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `runs` rounds per mode; writes `out/bgp.csv`; the table.
pub fn run(runs: usize, accel: Accel, out: &Path) -> Result<String> {
    let kernel = build::kernel()?;
    let agent = build::agent()?;
    let mut table = String::new();
    let mut csv = String::from("mode,metric,unit,runs,min,median,max\n");
    let _ = writeln!(
        table,
        "BGP/BFD in the three-POP lab, {runs} runs per mode, {accel:?}, -M microvm, BIRD 2 routers"
    );
    for mode in MODES {
        let mut opts = TopoOptions::new("bgpbench", accel);
        opts.agent = Some(agent.clone());
        opts.routers = Routers::Bird;
        opts.bgp_hold_s = mode.hold_s;
        opts.bfd = mode.bfd;
        let started = Instant::now();
        let mut lab = TopoLab::up(Topology::three_pops()?, &kernel, &opts)?;
        lab.wait_agents_joined(Duration::from_secs(30))?;
        let converged = started.elapsed();
        let (mut withdrawn, mut outage, mut back, mut lost) = (vec![], vec![], vec![], vec![]);
        let pop = 1;
        let own = lab.topology.pops[pop].appliance_ip();
        for _ in 0..runs {
            // A hung appliance: its router's withdrawal, the client's outage.
            let client_ip = lab.topology.pops[pop].client_ip();
            let mut probe =
                DnsClient::in_netns(&lab.client_ns(pop), client_ip, SocketAddrV4::new(AA, 53))?;
            // Long enough to see the outage end: the hold time (or BFD's
            // 300 ms) after the freeze, and some.
            let span = if mode.bfd {
                4
            } else {
                u64::from(mode.hold_s) + 4
            };
            let count = (Duration::from_secs(span).as_millis() / PROBE_GAP.as_millis()) as usize;
            let prober =
                std::thread::spawn(move || probe.probe(DNS_WHOAMI, count, PROBE_GAP, ANSWER));
            std::thread::sleep(Duration::from_secs(1));
            let pid = lab.appliances[pop].pid();
            signal(pid, "-STOP")?;
            let w = wait_away(&lab, pop, Duration::from_secs(u64::from(mode.hold_s) + 10));
            let probes = prober
                .join()
                .map_err(|_| anyhow::anyhow!("prober panicked"))??;
            signal(pid, "-CONT")?;
            withdrawn.push(w?.as_secs_f64() * 1e3);
            outage.push(longest_outage(&probes).as_secs_f64() * 1e3);
            // Thawed: the session comes back and the route with it.
            back.push(
                lab.wait_route_via(pop, own, Duration::from_secs(60))?
                    .as_secs_f64()
                    * 1e3,
            );
            // A drain of the same POP under the same probing: lost queries.
            let mut probe =
                DnsClient::in_netns(&lab.client_ns(pop), client_ip, SocketAddrV4::new(AA, 53))?;
            let prober =
                std::thread::spawn(move || probe.probe(DNS_WHOAMI, 500, PROBE_GAP, ANSWER));
            std::thread::sleep(Duration::from_secs(1));
            lab.mgmt(pop)?.drain(true)?;
            wait_away(&lab, pop, Duration::from_secs(15))?;
            let probes = prober
                .join()
                .map_err(|_| anyhow::anyhow!("prober panicked"))??;
            lost.push(probes.iter().filter(|p| p.answer.is_none()).count() as f64);
            lab.mgmt(pop)?.drain(false)?;
            lab.wait_route_via(pop, own, Duration::from_secs(30))?;
        }
        let _ = writeln!(
            table,
            "\n{} (lab up and BGP converged in {:.1} s)\n  {:<44} {:>9} {:>9} {:>9}",
            mode.name,
            converged.as_secs_f64(),
            "",
            "min",
            "median",
            "max"
        );
        for (metric, unit, v) in [
            (
                "route withdrawn after the appliance hangs",
                "ms",
                &mut withdrawn,
            ),
            (
                "client-visible outage (query every 10 ms)",
                "ms",
                &mut outage,
            ),
            ("session and route back after it thaws", "ms", &mut back),
            ("queries lost during a drain (of 500)", "queries", &mut lost),
        ] {
            let (lo, med, hi) = spread(v);
            let _ = writeln!(
                table,
                "  {metric:<44} {lo:>9.0} {med:>9.0} {hi:>9.0} {unit}"
            );
            let _ = writeln!(
                csv,
                "{},{metric},{unit},{runs},{lo:.1},{med:.1},{hi:.1}",
                mode.name
            );
        }
        drop(lab);
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("bgp.csv"), csv)?;
    Ok(table)
}
