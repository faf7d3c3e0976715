//! BFD tests: two sessions wired back to back come Up; silence or a Down
//! from the neighbour brings one Down; every malformed packet is refused.

use super::*;

const MS: u64 = 1_000;

fn cfg(disc: u32) -> BfdConfig {
    BfdConfig {
        local_disc: disc,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
        detect_mult: 3,
    }
}

/// Two sessions exchanging packets every millisecond of simulated time
/// until `until`, `b` silent when `b_mute`.
fn run(a: &mut BfdSession, b: &mut BfdSession, from: u64, until: u64, b_mute: bool) {
    let mut now = from;
    while now <= until {
        a.handle_timeout(now);
        b.handle_timeout(now);
        if let Some(p) = a.poll_transmit(now) {
            b.handle_packet(now, &p).unwrap();
        }
        if let Some(p) = b.poll_transmit(now) {
            if !b_mute {
                a.handle_packet(now, &p).unwrap();
            }
        }
        now += MS;
    }
}

/// A packet from discriminator 9 with our timers, in `state`, with
/// `your_disc`; callers change the rest with struct update.
fn packet(state: BfdState, your_disc: u32) -> Control {
    Control {
        diag: 0,
        state,
        poll: false,
        fin: false,
        detect_mult: 3,
        my_disc: 9,
        your_disc,
        desired_min_tx: 1_000_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    }
}

#[test]
fn two_sessions_come_up_and_speed_up() {
    let (mut a, mut b) = (BfdSession::new(cfg(1), 0), BfdSession::new(cfg(2), 0));
    run(&mut a, &mut b, 0, 3_000 * MS, false);
    assert_eq!((a.state(), b.state()), (BfdState::Up, BfdState::Up));
    assert_eq!(a.detection_time(), Some(300 * MS));
    // Once up, about ten packets a second each way (75–100 ms apart).
    let sent = a.counters().tx;
    run(&mut a, &mut b, 3_001 * MS, 4_000 * MS, false);
    let per_s = a.counters().tx - sent;
    assert!((10..=14).contains(&per_s), "{per_s} packets in a second");
}

#[test]
fn silence_is_detected_within_the_detection_time() {
    let (mut a, mut b) = (BfdSession::new(cfg(1), 0), BfdSession::new(cfg(2), 0));
    run(&mut a, &mut b, 0, 3_000 * MS, false);
    assert_eq!(a.state(), BfdState::Up);
    let mut now = 3_001 * MS;
    while a.state() == BfdState::Up {
        run(&mut a, &mut b, now, now, true);
        now += MS;
        assert!(now < 4_000 * MS, "never detected");
    }
    let took = now - 3_001 * MS;
    assert!(took <= 300 * MS + MS, "detected after {took} us");
    assert!(took >= 200 * MS, "detected too early: {took} us");
    assert_eq!(a.counters().downs, 1);
    // The next packet says why.
    let mut p = None;
    while p.is_none() {
        p = a.poll_transmit(now);
        now += MS;
    }
    let c = Control::parse(&p.unwrap()).unwrap();
    assert_eq!((c.state, c.diag, c.your_disc), (BfdState::Down, 1, 0));
}

#[test]
fn a_neighbour_going_down_takes_us_down() {
    let (mut a, mut b) = (BfdSession::new(cfg(1), 0), BfdSession::new(cfg(2), 0));
    run(&mut a, &mut b, 0, 3_000 * MS, false);
    let down = Control {
        diag: 7,
        my_disc: 2,
        desired_min_tx: 100_000,
        ..packet(BfdState::AdminDown, 1)
    };
    a.handle_packet(3_001 * MS, &down.emit()).unwrap();
    assert_eq!(a.state(), BfdState::Down);
    assert_eq!(a.counters().downs, 1);
    assert!(a.neighbour_admin_down(), "AdminDown is not a path failure");
    let (mut c, mut d) = (BfdSession::new(cfg(3), 0), BfdSession::new(cfg(4), 0));
    run(&mut c, &mut d, 0, 3_000 * MS, false);
    run(&mut c, &mut d, 3_001 * MS, 4_000 * MS, true);
    assert_eq!(c.state(), BfdState::Down);
    assert!(!c.neighbour_admin_down(), "silence is a failure");
}

