//! Management datagrams, sealed or not: requests and responses open totally,
//! and the service never panics, never answers an unauthenticated datagram
//! and never answers with more bytes than it was sent.
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
            version: heapless::String::new(),
            uptime_ms: 0,
            clock: ClockInfo {
                source: ClockSource::QemuLapic,
                tsc_khz: 1,
            },
            interfaces: heapless::Vec::new(),
            net: NetCounters::default(),
            mgmt: *m,
            http: Default::default(),
            idle: IdleCounters::default(),
            tables: heapless::Vec::new(),
            allocations: 0,
            console_dropped: 0,
            loop_mode: LoopMode::SpinThenHalt,
        }
    }
    fn proxy(&self) -> ProxyReport {
        ProxyReport::default()
    }
    fn routing(&self) -> RoutingReport {
        RoutingReport {
            enabled: true,
            ..RoutingReport::default()
        }
    }
    fn group(&self, g: &pias::addr::Group) -> pias::status::GroupReport {
        pias::status::GroupReport {
            group: *g,
            served: true,
            raps: [2, 3].into_iter().collect(),
            iap: None,
            jap: None,
            rap: None,
        }
    }
}

const NOW_MS: u64 = 1_780_000_000_000;

fuzz_target!(|data: &[u8]| {
    let cfg = pias::Config::example().management;
    let key = cfg.key.clone();
    let _ = pias::mgmt::Response::open(&key, data);
    let mut svc = pias_net::mgmt::Service::with_capacity(cfg, 16);
    let mut counters = MgmtCounters::default();
    let mut out = [0u8; pias::mgmt::MAX_RESPONSE];
    let from = pias::Ipv4([198, 18, 0, data.first().copied().unwrap_or(9)]);
    // As it came: a forgery, unless the fuzzer finds HMAC-SHA256 collisions.
    let a = svc.serve(data, from, NOW_MS, &mut counters, &Fake, &mut out);
    assert_eq!(a, pias_net::mgmt::Action::Ignore);
    // Sealed with the right key (the bytes after the first 8 as the request,
    // the first 8 choosing the clock's offset): through every check.
    if data.len() >= 8 {
        let skew = i64::from_le_bytes(data[..8].try_into().unwrap()) % 20_000;
        let mut sealed = [0u8; 128];
        if let Ok(n) = pias::mgmt::seal_request_bytes(&key, &data[8..], &mut sealed) {
            let now = NOW_MS.saturating_add_signed(skew);
            let a = svc.serve(&sealed[..n], from, now, &mut counters, &Fake, &mut out);
            use pias_net::mgmt::Action;
            if let Action::Reply(m)
            | Action::ReplyThenShutdown(m)
            | Action::DrainThenReply(m)
            | Action::UndrainThenReply(m) = a
            {
                assert!(pias::mgmt::Response::open(&key, &out[..m]).is_ok());
            }
        }
    }
});
