//! `pias-qemu`: boot PIAS appliances in a lab and talk to them.
//!
//! `demo` (the README's main command) brings up the three-POP lab with one
//! appliance per POP, real DNS and web servers joined through the target
//! agent, and shows dig and curl answered through the anycast address; `topo`
//! is the same for any topology file. `one` boots one appliance and shows its
//! status; `lab` boots several on one bridge; `bench` prints figures.

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

/// Options of the multi-POP lab (`demo`, `topo`).
#[derive(clap::Args, Clone)]
struct TopoArgs {
    /// Topology file (default: the embedded lab/three-pops.toml).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Run the checks, then remove the lab and exit 0 (all passed) or 1.
    #[arg(long)]
    once: bool,
    /// microvm or q35.
    #[arg(long, default_value = "microvm")]
    machine: String,
    /// kvm, tcg or auto.
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Guest memory in MiB per appliance.
    #[arg(long, default_value_t = 64)]
    memory: u32,
    /// Pings per measured pair of POPs.
    #[arg(long, default_value_t = 5)]
    pings: u32,
    /// How each POP's router learns the anycast prefix: "bird" (BIRD 2,
    /// eBGP with its appliance and the other POPs' routers), "frr" (the same
    /// with FRR) or "static".
    #[arg(long, default_value = "bird")]
    routers: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// The three-POP lab: one appliance per POP, dnsmasq and nginx joined to
    /// their anycast groups by the target agent, dig and curl through
    /// 203.0.113.10 from every POP; up until Ctrl-C (--once: check and exit).
    Demo(TopoArgs),
    /// Boot one appliance with the default config, ping it, show its status.
    One(Boot),
    /// Boot N appliances on one bridge and show each answering.
    Lab {
        #[arg(long, default_value_t = 2)]
        count: usize,
        #[command(flatten)]
        boot: Boot,
    },
    /// Print the boot and network figures (writes out/bench.txt too).
    Bench(bench::Args),
    /// Bring up the multi-POP lab (namespaces, delay lines, dnsmasq, nginx, one
    /// appliance per POP) from a topology file, print what it is and the RTTs
    /// between POPs, and keep it up until Ctrl-C (or check it and exit: --once).
    Topo(TopoArgs),
    /// What the proxy costs a client: UDP request/response through one and two
    /// appliances (1 and 16 in flight), 64-byte queries at saturation, curl
    /// throughput, boot to the first proxied answer, memory — each beside the
    /// same traffic sent straight to the server (out/bench/proxy.csv).
    Proxybench {
        /// Every row once with small counts.
        #[arg(long)]
        quick: bool,
        /// kvm, tcg or auto.
        #[arg(long, default_value = "tcg")]
        accel: String,
    },
    /// BGP and BFD in the three-POP lab with BIRD routers, repeated: a hung
    /// appliance's route withdrawal and the client's outage (hold timer 3 s,
    /// then BFD 100 ms x 3), the session's return, queries lost in a drain;
    /// min/median/max (out/bench/bgp.csv).
    Bgpbench {
        /// Rounds per mode.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// kvm, tcg or auto.
        #[arg(long, default_value = "tcg")]
        accel: String,
    },
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
            None => lab.config_for(n),
        };
        let ip = std::net::Ipv4Addr::from(cfg.interfaces[0].address.addr.0);
        let mut spec = Spec::new(machine, accel, pias_image::encode(&cfg)?);
        spec.memory_mb = b.memory;
        let i = lab.boot(&kernel, spec)?;
        targets.push((i, ip, cfg.ports.management, cfg.management.key.clone()));
    }
    let mut pinger = Pinger::new(&lab)?;
    for (i, ip, port, key) in targets.iter().cloned() {
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
        let status = MgmtClient::in_netns(&lab.ns, lab.host_ip, ip, port, key)?.status()?;
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

fn topo(a: TopoArgs) -> Result<()> {
    let TopoArgs {
        file,
        once,
        machine,
        accel,
        memory,
        pings,
        routers,
    } = a;
    let (machine, accel) = (machine.as_str(), accel.as_str());
    use pias_qemu::pops::{TopoLab, TopoOptions};
    use pias_qemu::topo::{Topology, DNS_ANSWER, DNS_NAME};
    // This binary aborts on panic (no unwinding): clean the lab up first.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        pias_qemu::lab::cleanup_all();
    }));
    let topology = match &file {
        Some(f) => Topology::load(f)?,
        None => Topology::three_pops()?,
    };
    let mut opts = TopoOptions::new("topo", accel_of(accel)?);
    opts.machine = Machine::parse(machine)
        .with_context(|| format!("unknown machine {machine:?} (microvm, q35)"))?;
    opts.memory_mb = memory;
    opts.routers = match routers.as_str() {
        "bird" => pias_qemu::pops::Routers::Bird,
        "frr" => pias_qemu::pops::Routers::Frr,
        "static" => pias_qemu::pops::Routers::Static,
        other => anyhow::bail!("--routers {other:?}: use bird, frr or static"),
    };
    eprintln!("building the appliance kernel and the target agent…");
    let kernel = build::kernel()?;
    opts.agent = Some(build::agent()?);
    let started = std::time::Instant::now();
    let mut lab = TopoLab::up(topology, &kernel, &opts)?;
    lab.wait_agents_joined(Duration::from_secs(20))?;
    println!(
        "up in {:.1} s ({}, {})",
        started.elapsed().as_secs_f64(),
        opts.machine,
        opts.accel
    );
    print!("{}", lab.summary());
    let pops = lab.topology.pops.clone();
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(what);
        }
    };
    println!("round trips between the POPs' clients ({pings} pings each):");
    for i in 0..pops.len() {
        for j in i + 1..pops.len() {
            let want = lab.topology.path_delay(i, j).unwrap_or_default() * 2;
            let what = format!(
                "{} -> {} (configured {:.0} ms)",
                pops[i].name,
                pops[j].name,
                want.as_secs_f64() * 1e3
            );
            match lab.client_rtt(i, j, pings) {
                Ok(s) => check(
                    s.received == s.sent
                        && s.min + Duration::from_micros(500) >= want
                        && s.avg <= want + Duration::from_millis(5) + want / 10,
                    format!("{what}: {s}"),
                ),
                Err(e) => check(false, format!("{what}: {e:#}")),
            }
        }
    }
    if opts.routers != pias_qemu::pops::Routers::Static {
        println!(
            "BGP: each router's route to the anycast prefix ({:?}):",
            opts.routers
        );
        for (p, pop) in pops.iter().enumerate() {
            let route = lab.anycast_route(p).unwrap_or_else(|e| format!("{e:#}"));
            check(
                route.contains(&format!("via {} ", pop.appliance_ip())),
                format!("{} router: {route}", pop.name),
            );
        }
    }
    println!("appliances (status asked from each POP's router):");
    for (p, pop) in pops.iter().enumerate() {
        match lab.status(p) {
            Ok(s) => check(
                s.node_id == u32::from(pop.index),
                format!(
                    "{}: node {} \"{}\" at {}, up {:.1} s, rx {} tx {} frames",
                    pop.name,
                    s.node_id,
                    s.name,
                    pop.appliance_ip(),
                    s.uptime_ms as f64 / 1e3,
                    s.net.rx_frames,
                    s.net.tx_frames
                ),
            ),
            Err(e) => check(false, format!("{}: {e:#}", pop.name)),
        }
    }
    if once {
        println!("services, from another POP's client:");
        for (p, pop) in pops.iter().enumerate() {
            let from = (p + 1) % pops.len();
            for t in &pop.targets {
                if !t.services.contains(&pias_qemu::topo::Service::Dns) {
                    continue;
                }
                let ip = pop.target_ip(t.index);
                let what = format!("dig @{ip} {DNS_NAME} from {}", pops[from].name);
                match lab.dig(&lab.client_ns(from), ip, DNS_NAME) {
                    Ok(a) => check(
                        a.contains(&DNS_ANSWER.to_string()),
                        format!("{what}: {a:?}"),
                    ),
                    Err(e) => check(false, format!("{what}: {e:#}")),
                }
            }
        }
        for (n, w) in lab.web.clone().iter().enumerate() {
            let from = (w.pop + 1) % pops.len();
            let url = format!("http://{}/big.bin", w.ip);
            let what = format!("curl {url} from {}", pops[from].name);
            let t0 = std::time::Instant::now();
            let got = lab
                .curl(&lab.client_ns(from), &url, &format!("fetched-{n}.bin"))
                .and_then(|f| pias_qemu::services::sha256_file(&f));
            match got {
                Ok(h) => check(
                    h == w.root.big_sha256,
                    format!(
                        "{what}: sha256 {} in {:.0} ms",
                        &h[..16],
                        t0.elapsed().as_secs_f64() * 1e3
                    ),
                ),
                Err(e) => check(false, format!("{what}: {e:#}")),
            }
        }
    }
    anycast_checks(&lab, &mut check);
    println!("what each appliance counted (nonzero counters):");
    for (p, pop) in pops.iter().enumerate() {
        match lab.proxy_report(p) {
            Ok(r) => print!("{}:\n{}", pop.name, pias_qemu::report::proxy_text(&r)),
            Err(e) => println!("{}: {e:#}", pop.name),
        }
    }
    println!("delay lines:\n{}", lab.link_counters());
    if once {
        drop(lab);
        if !failures.is_empty() {
            bail!(
                "{} check(s) failed: {}",
                failures.len(),
                failures.join("; ")
            );
        }
        println!("all checks passed; lab removed");
        return Ok(());
    }
    println!("lab {} is up — try it by hand, e.g.:", lab.prefix);
    println!(
        "  ip netns exec {} dig @203.0.113.10 whoami.test",
        lab.client_ns(0)
    );
    println!(
        "  ip netns exec {} curl -s http://203.0.113.10/",
        lab.client_ns(1)
    );
    println!("Ctrl-C removes it");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The job itself: unmodified dig and curl from every POP's client, to the
