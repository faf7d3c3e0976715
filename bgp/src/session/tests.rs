//! FSM tests: a scripted peer (the bytes a router would send) drives one
//! session through establishment, route changes, errors and timers.

use super::*;
use crate::wire::{code, Message, Notification, GRACEFUL_SHUTDOWN};
use proptest::prelude::*;

const ANYCAST: Prefix = Prefix {
    addr: [203, 0, 113, 0],
    len: 24,
};
const PEER_AS: u32 = 65000;

fn cfg() -> SessionConfig {
    SessionConfig {
        local_as: 65001,
        router_id: [198, 18, 0, 2],
        peer_as: PEER_AS,
        hold_time: 9,
        passive: false,
        next_hop: [198, 18, 0, 2],
        connect_retry: 5_000,
    }
}

fn peer_open(asn: u32, hold: u16) -> Vec<u8> {
    open_from(asn, hold, [198, 18, 0, 1])
}

/// An OPEN from `asn` with identifier `bgp_id`.
fn open_from(asn: u32, hold: u16, bgp_id: [u8; 4]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let n = OpenRepr {
        asn,
        hold_time: hold,
        bgp_id,
    }
    .emit(&mut b)
    .unwrap();
    b.truncate(n);
    b
}

fn keepalive() -> Vec<u8> {
    let mut b = vec![0u8; 19];
    emit_keepalive(&mut b).unwrap();
    b
}

/// Takes what the session sent, as (type, bytes) per message.
fn sent(s: &mut Session) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = s.transmit().to_vec();
    s.consume(rest.len());
    while let Ok(Some(n)) = frame(&rest) {
        out.push(rest[..n].to_vec());
        rest.drain(..n);
    }
    assert!(rest.is_empty(), "only whole messages are sent");
    out
}

fn kinds(msgs: &[Vec<u8>]) -> Vec<u8> {
    msgs.iter().map(|m| m[18]).collect()
}

fn notification_of(msgs: &[Vec<u8>]) -> (u8, u8) {
    let m = msgs.iter().find(|m| m[18] == 3).expect("a NOTIFICATION");
    match Message::parse(m) {
        Ok(Message::Notification(Notification { code, subcode, .. })) => (code, subcode),
        other => panic!("{other:?}"),
    }
}

/// A session brought to Established at t=0 with a hold time of 9 s.
fn established() -> Session {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    assert_eq!(s.state(), State::Idle);
    s.handle_timeout(0);
    assert_eq!(s.state(), State::Connect);
    assert!(s.needs_transport());
    s.handle_connected(0);
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(kinds(&sent(&mut s)), [1]);
    s.handle_bytes(0, &peer_open(PEER_AS, 90));
    assert_eq!(s.state(), State::OpenConfirm);
    assert_eq!(s.hold_time(), 9, "the smaller hold time wins");
    assert_eq!(kinds(&sent(&mut s)), [4]);
    s.handle_bytes(0, &keepalive());
    assert_eq!(s.state(), State::Established);
    s
}

