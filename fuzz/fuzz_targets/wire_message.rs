//! Any datagram to a proxy: parse is total, and a proxy fed it never panics.
//! The input is also sealed with the deployment key (and, as a target
//! message, the group key) under each kind, so handlers see arbitrary bodies
//! that pass authentication, from a peer in its first life and after a restart.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::proxy::{GroupConfig, PeerInfo, Policy, Proxy, ProxyConfig};
use pias::wire::{self, Key, Sender, KINDS};

const DEPLOYMENT: Key = Key([1; 32]);
const GROUP_KEY: Key = Key([2; 32]);

fuzz_target!(|data: &[u8]| {
    let mut cfg = ProxyConfig::new(1, 0, DEPLOYMENT);
    cfg.max_peers = 8;
    cfg.max_groups = 8;
    cfg.max_flows = 8;
    cfg.max_pending = 4;
    cfg.max_targets = 16;
    cfg.max_rap_entries = 16;
    cfg.tx_queue = 64;
    cfg.groups.push(GroupConfig {
        group: Group { ip: Ipv4([203, 0, 113, 1]), port: 53, transport: Transport::Udp },
        key: GROUP_KEY,
        policy: Policy::Proximity,
        band_pct: 10,
    });
    let peers = [PeerInfo { id: 2, cluster: 0 }, PeerInfo { id: 3, cluster: 1 }];
    let mut proxy = Proxy::new(cfg, &peers, 1_000_000);
    let src = Endpoint { ip: Ipv4([198, 18, 0, 9]), port: 7002 };
    let mut now = 2_000_000;
    proxy.handle_message(now, src, data);
    let (kind, body) = match data.split_first() {
        Some((k, b)) => (k % KINDS as u8, b),
        None => (0, data),
    };
    let mut out = [0u8; wire::MAX_MESSAGE];
    let first = Sender::Proxy { id: 2, boot: 500_000 };
    let restarted = Sender::Proxy { id: 2, boot: 1_500_000 };
    // Addressed to proxy 1 (to 0: a target's message, or one to a target).
    for (sender, to, seq, key) in [
        (first, 1, 10u64, &DEPLOYMENT),
        (first, 0, 12, &DEPLOYMENT),
        (Sender::Target, 0, 1, &GROUP_KEY),
        (restarted, 1, 1, &DEPLOYMENT),
        (first, 1, 11, &DEPLOYMENT),
    ] {
        if let Ok(n) = wire::seal(sender, to, seq, kind, body, key, &mut out) {
            now += 1_000;
            proxy.handle_message(now, src, &out[..n]);
        }
    }
    proxy.handle_client_packet(now, Group { ip: Ipv4([203, 0, 113, 1]), port: 53, transport: Transport::Udp }, src, body);
    for step in 0..5u64 {
        proxy.handle_timeout(now + step * 1_000_000);
        while proxy.poll_transmit().is_some() {}
    }
});
