//! `pias-qemu`: boot PIAS appliances in a lab and talk to them.
//!
//! `demo` builds the kernel, boots one appliance with the embedded default
//! config, pings it, prints its status and keeps it up until Ctrl-C.
//! `lab` boots several on one bridge. `bench` prints the boot/network figures.

mod bench;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pias_qemu::client::{MgmtClient, Pinger};
use pias_qemu::{build, delayline, Accel, Lab, Machine, Spec};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pias-qemu",
    about = "Boot PIAS appliances in QEMU labs",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Boot {
    /// microvm or q35 (q35 boots through qboot).
    #[arg(long, default_value = "microvm")]
    machine: String,
    /// kvm, tcg or auto (auto avoids PVM nested KVM; see PLATFORM.md).
    #[arg(long, default_value = "auto")]
    accel: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64)]
    memory: u32,
    /// A TOML config instead of the embedded default (its address is used as is).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot one appliance with the default config, ping it, show its status.
    Demo(Boot),
    /// Boot N appliances on one bridge and show each answering.
    Lab {
        #[arg(long, default_value_t = 2)]
        count: usize,
        #[command(flatten)]
        boot: Boot,
    },
    /// Print the boot and network figures (writes out/bench.txt too).
    Bench(bench::Args),
    /// Forward Ethernet frames between two interfaces of the current network
    /// namespace with a delay (the host has no netem); run it with
    /// `ip netns exec NS`. Prints its counters on Ctrl-C/SIGTERM.
    Delayline {
        if_a: String,
        if_b: String,
        /// One-way delay in milliseconds (both directions).
        #[arg(long)]
        delay_ms: u64,
        /// Percentage of frames dropped at random.
        #[arg(long, default_value_t = 0.0)]
        loss_pct: f64,
        /// Frames each direction may hold (more are dropped and counted).
        #[arg(long, default_value_t = 1000)]
        queue: usize,
    },
}

fn delayline(if_a: &str, if_b: &str, params: delayline::Params) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    params.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let socks = delayline::open(if_a, if_b)?;
    eprintln!(
        "delay line {if_a} <-> {if_b}: {:?} each way, {} % loss, queue {} frames",
        params.delay, params.loss_pct, params.queue
    );
    let stats = delayline::Stats::default();
    let result = delayline::run(&socks, &params, &stop, &stats);
    eprintln!("{if_a} -> {if_b}: {}", stats.a_to_b);
    eprintln!("{if_b} -> {if_a}: {}", stats.b_to_a);
    result
}

fn accel_of(s: &str) -> Result<Accel> {
    if s == "auto" {
        let (a, why) = Accel::auto();
        eprintln!("accelerator: {a} ({why})");
        return Ok(a);
    }
    let a =
        Accel::parse(s).with_context(|| format!("unknown accelerator {s:?} (kvm, tcg, auto)"))?;
    if !a.available() {
        bail!("{a} is not available on this machine");
    }
    Ok(a)
}

fn boot_lab(b: &Boot, count: usize) -> Result<()> {
    let machine = Machine::parse(&b.machine)
        .with_context(|| format!("unknown machine {:?} (microvm, q35)", b.machine))?;
    let accel = accel_of(&b.accel)?;
    eprintln!("building the appliance kernel…");
    let kernel = build::kernel()?;
    let mut lab = Lab::new("demo")?;
    let mut targets = Vec::new();
    for n in 0..count {
        let cfg = match &b.config {
            Some(path) if count == 1 => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                pias_image::parse_toml(&text)
                    .with_context(|| format!("{} refused", path.display()))?
            }
            Some(_) => bail!("--config is for a single appliance; a lab readdresses the default"),
            None => Lab::config_for(n),
        };
        let ip = std::net::Ipv4Addr::from(cfg.interfaces[0].address.addr.0);
        let mut spec = Spec::new(machine, accel, pias_image::encode(&cfg)?);
        spec.memory_mb = b.memory;
        let i = lab.boot(&kernel, spec)?;
        targets.push((i, ip, cfg.ports.management));
    }
    let mut pinger = Pinger::new(&lab)?;
    for &(i, ip, port) in &targets {
        let t = lab.appliances[i].wait_for("ready:", Duration::from_secs(30))?;
        println!(
            "appliance {} ({machine}, {accel}) ready after {:.0} ms",
            i + 1,
            t.as_secs_f64() * 1e3
        );
        lab.wait_carrier(i, Duration::from_secs(5))?;
        for _ in 0..3 {
            match pinger.ping(ip, Duration::from_secs(1))? {
                Some(rtt) => println!("  ping {ip}: {:.3} ms", rtt.as_secs_f64() * 1e3),
                None => println!("  ping {ip}: no reply"),
            }
        }
        let status = MgmtClient::new(&lab, ip, port)?.status()?;
        print!(
            "  status of {ip}:{port}:\n{}",
            pias_qemu::report::status_text(&status)
        );
    }
    println!("console logs: {}", lab.path("").display());
    if b.seconds == 0 {
        println!("running in namespace {} — Ctrl-C to stop", lab.ns);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::thread::sleep(Duration::from_secs(b.seconds));
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Demo(b) => boot_lab(&b, 1),
        Cmd::Lab { count, boot } => boot_lab(&boot, count),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Delayline {
            if_a,
            if_b,
            delay_ms,
            loss_pct,
            queue,
        } => delayline(
            &if_a,
            &if_b,
            delayline::Params {
                delay: Duration::from_millis(delay_ms),
                loss_pct,
                queue,
            },
        ),
    }
}
