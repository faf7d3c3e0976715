//! Any bytes from a BGP peer: the message parser returns a message or the
//! NOTIFICATION to send, and a session fed them (whole, and after a valid
//! OPEN and KEEPALIVE, split where the input says) never panics, queues only
//! whole messages, and is Idle with nothing announced after an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias_bgp::session::{Route, Session, SessionConfig, State};
use pias_bgp::wire::{emit_keepalive, frame, Attrs, Message, OpenRepr, Prefix};

fn cfg() -> SessionConfig {
    SessionConfig {
        local_as: 65001,
        router_id: [198, 18, 0, 2],
        peer_as: 65000,
        hold_time: 9,
        passive: false,
        next_hop: [198, 18, 0, 2],
        connect_retry: 5_000,
    }
}

fn check_queue(s: &Session) {
    let mut rest = s.transmit();
    while let Ok(Some(n)) = frame(rest) {
        assert!(Message::parse(&rest[..n]).is_ok(), "we send what we parse");
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "only whole messages are queued");
}

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
    let _ = frame(data);

    let prefix = Prefix { addr: [203, 0, 113, 0], len: 24 };
    let mut s = Session::new(cfg(), &[prefix], 0);
    s.set_route(Route::Announced(Attrs::default()));
    s.handle_timeout(0);
    s.handle_connected(0);
    let mut open = [0u8; 64];
    let n = OpenRepr { asn: 65000, hold_time: 90, bgp_id: [198, 18, 0, 1] }
        .emit(&mut open)
        .unwrap();
    s.handle_bytes(1, &open[..n]);
    let mut ka = [0u8; 19];
    emit_keepalive(&mut ka).unwrap();
    s.handle_bytes(2, &ka);
    assert_eq!(s.state(), State::Established);
    let cut = data.first().map_or(0, |&c| usize::from(c)).min(data.len());
    let before = s.counters();
    s.handle_bytes(3, &data[..cut]);
    s.handle_bytes(4, &data[cut..]);
    check_queue(&s);
    let after = s.counters();
    if after.notifications_out > before.notifications_out
        || after.notifications_in > before.notifications_in
    {
        assert_eq!(s.state(), State::Idle);
        assert_eq!(s.advertised(), Route::Withdrawn);
    }
    s.handle_timeout(100_000);
    check_queue(&s);
});
