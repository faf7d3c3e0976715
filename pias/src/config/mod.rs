//! The boot-time configuration of one appliance, shared by the kernel (which
//! reads it from the postcard blob) and the host tool (which writes it from TOML).
//!
//! Every field is documented for operators in docs/config.md. `validate`
//! returns the first problem as a field path and a reason.

use crate::addr::{Group, Ipv4, Ipv4Prefix};
use crate::ids::{PeerInfo, ProxyId};
use crate::proxy::Policy;
use crate::wire::Key;
use core::fmt::Write as _;
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

mod bgp;
mod validate;

pub use self::bgp::{Bgp, Neighbour, MAX_BGP_NEIGHBOURS, MAX_DRAIN_DELAY_MS};
use validate::{check, in_range};
pub use validate::{ConfigError, FieldPath};

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

impl Config {
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
