//! The multi-POP lab, running: from a `Topology`, one router namespace per
//! POP (bridge with the POP's LAN, the appliance's tap, veths to a client
//! namespace and to target namespaces running dnsmasq/nginx), one
//! delay-line namespace per inter-POP link (a `DelayLine` thread forwarding
//! between veths to the two routers), static routes along the least-delay
//! paths, the anycast prefix routed by each router to its own appliance, and
//! one appliance per POP booted in QEMU on the POP's bridge.
//!
//! Everything is named `<prefix>-…` (prefix `pias-<tag>-<pid>-<seq>`) and
//! registered for cleanup: dropping the lab, a panic unwinding through it,
//! Ctrl-C or SIGTERM remove every namespace, process and file it made.

mod agents;
mod routing;

use crate::client::MgmtClient;
use crate::delayline::DelayLine;
use crate::lab::{
    register, register_dir, register_netns, register_pid, run, unregister, Appliance,
};
use crate::services::{self, require, ServiceProc, WebRoot};
use crate::topo::{topo_config, LabKeys, Service, Topology, ANYCAST};
use crate::{Accel, Machine, Spec};
pub use agents::Agent;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The DNS servers' group (the deployment's default policy, proximity).
pub const DNS_GROUP: pias::Group = pias::Group {
    ip: pias::Ipv4([203, 0, 113, 10]),
    port: 53,
    transport: pias::Transport::Udp,
};
/// The DNS servers' second group, spread by load: the lab's appliances
/// configure it with `Policy::Load` (clients in proportion to members).
pub const DNS_LOAD_GROUP: pias::Group = pias::Group {
    ip: pias::Ipv4([203, 0, 113, 12]),
    port: 53,
    transport: pias::Transport::Udp,
};
/// The web servers' group.
pub const HTTP_GROUP: pias::Group = pias::Group {
    ip: pias::Ipv4([203, 0, 113, 10]),
    port: 80,
    transport: pias::Transport::Tcp,
};

/// How to boot the POPs' appliances.
#[derive(Clone, Debug)]
pub struct TopoOptions {
    /// Goes into every name (`pias-<tag>-<pid>-<seq>`).
    pub tag: String,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mb: u32,
    /// How long each appliance may take to print `ready:`.
    pub boot_timeout: Duration,
    /// The target agent's binary: with it, an agent joins every service to
    /// its group once the appliances are up; without, no target joins.
    pub agent: Option<PathBuf>,
    /// How the anycast prefix reaches each POP's appliance.
    pub routers: Routers,
    /// The BGP hold time between each appliance and its router (s).
    pub bgp_hold_s: u16,
    /// BFD between each appliance and its router (100 ms × 3).
    pub bfd: bool,
}

/// How a lab's routers learn the anycast prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routers {
    /// A static route on each POP's router to its own appliance.
    Static,
    /// BIRD 2 on each POP's router: eBGP with its appliance (which announces
    /// the prefix only while healthy) and with the neighbouring POPs'
    /// routers, so that a withdrawn POP's traffic moves to the next one.
    Bird,
    /// The same with FRR (zebra and bgpd) on each router.
    Frr,
}

impl TopoOptions {
    pub fn new(tag: &str, accel: Accel) -> TopoOptions {
        TopoOptions {
            tag: tag.to_string(),
            machine: Machine::Microvm,
            accel,
            memory_mb: 64,
            boot_timeout: Duration::from_secs(30),
            agent: None,
            routers: Routers::Static,
            bgp_hold_s: 9,
            bfd: false,
        }
    }
}

/// Round-trip figures of one `ping` run.
#[derive(Clone, Copy, Debug)]
pub struct PingStats {
    pub sent: u32,
    pub received: u32,
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
}

/// A web server of the lab: where, and what it serves.
#[derive(Clone, Debug)]
pub struct Web {
    pub pop: usize,
    pub target: usize,
    pub ip: Ipv4Addr,
    pub root: WebRoot,
}

pub struct TopoLab {
    pub prefix: String,
    pub topology: Topology,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    pub delay_lines: Vec<DelayLine>,
    pub services: Vec<ServiceProc>,
    /// One per POP, in POP order.
    pub appliances: Vec<Appliance>,
    pub web: Vec<Web>,
    pub management_port: u16,
    /// This run's deployment key and group secret.
    pub keys: LabKeys,
    /// The target agents, one per (target, group), in start order.
    pub agents: Vec<Agent>,
    /// The agent's binary, once `start_agents` named it.
    agent_bin: Option<PathBuf>,
    pub routers: Routers,
    /// One per POP, in POP order, with `Routers::Bird`.
    pub birds: Vec<crate::routers::Bird>,
    /// One per POP, in POP order, with `Routers::Frr`.
    pub frrs: Vec<crate::routers::Frr>,
}