fn announced(msgs: &[Vec<u8>]) -> Vec<(Vec<Prefix>, Vec<Prefix>, bool)> {
    msgs.iter()
        .filter_map(|m| match Message::parse(m) {
            Ok(Message::Update(u)) => Some((
                u.announced().collect(),
                u.withdrawn().collect(),
                u.attributes()
                    .windows(4)
                    .any(|w| w == GRACEFUL_SHUTDOWN.to_be_bytes()),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn establishes_and_announces_the_wanted_route() {
    let mut s = established();
    assert!(sent(&mut s).is_empty(), "nothing wanted, nothing sent");
    s.set_route(Route::Announced(Attrs::default()));
    assert_eq!(announced(&sent(&mut s)), [(vec![ANYCAST], vec![], false)]);
    // The same route again sends nothing.
    s.set_route(Route::Announced(Attrs::default()));
    assert!(sent(&mut s).is_empty());
    // Graceful shutdown re-announces with the community, then withdraws.
    s.set_route(Route::Announced(Attrs {
        graceful_shutdown: true,
        ..Attrs::default()
    }));
    s.set_route(Route::Withdrawn);
    assert_eq!(
        announced(&sent(&mut s)),
        [
            (vec![ANYCAST], vec![], true),
            (vec![], vec![ANYCAST], false)
        ]
    );
    assert_eq!(s.advertised(), Route::Withdrawn);
    assert_eq!(s.counters().updates_out, 3);
}

#[test]
fn a_route_wanted_before_establishment_is_sent_on_it() {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    s.set_route(Route::Announced(Attrs::default()));
    s.handle_timeout(0);
    s.handle_connected(0);
    s.handle_bytes(0, &peer_open(PEER_AS, 90));
    s.handle_bytes(0, &keepalive());
    let msgs = sent(&mut s);
    assert_eq!(kinds(&msgs), [1, 4, 2]);
    assert_eq!(announced(&msgs), [(vec![ANYCAST], vec![], false)]);
}

#[test]
fn keepalives_every_third_of_the_hold_time_and_expiry_ends_it() {
    let mut s = established();
    s.set_route(Route::Announced(Attrs::default()));
    sent(&mut s);
    assert_eq!(s.poll_timeout(), Some(3_000));
    s.handle_timeout(3_000);
    assert_eq!(kinds(&sent(&mut s)), [4]);
    s.handle_timeout(6_000);
    assert_eq!(kinds(&sent(&mut s)), [4]);
    // The peer's keepalive at 8 s restarts the hold timer: not expired at 9 s.
    s.handle_bytes(8_000, &keepalive());
    s.handle_timeout(9_000);
    assert_eq!(s.state(), State::Established);
    sent(&mut s);
    s.handle_timeout(17_000);
    assert_eq!(s.state(), State::Idle);
    let msgs = sent(&mut s);
    assert_eq!(notification_of(&msgs), (code::HOLD_TIMER_EXPIRED, 0));
    assert!(s.close_requested());
    assert_eq!(s.advertised(), Route::Withdrawn);
    assert_eq!(s.counters().hold_expired, 1);
    assert_eq!(s.counters().dropped, 1);
    // The caller closes; after the retry interval it connects again.
    s.handle_closed(17_000);
    assert!(!s.close_requested());
    s.handle_timeout(21_999);
    assert_eq!(s.state(), State::Idle);
    s.handle_timeout(22_000);
    assert_eq!(s.state(), State::Connect);
    assert_eq!(s.counters().connect_attempts, 2);
}

#[test]
fn hold_time_zero_sends_no_keepalives_and_never_expires() {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    s.handle_timeout(0);
    s.handle_connected(0);
    s.handle_bytes(0, &peer_open(PEER_AS, 0));
    s.handle_bytes(0, &keepalive());
    assert_eq!((s.state(), s.hold_time()), (State::Established, 0));
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(10_000_000);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn a_peer_notification_ends_it_without_one_from_us() {
    let mut s = established();
    s.set_route(Route::Announced(Attrs::default()));
    sent(&mut s);
    let mut b = [0u8; 32];
    let n = emit_notification(&mut b, &Error::new(code::CEASE, 2)).unwrap();
    s.handle_bytes(100, &b[..n]);
    assert_eq!(s.state(), State::Idle);
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.last_error_received(), Some((6, 2)));
    assert_eq!(s.counters().notifications_in, 1);
    assert!(s.close_requested());
}

#[test]
fn bad_opens_are_refused_with_the_right_code() {
    let no_as4 = {
        // An OPEN with only the multiprotocol capability.
        let mut b = peer_open(PEER_AS, 90);
        b.truncate(b.len() - 6);
        b[28] -= 6; // parameters length
        b[30] -= 6; // capabilities length
        let len = b.len() as u16;
        b[16..18].copy_from_slice(&len.to_be_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        ("wrong AS", peer_open(65999, 90), (2, 2)),
        ("hold 2", peer_open(PEER_AS, 2), (2, 6)),
        ("no 4-octet AS capability", no_as4, (2, 7)),
        ("a KEEPALIVE first", keepalive(), (5, 1)),
    ];
    for (name, bytes, want) in cases {
        let mut s = Session::new(cfg(), &[ANYCAST], 0);
        s.handle_timeout(0);
        s.handle_connected(0);
        sent(&mut s);
        s.handle_bytes(0, &bytes);
        assert_eq!(s.state(), State::Idle, "{name}");
        assert_eq!(notification_of(&sent(&mut s)), want, "{name}");
        assert_eq!(s.last_error_sent().map(|e| (e.code, e.subcode)), Some(want));
        let c = s.counters();
        assert_eq!(c.notifications_out, 1, "{name}");
        // An FSM error is not a malformed message.
        assert_eq!(c.malformed, u64::from(want.0 != 5), "{name}");
    }
}

#[test]
fn malformed_bytes_when_established_get_their_notification() {
    let mut bad_marker = keepalive();
    bad_marker[0] = 0;
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        ("marker", bad_marker, (1, 1)),
        (
            "length",
            vec![0xff; 16].into_iter().chain([0, 5, 4]).collect(),
            (1, 2),
        ),
        (
            "type",
            vec![0xff; 16].into_iter().chain([0, 19, 9]).collect(),
            (1, 3),
        ),
        ("a second OPEN", peer_open(PEER_AS, 90), (5, 3)),
    ];
    for (name, bytes, want) in cases {
        let mut s = established();
        s.set_route(Route::Announced(Attrs::default()));
        sent(&mut s);
        s.handle_bytes(1_000, &bytes);
        assert_eq!(s.state(), State::Idle, "{name}");
        assert_eq!(notification_of(&sent(&mut s)), want, "{name}");
        assert_eq!(s.advertised(), Route::Withdrawn, "{name}");
        assert_eq!(s.counters().malformed, u64::from(want.0 != 5), "{name}");
        // Bytes after the error are ignored, not parsed.
        s.handle_bytes(1_001, &keepalive());
        assert_eq!(s.counters().keepalives_in, 1, "{name}");
    }
}

#[test]
fn bytes_split_anywhere_make_the_same_messages() {
    let mut stream = peer_open(PEER_AS, 30);
    stream.extend(keepalive());
    let mut upd = vec![0u8; 128];
    let n = UpdateRepr {
        withdrawn: &[],
        announced: &[ANYCAST],
        local_as: PEER_AS,
        next_hop: [198, 18, 0, 1],
        attrs: Attrs::default(),
    }
    .emit(&mut upd)
    .unwrap();
    stream.extend_from_slice(&upd[..n]);
    for cut in 0..stream.len() {
        let mut s = Session::new(cfg(), &[ANYCAST], 0);
        s.handle_timeout(0);
        s.handle_connected(0);
        s.handle_bytes(1, &stream[..cut]);
        s.handle_bytes(2, &stream[cut..]);
        assert_eq!(s.state(), State::Established, "cut at {cut}");
        assert_eq!(s.counters().prefixes_in, 1, "cut at {cut}");
    }
}

#[test]
fn stop_sends_cease_and_stays_down_until_started() {
    let mut s = established();
    s.stop();
    assert_eq!(notification_of(&sent(&mut s)), (6, 2));
    assert_eq!(s.poll_timeout(), None);
    s.handle_closed(10);
    s.handle_timeout(1_000_000);
    assert_eq!(s.state(), State::Idle);
    s.start(1_000_000);
    s.handle_timeout(1_000_000);
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn passive_waits_in_active_and_a_slow_connect_is_retried() {
    let mut s = Session::new(
        SessionConfig {
            passive: true,
            ..cfg()
        },
        &[ANYCAST],
        0,
    );
    s.handle_timeout(0);
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.poll_timeout(), None, "a passive session waits for ever");
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    s.handle_timeout(0);
    assert_eq!(s.state(), State::Connect);
    s.handle_timeout(5_000);
    assert_eq!(s.state(), State::Idle, "the connection did not come");
    assert!(s.close_requested(), "the caller abandons the attempt");
    s.handle_closed(5_000);
    s.handle_timeout(10_000);
    assert_eq!(s.state(), State::Connect);
}

/// One thing that can happen to a session.
#[derive(Clone, Debug)]
enum Ev {
    Timeout(u64),
    Connected,
    Closed,
    Bytes(Vec<u8>),
    Open(u16),
    Keepalive,
    Route(Option<bool>),
    Stop,
    Start,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u64..20_000).prop_map(Ev::Timeout),
        Just(Ev::Connected),
        Just(Ev::Closed),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Ev::Bytes),
        prop_oneof![Just(0u16), Just(3), Just(90), any::<u16>()].prop_map(Ev::Open),
        Just(Ev::Keepalive),
        proptest::option::of(any::<bool>()).prop_map(Ev::Route),
        Just(Ev::Stop),
        Just(Ev::Start),
    ]
}

proptest! {
    /// No order of events panics; after a NOTIFICATION or a hold expiry the
    /// session is Idle and the peer has nothing from us.
    #[test]
    fn no_event_order_panics(events in proptest::collection::vec(ev(), 0..40)) {
        let mut s = Session::new(cfg(), &[ANYCAST], 0);
        let mut now = 0u64;
        for e in events {
            let before = s.counters();
            match e {
                Ev::Timeout(dt) => { now += dt; s.handle_timeout(now) }
                Ev::Connected => s.handle_connected(now),
                Ev::Closed => s.handle_closed(now),
                Ev::Bytes(b) => s.handle_bytes(now, &b),
                Ev::Open(h) => s.handle_bytes(now, &peer_open(PEER_AS, h)),
                Ev::Keepalive => s.handle_bytes(now, &keepalive()),
                Ev::Route(None) => s.set_route(Route::Withdrawn),
                Ev::Route(Some(g)) => s.set_route(Route::Announced(Attrs { graceful_shutdown: g, ..Attrs::default() })),
                Ev::Stop => s.stop(),
                Ev::Start => s.start(now),
            }
            let after = s.counters();
            if after.notifications_out > before.notifications_out
                || after.notifications_in > before.notifications_in
                || after.hold_expired > before.hold_expired
            {
                prop_assert_eq!(s.state(), State::Idle);
                prop_assert_eq!(s.advertised(), Route::Withdrawn);
            }
            // Whatever is queued is whole messages.
            let mut rest = s.transmit();
            while let Ok(Some(n)) = frame(rest) {
                prop_assert!(Message::parse(&rest[..n]).is_ok());
                rest = &rest[n..];
            }
            prop_assert!(rest.is_empty());
            if let Some(t) = s.poll_timeout() {
                prop_assert!(t >= now.saturating_sub(20_000));
            }
        }
    }
}

#[test]
fn counters_count_each_message_and_event_once() {
    let mut s = established();
    let mut upd = vec![0u8; 128];
    let n = UpdateRepr {
        withdrawn: &[ANYCAST, ANYCAST],
        announced: &[ANYCAST],
        local_as: PEER_AS,
        next_hop: [198, 18, 0, 1],
        attrs: Attrs::default(),
    }
    .emit(&mut upd)
    .unwrap();
    s.handle_bytes(10, &upd[..n]);
    s.handle_bytes(11, &keepalive());
    s.set_route(Route::Announced(Attrs::default()));
    s.handle_timeout(3_000);
    let c = s.counters();
    assert_eq!(
        (c.connect_attempts, c.established, c.opens_out, c.opens_in),
        (1, 1, 1, 1)
    );
    assert_eq!((c.keepalives_in, c.keepalives_out), (2, 2), "{c:?}");
    assert_eq!((c.updates_in, c.prefixes_in, c.withdrawals_in), (1, 1, 2));
    assert_eq!(c.updates_out, 1);
    let mut b = [0u8; 32];
    let n = emit_notification(&mut b, &Error::new(code::CEASE, 2)).unwrap();
    s.handle_bytes(20, &b[..n]);
    s.handle_bytes(21, &keepalive());
    let c = s.counters();
    assert_eq!((c.notifications_in, c.notifications_out), (1, 0));
    assert_eq!((c.dropped, c.bytes_ignored), (1, 19), "{c:?}");
    s.handle_closed(22);
    assert_eq!(s.counters().connection_lost, 0, "it was already down");
    // A connection lost without a NOTIFICATION is counted as such.
    let mut s = established();
    s.handle_closed(5);
    let c = s.counters();
    assert_eq!((c.connection_lost, c.dropped, c.malformed), (1, 1, 0));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn transport_is_wanted_only_while_connecting_or_listening() {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    assert!(!s.needs_transport(), "Idle");
    s.handle_timeout(0);
    assert!(s.needs_transport(), "Connect");
    s.handle_connected(0);
    assert!(!s.needs_transport(), "OpenSent");
    s.handle_bytes(0, &peer_open(PEER_AS, 90));
    assert!(!s.needs_transport(), "OpenConfirm");
}

#[test]
fn unexpected_messages_in_open_confirm_and_ibgp_identifier_clash() {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    s.handle_timeout(0);
    s.handle_connected(0);
    s.handle_bytes(0, &peer_open(PEER_AS, 90));
    sent(&mut s);
    s.handle_bytes(1, &peer_open(PEER_AS, 90));
    assert_eq!(
        notification_of(&sent(&mut s)),
        (5, 2),
        "an OPEN in OpenConfirm"
    );
    // iBGP with our own identifier is refused (2/3); eBGP with it is not.
    let ibgp = SessionConfig {
        peer_as: 65001,
        ..cfg()
    };
    for (c, id, want) in [
        (ibgp, [198, 18, 0, 2], Some((2, 3))),
        (cfg(), [198, 18, 0, 2], None),
    ] {
        let mut s = Session::new(c, &[ANYCAST], 0);
        s.handle_timeout(0);
        s.handle_connected(0);
        sent(&mut s);
        s.handle_bytes(1, &open_from(c.peer_as, 90, id));
        let msgs = sent(&mut s);
        match want {
            Some(w) => assert_eq!(notification_of(&msgs), w),
            None => assert_eq!(s.state(), State::OpenConfirm),
        }
    }
}

#[test]
fn a_closing_connection_delays_the_next_attempt() {
    let mut s = established();
    s.handle_timeout(17_000);
    assert!(s.close_requested());
    // The caller has not closed yet when the retry falls due: wait a tenth
    // of a second, no new attempt.
    s.handle_timeout(22_000);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.poll_timeout(), Some(22_100));
    s.handle_closed(22_050);
    s.handle_timeout(22_100);
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn bytes_before_a_connection_are_ignored_and_a_long_stream_is_read_whole() {
    let mut s = Session::new(cfg(), &[ANYCAST], 0);
    s.handle_bytes(0, &keepalive());
    let c = s.counters();
    assert_eq!((c.bytes_ignored, c.keepalives_in), (19, 0));
    // 300 KEEPALIVEs (5,700 bytes, more than the 4,096-byte buffer) at once.
    let mut s = established();
    let many: Vec<u8> = (0..300).flat_map(|_| keepalive()).collect();
    s.handle_bytes(1, &many);
    assert_eq!(s.counters().keepalives_in, 1 + 300);
    assert_eq!(s.state(), State::Established);
}
