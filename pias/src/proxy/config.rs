//! What one proxy is told at start: its sizes, timers, keys and groups
//! (`ProxyConfig`), and how a group picks its JAPs (`Policy`).

use crate::addr::Group;
use crate::time::{MS, SEC};
use crate::wire::{Key, ProxyId};
use alloc::vec::Vec;

/// How a RAP picks among a group's JAPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The JAP nearest the client's IAP.
    Proximity,
    /// The JAP with the most targets (capacity follows members).
    Load,
    /// Any JAP, at random.
    Random,
    /// A JAP chosen by the client's address, the same from every IAP (affinity).
    ClientHash,
}

/// A group this deployment serves.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub group: Group,
    /// Key of the group's join/leave/ping messages.
    pub key: Key,
    pub policy: Policy,
    /// Initial count-report band, percent.
    pub band_pct: u8,
}

/// Sizes and timers of one proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub id: ProxyId,
    pub cluster: u32,
    pub k_raps: usize,
    pub max_peers: usize,
    pub max_groups: usize,
    pub max_targets_per_group: usize,
    pub max_japs_per_group: usize,
    pub max_flows: usize,
    pub max_pending: usize,
    pub tx_queue: usize,
    pub heartbeat: u64,
    pub peer_dead: u64,
    /// Clusters each cluster watches besides itself.
    pub watch_clusters: usize,
    pub target_ping: u64,
    pub target_rise: u8,
    pub target_fall: u8,
    /// A delivered packet with no reply within this time triggers an early ping.
    pub passive_timeout: u64,
    pub cache_ttl: u64,
    pub lookup_timeout: u64,
    pub rtt_probe: u64,
    /// Registrations whose timestamp is further than this from `now` are refused.
    pub freshness: u64,
    pub flow_idle: u64,
    pub deployment_key: Key,
    pub groups: Vec<GroupConfig>,
}

impl ProxyConfig {
    /// Defaults matching docs/config.md's example, for proxy `id` in `cluster`.
    pub fn new(id: ProxyId, cluster: u32, deployment_key: Key) -> Self {
        ProxyConfig {
            id,
            cluster,
            k_raps: 4,
            max_peers: 1024,
            max_groups: 4096,
            max_targets_per_group: 64,
            max_japs_per_group: 64,
            max_flows: 16384,
            max_pending: 256,
            tx_queue: 256,
            heartbeat: SEC,
            peer_dead: 3500 * MS,
            watch_clusters: 2,
            target_ping: 2 * SEC,
            target_rise: 2,
            target_fall: 3,
            passive_timeout: 500 * MS,
            cache_ttl: 3600 * SEC,
            lookup_timeout: 300 * MS,
            rtt_probe: 30 * SEC,
            freshness: 30 * SEC,
            flow_idle: 120 * SEC,
            deployment_key,
            groups: Vec::new(),
        }
    }
}
