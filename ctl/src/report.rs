//! Human-readable reports for `piasctl`, the demo and the lab commands.

use pias::status::{GroupReport, ProxyReport, RoutingReport, Status};
use std::fmt::Write;

/// The operator's overview (`piasctl status`): identity, interfaces, what
/// each role did, table fill and the largest drop counts, then every
/// counter of the status (`status_text`).
pub fn overview_text(s: &Status, p: &ProxyReport) -> String {
    let mut o = String::new();
    let up = s.uptime_ms / 1000;
    let _ = writeln!(
        o,
        "{} (node {})  version {}  up {}h {:02}m {:02}s  clock {:?} {:.1} MHz",
        s.name,
        s.node_id,
        s.version,
        up / 3600,
        up / 60 % 60,
        up % 60,
        s.clock.source,
        s.clock.tsc_khz as f64 / 1e3
    );
    let _ = writeln!(o, "interfaces");
    for i in &s.interfaces {
        let m = i.mac;
        let gw = i.gateway.map_or("-".to_string(), |g| g.to_string());
        let _ =
            writeln!(
            o,
            "  {:<8} {:<18} gw {gw:<15} mtu {:<5} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            i.name, i.address.to_string(), i.mtu, m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
    let (d, c) = (&p.data, &p.proxy);
    let fill = |name: &str| {
        s.tables
            .iter()
            .find(|t| t.name == name)
            .map_or("-".to_string(), |t| format!("{}/{}", t.used, t.capacity))
    };
    let _ = writeln!(o, "roles");
    let _ = writeln!(
        o,
        "  IAP   client packets {}  lookups {} (failed {})  forwards {}  replies to clients {}  cache {}",
        d.rx_client,
        c.iap.lookups_sent,
        c.iap.lookups_failed,
        c.iap.forwards,
        d.tx_to_client,
        fill("iap_cache")
    );
    let _ = writeln!(
        o,
        "  JAP   joins {}  leaves {}  delivered {}  targets down {}  misses excused (overrun) {}  reports sent {}  targets {}  flows {}",
        c.jap.joins,
        c.jap.leaves,
        c.jap.delivered,
        c.jap.targets_down,
        c.jap.misses_excused,
        c.jap.reports_sent,
        fill("targets"),
        fill("nat_flows")
    );
    let _ = writeln!(
        o,
        "  RAP   reports {}  lookups {}  forwards {}  expired {}  groups {}  entries {}",
        c.rap.reports,
        c.rap.lookups,
        c.rap.forwards,
        c.rap.expired,
        fill("rap_groups"),
        fill("rap_entries")
    );
    let _ = writeln!(
        o,
        "  peers went down {}  came up {}  restarts seen {}  peers {}",
        c.membership.peers_down,
        c.membership.peers_up,
        c.membership.restarts_seen,
        fill("peers")
    );
    let _ = writeln!(o, "tables (used / capacity)");
    for t in &s.tables {
        let pct = if t.capacity == 0 {
            0.0
        } else {
            100.0 * t.used as f64 / t.capacity as f64
        };
        let _ = writeln!(
            o,
            "  {:<16} {:>12} / {:<12} {pct:5.1}%",
            t.name, t.used, t.capacity
        );
    }
    let drops = top_drops(s, p, 5);
    if drops.is_empty() {
        let _ = writeln!(o, "top drops: none");
    } else {
        let _ = writeln!(o, "top drops");
        for (name, n) in drops {
            let _ = writeln!(o, "  {name:<32} {n}");
        }
    }
    let _ = writeln!(o, "details");
    o.push_str(&status_text(s));
    o
}

/// The `n` largest non-zero drop and refusal counters, largest first.
pub fn top_drops(s: &Status, p: &ProxyReport, n: usize) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    let mut add = |prefix: &str, v: serde_json::Value, is_drop: &dyn Fn(&str) -> bool| {
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                if let Some(x) = v.as_u64().filter(|&x| x > 0) {
                    if is_drop(&k) {
                        all.push((format!("{prefix}.{k}"), x));
                    }
                }
            }
        }
    };
    let not_traffic = |k: &str| {
        !matches!(
            k,
            "rx_frames"
                | "rx_bytes"
                | "tx_frames"
                | "tx_bytes"
                | "requests"
                | "connections"
                | "served"
        )
    };
    add("net", json(&s.net), &not_traffic);
    add("mgmt", json(&s.mgmt), &not_traffic);
    add("http", json(&s.http), &not_traffic);
    add("wire", json(&p.proxy.wire), &|_| true);
    let data_drop = |k: &str| {
        k.starts_with("drop_")
            || matches!(
                k,
                "client_too_big"
                    | "reply_too_big"
                    | "icmp_unmatched"
                    | "nat_full"
                    | "tx_unknown_proxy"
                    | "tx_bad_segment"
                    | "tx_too_big"
                    | "arp_dropped"
                    | "tx_device_refused"
            )
    };
    add("data", json(&p.data), &data_drop);
    add("iap", json(&p.proxy.iap), &|k| {
        matches!(
            k,
            "unknown_group" | "negative_hits" | "bounced_drops" | "refused" | "lookups_failed"
        )
    });
    add("jap", json(&p.proxy.jap), &|k| {
        k.starts_with("nack_")
            || matches!(
                k,
                "stale_registrations"
                    | "replayed_registrations"
                    | "wrong_source"
                    | "flows_refused"
                    | "groups_refused"
            )
    });
    add("rap", json(&p.proxy.rap), &|k| {
        matches!(k, "no_member_drops" | "refused")
    });
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// Counters as a JSON object of their fields.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Every counter of the status, a line per area.
pub fn status_text(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {} \"{}\", version {}, up {:.3} s, clock {:?} at {} kHz",
        s.node_id,
        s.name,
        s.version,
        s.uptime_ms as f64 / 1e3,
        s.clock.source,
        s.clock.tsc_khz
    );
    for i in &s.interfaces {
        let m = i.mac;
        let gw = i.gateway.map_or("-".to_string(), |g| g.to_string());
        let _ = writeln!(
            o,
            "  {} {} gw {gw} mtu {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            i.name, i.address, i.mtu, m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
    let n = &s.net;
    let _ = writeln!(
        o,
        "  rx {} frames / {} bytes, tx {} frames / {} bytes, dropped {}",
        n.rx_frames,
        n.rx_bytes,
        n.tx_frames,
        n.tx_bytes,
        n.rx_dropped()
    );
    let _ = writeln!(
        o,
        "  drops: runt {} oversized {} not-for-us {} unsupported {} bad-arp {} bad-ipv4 {} bad-ip-csum {} bad-l4 {} bad-l4-csum {} bad-offload {}; driver rx {} tx {}; tx ring full {} (waits {}); rx overruns {}",
        n.rx_runt, n.rx_oversized, n.rx_not_for_us, n.rx_unsupported, n.rx_bad_arp, n.rx_bad_ipv4, n.rx_bad_ip_checksum, n.rx_bad_l4, n.rx_bad_l4_checksum, n.rx_bad_offload, n.rx_driver_errors, n.tx_driver_errors, n.tx_ring_full, n.tx_ring_waits, n.rx_overruns
    );
    let _ = writeln!(
        o,
        "  offload: {} large frames in, {} segments merged into large frames, {} cut into segments in software; {} large frames out",
        n.rx_large, n.rx_coalesced, n.rx_large_cut, n.tx_large
    );
    let m = &s.mgmt;
    let _ = writeln!(
        o,
        "  management: {} requests; refused: {} source, {} bad MAC, {} stale, {} replayed, \
         {} replay cache full, {} other version, {} malformed, {} shutdown disabled; {} reply failures",
        m.requests,
        m.refused_source,
        m.bad_mac,
        m.stale,
        m.replayed,
        m.replay_full,
        m.bad_version,
        m.bad_requests,
        m.refused_shutdown,
        m.reply_failures
    );
    let h = &s.http;
    let _ = writeln!(
        o,
        "  metrics: {} connections, {} served; refused: {} source, {} busy, {} malformed, \
         {} method, {} not found, {} too large, {} timed out",
        h.connections,
        h.served,
        h.refused_source,
        h.refused_busy,
        h.bad_requests,
        h.bad_method,
        h.not_found,
        h.too_large,
        h.timeouts
    );
    let _ = writeln!(
        o,
        "  loop: {} polls, {} halts, {} wake-ups ({} from the NIC); when idle: {}; idle policy: {} trials, {} switches",
        s.idle.polls,
        s.idle.halts,
        s.idle.wakeups,
        s.idle.device_wakeups,
        s.loop_mode.name(),
        s.idle.policy_trials,
        s.idle.policy_switches
    );
    let _ = writeln!(o, "  heap allocations since boot: {}", s.allocations);
    let _ = writeln!(
        o,
        "  console bytes dropped (queue full): {}",
        s.console_dropped
    );
    for t in &s.tables {
        let _ = writeln!(o, "  table {}: {} / {}", t.name, t.used, t.capacity);
    }
    o
}

/// BGP: health, drain, and a line per neighbour.
pub fn routing_text(r: &RoutingReport) -> String {
    let mut o = String::new();
    if !r.enabled {
        o.push_str("bgp: not configured (no [bgp] neighbours)\n");
        return o;
    }
    let _ = writeln!(
        o,
        "bgp: health {:?}, serving {}, draining {}, verdict changes {}, GTSM drops {}",
        r.health, r.serving, r.draining, r.flips, r.gtsm_dropped
    );
    for n in &r.neighbours {
        let _ = writeln!(
            o,
            "  {} AS {}: {:?}, advertised {:?}, hold {} s, established {}x, updates {} in / {} out, notifications {} in / {} out (malformed {}), hold expired {}, last sent {:?}, last received {:?}",
            n.address,
            n.remote_as,
            n.state,
            n.advertised,
            n.hold_time_s,
            n.established,
            n.updates_in,
            n.updates_out,
            n.notifications_in,
            n.notifications_out,
            n.malformed,
            n.hold_expired,
            n.last_error_sent,
            n.last_error_received
        );
    }
    o
}

/// The proxy's counters, one line per group of counters, naming only those
/// that are not zero (`data: rx_client 12, tx_deliver 12, …`).
pub fn proxy_text(r: &ProxyReport) -> String {
    let mut o = String::new();
    let value = serde_json::to_value(r).unwrap_or_default();
    write_nonzero(&mut o, "", &value);
    if o.is_empty() {
        o.push_str("  (all proxy counters are zero)\n");
    }
    o
}

fn write_nonzero(o: &mut String, path: &str, v: &serde_json::Value) {
    let serde_json::Value::Object(map) = v else {
        return;
    };
    let leaves: Vec<String> = map
        .iter()
        .filter_map(|(k, v)| v.as_u64().filter(|&n| n != 0).map(|n| format!("{k} {n}")))
        .collect();
    if !leaves.is_empty() {
        let _ = writeln!(
            o,
            "  {}: {}",
            if path.is_empty() { "proxy" } else { path },
            leaves.join(", ")
        );
    }
    for (k, v) in map {
        if v.is_object() {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            write_nonzero(o, &sub, v);
        }
    }
}

/// What one proxy knows of a group, role by role.
pub fn group_text(r: &GroupReport) -> String {
    let mut o = String::new();
    let ids = |v: &[u32]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(
        o,
        "group {}: {}; its RAPs (live, as this proxy sees them): {}",
        r.group,
        if r.served {
            "served"
        } else {
            "NOT served by this deployment (client packets to it are dropped)"
        },
        ids(&r.raps)
    );
    match &r.iap {
        None => {
            let _ = writeln!(o, "  as IAP: nothing cached, no lookup in flight");
        }
        Some(i) if !i.cached => {
            let _ = writeln!(o, "  as IAP: nothing cached; a lookup is in flight");
        }
        Some(i) => {
            let japs = if i.japs.is_empty() {
                "none (no member anywhere: packets dropped until it expires)".to_string()
            } else {
                i.japs
                    .iter()
                    .map(|(j, c)| format!("{j} (~{c} members)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                o,
                "  as IAP: cached JAPs {japs}; expires in {:.1} s{}",
                i.expires_in_ms as f64 / 1e3,
                if i.lookup_pending {
                    "; a lookup is in flight"
                } else {
                    ""
                }
            );
        }
    }
    match &r.jap {
        None => {
            let _ = writeln!(o, "  as JAP: holds no target");
        }
        Some(j) => {
            let reported = j.reported.map_or("nothing reported yet".to_string(), |c| {
                format!(
                    "reported {c} to RAPs {} (acknowledged by {})",
                    ids(&j.reported_to),
                    ids(&j.acked_by)
                )
            });
            let _ = writeln!(
                o,
                "  as JAP: {} targets, {} counted as members; {reported}",
                j.targets_total, j.members
            );
            for t in &j.targets {
                let _ = writeln!(
                    o,
                    "    {:<21} weight {:<5} {:<7} flows {}{}",
                    t.endpoint.to_string(),
                    t.weight,
                    format!("{:?}", t.health).to_lowercase(),
                    t.flows,
                    if t.draining { "  (left; draining)" } else { "" }
                );
            }
            if (j.targets.len() as u32) < j.targets_total {
                let _ = writeln!(
                    o,
                    "    … and {} more",
                    j.targets_total - j.targets.len() as u32
                );
            }
        }
    }
    match &r.rap {
        None => {
            let _ = writeln!(o, "  as RAP: holds no entry");
        }
        Some(rap) => {
            let _ = writeln!(o, "  as RAP: {} JAP entries", rap.entries_total);
            for (jap, count, age) in &rap.entries {
                let _ = writeln!(
                    o,
                    "    JAP {jap:<6} ~{count} members, reported {:.1} s ago",
                    *age as f64 / 1e3
                );
            }
            if (rap.entries.len() as u32) < rap.entries_total {
                let _ = writeln!(
                    o,
                    "    … and {} more",
                    rap.entries_total - rap.entries.len() as u32
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_text_names_each_nonzero_counter_under_its_group() {
        let mut r = ProxyReport::default();
        r.data.rx_client = 12;
        r.proxy.jap.joins = 2;
        let t = proxy_text(&r);
        assert!(t.contains("data: rx_client 12\n"), "{t}");
        assert!(t.contains("proxy.jap: joins 2\n"), "{t}");
        assert!(!t.contains("tx_deliver"), "{t}");
        assert!(proxy_text(&ProxyReport::default()).contains("all proxy counters are zero"));
    }

    #[test]
    fn group_text_shows_each_role_and_what_was_cut() {
        use pias::status::*;
        let t = TargetView {
            endpoint: "198.19.0.1:53".parse().unwrap(),
            weight: 2,
            health: TargetHealth::Suspect,
            draining: true,
            flows: 3,
        };
        let r = GroupReport {
            group: "203.0.113.10:53/udp".parse().unwrap(),
            served: true,
            raps: [3, 5].into_iter().collect(),
            iap: Some(IapView {
                cached: true,
                japs: Default::default(),
                expires_in_ms: 1_500,
                lookup_pending: true,
            }),
            jap: Some(JapView {
                targets: [t].into_iter().collect(),
                targets_total: 4,
                members: 1,
                reported: Some(1),
                reported_to: [3, 5].into_iter().collect(),
                acked_by: [5].into_iter().collect(),
            }),
            rap: None,
        };
        let text = group_text(&r);
        for want in [
            "group 203.0.113.10:53/udp: served; its RAPs (live, as this proxy sees them): 3, 5\n",
            "as IAP: cached JAPs none (no member anywhere: packets dropped until it expires); \
             expires in 1.5 s; a lookup is in flight\n",
            "as JAP: 4 targets, 1 counted as members; reported 1 to RAPs 3, 5 (acknowledged by 5)\n",
            "198.19.0.1:53         weight 2     suspect flows 3  (left; draining)\n",
            "… and 3 more\n",
            "as RAP: holds no entry\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let not_served = GroupReport {
            served: false,
            iap: None,
            jap: None,
            ..r
        };
        let text = group_text(&not_served);
        assert!(text.contains("NOT served"), "{text}");
        assert!(text.contains("as IAP: nothing cached"), "{text}");
        assert!(text.contains("as JAP: holds no target"), "{text}");
    }

    fn status() -> Status {
        use pias::status::*;
        let tables = [TableFill {
            name: "targets".try_into().unwrap(),
            used: 3,
            capacity: 12,
        }]
        .into_iter()
        .collect();
        Status {
            node_id: 2,
            name: "pop-a".try_into().unwrap(),
            version: "0.1.0+x".try_into().unwrap(),
            uptime_ms: 3_723_500,
            clock: ClockInfo {
                source: ClockSource::Cpuid,
                tsc_khz: 2_500_000,
            },
            interfaces: Default::default(),
            net: NetCounters {
                rx_frames: 1_000,
                rx_not_for_us: 7,
                rx_bad_l4_checksum: 40,
                ..Default::default()
            },
            mgmt: MgmtCounters {
                requests: 900,
                bad_mac: 2,
                ..Default::default()
            },
            http: Default::default(),
            idle: Default::default(),
            tables,
            allocations: 0,
            console_dropped: 0,
            loop_mode: LoopMode::HaltAtOnce,
        }
    }

    #[test]
    fn the_loop_mode_has_one_name_in_text_and_json() {
        let t = status_text(&status());
        assert!(t.contains("when idle: halt_at_once;"), "{t}");
        for mode in pias::status::LoopMode::ALL {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.name()));
        }
    }

    #[test]
    fn the_overview_ranks_drops_and_leaves_out_traffic() {
        let mut p = ProxyReport::default();
        p.data.drop_no_flow = 40;
        p.data.rx_client = 5_000;
        p.proxy.jap.nack_capacity = 9;
        p.proxy.jap.joins = 3;
        let top = top_drops(&status(), &p, 3);
        assert_eq!(
            top,
            vec![
                ("data.drop_no_flow".to_string(), 40),
                ("net.rx_bad_l4_checksum".to_string(), 40),
                ("jap.nack_capacity".to_string(), 9),
            ],
            "largest first, ties by name, traffic and joins left out"
        );
        let t = overview_text(&status(), &p);
        assert!(
            t.starts_with("pop-a (node 2)  version 0.1.0+x  up 1h 02m 03s"),
            "{t}"
        );
        assert!(t.contains("  JAP   joins 3 "), "{t}");
        assert!(t.contains("targets 3/12"), "{t}");
        assert!(
            t.contains("  targets                     3 / 12            25.0%"),
            "{t}"
        );
        assert!(t.contains("details\nnode 2 \"pop-a\""), "{t}");
        let quiet = overview_text(
            &Status {
                net: Default::default(),
                mgmt: Default::default(),
                ..status()
            },
            &ProxyReport::default(),
        );
        assert!(quiet.contains("top drops: none"), "{quiet}");
    }
}
