//! The data path the data-plane fuzz targets drive: one appliance (IAP and
//! JAP) at 198.18.0.2 serving 203.0.113.0/24, with tables of `capacity`.

use pias::addr::{Ipv4, Ipv4Prefix};
use pias::ids::PeerInfo;
use pias::proxy::{Proxy, ProxyConfig};
use pias::time::{Instant, SEC};
use pias::wire::Key;
use pias_net::dataplane::{DataPlane, DataPlaneConfig, NatTimeouts};

pub const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
pub const T0: Instant = 1_700_000_000 * SEC;

/// `peers`: 1 (alone) or 2 (a second proxy at 198.18.0.3).
pub fn data_plane(capacity: usize, peers: u32) -> DataPlane {
    let me = Ipv4([198, 18, 0, 2]);
    let mut pc = ProxyConfig::new(1, 1, Key([1; 32]));
    pc.group_secret = Some(Key([9; 32]));
    pc.anycast = vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)];
    pc.max_flows = capacity;
    pc.max_groups = capacity;
    pc.max_peer_state = 16;
    pc.max_targets = capacity;
    pc.max_rap_entries = capacity;
    pc.max_pending = 16;
    pc.tx_queue = 64;
    let all = [
        (PeerInfo { id: 1, cluster: 1 }, me),
        (PeerInfo { id: 2, cluster: 2 }, Ipv4([198, 18, 0, 3])),
    ];
    let known = &all[..(peers as usize).clamp(1, 2)];
    let infos: Vec<PeerInfo> = known.iter().map(|p| p.0).collect();
    let proxy = Proxy::new(pc, &infos, T0);
    let cfg = DataPlaneConfig {
        mac: MAC,
        address: Ipv4Prefix::new(me, 24),
        gateway: Some(Ipv4([198, 18, 0, 1])),
        mtu: 1500,
        anycast: vec![Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)],
        registration_port: 7000,
        proxy_port: 7002,
        nat_first_port: 20000,
        nat_ports: capacity,
        max_flows: capacity,
        nat_timeouts: NatTimeouts::default(),
        proxies: known.iter().map(|p| (p.0.id, p.1)).collect(),
        hash_key: [3; 16],
        bgp_neighbours: vec![Ipv4([198, 18, 0, 1])],
    };
    DataPlane::new(cfg, proxy, T0)
}
