//! `pias-qemu proxybench`: what the proxy costs a client, measured in a
//! two-POP lab (link delay 0) in one run, each figure beside a baseline of
//! the same traffic sent straight to the server: UDP request/response through
//! one appliance (IAP = JAP) and through two (IAP ≠ JAP), one and 16 in
//! flight; 64-byte queries at saturation; curl throughput; boot to the first
//! proxied answer; the memory the default capacities take. Figures, not
//! pass/fail (the machine is shared): out/bench/proxy.csv and a table.

use crate::pops::{TopoLab, TopoOptions, DNS_GROUP, HTTP_GROUP};
use crate::rr::{DnsClient, RrResult};
use crate::topo::{Topology, DNS_NAME};
use crate::{build, services, Accel};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Two POPs, one target each serving DNS and HTTP, joined by a link with no
/// added delay: what is measured is the appliances, not the wire.
pub const BENCH_TOPOLOGY: &str = r#"
[[pop]]
name = "pop1"
targets = [{ services = ["dns", "http"] }]

[[pop]]
name = "pop2"
targets = [{ services = ["dns", "http"] }]

[[link]]
pops = ["pop1", "pop2"]
delay_ms = 0
"#;

/// A group only pop2's target joins: pop1's clients reach it IAP ≠ JAP.
pub const REMOTE_GROUP: pias::Group = pias::Group {
    ip: pias::Ipv4([203, 0, 113, 11]),
    port: 53,
    transport: pias::Transport::Udp,
};

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Queries one at a time.
    pub serial: usize,
    /// Queries with 16 in flight.
    pub parallel: usize,
    /// Seconds of saturation.
    pub saturate_s: u64,
    /// curl fetches of 1 MB.
    pub fetches: usize,
}

impl Plan {
    /// The full run.
    pub const FULL: Plan = Plan {
        serial: 2000,
        parallel: 10_000,
        saturate_s: 5,
        fetches: 5,
    };
    /// Every row once with small counts (CI's smoke).
    pub const QUICK: Plan = Plan {
        serial: 100,
        parallel: 400,
        saturate_s: 1,
        fetches: 1,
    };
}

