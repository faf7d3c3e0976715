//! The one polling loop: frames from the virtio NIC go to the data path
//! (`pias_net::dataplane`) first, then to smoltcp (ARP, ICMP echo,
//! management); the data path's timers and the management service run here,
//! and the CPU halts (until an interrupt or the next deadline) when idle.

use crate::interrupts;
use crate::time;
use crate::virtio::VirtioNic;
use crate::{arena, console, exit};
use alloc::boxed::Box;
use alloc::vec::Vec;
use pias::config::{Config, IdleMode};
use pias::mgmt::{MAX_REQUEST, MAX_RESPONSE};
use pias::proxy::{Proxy, ProxyConfig};
use pias::status::{
    HttpCounters, IdleCounters, InterfaceStatus, LoopMode, MgmtCounters, ProxyReport,
    RoutingReport, Status, TableFill,
};
use pias::Ipv4;
use pias_net::dataplane::{DataPlane, DataPlaneConfig, NatTimeouts, Verdict};
use pias_net::idle::IdlePolicy;
use pias_net::metrics::{self, MetricsServer};
use pias_net::mgmt::{Action, Reports, Service};
use pias_net::routing::Routing;
use pias_net::{Nic, NicDevice};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

/// The management socket, one TCP socket per BGP neighbour, BFD's three and
/// the metrics port's.
const SOCKETS: usize = 1 + pias::config::MAX_BGP_NEIGHBOURS + 3 + metrics::SLOTS;
/// BFD's sockets: datagrams of 24 bytes, a few per neighbour in flight.
const BFD_SLOTS: usize = 16;
const BFD_BYTES: usize = BFD_SLOTS * 64;
/// Each BGP connection's receive and send buffers (a few messages each way).
const BGP_BUFFER: usize = 8 * 1024;
/// How long the loop keeps polling after the last frame before it halts,
/// while its idle policy spins (`pias_net::idle`: under a load that moves
/// more frames that way, it halts at once).
const IDLE_SPIN_US: u64 = 200;
/// Console bytes written per turn of the loop, never waiting for the UART:
/// at most one 16550 FIFO (16 bytes) on a turn that moved frames, up to 256
/// on one that did not (a FIFO each time the transmitter is found empty);
/// and how long the loop may halt while bytes wait for the UART.
const CONSOLE_BUSY_CHUNK: usize = 16;
const CONSOLE_IDLE_CHUNK: usize = 256;
const CONSOLE_RETRY_US: u64 = 1_000;
/// Frames taken from the NIC per turn of the loop before timers and the
/// management port get their turn.
const RX_BUDGET: usize = 64;
const MGMT_SLOTS: usize = 16;
const MGMT_RX_BYTES: usize = 16 * MAX_REQUEST;
const MGMT_TX_BYTES: usize = 16 * MAX_RESPONSE;
/// The NAT's ports start here (or above the configured service ports).
const NAT_FIRST_PORT: u16 = 20_000;

fn now() -> Instant {
    Instant::from_micros(time::uptime_us() as i64)
}

/// Monotonic milliseconds since boot: BGP's clock.
fn uptime_ms() -> u64 {
    time::uptime_us() / 1000
}

/// Takes up to `RX_BUDGET` received frames through the data path, or the
/// stack one at a time (connection attempts to the metrics port pass its
/// `admit` first: a stranger's are dropped, those no slot can take counted),
/// then tells the proxy if the device overran its receive ring.
fn drain_rx(
    dev: &mut NicDevice<VirtioNic>,
    dp: &mut DataPlane,
    iface: &mut Interface,
    sockets: &mut SocketSet<'_>,
    metrics: &mut Option<MetricsServer>,
    wall: u64,
) {
    for _ in 0..RX_BUDGET {
        if !dev.pull() {
            break;
        }
        let (frame, offload, mut sink) = dev.split();
        match dp.ingress_offloaded(wall, frame, offload, &mut sink) {
            Verdict::Stack => {
                if let Some(m) = metrics {
                    if !m.admit(frame, sockets) {
                        continue; // a stranger's SYN: dropped, counted
                    }
                }
                if dev.hold_for_stack() {
                    iface.poll_ingress_single(now(), dev, sockets);
                }
            }
            // Its segments come next, each an ordinary frame.
            Verdict::Cut => dev.cut_current(),
            Verdict::Done => {}
        }
    }
    // Fell a ring behind: pongs may have been lost with the flood.
    if dev.take_overrun() {
        dp.handle_receive_overrun(wall);
    }
}

