//! NAT flows end to end: replies mapped back, TCP state, idle sweeps, MSS clamp, MTU
//! and identification of what the JAP sends.

use super::*;

#[test]
fn replies_to_unknown_nat_ports_or_from_the_wrong_source_are_dropped() {
    let mut lan = joined();
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q");
    lan.advance(400 * MS);
    let nat = lan
        .target_got
        .iter()
        .find(|g| g.dst.port == 53)
        .unwrap()
        .src;
    let before = lan.client_got.len();
    // Unused NAT port.
    let f = host_udp(ip(TARGET), 53, nat.ip, nat.port + 1, b"x");
    lan.run(VecDeque::from([(usize::MAX, f)]));
    // Right port, wrong source port.
    let f = host_udp(ip(TARGET), 54, nat.ip, nat.port, b"x");
    lan.run(VecDeque::from([(usize::MAX, f)]));
    assert_eq!(lan.client_got.len(), before);
    assert_eq!(lan.planes[1].counters().drop_no_flow, 2);
    assert_eq!(lan.planes[0].counters(), iap_after_one_query());
    assert_eq!(
        lan.planes[1].counters(),
        DataCounters {
            drop_no_flow: 2,
            ..jap_after_one_query()
        }
    );
}

#[test]
fn tcp_syn_mss_is_clamped_at_the_iap_and_the_syn_ack_at_the_jap() {
    let mut lan = Lan::new();
    let (g, syn) = tcp_syn_sent(&mut lan);
    let clamp = config(1).mss_clamp();
    assert_eq!(&syn.seg[20..24], &[2, 4, (clamp >> 8) as u8, clamp as u8]);
    assert_eq!(lan.planes[0].counters().mss_clamped, 1);
    // The target's SYN-ACK (MSS 1460) to the NAT port is clamped on its way.
    let nat = syn.src;
    let f = host_tcp(
        ip(TARGET),
        80,
        nat.ip,
        nat.port,
        tcp_flags::SYN | tcp_flags::ACK,
        &[2, 4, 0x05, 0xb4],
    );
    lan.run(VecDeque::from([(usize::MAX, f)]));
    let sa = lan
        .client_got
        .last()
        .expect("the SYN-ACK reached the client");
    assert_eq!(sa.src, Endpoint { ip: g.ip, port: 80 });
    assert_eq!(&sa.seg[20..24], &[2, 4, (clamp >> 8) as u8, clamp as u8]);
    assert_eq!(lan.planes[1].counters().mss_clamped, 1);
    let clamped = |c: DataCounters| DataCounters {
        mss_clamped: 1,
        ..c
    };
    assert_eq!(lan.planes[0].counters(), clamped(iap_after_one_query()));
    assert_eq!(lan.planes[1].counters(), clamped(jap_after_one_query()));
}

#[test]
fn the_carry_limit_and_the_mss_clamp_fit_a_proxy_message_in_the_mtu() {
    for (mtu, carry, mss) in [
        (1500, 1300, 1240),
        (1400, 1272, 1212),
        (576, 448, 388),
        (100, 0, 0),
    ] {
        let c = DataPlaneConfig { mtu, ..config(1) };
        assert_eq!((c.carry_limit(), c.mss_clamp()), (carry, mss), "MTU {mtu}");
        if carry > 0 {
            // The carried segment, in a proxy message, in UDP, in IPv4: the MTU.
            let overhead = MAX_MESSAGE - MAX_CARRIED;
            assert!(packet::IP_LEN + packet::UDP_LEN + overhead + carry <= usize::from(mtu));
        }
    }
}

