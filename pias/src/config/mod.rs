//! The boot-time configuration of one appliance, shared by the kernel (which
//! reads it from the postcard blob) and the host tool (which writes it from TOML).
//!
//! Every field is documented for operators in docs/config.md. `validate`
//! returns the first problem as a field path and a reason.

use crate::addr::{Group, Ipv4, Ipv4Prefix};
use crate::ids::{PeerInfo, ProxyId};
use crate::proxy::Policy;
use crate::wire::Key;
use core::fmt::{self, Write as _};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

mod bgp;
pub use self::bgp::{Bgp, Neighbour, MAX_BGP_NEIGHBOURS, MAX_DRAIN_DELAY_MS};

/// Interfaces one config may name.
pub const MAX_INTERFACES: usize = 4;
/// Anycast prefixes one config may name.
pub const MAX_ANYCAST_PREFIXES: usize = 8;
/// Prefixes allowed to use the management port.
pub const MAX_MGMT_ALLOW: usize = 8;
/// Longest node name, in bytes.
pub const NODE_NAME_LEN: usize = 32;
/// Longest interface name, in bytes.
pub const IFACE_NAME_LEN: usize = 16;

// Upper bounds on the capacities (the paper's deployment size and what one
// appliance can reasonably hold).

/// Largest `capacity.peers`: the paper's deployment of 20,000 proxies.
pub const MAX_PEERS: u32 = 20_000;
/// Largest `capacity.groups`: JAP, RAP and IAP-cache entries together.
pub const MAX_GROUPS: u32 = 1_000_000;
/// Largest `capacity.targets_per_group` (65,535, the largest u16).
pub const MAX_TARGETS_PER_GROUP: u32 = 65_535;
/// Largest `capacity.flows` (NAT flow entries).
pub const MAX_FLOWS: u32 = 4_000_000;
/// Per-group policy overrides one config may name (`deployment.groups`).
pub const MAX_GROUP_OVERRIDES: usize = 16;

/// One appliance's whole configuration, as the TOML file and the postcard
/// blob carry it. A decoded `Config` is trusted only after `validate`
/// (`blob::decode` calls it); unknown TOML fields are refused.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Serial console verbosity.
    pub log_level: LogLevel,
    /// What the main loop does with no work: halt until an interrupt or the
    /// next deadline (the default), or keep polling (for latency comparisons).
    pub idle: IdleMode,
    /// Who this appliance is: proxy id, name and cluster.
    pub node: Node,
    /// The network interfaces, 1..=4 with distinct names (the kernel drives
    /// only the first and refuses a config with more).
    pub interfaces: Vec<Interface, MAX_INTERFACES>,
    /// The anycast prefixes the deployment advertises.
    pub anycast: Anycast,
    /// UDP ports of the management, registration and proxy services.
    pub ports: Ports,
    /// Who may use the management port, and whether they may shut it down.
    pub management: Management,
    /// Table sizes for the proxy core.
    pub capacity: Capacity,
    /// Protocol intervals and thresholds for the proxy core.
    pub timers: Timers,
    /// The deployment this proxy belongs to: every proxy, the keys, and the
    /// group policies.
    pub deployment: Deployment,
    /// BGP toward the POP's routers (absent: none).
    #[serde(default)]
    pub bgp: Bgp,
}

/// The deployment: its proxies, its keys and how its groups pick JAPs. Every
/// proxy of a deployment carries the same section (`pias-image deploy`
/// writes them from one file).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Key of the proxy-to-proxy messages (64 hex digits in TOML; not weak).
    #[serde(with = "key_form")]
    pub key: Key,
    /// Secret from which every group's key is derived,
    /// `keys::group_key(group_secret, group)` (64 hex digits in TOML; not weak,
    /// not equal to `key`).
    #[serde(with = "key_form")]
    pub group_secret: Key,
    /// How the groups' packets are spread over their JAPs, unless overridden.
    pub policy: Policy,
    /// Initial count-report band of the groups, percent (1..=100).
    pub band_pct: u8,
    /// Per-group overrides of `policy` and `band_pct` (at most 16, each group
    /// inside an anycast prefix, no group twice).
    #[serde(default)]
    pub groups: Vec<GroupOverride, MAX_GROUP_OVERRIDES>,
    /// Every proxy of the deployment, this one included, sorted by id
    /// (1..=20000 entries; ids non-zero and unique; addresses unique).
    pub proxies: alloc::vec::Vec<ProxyEntry>,
}

