//! `pias-qemu bench --vs-linux`: both sides through the same work in one
//! run, then a table of PIAS, Linux and their ratio per metric against the
//! issue's goals, written to out/bench/vs-linux.{csv,md}. A metric one side
//! did not measure stops the run with the reason: never a half-empty table.

use super::lan::*;
use super::measure::{self, ms};
use super::side::{group, Sides, Which};
use crate::rr::RrResult;
use crate::{build, Accel, Machine};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

/// The memory both sides get for every row but the bisection.
pub const MEMORY_MB: u32 = 128;

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Queries one at a time.
    pub serial: usize,
    /// Queries with 4 and with 16 in flight.
    pub parallel: usize,
    /// Seconds of 64-byte flood.
    pub flood_s: u64,
    /// Seconds of each iperf3 run.
    pub iperf_s: u32,
    /// Seconds of idle CPU measurement.
    pub idle_s: u64,
    /// The Linux memory bisection's step, MiB.
    pub linux_step_mb: u32,
    /// Boots of each side whose times are taken (the boot rows are their
    /// medians); the last one's guest is measured on.
    pub boots: usize,
}

impl Plan {
    pub const FULL: Plan = Plan {
        serial: 2000,
        parallel: 10_000,
        flood_s: 5,
        iperf_s: 10,
        idle_s: 10,
        linux_step_mb: 1,
        boots: 5,
    };
    /// Every row once, small counts (CI's smoke).
    pub const QUICK: Plan = Plan {
        serial: 100,
        parallel: 400,
        flood_s: 1,
        iperf_s: 2,
        idle_s: 2,
        linux_step_mb: 32,
        boots: 1,
    };
}

/// A goal on the ratio PIAS / Linux.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// No goal: shown for the record.
    None,
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::None => "-".into(),
            Goal::AtMost(g) => format!("<= {g}"),
            Goal::AtLeast(g) => format!(">= {g}"),
        }
    }

    fn met(self, ratio: f64) -> Option<bool> {
        match self {
            Goal::None => None,
            Goal::AtMost(g) => Some(ratio <= g),
            Goal::AtLeast(g) => Some(ratio >= g),
        }
    }
}

/// One metric of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub metric: String,
    pub unit: &'static str,
    pub pias: f64,
    /// `None` for PIAS-only rows (IAP ≠ JAP has no Linux counterpart).
    pub linux: Option<f64>,
    pub goal: Goal,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        self.linux.filter(|l| *l != 0.0).map(|l| self.pias / l)
    }

    pub fn met(&self) -> Option<bool> {
        self.ratio().and_then(|r| self.goal.met(r))
    }
}

/// Each side's figures by metric key.
pub type Figures = BTreeMap<&'static str, f64>;

/// The median of `v` (the lower middle of an even count); NaN if empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

fn put_rr(f: &mut Figures, prefix: &'static [&'static str; 3], r: &RrResult) {
    f.insert(prefix[0], ms(r, 50.0));
    f.insert(prefix[1], ms(r, 99.0));
    f.insert(prefix[2], r.rate());
}

