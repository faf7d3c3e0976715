//! ICMP the data path sends and translates: fragmentation needed toward clients,
//! errors from targets about NATed flows.

use super::*;

#[test]
fn oversized_udp_gets_fragmentation_needed_with_the_carry_limit() {
    let mut lan = joined();
    let big = vec![7u8; 1300];
    lan.client_sends(Transport::Udp, 6000, udp_group(), &big);
    let icmp: Vec<&Got> = lan.client_got.iter().filter(|g| g.t.is_none()).collect();
    assert_eq!(icmp.len(), 1);
    let b = &icmp[0].seg;
    assert_eq!((b[0], b[1]), (3, 4));
    let limit = config(1).carry_limit();
    assert_eq!(u16::from_be_bytes([b[6], b[7]]) as usize, limit + 20);
    assert_eq!(icmp[0].src.ip, Ipv4([203, 0, 113, 10]));
    // The quoted header is the client's own packet.
    assert_eq!(&b[8 + 12..8 + 16], &ip(CLIENT).0);
    assert!(lan.target_got.iter().all(|g| g.dst.port != 53));
    // One byte less is carried.
    lan.client_sends(Transport::Udp, 6001, udp_group(), &big[..limit - 8]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().any(|g| g.dst.port == 53));
    // The refused packet adds its own counters and nothing else.
    let base = iap_after_one_query();
    assert_eq!(
        lan.planes[0].counters(),
        DataCounters {
            rx_to_stack: base.rx_to_stack + 1,
            client_too_big: 1,
            tx_icmp: 1,
            arp_requests: base.arp_requests + 1,
            arp_released: base.arp_released + 1,
            ..base
        }
    );
    assert_eq!(lan.planes[1].counters(), jap_after_one_query());
}

#[test]
fn port_unreachable_from_a_target_reaches_the_client_without_private_addresses() {
    let (mut lan, q) = unanswered_query();
    // The target's ICMP port unreachable quoting the JAP's packet to it.
    let mut quoted = Vec::new();
    let hdr = [0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, 17, 0, 0];
    quoted.extend_from_slice(&hdr);
    quoted.extend_from_slice(&q.src.ip.0);
    quoted.extend_from_slice(&q.dst.ip.0);
    quoted.extend_from_slice(&q.seg[..8]);
    let a = Addressing {
        src_mac: mac(TARGET),
        dst_mac: mac(3),
        src: ip(TARGET),
        dst: q.src.ip,
        ident: 3,
    };
    let mut buf = vec![0u8; 200];
    let n = packet::icmp_error(&mut buf, &a, 3, 3, 0, &quoted).unwrap();
    lan.run(VecDeque::from([(usize::MAX, buf[..n].to_vec())]));
    let icmp = lan
        .client_got
        .iter()
        .find(|g| g.t.is_none())
        .expect("translated");
    let b = &icmp.seg;
    assert_eq!((b[0], b[1]), (3, 3));
    assert_eq!(icmp.src.ip, udp_group().ip);
    // Inner: client → group, client's port → group's port; no 198.18.0.3/.20 inside.
    assert_eq!(&b[8 + 12..8 + 16], &ip(CLIENT).0);
    assert_eq!(&b[8 + 16..8 + 20], &udp_group().ip.0);
    assert_eq!(u16::from_be_bytes([b[28], b[29]]), 5555);
    assert_eq!(u16::from_be_bytes([b[30], b[31]]), 53);
    assert!(!b
        .windows(4)
        .any(|w| w == ip(TARGET).0 || w == appliance_ip(2).0));
    assert_eq!(lan.planes[1].counters().icmp_translated, 1);
    // No reply from the target: an ICMP error translated and sent instead.
    assert_eq!(lan.planes[0].counters(), iap_after_one_query());
    assert_eq!(
        lan.planes[1].counters(),
        DataCounters {
            rx_target_reply: 0,
            tx_to_client: 0,
            icmp_translated: 1,
            tx_icmp: 1,
            ..jap_after_one_query()
        }
    );
}

