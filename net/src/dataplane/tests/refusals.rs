//! Traffic that is not the proxy's, GTSM for routing protocols, and refusals
//! (device full, unknown proxies), each counted by reason.

use super::*;

#[test]
fn traffic_that_is_not_ours_is_counted_by_reason() {
    let mut p = plane(1);
    let mut out = Out::default();
    let f = host_udp(ip(CLIENT), 1, ip(77), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().drop_not_ours, 1);
    // ICMP echo to an anycast address: not served.
    let a = Addressing {
        src_mac: mac(CLIENT),
        dst_mac: mac(2),
        src: ip(CLIENT),
        dst: Ipv4([203, 0, 113, 1]),
        ident: 1,
    };
    let mut buf = vec![0u8; 200];
    let n = packet::icmp_error(&mut buf, &a, 8, 0, 0, &[0; 8]).unwrap();
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Done);
    assert_eq!(p.counters().drop_anycast_protocol, 1);
    // The management port of the unicast address is the stack's.
    let f = host_udp(ip(CLIENT), 1, appliance_ip(1), 7001, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    // A client packet to a group with no member: a lookup, no delivery.
    let f = host_udp(ip(CLIENT), 1, Ipv4([203, 0, 113, 99]), 9999, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().rx_client, 1);
    assert_eq!(p.counters().tx_deliver, 0);
    assert_eq!(
        p.counters(),
        DataCounters {
            rx_client: 1,
            rx_to_stack: 1,
            drop_not_ours: 1,
            drop_anycast_protocol: 1,
            tx_proxy: 1,
            arp_requests: 1,
            ..DataCounters::default()
        }
    );
}

#[test]
fn bgp_from_a_neighbour_needs_ttl_255() {
    let mut p = plane(1);
    let mut out = Out::default();
    let me = appliance_ip(1);
    let cases = [
        // (source, source port, destination port, TTL, verdict, GTSM drops so far)
        (GATEWAY_BGP, 179, 50_000, 64, Verdict::Done, 1),
        (GATEWAY_BGP, 179, 50_000, 254, Verdict::Done, 2),
        (GATEWAY_BGP, 50_000, 179, 1, Verdict::Done, 3),
        (GATEWAY_BGP, 179, 50_000, 255, Verdict::Stack, 3),
        (GATEWAY_BGP, 50_000, 179, 255, Verdict::Stack, 3),
        // Not BGP: the stack's.
        (GATEWAY_BGP, 80, 50_000, 64, Verdict::Stack, 3),
        // BGP from anyone but a neighbour, whatever its TTL: dropped.
        (ip(CLIENT), 50_000, 179, 64, Verdict::Done, 4),
        (ip(CLIENT), 50_000, 179, 255, Verdict::Done, 5),
    ];
    for (src, sport, dport, ttl, verdict, drops) in cases {
        let f = with_ttl(host_tcp(src, sport, me, dport, 0x10, &[]), ttl);
        assert_eq!(
            p.ingress(T0, &f, &mut out),
            verdict,
            "{src} {sport}->{dport} ttl {ttl}"
        );
        assert_eq!(
            p.counters().drop_gtsm,
            drops,
            "{src} {sport}->{dport} ttl {ttl}"
        );
    }
    // BFD: UDP to 3784 from the neighbour, the same rule.
    let cases = [
        (GATEWAY_BGP, 49_152, 3784, 254, Verdict::Done, 6),
        (GATEWAY_BGP, 49_152, 3784, 255, Verdict::Stack, 6),
        (ip(CLIENT), 49_152, 3784, 255, Verdict::Done, 7),
        // Multihop BFD (RFC 5883), the same rule.
        (GATEWAY_BGP, 49_152, 4784, 64, Verdict::Done, 8),
        (GATEWAY_BGP, 49_152, 4784, 255, Verdict::Stack, 8),
    ];
    for (src, sport, dport, ttl, verdict, drops) in cases {
        let f = with_ttl(host_udp(src, sport, me, dport, &[0; 24]), ttl);
        assert_eq!(
            p.ingress(T0, &f, &mut out),
            verdict,
            "{src} {sport}->{dport} ttl {ttl}"
        );
        assert_eq!(
            p.counters().drop_gtsm,
            drops,
            "{src} {sport}->{dport} ttl {ttl}"
        );
    }
}

#[test]
fn other_protocols_and_broadcasts_go_to_the_stack_not_to_a_drop() {
    let mut p = plane(1);
    let mut out = Out::default();
    // GRE (47) to our address: neither ICMP nor ours to proxy.
    let mut f = host_udp(ip(CLIENT), 1, appliance_ip(1), 2, b"x");
    {
        let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip4.set_next_header(IpProtocol::Unknown(47));
        ip4.fill_checksum();
    }
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    // The subnet's broadcast and a multicast group: the stack's.
    let f = host_udp(ip(CLIENT), 1, Ipv4([198, 18, 0, 255]), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    let f = host_udp(ip(CLIENT), 1, Ipv4([224, 0, 0, 5]), 2, b"x");
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Stack);
    assert_eq!(p.counters().drop_not_ours, 0);
    assert_eq!(p.counters().rx_to_stack, 3);
}

#[test]
fn refusals_by_the_device_and_messages_to_unknown_proxies_are_counted() {
    // Proxy 2 is in the core's roster but its address is missing here.
    let mut p = plane_with(DataPlaneConfig {
        proxies: vec![(1, appliance_ip(1))],
        ..config(1)
    });
    let mut out = Out::default();
    p.handle_timeout(T0 + SEC, &mut out);
    assert!(p.counters().tx_unknown_proxy > 0);
    assert_eq!(p.counters().tx_proxy, 0);
    // Every frame refused: each refusal counted, nothing counted as sent.
    let mut p = plane(1);
    let f = host_udp(ip(CLIENT), 5, Ipv4([203, 0, 113, 10]), 99, &[1; 1400]);
    assert_eq!(p.ingress(T0, &f, &mut Refusing), Verdict::Done);
    let c = p.counters();
    assert_eq!(c.client_too_big, 1);
    assert!(c.tx_device_refused >= 1, "{c:?}");
    assert_eq!(
        c.arp_requests, 0,
        "a refused request is not counted as asked"
    );
}
