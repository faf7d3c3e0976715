//! Any sequence of frames into the data path (one appliance, IAP and JAP):
//! never a panic, whether the frames passed `classify` or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pias::addr::{Ipv4, Ipv4Prefix};
use pias::ids::PeerInfo;
use pias::proxy::{Proxy, ProxyConfig};
use pias::time::{MS, SEC};
use pias::wire::Key;
use pias_net::dataplane::{DataPlane, DataPlaneConfig, FrameSink, NatTimeouts};

struct Sink(usize);
impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.0 += frame.len();
        true
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

fuzz_target!(|data: &[u8]| {
    let t0 = 1_700_000_000 * SEC;
    let me = Ipv4([198, 18, 0, 2]);
    let mut pc = ProxyConfig::new(1, 1, Key([1; 32]));
    pc.group_secret = Some(Key([9; 32]));
    pc.anycast = vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)];
    pc.max_flows = 64;
    pc.max_groups = 64;
    pc.max_peer_state = 16;
    pc.max_targets = 64;
    pc.max_rap_entries = 64;
    pc.max_pending = 16;
    pc.tx_queue = 64;
    let proxy = Proxy::new(pc, &[PeerInfo { id: 1, cluster: 1 }, PeerInfo { id: 2, cluster: 2 }], t0);
    let cfg = DataPlaneConfig {
        mac: MAC,
        address: Ipv4Prefix::new(me, 24),
        gateway: Some(Ipv4([198, 18, 0, 1])),
        mtu: 1500,
        anycast: vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)],
        registration_port: 7000,
        proxy_port: 7002,
        nat_first_port: 20000,
        nat_ports: 64,
        max_flows: 64,
        nat_timeouts: NatTimeouts::default(),
        proxies: vec![(1, me), (2, Ipv4([198, 18, 0, 3]))],
        hash_key: [3; 16],
        bgp_neighbours: vec![Ipv4([198, 18, 0, 1])],
    };
    let mut dp = DataPlane::new(cfg, proxy, t0);
    let mut sink = Sink(0);
    let mut now = t0;
    let mut rest = data;
    // Each frame: a control byte (bit 0: must pass classify; bits 1..: ms to
    // advance), a length byte pair, then the frame.
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 1600;
        rest = &rest[3..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        now += u64::from(ctl >> 1) * 10 * MS;
        if ctl & 1 == 1 && pias_net::classify(frame, MAC, 1500).is_err() {
            continue;
        }
        dp.ingress(now, frame, &mut sink);
        if dp.poll_timeout() <= now {
            dp.handle_timeout(now, &mut sink);
        }
    }
});
