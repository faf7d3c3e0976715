//! The appliance speaks BGP to an unmodified BIRD 2 (issue 14): the session
//! comes up with GTSM on both sides, BIRD installs the anycast prefix via
//! the appliance once it is healthy; a drain re-announces it with the
//! GRACEFUL_SHUTDOWN community (BIRD's local preference drops to 0) and then
//! withdraws it; undrain brings it back; a clean shutdown withdraws before
//! the appliance stops; a BIRD restart re-establishes and the route returns.
//! A scripted peer sends malformed BGP: each gets its NOTIFICATION, counted,
//! and the appliance keeps serving and retries; a peer without TTL 255
//! (GTSM) never gets a session.

use pias::config::Neighbour;
use pias::mgmt::Body;
use pias::status::{Advertised, BgpState, RoutingReport};
use pias_qemu::client::MgmtClient;
use pias_qemu::routers::{Bird, BirdConfig, BirdPeer, Frr, APPLIANCE_AS, ROUTER_AS_BASE};
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{assert_clean_exit, kernel, require_lab_programs, test_accel};
use std::time::{Duration, Instant};

const ANYCAST: &str = "203.0.113.0/24";
const SEC: Duration = Duration::from_secs(1);

/// A lab with one appliance (198.18.0.2, AS 65100) alone in its deployment,
/// peering with the bridge's address (198.18.0.1, AS 65001), where a router
/// is to run; the router's config for that.
fn appliance_for_router(tag: &str, drain_delay_ms: u32) -> (Lab, MgmtClient, BirdConfig) {
    require_lab_programs();
    let mut lab = Lab::new(tag).unwrap();
    let mut cfg = lab.config_for(0);
    cfg.deployment.proxies.truncate(1);
    cfg.bgp.local_as = APPLIANCE_AS;
    cfg.bgp.drain_delay_ms = drain_delay_ms;
    cfg.bgp
        .neighbours
        .push(Neighbour {
            address: pias::Ipv4([198, 18, 0, 1]),
            remote_as: ROUTER_AS_BASE + 1,
            hold_time_s: 9,
            passive: false,
            bfd: false,
        })
        .unwrap();
    let router = BirdConfig {
        router_id: lab.host_ip,
        asn: ROUTER_AS_BASE + 1,
        anycast: ANYCAST.into(),
        peers: vec![BirdPeer {
            name: "pias1".into(),
            local: lab.host_ip,
            address: Lab::appliance_ip(0),
            asn: APPLIANCE_AS,
            appliance: true,
            hold_s: 9,
            bfd: false,
        }],
    };
    lab.boot(
        &kernel(),
        Spec::new(
            Machine::Microvm,
            test_accel(),
            pias_image::encode(&cfg).unwrap(),
        ),
    )
    .unwrap();
    lab.appliances[0].wait_for("ready:", 30 * SEC).unwrap();
    lab.wait_carrier(0, 5 * SEC).unwrap();
    let mgmt = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001).unwrap();
    (lab, mgmt, router)
}

/// `appliance_for_router` with BIRD on the bridge, started after the tap is
/// up: BIRD leaves a session whose link is down when it starts waiting
/// ("Error: Link down").
fn lab_with_bird(tag: &str, drain_delay_ms: u32) -> (Lab, Bird, MgmtClient) {
    let (lab, mgmt, router) = appliance_for_router(tag, drain_delay_ms);
    let bird = Bird::start(&lab.ns, &lab.path(""), "bird", &router, &lab.ns)
        .unwrap_or_else(|e| panic!("{e:#}"));
    (lab, bird, mgmt)
}

fn installed_via_appliance(b: &Bird) -> bool {
    b.kernel_route(ANYCAST)
        .is_ok_and(|r| r.contains("via 198.18.0.2"))
}

