//! Tests of the metrics port: the exposition on its own, and the server over
//! smoltcp on a simulated Ethernet hub with real TCP clients.

mod exposition;
mod server;

use crate::mgmt::Reports;
use pias::status::*;

/// Reports for the tests: a given status, or a small one.
#[derive(Default)]
pub(super) struct Fake {
    pub status: Option<Status>,
    pub proxy: ProxyReport,
    pub routing: RoutingReport,
}

impl Reports for Fake {
    fn status(&self, m: &MgmtCounters) -> Status {
        if let Some(s) = &self.status {
            return s.clone();
        }
        let mut interfaces = heapless::Vec::new();
        let _ = interfaces.push(InterfaceStatus {
            name: "eth0".try_into().unwrap(),
            mac: [2, 0, 0, 0, 0, 1],
            address: "198.18.0.1/24".parse().unwrap(),
            gateway: None,
            mtu: 1500,
        });
        Status {
            node_id: 1,
            name: "pias-1".try_into().unwrap(),
            version: "0.1.0+test".try_into().unwrap(),
            uptime_ms: 5,
            clock: ClockInfo {
                source: ClockSource::Cpuid,
                tsc_khz: 1,
            },
            interfaces,
            net: NetCounters::default(),
            mgmt: *m,
            http: HttpCounters::default(),
            idle: IdleCounters::default(),
            tables: heapless::Vec::new(),
            allocations: 0,
            console_dropped: 0,
            loop_mode: LoopMode::SpinThenHalt,
        }
    }
    fn proxy(&self) -> ProxyReport {
        self.proxy
    }
    fn routing(&self) -> RoutingReport {
        self.routing.clone()
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
