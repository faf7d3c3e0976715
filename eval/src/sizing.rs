//! Sizing the experiments' proxies and the host they run on. Which proxies
//! are a group's RAPs, known before the simulator starts, so that each
//! proxy's RAP tables can be sized for what it will hold (the core reserves
//! and writes every table at start, so a table sized for the busiest proxy
//! would be resident in all of them); the peers whose state a proxy keeps;
//! the heap one proxy reserves; and the memory check that refuses a run the
//! host cannot hold.

use pias::addr::Group;
use pias::proxy::{PeerInfo, Proxy, ProxyConfig, SEC};
use pias::roster::Roster;
use pias::wire::ProxyId;
use pias_sim::Pos;
use std::sync::Arc;

/// The roster `pias_sim::Sim::new` builds for `pops`: ids from 1 in POP
/// order, each POP one cluster.
pub fn roster(pops: &[(Pos, usize)]) -> Roster {
    let mut peers = Vec::new();
    let mut id: ProxyId = 1;
    for (c, &(_, n)) in pops.iter().enumerate() {
        for _ in 0..n {
            peers.push(PeerInfo {
                id,
                cluster: c as u32,
            });
            id += 1;
        }
    }
    Roster::new(&peers, peers.len())
}

/// The `k` RAPs of `g` among the proxies `up` holds for, in the order
/// `Proxy::raps_of` finds them (the same ring walk).
pub fn raps(roster: &Roster, g: &Group, k: usize, up: impl Fn(ProxyId) -> bool) -> Vec<ProxyId> {
    let mut out = vec![0; k];
    let n = roster.ring().raps(g, k, up, &mut out);
    out.truncate(n);
    out
}

/// Peers a proxy of `cfg` watches when every POP has `cluster_size`
/// proxies: its own POP and the next `watch_clusters` POPs, less itself (the
/// core keeps their state from the start; at most, for a roster of fewer POPs).
pub fn watched(cfg: &ProxyConfig, cluster_size: usize) -> usize {
    (cfg.watch_clusters + 1) * cluster_size.max(1) - 1
}

/// `ProxyConfig::max_peer_state` for a proxy of `cfg` in POPs of
/// `cluster_size` that also hears from `others` peers it does not watch
/// (RAPs, JAPs, probe partners, news senders: the caller counts them for
/// what the proxy does, as an upper bound, so the core never has to forget
/// a peer to make room, let alone refuse one). The core keeps at most the
/// roster.
pub fn peer_state(cfg: &ProxyConfig, cluster_size: usize, others: usize) -> usize {
    watched(cfg, cluster_size) + others
}

/// Heap one proxy built with `cfg` over `roster` reserves (every table is
/// reserved, and written, at construction), measured with `heap_bytes`, the
/// process's allocated bytes. Call it while no other thread allocates.
pub fn reserved_bytes(
    cfg: ProxyConfig,
    roster: &Arc<Roster>,
    heap_bytes: &dyn Fn() -> usize,
) -> usize {
    let before = heap_bytes();
    let proxy = Proxy::with_roster(cfg, roster.clone(), 1_700_000_000 * SEC);
    let after = heap_bytes();
    drop(proxy);
    after.saturating_sub(before)
}

/// MemAvailable from /proc/meminfo, bytes (None where there is none).
pub fn mem_available() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory of a simulation of `proxies` proxies that each reserve
/// `per_proxy` bytes: the core writes every table it reserves, so all of it
/// is resident; a quarter more and 256 MiB for the simulator's own state
/// (events, members, configurations) and the allocator.
pub fn resident_estimate(proxies: usize, per_proxy: usize) -> usize {
    proxies.saturating_mul(per_proxy).saturating_mul(5) / 4 + (256 << 20)
}

/// Refuses, naming what it needs, a run that needs more memory than the host has.
pub fn check_memory(what: &str, need: usize) -> Result<(), String> {
    match mem_available() {
        Some(avail) if need > avail => Err(format!(
            "{what} needs about {} MiB of memory and {} MiB are available; \
             run it with fewer proxies (--proxies) or on a larger host",
            need >> 20,
            avail >> 20
        )),
        _ => Ok(()),
    }
}
