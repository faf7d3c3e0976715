//! Any bytes as BFD control packets (the input cut into 24..=40-byte pieces,
//! each a packet, a time step between): parsing is total, a session never
//! panics, and every packet it sends parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias_bgp::bfd::{BfdConfig, BfdSession, Control};

fuzz_target!(|data: &[u8]| {
    let _ = Control::parse(data);
    let mut s = BfdSession::new(
        BfdConfig {
            local_disc: 1,
            desired_min_tx: 100_000,
            required_min_rx: 100_000,
            detect_mult: 3,
        },
        0,
    );
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&step, tail)) = rest.split_first() {
        let n = (24 + usize::from(step % 17)).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        rest = tail;
        now += u64::from(step) * 10_000;
        let _ = s.handle_packet(now, packet);
        s.handle_timeout(now);
        if let Some(p) = s.poll_transmit(now) {
            assert!(Control::parse(&p).is_ok(), "we send what we parse");
        }
        assert!(s.poll_timeout() + 2_000_000 >= now);
    }
});
