//! The comparison's LAN, the same for both sides: a bridge (the lab
//! namespace, 198.18.0.1) where the guests sit on taps, a client namespace
//! (198.18.0.10) and a target namespace (198.18.0.20) on veths, and a second
//! client (198.18.0.11) whose link crosses a userspace delay line with 1 %
//! loss. The target runs dnsmasq (:53), a UDP sink that counts what reaches
//! it (:9, with a TCP listener on :9 for the agents' health checks) and an
//! iperf3 server (:5201). Everything is removed when the lab drops.

use crate::delayline::{DelayLine, Params};
use crate::lab::{register_netns, run, Lab};
use crate::services::{self, require, ServiceProc};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The first guest (PIAS appliance 1, or the Linux guest).
pub const GUEST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// PIAS appliance 2 (the IAP ≠ JAP rows).
pub const GUEST2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The client on a clean link.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The client behind the lossy link.
pub const LOSSY_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// The target: every service the guests forward to.
pub const TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
/// The anycast address both sides forward (PIAS groups, Linux DNAT).
pub const ANYCAST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// PIAS only: a group joined through appliance 2 (IAP ≠ JAP).
pub const REMOTE_ANYCAST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// Ports forwarded: DNS, the UDP sink, iperf3.
pub const DNS_PORT: u16 = 53;
pub const SINK_PORT: u16 = 9;
pub const IPERF_PORT: u16 = 5201;
/// Loss on the lossy client's link, percent each way.
pub const LOSS_PCT: f64 = 1.0;

const OFFLOADS: [&str; 10] = [
    "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off",
];

/// The LAN, its namespaces, services and the delay line.
pub struct BenchLan {
    pub lab: Lab,
    pub client_ns: String,
    pub lossy_ns: String,
    pub target_ns: String,
    pub sink: Sink,
    delay: Option<DelayLine>,
    _services: Vec<ServiceProc>,
}

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(["-n", ns]).args(args))
}

