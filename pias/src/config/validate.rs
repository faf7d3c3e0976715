//! Checking a config: every rule of docs/config.md, the first broken one
//! returned with the path of its field (`Config::validate`).

use super::*;
use core::fmt;

/// A field path such as `interfaces[0].gateway`, at most 48 bytes (longer
/// paths are cut short).
pub type FieldPath = String<48>;

/// The first problem `Config::validate` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: the path of the offending field, as written in TOML.
    pub field: FieldPath,
    /// What is wrong, including the allowed range where there is one.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub(super) fn err(field: fmt::Arguments, reason: &'static str) -> ConfigError {
    let mut path = FieldPath::new();
    // A path longer than 48 bytes is cut short; the reason still names the problem.
    let _ = path.write_fmt(field);
    ConfigError {
        field: path,
        reason,
    }
}

pub(super) fn check(
    ok: bool,
    field: fmt::Arguments,
    reason: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(err(field, reason))
    }
}

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

pub(super) fn in_range<T: PartialOrd>(v: T, lo: T, hi: T) -> bool {
    v >= lo && v <= hi
}

impl Config {
    /// Checks every rule of docs/config.md; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        check(n.id != 0, format_args!("node.id"), "must not be 0")?;
        check(
            is_name(&n.name),
            format_args!("node.name"),
            "must be 1..=32 characters of A-Z a-z 0-9 . _ -",
        )?;

        check(
            !self.interfaces.is_empty(),
            format_args!("interfaces"),
            "at least one interface is required",
        )?;
        for (i, ifc) in self.interfaces.iter().enumerate() {
            self.validate_interface(i, ifc)?;
        }

        let prefixes = &self.anycast.prefixes;
        check(
            !prefixes.is_empty(),
            format_args!("anycast.prefixes"),
            "at least one anycast prefix is required",
        )?;
        for (i, p) in prefixes.iter().enumerate() {
            check(
                in_range(p.len, 8, 32),
                format_args!("anycast.prefixes[{i}]"),
                "prefix length must be 8..=32",
            )?;
            check(
                !p.has_host_bits(),
                format_args!("anycast.prefixes[{i}]"),
                "host bits are set (write the network address)",
            )?;
            check(
                !p.addr.is_multicast_or_broadcast() && !p.addr.is_unspecified(),
                format_args!("anycast.prefixes[{i}]"),
                "must be a unicast range",
            )?;
            check(
                !prefixes.iter().take(i).any(|q| p.overlaps(*q)),
                format_args!("anycast.prefixes[{i}]"),
                "overlaps an earlier anycast prefix",
            )?;
            check(
                !self.interfaces.iter().any(|ifc| p.overlaps(ifc.address)),
                format_args!("anycast.prefixes[{i}]"),
                "overlaps the subnet of an interface",
            )?;
        }

        let ports = &self.ports;
        check(
            ports.management != 0,
            format_args!("ports.management"),
            "must not be 0",
        )?;
        check(
            ports.registration != 0,
            format_args!("ports.registration"),
            "must not be 0",
        )?;
        check(
            ports.proxy != 0,
            format_args!("ports.proxy"),
            "must not be 0",
        )?;
        check(
            ports.proxy != ports.management,
            format_args!("ports.proxy"),
            "must differ from ports.management",
        )?;
        for (name, port) in [
            ("ports.management", Some(ports.management)),
            ("ports.registration", Some(ports.registration)),
            ("ports.proxy", Some(ports.proxy)),
            ("ports.metrics", ports.metrics),
        ] {
            check(
                port != Some(u16::MAX),
                format_args!("{name}"),
                "must be below 65535 (the NAT's ports lie above every service port)",
            )?;
        }
        if let Some(m) = ports.metrics {
            check(m != 0, format_args!("ports.metrics"), "must not be 0")?;
            check(
                m != BGP_PORT,
                format_args!("ports.metrics"),
                "must not be 179 (BGP's port)",
            )?;
        }

        check(
            !self.management.allow.is_empty(),
            format_args!("management.allow"),
            "list at least one source prefix (e.g. the operator's subnet)",
        )?;

        let c = &self.capacity;
        check(
            in_range(c.peers, 1, MAX_PEERS),
            format_args!("capacity.peers"),
            "must be 1..=20000",
        )?;
        check(
            in_range(c.groups, 1, MAX_GROUPS),
            format_args!("capacity.groups"),
            "must be 1..=1000000",
        )?;
        check(
            in_range(c.targets_per_group, 1, MAX_TARGETS_PER_GROUP),
            format_args!("capacity.targets_per_group"),
            "must be 1..=65535",
        )?;
        check(
            in_range(c.flows, 1, MAX_FLOWS),
            format_args!("capacity.flows"),
            "must be 1..=4000000",
        )?;