fn routing(m: &mut MgmtClient) -> RoutingReport {
    m.routing().unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn bird_installs_the_prefix_drain_withdraws_it_and_shutdown_withdraws_first() {
    let (mut lab, bird, mut mgmt) = lab_with_bird("bgp", 3_000);
    let t0 = Instant::now();
    let up = bird.wait(20 * SEC, installed_via_appliance);
    let r = routing(&mut mgmt);
    assert!(
        up,
        "BIRD did not install the prefix via the appliance:\n{r:?}\n{}\n{}\nconsole:\n{}",
        bird.birdc(&["show", "protocols", "all", "pias1"])
            .unwrap_or_default(),
        bird.log(),
        lab.appliances[0].console()
    );
    eprintln!(
        "session up and route installed {:?} after boot",
        t0.elapsed()
    );
    assert_eq!(bird.session_state("pias1").unwrap(), "Established");
    assert!(r.serving, "{r:?}");
    let n = &r.neighbours[0];
    assert_eq!(
        (n.state, n.advertised),
        (BgpState::Established, Advertised::Announced)
    );
    assert_eq!(n.hold_time_s, 9);
    assert_eq!((n.notifications_out, n.malformed), (0, 0), "{n:?}");
    let routes = bird.routes(ANYCAST).unwrap();
    assert!(routes.contains("BGP.as_path: 65100"), "{routes}");
    assert!(routes.contains("BGP.next_hop: 198.18.0.2"), "{routes}");

    // Drain: the community first, then the withdrawal after 3 s.
    match mgmt.drain(true).unwrap() {
        Body::Routing(r) => assert!(r.draining),
        other => panic!("{other:?}"),
    }
    assert!(
        bird.wait(5 * SEC, |b| b.routes(ANYCAST).is_ok_and(|r| r
            .contains("(65535,0)")
            && r.contains("BGP.local_pref: 0"))),
        "{}",
        bird.routes(ANYCAST).unwrap_or_default()
    );
    let drained = Instant::now();
    assert!(bird.wait(10 * SEC, |b| b
        .kernel_route(ANYCAST)
        .is_ok_and(|r| r.is_empty())));
    let took = drained.elapsed();
    assert!(
        took >= 2 * SEC,
        "withdrawn after the drain delay, not at once ({took:?})"
    );
    assert_eq!(
        routing(&mut mgmt).neighbours[0].advertised,
        Advertised::Nothing
    );
    assert_eq!(
        bird.session_state("pias1").unwrap(),
        "Established",
        "drain keeps the session"
    );

    // Undrain: announced again, without the community.
    mgmt.drain(false).unwrap();
    assert!(bird.wait(5 * SEC, installed_via_appliance));
    assert!(!bird.routes(ANYCAST).unwrap().contains("(65535,0)"));

    // Shutdown: BIRD hears the withdrawal (not a dead session) before the exit.
    assert_eq!(mgmt.shutdown().unwrap(), Body::ShuttingDown);
    assert_clean_exit(&mut lab, 0);
    let console = lab.appliances[0].console();
    assert!(console.contains("bgp: prefixes withdrawn"), "{console}");
    assert!(bird.kernel_route(ANYCAST).unwrap().is_empty());
    let proto = bird.birdc(&["show", "protocols", "all", "pias1"]).unwrap();
    assert!(
        proto.contains("Administrative shutdown") || proto.contains("Received: Cease"),
        "BIRD saw a Cease, not a hold-timer expiry:\n{proto}"
    );
}

#[test]
fn a_bird_restart_re_establishes_and_the_route_returns() {
    let (lab, mut bird, mut mgmt) = lab_with_bird("bgprst", 3_000);
    assert!(
        bird.wait(20 * SEC, installed_via_appliance),
        "{}",
        bird.log()
    );
    bird.restart().unwrap();
    let t = Instant::now();
    assert!(
        bird.wait(30 * SEC, installed_via_appliance),
        "{}\n{:?}\n{}",
        bird.log(),
        routing(&mut mgmt),
        lab.appliances[0].console()
    );
    eprintln!("route back {:?} after the BIRD restart", t.elapsed());
    let n = routing(&mut mgmt).neighbours[0];
    assert_eq!(n.state, BgpState::Established);
    assert!(n.established >= 2, "{n:?}");
}

/// One scripted session: the peer accepts the appliance's connection, reads
/// its OPEN, sends `bytes`, and returns the NOTIFICATION (code, subcode) the
/// appliance answered with (None if the connection closed without one).
fn answer_to(listener: &std::net::TcpListener, bytes: &[u8]) -> Option<(u8, u8)> {
    use std::io::{Read, Write};
    let end = Instant::now() + 10 * SEC;
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the appliance did not connect (again): {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Its OPEN first.
    while pias_bgp::wire::frame(&got).ok().flatten().is_none() {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let open_len = pias_bgp::wire::frame(&got).unwrap().unwrap();
    assert_eq!(got[18], 1, "the appliance opens with an OPEN");
    got.drain(..open_len);
    s.write_all(bytes).unwrap();
    loop {
        while let Ok(Some(n)) = pias_bgp::wire::frame(&got) {
            if let Ok(pias_bgp::Message::Notification(x)) = pias_bgp::Message::parse(&got[..n]) {
                return Some((x.code, x.subcode));
            }
            got.drain(..n);
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn peer_open(asn: u32, hold: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let n = pias_bgp::wire::OpenRepr {
        asn,
        hold_time: hold,
        bgp_id: [198, 18, 0, 1],
    }
    .emit(&mut b)
    .unwrap();
    b.truncate(n);
    b
}

#[test]
fn malformed_bgp_gets_the_right_notification_and_the_appliance_keeps_serving() {
    require_lab_programs();
    let mut lab = Lab::new("bgpbad").unwrap();
    let mut cfg = lab.config_for(0);
    cfg.deployment.proxies.truncate(1);
    cfg.bgp.local_as = APPLIANCE_AS;
    cfg.bgp.connect_retry_s = 1;
    cfg.bgp
        .neighbours
        .push(Neighbour {
            address: pias::Ipv4([198, 18, 0, 1]),
            remote_as: ROUTER_AS_BASE + 1,
            hold_time_s: 9,
            passive: false,
            bfd: false,
        })
        .unwrap();
    let listener = lab
        .inside(|| Ok(std::net::TcpListener::bind("198.18.0.1:179")?))
        .unwrap();
    // GTSM: the SYN-ACK too must leave with TTL 255, or the appliance drops it.
    listener.set_ttl(255).unwrap();
    listener.set_nonblocking(true).unwrap();
    lab.boot(
        &kernel(),
        Spec::new(
            Machine::Microvm,
            test_accel(),
            pias_image::encode(&cfg).unwrap(),
        ),
    )
    .unwrap();
    lab.appliances[0].wait_for("ready:", 30 * SEC).unwrap();
    let mut mgmt = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001).unwrap();
    let mut bad_marker = peer_open(ROUTER_AS_BASE + 1, 90);
    bad_marker[5] = 0;
    let header = |len: u16, ty: u8| {
        let mut b = vec![0xff; 16];
        b.extend_from_slice(&len.to_be_bytes());
        b.push(ty);
        b.resize(usize::from(len.max(19)), 0);
        b
    };
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        ("wrong marker", bad_marker, (1, 1)),
        ("length 18", header(18, 4), (1, 2)),
        ("length 5000", header(5000, 4), (1, 2)),
        ("unknown type 7", header(19, 7), (1, 3)),
        (
            "OPEN with hold time 1",
            peer_open(ROUTER_AS_BASE + 1, 1),
            (2, 6),
        ),
        ("OPEN from the wrong AS", peer_open(64999, 90), (2, 2)),
        (
            "UPDATE before the OPEN",
            {
                let mut u = header(23, 2);
                u[19..23].copy_from_slice(&[0, 0, 0, 0]);
                u
            },
            (5, 1),
        ),
    ];
    let mut malformed = 0;
    for (i, (name, bytes, want)) in cases.iter().enumerate() {
        if want.0 != 5 {
            malformed += 1;
        }
        let got = answer_to(&listener, bytes);
        assert_eq!(got, Some(*want), "{name}");
        let r = routing(&mut mgmt);
        let n = r.neighbours[0];
        assert_eq!(n.last_error_sent, Some(*want), "{name}: {n:?}");
        assert_eq!(n.notifications_out, i as u64 + 1, "{name}: {n:?}");
        assert_eq!(n.malformed, malformed, "{name}: {n:?}");
        assert_eq!(n.established, 0);
        // Still serving: the status answers.
        mgmt.status().unwrap();
    }
    // GTSM: a peer whose segments arrive with TTL 64 (not on our link, as
    // far as TTL tells) never gets a connection: its SYN-ACKs are dropped.
    listener.set_ttl(64).unwrap();
    let before = routing(&mut mgmt).gtsm_dropped;
    std::thread::sleep(4 * SEC);
    let accepted = listener.accept();
    assert!(accepted.is_err(), "a TTL-64 peer got a connection");
    let after = routing(&mut mgmt).gtsm_dropped;
    assert!(after > before, "GTSM drops counted: {before} -> {after}");
    let console = lab.appliances[0].console();
    assert!(!console.contains("PANIC"), "{console}");
}

/// The same with FRR (zebra and bgpd from Debian's frr) as the router: the
/// session comes up with GTSM, zebra installs the prefix via the appliance,
/// a drain tags it GRACEFUL_SHUTDOWN (FRR's local preference 0) and then
/// withdraws it, a bgpd crash and restart re-establishes, and a shutdown
/// withdraws before the appliance stops.
#[test]
fn frr_installs_the_prefix_drain_withdraws_it_and_a_restart_re_establishes() {
    let (mut lab, mut mgmt, router) = appliance_for_router("bgpfrr", 3_000);
    let mut frr = Frr::start(&lab.ns, &router, &lab.ns).unwrap_or_else(|e| panic!("{e:#}"));
    let via_appliance = |f: &Frr| {
        f.kernel_route(ANYCAST)
            .is_ok_and(|r| r.contains("via 198.18.0.2"))
    };
    let t0 = Instant::now();
    assert!(
        frr.wait(20 * SEC, via_appliance),
        "FRR did not install the prefix:\n{:?}\n{}\n{}",
        routing(&mut mgmt),
        frr.vtysh("show bgp summary").unwrap_or_default(),
        frr.log()
    );
    eprintln!(
        "FRR: session up and route installed {:?} after its start",
        t0.elapsed()
    );
    let n = routing(&mut mgmt).neighbours[0];
    assert_eq!(
        (n.state, n.advertised),
        (BgpState::Established, Advertised::Announced)
    );
    assert_eq!(n.notifications_out, 0, "{n:?}");

    mgmt.drain(true).unwrap();
    assert!(
        frr.wait(5 * SEC, |f| f.routes(ANYCAST).is_ok_and(|r| r
            .contains("graceful-shutdown")
            && r.contains("localpref 0"))),
        "{}",
        frr.routes(ANYCAST).unwrap_or_default()
    );
    assert!(frr.wait(10 * SEC, |f| f
        .kernel_route(ANYCAST)
        .is_ok_and(|r| r.is_empty())));
    mgmt.drain(false).unwrap();
    assert!(frr.wait(5 * SEC, via_appliance));

    frr.restart_bgpd().unwrap();
    let t = Instant::now();
    assert!(frr.wait(30 * SEC, via_appliance), "{}", frr.log());
    eprintln!("FRR: route back {:?} after a bgpd restart", t.elapsed());

    assert_eq!(mgmt.shutdown().unwrap(), Body::ShuttingDown);
    assert_clean_exit(&mut lab, 0);
    assert!(lab.appliances[0]
        .console()
        .contains("bgp: prefixes withdrawn"));
    // zebra takes the route out of the kernel a moment after bgpd has the
    // withdrawal; the session ended with a Cease, not a hold-timer expiry.
    assert!(frr.wait(2 * SEC, |f| f
        .kernel_route(ANYCAST)
        .is_ok_and(|r| r.is_empty())));
    let peer = frr.vtysh("show bgp neighbors 198.18.0.2").unwrap();
    let received = peer
        .lines()
        .find(|l| l.trim_start().starts_with("Notifications:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        received.is_some_and(|n| n >= 1),
        "FRR received no NOTIFICATION:\n{peer}"
    );
}
