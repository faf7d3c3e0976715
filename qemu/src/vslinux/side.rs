//! The two sides of the comparison booted the same way (machine type,
//! accelerator, memory, vCPUs and NIC model from one `Spec`): the PIAS
//! appliance (with the target's agents joining its groups) and the Linux +
//! nftables guest (its DNAT rules on the kernel command line).

use super::guest::{Forward, GuestNet, LinuxGuest, Proto, ERROR_PREFIX, READY};
use super::lan::*;
use super::measure::first_answer;
use crate::lab::{LinuxBoot, Spec};
use crate::services::{start_agent_checking, ServiceProc};
use crate::{build, Accel, Machine};
use anyhow::{bail, Context, Result};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A guest that failed, exited or stayed silent (its reason): what the
/// memory bisection counts as "does not boot and forward". Any other error
/// (an agent, a tap, QEMU not starting) is the harness's and stops the run.
#[derive(Debug)]
pub struct GuestFailed(pub String);

impl std::fmt::Display for GuestFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuestFailed {}

/// Whether a boot for the memory bisection booted and forwarded: `Ok(None)`
/// if it did, `Ok(Some(why))` if the guest failed, the error if the harness
/// did.
fn bisection_outcome<T>(r: Result<(T, Option<Duration>)>) -> Result<Option<String>> {
    match r {
        Ok((_, Some(_))) => Ok(None),
        Ok((_, None)) => Ok(Some("ready but no answer".into())),
        Err(e) => match e.downcast_ref::<GuestFailed>() {
            Some(g) => Ok(Some(g.0.lines().next().unwrap_or_default().to_string())),
            None => Err(e),
        },
    }
}

/// Which side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Pias,
    Linux,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Pias => "PIAS",
            Which::Linux => "Linux",
        }
    }
}

/// A PIAS group: anycast address and port, UDP or TCP.
pub fn group(ip: std::net::Ipv4Addr, port: u16, tcp: bool) -> pias::Group {
    pias::Group {
        ip: pias::Ipv4(ip.octets()),
        port,
        transport: if tcp {
            pias::Transport::Tcp
        } else {
            pias::Transport::Udp
        },
    }
}

/// The groups PIAS serves, as (group, the service behind it).
pub fn groups() -> Vec<(pias::Group, SocketAddrV4)> {
    vec![
        (
            group(ANYCAST, DNS_PORT, false),
            SocketAddrV4::new(TARGET, DNS_PORT),
        ),
        (
            group(ANYCAST, SINK_PORT, false),
            SocketAddrV4::new(TARGET, SINK_PORT),
        ),
        (
            group(ANYCAST, IPERF_PORT, true),
            SocketAddrV4::new(TARGET, IPERF_PORT),
        ),
    ]
}

/// What both sides boot from, and how.
pub struct Sides {
    pub pias_kernel: PathBuf,
    pub linux: LinuxGuest,
    pub machine: Machine,
    pub accel: Accel,
}

/// Slack for a boot to say it is ready: Linux under TCG takes ~11 s.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

impl Sides {
    pub fn new(machine: Machine, accel: Accel, cache: &std::path::Path) -> Result<Sides> {
        // Built now, so that starting the agents after a boot costs a spawn,
        // not a cargo run.
        build::agent()?;
        Ok(Sides {
            pias_kernel: build::kernel()?,
            linux: LinuxGuest::build(cache)?,
            machine,
            accel,
        })
    }

    /// The Linux guest's network: the same address, anycast address and
    /// ports as PIAS serves.
    pub fn linux_net() -> GuestNet {
        GuestNet {
            address: GUEST,
            prefix_len: 24,
            gateway: None,
            anycast: ANYCAST,
            forwards: vec![
                Forward {
                    proto: Proto::Udp,
                    port: DNS_PORT,
                    to: SocketAddrV4::new(TARGET, DNS_PORT),
                },
                Forward {
                    proto: Proto::Udp,
                    port: SINK_PORT,
                    to: SocketAddrV4::new(TARGET, SINK_PORT),
                },
                Forward {
                    proto: Proto::Tcp,
                    port: IPERF_PORT,
                    to: SocketAddrV4::new(TARGET, IPERF_PORT),
                },
            ],
        }
    }

    /// PIAS appliance `n` (0: GUEST, 1: GUEST2) of a deployment of
    /// `proxies`, default capacities.
    fn pias_config(lan: &BenchLan, n: usize, proxies: usize) -> pias::Config {
        let mut cfg = lan.lab.config_for(n);
        cfg.deployment.proxies.truncate(proxies);
        cfg
    }

