//! The frame classifier is total over any bytes and any MTU.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mtu = data.first().map_or(1500, |b| 576 + u16::from(*b) * 4);
    let _ = pias_net::classify(data, [0x52, 0x54, 0, 0, 0, 2], mtu);
});