/// The metrics port as the ready line shows it.
struct MetricsPort(Option<u16>);

impl core::fmt::Display for MetricsPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(p) => write!(f, "tcp/{p}"),
            None => f.write_str("off"),
        }
    }
}

/// What the status shows of the loop's behaviour when idle.
fn loop_mode(idle: IdleMode, policy: &IdlePolicy) -> LoopMode {
    match idle {
        IdleMode::Poll => LoopMode::Poll,
        IdleMode::Halt => policy.loop_mode(),
    }
}

fn fail(what: &str) -> ! {
    log::error!("memory: {what}");
    exit::exit(pias::exit::OUT_OF_MEMORY)
}

fn table(name: &str, used: usize, capacity: usize) -> TableFill {
    let mut n = heapless::String::new();
    let _ = n.push_str(name);
    TableFill {
        name: n,
        used: used as u64,
        capacity: capacity as u64,
    }
}

/// The first NAT port: 20,000, or above every configured service port.
fn nat_first_port(cfg: &Config) -> u16 {
    let p = &cfg.ports;
    NAT_FIRST_PORT.max(
        p.management
            .max(p.proxy)
            .max(p.registration)
            .max(p.metrics.unwrap_or(0))
            .saturating_add(1),
    )
}

/// Local ports of BGP's outgoing connections: the 8,192 below the NAT's
/// (segments to a NAT port are the data path's, not the stack's).
fn bgp_ports(cfg: &Config) -> core::ops::Range<u16> {
    let end = nat_first_port(cfg);
    end.saturating_sub(8_192).max(1_024)..end
}

/// The data path's settings from the boot config.
fn dataplane_config(cfg: &Config, mac: [u8; 6]) -> DataPlaneConfig {
    let ifc = &cfg.interfaces[0];
    let p = &cfg.ports;
    let first = nat_first_port(cfg);
    let t = &cfg.timers;
    let sec = |s: u32| u64::from(s) * pias::time::SEC;
    let mut seed = time::rdtsc() ^ u64::from(cfg.node.id).rotate_left(32);
    let mut hash_key = [0u8; 16];
    for chunk in hash_key.chunks_mut(8) {
        seed = pias::ring::mix64(seed);
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    DataPlaneConfig {
        mac,
        address: ifc.address,
        gateway: ifc.gateway,
        mtu: ifc.mtu,
        anycast: cfg.anycast.prefixes.iter().copied().collect(),
        registration_port: p.registration,
        proxy_port: p.proxy,
        nat_first_port: first,
        nat_ports: usize::from(u16::MAX - first) + 1,
        max_flows: (cfg.capacity.flows as usize).min(usize::from(u16::MAX - first) + 1),
        nat_timeouts: NatTimeouts {
            udp: sec(t.flow_udp_idle_s),
            tcp_established: sec(t.flow_tcp_idle_s),
            tcp_transitory: sec(t.flow_tcp_transitory_s),
        },
        proxies: cfg
            .deployment
            .proxies
            .iter()
            .map(|e| (e.id, e.address))
            .collect::<Vec<_>>(),
        hash_key,
        bgp_neighbours: cfg.bgp.neighbours.iter().map(|n| n.address).collect(),
    }
}

/// What the management service reports, built when asked.
struct Snapshot<'a> {
    cfg: &'a Config,
    /// The management service's replay cache: (used, capacity).
    mgmt_nonces: (usize, usize),
    mac: [u8; 6],
    net: pias::status::NetCounters,
    http: HttpCounters,
    idle: IdleCounters,
    loop_mode: LoopMode,
    /// The data path's clock (Unix µs) when the snapshot was taken.
    wall: u64,
    dp: &'a DataPlane,
    routing: &'a Routing,
}