    /// Boots side `which` with `memory_mb` (PIAS: appliance `n` of a
    /// deployment of `proxies`); returns its index in the lab.
    pub fn boot(
        &self,
        lan: &mut BenchLan,
        which: Which,
        memory_mb: u32,
        n: usize,
        proxies: usize,
    ) -> Result<usize> {
        let mut spec = Spec::new(self.machine, self.accel, Vec::new());
        spec.memory_mb = memory_mb;
        match which {
            Which::Pias => {
                spec.blob = Some(pias_image::encode(&Self::pias_config(lan, n, proxies))?);
            }
            Which::Linux => {
                spec.blob = None;
                spec.linux = Some(LinuxBoot {
                    kernel: self.linux.kernel.clone(),
                    initrd: self.linux.initrd.clone(),
                    append: self.linux.cmdline(&Self::linux_net()),
                });
            }
        }
        // A new guest at an old address has a new MAC: nobody may keep
        // sending to the last one's; the hosts on the bridge get the new one
        // before QEMU starts (these `ip` runs would compete with its start).
        lan.flush_neighbours()?;
        let next = lan.lab.appliances.len();
        lan.pin_guest(if n == 0 { GUEST } else { GUEST2 }, lan.lab.mac_of(next))?;
        let i = lan.lab.boot(&self.pias_kernel, spec)?;
        Ok(i)
    }