/// One proxy of the deployment, as every other proxy knows it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxyEntry {
    /// Its id (its `node.id`).
    pub id: ProxyId,
    /// Its cluster (its `node.cluster`).
    pub cluster: u32,
    /// Its unicast address (its first interface's), where proxy messages go.
    pub address: Ipv4,
}

/// A group whose policy differs from the deployment's default.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupOverride {
    /// The group, "203.0.113.10:53/udp" in TOML.
    #[serde(with = "group_form")]
    pub group: Group,
    /// Its policy.
    pub policy: Policy,
    /// Its initial count-report band, percent (1..=100).
    pub band_pct: u8,
}

/// Keys as 64 hex digits in human-readable forms (TOML), 32 raw bytes in postcard.
mod key_form {
    use crate::keys::{key_from_hex, key_to_hex};
    use crate::wire::Key;
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    pub fn serialize<S: Serializer>(k: &Key, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let hex = key_to_hex(k);
            let text = core::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?;
            s.serialize_str(text)
        } else {
            k.serialize(s)
        }
    }

    struct HexVisitor;

    impl Visitor<'_> for HexVisitor {
        type Value = Key;
        fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            f.write_str("a key as 64 hexadecimal digits")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
            // The text is not echoed: it may be (most of) a real key.
            key_from_hex(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(HexVisitor)
        } else {
            Key::deserialize(d)
        }
    }
}

/// Groups as "a.b.c.d:port/udp" in human-readable forms (TOML), the compact
/// derived form in postcard.
mod group_form {
    use crate::addr::Group;
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    pub fn serialize<S: Serializer>(g: &Group, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(g)
        } else {
            g.serialize(s)
        }
    }

    struct TextVisitor;

    impl Visitor<'_> for TextVisitor {
        type Value = Group;
        fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            f.write_str("a group as \"a.b.c.d:port/udp\" or \"a.b.c.d:port/tcp\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Group, E> {
            v.parse::<Group>()
                .map_err(|e| E::custom(format_args!("{e}: {v:?}")))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Group, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(TextVisitor)
        } else {
            Group::deserialize(d)
        }
    }
}

/// Serial console verbosity, least to most verbose: a level shows its own
/// records and every more severe one (the `log` crate's levels). Written in
/// lowercase in TOML.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only: what stops the appliance or a service.
    Error,
    /// Also warnings: problems the appliance works around.
    Warn,
    /// Also the boot summary, readiness and shutdown lines (the usual setting).
    Info,
    /// Also diagnostic detail.
    Debug,
    /// Everything, the most verbose.
    Trace,
}

/// What the main loop does when it has no work. Written in lowercase in TOML.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdleMode {
    /// Halt the CPU until an interrupt or the next deadline (the default).
    Halt,
    /// Keep polling: lowest latency, but burns a whole core (for latency
    /// comparisons).
    Poll,
}

/// The appliance's identity within the deployment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique, non-zero proxy id within the deployment.
    pub id: u32,
    /// Human-readable name ([A-Za-z0-9._-], 1..=32 bytes).
    pub name: String<NODE_NAME_LEN>,
    /// The anycast cluster (POP) this proxy belongs to.
    pub cluster: u32,
}

/// One network interface: its unicast address, subnet, gateway and MTU.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Name used in logs and status ([A-Za-z0-9._-], 1..=16 bytes).
    pub name: String<IFACE_NAME_LEN>,
    /// Unicast address and subnet length, e.g. "198.18.0.2/24".
    pub address: Ipv4Prefix,
    /// Default gateway; must lie inside the subnet. Absent: on-link only.
    pub gateway: Option<Ipv4>,
    /// IP MTU, 576..=1500.
    pub mtu: u16,
}

