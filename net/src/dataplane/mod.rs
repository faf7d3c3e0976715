//! The proxy data path: one `DataPlane` owns the proxy core (`pias::Proxy`),
//! the JAP's NAT and the next-hop table, takes each received frame
//! (`ingress`), and turns the core's `Transmit`s into addressed frames
//! (`egress`). Sans-IO: `now` comes in, frames go out through a `FrameSink`;
//! the kernel loop and the host tests drive it the same way. Nothing here
//! allocates after `new`.

mod arp;
mod egress;
mod ingress;
mod large;
pub mod nat;
pub mod packet;
#[cfg(test)]
mod tests;

pub use self::arp::Neighbours;
pub use self::nat::{Nat, NatTimeouts};

use crate::device::FRAME_MAX;
use alloc::vec::Vec;
use pias::addr::{Ipv4, Ipv4Prefix};
use pias::proxy::Proxy;
use pias::status::DataCounters;
use pias::time::{Instant, MS, SEC};
use pias::wire::{ProxyId, MAX_CARRIED, MAX_MESSAGE};

/// Where finished frames go: the NIC in the appliance, a queue in tests.
pub trait FrameSink {
    /// Sends one frame; false if the device refused it.
    fn send_frame(&mut self, frame: &[u8]) -> bool;
    /// Whether `send_large` can work: the device segments large TCP frames.
    fn takes_large(&self) -> bool {
        false
    }
    /// Sends a large TCP/IPv4 frame with a partial checksum for the device
    /// to segment (`offload` says where the checksum is and the segment
    /// size); false if the device refused it.
    fn send_large(&mut self, _frame: &[u8], _offload: crate::offload::Offload) -> bool {
        false
    }
}

/// What became of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not the data path's: hand it to the network stack (ARP, ICMP echo,
    /// management and other sockets on the unicast address).
    Stack,
    /// Taken (or dropped and counted) by the data path.
    Done,
    /// A large TCP frame that cannot go on whole: to be cut into segments,
    /// each passed in again (`DataPlane::ingress_offloaded`).
    Cut,
}

/// How the data path is set up; the kernel builds it from the boot config.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// The interface's MAC.
    pub mac: [u8; 6],
    /// Our unicast address and its subnet.
    pub address: Ipv4Prefix,
    /// The default gateway (None: on-link destinations only).
    pub gateway: Option<Ipv4>,
    /// The interface's IP MTU.
    pub mtu: u16,
    /// The anycast prefixes: every address in them is ours to serve.
    pub anycast: Vec<Ipv4Prefix>,
    /// UDP port on anycast addresses where targets register.
    pub registration_port: u16,
    /// UDP port of proxy-to-proxy messages on unicast addresses.
    pub proxy_port: u16,
    /// First NAT port of the unicast address (toward targets).
    pub nat_first_port: u16,
    /// NAT ports from `nat_first_port` on.
    pub nat_ports: usize,
    /// NAT flows at most.
    pub max_flows: usize,
    /// NAT idle times.
    pub nat_timeouts: NatTimeouts,
    /// Every proxy's unicast address, sorted by id.
    pub proxies: Vec<(ProxyId, Ipv4)>,
    /// Secret key of the NAT table's hash (clients choose its keys).
    pub hash_key: [u8; 16],
    /// BGP neighbours: their TCP segments to or from port 179 must arrive
    /// with TTL 255 (GTSM, RFC 5082), or they are dropped.
    pub bgp_neighbours: Vec<Ipv4>,
}

impl DataPlaneConfig {
    /// The largest transport segment a client may send that still fits a
    /// proxy message within this MTU.
    pub fn carry_limit(&self) -> usize {
        let overhead = MAX_MESSAGE - MAX_CARRIED;
        MAX_CARRIED
            .min(usize::from(self.mtu).saturating_sub(packet::IP_LEN + packet::UDP_LEN + overhead))
    }

    /// The MSS a carried TCP connection may use: the carry limit less the
    /// largest TCP header (60 bytes with options).
    pub fn mss_clamp(&self) -> u16 {
        self.carry_limit()
            .saturating_sub(60)
            .min(usize::from(u16::MAX)) as u16
    }
}

