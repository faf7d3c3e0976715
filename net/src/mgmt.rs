//! The management service: answers authenticated status and proxy requests
//! and honours authenticated shutdown requests from allowed sources; every
//! other datagram is counted by its reason and gets no answer at all.

use pias::addr::Group;
use pias::config::Management;
use pias::mgmt::{Body, MgmtError, Op, Refusal, Request, Response, FRESHNESS_MS, VERSION};
use pias::replay::{NonceCache, NonceError};
use pias::status::{GroupReport, MgmtCounters, ProxyReport, RoutingReport, Status};
use pias::Ipv4;

/// Nonces the service remembers at once: each for `FRESHNESS_MS` past its
/// request's time, so it takes 6,553 requests a second sustained; beyond
/// that a request is refused (`replay_full`), never replayable. About 2 MB.
pub const REPLAY_CAPACITY: usize = 65_536;

/// What the caller must do after `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the first `n` bytes of the output buffer back to the requester.
    Reply(usize),
    /// Send the reply, then shut down cleanly.
    ReplyThenShutdown(usize),
    /// Start a drain, then send the reply.
    DrainThenReply(usize),
    /// End a drain, then send the reply.
    UndrainThenReply(usize),
    /// Send nothing (refused or unauthenticated; counted).
    Ignore,
}

/// What follows an accepted request.
enum Then {
    Nothing,
    Shutdown,
    Drain,
    Undrain,
}

/// The reports `serve` may be asked for, built only when asked.
pub trait Reports {
    /// The current status (`Op::Status`).
    fn status(&self, m: &MgmtCounters) -> Status;
    /// The proxy's counters (`Op::Proxy`).
    fn proxy(&self) -> ProxyReport;
    /// What BGP is doing (`Op::Routing`, `Op::Drain`, `Op::Undrain`).
    fn routing(&self) -> RoutingReport;
    /// What the proxy knows of group `g` (`Op::Group`).
    fn group(&self, g: &Group) -> GroupReport;
}

/// The service: its configuration and the nonces of recent requests.
pub struct Service {
    /// Who may ask, with which key, and whether shutdown is allowed.
    pub cfg: Management,
    replay: NonceCache,
}

impl Service {
    /// A service for `cfg` remembering up to `REPLAY_CAPACITY` nonces
    /// (reserved now).
    pub fn new(cfg: Management) -> Service {
        Service::with_capacity(cfg, REPLAY_CAPACITY)
    }

    /// A service for `cfg` remembering up to `cap` nonces.
    pub fn with_capacity(cfg: Management, cap: usize) -> Service {
        Service {
            cfg,
            replay: NonceCache::with_capacity(cap),
        }
    }

    /// Nonces remembered now, and the most it can.
    pub fn replay_fill(&self) -> (usize, usize) {
        (self.replay.len(), self.replay.capacity())
    }