    /// Waits until guest `i` says it is ready; the time from QEMU's start.
    pub fn wait_ready(lan: &mut BenchLan, i: usize, which: Which) -> Result<Duration> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(at) = Self::ready_yet(lan, i, which)? {
                return Ok(at);
            }
            if Instant::now() > deadline {
                return Err(GuestFailed(format!(
                    "{} guest not ready within {BOOT_TIMEOUT:?}; console:\n{}",
                    which.name(),
                    tail(&lan.lab.appliances[i].console())
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether guest `i` has said it is ready (Some: now, from QEMU's
    /// start); an error if it failed or exited first.
    fn ready_yet(lan: &mut BenchLan, i: usize, which: Which) -> Result<Option<Duration>> {
        let g = &mut lan.lab.appliances[i];
        let (ok, bad) = match which {
            Which::Pias => ("ready:", "panicked"),
            Which::Linux => (READY, ERROR_PREFIX),
        };
        let console = g.console();
        if console.contains(ok) {
            return Ok(Some(g.started.elapsed()));
        }
        if let Some(line) = console.lines().find(|l| l.contains(bad)) {
            return Err(GuestFailed(format!("{} guest failed: {line}", which.name())).into());
        }
        if let Some(st) = g.try_exit()? {
            // QEMU's own failure (an option, the tap, no RAM on the host) is
            // status 1; the guest's exits are debug-exit codes (odd, >= 3)
            // or 0 (Linux's panic with -no-reboot).
            if st.code() == Some(1) {
                bail!(
                    "QEMU for the {} guest failed to start: {}",
                    which.name(),
                    lan.lab.qemu_stderr(i).trim()
                );
            }
            let last = console
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(nothing on the console)");
            return Err(GuestFailed(format!(
                "{} guest exited ({st}) before it was ready: {}; console:\n{}",
                which.name(),
                last.trim(),
                tail(&console)
            ))
            .into());
        }
        Ok(None)
    }

    /// Starts an agent in the target for each of `groups`, joining through
    /// the anycast address (the target's routes pick the JAP).
    pub fn agents(
        lan: &BenchLan,
        groups: &[(pias::Group, SocketAddrV4)],
    ) -> Result<Vec<ServiceProc>> {
        let agent = build::agent()?;
        let secret = lan.lab.config_for(0).deployment.group_secret;
        let dir = lan.lab.path("agents");
        std::fs::create_dir_all(&dir)?;
        let check = SocketAddrV4::new(TARGET, SINK_PORT);
        groups
            .iter()
            .enumerate()
            .map(|(i, (g, service))| {
                let key = pias::keys::group_key(&secret, g);
                // The health check: the sink's TCP listener, not the service
                // (iperf3 would take a bare connect for a test).
                start_agent_checking(
                    &lan.target_ns,
                    &agent,
                    *g,
                    *service,
                    check,
                    // Healthy at the first check: the join goes out at once;
                    // a host saturated by a flood must not look like a dead
                    // service (10 failed checks in a row to fall). A try of
                    // the join every 20 ms: an agent started before the
                    // appliance has a join waiting at the guest's tap before
                    // the guest can take it (QEMU opens the tap some 30 ms
                    // before the guest runs), and does not queue dozens more
                    // for the booting appliance to verify and answer first
                    // (every 5 ms, 3 agents queued ~30).
                    &[
                        "--rise",
                        "1",
                        "--fall",
                        "10",
                        "--check-timeout-ms",
                        "3000",
                        "--retry-ms",
                        "20",
                        "--retry-cap-ms",
                        "20",
                    ],
                    &key,
                    &dir,
                    &format!("{i}-{}", g.port),
                )
            })
            .collect()
    }

    /// Boots side `which` and asks through the anycast address from QEMU's
    /// start on, every 2 ms; returns (guest index, QEMU start → ready, QEMU
    /// start → first answer, the agents). PIAS's agents start first, as
    /// a service's agent runs before an appliance (re)boots, trying their
    /// join every 20 ms; the Linux guest has its rules in its initramfs.
    pub fn boot_serving(
        &self,
        lan: &mut BenchLan,
        which: Which,
        memory_mb: u32,
        answer_within: Duration,
    ) -> Result<(usize, Duration, Option<Duration>, Vec<ServiceProc>)> {
        let mut agents = match which {
            Which::Pias => Self::agents(lan, &groups())?,
            Which::Linux => Vec::new(),
        };
        wait_trying(&mut agents)?;
        let i = self.boot(lan, which, memory_mb, 0, 1)?;
        let to = SocketAddrV4::new(ANYCAST, DNS_PORT);
        let client_ns = lan.client_ns.clone();
        let mut ready = None;
        let first = first_answer(&client_ns, CLIENT, to, answer_within, || {
            if ready.is_none() {
                ready = Self::ready_yet(lan, i, which)?;
            }
            Ok(())
        })?;
        let ready = match (ready, first) {
            (Some(r), _) => r,
            // Ready between the last look and the answer: seen now.
            (None, Some(_)) => Self::wait_ready(lan, i, which)?,
            (None, None) => {
                return Err(GuestFailed(format!(
                    "{} guest neither ready nor answering within {answer_within:?}; console:\n{}",
                    which.name(),
                    tail(&lan.lab.appliances[i].console())
                ))
                .into())
            }
        };
        let first = first.map(|at| at.duration_since(lan.lab.appliances[i].started));
        Ok((i, ready, first, agents))
    }

    /// The smallest `-m` (MiB, a multiple of `step` in `lo..=hi`) with which
    /// side `which` boots and forwards a query, by bisection; `lo` is taken
    /// to fail and `hi` checked first (an error if it fails too).
    pub fn min_memory(
        &self,
        lan: &mut BenchLan,
        which: Which,
        lo: u32,
        hi: u32,
        step: u32,
    ) -> Result<u32> {
        let mut works = |m: u32| -> Result<bool> {
            let before = lan.lab.appliances.len();
            let r = self
                .boot_serving(lan, which, m, Duration::from_secs(10))
                .map(|(_, _, first, agents)| (agents, first));
            // The guest this try booted, if it got that far.
            if lan.lab.appliances.len() > before {
                if let Some(g) = lan.lab.appliances.last_mut() {
                    g.kill();
                }
            }
            let failed = bisection_outcome(r).with_context(|| {
                format!("{} with -m {m}: not the guest's failure", which.name())
            })?;
            match &failed {
                None => eprintln!("  {} with -m {m}: boots and forwards", which.name()),
                Some(why) => eprintln!("  {} with -m {m}: fails ({why})", which.name()),
            }
            Ok(failed.is_none())
        };
        if !works(hi)? {
            bail!("{} does not boot and forward with -m {hi}", which.name());
        }
        let (mut fail, mut ok) = (lo / step, hi / step);
        while ok - fail > 1 {
            let mid = (fail + ok) / 2;
            if works(mid * step)? {
                ok = mid;
            } else {
                fail = mid;
            }
        }
        Ok(ok * step)
    }
}

/// Waits (up to 10 s) until every agent has tried its join at least once
/// and is trying again, which it says: running, not still starting, when
/// QEMU starts beside it.
fn wait_trying(agents: &mut [ServiceProc]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in agents.iter_mut() {
        loop {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            if log.contains("no answer to the join") {
                break;
            }
            a.check_running()?;
            if Instant::now() > deadline {
                bail!("the agent has not tried its join within 10 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bisection_counts_only_the_guests_failures() {
        let answered = Ok(((), Some(Duration::from_millis(5))));
        assert_eq!(bisection_outcome(answered).unwrap(), None);
        let silent = bisection_outcome::<()>(Ok(((), None))).unwrap();
        assert_eq!(silent.as_deref(), Some("ready but no answer"));
        let panicked = GuestFailed("Linux guest failed: Kernel panic\nconsole...".into());
        let why = bisection_outcome::<()>(Err(panicked.into())).unwrap();
        assert_eq!(why.as_deref(), Some("Linux guest failed: Kernel panic"));
        let wrapped = anyhow::Error::from(GuestFailed("exited".into())).context("booting");
        assert!(bisection_outcome::<()>(Err(wrapped)).unwrap().is_some());
        // The harness's own failure is not a guest that needs more memory.
        let harness = anyhow::anyhow!("starting the agent: no such file");
        assert!(bisection_outcome::<()>(Err(harness)).is_err());
    }
}
