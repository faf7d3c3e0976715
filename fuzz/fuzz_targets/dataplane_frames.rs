//! Any sequence of frames into the data path (one appliance, IAP and JAP):
//! never a panic, whether the frames passed `classify` or not.
#![no_main]

mod common;

use common::MAC;
use libfuzzer_sys::fuzz_target;
use pias::time::MS;
use pias_net::dataplane::FrameSink;

struct Sink(usize);
impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.0 += frame.len();
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = common::T0;
    let mut dp = common::data_plane(64, 2);
    let mut sink = Sink(0);
    let mut now = t0;
    let mut rest = data;
    // Each frame: a control byte (bit 0: must pass classify; bits 1..: ms to
    // advance), a length byte pair, then the frame.
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 1600;
        rest = &rest[3..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        now += u64::from(ctl >> 1) * 10 * MS;
        if ctl & 1 == 1 && pias_net::classify(frame, MAC, 1500).is_err() {
            continue;
        }
        dp.ingress(now, frame, &mut sink);
        if dp.poll_timeout() <= now {
            dp.handle_timeout(now, &mut sink);
        }
    }
});