        let t = &self.timers;
        check(
            in_range(t.heartbeat_ms, 10, 60_000),
            format_args!("timers.heartbeat_ms"),
            "must be 10..=60000",
        )?;
        check(
            t.peer_dead_ms > t.heartbeat_ms.saturating_mul(2),
            format_args!("timers.peer_dead_ms"),
            "must exceed 2 x timers.heartbeat_ms",
        )?;
        check(
            in_range(t.target_ping_ms, 10, 600_000),
            format_args!("timers.target_ping_ms"),
            "must be 10..=600000",
        )?;
        check(
            in_range(t.target_rise, 1, 10),
            format_args!("timers.target_rise"),
            "must be 1..=10",
        )?;
        check(
            in_range(t.target_fall, 1, 10),
            format_args!("timers.target_fall"),
            "must be 1..=10",
        )?;
        check(
            in_range(t.iap_cache_ttl_s, 1, 86_400),
            format_args!("timers.iap_cache_ttl_s"),
            "must be 1..=86400",
        )?;
        check(
            in_range(t.rtt_probe_ms, 100, 3_600_000),
            format_args!("timers.rtt_probe_ms"),
            "must be 100..=3600000",
        )?;
        check(
            in_range(t.flow_udp_idle_s, 120, 86_400),
            format_args!("timers.flow_udp_idle_s"),
            "must be 120..=86400 (RFC 4787: at least 2 minutes)",
        )?;
        check(
            in_range(t.flow_tcp_idle_s, 60, 604_800),
            format_args!("timers.flow_tcp_idle_s"),
            "must be 60..=604800 (RFC 5382 recommends at least 7440)",
        )?;
        check(
            in_range(t.flow_tcp_transitory_s, 1, t.flow_tcp_idle_s),
            format_args!("timers.flow_tcp_transitory_s"),
            "must be 1..=timers.flow_tcp_idle_s",
        )?;
        self.validate_deployment()?;
        self.validate_bgp()
    }

    fn validate_deployment(&self) -> Result<(), ConfigError> {
        let d = &self.deployment;
        let m = &self.management.key;
        if let Some(why) = crate::keys::weakness(m) {
            return Err(err(format_args!("management.key"), why));
        }
        check(
            *m != d.key && *m != d.group_secret,
            format_args!("management.key"),
            "weak key: equal to a deployment key (use an independent key)",
        )?;
        if let Some(why) = crate::keys::weakness(&d.key) {
            return Err(err(format_args!("deployment.key"), why));
        }
        if let Some(why) = crate::keys::weakness(&d.group_secret) {
            return Err(err(format_args!("deployment.group_secret"), why));
        }
        check(
            d.group_secret != d.key,
            format_args!("deployment.group_secret"),
            "weak key: equal to deployment.key (use two independent keys)",
        )?;
        check(
            in_range(d.band_pct, 1, 100),
            format_args!("deployment.band_pct"),
            "must be 1..=100",
        )?;
        for (i, o) in d.groups.iter().enumerate() {
            check(
                self.anycast.prefixes.iter().any(|p| p.contains(o.group.ip)),
                format_args!("deployment.groups[{i}].group"),
                "must lie inside an anycast prefix",
            )?;
            check(
                o.group.port != 0,
                format_args!("deployment.groups[{i}].group"),
                "port must not be 0",
            )?;
            check(
                !d.groups.iter().take(i).any(|e| e.group == o.group),
                format_args!("deployment.groups[{i}].group"),
                "is overridden twice",
            )?;
            check(
                in_range(o.band_pct, 1, 100),
                format_args!("deployment.groups[{i}].band_pct"),
                "must be 1..=100",
            )?;
        }

        let proxies = &d.proxies;
        check(
            !proxies.is_empty(),
            format_args!("deployment.proxies"),
            "list every proxy of the deployment, this one included",
        )?;
        check(
            proxies.len() <= MAX_PEERS as usize,
            format_args!("deployment.proxies"),
            "more than 20000 proxies",
        )?;
        check(
            proxies.len() - 1 <= self.capacity.peers as usize,
            format_args!("capacity.peers"),
            "fewer than the deployment's other proxies (deployment.proxies)",
        )?;
        let mut prev: Option<ProxyId> = None;
        for (i, p) in proxies.iter().enumerate() {
            check(
                p.id != 0,
                format_args!("deployment.proxies[{i}].id"),
                "must not be 0",
            )?;
            if let Some(prev) = prev {
                check(
                    p.id != prev,
                    format_args!("deployment.proxies[{i}].id"),
                    "two proxies have this id",
                )?;
                check(
                    p.id > prev,
                    format_args!("deployment.proxies[{i}].id"),
                    "proxies must be sorted by id (pias-image sorts them)",
                )?;
            }
            prev = Some(p.id);
            let a = p.address;
            check(
                !a.is_unspecified() && !a.is_multicast_or_broadcast() && a.0[0] != 127,
                format_args!("deployment.proxies[{i}].address"),
                "must be a unicast address",
            )?;
            check(
                !self.anycast.prefixes.iter().any(|q| q.contains(a)),
                format_args!("deployment.proxies[{i}].address"),
                "lies inside an anycast prefix",
            )?;
        }
        // Unique addresses: sort a copy (O(n log n) for 20,000 proxies), then
        // name the later of the first duplicate pair found.
        let mut addrs: alloc::vec::Vec<u32> = proxies.iter().map(|p| p.address.to_u32()).collect();
        addrs.sort_unstable();
        if let Some(w) = addrs.windows(2).find(|w| w[0] == w[1]) {
            let dup = Ipv4::from_u32(w[0]);
            let i = proxies
                .iter()
                .enumerate()
                .filter(|(_, p)| p.address == dup)
                .nth(1)
                .map_or(0, |(i, _)| i);
            return Err(err(
                format_args!("deployment.proxies[{i}].address"),
                "two proxies have this address",
            ));
        }

        let me = self.node.id;
        let Ok(i) = proxies.binary_search_by_key(&me, |p| p.id) else {
            return Err(err(
                format_args!("deployment.proxies"),
                "does not list this node (node.id)",
            ));
        };
        check(
            proxies[i].cluster == self.node.cluster,
            format_args!("deployment.proxies[{i}].cluster"),
            "differs from node.cluster",
        )?;
        check(
            self.interfaces
                .first()
                .is_some_and(|ifc| ifc.address.addr == proxies[i].address),
            format_args!("deployment.proxies[{i}].address"),
            "differs from this node's interfaces[0].address",
        )?;
        Ok(())
    }

    /// Every proxy of the deployment (this one included) as the proxy core's
    /// roster takes them.
    pub fn peers(&self) -> alloc::vec::Vec<PeerInfo> {
        self.deployment
            .proxies
            .iter()
            .map(|p| PeerInfo {
                id: p.id,
                cluster: p.cluster,
            })
            .collect()
    }

    /// The unicast address of proxy `id`, if the deployment lists it: a binary
    /// search of the id-sorted list (validation keeps it sorted), cheap enough
    /// for every proxy message.
    pub fn proxy_address(&self, id: ProxyId) -> Option<Ipv4> {
        let proxies = &self.deployment.proxies;
        proxies
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .and_then(|i| proxies.get(i))
            .map(|p| p.address)
    }

    fn validate_interface(&self, i: usize, ifc: &Interface) -> Result<(), ConfigError> {
        check(
            is_name(&ifc.name),
            format_args!("interfaces[{i}].name"),
            "must be 1..=16 characters of A-Z a-z 0-9 . _ -",
        )?;
        for other in self.interfaces.iter().take(i) {
            check(
                other.name != ifc.name,
                format_args!("interfaces[{i}].name"),
                "two interfaces have this name",
            )?;
        }
        let a = ifc.address;
        check(
            in_range(a.len, 1, 32),
            format_args!("interfaces[{i}].address"),
            "subnet length must be 1..=32",
        )?;
        check(
            !a.addr.is_unspecified() && !a.addr.is_multicast_or_broadcast() && a.addr.0[0] != 127,
            format_args!("interfaces[{i}].address"),
            "must be a unicast address",
        )?;
        if a.len <= 30 {
            let host = a.addr.to_u32() & !a.mask();
            check(
                host != 0 && host != !a.mask(),
                format_args!("interfaces[{i}].address"),
                "is the network or broadcast address of its subnet",
            )?;
        }
        if let Some(gw) = ifc.gateway {
            check(
                a.contains(gw),
                format_args!("interfaces[{i}].gateway"),
                "must lie inside the interface's subnet",
            )?;
            check(
                gw != a.addr,
                format_args!("interfaces[{i}].gateway"),
                "must differ from the interface's address",
            )?;
        }
        check(
            in_range(ifc.mtu, 576, 1500),
            format_args!("interfaces[{i}].mtu"),
            "must be 576..=1500",
        )?;
        Ok(())
    }
}
