//! `pias-agent join …`: one service's membership of one anycast group (see
//! docs/agent.md). The protocol is `pias_agent::Agent`; this file owns the UDP
//! socket, the health-check thread and the signals.

#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pias::addr::{Endpoint, Group, Ipv4};
use pias_agent::{parse_key, Agent, AgentConfig, RiseFall};
use std::io::ErrorKind;
use std::net::{SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The PIAS target agent: makes an unmodified server a member of an anycast group.
#[derive(Parser)]
#[command(name = "pias-agent", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Join the service to the group, answer its JAP's health pings, leave on
    /// SIGTERM/SIGINT or when the health check fails. One process per group.
    Join(JoinArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["key_file", "key_hex"])))]
#[command(group(clap::ArgGroup::new("check").args(["check_tcp", "check_cmd"])))]
struct JoinArgs {
    /// The anycast group, IP:PORT/udp or IP:PORT/tcp (e.g. 203.0.113.10:53/udp).
    #[arg(long, value_parser = parse_group)]
    group: Group,
    /// The service's own endpoint, where clients' packets go (e.g. 198.18.1.20:53).
    #[arg(long, value_parser = parse_endpoint)]
    service: Endpoint,
    /// File holding the group key: 64 hex digits or 32 raw bytes.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The group key as 64 hex digits (visible to other local users: prefer --key-file).
    #[arg(long)]
    key_hex: Option<String>,
    /// The deployment's registration port (`ports.registration`).
    #[arg(long, default_value_t = 7000)]
    registration_port: u16,
    /// The service's share of the group's clients relative to other members, 1..=1000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    weight: u16,
    /// The agent's own socket (default: the service's IP, any port). Its IP
    /// must be the service's: a proxy accepts a join only from the target's address.
    #[arg(long)]
    bind: Option<SocketAddrV4>,
    /// Healthy while a TCP connection to HOST:PORT succeeds.
    #[arg(long, value_name = "HOST:PORT")]
    check_tcp: Option<String>,
    /// Healthy while this shell command exits 0.
    #[arg(long, value_name = "CMD")]
    check_cmd: Option<String>,
    /// Passes in a row that make an unhealthy service healthy.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    rise: u32,
    /// Failures in a row that make a healthy service unhealthy.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    fall: u32,
    /// Milliseconds between health checks.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    check_interval_ms: u64,
    /// A check still running after this many milliseconds fails.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..))]
    check_timeout_ms: u64,
    /// First wait (ms) for the answer to a join before it is sent again;
    /// it doubles per try up to --retry-cap-ms. An agent started before its
    /// proxy (say, beside an appliance that is booting) joins as soon as the
    /// proxy answers if this is short.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    retry_ms: u64,
    /// The longest wait (ms) between tries of a join (at least --retry-ms).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    retry_cap_ms: u64,
    /// Rejoin when no verified ping came for this long (the appliance pings every 2 s).
    #[arg(long, default_value_t = 7000, value_parser = clap::value_parser!(u64).range(100..))]
    ping_timeout_ms: u64,
}