    /// Handles one request datagram from `from` at `now_ms` (Unix time, ms).
    /// In order: the source must be in `management.allow`; the datagram's MAC
    /// must verify under `management.key` (nothing else of it is read
    /// before); it must be of this version (an authentic request of another
    /// version is refused, signed, if the refusal is no longer than the
    /// request); its time within `FRESHNESS_MS` of `now_ms`; its nonce unseen.
    /// Only then is `reports` asked or a shutdown granted; the answer is
    /// sealed with the key.
    pub fn serve(
        &mut self,
        request: &[u8],
        from: Ipv4,
        now_ms: u64,
        counters: &mut MgmtCounters,
        reports: &impl Reports,
        out: &mut [u8],
    ) -> Action {
        let cfg = &self.cfg;
        counters.requests += 1;
        if !cfg.allow.iter().any(|p| p.contains(from)) {
            // No answer to strangers: the port must not become a reflector.
            counters.refused_source += 1;
            return Action::Ignore;
        }
        let req = match Request::open(&cfg.key, request) {
            Ok(r) => r,
            Err(MgmtError::BadMac) => {
                counters.bad_mac += 1;
                return Action::Ignore;
            }
            Err(MgmtError::Version { nonce, .. }) => {
                counters.bad_version += 1;
                let refusal = Response {
                    version: VERSION,
                    nonce,
                    body: Body::Refused(Refusal::Version),
                };
                return match refusal.seal(&cfg.key, out) {
                    // Never more bytes out than in, even to an authentic peer.
                    Ok(n) if n <= request.len() => Action::Reply(n),
                    _ => Action::Ignore,
                };
            }
            Err(_) => {
                counters.bad_requests += 1;
                return Action::Ignore;
            }
        };
        if req.unix_ms.abs_diff(now_ms) > FRESHNESS_MS {
            counters.stale += 1;
            return Action::Ignore;
        }
        let expires = req.unix_ms.saturating_add(FRESHNESS_MS);
        match self.replay.insert(req.nonce, expires, now_ms) {
            Ok(()) => {}
            Err(NonceError::Replayed) => {
                counters.replayed += 1;
                return Action::Ignore;
            }
            Err(NonceError::Full) => {
                counters.replay_full += 1;
                return Action::Ignore;
            }
        }
        let mut then = Then::Nothing;
        let body = match req.op {
            Op::Status => Body::Status(reports.status(counters)),
            Op::Proxy => Body::Proxy(reports.proxy()),
            Op::Routing => Body::Routing(reports.routing()),
            Op::Group(g) => Body::Group(reports.group(&g)),
            Op::Drain | Op::Undrain => {
                let mut r = reports.routing();
                if r.enabled {
                    let drain = req.op == Op::Drain;
                    r.draining = drain;
                    then = if drain { Then::Drain } else { Then::Undrain };
                    Body::Routing(r)
                } else {
                    counters.refused_no_bgp += 1;
                    Body::Refused(Refusal::NoBgp)
                }
            }
            Op::Shutdown if cfg.allow_shutdown => {
                then = Then::Shutdown;
                Body::ShuttingDown
            }
            Op::Shutdown => {
                counters.refused_shutdown += 1;
                Body::Refused(Refusal::ShutdownDisabled)
            }
        };
        let resp = Response {
            version: VERSION,
            nonce: req.nonce,
            body,
        };
        match resp.seal(&cfg.key, out) {
            Ok(n) => match then {
                Then::Nothing => Action::Reply(n),
                Then::Shutdown => Action::ReplyThenShutdown(n),
                Then::Drain => Action::DrainThenReply(n),
                Then::Undrain => Action::UndrainThenReply(n),
            },
            Err(_) => {
                counters.reply_failures += 1;
                Action::Ignore
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pias::mgmt::{MAX_RESPONSE, REQUEST_LEN};
    use pias::status::{ClockInfo, ClockSource, IdleCounters, LoopMode, NetCounters};
    use pias::wire::Key;
    use pias::Config;

    const NOW: u64 = 1_780_000_000_000;
    const ALLOWED: [u8; 4] = [198, 18, 0, 9];

    struct Fake;
    impl Reports for Fake {
        fn status(&self, m: &MgmtCounters) -> Status {
            Status {
                node_id: 1,
                name: "pias-1".try_into().unwrap(),
                version: "0.1.0+test".try_into().unwrap(),
                uptime_ms: 5,
                clock: ClockInfo {
                    source: ClockSource::Cpuid,
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
            let mut r = ProxyReport::default();
            r.data.rx_client = 7;
            r
        }
        fn routing(&self) -> RoutingReport {
            RoutingReport {
                enabled: true,
                flips: 3,
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

    /// An appliance without BGP.
    struct NoBgp;
    impl Reports for NoBgp {
        fn status(&self, m: &MgmtCounters) -> Status {
            Fake.status(m)
        }
        fn proxy(&self) -> ProxyReport {
            Fake.proxy()
        }
        fn routing(&self) -> RoutingReport {
            RoutingReport::default()
        }
        fn group(&self, g: &Group) -> GroupReport {
            Fake.group(g)
        }
    }

    struct Bench {
        svc: Service,
        c: MgmtCounters,
        nonce: u64,
        bgp: bool,
    }

    impl Bench {
        fn new() -> Bench {
            Bench {
                svc: Service::with_capacity(Config::example().management, 3),
                c: MgmtCounters::default(),
                nonce: 0,
                bgp: true,
            }
        }

        fn sealed(&mut self, op: Op, unix_ms: u64, key: &Key) -> Vec<u8> {
            self.nonce += 1;
            let mut q = [0u8; REQUEST_LEN];
            let n = Request {
                nonce: self.nonce,
                unix_ms,
                op,
            }
            .seal(key, &mut q)
            .unwrap();
            q[..n].to_vec()
        }

        fn send(&mut self, bytes: &[u8], from: [u8; 4]) -> (Action, Option<Response>) {
            let mut out = vec![0u8; MAX_RESPONSE];
            let a = if self.bgp {
                self.svc
                    .serve(bytes, Ipv4(from), NOW, &mut self.c, &Fake, &mut out)
            } else {
                self.svc
                    .serve(bytes, Ipv4(from), NOW, &mut self.c, &NoBgp, &mut out)
            };
            let r = match a {
                Action::Reply(n)
                | Action::ReplyThenShutdown(n)
                | Action::DrainThenReply(n)
                | Action::UndrainThenReply(n) => {
                    Some(Response::open(&self.svc.cfg.key, &out[..n]).expect("a sealed answer"))
                }
                Action::Ignore => None,
            };
            (a, r)
        }

        fn ask(&mut self, op: Op) -> (Action, Option<Response>) {
            let key = self.svc.cfg.key.clone();
            let q = self.sealed(op, NOW, &key);
            self.send(&q, ALLOWED)
        }
    }

    #[test]
    fn authentic_requests_from_allowed_sources_are_answered_sealed() {
        let mut b = Bench::new();
        let (_, r) = b.ask(Op::Status);
        let r = r.unwrap();
        assert_eq!(r.nonce, b.nonce);
        match r.body {
            Body::Status(s) => assert_eq!(s.mgmt.requests, 1),
            other => panic!("{other:?}"),
        }
        match b.ask(Op::Proxy).1.unwrap().body {
            Body::Proxy(r) => assert_eq!(r.data.rx_client, 7),
            other => panic!("{other:?}"),
        }
        let key = b.svc.cfg.key.clone();
        let q = b.sealed(Op::Status, NOW, &key);
        assert_eq!(b.send(&q, [10, 0, 0, 1]).0, Action::Ignore);
        assert_eq!(b.c.refused_source, 1);
    }

    #[test]
    fn drain_and_undrain_need_the_key_and_bgp() {
        let mut b = Bench::new();
        let wrong = Config::example().deployment.key;
        let forged = b.sealed(Op::Drain, NOW, &wrong);
        assert_eq!(b.send(&forged, ALLOWED).0, Action::Ignore);
        assert_eq!(b.c.bad_mac, 1);
        for (op, draining) in [(Op::Drain, true), (Op::Undrain, false)] {
            let (a, r) = b.ask(op);
            match (a, op) {
                (Action::DrainThenReply(_), Op::Drain)
                | (Action::UndrainThenReply(_), Op::Undrain) => {}
                other => panic!("{other:?}"),
            }
            match r.unwrap().body {
                Body::Routing(r) => assert_eq!((r.draining, r.flips), (draining, 3)),
                other => panic!("{other:?}"),
            }
        }
        match b.ask(Op::Routing) {
            (Action::Reply(_), Some(r)) => assert!(matches!(r.body, Body::Routing(_))),
            other => panic!("{other:?}"),
        }
        let mut b = Bench::new();
        b.bgp = false;
        for op in [Op::Drain, Op::Undrain] {
            let (a, r) = b.ask(op);
            assert!(matches!(a, Action::Reply(_)), "{a:?}");
            assert_eq!(r.unwrap().body, Body::Refused(Refusal::NoBgp));
        }
        assert_eq!(b.c.refused_no_bgp, 2);
    }

    #[test]
    fn shutdown_needs_the_key_and_the_switch() {
        let mut b = Bench::new();
        let wrong = Config::example().deployment.key;
        let forged = b.sealed(Op::Shutdown, NOW, &wrong);
        assert_eq!(b.send(&forged, ALLOWED).0, Action::Ignore);
        assert_eq!(b.c.bad_mac, 1);
        assert!(matches!(
            b.ask(Op::Shutdown).0,
            Action::ReplyThenShutdown(_)
        ));
        b.svc.cfg.allow_shutdown = false;
        let (a, r) = b.ask(Op::Shutdown);
        assert!(matches!(a, Action::Reply(_)));
        assert_eq!(r.unwrap().body, Body::Refused(Refusal::ShutdownDisabled));
        assert_eq!(b.c.refused_shutdown, 1);
    }

    #[test]
    fn stale_replayed_and_overflowing_requests_get_no_answer() {
        let mut b = Bench::new();
        let key = b.svc.cfg.key.clone();
        for (t, fresh) in [
            (NOW - FRESHNESS_MS - 1, false),
            (NOW + FRESHNESS_MS + 1, false),
            (NOW - FRESHNESS_MS, true),
            (NOW + FRESHNESS_MS, true),
        ] {
            let q = b.sealed(Op::Status, t, &key);
            assert_eq!(b.send(&q, ALLOWED).0 != Action::Ignore, fresh, "at {t}");
        }
        assert_eq!(b.c.stale, 2);
        let q = b.sealed(Op::Shutdown, NOW, &key);
        assert!(matches!(
            b.send(&q, ALLOWED).0,
            Action::ReplyThenShutdown(_)
        ));
        assert_eq!(b.send(&q, ALLOWED).0, Action::Ignore);
        assert_eq!(b.c.replayed, 1);
        // Capacity 3: the three accepted nonces are all still fresh; a fourth is refused.
        let q = b.sealed(Op::Status, NOW, &key);
        assert_eq!(b.send(&q, ALLOWED).0, Action::Ignore);
        assert_eq!(b.c.replay_full, 1);
    }

    #[test]
    fn garbage_old_versions_and_later_versions() {
        let mut b = Bench::new();
        for junk in [&b"junk"[..], b"PIAQ\x02\x07\x00", &[0u8; 200]] {
            assert_eq!(b.send(junk, ALLOWED).0, Action::Ignore);
        }
        assert_eq!(b.c.bad_requests, 3);
        // The version 2 request of 7 bytes is too short to hold a MAC.
        let mut v2 = b"PIAQ\x02\x07\x00".to_vec();
        v2.resize(40, 0);
        assert_eq!(b.send(&v2, ALLOWED).0, Action::Ignore);
        assert_eq!(b.c.bad_mac, 1);
        // A later version's authentic request: a sealed refusal, no longer than it.
        let mut later = b.sealed(Op::Status, NOW, &b.svc.cfg.key.clone());
        later[4] = pias::mgmt::VERSION + 1;
        let covered = later[..later.len() - 16].to_vec();
        pias::mgmt::seal_request_bytes(&b.svc.cfg.key, &covered, &mut later).unwrap();
        let (a, r) = b.send(&later, ALLOWED);
        let Action::Reply(len) = a else {
            panic!("{a:?}")
        };
        assert!(len <= later.len());
        assert_eq!(r.unwrap().body, Body::Refused(Refusal::Version));
        assert_eq!(b.c.bad_version, 1);
    }

    #[test]
    fn nothing_unauthenticated_is_answered_and_nothing_is_larger_than_its_request() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..100))| {
            let mut b = Bench::new();
            let (a, _) = b.send(&bytes, ALLOWED);
            prop_assert_eq!(a, Action::Ignore);
        });
    }
}