fn add_ns(lab: &Lab, ns: &str) -> Result<()> {
    register_netns(&lab.ns, ns);
    run(Command::new("ip").args(["netns", "add", ns]))?;
    run(Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
        .args([
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
    ip(ns, &["link", "set", "lo", "up"])
}

/// A veth `ns:inner` (addressed `addr`/24) whose peer `outer` is a port of
/// the lab's bridge; offloads off on both ends if `no_offloads`.
fn host_on_bridge(lab: &Lab, ns: &str, inner: &str, outer: &str, no_offloads: bool) -> Result<()> {
    ip(
        &lab.ns,
        &[
            "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns,
        ],
    )?;
    if no_offloads {
        for (n, i) in [(lab.ns.as_str(), outer), (ns, inner)] {
            run(Command::new("ip")
                .args(["netns", "exec", n, "ethtool", "-K", i])
                .args(OFFLOADS))
            .with_context(|| format!("offloads off on {i}"))?;
        }
    }
    ip(&lab.ns, &["link", "set", outer, "up"])?;
    ip(ns, &["link", "set", inner, "up"])
}

impl BenchLan {
    /// Namespaces, links, routes (the clients reach 203.0.113.0/24 through
    /// the first guest) and the target's services.
    pub fn up(tag: &str) -> Result<BenchLan> {
        for p in ["dnsmasq", "iperf3", "ethtool"] {
            require(p)?;
        }
        let lab = Lab::new(tag)?;
        let client_ns = format!("{}-c", lab.ns);
        let lossy_ns = format!("{}-l", lab.ns);
        let target_ns = format!("{}-t", lab.ns);
        for ns in [&client_ns, &lossy_ns, &target_ns] {
            add_ns(&lab, ns)?;
        }
        // Client and target: straight onto the bridge, offloads as Linux sets them.
        host_on_bridge(&lab, &client_ns, "eth0", "vc", false)?;
        ip(&lab.ns, &["link", "set", "vc", "master", "br0"])?;
        host_on_bridge(&lab, &target_ns, "eth0", "vt", false)?;
        ip(&lab.ns, &["link", "set", "vt", "master", "br0"])?;
        // The lossy client: eth0 <-> la, the delay line la <-> lb, lb's peer
        // lbr on the bridge (offloads off wherever the line copies frames).
        host_on_bridge(&lab, &lossy_ns, "eth0", "la", true)?;
        ip(
            &lab.ns,
            &["link", "add", "lb", "type", "veth", "peer", "name", "lbr"],
        )?;
        for i in ["lb", "lbr"] {
            run(Command::new("ip")
                .args(["netns", "exec", &lab.ns, "ethtool", "-K", i])
                .args(OFFLOADS))?;
            ip(&lab.ns, &["link", "set", i, "up"])?;
        }
        ip(&lab.ns, &["link", "set", "lbr", "master", "br0"])?;
        for (ns, a) in [
            (&client_ns, CLIENT),
            (&lossy_ns, LOSSY_CLIENT),
            (&target_ns, TARGET),
        ] {
            ip(ns, &["addr", "add", &format!("{a}/24"), "dev", "eth0"])?;
        }
        for ns in [&client_ns, &lossy_ns] {
            ip(
                ns,
                &["route", "add", "203.0.113.0/24", "via", &GUEST.to_string()],
            )?;
        }
        // The target's agents join through the guest that serves each group.
        ip(
            &target_ns,
            &[
                "route",
                "add",
                &format!("{ANYCAST}/32"),
                "via",
                &GUEST.to_string(),
            ],
        )?;
        ip(
            &target_ns,
            &[
                "route",
                "add",
                &format!("{REMOTE_ANYCAST}/32"),
                "via",
                &GUEST2.to_string(),
            ],
        )?;
        let delay = DelayLine::spawn_in(
            &lab.ns,
            "la",
            "lb",
            Params {
                loss_pct: LOSS_PCT,
                ..Params::default()
            },
        )?;
        let dir = lab.path("svc");
        std::fs::create_dir_all(&dir)?;
        let mut services = vec![services::start_dns(&target_ns, TARGET, &dir, "t")?];
        services.push(ServiceProc::spawn(
            "iperf3",
            &target_ns,
            dir.join("iperf3.out"),
            &[
                require("iperf3")?.display().to_string(),
                "-s".into(),
                "-B".into(),
                TARGET.to_string(),
                "-p".into(),
                IPERF_PORT.to_string(),
                // A test whose client vanished (its guest stopped mid-run)
                // ends after 5 s without data, not the default 2 min: until
                // then the server refuses the next side's test as busy.
                "--rcv-timeout".into(),
                "5000".into(),
            ],
        )?);
        let sink = Sink::start(&target_ns)?;
        services::wait_dns(&target_ns, TARGET, Duration::from_secs(10))?;
        Ok(BenchLan {
            lab,
            client_ns,
            lossy_ns,
            target_ns,
            sink,
            delay: Some(delay),
            _services: services,
        })
    }

    /// Forgets every namespace's ARP entries (a guest rebooted with a new MAC).
    pub fn flush_neighbours(&self) -> Result<()> {
        for ns in [
            &self.lab.ns,
            &self.client_ns,
            &self.lossy_ns,
            &self.target_ns,
        ] {
            ip(ns, &["neigh", "flush", "all"])?;
        }
        Ok(())
    }

    /// Gives the hosts on the bridge (client, lossy client, target) the MAC
    /// of the guest at `guest` for good: what they send it from QEMU's start
    /// on goes out at once, where a neighbour lookup would wait for the guest
    /// to answer ARP and then for the kernel's next try (1 s apart). Both
    /// sides are measured this way, so the boot figures leave ARP out.
    pub fn pin_guest(&self, guest: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        for ns in [&self.client_ns, &self.lossy_ns, &self.target_ns] {
            ip(
                ns,
                &[
                    "neigh",
                    "replace",
                    &guest.to_string(),
                    "lladdr",
                    &mac,
                    "nud",
                    "permanent",
                    "dev",
                    "eth0",
                ],
            )?;
        }
        Ok(())
    }

    /// What the delay line dropped and forwarded, for the record.
    pub fn delay_stats(&self) -> String {
        self.delay.as_ref().map_or(String::new(), |d| {
            format!(
                "client to bridge: {}; bridge to client: {}",
                d.stats.a_to_b, d.stats.b_to_a
            )
        })
    }
}

impl Drop for BenchLan {
    fn drop(&mut self) {
        if let Some(mut d) = self.delay.take() {
            let _ = d.stop();
        }
        self.sink.stop();
    }
}

/// The UDP sink's receive buffer, bytes (the kernel doubles it; a 64-byte
/// datagram takes ~1 KiB of it: ~30,000 datagrams, 0.3 s of a flood).
const SINK_RCVBUF: usize = 16 << 20;

/// A UDP sink on the target: counts datagrams to :9; a TCP listener on :9
/// answers the agents' health checks.
pub struct Sink {
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(ns: &str) -> Result<Sink> {
        let addr = SocketAddrV4::new(TARGET, SINK_PORT);
        let (udp, tcp) = crate::lab::inside_netns(ns, move || {
            let u = UdpSocket::bind(addr).context("binding the UDP sink")?;
            u.set_read_timeout(Some(Duration::from_millis(50)))?;
            // Room for a burst (past net.core.rmem_max: we are root), so
            // the sink counts what the guest forwarded, not what this
            // thread kept up with: with the default buffer 2-4 % of
            // PIAS's 64-byte flood and 8-12 % of Linux's (burstier) were
            // dropped at the socket.
            nix::sys::socket::setsockopt(&u, nix::sys::socket::sockopt::RcvBufForce, &SINK_RCVBUF)
                .context("sizing the UDP sink's receive buffer (SO_RCVBUFFORCE)")?;
            let t = TcpListener::bind(addr).context("binding the sink's TCP listener")?;
            t.set_nonblocking(true)?;
            Ok((u, t))
        })?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s1, s2) = (received.clone(), stop.clone(), stop.clone());
        let t1 = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s1.load(Ordering::Relaxed) {
                if udp.recv_from(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let t2 = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Sink {
            received,
            stop,
            threads: vec![t1, t2],
        })
    }

    /// Datagrams counted so far.
    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
