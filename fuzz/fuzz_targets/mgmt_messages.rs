//! Management requests and responses decode totally, and the service never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pias::status::*;

/// Builds the reports the service may be asked for, from nothing.
struct Fake;

impl pias_net::mgmt::Reports for Fake {
    fn status(&self, m: &MgmtCounters) -> Status {
        Status {
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
            allocations: 0,
        }
    }
    fn proxy(&self) -> ProxyReport {
        ProxyReport::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = pias::mgmt::Response::decode(data);
    let cfg = pias::Config::example().management;
    let mut counters = MgmtCounters::default();
    let mut out = [0u8; pias::mgmt::MAX_RESPONSE];
    let from = pias::Ipv4([198, 18, 0, data.first().copied().unwrap_or(9)]);
    let _ = pias_net::mgmt::serve(data, from, &cfg, &mut counters, &Fake, &mut out);
    assert_eq!(counters.requests, 1);
});