fn parse_group(s: &str) -> Result<Group, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn main() -> ExitCode {
    let Cli {
        cmd: Cmd::Join(args),
    } = Cli::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pias-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long a stopping agent waits for the answer to its leave.
const LEAVE_WAIT: Duration = Duration::from_secs(1);
/// The loop wakes at least this often (signals, health verdicts).
const TICK: Duration = Duration::from_millis(50);

fn run(args: JoinArgs) -> Result<()> {
    let key = match (&args.key_file, &args.key_hex) {
        (Some(path), _) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?;
            parse_key(&bytes).with_context(|| format!("key file {}", path.display()))?
        }
        (None, Some(hex)) => parse_key(hex.as_bytes()).context("--key-hex")?,
        (None, None) => bail!("give the group key with --key-file or --key-hex"),
    };
    let service_ip = std::net::Ipv4Addr::from(args.service.ip.0);
    let bind = args.bind.unwrap_or(SocketAddrV4::new(service_ip, 0));
    if *bind.ip() != service_ip {
        bail!(
            "--bind {bind}: the agent's address must be the service's ({service_ip}): a proxy \
             accepts a join only from the target's own address"
        );
    }
    let sock = UdpSocket::bind(bind).with_context(|| {
        format!("cannot bind {bind} (run the agent on the service's host, which owns {service_ip})")
    })?;

    let mut cfg = AgentConfig::new(args.group, args.service, key);
    cfg.registration_port = args.registration_port;
    cfg.weight = args.weight;
    cfg.ping_timeout_ms = args.ping_timeout_ms;
    if args.retry_cap_ms < args.retry_ms {
        bail!(
            "--retry-cap-ms {} is below --retry-ms {}: the cap is the longest wait between tries",
            args.retry_cap_ms,
            args.retry_ms
        );
    }
    cfg.retry_ms = args.retry_ms;
    cfg.retry_cap_ms = args.retry_cap_ms;
    let group = cfg.group;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness for nonces: {e}"))?;
    let mut agent = Agent::new(cfg, u64::from_le_bytes(seed));

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the SIGTERM/SIGINT handler")?;

    let check = match (args.check_tcp, args.check_cmd) {
        (Some(addr), _) => Some(Check::Tcp(addr)),
        (None, Some(cmd)) => Some(Check::Cmd(cmd)),
        (None, None) => None,
    };
    let verdicts = match &check {
        Some(c) => {
            eprintln!("pias-agent: {group}: health check: {c}");
            Some(spawn_checks(
                c.clone(),
                Duration::from_millis(args.check_interval_ms),
                Duration::from_millis(args.check_timeout_ms),
            ))
        }
        None => {
            agent.set_healthy(now_ms(), true);
            None
        }
    };
    let mut rise_fall = RiseFall::new(args.rise, args.fall);
    eprintln!(
        "pias-agent: {group}: service {} joins via {} from {}",
        args.service,
        agent.config().registration(),
        sock.local_addr().map_or(bind.into(), |a| a)
    );

    let mut leave_deadline: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    loop {
        let now = now_ms();
        if stop.load(Ordering::SeqCst) && leave_deadline.is_none() {
            eprintln!("pias-agent: {group}: stopping: leaving the group");
            agent.shutdown(now);
            leave_deadline = Some(Instant::now() + LEAVE_WAIT);
        }
        if let (Some(rx), None) = (&verdicts, leave_deadline) {
            while let Ok(ok) = rx.try_recv() {
                if let Some(healthy) = rise_fall.observe(ok) {
                    agent.set_healthy(now, healthy);
                }
            }
        }
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        while let Some(t) = agent.poll_transmit() {
            if let Err(e) = sock.send_to(&t.bytes, to_socket(t.to)) {
                eprintln!("pias-agent: {group}: cannot send to {}: {e}", t.to);
            }
        }
        while let Some(e) = agent.poll_event() {
            eprintln!("pias-agent: {group}: {e}");
        }
        if agent.is_done() {
            return Ok(());
        }
        if leave_deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "pias-agent: {group}: no answer to the leave within 1 s: exiting (the JAP will \
                 find the target silent and stop sending it clients)"
            );
            return Ok(());
        }
        let wait = agent
            .poll_timeout()
            .map_or(TICK, |t| Duration::from_millis(t.saturating_sub(now)))
            .clamp(Duration::from_millis(1), TICK);
        sock.set_read_timeout(Some(wait))
            .context("cannot set the socket's timeout")?;
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(src))) => {
                let src = Endpoint {
                    ip: Ipv4(src.ip().octets()),
                    port: src.port(),
                };
                agent.handle_datagram(now_ms(), src, &buf[..n]);
            }
            Ok((_, SocketAddr::V6(_))) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // An ICMP error reported on the socket, say: not fatal.
                eprintln!("pias-agent: {group}: receive: {e}");
                thread::sleep(TICK);
            }
        }
    }
}

/// Unix time in ms (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_socket(e: Endpoint) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(e.ip.0.into(), e.port))
}

/// A health check, ExaBGP-healthcheck style.
#[derive(Clone, Debug)]
enum Check {
    /// A TCP connection to HOST:PORT succeeds.
    Tcp(String),
    /// `sh -c CMD` exits 0.
    Cmd(String),
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Tcp(a) => write!(f, "TCP connect to {a}"),
            Check::Cmd(c) => write!(f, "command `{c}` exits 0"),
        }
    }
}

impl Check {
    fn run(&self, timeout: Duration) -> bool {
        match self {
            Check::Tcp(addr) => addr.to_socket_addrs().is_ok_and(|mut addrs| {
                addrs.any(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
            }),
            Check::Cmd(cmd) => run_cmd(cmd, timeout),
        }
    }
}

/// Runs `sh -c cmd`; true if it exits 0 within `timeout` (else it is killed).
fn run_cmd(cmd: &str, timeout: Duration) -> bool {
    let Ok(mut child) = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Runs `check` every `interval` on its own thread (a slow check never
/// delays a pong); each result arrives on the channel.
fn spawn_checks(check: Check, interval: Duration, timeout: Duration) -> mpsc::Receiver<bool> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || loop {
        let started = Instant::now();
        if tx.send(check.run(timeout)).is_err() {
            return;
        }
        thread::sleep(interval.saturating_sub(started.elapsed()));
    });
    rx
}
