//! Config validation and the example: every rule of docs/config.md refused
//! with its field, and the largest deployment.

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
    assert_eq!(field_of(with(|c| c.ports.proxy = 65535)), "ports.proxy");
    for bad in [0, 179, 65535] {
        assert_eq!(
            field_of(with(|c| c.ports.metrics = Some(bad))),
            "ports.metrics"
        );
    }
    assert!(with(|c| c.ports.metrics = None).is_ok());
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
        field_of(with(|c| c.timers.peer_dead_ms = 250)),
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

/// A deployment of `n` proxies (ids 1..=n, clusters of 10, addresses in
/// 10.0.0.0/8 except this node's, which keeps the example's), this node id 1.
pub(crate) fn big(n: u32) -> Config {
    let mut c = Config::example();
    c.capacity.peers = n;
    c.deployment.proxies = (1..=n)
        .map(|id| ProxyEntry {
            id,
            cluster: 1 + (id - 1) / 10,
            address: if id == 1 {
                Ipv4([198, 18, 0, 2])
            } else {
                Ipv4::from_u32(0x0a00_0000 + id)
            },
        })
        .collect();
    c
}

#[test]
fn the_largest_deployment_is_valid() {
    big(MAX_PEERS).validate().unwrap();
    let mut c = big(MAX_PEERS);
    c.deployment.proxies.push(ProxyEntry {
        id: MAX_PEERS + 1,
        cluster: 1,
        address: Ipv4([11, 0, 0, 1]),
    });
    assert_eq!(field_of(c.validate()), "deployment.proxies");
}

#[test]
fn deployment_rules_name_their_field() {
    let mut two = ProxyEntry {
        id: 2,
        cluster: 1,
        address: Ipv4([198, 18, 0, 3]),
    };
    let add = |c: &mut Config, p: ProxyEntry| c.deployment.proxies.push(p);
    assert_eq!(
        field_of(with(|c| c.deployment.proxies.clear())),
        "deployment.proxies"
    );
    assert_eq!(
        field_of(with(|c| add(c, ProxyEntry { id: 1, ..two }))),
        "deployment.proxies[1].id"
    );
    assert_eq!(
        field_of(with(|c| c.deployment.proxies.insert(0, two))),
        "deployment.proxies[1].id"
    );
    assert_eq!(
        field_of(with(|c| c
            .deployment
            .proxies
            .insert(0, ProxyEntry { id: 0, ..two }))),
        "deployment.proxies[0].id"
    );
    assert_eq!(
        field_of(with(|c| add(
            c,
            ProxyEntry {
                address: Ipv4([198, 18, 0, 2]),
                ..two
            }
        ))),
        "deployment.proxies[1].address"
    );
    assert_eq!(
        field_of(with(|c| add(
            c,
            ProxyEntry {
                address: Ipv4([203, 0, 113, 7]),
                ..two
            }
        ))),
        "deployment.proxies[1].address"
    );
    assert_eq!(
        field_of(with(|c| add(
            c,
            ProxyEntry {
                address: Ipv4([224, 0, 0, 1]),
                ..two
            }
        ))),
        "deployment.proxies[1].address"
    );
    // This node must be listed, with its cluster and address.
    assert_eq!(
        field_of(with(|c| c.deployment.proxies[0].id = 2)),
        "deployment.proxies"
    );
    assert_eq!(
        field_of(with(|c| c.deployment.proxies[0].cluster = 2)),
        "deployment.proxies[0].cluster"
    );
    assert_eq!(
        field_of(with(
            |c| c.deployment.proxies[0].address = Ipv4([198, 18, 0, 9])
        )),
        "deployment.proxies[0].address"
    );
    assert_eq!(
        field_of(with(|c| {
            c.capacity.peers = 1;
            two.id = 2;
            add(c, two);
            add(
                c,
                ProxyEntry {
                    id: 3,
                    address: Ipv4([198, 18, 0, 4]),
                    ..two
                },
            );
        })),
        "capacity.peers"
    );
    assert_eq!(
        field_of(with(|c| c.deployment.band_pct = 0)),
        "deployment.band_pct"
    );
    let g = |text: &str, band_pct| GroupOverride {
        group: text.parse().unwrap(),
        policy: Policy::Load,
        band_pct,
    };
    with(|c| {
        c.deployment
            .groups
            .push(g("203.0.113.10:53/udp", 20))
            .unwrap()
    })
    .unwrap();
    assert_eq!(
        field_of(with(|c| c
            .deployment
            .groups
            .push(g("198.51.100.1:53/udp", 20))
            .unwrap())),
        "deployment.groups[0].group"
    );
    assert_eq!(
        field_of(with(|c| c
            .deployment
            .groups
            .push(g("203.0.113.10:53/udp", 101))
            .unwrap())),
        "deployment.groups[0].band_pct"
    );
    assert_eq!(
        field_of(with(|c| {
            c.deployment
                .groups
                .push(g("203.0.113.10:53/udp", 5))
                .unwrap();
            c.deployment
                .groups
                .push(g("203.0.113.10:53/udp", 6))
                .unwrap();
        })),
        "deployment.groups[1].group"
    );
}

