//! The one polling loop: smoltcp over the virtio NIC, the management service,
//! and halting (until an interrupt or smoltcp's next deadline) when idle.

use crate::interrupts;
use crate::time;
use crate::virtio::VirtioNic;
use crate::{arena, exit};
use pias::config::{Config, IdleMode};
use pias::mgmt::{MAX_REQUEST, MAX_RESPONSE};
use pias::status::{IdleCounters, InterfaceStatus, MgmtCounters, Status, TableFill};
use pias::Ipv4;
use pias_net::mgmt::{serve, Action};
use pias_net::NicDevice;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

const SOCKETS: usize = 4;
/// How long the loop keeps polling after the last frame before it halts.
const IDLE_SPIN_US: u64 = 200;
const MGMT_SLOTS: usize = 16;
const MGMT_RX_BYTES: usize = 16 * MAX_REQUEST;
const MGMT_TX_BYTES: usize = 16 * MAX_RESPONSE;

fn now() -> Instant {
    Instant::from_micros(time::uptime_us() as i64)
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

pub fn run(cfg: Config, nic: VirtioNic) -> ! {
    let ifc = cfg.interfaces[0].clone();
    let kind = nic.kind;
    let mut dev = NicDevice::new(nic, ifc.mtu);
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

    let [m0, m1, m2, m3, m4, m5] = mac;
    log::info!(
        "ready: {} {} mac {m0:02x}:{m1:02x}:{m2:02x}:{m3:02x}:{m4:02x}:{m5:02x} {kind}, management udp/{}",
        cfg.node.name,
        ifc.address,
        cfg.ports.management
    );

    let mut mgmt_counters = MgmtCounters::default();
    let mut idle = IdleCounters::default();
    let mut request = [0u8; MAX_REQUEST + 1];
    let mut reply = [0u8; MAX_RESPONSE];
    let mut shutting_down = false;
    let mut last_work_us = 0u64;
    loop {
        let before = (dev.counters.rx_frames, dev.counters.tx_frames);
        iface.poll(now(), &mut dev, &mut sockets);
        idle.polls += 1;

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
            let arena_fill = arena::fill();
            let action = serve(
                &request[..len],
                Ipv4(src.octets()),
                &cfg.management,
                &mut mgmt_counters,
                |m| Status {
                    node_id: cfg.node.id,
                    name: cfg.node.name.clone(),
                    uptime_ms: time::uptime_us() / 1000,
                    clock: time::info(),
                    interfaces: core::iter::once(InterfaceStatus {
                        name: ifc.name.clone(),
                        mac,
                        address: ifc.address,
                        gateway: ifc.gateway,
                        mtu: ifc.mtu,
                    })
                    .collect(),
                    net: dev.counters,
                    mgmt: *m,
                    idle: IdleCounters {
                        wakeups: interrupts::wakeups(),
                        ..idle
                    },
                    tables: [
                        table("arena_bytes", arena_fill.0, arena_fill.1),
                        table("sockets", 1, SOCKETS),
                    ]
                    .into_iter()
                    .collect(),
                },
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
            };
            let sock = sockets.get_mut::<udp::Socket>(mgmt);
            if sock.send_slice(&reply[..n], from).is_err() {
                mgmt_counters.reply_failures += 1;
            }
        }

        if shutting_down {
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
        let worked = served || (dev.counters.rx_frames, dev.counters.tx_frames) != before;
        if worked {
            last_work_us = time::uptime_us();
        }
        // Keep polling briefly after the last frame: a request/response peer
        // usually sends again within a round trip, and catching that by polling
        // is cheaper than a halt and an interrupt (NAPI-style busy polling).
        if worked || cfg.idle == IdleMode::Poll || time::uptime_us() - last_work_us < IDLE_SPIN_US {
            continue;
        }
        let delay = iface.poll_delay(now(), &sockets);
        interrupts::disable();
        dev.nic_mut().ack_interrupt();
        if dev.nic_mut().rx_pending() {
            interrupts::enable();
            continue;
        }
        interrupts::arm_timer_us(delay.map(|d| d.total_micros().max(1)).unwrap_or(0));
        idle.halts += 1;
        interrupts::enable_and_halt();
    }
}
