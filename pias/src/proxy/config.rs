//! What one proxy is told at start: its sizes, timers, keys and groups
//! (`ProxyConfig`), and how a group picks its JAPs (`Policy`).

use crate::addr::{Group, Ipv4Prefix};
use crate::config::{Capacity, Config, Timers};
use crate::time::{MS, SEC};
use crate::wire::{Key, ProxyId};
use alloc::vec::Vec;

/// How a group's packets are spread over its JAPs. The RAP ranks the JAPs it
/// returns by it, and the IAP applies the same choice per client to its cached
/// list (`select::pick`), so a client's flow stays on one JAP. Written in
/// snake case in the config (`proximity`, `load`, `random`, `client_hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The JAP nearest the client's IAP.
    Proximity,
    /// Clients spread over the JAPs in proportion to their members' weights,
    /// each client always to the same JAP (weighted rendezvous hashing).
    Load,
    /// Any JAP, at random, but the same one for a client at one IAP.
    Random,
    /// A JAP chosen by the client's address, the same from every IAP (affinity).
    ClientHash,
}

/// How one group's JAPs are chosen and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    /// How its packets are spread over its JAPs.
    pub policy: Policy,
    /// Initial count-report band, percent.
    pub band_pct: u8,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            policy: Policy::Proximity,
            band_pct: 10,
        }
    }
}

/// A group configured by name, with its own key (the simulator's groups, and
/// per-group policy overrides in a deployment).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The group's anycast transport address.
    pub group: Group,
    /// Key of the group's join/leave/ping messages.
    pub key: Key,
    /// How its packets are spread over its JAPs.
    pub policy: Policy,
    /// Initial count-report band, percent.
    pub band_pct: u8,
}

/// Sizes and timers of one proxy. Durations are in µs (`time::MS`, `time::SEC`).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This proxy's id (not 0).
    pub id: ProxyId,
    /// Its cluster (POP).
    pub cluster: u32,
    /// RAPs per group (at most `MAX_K`).
    pub k_raps: usize,
    /// Other proxies of the deployment it can know.
    pub max_peers: usize,
    /// Peers it keeps state for (life, replay window, coordinate, damping):
    /// those it watches, talks to, or believes down; at most the roster. The
    /// default holds the whole roster of the largest deployment (a RAP of a
    /// group with a JAP at every proxy hears from all of them); a simulation
    /// of thousands of proxies in one process sets it lower where it can.
    /// Beyond it the least recently heard peer silent for `freshness` is
    /// forgotten (it is then up and unheard, as every roster member starts);
    /// with none to forget, a new peer is refused (counted).
    pub max_peer_state: usize,
    /// Groups it can hold as JAP, as RAP and in its IAP cache (each).
    pub max_groups: usize,
    /// Targets of one group it can hold as JAP.
    pub max_targets_per_group: usize,
    /// Targets over all its groups (one pool, reserved at start).
    pub max_targets: usize,
    /// JAPs of one group it can hold as RAP.
    pub max_japs_per_group: usize,
    /// JAP entries over all groups it is RAP for (one pool, reserved at start).
    pub max_rap_entries: usize,
    /// Client flows it can hold as JAP.
    pub max_flows: usize,
    /// Lookups in progress at once as IAP.
    pub max_pending: usize,
    /// Datagrams waiting for `poll_transmit`.
    pub tx_queue: usize,
    /// Heartbeat period to the proxies watching this one.
    pub heartbeat: u64,
    /// Silence after which a watched proxy is declared down.
    pub peer_dead: u64,
    /// Declarations of one peer's death that it refuted, each doubling the
    /// silence needed to declare it again (damps partial partitions).
    pub max_flap_doublings: u8,
    /// Clusters each cluster watches besides itself.
    pub watch_clusters: usize,
    /// Health-check period of a target.
    pub target_ping: u64,
    /// Answers in a row that bring a down target back.
    pub target_rise: u8,
    /// Unanswered pings in a row that make a target down.
    pub target_fall: u8,
    /// A delivered packet with no reply within this time triggers an early ping.
    pub passive_timeout: u64,
    /// How long an IAP keeps a group's JAP list.
    pub cache_ttl: u64,
    /// How long an IAP remembers that no RAP knows a member of a group (no
    /// lookup for it meanwhile).
    pub negative_ttl: u64,
    /// Wait for a RAP's answer before asking the next.
    pub lookup_timeout: u64,
    /// Period of the RTT probes behind the coordinates.
    pub rtt_probe: u64,
    /// RTT probes sent a second apart after a start (the first a second
    /// after it), before the `rtt_probe` period takes over: a fresh
    /// coordinate means nothing, so proximity then works within seconds. 0:
    /// the first probe goes out a quarter period after the start.
    pub rtt_warmup_probes: u8,
    /// Registrations whose timestamp is further than this from `now` are
    /// refused, and so are proxy messages whose sequence number (the sender's
    /// clock) is older than this when their sender's state is made afresh:
    /// the proxies' and targets' clocks must agree within it.
    pub freshness: u64,
    /// Registrations per second the replay cache is sized for (over `2 ×
    /// freshness`); past it joins are refused with `Capacity`, never replayable.
    pub join_rate: u32,
    /// An idle UDP flow is forgotten after this (RFC 4787 REQ-5: at least
    /// 2 minutes; 5 recommended).
    pub flow_idle_udp: u64,
    /// An idle TCP flow is forgotten after this (RFC 5382 REQ-5: an established
    /// connection at least 2 h 4 min); the I/O layer ends closed ones sooner
    /// with `Proxy::end_flow`.
    pub flow_idle_tcp: u64,
    /// First wait for a RAP's acknowledgement of a count report (doubles per retry).
    pub report_retry: u64,
    /// Period at which a JAP re-sends its counts to its RAPs (soft state).
    pub report_refresh: u64,
    /// A RAP forgets a JAP's count not refreshed for this long.
    pub report_expiry: u64,
    /// The deployment's key (proxy-to-proxy messages).
    pub deployment_key: Key,
    /// Groups configured one by one (their own key and policy); they win
    /// over the derived groups below.
    pub groups: Vec<GroupConfig>,
    /// The deployment's group secret: any group inside `anycast` has the key
    /// `keys::group_key(secret, group)` and the policy `default_policy`.
    /// None: only `groups` are served.
    pub group_secret: Option<Key>,
    /// The anycast prefixes whose every address and port is a derived group.
    pub anycast: Vec<Ipv4Prefix>,
    /// Policy of the derived groups.
    pub default_policy: GroupPolicy,
}