impl Reports for Snapshot<'_> {
    fn status(&self, m: &MgmtCounters) -> Status {
        let ifc = &self.cfg.interfaces[0];
        let arena_fill = arena::fill();
        let mut tables: heapless::Vec<TableFill, { pias::status::MAX_TABLES }> =
            heapless::Vec::new();
        let _ = tables.push(table("arena_bytes", arena_fill.0, arena_fill.1));
        let _ = tables.push(table("mgmt_nonces", self.mgmt_nonces.0, self.mgmt_nonces.1));
        for (name, used, cap) in self.dp.table_fill() {
            let _ = tables.push(table(name, used, cap));
        }
        for (name, used, cap) in self.dp.proxy().table_fill() {
            let _ = tables.push(table(name, used, cap));
        }
        Status {
            node_id: self.cfg.node.id,
            name: self.cfg.node.name.clone(),
            version: heapless::String::try_from(crate::VERSION).unwrap_or_default(),
            uptime_ms: time::uptime_us() / 1000,
            clock: time::info(),
            interfaces: core::iter::once(InterfaceStatus {
                name: ifc.name.clone(),
                mac: self.mac,
                address: ifc.address,
                gateway: ifc.gateway,
                mtu: ifc.mtu,
            })
            .collect(),
            net: self.net,
            mgmt: *m,
            http: self.http,
            idle: IdleCounters {
                wakeups: interrupts::wakeups(),
                device_wakeups: interrupts::device_wakeups(),
                ..self.idle
            },
            tables,
            allocations: arena::allocations(),
            console_dropped: console::dropped(),
            loop_mode: self.loop_mode,
        }
    }

    fn proxy(&self) -> ProxyReport {
        ProxyReport {
            data: self.dp.counters(),
            proxy: self.dp.proxy().counters(),
        }
    }

    fn routing(&self) -> RoutingReport {
        RoutingReport {
            gtsm_dropped: self.dp.counters().drop_gtsm,
            ..self.routing.report()
        }
    }

    fn group(&self, g: &pias::addr::Group) -> pias::status::GroupReport {
        self.dp.proxy().group_report(self.wall, g)
    }
}

