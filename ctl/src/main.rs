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
    /// Identity, uptime, interfaces, packet and management counters, table fill.
    Status {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
    },
    /// The proxy's counters by role (IAP, JAP, RAP) and the data path's, every drop by reason.
    Counters {
        /// The appliance: its unicast address, or address:port.
        appliance: String,
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
            let s = client(cli, appliance)?.status()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", report::status_text(&s));
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