/// The anycast address space the deployment serves: groups live here.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Anycast {
    /// Prefixes every proxy advertises, e.g. "203.0.113.0/24": 1..=8, length
    /// 8..=32, no host bits, overlapping neither each other nor an interface
    /// subnet.
    pub prefixes: Vec<Ipv4Prefix, MAX_ANYCAST_PREFIXES>,
}

/// BGP's TCP port, which no service port may take.
pub const BGP_PORT: u16 = 179;

/// The ports the appliance listens on; none may be 0.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// UDP port of the management (status / shutdown) service on the unicast address.
    pub management: u16,
    /// UDP port on anycast addresses where targets join and leave.
    pub registration: u16,
    /// UDP port for proxy-to-proxy messages on the unicast address; must
    /// differ from `management`.
    pub proxy: u16,
    /// TCP port of the Prometheus metrics (HTTP `GET /metrics`) on the
    /// unicast address, served to `management.allow` only; absent: no
    /// metrics. Not 179 (BGP's). The NAT's ports start at 20,000 or above
    /// every service port, whichever is higher.
    #[serde(default)]
    pub metrics: Option<u16>,
}

/// Access to the management service (status and shutdown requests).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Source prefixes allowed to query the management port (1..=8); requests
    /// from anywhere else get no answer and count as `refused_source`.
    pub allow: Vec<Ipv4Prefix, MAX_MGMT_ALLOW>,
    /// Whether an allowed source may shut the appliance down.
    pub allow_shutdown: bool,
    /// Key of the management requests and responses (64 hex digits in TOML;
    /// not weak, not equal to a deployment key): a request is answered only
    /// if its MAC verifies under it, and every answer carries a MAC under it.
    #[serde(with = "key_form")]
    pub key: Key,
}

/// Table sizes for the proxy core, which reserves each table once and then
/// refuses (and counts) rather than grow, so these bound its memory
/// (`ProxyConfig::from_config` maps them). `Default` is the example config's
/// and `ProxyConfig::new`'s: the one set of defaults.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Proxies this node can know (1..=20000).
    pub peers: u32,
    /// Groups held (as JAP, RAP or IAP cache entry) (1..=1000000).
    pub groups: u32,
    /// Targets per group at this JAP (1..=65535).
    pub targets_per_group: u32,
    /// NAT flows (1..=4000000).
    pub flows: u32,
}

/// Protocol intervals (the unit is in each name) and health thresholds for
/// the proxy core (`ProxyConfig::from_config` maps them), and the NAT's idle
/// times. `Default` is the example config's and `ProxyConfig::new`'s: the
/// one set of defaults.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Timers {
    /// Proxy heartbeat interval (10..=60000 ms).
    pub heartbeat_ms: u32,
    /// Silence after which a peer is declared down (> 2 x heartbeat_ms).
    pub peer_dead_ms: u32,
    /// Target health ping interval (10..=600000 ms).
    pub target_ping_ms: u32,
    /// Good answers before a suspect target is up again (1..=10).
    pub target_rise: u8,
    /// Missed answers before a target is down (1..=10).
    pub target_fall: u8,
    /// Lifetime of an IAP's cached JAP list (1..=86400 s).
    pub iap_cache_ttl_s: u32,
    /// Interval of RTT probes to other clusters (100..=3600000 ms).
    pub rtt_probe_ms: u32,
    /// An idle UDP flow is forgotten after this (120..=86400 s; RFC 4787
    /// REQ-5: at least 2 minutes, 5 recommended).
    pub flow_udp_idle_s: u32,
    /// An idle established TCP flow is forgotten after this (60..=604800 s;
    /// RFC 5382 REQ-5 asks for at least 7440, 2 h 4 min).
    pub flow_tcp_idle_s: u32,
    /// A TCP flow being opened or closed (transitory) is forgotten after this
    /// much idleness (1..=flow_tcp_idle_s; RFC 5382 REQ-5: 240 s at least).
    pub flow_tcp_transitory_s: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            peers: 1024,
            groups: 4096,
            targets_per_group: 64,
            flows: 16_384,
        }
    }
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heartbeat_ms: 150,
            peer_dead_ms: 600,
            target_ping_ms: 2000,
            target_rise: 2,
            target_fall: 3,
            iap_cache_ttl_s: 3600,
            rtt_probe_ms: 30_000,
            flow_udp_idle_s: 300,
            flow_tcp_idle_s: 7440,
            flow_tcp_transitory_s: 240,
        }
    }
}

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