#[test]
fn malformed_packets_are_refused_and_counted() {
    let good = packet(BfdState::Down, 0);
    let mut s = BfdSession::new(cfg(1), 0);
    let patch = |f: &dyn Fn(&mut [u8; 24])| {
        let mut b = good.emit();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>, BfdError)> = vec![
        ("short", good.emit()[..23].to_vec(), BfdError::Length),
        (
            "version 0",
            patch(&|b| b[0] &= 0x1f).to_vec(),
            BfdError::Version,
        ),
        (
            "length 23",
            patch(&|b| b[3] = 23).to_vec(),
            BfdError::Length,
        ),
        (
            "length 40",
            patch(&|b| b[3] = 40).to_vec(),
            BfdError::Length,
        ),
        (
            "auth bit",
            patch(&|b| b[1] |= 0x04).to_vec(),
            BfdError::Auth,
        ),
        (
            "multiplier 0",
            patch(&|b| b[2] = 0).to_vec(),
            BfdError::Field,
        ),
        (
            "multipoint",
            patch(&|b| b[1] |= 0x01).to_vec(),
            BfdError::Field,
        ),
        (
            "my disc 0",
            patch(&|b| b[4..8].fill(0)).to_vec(),
            BfdError::Field,
        ),
        (
            "Up without your disc",
            patch(&|b| b[1] = 3 << 6).to_vec(),
            BfdError::Discriminator,
        ),
        (
            "someone else's disc",
            patch(&|b| b[8..12].copy_from_slice(&77u32.to_be_bytes())).to_vec(),
            BfdError::Discriminator,
        ),
    ];
    for (i, (name, bytes, want)) in cases.iter().enumerate() {
        assert_eq!(s.handle_packet(0, bytes), Err(*want), "{name}");
        assert_eq!(s.counters().rx_bad, i as u64 + 1);
        assert_eq!(s.state(), BfdState::Down);
    }
    assert_eq!(Control::parse(&good.emit()), Ok(good));
}

#[test]
fn a_poll_is_answered_with_a_final_at_once() {
    let mut s = BfdSession::new(cfg(1), 0);
    let _ = s.poll_transmit(0);
    let poll = Control {
        poll: true,
        ..packet(BfdState::Down, 0)
    };
    s.handle_packet(10 * MS, &poll.emit()).unwrap();
    let c = Control::parse(&s.poll_transmit(10 * MS).expect("at once")).unwrap();
    assert!(c.fin && !c.poll);
}

fn control() -> impl proptest::strategy::Strategy<Value = Control> {
    use proptest::prelude::*;
    (
        0u8..4,
        any::<bool>(),
        any::<bool>(),
        1u8..5,
        prop_oneof![Just(0u32), Just(1), any::<u32>()],
        prop_oneof![Just(0u32), Just(100_000), Just(1_000_000), any::<u32>()],
        prop_oneof![Just(0u32), Just(100_000), any::<u32>()],
    )
        .prop_map(|(st, poll, fin, mult, your, tx, rx)| Control {
            diag: 0,
            state: BfdState::from_code(st),
            poll,
            fin,
            detect_mult: mult,
            my_disc: 9,
            your_disc: your,
            desired_min_tx: tx,
            required_min_rx: rx,
            required_min_echo_rx: 0,
        })
}

