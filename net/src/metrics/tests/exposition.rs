//! The exposition: complete (every counter of every struct), well-formed,
//! and within its buffer at the largest status.

use super::*;
use crate::metrics::exposition::render;
use crate::metrics::RESPONSE_BYTES;
use pias::status::*;
use std::collections::BTreeMap;

/// Every family's samples: name → (type, [(labels, value)]).
type Families = BTreeMap<String, (String, Vec<(String, String)>)>;

/// Parses an exposition strictly: every sample belongs to the family whose
/// HELP and TYPE came just before it, names and labels are well-formed.
fn families(text: &str) -> Families {
    let mut out = Families::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.trim().is_empty(), "{name} has help");
            let ty = lines.next().expect("TYPE follows HELP");
            let (tname, kind) = ty
                .strip_prefix("# TYPE ")
                .and_then(|t| t.split_once(' '))
                .expect("a TYPE line");
            assert_eq!(tname, name);
            assert!(kind == "counter" || kind == "gauge", "{kind}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name}: counters and only counters end in _total"
            );
            assert!(
                out.insert(name.to_owned(), (kind.to_owned(), Vec::new()))
                    .is_none(),
                "{name} declared twice"
            );
            current = Some(name.to_owned());
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        assert!(
            name.starts_with("pias_")
                && name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
            "{name}"
        );
        assert_eq!(Some(name), current.as_deref(), "sample under its family");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        out.get_mut(name)
            .unwrap()
            .1
            .push((labels.to_owned(), value.to_owned()));
    }
    out
}

/// A struct of u64 counters with every field at `u64::MAX`, and how many
/// fields it has, read from postcard: each field takes one 10-byte varint.
fn all_max<T: serde::de::DeserializeOwned>() -> (T, usize) {
    let mut bytes = Vec::new();
    for _ in 0..200 {
        bytes.extend_from_slice(&[0xff; 9]);
        bytes.push(0x01);
    }
    let (v, rest) = postcard::take_from_bytes::<T>(&bytes).unwrap();
    (v, (bytes.len() - rest.len()) / 10)
}

fn largest() -> (
    Status,
    ProxyReport,
    RoutingReport,
    BTreeMap<&'static str, usize>,
) {
    let mut fields = BTreeMap::new();
    let (net, n) = all_max::<NetCounters>();
    fields.insert("net", n);
    let (mgmt, n) = all_max::<MgmtCounters>();
    fields.insert("mgmt", n);
    let (http, n) = all_max::<HttpCounters>();
    fields.insert("http", n);
    let (idle, n) = all_max::<IdleCounters>();
    fields.insert("loop", n);
    let (data, n) = all_max::<DataCounters>();
    fields.insert("data", n);
    let (wire, n) = all_max::<pias::proxy::WireCounters>();
    fields.insert("wire", n);
    let (membership, n) = all_max::<pias::proxy::MembershipCounters>();
    fields.insert("membership", n);
    let (jap, n) = all_max::<pias::proxy::JapCounters>();
    fields.insert("jap", n);
    let (rap, n) = all_max::<pias::proxy::RapCounters>();
    fields.insert("rap", n);
    let (iap, n) = all_max::<pias::proxy::IapCounters>();
    fields.insert("iap", n);
    let mut status = Fake::default().status(&mgmt);
    status.net = net;
    status.http = http;
    status.idle = idle;
    status.uptime_ms = u64::MAX;
    status.allocations = u64::MAX;
    status.name = "n".repeat(32).as_str().try_into().unwrap();
    status.version = "v".repeat(VERSION_LEN).as_str().try_into().unwrap();
    status.tables.clear();
    for i in 0..MAX_TABLES {
        let name = format!("{i:0>16}");
        status
            .tables
            .push(TableFill {
                name: name.as_str().try_into().unwrap(),
                used: u64::MAX,
                capacity: u64::MAX,
            })
            .unwrap();
    }
    let proxy = ProxyReport {
        data,
        proxy: pias::proxy::Counters {
            wire,
            membership,
            jap,
            rap,
            iap,
        },
    };
    let mut routing = RoutingReport {
        enabled: true,
        flips: u64::MAX,
        gtsm_dropped: u64::MAX,
        ..Default::default()
    };
    for i in 0..pias::config::MAX_BGP_NEIGHBOURS {
        routing
            .neighbours
            .push(NeighbourReport {
                address: pias::Ipv4([255, 255, 255, i as u8]),
                remote_as: u32::MAX,
                hold_time_s: u16::MAX,
                established: u64::MAX,
                dropped: u64::MAX,
                connect_attempts: u64::MAX,
                updates_in: u64::MAX,
                updates_out: u64::MAX,
                prefixes_in: u64::MAX,
                notifications_in: u64::MAX,
                notifications_out: u64::MAX,
                malformed: u64::MAX,
                hold_expired: u64::MAX,
                connection_lost: u64::MAX,
                bfd_downs: u64::MAX,
                bfd_rx_bad: u64::MAX,
                ..Default::default()
            })
            .unwrap();
    }
    (status, proxy, routing, fields)
}