impl ProxyConfig {
    /// Defaults for proxy `id` in `cluster`: the timers and capacities are
    /// `config::Timers::default()` and `config::Capacity::default()` (the
    /// example config's, the one set of defaults); no derived groups.
    pub fn new(id: ProxyId, cluster: u32, deployment_key: Key) -> Self {
        let mut cfg = ProxyConfig {
            id,
            cluster,
            k_raps: 4,
            // Set from `Capacity` below.
            max_peers: 0,
            max_peer_state: 20_000,
            max_groups: 0,
            max_targets_per_group: 0,
            max_targets: 16_384,
            max_japs_per_group: 64,
            max_rap_entries: 16_384,
            max_flows: 0,
            max_pending: 256,
            tx_queue: 256,
            // Set from `Timers` below.
            heartbeat: 0,
            peer_dead: 0,
            max_flap_doublings: 6,
            watch_clusters: 2,
            target_ping: 0,
            target_rise: 0,
            target_fall: 0,
            passive_timeout: 500 * MS,
            cache_ttl: 0,
            negative_ttl: SEC,
            lookup_timeout: 300 * MS,
            rtt_probe: 0,
            rtt_warmup_probes: 20,
            freshness: 30 * SEC,
            join_rate: 100,
            flow_idle_udp: 0,
            flow_idle_tcp: 0,
            report_retry: SEC,
            report_refresh: 30 * SEC,
            report_expiry: 100 * SEC,
            deployment_key,
            groups: Vec::new(),
            group_secret: None,
            anycast: Vec::new(),
            default_policy: GroupPolicy::default(),
        };
        cfg.set_capacity(&Capacity::default());
        cfg.set_timers(&Timers::default());
        cfg
    }

