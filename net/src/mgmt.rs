//! The management service: answers status requests and honours shutdown
//! requests from allowed sources; everything else is counted and ignored.

use pias::config::Management;
use pias::mgmt::{Body, Op, Refusal, Request, Response, VERSION};
use pias::status::{MgmtCounters, ProxyReport, Status};
use pias::Ipv4;

/// What the caller must do after `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the first `n` bytes of the output buffer back to the requester.
    Reply(usize),
    /// Send the reply, then shut down cleanly.
    ReplyThenShutdown(usize),
    /// Send nothing (refused source or unreadable request; counted).
    Ignore,
}

/// The reports `serve` may be asked for, built only when asked.
pub trait Reports {
    /// The current status (`Op::Status`).
    fn status(&self, m: &MgmtCounters) -> Status;
    /// The proxy's counters (`Op::Proxy`).
    fn proxy(&self) -> ProxyReport;
}

/// Handles one request datagram from `from`; `reports` builds the answer to
/// an allowed status or proxy request.
pub fn serve(
    request: &[u8],
    from: Ipv4,
    cfg: &Management,
    counters: &mut MgmtCounters,
    reports: &impl Reports,
    out: &mut [u8],
) -> Action {
    counters.requests += 1;
    if !cfg.allow.iter().any(|p| p.contains(from)) {
        // No answer to strangers: the port must not become a reflector.
        counters.refused_source += 1;
        return Action::Ignore;
    }
    let req = match Request::decode(request) {
        Ok(r) => r,
        Err(_) => {
            counters.bad_requests += 1;
            return Action::Ignore;
        }
    };
    let (body, shutdown) = if req.version != VERSION {
        counters.bad_requests += 1;
        (Body::Refused(Refusal::Version), false)
    } else {
        match req.op {
            Op::Status => (Body::Status(reports.status(counters)), false),
            Op::Proxy => (Body::Proxy(reports.proxy()), false),
            Op::Shutdown if cfg.allow_shutdown => (Body::ShuttingDown, true),
            Op::Shutdown => {
                counters.refused_shutdown += 1;
                (Body::Refused(Refusal::ShutdownDisabled), false)
            }
        }
    };
    let resp = Response {
        version: VERSION,
        nonce: req.nonce,
        body,
    };
    match resp.encode(out) {
        Ok(n) if shutdown => Action::ReplyThenShutdown(n),
        Ok(n) => Action::Reply(n),
        Err(_) => {
            counters.reply_failures += 1;
            Action::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pias::mgmt::MAX_RESPONSE;
    use pias::status::{ClockInfo, ClockSource, IdleCounters, NetCounters};
    use pias::Config;

    struct Fake;
    impl Reports for Fake {
        fn status(&self, m: &MgmtCounters) -> Status {
            status(m)
        }
        fn proxy(&self) -> ProxyReport {
            let mut r = ProxyReport::default();
            r.data.rx_client = 7;
            r
        }
    }

    fn status(m: &MgmtCounters) -> Status {
        Status {
            node_id: 1,
            name: "pias-1".try_into().unwrap(),
            uptime_ms: 5,
            clock: ClockInfo {
                source: ClockSource::Cpuid,
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

    fn ask(op: Op, from: [u8; 4], cfg: &Management, c: &mut MgmtCounters) -> (Action, Vec<u8>) {
        let mut q = [0u8; 64];
        let n = Request {
            version: VERSION,
            nonce: 42,
            op,
        }
        .encode(&mut q)
        .unwrap();
        let mut out = vec![0u8; MAX_RESPONSE];
        let a = serve(&q[..n], Ipv4(from), cfg, c, &Fake, &mut out);
        (a, out)
    }

    #[test]
    fn status_for_allowed_sources_only() {
        let cfg = Config::example().management;
        let mut c = MgmtCounters::default();
        let (a, out) = ask(Op::Status, [198, 18, 0, 9], &cfg, &mut c);
        let Action::Reply(n) = a else { panic!("{a:?}") };
        let r = Response::decode(&out[..n]).unwrap();
        assert_eq!(r.nonce, 42);
        match r.body {
            Body::Status(s) => assert_eq!(s.mgmt.requests, 1),
            other => panic!("{other:?}"),
        }
        let (a, _) = ask(Op::Status, [10, 0, 0, 1], &cfg, &mut c);
        assert_eq!(a, Action::Ignore);
        assert_eq!(c.refused_source, 1);
    }

    #[test]
    fn proxy_counters_for_allowed_sources() {
        let cfg = Config::example().management;
        let mut c = MgmtCounters::default();
        let (a, out) = ask(Op::Proxy, [198, 18, 0, 9], &cfg, &mut c);
        let Action::Reply(n) = a else { panic!("{a:?}") };
        match Response::decode(&out[..n]).unwrap().body {
            Body::Proxy(r) => assert_eq!(r.data.rx_client, 7),
            other => panic!("{other:?}"),
        }
        let (a, _) = ask(Op::Proxy, [10, 0, 0, 1], &cfg, &mut c);
        assert_eq!(a, Action::Ignore);
    }

    #[test]
    fn shutdown_obeys_the_switch() {
        let mut cfg = Config::example().management;
        let mut c = MgmtCounters::default();
        assert!(matches!(
            ask(Op::Shutdown, [198, 18, 0, 9], &cfg, &mut c).0,
            Action::ReplyThenShutdown(_)
        ));
        cfg.allow_shutdown = false;
        let (a, out) = ask(Op::Shutdown, [198, 18, 0, 9], &cfg, &mut c);
        let Action::Reply(n) = a else { panic!("{a:?}") };
        assert_eq!(
            Response::decode(&out[..n]).unwrap().body,
            Body::Refused(Refusal::ShutdownDisabled)
        );
        assert_eq!(c.refused_shutdown, 1);
    }

    #[test]
    fn garbage_and_wrong_versions_are_counted() {
        let cfg = Config::example().management;
        let mut c = MgmtCounters::default();
        let mut out = vec![0u8; MAX_RESPONSE];
        assert_eq!(
            serve(
                b"junk",
                Ipv4([198, 18, 0, 9]),
                &cfg,
                &mut c,
                &Fake,
                &mut out
            ),
            Action::Ignore
        );
        let mut q = [0u8; 64];
        let n = Request {
            version: 99,
            nonce: 1,
            op: Op::Status,
        }
        .encode(&mut q)
        .unwrap();
        let a = serve(
            &q[..n],
            Ipv4([198, 18, 0, 9]),
            &cfg,
            &mut c,
            &Fake,
            &mut out,
        );
        let Action::Reply(n) = a else { panic!("{a:?}") };
        assert_eq!(
            Response::decode(&out[..n]).unwrap().body,
            Body::Refused(Refusal::Version)
        );
        assert_eq!(c.bad_requests, 2);
    }
}