#[test]
fn idle_nat_flows_are_swept_once_a_second_and_counted() {
    let short = NatTimeouts {
        udp: 3 * SEC,
        ..NatTimeouts::default()
    };
    let mut lan = lan_with_jap(DataPlaneConfig {
        nat_timeouts: short,
        ..config(2)
    });
    lan.advance(10 * MS);
    lan.join(udp_group(), 1);
    lan.advance(100 * MS);
    lan.client_sends(Transport::Udp, 5555, udp_group(), b"q");
    lan.advance(50 * MS);
    let fill = |lan: &Lan| lan.planes[1].table_fill();
    assert_eq!(fill(&lan)[0], ("nat_flows", 1, 64));
    let (name, used, cap) = fill(&lan)[1];
    assert_eq!(name, "neighbours");
    assert!(used >= 2 && cap > used, "{used} of {cap}");
    // The data path wakes for its sweep at least once a second.
    assert!(lan.planes[1].poll_timeout() <= lan.now + SEC);
    lan.advance(2 * SEC);
    assert_eq!(fill(&lan)[0].1, 1, "idle 2 s of 3: kept");
    lan.advance(2 * SEC);
    assert_eq!(fill(&lan)[0].1, 0, "idle 4 s: swept");
    assert_eq!(lan.planes[1].counters().nat_expired, 1);
}

#[test]
fn each_packet_sent_has_its_own_ip_identification() {
    let mut lan = joined();
    lan.target_answers = false;
    let mut seen = Vec::new();
    for sport in [6000, 6001, 6002] {
        lan.client_sends(Transport::Udp, sport, udp_group(), b"q");
        lan.advance(20 * MS);
    }
    for g in lan.target_got.iter().filter(|g| g.dst.port == 53) {
        seen.push(g.ident);
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
}

#[test]
fn a_tcp_flow_closed_from_both_sides_ends_after_the_transitory_time() {
    let short = NatTimeouts {
        udp: 60 * SEC,
        tcp_established: 60 * SEC,
        tcp_transitory: 2 * SEC,
    };
    let mut lan = lan_with_jap(DataPlaneConfig {
        nat_timeouts: short,
        ..config(2)
    });
    let (g, syn) = tcp_syn_sent(&mut lan);
    let nat = syn.src;
    let from_target = |flags| host_tcp(ip(TARGET), 80, nat.ip, nat.port, flags, &[]);
    let from_client = |flags| host_tcp(ip(CLIENT), 7000, g.ip, g.port, flags, &[]);
    lan.run(VecDeque::from([(
        usize::MAX,
        from_target(tcp_flags::SYN | tcp_flags::ACK),
    )]));
    // Established: idle 3 s (past the transitory time) keeps it.
    lan.advance(3 * SEC);
    assert_eq!(lan.planes[1].table_fill()[0].1, 1, "established flow kept");
    // FIN from the client, then from the target: the wait shortens.
    lan.run(VecDeque::from([(
        usize::MAX,
        from_client(tcp_flags::FIN | tcp_flags::ACK),
    )]));
    lan.advance(100 * MS);
    lan.run(VecDeque::from([(
        usize::MAX,
        from_target(tcp_flags::FIN | tcp_flags::ACK),
    )]));
    lan.advance(3 * SEC);
    assert_eq!(lan.planes[1].table_fill()[0].1, 0, "closed flow swept");
    assert_eq!(lan.planes[1].counters().nat_expired, 1);
}

#[test]
fn a_packet_larger_than_the_jap_s_mtu_is_counted_not_sent() {
    let mut lan = lan_with_jap(DataPlaneConfig {
        mtu: 576,
        ..config(2)
    });
    lan.advance(10 * MS);
    lan.join(udp_group(), 1);
    lan.advance(100 * MS);
    // Within the IAP's carry limit (MTU 1500), beyond the JAP's MTU.
    lan.client_sends(Transport::Udp, 5555, udp_group(), &[7; 1000]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().all(|g| g.dst.port != 53));
    let jap = lan.planes[1].counters();
    assert_eq!((jap.tx_too_big, jap.tx_deliver), (1, 0), "{jap:?}");
    // A packet that fits the JAP's MTU still goes.
    lan.client_sends(Transport::Udp, 5556, udp_group(), &[7; 500]);
    lan.advance(400 * MS);
    assert!(lan.target_got.iter().any(|g| g.dst.port == 53));
    assert_eq!(lan.planes[1].counters().tx_deliver, 1);
}