    /// The proxy an appliance's boot config describes: its id and cluster,
    /// capacities, timers, keys, anycast prefixes and group policies (the
    /// fields the config does not name keep `new`'s defaults).
    pub fn from_config(c: &Config) -> Self {
        let d = &c.deployment;
        let mut cfg = ProxyConfig::new(c.node.id, c.node.cluster, d.key.clone());
        cfg.set_capacity(&c.capacity);
        cfg.set_timers(&c.timers);
        cfg.group_secret = Some(d.group_secret.clone());
        cfg.anycast = c.anycast.prefixes.iter().copied().collect();
        cfg.default_policy = GroupPolicy {
            policy: d.policy,
            band_pct: d.band_pct,
        };
        cfg.groups = d
            .groups
            .iter()
            .map(|o| GroupConfig {
                group: o.group,
                key: crate::keys::group_key(&d.group_secret, &o.group),
                policy: o.policy,
                band_pct: o.band_pct,
            })
            .collect();
        cfg
    }

    /// Table sizes from the config's `capacity`.
    fn set_capacity(&mut self, c: &Capacity) {
        self.max_peers = c.peers as usize;
        self.max_groups = c.groups as usize;
        self.max_targets_per_group = c.targets_per_group as usize;
        self.max_flows = c.flows as usize;
    }

    /// Intervals and thresholds from the config's `timers` (ms and s to µs).
    /// The TCP transitory idle time is the NAT's, not the core's.
    fn set_timers(&mut self, t: &Timers) {
        let ms = |v: u32| u64::from(v) * MS;
        let s = |v: u32| u64::from(v) * SEC;
        self.heartbeat = ms(t.heartbeat_ms);
        self.peer_dead = ms(t.peer_dead_ms);
        self.target_ping = ms(t.target_ping_ms);
        self.target_rise = t.target_rise;
        self.target_fall = t.target_fall;
        self.cache_ttl = s(t.iap_cache_ttl_s);
        self.rtt_probe = ms(t.rtt_probe_ms);
        self.flow_idle_udp = s(t.flow_udp_idle_s);
        self.flow_idle_tcp = s(t.flow_tcp_idle_s);
    }

    /// How long a flow of `g` may be idle.
    pub fn flow_idle(&self, g: &Group) -> u64 {
        match g.transport {
            crate::addr::Transport::Udp => self.flow_idle_udp,
            crate::addr::Transport::Tcp => self.flow_idle_tcp,
        }
    }

    /// The period of the idle-flow sweep: half the shorter idle time.
    pub fn sweep_period(&self) -> u64 {
        (self.flow_idle_udp.min(self.flow_idle_tcp) / 2).max(1)
    }

    /// The policy of group `g`, if this deployment serves it (cheap: no key
    /// is derived).
    pub fn group_policy(&self, g: &Group) -> Option<GroupPolicy> {
        if let Some(c) = self.groups.iter().find(|c| c.group == *g) {
            return Some(GroupPolicy {
                policy: c.policy,
                band_pct: c.band_pct,
            });
        }
        self.derives(g).then_some(self.default_policy)
    }

    /// The key of group `g`'s target messages, if this deployment serves it.
    pub fn group_key(&self, g: &Group) -> Option<Key> {
        if let Some(c) = self.groups.iter().find(|c| c.group == *g) {
            return Some(c.key.clone());
        }
        match &self.group_secret {
            Some(secret) if self.derives(g) => Some(crate::keys::group_key(secret, g)),
            _ => None,
        }
    }