#[test]
fn icmp_errors_are_translated_only_when_they_quote_one_of_our_flows() {
    let (_, q) = unanswered_query();
    // The JAP's packet to the target as quoted: IPv4 header (options, if
    // `ihl` > 5) and its first 8 bytes.
    let quote = |ihl: u8, proto: u8, src: Ipv4, dst: Ipv4, sport: u16, dport: u16| {
        let mut b = vec![0x40 | ihl, 0, 0, 30, 0, 1, 0x40, 0, 64, proto, 0, 0];
        b.extend_from_slice(&src.0);
        b.extend_from_slice(&dst.0);
        b.resize(usize::from(ihl) * 4, 1); // NOP options
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&[0, 9, 0, 0]);
        b
    };
    let (me, tgt) = (q.src.ip, q.dst.ip);
    let (np, tp) = (q.src.port, q.dst.port);
    let good = quote(5, 17, me, tgt, np, tp);
    let mut v6 = good.clone();
    v6[0] = 0x65;
    let cases: Vec<(&str, u8, Vec<u8>, bool)> = vec![
        ("port unreachable", 3, good.clone(), true),
        ("time exceeded", 11, good.clone(), true),
        ("with IP options", 3, quote(6, 17, me, tgt, np, tp), true),
        (
            "too short a quote",
            3,
            good[..good.len() - 1].to_vec(),
            false,
        ),
        (
            "header length below 20",
            3,
            quote(4, 17, me, tgt, np, tp),
            false,
        ),
        ("not IPv4", 3, v6, false),
        ("not UDP or TCP", 3, quote(5, 1, me, tgt, np, tp), false),
        ("TCP for a UDP flow", 3, quote(5, 6, me, tgt, np, tp), false),
        ("not from us", 3, quote(5, 17, ip(99), tgt, np, tp), false),
        (
            "another NAT port",
            3,
            quote(5, 17, me, tgt, np + 1, tp),
            false,
        ),
        ("another target", 3, quote(5, 17, me, ip(21), np, tp), false),
        (
            "another target port",
            3,
            quote(5, 17, me, tgt, np, tp + 1),
            false,
        ),
    ];
    for (what, kind, body, translated) in cases {
        let (mut lan, _) = unanswered_query();
        let before = lan.planes[1].counters();
        let clients = lan.client_got.len();
        lan.run(VecDeque::from([(
            usize::MAX,
            icmp_from_target(me, kind, &body),
        )]));
        let after = lan.planes[1].counters();
        let moved = (
            after.icmp_translated - before.icmp_translated,
            after.icmp_unmatched - before.icmp_unmatched,
            after.tx_icmp - before.tx_icmp,
        );
        if translated {
            assert_eq!(moved, (1, 0, 1), "{what}");
            let icmp = &lan.client_got[clients].seg;
            assert_eq!(icmp[0], kind, "{what}");
            // Quoted as the client sent it: a plain 20-byte header, then the
            // client's and the group's ports.
            assert_eq!(icmp[8], 0x45, "{what}");
            assert_eq!(u16::from_be_bytes([icmp[28], icmp[29]]), 5555, "{what}");
            assert_eq!(u16::from_be_bytes([icmp[30], icmp[31]]), 53, "{what}");
        } else {
            assert_eq!(moved, (0, 1, 0), "{what}");
            assert_eq!(lan.client_got.len(), clients, "{what}");
        }
    }
    // An ICMP message that is no error (echo) and one too short to quote.
    let (mut lan, _) = unanswered_query();
    let mut out = Out::default();
    let echo = icmp_from_target(me, 8, &[0; 8]);
    assert_eq!(
        lan.planes[1].ingress(lan.now, &echo, &mut out),
        Verdict::Stack
    );
    let mut short = icmp_from_target(me, 3, &[]);
    let before = lan.planes[1].counters().icmp_unmatched;
    short.truncate(short.len() - 4);
    {
        let total = (short.len() - 14) as u16;
        let mut ip4 = Ipv4Packet::new_unchecked(&mut short[14..]);
        ip4.set_total_len(total);
        ip4.fill_checksum();
    }
    assert_eq!(
        lan.planes[1].ingress(lan.now, &short, &mut out),
        Verdict::Done
    );
    assert_eq!(lan.planes[1].counters().icmp_unmatched, before + 1);
}