/// One row of the table: a metric for PIAS and for the direct baseline.
pub struct Row {
    pub metric: String,
    pub unit: &'static str,
    pub pias: f64,
    pub direct: Option<f64>,
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Runs the benchmark; returns the rows (also printed and written).
pub fn run(plan: Plan, accel: Accel, out_dir: &std::path::Path) -> Result<Vec<Row>> {
    let topology = Topology::parse(BENCH_TOPOLOGY)?;
    let kernel = build::kernel()?;
    let agent = build::agent()?;
    let mut opts = TopoOptions::new("bench", accel);
    opts.agent = Some(agent.clone());
    let t0 = Instant::now();
    let mut lab = TopoLab::up(topology, &kernel, &opts)?;
    let booted = t0.elapsed();
    lab.wait_agents_joined(Duration::from_secs(20))?;
    let pops = lab.topology.pops.clone();
    let client_ip = pops[0].client_ip();
    let aa = Ipv4Addr::from(DNS_GROUP.ip.0);
    let mut local = DnsClient::in_netns(&lab.client_ns(0), client_ip, SocketAddrV4::new(aa, 53))?;
    // Boot to first proxied answer: from QEMU's start to an answer through 203.0.113.10.
    let first = loop {
        if local.ask(DNS_NAME, Duration::from_millis(200))?.is_some() {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("no proxied answer within 60 s of the lab's start");
        }
    };
    // The IAP ≠ JAP group: joined by pop2's target only.
    let ip2 = pops[1].target_ip(0);
    lab.start_agent(1, 0, REMOTE_GROUP)?;
    lab.wait_agents_joined(Duration::from_secs(20))?;
    let remote_aa = Ipv4Addr::from(REMOTE_GROUP.ip.0);
    let mut remote = DnsClient::in_netns(
        &lab.client_ns(0),
        client_ip,
        SocketAddrV4::new(remote_aa, 53),
    )?;
    // Warm: the IAP's cache and the NAT.
    for c in [&mut local, &mut remote] {
        let w = c.load(
            DNS_NAME,
            50,
            1,
            None,
            Duration::from_millis(500),
            Duration::from_secs(10),
        )?;
        if w.answered == 0 {
            bail!("nothing answered through the anycast address while warming up");
        }
    }
    let mut direct1 = DnsClient::in_netns(
        &lab.client_ns(0),
        client_ip,
        SocketAddrV4::new(pops[0].target_ip(0), 53),
    )?;
    let mut direct2 =
        DnsClient::in_netns(&lab.client_ns(0), client_ip, SocketAddrV4::new(ip2, 53))?;

    let to = Duration::from_millis(500);
    let cap = Duration::from_secs(60);
    let mut rows = Vec::new();
    let rr = |name: &str, c: &mut DnsClient, n: usize, inflight: usize| -> Result<RrResult> {
        let r = c.load(DNS_NAME, n, inflight, None, to, cap)?;
        eprintln!(
            "  {name}: {}/{} answered, p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
            r.answered,
            r.sent,
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0)),
            r.rate()
        );
        Ok(r)
    };
    for (label, c, d) in [
        ("IAP = JAP", &mut local, &mut direct1),
        ("IAP ≠ JAP", &mut remote, &mut direct2),
    ] {
        let p1 = rr(&format!("{label}, 1 in flight"), c, plan.serial, 1)?;
        let b1 = rr("direct, 1 in flight", d, plan.serial, 1)?;
        let p16 = rr(&format!("{label}, 16 in flight"), c, plan.parallel, 16)?;
        let b16 = rr("direct, 16 in flight", d, plan.parallel, 16)?;
        for (m, unit, p, b) in [
            (
                "p50, 1 in flight",
                "ms",
                ms(p1.percentile(50.0)),
                ms(b1.percentile(50.0)),
            ),
            (
                "p99, 1 in flight",
                "ms",
                ms(p1.percentile(99.0)),
                ms(b1.percentile(99.0)),
            ),
            ("req/s, 1 in flight", "req/s", p1.rate(), b1.rate()),
            (
                "p50, 16 in flight",
                "ms",
                ms(p16.percentile(50.0)),
                ms(b16.percentile(50.0)),
            ),
            (
                "p99, 16 in flight",
                "ms",
                ms(p16.percentile(99.0)),
                ms(b16.percentile(99.0)),
            ),
            ("req/s, 16 in flight", "req/s", p16.rate(), b16.rate()),
            (
                "unanswered, 16 in flight",
                "%",
                100.0 * p16.loss(),
                100.0 * b16.loss(),
            ),
        ] {
            rows.push(Row {
                metric: format!("UDP {label}: {m}"),
                unit,
                pias: p,
                direct: Some(b),
            });
        }
    }
    // Saturation: as fast as answers come back, 64 in flight, for a while.
    let query_frame = 14 + 20 + 8 + services::dns_query(1, DNS_NAME).len();
    let dur = Duration::from_secs(plan.saturate_s);
    let sat = local.load(DNS_NAME, usize::MAX, 64, None, to, dur)?;
    let sat_direct = direct1.load(DNS_NAME, usize::MAX, 64, None, to, dur)?;
    rows.push(Row {
        metric: format!("{query_frame}-byte UDP queries answered at saturation (IAP = JAP)"),
        unit: "pps",
        pias: sat.rate(),
        direct: Some(sat_direct.rate()),
    });
    rows.push(Row {
        metric: "unanswered at saturation".into(),
        unit: "%",
        pias: 100.0 * sat.loss(),
        direct: Some(100.0 * sat_direct.loss()),
    });
    // curl: 1 MB through the anycast address and straight from the server.
    let web = lab
        .web
        .iter()
        .find(|w| w.pop == 0)
        .context("pop1 has no web server")?
        .clone();
    let fetch = |url: &str, n: usize| -> Result<f64> {
        let t = Instant::now();
        for i in 0..n {
            let f = lab.curl(&lab.client_ns(0), url, &format!("bench-{i}.bin"))?;
            if services::sha256_file(&f)? != web.root.big_sha256 {
                bail!("{url}: the body differs from the server's file");
            }
        }
        Ok((n as f64 * services::BIG_FILE_LEN as f64 * 8.0) / t.elapsed().as_secs_f64() / 1e6)
    };
    let via = fetch(
        &format!("http://{aa}:{}/big.bin", HTTP_GROUP.port),
        plan.fetches,
    )?;
    let straight = fetch(&format!("http://{}/big.bin", web.ip), plan.fetches)?;
    rows.push(Row {
        metric: "curl 1 MB (IAP = JAP), sha256 checked".into(),
        unit: "Mbit/s",
        pias: via,
        direct: Some(straight),
    });
    rows.push(Row {
        metric: "QEMU start to first proxied answer (agents joining included)".into(),
        unit: "ms",
        pias: first.as_secs_f64() * 1e3,
        direct: None,
    });
    rows.push(Row {
        metric: "lab up (2 appliances booted and ready)".into(),
        unit: "ms",
        pias: booted.as_secs_f64() * 1e3,
        direct: None,
    });
    let st = lab.status(0)?;
    if let Some(a) = st.tables.iter().find(|t| t.name.as_str() == "arena_bytes") {
        rows.push(Row {
            metric: format!(
                "arena used with the default capacities (of {} MiB guest)",
                opts.memory_mb
            ),
            unit: "KiB",
            pias: a.used as f64 / 1024.0,
            direct: None,
        });
    }
    let allocs_before = st.allocations;
    let _ = local.load(DNS_NAME, plan.parallel, 16, None, to, cap)?;
    let allocs_after = lab.status(0)?.allocations;
    rows.push(Row {
        metric: format!(
            "heap allocations across {} more proxied queries",
            plan.parallel
        ),
        unit: "count",
        pias: allocs_after.saturating_sub(allocs_before) as f64,
        direct: None,
    });
    print_and_write(&rows, accel, opts.machine, out_dir)?;
    Ok(rows)
}