fn text_of(status: Status, proxy: ProxyReport, routing: RoutingReport) -> String {
    let reports = Fake {
        status: Some(status),
        proxy,
        routing,
    };
    let mut buf = vec![0u8; RESPONSE_BYTES];
    let n = render(&reports, &MgmtCounters::default(), &mut buf).expect("fits");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn every_counter_of_every_struct_is_exposed() {
    let (mut status, proxy, routing, fields) = largest();
    status.mgmt = all_max::<MgmtCounters>().0;
    let fams = families(&text_of(status, proxy, routing));
    for (area, count) in fields {
        let prefix = format!("pias_{area}_");
        let exposed: Vec<_> = fams
            .iter()
            .filter(|(name, (_, samples))| {
                name.starts_with(&prefix)
                    && samples.len() == 1
                    && samples[0].1 == u64::MAX.to_string()
            })
            .collect();
        assert_eq!(
            exposed.len(),
            count,
            "{area}: every field of its struct is a family at its value"
        );
    }
}

#[test]
fn the_largest_exposition_fits_its_buffer() {
    let (status, proxy, routing, _) = largest();
    let reports = Fake {
        status: Some(status),
        proxy,
        routing,
    };
    let mut buf = vec![0u8; RESPONSE_BYTES];
    let n = render(&reports, &MgmtCounters::default(), &mut buf).expect("fits");
    println!("largest exposition: {n} of {RESPONSE_BYTES} bytes");
    let mut small = vec![0u8; n - 1];
    assert_eq!(
        render(&reports, &MgmtCounters::default(), &mut small),
        None,
        "one byte less does not fit, and says so"
    );
}

#[test]
fn labelled_families_carry_each_table_neighbour_and_state() {
    let (status, proxy, mut routing, _) = largest();
    routing.neighbours[1].state = BgpState::Established;
    routing.neighbours[1].bfd = BfdStatus::Up;
    routing.health = RouteHealth::Degraded;
    let fams = families(&text_of(status, proxy, routing));
    assert_eq!(fams["pias_table_used"].1.len(), MAX_TABLES);
    assert_eq!(fams["pias_table_capacity"].1.len(), MAX_TABLES);
    let states = &fams["pias_bgp_session_state"].1;
    assert_eq!(states.len(), 6 * pias::config::MAX_BGP_NEIGHBOURS);
    let on: Vec<_> = states.iter().filter(|(_, v)| v == "1").collect();
    assert_eq!(on.len(), pias::config::MAX_BGP_NEIGHBOURS, "one state each");
    assert!(on
        .iter()
        .any(|(l, _)| l == "neighbour=\"255.255.255.1\",state=\"established\""));
    let bfd_up: Vec<_> = fams["pias_bfd_session_state"]
        .1
        .iter()
        .filter(|(l, v)| v == "1" && l.ends_with("state=\"up\""))
        .collect();
    assert_eq!(bfd_up.len(), 1);
    let health: Vec<_> = fams["pias_bgp_health"]
        .1
        .iter()
        .filter(|(_, v)| v == "1")
        .collect();
    assert_eq!(health, [&("state=\"degraded\"".to_owned(), "1".to_owned())]);
    assert_eq!(
        fams["pias_bgp_updates_in_total"].1.len(),
        pias::config::MAX_BGP_NEIGHBOURS
    );
}

#[test]
fn identity_and_gauges_read_as_the_status_says() {
    let mut status = Fake::default().status(&MgmtCounters::default());
    status.uptime_ms = 61_005;
    status.clock.tsc_khz = 2_500_000;
    status.name = "pop \"a\"".try_into().unwrap();
    let fams = families(&text_of(
        status,
        ProxyReport::default(),
        RoutingReport::default(),
    ));
    assert_eq!(fams["pias_uptime_seconds"].1[0].1, "61.005");
    assert_eq!(fams["pias_clock_tsc_hertz"].1[0].1, "2500000000");
    assert_eq!(
        fams["pias_build_info"].1[0].0,
        "version=\"0.1.0+test\",name=\"pop \\\"a\\\"\",node_id=\"1\""
    );
    assert_eq!(
        fams["pias_interface_mtu_bytes"].1[0],
        (
            "interface=\"eth0\",address=\"198.18.0.1/24\",mac=\"02:00:00:00:00:01\"".to_owned(),
            "1500".to_owned()
        )
    );
    assert_eq!(fams["pias_bgp_enabled"].1[0].1, "0");
    let modes: Vec<(&str, &str)> = fams["pias_loop_mode"]
        .1
        .iter()
        .map(|(l, v)| (l.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        modes,
        [
            ("mode=\"poll\"", "0"),
            ("mode=\"spin_then_halt\"", "1"),
            ("mode=\"halt_at_once\"", "0")
        ]
    );
    assert!(
        !fams.contains_key("pias_bgp_session_state"),
        "no neighbour families without BGP"
    );
}
