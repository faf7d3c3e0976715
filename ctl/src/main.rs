//! `piasctl`: the operator's CLI for a PIAS appliance, over the
//! authenticated management protocol (docs/appliance.md). Every error is one
//! line saying what to do; no key is ever printed.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pias::mgmt::{Body, Refusal};
use pias_ctl::{report, Client};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "piasctl",
    version,
    about = "Operate a PIAS appliance over its management port"
)]
struct Cli {
    /// The appliance's management key: a file of 64 hex digits or 32 raw
    /// bytes (the one in its config's management.key).
    #[arg(long, env = "PIAS_MGMT_KEY_FILE", global = true)]
    key_file: Option<PathBuf>,
    /// The management port (ports.management).
    #[arg(long, default_value_t = 7001, global = true)]
    port: u16,
    /// How long each attempt waits for the answer, ms.
    #[arg(long, default_value_t = 500, global = true)]
    timeout_ms: u64,
    /// Attempts before giving up.
    #[arg(long, default_value_t = 3, global = true)]
    tries: u32,
    /// Print the answer as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Identity, version, uptime, interfaces, what each role did, table fill,
    /// the top drop reasons, then every counter of the status.
    Status {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// The proxy's counters by role (IAP, JAP, RAP) and the data path's, every drop by reason.
    Counters {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// Status and counters again every --interval-ms, one line of rates each
    /// (frames, client packets, deliveries, drops, management requests per
    /// second); --count lines, or until Ctrl-C.
    Watch {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
        /// Between samples, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Lines to print (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// What the appliance knows of each group as IAP (its cached JAPs), JAP
    /// (its targets and what it reported) and RAP (the JAPs and counts it holds).
    Groups {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
        /// Groups as anycast address:port/transport, e.g. 203.0.113.10:53/udp.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// BGP: health, drain, each neighbour's session and what it has from us.
    Routing {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// Drain: announce with GRACEFUL_SHUTDOWN, then withdraw after bgp.drain_delay_ms.
    Drain {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// End a drain: announce again as health allows.
    Undrain {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// Withdraw the prefixes, then stop the appliance cleanly (only if its management.allow_shutdown is true).
    Shutdown {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
}

fn target(text: &str, port: u16) -> Result<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddrV4>() {
        return Ok(a.into());
    }
    match text.parse::<Ipv4Addr>() {
        Ok(ip) => Ok(SocketAddrV4::new(ip, port).into()),
        Err(_) => bail!("{text:?} is not an IPv4 address or address:port"),
    }
}

fn client(cli: &Cli, appliance: &str) -> Result<Client> {
    let to = target(appliance, cli.port)?;
    let Some(path) = &cli.key_file else {
        bail!("no key: give --key-file FILE (or set PIAS_MGMT_KEY_FILE) with the appliance's management.key");
    };
    let key = pias_image::deploy::read_key_file("--key-file", path)?;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("opening a UDP socket")?;
    let mut c = Client::new(sock, to, key).context("preparing the request")?;
    c.tries = cli.tries.max(1);
    c.per_try = Duration::from_millis(cli.timeout_ms.max(1));
    Ok(c)
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Status { appliance } => {
            let mut c = client(cli, appliance)?;
            let s = c.status()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", report::overview_text(&s, &c.proxy_report()?));
            }
        }
        Cmd::Counters { appliance } => {
            let r = client(cli, appliance)?.proxy_report()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", report::proxy_text(&r));
            }
        }
        Cmd::Watch {
            appliance,
            interval_ms,
            count,
        } => watch(cli, appliance, *interval_ms, *count)?,
        Cmd::Groups { appliance, groups } => {
            let groups = groups
                .iter()
                .map(|g| {
                    g.parse::<pias::addr::Group>().map_err(|_| {
                        anyhow::anyhow!(
                            "{g:?} is not a group: write anycast-address:port/udp or /tcp, \
                             e.g. 203.0.113.10:53/udp"
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut c = client(cli, appliance)?;
            let reports = groups
                .into_iter()
                .map(|g| c.group(g))
                .collect::<Result<Vec<_>, _>>()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    print!("{}", report::group_text(r));
                }
            }
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "piasctl",
                &mut std::io::stdout(),
            );
        }
        Cmd::Routing { appliance } => {
            let r = client(cli, appliance)?.routing()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", report::routing_text(&r));
            }
        }
        Cmd::Drain { appliance } | Cmd::Undrain { appliance } => {
            let on = matches!(cli.cmd, Cmd::Drain { .. });
            let mut c = client(cli, appliance)?;
            match c.drain(on)? {
                Body::Routing(r) if cli.json => println!("{}", serde_json::to_string_pretty(&r)?),
                Body::Routing(r) => {
                    println!(
                        "{}: {}",
                        c.target(),
                        if on { "draining" } else { "undrained" }
                    );
                    print!("{}", report::routing_text(&r));
                }
                Body::Refused(Refusal::NoBgp) => bail!(
                    "{}: refused: this appliance has no BGP neighbours (add [bgp] to its config)",
                    c.target()
                ),
                other => bail!("{}: answered {other:?}", c.target()),
            }
        }
        Cmd::Shutdown { appliance } => {
            let mut c = client(cli, appliance)?;
            match c.shutdown()? {
                Body::ShuttingDown => {
                    if cli.json {
                        println!("{}", serde_json::json!({ "shutting_down": true }));
                    } else {
                        println!("{}: shutting down", c.target());
                    }
                }
                Body::Refused(Refusal::ShutdownDisabled) => bail!(
                    "{}: shutdown refused: its config has management.allow_shutdown = false",
                    c.target()
                ),
                other => bail!("{}: answered {other:?}", c.target()),
            }
        }
    }
    Ok(())
}

/// One sample of what `watch` follows.
struct Sample {
    at: std::time::Instant,
    uptime_ms: u64,
    rx_frames: u64,
    tx_frames: u64,
    clients: u64,
    delivered: u64,
    drops: u64,
    mgmt: u64,
}

fn sample(c: &mut Client) -> Result<Sample> {
    let s = c.status()?;
    let r = c.proxy_report()?;
    // Every drop of the data path, by whatever reason.
    let drops = serde_json::to_value(r.data)?
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("drop_"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    Ok(Sample {
        at: std::time::Instant::now(),
        uptime_ms: s.uptime_ms,
        rx_frames: s.net.rx_frames,
        tx_frames: s.net.tx_frames,
        clients: r.data.rx_client,
        delivered: r.data.tx_deliver,
        drops,
        mgmt: s.mgmt.requests,
    })
}

fn watch(cli: &Cli, appliance: &str, interval_ms: u64, count: u64) -> Result<()> {
    let mut c = client(cli, appliance)?;
    let interval = Duration::from_millis(interval_ms.max(100));
    let mut last = sample(&mut c)?;
    if !cli.json {
        println!(
            "{}: every {} ms (rates per second; Ctrl-C to stop)",
            c.target(),
            interval.as_millis()
        );
    }
    let mut printed = 0;
    while count == 0 || printed < count {
        std::thread::sleep(interval);
        let now = sample(&mut c)?;
        let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let rates = [
            ("rx_frames", rate(last.rx_frames, now.rx_frames)),
            ("tx_frames", rate(last.tx_frames, now.tx_frames)),
            ("client_packets", rate(last.clients, now.clients)),
            ("delivered", rate(last.delivered, now.delivered)),
            ("drops", rate(last.drops, now.drops)),
            ("mgmt_requests", rate(last.mgmt, now.mgmt)),
        ];
        if cli.json {
            let mut o = serde_json::Map::new();
            o.insert("uptime_ms".into(), now.uptime_ms.into());
            for (k, v) in rates {
                o.insert(
                    format!("{k}_per_s"),
                    serde_json::json!((v * 10.0).round() / 10.0),
                );
            }
            println!("{}", serde_json::Value::Object(o));
        } else {
            let line: Vec<String> = rates.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
            println!(
                "up {:.1} s  {}",
                now.uptime_ms as f64 / 1e3,
                line.join("  ")
            );
        }
        last = now;
        printed += 1;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("piasctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
