//! Next hops: frames held for ARP, released or dropped, and what ARP may teach.

use super::*;

#[test]
fn the_first_frame_to_an_unknown_next_hop_waits_for_arp_then_goes() {
    let mut p = plane(1);
    let mut out = Out::default();
    // A join from the target reaches appliance 1; its ack must go to the
    // agent, whose MAC nobody knows yet.
    let key = pias::keys::group_key(&SECRET, &udp_group());
    let r = Registration {
        group: udp_group(),
        target: Endpoint {
            ip: ip(TARGET),
            port: 53,
        },
        timestamp_ms: T0 / 1000,
        nonce: 5,
        options: JoinOptions::default(),
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let n = wire::encode(Sender::Target, 0, 1, &Message::Join(r), &key, &mut buf).unwrap();
    let f = host_udp(
        ip(TARGET),
        AGENT_PORT,
        Ipv4([203, 0, 113, 10]),
        7000,
        &buf[..n],
    );
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    // Only ARP requests left (for the agent, and for the RAP its report
    // goes to): the ack waits.
    assert!(out.0.iter().all(|f| f[12..14] == [8, 6]));
    let asked: Vec<Ipv4> = out
        .0
        .iter()
        .map(|f| crate::dataplane::arp::parse_arp(f).unwrap().target_ip)
        .collect();
    assert!(asked.contains(&ip(TARGET)), "{asked:?}");
    assert_eq!(p.counters().arp_requests, asked.len() as u64);
    let mut reply = [0u8; 64];
    let n = packet::arp_reply(&mut reply, mac(TARGET), ip(TARGET), mac(2), appliance_ip(1));
    let mut out = Out::default();
    assert_eq!(p.ingress(T0 + MS, &reply[..n], &mut out), Verdict::Stack);
    assert_eq!(out.0.len(), 1, "the held ack goes out");
    let (_, dst, _, seg) = parse(&out.0[0]).unwrap();
    assert_eq!(out.0[0][..6], mac(TARGET));
    assert_eq!((dst, packet::ports(&seg).1), (ip(TARGET), AGENT_PORT));
    assert_eq!(p.counters().arp_released, 1);
}

#[test]
fn an_unanswered_arp_drops_the_held_frame_after_a_second() {
    let mut p = plane(1);
    let mut out = Out::default();
    let f = host_udp(
        ip(CLIENT),
        5,
        Ipv4([203, 0, 113, 10]),
        99,
        &[1; 2000][..1400],
    );
    // A client packet too large to carry: an ICMP error toward the client,
    // which waits for ARP (gateway-less on-link host).
    assert_eq!(p.ingress(T0, &f, &mut out), Verdict::Done);
    assert_eq!(p.counters().client_too_big, 1);
    assert_eq!(p.counters().arp_requests, 1);
    p.handle_timeout(T0 + 500 * MS, &mut out);
    assert_eq!(p.counters().arp_dropped, 0);
    p.handle_timeout(T0 + 1100 * MS, &mut out);
    assert_eq!(p.counters().arp_dropped, 1);
    // Each reason bumps its own counter only (the ARP requests: the client,
    // and the peers the proxy's first messages go to).
    assert_eq!(
        p.counters(),
        DataCounters {
            client_too_big: 1,
            tx_proxy: 2,
            tx_icmp: 1,
            arp_requests: 3,
            arp_dropped: 1,
            ..DataCounters::default()
        }
    );
}

#[test]
fn arp_teaches_only_what_is_addressed_to_us_from_our_subnet() {
    let mut p = plane(1);
    let mut out = Out::default();
    let me = appliance_ip(1);
    let neighbours = |p: &DataPlane| p.table_fill()[1].1;
    let mut buf = [0u8; 64];
    // A request for another host of the LAN: smoltcp's business, not learned.
    let n = packet::arp_request(&mut buf, mac(CLIENT), ip(CLIENT), ip(77));
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 0);
    // A request for us from outside our subnet: not learned either.
    let n = packet::arp_request(&mut buf, mac(CLIENT), Ipv4([10, 0, 0, 1]), me);
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 0);
    // A request for us from the LAN: learned.
    let n = packet::arp_request(&mut buf, mac(CLIENT), ip(CLIENT), me);
    assert_eq!(p.ingress(T0, &buf[..n], &mut out), Verdict::Stack);
    assert_eq!(neighbours(&p), 1);
    assert_eq!(p.counters().rx_to_stack, 3);
}

/// The ARP announcements among `out`'s frames (the proxy's timers send
/// their own frames, or ask ARP for their peers, at the same ticks).
fn announcements(out: &Out) -> Vec<Vec<u8>> {
    out.0
        .iter()
        .filter(|f| crate::dataplane::arp::parse_arp(f).is_some_and(|a| a.sender_ip == a.target_ip))
        .cloned()
        .collect()
}

#[test]
fn the_plane_announces_its_address_twice_at_start_two_seconds_apart() {
    let mut p = announcing_plane(config(1));
    let mut out = Out::default();
    assert_eq!(p.poll_timeout(), T0, "the first is due at once");
    p.handle_timeout(T0, &mut out);
    let sent = announcements(&out);
    assert_eq!(sent.len(), 1);
    let f = &sent[0];
    assert_eq!(f[..6], [0xff; 6], "broadcast");
    assert_eq!(f[6..12], mac(2));
    let a = crate::dataplane::arp::parse_arp(f).unwrap();
    // RFC 5227 §2.3: a request, our address as sender and as target.
    assert_eq!(a.op, 1);
    assert_eq!(a.target_ip, appliance_ip(1));
    assert_eq!(a.sender_mac, mac(2));
    assert!(p.poll_timeout() <= T0 + 2 * SEC);
    p.handle_timeout(T0 + SEC, &mut out);
    assert_eq!(announcements(&out).len(), 1, "not before 2 s");
    p.handle_timeout(T0 + 2 * SEC, &mut out);
    let sent = announcements(&out);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1], sent[0]);
    for s in 3..10 {
        p.handle_timeout(T0 + s * SEC, &mut out);
    }
    assert_eq!(announcements(&out).len(), 2, "two in all");
    assert_eq!(p.counters().arp_announcements, 2);
}

#[test]
fn an_announcement_the_device_refuses_goes_at_the_next_tick() {
    struct Full;
    impl FrameSink for Full {
        fn send_frame(&mut self, _: &[u8]) -> bool {
            false
        }
    }
    let mut p = announcing_plane(config(1));
    p.handle_timeout(T0, &mut Full);
    assert_eq!(p.counters().arp_announcements, 0);
    assert!(p.counters().tx_device_refused >= 1);
    assert!(p.poll_timeout() <= T0 + ARP_TICK);
    let mut out = Out::default();
    p.handle_timeout(T0 + ARP_TICK, &mut out);
    assert_eq!(p.counters().arp_announcements, 1);
    assert_eq!(announcements(&out).len(), 1);
}