/// Everything measured on one booted side.
pub fn measure_side(
    sides: &Sides,
    lan: &mut BenchLan,
    which: Which,
    plan: &Plan,
) -> Result<Figures> {
    let mut f = Figures::new();
    let (mut readies, mut firsts) = (Vec::new(), Vec::new());
    let (i, _agents) = loop {
        eprintln!(
            "{}: boot {} of {} (-m {MEMORY_MB})",
            which.name(),
            readies.len() + 1,
            plan.boots.max(1)
        );
        let (i, ready, first, agents) =
            sides.boot_serving(lan, which, MEMORY_MB, Duration::from_secs(120))?;
        let first = first.with_context(|| {
            format!(
                "{}: no answer through {ANYCAST}:{DNS_PORT} within 120 s of boot",
                which.name()
            )
        })?;
        eprintln!(
            "  ready {:.1} ms, first answer {:.1} ms after QEMU's start",
            ready.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
        readies.push(ready.as_secs_f64() * 1e3);
        firsts.push(first.as_secs_f64() * 1e3);
        if readies.len() >= plan.boots.max(1) {
            break (i, agents);
        }
        // Not the last: this guest and its agents go before the next boot.
        drop(agents);
        lan.lab.appliances[i].kill();
    };
    f.insert("ready", median(&mut readies));
    f.insert("first", median(&mut firsts));
    // The sink's group (PIAS: its agent joined with the others) forwards.
    wait_sink(lan)?;
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("{}: idle CPU over {} s", which.name(), plan.idle_s);
    f.insert(
        "idle",
        measure::idle_cpu(&lan.lab.appliances[i], Duration::from_secs(plan.idle_s))?,
    );
    let to = SocketAddrV4::new(ANYCAST, DNS_PORT);
    let (c, l) = (lan.client_ns.clone(), lan.lossy_ns.clone());
    eprintln!("{}: UDP request/response", which.name());
    let r1 = measure::rr(&c, CLIENT, to, plan.serial, 1)?;
    put_rr(&mut f, &["p50_1", "p99_1", "rate_1"], &r1);
    let r4 = measure::rr(&c, CLIENT, to, plan.parallel, 4)?;
    put_rr(&mut f, &["p50_4", "p99_4", "rate_4"], &r4);
    let r16 = measure::rr(&c, CLIENT, to, plan.parallel, 16)?;
    put_rr(&mut f, &["p50_16", "p99_16", "rate_16"], &r16);
    f.insert("unanswered_16", 100.0 * r16.loss());
    eprintln!("{}: 64-byte flood for {} s", which.name(), plan.flood_s);
    let fl = measure::flood(
        &c,
        CLIENT,
        ANYCAST,
        &lan.sink,
        Duration::from_secs(plan.flood_s),
        50_000_000,
    )?;
    eprintln!(
        "  sent {}, reached the target {} ({:.0} pps)",
        fl.sent,
        fl.received,
        fl.pps()
    );
    f.insert("pps", fl.pps());
    f.insert("pps_loss", 100.0 * fl.loss());
    // The flood is over when queries are answered again.
    if measure::first_answer(&c, CLIENT, to, Duration::from_secs(15), || Ok(()))?.is_none() {
        bail!("{}: no answer within 15 s of the flood", which.name());
    }
    eprintln!("{}: iperf3 both ways", which.name());
    f.insert(
        "tcp_up",
        measure::iperf(&c, ANYCAST, IPERF_PORT, plan.iperf_s, false)?,
    );
    f.insert(
        "tcp_down",
        measure::iperf(&c, ANYCAST, IPERF_PORT, plan.iperf_s, true)?,
    );
    eprintln!("{}: the same from behind {LOSS_PCT} % loss", which.name());
    let r1 = measure::rr(&l, LOSSY_CLIENT, to, plan.serial, 1)?;
    put_rr(&mut f, &["loss_p50_1", "loss_p99_1", "loss_rate_1"], &r1);
    let r16 = measure::rr(&l, LOSSY_CLIENT, to, plan.parallel, 16)?;
    f.insert("loss_rate_16", r16.rate());
    f.insert(
        "loss_tcp_up",
        measure::iperf(&l, ANYCAST, IPERF_PORT, plan.iperf_s, false)?,
    );
    f.insert(
        "loss_tcp_down",
        measure::iperf(&l, ANYCAST, IPERF_PORT, plan.iperf_s, true)?,
    );
    lan.lab.appliances[i].kill();
    Ok(f)
}

/// The LAN alone, no guest: the client straight to the target's DNS server
/// and sink. What the host, the bridge and the load generators cost; a
/// bound under every guest's figures, measured in the same run.
pub fn lan_alone(lan: &BenchLan, plan: &Plan) -> Result<Figures> {
    let mut f = Figures::new();
    let c = &lan.client_ns;
    eprintln!("the LAN alone: the client straight to the target");
    let to = SocketAddrV4::new(TARGET, DNS_PORT);
    let r1 = measure::rr(c, CLIENT, to, plan.serial, 1)?;
    put_rr(&mut f, &["p50_1", "p99_1", "rate_1"], &r1);
    let r16 = measure::rr(c, CLIENT, to, plan.parallel, 16)?;
    put_rr(&mut f, &["p50_16", "p99_16", "rate_16"], &r16);
    let fl = measure::flood(
        c,
        CLIENT,
        TARGET,
        &lan.sink,
        Duration::from_secs(plan.flood_s),
        50_000_000,
    )?;
    f.insert("pps", fl.pps());
    Ok(f)
}

/// The LAN-alone figures beside both sides', and what each guest adds to
/// the LAN's latency: the part of a request's time a guest can change.
pub fn lan_alone_text(lan: &Figures, pias: &Figures, linux: &Figures) -> String {
    let get = |f: &Figures, k: &str| f.get(k).copied().unwrap_or(f64::NAN);
    let mut t = String::from(
        "\nThe LAN alone (no guest: the client straight to the target), same run:\n\n\
         | metric | unit | LAN alone | PIAS | Linux | PIAS added / Linux added |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for (k, name, unit, added) in [
        ("p50_1", "UDP p50, 1 in flight", "ms", true),
        ("p50_16", "UDP p50, 16 in flight", "ms", true),
        ("rate_16", "UDP req/s, 16 in flight", "req/s", false),
        ("pps", "64-byte UDP received at the sink", "pps", false),
    ] {
        let (a, p, l) = (get(lan, k), get(pias, k), get(linux, k));
        let ratio = if added && l > a {
            format!("{:.3}", (p - a) / (l - a))
        } else {
            "-".into()
        };
        let _ = writeln!(
            t,
            "| {name} | {unit} | {a:.3} | {p:.3} | {l:.3} | {ratio} |"
        );
    }
    t
}

/// Waits until a datagram to the sink's port through the anycast address
/// arrives (15 s at most).
fn wait_sink(lan: &BenchLan) -> Result<()> {
    for _ in 0..150 {
        let f = measure::flood(
            &lan.client_ns,
            CLIENT,
            ANYCAST,
            &lan.sink,
            Duration::from_millis(1),
            1,
        )?;
        if f.received > 0 {
            return Ok(());
        }
    }
    bail!("nothing reached the sink through {ANYCAST}:{SINK_PORT} within 15 s")
}

/// PIAS only: a client at one appliance (IAP), the group's member joined at
/// the other (JAP).
pub fn iap_ne_jap(sides: &Sides, lan: &mut BenchLan, plan: &Plan) -> Result<Figures> {
    let mut f = Figures::new();
    let a = sides.boot(lan, Which::Pias, MEMORY_MB, 0, 2)?;
    let b = sides.boot(lan, Which::Pias, MEMORY_MB, 1, 2)?;
    for i in [a, b] {
        Sides::wait_ready(lan, i, Which::Pias)?;
    }
    let remote = group(REMOTE_ANYCAST, DNS_PORT, false);
    let _agents = Sides::agents(lan, &[(remote, SocketAddrV4::new(TARGET, DNS_PORT))])?;
    let to = SocketAddrV4::new(REMOTE_ANYCAST, DNS_PORT);
    if measure::first_answer(&lan.client_ns, CLIENT, to, Duration::from_secs(30), || {
        Ok(())
    })?
    .is_none()
    {
        bail!("IAP ≠ JAP: no answer through {to} within 30 s");
    }
    let r1 = measure::rr(&lan.client_ns, CLIENT, to, plan.serial, 1)?;
    put_rr(&mut f, &["ne_p50_1", "ne_p99_1", "ne_rate_1"], &r1);
    let r16 = measure::rr(&lan.client_ns, CLIENT, to, plan.parallel, 16)?;
    f.insert("ne_rate_16", r16.rate());
    for i in [a, b] {
        lan.lab.appliances[i].kill();
    }
    Ok(f)
}

/// The table's rows: (key, metric, unit, goal); PIAS-only rows last.
pub const ROWS: &[(&str, &str, &str, Goal)] = &[
    (
        "ready",
        "QEMU start to ready (rules in place)",
        "ms",
        Goal::None,
    ),
    (
        "first",
        "QEMU start to first forwarded UDP answer",
        "ms",
        Goal::AtMost(0.01),
    ),
    (
        "memory",
        "smallest -m that boots and forwards",
        "MiB",
        Goal::AtMost(0.25),
    ),
    (
        "image",
        "image (kernel + config or initramfs)",
        "bytes",
        Goal::AtMost(0.05),
    ),
    ("idle", "idle host CPU", "% of a core", Goal::AtMost(1.0)),
    ("p50_1", "UDP p50, 1 in flight", "ms", Goal::AtMost(0.5)),
    ("p99_1", "UDP p99, 1 in flight", "ms", Goal::None),
    ("rate_1", "UDP req/s, 1 in flight", "req/s", Goal::None),
    ("p50_4", "UDP p50, 4 in flight", "ms", Goal::None),
    (
        "rate_4",
        "UDP req/s, 4 in flight",
        "req/s",
        Goal::AtLeast(2.0),
    ),
    ("p50_16", "UDP p50, 16 in flight", "ms", Goal::None),
    ("p99_16", "UDP p99, 16 in flight", "ms", Goal::None),
    (
        "rate_16",
        "UDP req/s, 16 in flight",
        "req/s",
        Goal::AtLeast(2.0),
    ),
    (
        "unanswered_16",
        "UDP unanswered, 16 in flight",
        "%",
        Goal::None,
    ),
    (
        "pps",
        "64-byte UDP forwarded at saturation",
        "pps",
        Goal::AtLeast(2.0),
    ),
    (
        "pps_loss",
        "64-byte UDP lost at saturation",
        "%",
        Goal::None,
    ),
    (
        "tcp_up",
        "TCP bulk (iperf3), client to target",
        "Mbit/s",
        Goal::AtLeast(0.5),
    ),
    (
        "tcp_down",
        "TCP bulk (iperf3 -R), target to client",
        "Mbit/s",
        Goal::AtLeast(0.5),
    ),
    (
        "loss_p50_1",
        "1% loss: UDP p50, 1 in flight",
        "ms",
        Goal::AtMost(0.5),
    ),
    (
        "loss_p99_1",
        "1% loss: UDP p99, 1 in flight",
        "ms",
        Goal::None,
    ),
    (
        "loss_rate_1",
        "1% loss: UDP req/s, 1 in flight",
        "req/s",
        Goal::None,
    ),
    (
        "loss_rate_16",
        "1% loss: UDP req/s, 16 in flight",
        "req/s",
        Goal::AtLeast(2.0),
    ),
    (
        "loss_tcp_up",
        "1% loss: TCP bulk, client to target",
        "Mbit/s",
        Goal::AtLeast(0.5),
    ),
    (
        "loss_tcp_down",
        "1% loss: TCP bulk, target to client",
        "Mbit/s",
        Goal::AtLeast(0.5),
    ),
];

pub const PIAS_ONLY: &[(&str, &str, &str)] = &[
    (
        "ne_p50_1",
        "IAP ≠ JAP (PIAS only): UDP p50, 1 in flight",
        "ms",
    ),
    (
        "ne_p99_1",
        "IAP ≠ JAP (PIAS only): UDP p99, 1 in flight",
        "ms",
    ),
    (
        "ne_rate_1",
        "IAP ≠ JAP (PIAS only): UDP req/s, 1 in flight",
        "req/s",
    ),
    (
        "ne_rate_16",
        "IAP ≠ JAP (PIAS only): UDP req/s, 16 in flight",
        "req/s",
    ),
];

/// The rows from both sides' figures; an error naming every metric either
/// side lacks (or measured as not a number), and every rate with a goal
/// (`AtLeast`) that Linux measured as zero: nothing forwarded, no ratio to
/// hold PIAS to. (A zero under an `AtMost` goal can be honest: a very idle
/// guest's CPU time in 10 ms ticks. Its ratio shows as "-".)
pub fn rows(pias: &Figures, linux: &Figures) -> Result<Vec<Row>> {
    let mut missing = Vec::new();
    let mut zero = Vec::new();
    let mut out = Vec::new();
    for &(key, metric, unit, goal) in ROWS {
        let p = pias.get(key).copied().filter(|v| v.is_finite());
        let l = linux.get(key).copied().filter(|v| v.is_finite());
        match (p, l) {
            (Some(_), Some(l)) if l == 0.0 && matches!(goal, Goal::AtLeast(_)) => zero.push(metric),
            (Some(p), Some(l)) => out.push(Row {
                metric: metric.into(),
                unit,
                pias: p,
                linux: Some(l),
                goal,
            }),
            (p, l) => {
                for (side, v) in [("PIAS", p), ("Linux", l)] {
                    if v.is_none() {
                        missing.push(format!("{metric} ({side})"));
                    }
                }
            }
        }
    }
    for &(key, metric, unit) in PIAS_ONLY {
        match pias.get(key).copied().filter(|v| v.is_finite()) {
            Some(p) => out.push(Row {
                metric: metric.into(),
                unit,
                pias: p,
                linux: None,
                goal: Goal::None,
            }),
            None => missing.push(format!("{metric} (PIAS)")),
        }
    }
    if !missing.is_empty() {
        bail!(
            "not both sides were measured, so there is no comparison: missing {}",
            missing.join("; ")
        );
    }
    if !zero.is_empty() {
        bail!(
            "the Linux guest measured 0 for {}: no ratio to compare PIAS with (did it forward anything?)",
            zero.join("; ")
        );
    }
    Ok(out)
}

/// The CSV (`metric,unit,pias,linux,ratio,goal,met`).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("metric,unit,pias,linux,ratio,goal,met\n");
    for r in rows {
        let _ = writeln!(
            s,
            "\"{}\",{},{:.6},{},{},{},{}",
            r.metric,
            r.unit,
            r.pias,
            r.linux.map_or(String::new(), |l| format!("{l:.6}")),
            r.ratio().map_or(String::new(), |x| format!("{x:.4}")),
            r.goal.text(),
            r.met().map_or("-".to_string(), |m| m.to_string())
        );
    }
    s
}