const VETH_OFFLOADS: [&str; 10] = [
    "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off",
];

fn ip_in(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["-n", ns]);
    c
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl TopoLab {
    /// Builds the whole lab; on any error everything made so far is removed.
    pub fn up(topology: Topology, kernel: &Path, opts: &TopoOptions) -> Result<TopoLab> {
        for prog in ["ip", "ethtool", "sysctl", "ping", "qemu-system-x86_64"] {
            require(prog)?;
        }
        let services_used = |s: Service| {
            topology
                .pops
                .iter()
                .flat_map(|p| &p.targets)
                .any(|t| t.services.contains(&s))
        };
        if services_used(Service::Dns) {
            require("dnsmasq")?;
        }
        if services_used(Service::Http) {
            require("nginx")?;
            require("sha256sum")?;
        }
        let prefix = crate::lab::lab_name(&opts.tag);
        register(&prefix);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .context("creating the lab's directory")?;
        register_dir(&prefix, dir.path());
        let mut lab = TopoLab {
            prefix,
            topology,
            dir,
            namespaces: Vec::new(),
            delay_lines: Vec::new(),
            services: Vec::new(),
            appliances: Vec::new(),
            web: Vec::new(),
            management_port: pias::Config::example().ports.management,
            keys: LabKeys::random()?,
            agents: Vec::new(),
            agent_bin: None,
            routers: opts.routers,
            birds: Vec::new(),
            frrs: Vec::new(),
        };
        lab.wire()?;
        lab.start_services()?;
        lab.boot(kernel, opts)?;
        if opts.routers != Routers::Static {
            lab.start_routers(opts)?;
        }
        if let Some(agent) = &opts.agent {
            lab.start_agents(agent)?;
        }
        Ok(lab)
    }

    pub fn router_ns(&self, pop: usize) -> String {
        format!("{}-r{}", self.prefix, pop + 1)
    }
    pub fn client_ns(&self, pop: usize) -> String {
        format!("{}-c{}", self.prefix, pop + 1)
    }
    pub fn target_ns(&self, pop: usize, k: usize) -> String {
        format!("{}-t{}-{}", self.prefix, pop + 1, k)
    }
    pub fn link_ns(&self, link: usize) -> String {
        format!("{}-l{}", self.prefix, link + 1)
    }
    /// Every namespace made so far.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every process the lab started (appliances and services).
    pub fn pids(&self) -> Vec<u32> {
        self.appliances
            .iter()
            .map(Appliance::pid)
            .chain(self.services.iter().map(ServiceProc::pid))
            .collect()
    }

    fn add_ns(&mut self, ns: &str, router: bool) -> Result<()> {
        register_netns(&self.prefix, ns);
        run(Command::new("ip").args(["netns", "add", ns]))?;
        self.namespaces.push(ns.to_string());
        let mut keys = vec![
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ];
        if router {
            keys.extend([
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
            ]);
        }
        run(Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
            .args(&keys))?;
        run(ip_in(ns).args(["link", "set", "dev", "lo", "up"]))
    }

    /// A veth pair `ns1:if1 <-> ns2:if2`, offloads off at both ends, both up.
    fn veth(&self, ns1: &str, if1: &str, ns2: &str, if2: &str) -> Result<()> {
        run(ip_in(ns1).args([
            "link", "add", "dev", if1, "type", "veth", "peer", "name", if2, "netns", ns2,
        ]))?;
        for (ns, ifname) in [(ns1, if1), (ns2, if2)] {
            run(Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", ifname])
                .args(VETH_OFFLOADS))
            .with_context(|| format!("turning offloads off on {ifname} in {ns}"))?;
            run(ip_in(ns).args(["link", "set", "dev", ifname, "up"]))?;
        }
        Ok(())
    }

    fn addr(ns: &str, ifname: &str, ip: Ipv4Addr, len: u8) -> Result<()> {
        run(ip_in(ns).args(["addr", "add", &format!("{ip}/{len}"), "dev", ifname]))
    }

    /// Namespaces, bridges, veths, taps, addresses and routes.
    fn wire(&mut self) -> Result<()> {
        let pops = self.topology.pops.clone();
        for (p, pop) in pops.iter().enumerate() {
            let r = self.router_ns(p);
            self.add_ns(&r, true)?;
            run(ip_in(&r).args(["link", "add", "dev", "br0", "type", "bridge"]))?;
            Self::addr(&r, "br0", pop.router_ip(), 24)?;
            run(ip_in(&r).args(["link", "set", "dev", "br0", "up"]))?;
            run(ip_in(&r).args(["tuntap", "add", "dev", "tap0", "mode", "tap"]))?;
            run(ip_in(&r).args(["link", "set", "dev", "tap0", "master", "br0", "up"]))?;
            let mut hosts = vec![(self.client_ns(p), "c0".to_string(), pop.client_ip())];
            for t in &pop.targets {
                hosts.push((
                    self.target_ns(p, t.index),
                    format!("t{}", t.index),
                    pop.target_ip(t.index),
                ));
            }
            for (ns, port, ip) in hosts {
                self.add_ns(&ns, false)?;
                self.veth(&r, &port, &ns, "eth0")?;
                run(ip_in(&r).args(["link", "set", "dev", &port, "master", "br0"]))?;
                Self::addr(&ns, "eth0", ip, 24)?;
                run(ip_in(&ns).args([
                    "route",
                    "add",
                    "default",
                    "via",
                    &pop.router_ip().to_string(),
                ]))?;
            }
            if self.routers == Routers::Static {
                // Native anycast by a static route: this POP's appliance.
                run(ip_in(&r).args([
                    "route",
                    "add",
                    &format!("{}/{}", ANYCAST.0, ANYCAST.1),
                    "via",
                    &pop.appliance_ip().to_string(),
                    "dev",
                    "br0",
                ]))?;
            }
        }
        let links = self.topology.links.clone();
        for (n, link) in links.iter().enumerate() {
            let d = self.link_ns(n);
            self.add_ns(&d, false)?;
            for (side_a, pop) in [(true, link.a), (false, link.b)] {
                let towards = format!("r{}", pop + 1);
                let lif = format!("l{}", link.index);
                self.veth(&self.router_ns(pop), &lif, &d, &towards)?;
                Self::addr(&self.router_ns(pop), &lif, link.ip(side_a), 30)?;
            }
        }
        for (p, _) in pops.iter().enumerate() {
            for (q, other) in pops.iter().enumerate() {
                if p == q {
                    continue;
                }
                let hop = self
                    .topology
                    .first_hop(p, q)
                    .with_context(|| format!("no path from POP {} to POP {}", p + 1, q + 1))?;
                let link = &links[hop.link];
                let via = link.ip(link.a != p);
                run(ip_in(&self.router_ns(p)).args([
                    "route",
                    "add",
                    &format!("{}/24", other.lan()),
                    "via",
                    &via.to_string(),
                    "dev",
                    &format!("l{}", link.index),
                ]))?;
            }
        }
        for (n, link) in links.iter().enumerate() {
            let line = DelayLine::spawn_in(
                &self.link_ns(n),
                &format!("r{}", link.a + 1),
                &format!("r{}", link.b + 1),
                link.params,
            )?;
            self.delay_lines.push(line);
        }
        Ok(())
    }

    fn start_services(&mut self) -> Result<()> {
        let pops = self.topology.pops.clone();
        let dir = self.dir.path().to_path_buf();
        let mut waits: Vec<(String, Ipv4Addr, Service)> = Vec::new();
        for (p, pop) in pops.iter().enumerate() {
            for t in &pop.targets {
                let ns = self.target_ns(p, t.index);
                let ip = pop.target_ip(t.index);
                let tag = format!("{}-t{}", pop.name, t.index);
                for s in &t.services {
                    match s {
                        Service::Dns => {
                            let proc = services::start_dns(&ns, ip, &dir, &tag)?;
                            register_pid(&self.prefix, proc.pid());
                            self.services.push(proc);
                        }
                        Service::Http => {
                            let (proc, root) = services::start_http(&ns, ip, &dir, &tag, &tag)?;
                            register_pid(&self.prefix, proc.pid());
                            self.services.push(proc);
                            self.web.push(Web {
                                pop: p,
                                target: t.index,
                                ip,
                                root,
                            });
                        }
                    }
                    waits.push((ns.clone(), ip, *s));
                }
            }
        }
        for (ns, ip, s) in waits {
            let ready = match s {
                Service::Dns => services::wait_dns(&ns, ip, Duration::from_secs(5)),
                Service::Http => services::wait_http(&ns, ip, Duration::from_secs(5)),
            };
            if let Err(e) = ready {
                for proc in self.services.iter_mut() {
                    proc.check_running()?;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn boot(&mut self, kernel: &Path, opts: &TopoOptions) -> Result<()> {
        let pops = self.topology.pops.clone();
        for (p, pop) in pops.iter().enumerate() {
            let mut cfg = topo_config(&self.topology, pop, &self.keys);
            if opts.routers != Routers::Static {
                cfg.bgp = routing::bgp_config(p, pop, opts.bgp_hold_s, opts.bfd);
            }
            let blob = pias_image::encode(&cfg)
                .with_context(|| format!("encoding the config of {}", pop.name))?;
            let mut spec = Spec::new(opts.machine, opts.accel, blob);
            spec.memory_mb = opts.memory_mb;
            let a = crate::lab::start_appliance(
                &self.router_ns(p),
                self.dir.path(),
                &pop.name,
                kernel,
                spec,
                Some(("tap0", pop.appliance_mac())),
            )?;
            register_pid(&self.prefix, a.pid());
            self.appliances.push(a);
        }
        for (p, pop) in pops.iter().enumerate() {
            self.appliances[p]
                .wait_for("ready:", opts.boot_timeout)
                .with_context(|| format!("appliance of {}", pop.name))?;
            let r = self.router_ns(p);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = self.output(&r, &["cat", "/sys/class/net/tap0/carrier"])?;
                if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("tap0 in {r} has no carrier after 5 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// Runs a command in namespace `ns` and returns its output, whatever its exit.
    pub fn output(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in {ns}"))
    }

    /// `ping -c count` from namespace `ns` (one unmeasured ping first, so the
    /// figures do not include ARP along the path).
    pub fn ping(&self, ns: &str, to: Ipv4Addr, count: u32) -> Result<PingStats> {
        let to = to.to_string();
        let _ = self.output(ns, &["ping", "-c", "1", "-W", "2", &to])?;
        let out = self.output(
            ns,
            &[
                "ping",
                "-c",
                &count.clamp(1, 100).to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                "-q",
                &to,
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping(&text).with_context(|| format!("ping {to} from {ns}:\n{text}"))
    }

    /// The RTT between two POPs' clients.
    pub fn client_rtt(&self, from: usize, to: usize, count: u32) -> Result<PingStats> {
        let ip = self
            .topology
            .pops
            .get(to)
            .context("no such POP")?
            .client_ip();
        self.ping(&self.client_ns(from), ip, count)
    }

    /// `dig +short name @server` from namespace `ns`: the answer lines.
    pub fn dig(&self, ns: &str, server: Ipv4Addr, name: &str) -> Result<Vec<String>> {
        let out = self.output(
            ns,
            &[
                "dig",
                "+short",
                "+time=2",
                "+tries=3",
                &format!("@{server}"),
                name,
                "A",
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!(
                "dig @{server} {name} from {ns} failed ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Fetches `url` with curl from namespace `ns` into the lab's directory;
    /// the file's path.
    pub fn curl(&self, ns: &str, url: &str, file: &str) -> Result<PathBuf> {
        let dest = self.path(file);
        let dest_s = dest.display().to_string();
        let out = self.output(
            ns,
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "20",
                "-o",
                &dest_s,
                url,
            ],
        )?;
        if !out.status.success() {
            bail!(
                "curl {url} from {ns} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(dest)
    }

    /// The appliance of POP `pop`'s status, asked from the POP's router.
    pub fn status(&self, pop: usize) -> Result<pias::status::Status> {
        let p = self.topology.pops.get(pop).context("no such POP")?;
        self.mgmt(pop)?.status().with_context(|| {
            format!(
                "status of {}'s appliance {}; console:\n{}",
                p.name,
                p.appliance_ip(),
                self.appliances
                    .get(pop)
                    .map(Appliance::console)
                    .unwrap_or_default()
            )
        })
    }

    /// The proxy's and the data path's counters of `pop`'s appliance.
    pub fn proxy_report(&self, pop: usize) -> Result<pias::status::ProxyReport> {
        let p = self.topology.pops.get(pop).context("no such POP")?;
        self.mgmt(pop)?
            .proxy_report()
            .with_context(|| format!("proxy counters of {}'s appliance", p.name))
    }

    /// A management client for `pop`'s appliance, in the POP's router namespace.
    pub fn mgmt(&self, pop: usize) -> Result<MgmtClient> {
        let p = self.topology.pops.get(pop).context("no such POP")?;
        MgmtClient::in_netns(
            &self.router_ns(pop),
            p.router_ip(),
            p.appliance_ip(),
            self.management_port,
            self.keys.management.clone(),
        )
    }

    /// What the lab is: namespaces, addresses, links and services.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "lab {} (files in {})",
            self.prefix,
            self.dir.path().display()
        );
        for (p, pop) in self.topology.pops.iter().enumerate() {
            let _ = writeln!(
                o,
                "  {} LAN {}/24: router {} ({}), appliance {} (node {}, cluster {}), client {} ({})",
                pop.name,
                pop.lan(),
                pop.router_ip(),
                self.router_ns(p),
                pop.appliance_ip(),
                pop.index,
                pop.index,
                pop.client_ip(),
                self.client_ns(p)
            );
            for t in &pop.targets {
                let svc: Vec<&str> = t
                    .services
                    .iter()
                    .map(|s| match s {
                        Service::Dns => "dns",
                        Service::Http => "http",
                    })
                    .collect();
                let _ = writeln!(
                    o,
                    "    target {} ({}): {}",
                    pop.target_ip(t.index),
                    self.target_ns(p, t.index),
                    svc.join(", ")
                );
            }
            let how = match self.routers {
                Routers::Static => "static route",
                Routers::Bird => "BGP, BIRD 2",
                Routers::Frr => "BGP, FRR",
            };
            let _ = writeln!(
                o,
                "    route {}/{} via {} (its appliance, {how})",
                ANYCAST.0,
                ANYCAST.1,
                pop.appliance_ip()
            );
        }
        for (n, l) in self.topology.links.iter().enumerate() {
            let _ = writeln!(
                o,
                "  link {}: {} {} <-> {} {}, {} ms each way, {} % loss, queue {} ({})",
                l.index,
                self.topology.pops[l.a].name,
                l.ip(true),
                self.topology.pops[l.b].name,
                l.ip(false),
                ms(l.params.delay),
                l.params.loss_pct,
                l.params.queue,
                self.link_ns(n)
            );
        }
        o
    }

    /// Delay-line counters, one line per link and direction.
    pub fn link_counters(&self) -> String {
        let mut o = String::new();
        for (n, (l, d)) in self
            .topology
            .links
            .iter()
            .zip(&self.delay_lines)
            .enumerate()
        {
            let (a, b) = (&self.topology.pops[l.a].name, &self.topology.pops[l.b].name);
            let state = if d.running() { "" } else { " (STOPPED)" };
            let _ = writeln!(o, "  link {} {a}->{b}{state}: {}", n + 1, d.stats.a_to_b);
            let _ = writeln!(o, "  link {} {b}->{a}{state}: {}", n + 1, d.stats.b_to_a);
        }
        o
    }
}

/// Parses `ping -q`'s summary.
pub fn parse_ping(text: &str) -> Result<PingStats> {
    let mut sent = None;
    let mut received = None;
    let mut rtt = None;
    for line in text.lines() {
        if line.contains("packets transmitted") {
            let nums: Vec<u32> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            sent = nums.first().copied();
            received = nums.get(1).copied();
        }
        if let Some(rest) = line.split_once(" = ").map(|(_, r)| r) {
            let v: Vec<f64> = rest
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            if v.len() >= 3 {
                rtt = Some((v[0], v[1], v[2]));
            }
        }
    }
    let (Some(sent), Some(received)) = (sent, received) else {
        bail!("no packet counts in ping's output");
    };
    let d = |x: f64| Duration::from_secs_f64((x.max(0.0)) / 1e3);
    let (min, avg, max) = match rtt {
        Some((a, b, c)) => (d(a), d(b), d(c)),
        None if received == 0 => bail!("no reply to {sent} pings"),
        None => bail!("no rtt line in ping's output"),
    };
    Ok(PingStats {
        sent,
        received,
        min,
        avg,
        max,
    })
}

impl std::fmt::Display for PingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} replies, rtt min {:.2} avg {:.2} max {:.2} ms",
            self.received,
            self.sent,
            ms(self.min),
            ms(self.avg),
            ms(self.max)
        )
    }
}

impl Drop for TopoLab {
    fn drop(&mut self) {
        for a in self.appliances.iter_mut() {
            a.kill();
        }
        for s in self.services.iter_mut() {
            s.kill();
        }
        for d in self.delay_lines.iter_mut() {
            let _ = d.stop();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        unregister(&self.prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_parses() {
        let s = parse_ping(
            "--- 198.18.3.10 ping statistics ---\n\
             5 packets transmitted, 4 received, 20% packet loss, time 805ms\n\
             rtt min/avg/max/mdev = 50.215/50.437/50.682/0.082 ms\n",
        )
        .unwrap();
        assert_eq!((s.sent, s.received), (5, 4));
        assert!((ms(s.min) - 50.215).abs() < 1e-6);
        assert!((ms(s.max) - 50.682).abs() < 1e-6);
        let none = "3 packets transmitted, 0 received, 100% packet loss, time 2003ms\n";
        assert!(format!("{:#}", parse_ping(none).unwrap_err()).contains("no reply"));
        assert!(parse_ping("garbage").is_err());
    }
}
