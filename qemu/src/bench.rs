//! `pias-qemu bench`: prints the appliance's boot and network figures (and
//! writes them to out/bench.txt). Figures, not pass/fail: the machine is
//! shared and noisy, so comparisons are ratios measured in the same run.

use anyhow::{bail, Context, Result};
use pias::config::IdleMode;
use pias::mgmt::{Body, Op};
use pias_qemu::client::{MgmtClient, Pinger};
use pias_qemu::{build, Accel, Lab, Machine, Spec};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Boots per machine/accelerator for the boot-time figures.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Status requests per load run (bounded by --load-seconds too).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    #[arg(long, default_value_t = 10)]
    load_seconds: u64,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Skip KVM rows even where /dev/kvm exists.
    #[arg(long)]
    no_kvm: bool,
    /// Instead: PIAS side by side with a Linux guest doing the same job with
    /// nftables DNAT (built once from Debian's packages into out/vs-linux),
    /// same QEMU flags, one run; a table of both and their ratio per metric
    /// against the goals, and out/bench/vs-linux.csv.
    #[arg(long)]
    vs_linux: bool,
    /// With --vs-linux: every row once with small counts (CI's smoke).
    #[arg(long, requires = "vs_linux")]
    quick: bool,
    /// With --vs-linux: the accelerator of both sides (tcg; kvm where it is
    /// real KVM: a Linux guest does not boot under this machine's PVM).
    #[arg(long, default_value = "tcg", requires = "vs_linux")]
    accel: String,
}

struct Report(String);

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.0, "{}", s.as_ref());
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn min_med_max(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return "-".into();
    }
    format!(
        "{:.1} / {:.1} / {:.1}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn blob(lab: &Lab, idle: IdleMode) -> Result<Vec<u8>> {
    let mut cfg = lab.config_for(0);
    cfg.idle = idle;
    pias_image::encode(&cfg)
}

/// Boots one appliance and returns (to first serial line, to first echo reply).
fn boot_once(
    kernel: &Path,
    machine: Machine,
    accel: Accel,
    memory_mb: u32,
) -> Result<(Duration, Duration)> {
    let mut lab = Lab::new("bench")?;
    // A static neighbour entry: the figure is the appliance's, not the host's ARP retry timer.
    let ip = Lab::appliance_ip(0);
    let mut spec = Spec::new(machine, accel, blob(&lab, IdleMode::Halt)?);
    spec.memory_mb = memory_mb;
    let mut pinger = Pinger::new(&lab)?;
    let i = lab.boot(kernel, spec)?;
    let started = lab.appliances[i].started;
    let first_line = lab.appliances[i].wait_for("pias: starting", Duration::from_secs(30))?;
    lab.exec(&[
        "ip",
        "neigh",
        "replace",
        &ip.to_string(),
        "lladdr",
        "52:54:00:00:00:02",
        "dev",
        "br0",
        "nud",
        "permanent",
    ])?;
    let reply = pinger.first_reply(
        ip,
        started,
        Duration::from_millis(2),
        Duration::from_secs(30),
    )?;
    Ok((first_line, reply))
}

