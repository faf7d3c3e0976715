//! The `[bgp]` section: the appliance announces its anycast prefixes to the
//! POP's routers over single-hop BGP, only while it can serve.

use super::{check, in_range, Config, ConfigError, MAX_ANYCAST_PREFIXES};
use crate::addr::{Ipv4, Ipv4Prefix};
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// Routers one appliance may peer with.
pub const MAX_BGP_NEIGHBOURS: usize = 4;
/// Longest drain delay (10 min).
pub const MAX_DRAIN_DELAY_MS: u32 = 600_000;

/// BGP toward the POP's routers. Absent (the default): no BGP, the prefixes
/// reach the appliance by static routes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Bgp {
    /// Our AS number (1..=4294967295); required when there are neighbours.
    pub local_as: u32,
    /// BGP identifier; absent: the first interface's address.
    pub router_id: Option<Ipv4>,
    /// The routers to peer with, 0..=4: each on the first interface's subnet
    /// (single hop, checked by GTSM: TTL 255 both ways).
    pub neighbours: Vec<Neighbour, MAX_BGP_NEIGHBOURS>,
    /// What to announce: each an anycast prefix or inside one. Empty: every
    /// anycast prefix.
    pub prefixes: Vec<Ipv4Prefix, MAX_ANYCAST_PREFIXES>,
    /// On drain (and before a clean shutdown): how long the route stays
    /// announced with GRACEFUL_SHUTDOWN (65535:0, RFC 8326) so that routers
    /// move traffic away before it is withdrawn, in ms (0..=600000).
    pub drain_delay_ms: u32,
    /// Health checks (one per second) that must pass in a row before the
    /// route is announced, 1..=10.
    pub rise: u8,
    /// Health checks that must fail in a row before it is withdrawn, 1..=10.
    pub fall: u8,
    /// Whether at least one other proxy outside the cluster (a RAP, say) must
    /// be heard from for the appliance to count as healthy. When false, an
    /// appliance that hears nobody outside its cluster is "degraded" and
    /// announces with `degraded_prepend` / `degraded_med` instead.
    pub require_remote: bool,
    /// Extra copies of `local_as` in the AS path while degraded (0..=32).
    pub degraded_prepend: u8,
    /// MED while degraded (none: no MED).
    pub degraded_med: Option<u32>,
    /// Seconds between connection attempts to a neighbour, 1..=600.
    pub connect_retry_s: u16,
}

/// One router.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    /// Its address on the first interface's subnet.
    pub address: Ipv4,
    /// Its AS number (eBGP when it differs from `local_as`).
    pub remote_as: u32,
    /// Proposed hold time in seconds: 0 (no keepalives) or 3..=65535.
    #[serde(default = "default_hold")]
    pub hold_time_s: u16,
    /// Wait for the router to connect instead of connecting to it.
    #[serde(default)]
    pub passive: bool,
    /// Run single-hop BFD (RFC 5881) with it.
    #[serde(default)]
    pub bfd: bool,
}

fn default_hold() -> u16 {
    90
}

impl Default for Bgp {
    fn default() -> Bgp {
        Bgp {
            local_as: 0,
            router_id: None,
            neighbours: Vec::new(),
            prefixes: Vec::new(),
            drain_delay_ms: 5_000,
            rise: 2,
            fall: 2,
            require_remote: false,
            degraded_prepend: 0,
            degraded_med: None,
            connect_retry_s: 5,
        }
    }
}

impl Bgp {
    /// Whether BGP runs at all.
    pub fn enabled(&self) -> bool {
        !self.neighbours.is_empty()
    }
}

impl Config {
    /// The prefixes BGP announces: `bgp.prefixes`, or every anycast prefix.
    pub fn bgp_prefixes(&self) -> Vec<Ipv4Prefix, MAX_ANYCAST_PREFIXES> {
        if self.bgp.prefixes.is_empty() {
            self.anycast.prefixes.clone()
        } else {
            self.bgp.prefixes.clone()
        }
    }

    /// The BGP identifier: `bgp.router_id` or the first interface's address.
    pub fn bgp_router_id(&self) -> Ipv4 {
        self.bgp
            .router_id
            .or_else(|| self.interfaces.first().map(|i| i.address.addr))
            .unwrap_or_default()
    }

    pub(super) fn validate_bgp(&self) -> Result<(), ConfigError> {
        let b = &self.bgp;
        if !b.enabled() {
            return Ok(());
        }
        check(
            b.local_as != 0,
            format_args!("bgp.local_as"),
            "must be 1..=4294967295 when there are neighbours",
        )?;
        if let Some(id) = b.router_id {
            check(
                !id.is_unspecified() && !id.is_multicast_or_broadcast(),
                format_args!("bgp.router_id"),
                "must be a unicast address",
            )?;
        }
        let subnet = self.interfaces.first().map(|i| i.address);
        for (i, n) in b.neighbours.iter().enumerate() {
            check(
                subnet.is_some_and(|s| s.contains(n.address) && s.addr != n.address),
                format_args!("bgp.neighbours[{i}].address"),
                "must be another address on the first interface's subnet (single-hop BGP)",
            )?;
            check(
                !b.neighbours.iter().take(i).any(|m| m.address == n.address),
                format_args!("bgp.neighbours[{i}].address"),
                "two neighbours have this address",
            )?;
            check(
                n.remote_as != 0,
                format_args!("bgp.neighbours[{i}].remote_as"),
                "must be 1..=4294967295",
            )?;
            check(
                n.hold_time_s == 0 || n.hold_time_s >= 3,
                format_args!("bgp.neighbours[{i}].hold_time_s"),
                "must be 0 or 3..=65535 (RFC 4271)",
            )?;
        }
        for (i, p) in b.prefixes.iter().enumerate() {
            check(
                !p.has_host_bits(),
                format_args!("bgp.prefixes[{i}]"),
                "host bits are set (write the network address)",
            )?;
            check(
                self.anycast
                    .prefixes
                    .iter()
                    .any(|a| a.len <= p.len && a.contains(p.addr)),
                format_args!("bgp.prefixes[{i}]"),
                "must be an anycast prefix or inside one",
            )?;
        }
        check(
            b.drain_delay_ms <= MAX_DRAIN_DELAY_MS,
            format_args!("bgp.drain_delay_ms"),
            "must be 0..=600000",
        )?;
        check(
            in_range(b.rise, 1, 10),
            format_args!("bgp.rise"),
            "must be 1..=10",
        )?;
        check(
            in_range(b.fall, 1, 10),
            format_args!("bgp.fall"),
            "must be 1..=10",
        )?;
        check(
            b.degraded_prepend <= 32,
            format_args!("bgp.degraded_prepend"),
            "must be 0..=32",
        )?;
        check(
            in_range(b.connect_retry_s, 1, 600),
            format_args!("bgp.connect_retry_s"),
            "must be 1..=600",
        )
    }
}