#[test]
fn weak_keys_are_refused_naming_the_key() {
    let reason = |r: Result<(), ConfigError>| r.unwrap_err().reason;
    for (f, field, why) in [
        (
            (|c: &mut Config| c.deployment.key = Key([0; 32])) as fn(&mut Config),
            "deployment.key",
            "all zero",
        ),
        (
            |c: &mut Config| c.deployment.key = Key(core::array::from_fn(|i| (i % 4) as u8)),
            "deployment.key",
            "distinct",
        ),
        (
            |c: &mut Config| c.deployment.group_secret = Key([0; 32]),
            "deployment.group_secret",
            "all zero",
        ),
        (
            |c: &mut Config| c.deployment.group_secret = Key([9; 32]),
            "deployment.group_secret",
            "distinct",
        ),
        (
            |c: &mut Config| c.deployment.group_secret = c.deployment.key.clone(),
            "deployment.group_secret",
            "equal to deployment.key",
        ),
        (
            |c: &mut Config| c.management.key = Key([0; 32]),
            "management.key",
            "all zero",
        ),
        (
            |c: &mut Config| c.management.key = c.deployment.key.clone(),
            "management.key",
            "equal to a deployment key",
        ),
        (
            |c: &mut Config| c.management.key = c.deployment.group_secret.clone(),
            "management.key",
            "equal to a deployment key",
        ),
    ] {
        assert_eq!(field_of(with(f)), field);
        assert!(
            reason(with(f)).contains(why),
            "{field}: {}",
            reason(with(f))
        );
        assert!(reason(with(f)).contains("weak key"));
    }
}

#[test]
fn nat_idle_times_are_bounded() {
    assert_eq!(
        field_of(with(|c| c.timers.flow_udp_idle_s = 119)),
        "timers.flow_udp_idle_s"
    );
    with(|c| c.timers.flow_udp_idle_s = 120).unwrap();
    assert_eq!(
        field_of(with(|c| c.timers.flow_tcp_idle_s = 59)),
        "timers.flow_tcp_idle_s"
    );
    assert_eq!(
        field_of(with(|c| c.timers.flow_tcp_transitory_s = 0)),
        "timers.flow_tcp_transitory_s"
    );
    assert_eq!(
        field_of(with(|c| c.timers.flow_tcp_transitory_s = 7441)),
        "timers.flow_tcp_transitory_s"
    );
}