/// anycast address, answered by real servers through IAP -> JAP -> target.
fn anycast_checks(lab: &pias_qemu::pops::TopoLab, check: &mut impl FnMut(bool, String)) {
    use pias_qemu::pops::{DNS_GROUP, HTTP_GROUP};
    use pias_qemu::topo::{DNS_ANSWER, DNS_NAME, DNS_WHOAMI};
    let pops = lab.topology.pops.clone();
    let aa = std::net::Ipv4Addr::from(DNS_GROUP.ip.0);
    println!("through the anycast address {aa} (IAP -> JAP -> target -> client):");
    for (p, pop) in pops.iter().enumerate() {
        let ns = lab.client_ns(p);
        let what = format!("dig @{aa} {DNS_NAME} from {}", pop.name);
        match lab.dig(&ns, aa, DNS_NAME) {
            Ok(a) => check(
                a.contains(&DNS_ANSWER.to_string()),
                format!("{what}: {a:?}"),
            ),
            Err(e) => check(false, format!("{what}: {e:#}")),
        }
        let what = format!("dig @{aa} {DNS_WHOAMI} from {}", pop.name);
        match lab.dig(&ns, aa, DNS_WHOAMI) {
            Ok(a) => check(!a.is_empty(), format!("{what}: answered by {a:?}")),
            Err(e) => check(false, format!("{what}: {e:#}")),
        }
        let hashes: Vec<String> = lab.web.iter().map(|w| w.root.big_sha256.clone()).collect();
        let url = format!("http://{aa}:{}/big.bin", HTTP_GROUP.port);
        let what = format!("curl {url} from {}", pop.name);
        let t0 = std::time::Instant::now();
        match lab
            .curl(&ns, &url, &format!("anycast-{p}.bin"))
            .and_then(|f| pias_qemu::services::sha256_file(&f))
        {
            Ok(h) => {
                let server = lab
                    .web
                    .iter()
                    .find(|w| w.root.big_sha256 == h)
                    .map_or("no server".to_string(), |w| w.ip.to_string());
                check(
                    hashes.contains(&h),
                    format!(
                        "{what}: 1 MB intact (sha256 {}…, from {server}) in {:.0} ms",
                        &h[..12],
                        t0.elapsed().as_secs_f64() * 1e3
                    ),
                )
            }
            Err(e) => check(false, format!("{what}: {e:#}")),
        }
    }
    // The load-policy group: one client's flows (fresh source ports) spread
    // over every DNS server, in proportion to the members behind each JAP.
    let aa = std::net::Ipv4Addr::from(pias_qemu::pops::DNS_LOAD_GROUP.ip.0);
    let flows = 40;
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..flows {
        let who = pias_qemu::rr::DnsClient::in_netns(
            &lab.client_ns(0),
            pops[0].client_ip(),
            std::net::SocketAddrV4::new(aa, 53),
        )
        .and_then(|mut c| c.ask(DNS_WHOAMI, Duration::from_secs(2)));
        let who = match who {
            Ok(Some((_, a))) => a.to_string(),
            Ok(None) => "unanswered".into(),
            Err(e) => format!("error: {e:#}"),
        };
        *by.entry(who).or_default() += 1;
    }
    let servers = lab
        .topology
        .pops
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .filter(|t| t.services.contains(&pias_qemu::topo::Service::Dns))
                .map(|t| p.target_ip(t.index).to_string())
        })
        .filter(|s| by.contains_key(s))
        .count();
    check(
        by.keys()
            .all(|k| !k.starts_with("unanswered") && !k.starts_with("error"))
            && servers > 1,
        format!(
            "{flows} flows from {} to {aa} (load policy): {by:?}",
            pops[0].name
        ),
    );
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Demo(a) => topo(a),
        Cmd::One(b) => boot_lab(&b, 1),
        Cmd::Lab { count, boot } => boot_lab(&boot, count),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Topo(a) => topo(a),
        Cmd::Proxybench { quick, accel } => {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                previous(info);
                pias_qemu::lab::cleanup_all();
            }));
            let plan = if quick {
                pias_qemu::proxybench::Plan::QUICK
            } else {
                pias_qemu::proxybench::Plan::FULL
            };
            let out = build::workspace_root().join("out/bench");
            pias_qemu::proxybench::run(plan, accel_of(&accel)?, &out).map(|_| ())
        }
        Cmd::Bgpbench { runs, accel } => {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                previous(info);
                pias_qemu::lab::cleanup_all();
            }));
            let out = build::workspace_root().join("out/bench");
            let table = pias_qemu::bgpbench::run(runs.max(1), accel_of(&accel)?, &out)?;
            print!("{table}");
            Ok(())
        }
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
