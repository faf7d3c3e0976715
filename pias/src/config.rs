//! The boot-time configuration of one appliance, shared by the kernel (which
//! reads it from the postcard blob) and the host tool (which writes it from TOML).
//!
//! Every field is documented for operators in docs/config.md. `validate`
//! returns the first problem as a field path and a reason.

use crate::addr::{Ipv4, Ipv4Prefix};
use core::fmt::{self, Write as _};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

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

/// The UDP ports the appliance listens on; none may be 0.
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
}

/// Table sizes for the proxy core, which reserves each table once and then
/// refuses (and counts) rather than grow, so these bound its memory. The
/// appliance validates them but does not run the core yet (docs/config.md).
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
/// the proxy core; validated, but not used by the appliance yet.
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
        Ok(())
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
            },
            management: Management {
                allow,
                allow_shutdown: true,
            },
            capacity: Capacity {
                peers: 1024,
                groups: 4096,
                targets_per_group: 64,
                flows: 16384,
            },
            timers: Timers {
                heartbeat_ms: 1000,
                peer_dead_ms: 3500,
                target_ping_ms: 2000,
                target_rise: 2,
                target_fall: 3,
                iap_cache_ttl_s: 3600,
                rtt_probe_ms: 30_000,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut c = Config::example();
        f(&mut c);
        c.validate()
    }

    fn field_of(r: Result<(), ConfigError>) -> std::string::String {
        r.expect_err("should be refused").field.as_str().to_owned()
    }

    #[test]
    fn example_is_valid() {
        Config::example().validate().unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(field_of(with(|c| c.node.id = 0)), "node.id");
        assert_eq!(field_of(with(|c| c.node.name = String::new())), "node.name");
        assert_eq!(
            field_of(with(|c| c.node.name = "a b".try_into().unwrap())),
            "node.name"
        );
        assert_eq!(field_of(with(|c| c.interfaces.clear())), "interfaces");
        assert_eq!(
            field_of(with(|c| c.interfaces[0].gateway = Some(Ipv4([10, 0, 0, 1])))),
            "interfaces[0].gateway"
        );
        assert_eq!(
            field_of(with(
                |c| c.interfaces[0].address = "198.18.0.0/24".parse().unwrap()
            )),
            "interfaces[0].address"
        );
        assert_eq!(
            field_of(with(|c| c.interfaces[0].mtu = 9000)),
            "interfaces[0].mtu"
        );
        assert_eq!(
            field_of(with(
                |c| c.anycast.prefixes[0] = "203.0.113.5/24".parse().unwrap()
            )),
            "anycast.prefixes[0]"
        );
        assert_eq!(
            field_of(with(
                |c| c.anycast.prefixes[0] = "198.18.0.0/16".parse().unwrap()
            )),
            "anycast.prefixes[0]"
        );
        assert_eq!(
            field_of(with(|c| c.anycast.prefixes.clear())),
            "anycast.prefixes"
        );
        assert_eq!(field_of(with(|c| c.ports.proxy = 7001)), "ports.proxy");
        assert_eq!(
            field_of(with(|c| c.ports.registration = 0)),
            "ports.registration"
        );
        assert_eq!(
            field_of(with(|c| c.management.allow.clear())),
            "management.allow"
        );
        assert_eq!(
            field_of(with(|c| c.capacity.peers = 20_001)),
            "capacity.peers"
        );
        assert_eq!(field_of(with(|c| c.capacity.flows = 0)), "capacity.flows");
        assert_eq!(
            field_of(with(|c| c.timers.peer_dead_ms = 2000)),
            "timers.peer_dead_ms"
        );
        assert_eq!(
            field_of(with(|c| c.timers.target_fall = 0)),
            "timers.target_fall"
        );
        assert_eq!(
            field_of(with(|c| c.timers.rtt_probe_ms = 5)),
            "timers.rtt_probe_ms"
        );
    }

    #[test]
    fn duplicate_interface_names_are_refused() {
        let r = with(|c| {
            let mut second = c.interfaces[0].clone();
            second.address = "198.18.1.2/24".parse().unwrap();
            second.gateway = None;
            c.interfaces.push(second).unwrap();
        });
        assert_eq!(field_of(r), "interfaces[1].name");
    }
}