/// The Markdown table, with the run's conditions above it.
pub fn table(rows: &[Row], header: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{header}");
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| metric | unit | PIAS | Linux | PIAS / Linux | goal | met |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---|---|");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.metric,
            r.unit,
            num(r.pias),
            r.linux.map_or("-".into(), num),
            r.ratio().map_or("-".into(), |x| format!("{x:.3}")),
            r.goal.text(),
            match r.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        );
    }
    t
}

fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Removes a previous run's `vs-linux.{csv,md}` from `out_dir`, if any.
fn remove_last_run(out_dir: &Path) -> Result<()> {
    for f in ["vs-linux.csv", "vs-linux.md"] {
        match std::fs::remove_file(out_dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the last run's {f}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs the comparison; returns the rows (also printed and written to
/// `out_dir`).
pub fn run(plan: Plan, accel: Accel, out_dir: &Path) -> Result<Vec<Row>> {
    let machine = Machine::Microvm;
    // A run that fails must not leave the last run's table looking like its.
    remove_last_run(out_dir)?;
    let cache = build::workspace_root().join("out/vs-linux");
    eprintln!(
        "building both sides (the Linux guest is cached in {})",
        cache.display()
    );
    let sides = Sides::new(machine, accel, &cache)
        .context("building the two sides (the Linux baseline is built from Debian's packages)")?;
    let mut lan = BenchLan::up("vslinux")?;
    let alone = lan_alone(&lan, &plan)?;
    let mut linux = measure_side(&sides, &mut lan, Which::Linux, &plan)?;
    let mut pias = measure_side(&sides, &mut lan, Which::Pias, &plan)?;
    pias.extend(iap_ne_jap(&sides, &mut lan, &plan)?);
    let blob = pias_image::encode(&lan.lab.config_for(0))?;
    pias.insert(
        "image",
        (std::fs::metadata(&sides.pias_kernel)?.len() + blob.len() as u64) as f64,
    );
    linux.insert("image", sides.linux.image_bytes()? as f64);
    eprintln!("memory: bisecting each side's smallest -m");
    pias.insert(
        "memory",
        f64::from(sides.min_memory(&mut lan, Which::Pias, 0, MEMORY_MB, 1)?),
    );
    linux.insert(
        "memory",
        f64::from(sides.min_memory(&mut lan, Which::Linux, 0, 256, plan.linux_step_mb)?),
    );
    eprintln!("lossy link: {}", lan.delay_stats());
    let rows = rows(&pias, &linux)?;
    let header = format!(
        "PIAS vs Linux {} + nftables DNAT — {accel}, {machine}, -m {MEMORY_MB} (but the bisection), 1 vCPU, {}; boot rows: median of {} boots a side; host: {} cores, {}; {}",
        sides.linux.version,
        machine.nic_device(),
        plan.boots.max(1),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::host::cpu_model(),
        crate::host::qemu_version()
    );
    let t = table(&rows, &header) + &lan_alone_text(&alone, &pias, &linux);
    print!("{t}");
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("vs-linux.csv"), csv(&rows))?;
    std::fs::write(out_dir.join("vs-linux.md"), &t)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(v: f64) -> Figures {
        ROWS.iter()
            .map(|r| r.0)
            .chain(PIAS_ONLY.iter().map(|r| r.0))
            .map(|k| (k, v))
            .collect()
    }

    #[test]
    fn a_side_missing_a_metric_is_refused_by_name() {
        let mut linux = full(2.0);
        linux.remove("pps");
        linux.insert("idle", f64::NAN);
        let e = rows(&full(1.0), &linux).unwrap_err().to_string();
        assert!(
            e.contains("64-byte UDP forwarded at saturation (Linux)"),
            "{e}"
        );
        assert!(e.contains("idle host CPU (Linux)"), "{e}");
        assert!(!e.contains("(PIAS)"), "{e}");
        assert!(
            rows(&full(1.0), &Figures::new()).is_err(),
            "no baseline at all"
        );
    }

    #[test]
    fn a_goal_against_a_linux_zero_is_refused_by_name() {
        let mut linux = full(2.0);
        linux.insert("pps", 0.0);
        let e = rows(&full(1.0), &linux).unwrap_err().to_string();
        assert!(
            e.contains("measured 0 for 64-byte UDP forwarded at saturation"),
            "{e}"
        );
        // A row with no goal may be zero (no request went unanswered), and
        // so may one under an upper bound (a very idle guest's CPU).
        linux.insert("pps", 2.0);
        linux.insert("unanswered_16", 0.0);
        linux.insert("idle", 0.0);
        assert!(rows(&full(1.0), &linux).is_ok());
        // A zero of PIAS's against a goal is a result (a missed one), not a gap.
        let mut pias = full(1.0);
        pias.insert("pps", 0.0);
        let r = rows(&pias, &full(2.0)).unwrap();
        let pps = r
            .iter()
            .find(|x| x.metric.starts_with("64-byte UDP forwarded"))
            .unwrap();
        assert_eq!(pps.met(), Some(false));
    }

    #[test]
    fn a_new_run_starts_without_the_last_runs_files() {
        let dir = tempfile::tempdir().unwrap();
        remove_last_run(dir.path()).unwrap(); // nothing there: fine
        for f in ["vs-linux.csv", "vs-linux.md", "other.txt"] {
            std::fs::write(dir.path().join(f), "old").unwrap();
        }
        remove_last_run(dir.path()).unwrap();
        assert!(!dir.path().join("vs-linux.csv").exists());
        assert!(!dir.path().join("vs-linux.md").exists());
        assert!(dir.path().join("other.txt").exists(), "only its own files");
    }

    #[test]
    fn the_boot_rows_take_the_median() {
        assert_eq!(median(&mut [80.0, 60.0, 70.0, 200.0, 65.0]), 70.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.0, "the lower middle");
        assert_eq!(median(&mut [5.0]), 5.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratios_and_goals_read_both_ways() {
        let r = rows(&full(1.0), &full(4.0)).unwrap();
        assert_eq!(r.len(), ROWS.len() + PIAS_ONLY.len());
        let by = |m: &str| r.iter().find(|x| x.metric == m).unwrap().clone();
        let boot = by("QEMU start to first forwarded UDP answer");
        assert_eq!(boot.ratio(), Some(0.25));
        assert_eq!(boot.met(), Some(false), "0.25 > 0.01");
        let idle = by("idle host CPU");
        assert_eq!(idle.met(), Some(true), "0.25 <= 1");
        let pps = by("64-byte UDP forwarded at saturation");
        assert_eq!(pps.met(), Some(false), "0.25 < 2");
        let only = by("IAP ≠ JAP (PIAS only): UDP p50, 1 in flight");
        assert_eq!((only.linux, only.ratio(), only.met()), (None, None, None));
        let c = csv(&r);
        assert!(c.starts_with("metric,unit,pias,linux,ratio,goal,met\n"));
        assert!(c.contains(
            "\"64-byte UDP forwarded at saturation\",pps,1.000000,4.000000,0.2500,>= 2,false\n"
        ));
        assert!(
            c.contains("\"IAP ≠ JAP (PIAS only): UDP req/s, 16 in flight\",req/s,1.000000,,,-,-\n")
        );
        assert_eq!(c.lines().count(), 1 + r.len());
        let t = table(&r, "head");
        assert!(t.contains("| 64-byte UDP forwarded at saturation | pps | 1.000 | 4.000 | 0.250 | >= 2 | **no** |"), "{t}");
    }

    #[test]
    fn the_lan_alone_shows_what_each_guest_adds() {
        let lan: Figures = [
            ("p50_1", 0.1),
            ("p50_16", 0.3),
            ("rate_16", 50_000.0),
            ("pps", 200_000.0),
        ]
        .into();
        let pias: Figures = [
            ("p50_1", 0.13),
            ("p50_16", 0.5),
            ("rate_16", 30_000.0),
            ("pps", 60_000.0),
        ]
        .into();
        let linux: Figures = [
            ("p50_1", 0.16),
            ("p50_16", 0.7),
            ("rate_16", 25_000.0),
            ("pps", 55_000.0),
        ]
        .into();
        let t = lan_alone_text(&lan, &pias, &linux);
        // 0.03 ms added against 0.06 ms: half.
        assert!(
            t.contains("| UDP p50, 1 in flight | ms | 0.100 | 0.130 | 0.160 | 0.500 |"),
            "{t}"
        );
        assert!(
            t.contains("| UDP p50, 16 in flight | ms | 0.300 | 0.500 | 0.700 | 0.500 |"),
            "{t}"
        );
        assert!(t.contains("| 64-byte UDP received at the sink | pps | 200000.000 | 60000.000 | 55000.000 | - |"), "{t}");
    }
}