    /// Whether `g` is a derived group: a secret is set and its address lies
    /// in an anycast prefix.
    fn derives(&self, g: &Group) -> bool {
        self.group_secret.is_some() && self.anycast.iter().any(|p| p.contains(g.ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4, Transport};
    use crate::config::{GroupOverride, ProxyEntry};

    /// Every mapped field of a config in which each differs from its default.
    #[test]
    fn from_config_maps_every_field() {
        let mut c = Config::example();
        c.node.id = 7;
        c.node.cluster = 3;
        c.deployment.proxies = alloc::vec![ProxyEntry {
            id: 7,
            cluster: 3,
            address: Ipv4([198, 18, 0, 2]),
        }];
        c.capacity = Capacity {
            peers: 11,
            groups: 12,
            targets_per_group: 13,
            flows: 14,
        };
        c.timers = Timers {
            heartbeat_ms: 250,
            peer_dead_ms: 900,
            target_ping_ms: 750,
            target_rise: 4,
            target_fall: 5,
            iap_cache_ttl_s: 60,
            rtt_probe_ms: 5000,
            flow_udp_idle_s: 121,
            flow_tcp_idle_s: 61,
            flow_tcp_transitory_s: 30,
        };
        c.deployment.key = Key(core::array::from_fn(|i| i as u8 * 3));
        c.deployment.group_secret = Key(core::array::from_fn(|i| i as u8 * 5 + 1));
        c.deployment.policy = Policy::ClientHash;
        c.deployment.band_pct = 33;
        let g: Group = "203.0.113.10:53/udp".parse().unwrap();
        c.deployment
            .groups
            .push(GroupOverride {
                group: g,
                policy: Policy::Load,
                band_pct: 44,
            })
            .unwrap();
        c.anycast
            .prefixes
            .push("192.0.2.0/24".parse().unwrap())
            .unwrap();
        c.validate().unwrap();

        let p = ProxyConfig::from_config(&c);
        assert_eq!((p.id, p.cluster), (7, 3));
        assert_eq!(p.max_peers, 11);
        assert_eq!(p.max_groups, 12);
        assert_eq!(p.max_targets_per_group, 13);
        assert_eq!(p.max_flows, 14);
        assert_eq!(p.heartbeat, 250 * MS);
        assert_eq!(p.peer_dead, 900 * MS);
        assert_eq!(p.target_ping, 750 * MS);
        assert_eq!((p.target_rise, p.target_fall), (4, 5));
        assert_eq!(p.cache_ttl, 60 * SEC);
        assert_eq!(p.rtt_probe, 5 * SEC);
        assert_eq!(p.flow_idle_udp, 121 * SEC);
        assert_eq!(p.flow_idle_tcp, 61 * SEC);
        assert_eq!(p.deployment_key, c.deployment.key);
        assert_eq!(p.group_secret, Some(c.deployment.group_secret.clone()));
        assert_eq!(p.anycast.as_slice(), c.anycast.prefixes.as_slice());
        assert_eq!(
            p.default_policy,
            GroupPolicy {
                policy: Policy::ClientHash,
                band_pct: 33
            }
        );
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].group, g);
        assert_eq!(
            p.groups[0].key,
            crate::keys::group_key(&c.deployment.group_secret, &g)
        );
        assert_eq!(
            (p.groups[0].policy, p.groups[0].band_pct),
            (Policy::Load, 44)
        );
        // The override wins; any other group of the prefixes is derived.
        assert_eq!(
            p.group_policy(&g),
            Some(GroupPolicy {
                policy: Policy::Load,
                band_pct: 44
            })
        );
        let other = Group {
            ip: Ipv4([192, 0, 2, 1]),
            port: 80,
            transport: Transport::Tcp,
        };
        assert_eq!(p.group_policy(&other), Some(p.default_policy));
        assert_eq!(
            p.group_key(&other),
            Some(crate::keys::group_key(&c.deployment.group_secret, &other))
        );
    }

    /// `new`'s timers and capacities are the config defaults (one source):
    /// the example config maps to exactly them.
    #[test]
    fn new_takes_the_config_defaults() {
        let d = ProxyConfig::new(1, 1, Key([1; 32]));
        let e = ProxyConfig::from_config(&Config::example());
        assert_eq!(d.max_peers, Capacity::default().peers as usize);
        assert_eq!(
            d.flow_idle_tcp,
            u64::from(Timers::default().flow_tcp_idle_s) * SEC
        );
        assert_eq!(
            (
                d.max_peers,
                d.max_groups,
                d.max_targets_per_group,
                d.max_flows
            ),
            (
                e.max_peers,
                e.max_groups,
                e.max_targets_per_group,
                e.max_flows
            )
        );
        assert_eq!(
            (
                d.heartbeat,
                d.peer_dead,
                d.target_ping,
                d.target_rise,
                d.target_fall,
                d.cache_ttl,
                d.rtt_probe,
                d.flow_idle_udp,
                d.flow_idle_tcp
            ),
            (
                e.heartbeat,
                e.peer_dead,
                e.target_ping,
                e.target_rise,
                e.target_fall,
                e.cache_ttl,
                e.rtt_probe,
                e.flow_idle_udp,
                e.flow_idle_tcp
            )
        );
        assert_eq!(d.heartbeat, 150 * MS);
        assert_eq!(d.flow_idle_udp, 300 * SEC);
    }
}
