//! The per-packet path makes no heap allocation: one appliance acting as IAP
//! and JAP carries 10,000 client queries to a target and its answers back,
//! under a counting global allocator (after a warm-up that fills the caches).

use pias::addr::{Endpoint, Group, Ipv4, Ipv4Prefix, Transport};
use pias::ids::PeerInfo;
use pias::proxy::{Proxy, ProxyConfig};
use pias::time::{Instant, MS, SEC};
use pias::wire::{self, JoinOptions, Key, Message, Registration, Sender};
use pias_net::dataplane::packet::{self, Addressing};
use pias_net::dataplane::{DataPlane, DataPlaneConfig, FrameSink, NatTimeouts};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `Counting` upholds exactly `System`'s contract; counting
// touches only atomics (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the caller's layout, unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: as `GlobalAlloc::realloc` requires, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: Instant = 1_700_000_000 * SEC;
const ME: Ipv4 = Ipv4([198, 18, 0, 2]);
const CLIENT: Ipv4 = Ipv4([198, 18, 0, 10]);
const TARGET: Ipv4 = Ipv4([198, 18, 0, 20]);
const GROUP: Group = Group {
    ip: Ipv4([203, 0, 113, 10]),
    port: 53,
    transport: Transport::Udp,
};

/// Keeps the last frame sent (a fixed buffer: the sink must not allocate either).
struct Last {
    frame: [u8; 1514],
    len: usize,
    sent: usize,
}
impl FrameSink for Last {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.frame[..frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        self.sent += 1;
        true
    }
}

fn frame(buf: &mut [u8], src: Ipv4, sport: u16, dst: Ipv4, dport: u16, payload: &[u8]) -> usize {
    let a = Addressing {
        src_mac: [2; 6],
        dst_mac: [0x52, 0x54, 0, 0, 0, 2],
        src,
        dst,
        ident: 1,
    };
    packet::udp_frame(buf, &a, sport, dport, payload).unwrap()
}

fn arp_reply(buf: &mut [u8], ip: Ipv4) -> usize {
    packet::arp_reply(buf, [2; 6], ip, [0x52, 0x54, 0, 0, 0, 2], ME)
}

#[test]
fn ten_thousand_proxied_packets_allocate_nothing() {
    let secret = Key([9; 32]);
    let mut pc = ProxyConfig::new(1, 1, Key([1; 32]));
    pc.group_secret = Some(secret.clone());
    pc.anycast = vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)];
    let proxy = Proxy::new(pc, &[PeerInfo { id: 1, cluster: 1 }], T0);
    let cfg = DataPlaneConfig {
        mac: [0x52, 0x54, 0, 0, 0, 2],
        address: Ipv4Prefix::new(ME, 24),
        gateway: Some(Ipv4([198, 18, 0, 1])),
        mtu: 1500,
        anycast: vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)],
        registration_port: 7000,
        proxy_port: 7002,
        nat_first_port: 20000,
        nat_ports: 1024,
        max_flows: 1024,
        nat_timeouts: NatTimeouts::default(),
        proxies: vec![(1, ME)],
        bgp_neighbours: vec![],
        hash_key: [3; 16],
    };
    let mut dp = DataPlane::new(cfg, proxy, T0);
    let mut out = Last {
        frame: [0; 1514],
        len: 0,
        sent: 0,
    };
    let mut buf = [0u8; 1514];
    // Neighbours known, the target joined.
    for ip in [CLIENT, TARGET] {
        let n = arp_reply(&mut buf, ip);
        dp.ingress(T0, &buf[..n], &mut out);
    }
    let key = pias::keys::group_key(&secret, &GROUP);
    let join = Message::Join(Registration {
        group: GROUP,
        target: Endpoint {
            ip: TARGET,
            port: 53,
        },
        timestamp_ms: T0 / MS,
        nonce: 1,
        options: JoinOptions::default(),
    });
    let mut msg = [0u8; wire::MAX_MESSAGE];
    let m = wire::encode(Sender::Target, 0, 1, &join, &key, &mut msg).unwrap();
    let n = frame(&mut buf, TARGET, 40000, GROUP.ip, 7000, &msg[..m]);
    dp.ingress(T0, &buf[..n], &mut out);
    assert_eq!(dp.proxy().targets_held(&GROUP), 1);

    let mut now = T0;
    let mut one_round =
        |dp: &mut DataPlane, now: Instant, i: usize, out: &mut Last, count: bool| {
            let port = 1000 + (i % 200) as u16;
            let n = frame(&mut buf, CLIENT, port, GROUP.ip, 53, b"query");
            dp.ingress(now, &buf[..n], out);
            // The delivered query: NATed, to the target.
            let q = out.frame;
            let seg = &q[34..out.len];
            let (nat_port, dport) = packet::ports(seg);
            assert_eq!(dport, 53);
            let n = frame(&mut buf, TARGET, 53, ME, nat_port, b"answer");
            dp.ingress(now, &buf[..n], out);
            if dp.poll_timeout() <= now {
                dp.handle_timeout(now, out);
            }
            if count {
                assert_eq!(
                    &out.frame[26..30],
                    &GROUP.ip.0,
                    "the answer comes from the group"
                );
            }
        };
    for i in 0..500 {
        now += MS;
        one_round(&mut dp, now, i, &mut out, false);
    }
    let before = dp.counters();
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for i in 0..10_000 {
        now += 100;
        one_round(&mut dp, now, i, &mut out, true);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let after = dp.counters();
    assert_eq!(after.tx_to_client - before.tx_to_client, 10_000);
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations on the packet path"
    );
}
