//! The appliance speaks BGP to an unmodified BIRD 2 (issue 14): the session
//! comes up with GTSM on both sides, BIRD installs the anycast prefix via
//! the appliance once it is healthy; a drain re-announces it with the
//! GRACEFUL_SHUTDOWN community (BIRD's local preference drops to 0) and then
//! withdraws it; undrain brings it back; a clean shutdown withdraws before
//! the appliance stops; a BIRD restart re-establishes and the route returns.

use pias::config::Neighbour;
use pias::mgmt::Body;
use pias::status::{Advertised, BgpState, RoutingReport};
use pias_qemu::client::MgmtClient;
use pias_qemu::routers::{Bird, BirdConfig, BirdPeer, APPLIANCE_AS, ROUTER_AS_BASE};
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{assert_clean_exit, kernel, require_lab_programs, test_accel};
use std::time::{Duration, Instant};

const ANYCAST: &str = "203.0.113.0/24";
const SEC: Duration = Duration::from_secs(1);

/// A lab with BIRD on the bridge (198.18.0.1, AS 65001) and one appliance
/// (198.18.0.2, AS 65100) alone in its deployment, peering with it.
fn lab_with_bird(tag: &str, drain_delay_ms: u32) -> (Lab, Bird, MgmtClient) {
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
    let bird_cfg = BirdConfig {
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
    // After the tap is up: BIRD leaves a session whose link is down when it
    // starts waiting ("Error: Link down").
    let bird = Bird::start(&lab.ns, &lab.path(""), "bird", &bird_cfg, &lab.ns)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mgmt = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001).unwrap();
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