fn err(field: fmt::Arguments, reason: &'static str) -> ConfigError {
    let mut path = FieldPath::new();
    // A path longer than 48 bytes is cut short; the reason still names the problem.
    let _ = path.write_fmt(field);
    ConfigError {
        field: path,
        reason,
    }
}

fn check(ok: bool, field: fmt::Arguments, reason: &'static str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(err(field, reason))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn in_range<T: PartialOrd>(v: T, lo: T, hi: T) -> bool {
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

    /// The example configuration of docs/config.md; `pias-image` embeds it as
    /// the default, and the tests derive their variants from it.
    pub fn example() -> Config {
        fn s<const N: usize>(v: &str) -> String<N> {
            let mut out = String::new();
            for ch in v.chars() {
                if out.push(ch).is_err() {
                    break;
                }
            }
            out
        }
        fn p(a: [u8; 4], len: u8) -> Ipv4Prefix {
            Ipv4Prefix::new(Ipv4(a), len)
        }
        let mut interfaces = Vec::new();
        let _ = interfaces.push(Interface {
            name: s("eth0"),
            address: p([198, 18, 0, 2], 24),
            gateway: Some(Ipv4([198, 18, 0, 1])),
            mtu: 1500,
        });
        let mut prefixes = Vec::new();
        let _ = prefixes.push(p([203, 0, 113, 0], 24));
        let mut allow = Vec::new();
        let _ = allow.push(p([198, 18, 0, 0], 15));
        Config {
            log_level: LogLevel::Info,
            idle: IdleMode::Halt,
            node: Node {
                id: 1,
                name: s("pias-1"),
                cluster: 1,
            },
            interfaces,
            anycast: Anycast { prefixes },
            ports: Ports {
                management: 7001,
                registration: 7000,
                proxy: 7002,
                metrics: Some(9100),
            },
            management: Management {
                allow,
                allow_shutdown: true,
                key: EXAMPLE_MANAGEMENT_KEY,
            },
            capacity: Capacity::default(),
            timers: Timers::default(),
            deployment: Deployment {
                key: EXAMPLE_KEY,
                group_secret: EXAMPLE_GROUP_SECRET,
                policy: Policy::Proximity,
                band_pct: 10,
                groups: Vec::new(),
                proxies: alloc::vec![ProxyEntry {
                    id: 1,
                    cluster: 1,
                    address: Ipv4([198, 18, 0, 2]),
                }],
            },
            bgp: Bgp::default(),
        }
    }
}

/// The example config's deployment key, "00112233…eeff" twice: public, for
/// examples and tests only; a real deployment generates its own.
pub const EXAMPLE_KEY: Key = Key([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);

/// The example config's group secret, "0123…fedc…10" twice: public, for
/// examples and tests only; a real deployment generates its own.
pub const EXAMPLE_GROUP_SECRET: Key = Key([
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
]);

/// The example config's management key, "fedcba98…" then "13579bdf…":
/// public, for examples and tests only; a real appliance gets its own.
pub const EXAMPLE_MANAGEMENT_KEY: Key = Key([
    0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78,
    0x13, 0x57, 0x9b, 0xdf, 0x02, 0x46, 0x8a, 0xce, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
]);

#[cfg(test)]
pub(crate) mod tests;