/// Sequential status requests: (requests answered, seconds, sorted latencies).
fn load(
    client: &mut MgmtClient,
    requests: usize,
    seconds: u64,
) -> Result<(usize, f64, Vec<Duration>)> {
    let start = Instant::now();
    let mut lat = Vec::with_capacity(requests);
    let mut lost = 0;
    while lat.len() < requests && start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        match client.request_once(Op::Status, Duration::from_millis(200)) {
            Ok(r) if matches!(r.body, Body::Status(_)) => lat.push(t.elapsed()),
            Ok(r) => bail!("unexpected reply {:?}", r.body),
            Err(_) => lost += 1,
        }
        if lost > 100 {
            bail!("more than 100 requests lost");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Ok((lat.len(), secs, lat))
}

/// Pipelined status requests, `window` outstanding: (answered, seconds, sorted latencies).
fn pipelined(
    lab: &Lab,
    requests: usize,
    window: usize,
    seconds: u64,
) -> Result<(usize, f64, Vec<Duration>)> {
    use pias::mgmt::Response;
    let host = lab.host_ip;
    let base = pias_qemu::client::random_nonce()?;
    let sock = lab.inside(move || Ok(std::net::UdpSocket::bind((host, 0))?))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let target = std::net::SocketAddr::from((Lab::appliance_ip(0), 7001));
    let mut sent_at: Vec<Option<Instant>> = vec![None; requests];
    let (mut sent, mut outstanding) = (0usize, 0usize);
    let mut lat = Vec::with_capacity(requests);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while lat.len() < requests && start.elapsed() < Duration::from_secs(seconds) {
        while sent < requests && outstanding < window {
            let q = pias_qemu::client::sealed_request(
                &lab.mgmt_key,
                base.wrapping_add(sent as u64),
                Op::Status,
            );
            sock.send_to(&q, target)?;
            sent_at[sent] = Some(Instant::now());
            sent += 1;
            outstanding += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let r = Response::open(&lab.mgmt_key, &buf[..n])
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let i = r.nonce.wrapping_sub(base) as usize;
                if let Some(t) = sent_at.get_mut(i).and_then(Option::take) {
                    lat.push(t.elapsed());
                    outstanding -= 1;
                }
            }
            Err(_) => {
                // Lost replies: forget what is outstanding and go on (counted as missing).
                outstanding = 0;
                if sent >= requests {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Ok((lat.len(), secs, lat))
}

type LoadRun = (usize, f64, Vec<Duration>);

fn rate(run: &LoadRun) -> f64 {
    run.0 as f64 / run.1.max(1e-9)
}

fn ratio(a: &LoadRun, b: &LoadRun, q: f64) -> f64 {
    percentile(&a.2, q).as_secs_f64() / percentile(&b.2, q).as_secs_f64().max(1e-9)
}

fn load_text(run: &LoadRun) -> String {
    format!(
        "{} in {:.1} s = {:.0}/s, p50 {:.0} us, p99 {:.0} us",
        run.0,
        run.1,
        rate(run),
        percentile(&run.2, 0.5).as_secs_f64() * 1e6,
        percentile(&run.2, 0.99).as_secs_f64() * 1e6
    )
}

fn cpu_share(lab: &Lab, seconds: u64) -> Result<f64> {
    let a = &lab.appliances[0];
    let c0 = a.cpu_time()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    Ok((a.cpu_time()? - c0).as_secs_f64() / t0.elapsed().as_secs_f64())
}

fn answers(kernel: &Path, machine: Machine, accel: Accel, memory_mb: u32) -> bool {
    boot_once(kernel, machine, accel, memory_mb).is_ok()
}

pub fn run(a: Args) -> Result<()> {
    if a.vs_linux {
        use pias_qemu::vslinux::compare::{self, Plan};
        let accel = Accel::parse(&a.accel)
            .with_context(|| format!("unknown accelerator {:?} (kvm, tcg)", a.accel))?;
        let plan = if a.quick { Plan::QUICK } else { Plan::FULL };
        let out = pias_qemu::build::workspace_root().join("out/bench");
        return compare::run(plan, accel, &out).map(|_| ());
    }
    let mut r = Report(String::new());
    let host_cpu = pias_qemu::host::cpu_model();
    let qemu = pias_qemu::host::qemu_version();
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    r.line(format!(
        "# PIAS appliance benchmark — {}",
        chrono_free_now()
    ));
    r.line(format!(
        "host: {} cores, {host_cpu}; {qemu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    if pvm {
        r.line("note: /dev/kvm here is PVM (software nested virtualisation): KVM rows are PVM figures, not bare-metal KVM");
    }

    // Clean build time and image size.
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(build::workspace_root())
        .args([
            "build",
            "-q",
            "-p",
            "pias-kernel",
            "--target",
            "x86_64-unknown-none",
            "--release",
            // The release profile strips the kernel; here it keeps its
            // symbols, to show both sizes.
            "--config",
            "profile.release.package.pias-kernel.strip=\"debuginfo\"",
            "--target-dir",
        ])
        .arg(dir.path())
        .status()?;
    if !status.success() {
        bail!("clean kernel build failed");
    }
    let build_s = t.elapsed().as_secs_f64();
    let elf = dir.path().join("x86_64-unknown-none/release/pias-kernel");
    let stripped = dir.path().join("pias-kernel.stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&elf)
        .status()
        .context("running strip")?;
    if !st.success() {
        bail!("strip failed");
    }
    r.line(format!(
        "clean kernel build (release, deps included): {build_s:.1} s; ELF {} bytes with symbols, stripped (as the image ships) {} bytes",
        std::fs::metadata(&elf)?.len(),
        std::fs::metadata(&stripped)?.len()
    ));
    let kernel = build::kernel()?;

    // Boot times.
    let mut accels = vec![Accel::Tcg];
    if !a.no_kvm && Accel::Kvm.available() {
        accels.push(Accel::Kvm);
    }
    r.line(format!("boot (ms, min / median / max of {}): QEMU start -> first serial line | -> first echo reply", a.boots));
    for &accel in &accels {
        for machine in Machine::all() {
            let mut serial = Vec::new();
            let mut ping = Vec::new();
            for _ in 0..a.boots {
                let (s, p) = boot_once(&kernel, machine, accel, 64)?;
                serial.push(ms(s));
                ping.push(ms(p));
            }
            r.line(format!(
                "  {machine:<10} {accel}: {:>22} | {:>22}",
                min_med_max(serial),
                min_med_max(ping)
            ));
        }
    }

    // Smallest memory that boots and answers.
    for machine in Machine::all() {
        let mut smallest = None;
        for mb in [64, 32, 16, 8, 6, 5, 4, 3, 2, 1] {
            if answers(&kernel, machine, Accel::Tcg, mb) {
                smallest = Some(mb);
            } else {
                break;
            }
        }
        r.line(format!(
            "smallest -m that boots and answers ping ({machine}, TCG): {}",
            smallest.map_or("none of 64..1 MiB".into(), |m| format!("{m} MiB"))
        ));
    }

    // Idle CPU and status load, halting versus pure polling, same run.
    for machine in Machine::all() {
        let mut rows = Vec::new();
        for idle in [IdleMode::Halt, IdleMode::Poll] {
            let mut lab = Lab::new("bench")?;
            lab.boot(&kernel, Spec::new(machine, Accel::Tcg, blob(&lab, idle)?))?;
            lab.appliances[0].wait_for("ready:", Duration::from_secs(30))?;
            lab.wait_carrier(0, Duration::from_secs(5))?;
            let mut client = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001)?;
            client.status()?;
            let cpu = cpu_share(&lab, a.idle_seconds)?;
            let seq = load(&mut client, a.requests, a.load_seconds)?;
            let pipe = pipelined(&lab, a.requests, 16, a.load_seconds)?;
            let s = client.status()?;
            rows.push((idle, cpu, seq, pipe, s.idle.halts));
        }
        r.line(format!(
            "{machine}, TCG: idle host CPU; status requests from the lab namespace, one at a time and 16 in flight"
        ));
        for (idle, cpu, seq, pipe, halts) in &rows {
            r.line(format!(
                "  idle={idle:?}: idle CPU {:.1}% of a core; halts during the run {halts}",
                cpu * 100.0
            ));
            r.line(format!("    one at a time: {}", load_text(seq)));
            r.line(format!("    16 in flight:  {}", load_text(pipe)));
        }
        if let [h, p] = rows.as_slice() {
            r.line(format!(
                "  halt/poll: idle CPU {:.3}; one at a time p50 {:.2} p99 {:.2}; 16 in flight p50 {:.2} p99 {:.2}, rate {:.2}",
                h.1 / p.1.max(1e-9),
                ratio(&h.2, &p.2, 0.5),
                ratio(&h.2, &p.2, 0.99),
                ratio(&h.3, &p.3, 0.5),
                ratio(&h.3, &p.3, 0.99),
                rate(&h.3) / rate(&p.3).max(1e-9)
            ));
        }
    }

    for &accel in accels.iter().filter(|a| **a == Accel::Kvm) {
        for machine in Machine::all() {
            let mut lab = Lab::new("bench")?;
            lab.boot(
                &kernel,
                Spec::new(machine, accel, blob(&lab, IdleMode::Halt)?),
            )?;
            lab.appliances[0].wait_for("ready:", Duration::from_secs(60))?;
            let cpu = cpu_share(&lab, a.idle_seconds)?;
            r.line(format!(
                "{machine}, {accel}: idle host CPU {:.1}% of a core",
                cpu * 100.0
            ));
        }
    }

    std::fs::create_dir_all(build::workspace_root().join("out"))?;
    let out = build::workspace_root().join("out/bench.txt");
    std::fs::write(&out, &r.0)?;
    println!("written to {}", out.display());
    Ok(())
}

fn chrono_free_now() -> String {
    let out = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