pub fn run(cfg: Config, nic: VirtioNic) -> ! {
    let boot_unix = time::read_unix_boot_us().unwrap_or_else(|| {
        log::warn!("clock: the RTC gives no date; registrations will look stale");
        0
    });
    let wall_unknown = boot_unix == 0;
    let wall = || boot_unix + time::uptime_us();

    let ifc = cfg.interfaces[0].clone();
    let kind = nic.kind;
    let mut nic = nic;
    // `idle = "poll"` never halts, not even for transmit room.
    nic.halt_for_room = cfg.idle != IdleMode::Poll;
    let mut dev = NicDevice::gated(nic, ifc.mtu);
    // Merged segments are worth it only where they can leave whole.
    let coalesce = dev.nic_mut().takes_large();
    dev.set_coalescing(coalesce);
    let mac = dev.mac();
    let mut iface_cfg = IfaceConfig::new(EthernetAddress(mac).into());
    iface_cfg.random_seed = time::rdtsc();
    let mut iface = Interface::new(iface_cfg, &mut dev, now());
    let addr = Ipv4Address::from(ifc.address.addr.0);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), ifc.address.len));
    });
    if let Some(gw) = ifc.gateway {
        if iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::from(gw.0))
            .is_err()
        {
            log::warn!("net: route table full; no default route");
        }
    }

    let storage =
        arena::alloc_slice(SOCKETS, || SocketStorage::EMPTY).unwrap_or_else(|_| fail("sockets"));
    let rx_meta = arena::alloc_slice(MGMT_SLOTS, || udp::PacketMetadata::EMPTY)
        .unwrap_or_else(|_| fail("mgmt rx"));
    let rx_data = arena::alloc_slice(MGMT_RX_BYTES, || 0u8).unwrap_or_else(|_| fail("mgmt rx"));
    let tx_meta = arena::alloc_slice(MGMT_SLOTS, || udp::PacketMetadata::EMPTY)
        .unwrap_or_else(|_| fail("mgmt tx"));
    let tx_data = arena::alloc_slice(MGMT_TX_BYTES, || 0u8).unwrap_or_else(|_| fail("mgmt tx"));
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut mgmt_sock = udp::Socket::new(
        udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_data[..]),
        udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_data[..]),
    );
    if mgmt_sock.bind(cfg.ports.management).is_err() {
        log::error!("net: cannot bind management port {}", cfg.ports.management);
    }
    let mgmt = sockets.add(mgmt_sock);
    // The metrics port: its sockets and buffers, reserved here, once.
    let mut metrics_server = cfg.ports.metrics.map(|port| {
        let handles: heapless::Vec<_, { metrics::SLOTS }> = (0..metrics::SLOTS)
            .map(|_| {
                let rx = arena::alloc_slice(metrics::SOCKET_RX_BYTES, || 0u8)
                    .unwrap_or_else(|_| fail("metrics rx"));
                let tx = arena::alloc_slice(metrics::SOCKET_TX_BYTES, || 0u8)
                    .unwrap_or_else(|_| fail("metrics tx"));
                sockets.add(metrics::socket(rx, tx))
            })
            .collect();
        MetricsServer::new(port, &cfg.management.allow, &handles)
    });
    let mut bgp_sockets: heapless::Vec<_, { pias::config::MAX_BGP_NEIGHBOURS }> =
        heapless::Vec::new();
    for _ in &cfg.bgp.neighbours {
        let rx = arena::alloc_slice(BGP_BUFFER, || 0u8).unwrap_or_else(|_| fail("bgp rx"));
        let tx = arena::alloc_slice(BGP_BUFFER, || 0u8).unwrap_or_else(|_| fail("bgp tx"));
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        let _ = bgp_sockets.push(sockets.add(sock));
    }

    // The proxy and its data path: every table reserved here, once.
    let proxy = Proxy::new(ProxyConfig::from_config(&cfg), &cfg.peers(), wall());
    let mut dp = Box::new(DataPlane::new(dataplane_config(&cfg, mac), proxy, wall()));

    let bfd_sockets = cfg.bgp.neighbours.iter().any(|n| n.bfd).then(|| {
        let mut udp_socket = |port: u16| {
            let rx_meta = arena::alloc_slice(BFD_SLOTS, || udp::PacketMetadata::EMPTY)
                .unwrap_or_else(|_| fail("bfd"));
            let rx = arena::alloc_slice(BFD_BYTES, || 0u8).unwrap_or_else(|_| fail("bfd"));
            let tx_meta = arena::alloc_slice(BFD_SLOTS, || udp::PacketMetadata::EMPTY)
                .unwrap_or_else(|_| fail("bfd"));
            let tx = arena::alloc_slice(BFD_BYTES, || 0u8).unwrap_or_else(|_| fail("bfd"));
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
                udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
            );
            if s.bind(port).is_err() {
                log::error!("bfd: cannot bind udp/{port}");
            }
            sockets.add(s)
        };
        // RFC 5881: received on 3784 (4784 multihop, RFC 5883), sent from
        // 49152..=65535.
        pias_net::routing::BfdSockets {
            single: udp_socket(pias_bgp::bfd::PORT),
            multi: udp_socket(pias_bgp::bfd::MULTIHOP_PORT),
            tx: udp_socket(49_152 + (time::rdtsc() % 16_000) as u16),
        }
    });
    let mut routing = Box::new(Routing::new(
        &cfg,
        &mut sockets,
        &bgp_sockets,
        bfd_sockets,
        time::uptime_us(),
        bgp_ports(&cfg),
        time::rdtsc() as u16,
    ));
    // The management service's replay cache, reserved here, once: like every
    // table, before "ready" says the appliance has what it needs.
    let mut mgmt_service = Box::new(Service::new(cfg.management.clone()));
    let pc = ProxyConfig::from_config(&cfg);
    // A proxy counts as heard if a verified message of its came this recently.
    let hearing_window = 2 * pc.peer_dead.max(pc.rtt_probe);
    if routing.enabled() {
        log::info!(
            "bgp: AS {} router id {}, {} neighbour(s), announcing {} prefix(es) once healthy",
            cfg.bgp.local_as,
            cfg.bgp_router_id(),
            cfg.bgp.neighbours.len(),
            cfg.bgp_prefixes().len()
        );
    }

    // The TSC's rate measured over the whole boot, then the timer the loop
    // halts on (it shares the LAPIC's count with that measurement).
    if let Some(span_ms) = time::finish_calibration() {
        log::info!(
            "clock: TSC {} kHz, measured against QEMU's virtual clock over {span_ms} ms",
            time::tsc_khz()
        );
    }
    interrupts::start_timer();

    let [m0, m1, m2, m3, m4, m5] = mac;
    log::info!(
        "ready: {} {} mac {m0:02x}:{m1:02x}:{m2:02x}:{m3:02x}:{m4:02x}:{m5:02x} {kind}, management udp/{}, proxy udp/{}, metrics {}, {} proxies, arena {} KiB used",
        cfg.node.name,
        ifc.address,
        cfg.ports.management,
        cfg.ports.proxy,
        MetricsPort(cfg.ports.metrics),
        cfg.deployment.proxies.len(),
        arena::fill().0 / 1024
    );

    if wall_unknown {
        log::error!("mgmt: no wall clock: every management request will be refused as stale");
    }
    let mut mgmt_counters = MgmtCounters::default();
    let mut idle = IdleCounters::default();
    let mut request = [0u8; MAX_REQUEST + 1];
    let mut reply = [0u8; MAX_RESPONSE];
    let mut shutting_down = false;
    let mut last_work_us = 0u64;
    let mut policy = IdlePolicy::new(IDLE_SPIN_US, time::uptime_us());
    // From here the console's lines wait for the loop's idle moments.
    console::start_queueing();
    // Frames and bytes moved so far, both ways (for the idle policy).
    let moved = |c: &pias::status::NetCounters| {
        (
            c.rx_frames.wrapping_add(c.tx_frames),
            c.rx_bytes.wrapping_add(c.tx_bytes),
        )
    };
    loop {
        let before = moved(&dev.counters);
        idle.polls += 1;

        // Frames first: the data path's, or smoltcp's one at a time; the
        // device hears of the buffers given back and the frames queued.
        drain_rx(
            &mut dev,
            &mut dp,
            &mut iface,
            &mut sockets,
            &mut metrics_server,
            wall(),
        );
        if dp.poll_timeout() <= wall() {
            dp.handle_timeout(wall(), &mut dev);
        }
        routing.poll(
            time::uptime_us(),
            || dp.proxy().hearing(wall(), hearing_window),
            &mut iface,
            &mut sockets,
        );
        iface.poll(now(), &mut dev, &mut sockets);

        let mut served = false;
        loop {
            let sock = sockets.get_mut::<udp::Socket>(mgmt);
            let (len, from) = match sock.recv_slice(&mut request) {
                Ok((n, meta)) => (n, meta.endpoint),
                Err(udp::RecvError::Truncated) => {
                    mgmt_counters.requests += 1;
                    mgmt_counters.bad_requests += 1;
                    continue;
                }
                Err(udp::RecvError::Exhausted) => break,
            };
            served = true;
            let IpAddress::Ipv4(src) = from.addr;
            let snapshot = Snapshot {
                cfg: &cfg,
                mgmt_nonces: mgmt_service.replay_fill(),
                mac,
                net: dev.counters,
                http: metrics_server
                    .as_ref()
                    .map(|m| m.counters)
                    .unwrap_or_default(),
                idle,
                loop_mode: loop_mode(cfg.idle, &policy),
                wall: wall(),
                dp: &dp,
                routing: &routing,
            };
            let action = mgmt_service.serve(
                &request[..len],
                Ipv4(src.octets()),
                wall() / 1000,
                &mut mgmt_counters,
                &snapshot,
                &mut reply,
            );
            let n = match action {
                Action::Ignore => continue,
                Action::Reply(n) => n,
                Action::ReplyThenShutdown(n) => {
                    log::info!("shutdown requested by {src}");
                    shutting_down = true;
                    n
                }
                Action::DrainThenReply(n) => {
                    log::info!("bgp: drain requested by {src}");
                    routing.drain(uptime_ms());
                    n
                }
                Action::UndrainThenReply(n) => {
                    log::info!("bgp: undrain requested by {src}");
                    routing.undrain();
                    n
                }
            };
            let sock = sockets.get_mut::<udp::Socket>(mgmt);
            if sock.send_slice(&reply[..n], from).is_err() {
                mgmt_counters.reply_failures += 1;
            }
        }

        if let Some(m) = &mut metrics_server {
            let snapshot = Snapshot {
                cfg: &cfg,
                mgmt_nonces: mgmt_service.replay_fill(),
                mac,
                net: dev.counters,
                http: m.counters,
                idle,
                loop_mode: loop_mode(cfg.idle, &policy),
                wall: wall(),
                dp: &dp,
                routing: &routing,
            };
            let served_before = m.counters;
            m.poll(time::uptime_us(), &mut sockets, &snapshot, &mgmt_counters);
            served |= m.counters != served_before;
        }

        if shutting_down {
            // Withdraw first, then stop: the routers move the prefix away
            // before the appliance goes (bounded: 2 s for the withdrawal to be
            // acknowledged, then a Cease).
            if routing.enabled() {
                // (After ending the sessions, with `stop`,) runs BGP, the
                // stack and the NIC until `routing.flushed` or `ms` have passed.
                let mut pump = |routing: &mut Routing, stop: bool, ms: u64| {
                    if stop {
                        log::info!("bgp: prefixes withdrawn; closing the sessions");
                        routing.stop(uptime_ms(), &mut sockets);
                    }
                    let until = uptime_ms() + ms;
                    loop {
                        routing.poll(
                            time::uptime_us(),
                            Default::default,
                            &mut iface,
                            &mut sockets,
                        );
                        iface.poll(now(), &mut dev, &mut sockets);
                        dev.nic_mut().kick();
                        drain_rx(
                            &mut dev,
                            &mut dp,
                            &mut iface,
                            &mut sockets,
                            &mut metrics_server,
                            wall(),
                        );
                        if routing.flushed(&sockets) || uptime_ms() >= until {
                            break;
                        }
                    }
                };
                routing.withdraw_all();
                pump(&mut routing, false, 2_000);
                pump(&mut routing, true, 500);
            }
            // Flush the reply (bounded), then leave.
            for _ in 0..1000 {
                iface.poll(now(), &mut dev, &mut sockets);
                if sockets.get_mut::<udp::Socket>(mgmt).send_queue() == 0 {
                    break;
                }
            }
            if !dev.nic_mut().flush_tx(500_000) {
                log::warn!("shutdown: the device did not take every queued frame");
            }
            exit::exit(pias::exit::SHUTDOWN);
        }

        dev.nic_mut().kick();
        let after = moved(&dev.counters);
        let frames = after.0.wrapping_sub(before.0);
        let worked = served || frames > 0;
        let pass_end = time::uptime_us();
        if worked {
            last_work_us = pass_end;
        }
        // `idle = "poll"` never halts: the policy has nothing to choose.
        if cfg.idle != IdleMode::Poll {
            policy.record(pass_end, frames, after.1.wrapping_sub(before.1));
            let pc = policy.counters();
            (idle.policy_trials, idle.policy_switches) = (pc.trials, pc.switches);
        }
        let console_waits = console::pending()
            && console::drain(if worked {
                CONSOLE_BUSY_CHUNK
            } else {
                CONSOLE_IDLE_CHUNK
            });
        // Keep polling briefly after the last frame: a request/response peer
        // usually sends again within a round trip, and catching that by polling
        // is cheaper than a halt and an interrupt (NAPI-style busy polling);
        // unless the idle policy measured that halting at once moves more.
        if worked
            || cfg.idle == IdleMode::Poll
            || time::uptime_us().saturating_sub(last_work_us) < policy.spin_us()
        {
            continue;
        }
        let stack_delay = iface
            .poll_delay(now(), &sockets)
            .map(|d| d.total_micros().max(1));
        let dp_delay = dp.poll_timeout().saturating_sub(wall()).max(1);
        let mut delay = stack_delay.map_or(dp_delay, |s| s.min(dp_delay));
        if let Some(t) = routing.poll_timeout() {
            delay = delay.min(t.saturating_sub(time::uptime_us()).max(1));
        }
        if let Some(t) = metrics_server
            .as_ref()
            .and_then(MetricsServer::poll_timeout)
        {
            delay = delay.min(t.saturating_sub(time::uptime_us()).max(1));
        }
        if console_waits {
            delay = delay.min(CONSOLE_RETRY_US);
        }
        interrupts::disable();
        if !dev.nic_mut().arm_wakeup() {
            dev.nic_mut().disarm_wakeup();
            interrupts::enable();
            continue;
        }
        interrupts::arm_timer_us(delay);
        idle.halts += 1;
        interrupts::enable_and_halt();
        dev.nic_mut().disarm_wakeup();
    }
}