/// How often idle NAT flows are swept.
const NAT_SWEEP: u64 = SEC;
/// How often frames waiting for ARP are re-examined.
const ARP_TICK: u64 = 50 * MS;
/// ARP announcements at start and the time between them (RFC 5227 §1.1,
/// ANNOUNCE_NUM and ANNOUNCE_INTERVAL).
const ANNOUNCE_NUM: u8 = 2;
const ANNOUNCE_INTERVAL: u64 = 2 * SEC;

/// The data path of one appliance.
pub struct DataPlane {
    cfg: DataPlaneConfig,
    proxy: Proxy,
    nat: Nat,
    neighbours: Neighbours,
    counters: DataCounters,
    ident: u16,
    next_sweep: Instant,
    /// When frames waiting for ARP were last examined.
    arp_checked: Instant,
    /// ARP announcements still to send, and when the next is due.
    announce_left: u8,
    next_announce: Instant,
    /// Where frames are built: lent out whole while one is (a pointer's
    /// move, where an array was copied in and out, 1.5 KB each way).
    tx: Vec<u8>,
    /// Where a segment is edited (MSS clamping) before it is handed on.
    scratch: [u8; FRAME_MAX],
}

impl DataPlane {
    /// The data path around `proxy`; every table is reserved here.
    pub fn new(cfg: DataPlaneConfig, proxy: Proxy, now: Instant) -> DataPlane {
        let nat = Nat::new(
            cfg.max_flows,
            cfg.nat_first_port,
            cfg.nat_ports.max(cfg.max_flows),
            cfg.hash_key,
            cfg.nat_timeouts,
        );
        DataPlane {
            proxy,
            nat,
            neighbours: Neighbours::default(),
            counters: DataCounters::default(),
            ident: (now & 0xffff) as u16,
            next_sweep: now + NAT_SWEEP,
            arp_checked: now,
            announce_left: ANNOUNCE_NUM,
            next_announce: now,
            tx: alloc::vec![0; FRAME_MAX],
            scratch: [0; FRAME_MAX],
            cfg,
        }
    }

    /// The proxy core.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The driver overran its receive ring at `now` (`NicDevice::take_overrun`):
    /// the proxy does not count target pings lost meanwhile
    /// (`Proxy::handle_receive_overrun`).
    pub fn handle_receive_overrun(&mut self, now: Instant) {
        self.proxy.handle_receive_overrun(now);
    }

    /// The data path's counters.
    pub fn counters(&self) -> DataCounters {
        self.counters
    }

    /// (name, used, capacity) of the data path's own tables.
    pub fn table_fill(&self) -> [(&'static str, usize, usize); 2] {
        let (nu, nc) = self.nat.fill();
        let (au, ac) = self.neighbours.fill();
        [("nat_flows", nu, nc), ("neighbours", au, ac)]
    }

    /// When `handle_timeout` should run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_sweep;
        if let Some(p) = self.proxy.poll_timeout() {
            at = at.min(p);
        }
        if self.neighbours.has_pending() {
            at = at.min(self.arp_checked + ARP_TICK);
        }
        if self.announce_left > 0 {
            at = at.min(self.next_announce);
        }
        at
    }

    /// Runs the proxy's timers, sweeps idle NAT flows, retries or drops frames
    /// waiting for ARP, and sends what results.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl FrameSink) {
        if self.proxy.poll_timeout().is_some_and(|t| t <= now) {
            self.proxy.handle_timeout(now);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + NAT_SWEEP;
            let proxy = &mut self.proxy;
            let ended = self.nat.sweep(now, |g, c| proxy.end_flow(g, c));
            self.counters.nat_expired += ended as u64;
        }
        self.release_pending(now, sink);
        if self.announce_left > 0 && now >= self.next_announce {
            self.announce(now, sink);
        }
        self.flush(now, sink);
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    fn is_anycast(&self, ip: Ipv4) -> bool {
        self.cfg.anycast.iter().any(|p| p.contains(ip))
    }

    fn proxy_address(&self, id: ProxyId) -> Option<Ipv4> {
        self.cfg
            .proxies
            .binary_search_by_key(&id, |p| p.0)
            .ok()
            .and_then(|i| self.cfg.proxies.get(i))
            .map(|p| p.1)
    }
}
