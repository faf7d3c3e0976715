//! Human-readable status, for the demo and the lab commands.

use pias::status::{GroupReport, ProxyReport, RoutingReport, Status};
use std::fmt::Write;

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
        "  drops: runt {} oversized {} not-for-us {} unsupported {} bad-arp {} bad-ipv4 {} bad-ip-csum {} bad-l4 {} bad-l4-csum {}; driver rx {} tx {}; tx ring full {}",
        n.rx_runt, n.rx_oversized, n.rx_not_for_us, n.rx_unsupported, n.rx_bad_arp, n.rx_bad_ipv4, n.rx_bad_ip_checksum, n.rx_bad_l4, n.rx_bad_l4_checksum, n.rx_driver_errors, n.tx_driver_errors, n.tx_ring_full
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
        "  loop: {} polls, {} halts, {} wake-ups",
        s.idle.polls, s.idle.halts, s.idle.wakeups
    );
    let _ = writeln!(o, "  heap allocations since boot: {}", s.allocations);
    for t in &s.tables {
        let _ = writeln!(o, "  table {}: {} / {}", t.name, t.used, t.capacity);
    }
    o
}

/// The proxy's counters, one line per group of counters, naming only those
/// that are not zero (`data: rx_client 12, tx_deliver 12, …`).
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
}
