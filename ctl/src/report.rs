//! Human-readable status, for the demo and the lab commands.

use pias::status::{ProxyReport, RoutingReport, Status};
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
}
