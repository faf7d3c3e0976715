//! Management requests and responses decode totally, and the service never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias::status::*;

fuzz_target!(|data: &[u8]| {
    let _ = pias::mgmt::Response::decode(data);
    let cfg = pias::Config::example().management;
    let mut counters = MgmtCounters::default();
    let mut out = [0u8; pias::mgmt::MAX_RESPONSE];
    let from = pias::Ipv4([198, 18, 0, data.first().copied().unwrap_or(9)]);
    let _ = pias_net::mgmt::serve(
        data,
        from,
        &cfg,
        &mut counters,
        |m| Status {
            node_id: 1,
            name: heapless::String::new(),
            uptime_ms: 0,
            clock: ClockInfo {
                source: ClockSource::QemuLapic,
                tsc_khz: 1,
            },
            interfaces: heapless::Vec::new(),
            net: NetCounters::default(),
            mgmt: *m,
            idle: IdleCounters::default(),
            tables: heapless::Vec::new(),
        },
        &mut out,
    );
    assert_eq!(counters.requests, 1);
});