#[test]
fn peers_and_addresses_by_id() {
    let c = big(1000);
    let peers = c.peers();
    assert_eq!(peers.len(), 1000);
    assert_eq!((peers[0].id, peers[0].cluster), (1, 1));
    assert_eq!((peers[999].id, peers[999].cluster), (1000, 100));
    assert_eq!(c.proxy_address(1), Some(Ipv4([198, 18, 0, 2])));
    assert_eq!(
        c.proxy_address(777),
        Some(Ipv4::from_u32(0x0a00_0000 + 777))
    );
    assert_eq!(c.proxy_address(0), None);
    assert_eq!(c.proxy_address(1001), None);
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

/// The example with one BGP neighbour, the POP router at 198.18.0.1.
fn with_bgp(f: impl FnOnce(&mut Bgp)) -> Result<(), ConfigError> {
    with(|c| {
        c.bgp.local_as = 65001;
        let _ = c.bgp.neighbours.push(Neighbour {
            address: Ipv4([198, 18, 0, 1]),
            remote_as: 65000,
            hold_time_s: 9,
            passive: false,
            bfd: false,
        });
        f(&mut c.bgp)
    })
}

#[test]
fn bgp_rules_name_their_field() {
    with_bgp(|_| {}).unwrap();
    // Hold times 1 and 2 are refused (RFC 4271); 0 and 3 are fine.
    for (hold, ok) in [(0, true), (1, false), (2, false), (3, true), (65535, true)] {
        let r = with_bgp(|b| b.neighbours[0].hold_time_s = hold);
        assert_eq!(r.is_ok(), ok, "hold {hold}");
        if !ok {
            assert_eq!(field_of(r), "bgp.neighbours[0].hold_time_s");
        }
    }
    assert_eq!(field_of(with_bgp(|b| b.local_as = 0)), "bgp.local_as");
    assert_eq!(
        field_of(with_bgp(|b| b.neighbours[0].remote_as = 0)),
        "bgp.neighbours[0].remote_as"
    );
    // Single hop: on the subnet, not our own address.
    for addr in [[10, 0, 0, 1], [198, 18, 0, 2]] {
        assert_eq!(
            field_of(with_bgp(|b| b.neighbours[0].address = Ipv4(addr))),
            "bgp.neighbours[0].address"
        );
    }
    assert_eq!(
        field_of(with_bgp(|b| {
            let n = b.neighbours[0].clone();
            let _ = b.neighbours.push(n);
        })),
        "bgp.neighbours[1].address"
    );
    assert_eq!(
        field_of(with_bgp(|b| {
            let _ = b.prefixes.push("198.51.100.0/24".parse().unwrap());
        })),
        "bgp.prefixes[0]"
    );
    with_bgp(|b| {
        let _ = b.prefixes.push("203.0.113.0/25".parse().unwrap());
    })
    .unwrap();
    assert_eq!(
        field_of(with_bgp(|b| {
            let _ = b.prefixes.push("203.0.113.1/24".parse().unwrap());
        })),
        "bgp.prefixes[0]"
    );
    assert_eq!(
        field_of(with_bgp(|b| b.drain_delay_ms = MAX_DRAIN_DELAY_MS + 1)),
        "bgp.drain_delay_ms"
    );
    assert_eq!(field_of(with_bgp(|b| b.rise = 0)), "bgp.rise");
    assert_eq!(field_of(with_bgp(|b| b.fall = 11)), "bgp.fall");
    assert_eq!(
        field_of(with_bgp(|b| b.degraded_prepend = 33)),
        "bgp.degraded_prepend"
    );
    assert_eq!(
        field_of(with_bgp(|b| b.connect_retry_s = 0)),
        "bgp.connect_retry_s"
    );
    assert_eq!(
        field_of(with_bgp(|b| b.router_id = Some(Ipv4([0, 0, 0, 0])))),
        "bgp.router_id"
    );
    // Without neighbours BGP is off and the rest is not checked.
    with(|c| c.bgp.local_as = 0).unwrap();
}

#[test]
fn bgp_defaults_to_the_anycast_prefixes_and_the_interface_address() {
    let c = Config::example();
    assert!(!c.bgp.enabled());
    assert_eq!(c.bgp_prefixes(), c.anycast.prefixes);
    assert_eq!(c.bgp_router_id(), Ipv4([198, 18, 0, 2]));
}