proptest::proptest! {
    /// Well-formed packets in any order and at any times: the session moves
    /// through its states, and what it sends is always well formed, never Up
    /// or Init without the neighbour's discriminator, and never Up without a
    /// packet from it within the detection time.
    #[test]
    fn any_packet_order_keeps_the_invariants(
        steps in proptest::collection::vec((control(), 0u64..1_000_000), 0..60)
    ) {
        let mut s = BfdSession::new(cfg(1), 0);
        let mut now = 0;
        let mut last_rx = None;
        for (c, dt) in steps {
            now += dt;
            s.handle_timeout(now);
            if s.handle_packet(now, &c.emit()).is_ok() {
                last_rx = Some(now);
            }
            if let Some(p) = s.poll_transmit(now) {
                let sent = Control::parse(&p);
                proptest::prop_assert!(sent.is_ok(), "{sent:?}");
                let sent = sent.unwrap();
                if matches!(sent.state, BfdState::Up | BfdState::Init) {
                    proptest::prop_assert_ne!(sent.your_disc, 0);
                }
            }
            if s.state() == BfdState::Up {
                let d = s.detection_time().unwrap_or(0);
                proptest::prop_assert!(last_rx.is_some_and(|t| now <= t + d), "Up without hearing the neighbour");
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn random_packets_and_times_never_panic(
        steps in proptest::collection::vec((proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0u64..2_000_000), 0..50)
    ) {
        let mut s = BfdSession::new(cfg(1), 0);
        let mut now = 0;
        for (bytes, dt) in steps {
            now += dt;
            let _ = s.handle_packet(now, &bytes);
            s.handle_timeout(now);
            if let Some(p) = s.poll_transmit(now) {
                proptest::prop_assert!(Control::parse(&p).is_ok() || s.state() != BfdState::Up);
            }
            proptest::prop_assert!(s.poll_timeout() >= now.saturating_sub(2_000_000));
        }
    }
}

#[test]
fn intervals_are_jittered_between_75_and_100_percent() {
    let (mut a, mut b) = (BfdSession::new(cfg(1), 0), BfdSession::new(cfg(2), 0));
    run(&mut a, &mut b, 0, 3_000 * MS, false);
    assert_eq!(a.state(), BfdState::Up);
    let (tx0, rx0, ups) = (a.counters().tx, a.counters().rx, a.counters().ups);
    assert_eq!(ups, 1);
    // Send times of a's next 60 packets (b answering).
    let mut times = Vec::new();
    let mut now = 3_001 * MS;
    while times.len() < 60 {
        b.handle_timeout(now);
        a.handle_timeout(now);
        if let Some(p) = a.poll_transmit(now) {
            times.push(now);
            b.handle_packet(now, &p).unwrap();
        }
        if let Some(p) = b.poll_transmit(now) {
            a.handle_packet(now, &p).unwrap();
        }
        now += MS;
    }
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for g in &gaps {
        assert!((75 * MS..=101 * MS).contains(g), "gap {g} us: {gaps:?}");
    }
    let distinct: std::collections::HashSet<_> = gaps.iter().collect();
    assert!(distinct.len() >= 5, "hardly jittered: {gaps:?}");
    assert_eq!(a.counters().tx, tx0 + 60);
    assert!(a.counters().rx > rx0);
    assert_eq!(a.counters().rx_bad, 0);
}

#[test]
fn a_single_multiplier_jitters_75_to_90_percent_and_silence_of_a_neighbour_that_wants_none() {
    let one = BfdConfig {
        detect_mult: 1,
        ..cfg(1)
    };
    let mut s = BfdSession::new(one, 0);
    assert_eq!(s.detection_time(), None, "nothing heard, no detection time");
    let mut times = Vec::new();
    let mut now = 0;
    while times.len() < 30 {
        if s.poll_transmit(now).is_some() {
            times.push(now);
        }
        now += MS;
    }
    for w in times.windows(2) {
        let g = w[1] - w[0];
        assert!(
            (750 * MS..=901 * MS).contains(&g),
            "gap {g} us (1 s before Up)"
        );
    }
    // A neighbour whose Required Min RX is 0 wants no packets: none go.
    let quiet = Control {
        required_min_rx: 0,
        ..packet(BfdState::Down, 0)
    };
    let mut s = BfdSession::new(cfg(1), 0);
    s.handle_packet(0, &quiet.emit()).unwrap();
    let sent = (0..5_000)
        .filter(|t| s.poll_transmit(t * MS).is_some())
        .count();
    assert_eq!(sent, 0, "packets to a neighbour that wants none");
}