fn print_and_write(
    rows: &[Row],
    accel: Accel,
    machine: crate::Machine,
    out_dir: &std::path::Path,
) -> Result<()> {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "PIAS proxy benchmark — {accel}, {machine}, 64 MiB, 1 vCPU per appliance; 'direct' is the same traffic sent to the server's own address"
    );
    let _ = writeln!(table, "| metric | unit | PIAS | direct | PIAS / direct |");
    let _ = writeln!(table, "|---|---|---:|---:|---:|");
    let mut csv = String::from("metric,unit,pias,direct,ratio\n");
    for r in rows {
        let (d, ratio) = match r.direct {
            Some(d) if d != 0.0 => (format!("{d:.3}"), format!("{:.2}", r.pias / d)),
            Some(d) => (format!("{d:.3}"), "-".into()),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            table,
            "| {} | {} | {:.3} | {d} | {ratio} |",
            r.metric, r.unit, r.pias
        );
        let _ = writeln!(
            csv,
            "\"{}\",{},{:.6},{},{}",
            r.metric,
            r.unit,
            r.pias,
            r.direct.map_or(String::new(), |d| format!("{d:.6}")),
            r.direct
                .filter(|&d| d != 0.0)
                .map_or(String::new(), |d| format!("{:.4}", r.pias / d))
        );
    }
    print!("{table}");
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("proxy.csv"), csv)?;
    std::fs::write(out_dir.join("proxy.md"), table)?;
    Ok(())
}
