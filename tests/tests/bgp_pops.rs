//! Native anycast by BGP in the three-POP lab (issue 14 §4–5): each POP's
//! router runs BIRD 2 (then FRR) with eBGP to its appliance and to the
//! other POPs' routers. Each router installs the prefix via its own appliance and each
//! POP's unmodified client lands on it (its IAP counters show it); a drain
//! under a query every 10 ms moves the prefix to the next POP without losing
//! a query; undrain brings it back; a killed appliance is withdrawn by its
//! router when the hold timer expires, and the client-visible outage is
//! measured (no BFD yet: bounded by the hold time).

use pias_qemu::pops::{Routers, TopoLab, TopoOptions};
use pias_qemu::rr::{longest_outage, DnsClient};
use pias_qemu::topo::{Topology, DNS_ANSWER, DNS_NAME, DNS_WHOAMI};
use pias_tests::{kernel, require_lab_programs, test_accel};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const AA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// One lab at a time: two three-POP labs side by side on two shared cores
/// would starve BFD's 100 ms packets and measure the host, not the failover.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());
const ANSWER: Duration = Duration::from_secs(2);
const SEC: Duration = Duration::from_secs(1);
/// The lab's BGP hold time (the minimum RFC 4271 allows): without BFD the
/// router notices a dead appliance this late.
const HOLD_S: u16 = 3;

fn client(lab: &TopoLab, pop: usize) -> DnsClient {
    let ip = lab.topology.pops[pop].client_ip();
    DnsClient::in_netns(&lab.client_ns(pop), ip, SocketAddrV4::new(AA, 53))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn with_bird_anycast_lands_at_home_drains_without_loss_and_fails_over() {
    lands_drains_fails_over(Routers::Bird, "bgp3");
}

#[test]
fn with_frr_anycast_lands_at_home_drains_without_loss_and_fails_over() {
    lands_drains_fails_over(Routers::Frr, "frr3");
}

fn lands_drains_fails_over(routers: Routers, tag: &str) {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    require_lab_programs();
    let started = Instant::now();
    let mut opts = TopoOptions::new(tag, test_accel());
    opts.agent = Some(pias_qemu::build::agent().expect("building the agent"));
    opts.routers = routers;
    opts.bgp_hold_s = HOLD_S;
    let mut lab = TopoLab::up(Topology::three_pops().unwrap(), &kernel(), &opts)
        .unwrap_or_else(|e| panic!("bringing the lab up: {e:#}"));
    eprintln!(
        "{routers:?}: BGP converged (every router via its own appliance) {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    lab.wait_agents_joined(30 * SEC)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pops = lab.topology.pops.clone();

    // ---- Each POP's client lands on its own appliance.
    for (p, pop) in pops.iter().enumerate() {
        let route = lab.anycast_route(p).unwrap();
        assert!(
            route.contains(&format!("via {} ", pop.appliance_ip())),
            "{route}"
        );
        let before: Vec<u64> = (0..pops.len())
            .map(|q| lab.proxy_report(q).unwrap().data.rx_client)
            .collect();
        let a = lab
            .dig(&lab.client_ns(p), AA, DNS_NAME)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(a, vec![DNS_ANSWER.to_string()], "dig from {}", pop.name);
        for q in 0..pops.len() {
            let now = lab.proxy_report(q).unwrap().data.rx_client;
            if q == p {
                assert!(
                    now > before[q],
                    "{}'s query did not reach its appliance",
                    pop.name
                );
            } else {
                assert_eq!(
                    now, before[q],
                    "{}'s query reached {}",
                    pop.name, pops[q].name
                );
            }
        }
    }

    // ---- Drain pop1 under a query every 10 ms: nothing lost.
    let mut probe = client(&lab, 0);
    let run = std::thread::spawn(move || {
        probe.probe(DNS_WHOAMI, 1_000, Duration::from_millis(10), ANSWER)
    });
    std::thread::sleep(SEC);
    let body = lab.mgmt(0).unwrap().drain(true).unwrap();
    assert!(
        matches!(body, pias::mgmt::Body::Routing(ref r) if r.draining),
        "{body:?}"
    );
    let moved = wait_moved_away(&lab, 0, 15 * SEC);
    let run = run.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    let lost = run.iter().filter(|p| p.answer.is_none()).count();
    eprintln!(
        "{routers:?}: drain of pop1: its router moved the prefix {:.1} s after the request (drain delay 3 s); \
         {lost} of {} queries lost [{:?}]",
        moved.as_secs_f64(),
        run.len(),
        test_accel()
    );
    assert_eq!(lost, 0, "queries lost during a drain");
    assert!(!lab.anycast_route(0).unwrap().contains("198.18.1.2"));
    let via_other = lab.proxy_report(0).unwrap().data.rx_client;
    lab.dig(&lab.client_ns(0), AA, DNS_NAME).unwrap();
    assert_eq!(
        lab.proxy_report(0).unwrap().data.rx_client,
        via_other,
        "a drained appliance gets no new clients"
    );

    // ---- Undrain: back home.
    lab.mgmt(0).unwrap().drain(false).unwrap();
    lab.wait_route_via(0, pops[0].appliance_ip(), 15 * SEC)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // ---- Kill pop2's appliance under a query every 10 ms from pop2.
    let mut probe = client(&lab, 1);
    let n = 1_500;
    let run =
        std::thread::spawn(move || probe.probe(DNS_WHOAMI, n, Duration::from_millis(10), ANSWER));
    std::thread::sleep(2 * SEC);
    lab.appliances[1].kill();
    let rerouted = wait_moved_away(&lab, 1, 20 * SEC);
    let run = run.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    let outage = longest_outage(&run);
    eprintln!(
        "{routers:?}: pop2's appliance killed: its router withdrew the route {:.2} s later (hold time {HOLD_S} s, \
         no BFD); client-visible outage {:.2} s [{:?}]",
        rerouted.as_secs_f64(),
        outage.as_secs_f64(),
        test_accel()
    );
    assert!(
        outage > Duration::ZERO,
        "the kill cost nothing: was it this POP's IAP?"
    );
    assert!(
        outage <= Duration::from_secs(u64::from(HOLD_S)) + 3 * SEC,
        "outage {outage:?} beyond the hold time and a 3 s margin"
    );
    let tail = &run[run.len() - 100..];
    assert!(
        tail.iter().all(|p| p.answer.is_some()),
        "the last second is answered"
    );
}

/// Waits until POP `p`'s router routes the anycast prefix to another POP's
/// router (not its own appliance); how long that took.
fn wait_moved_away(lab: &TopoLab, p: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let own = format!("via {} ", lab.topology.pops[p].appliance_ip());
    let others: Vec<String> = lab
        .topology
        .links
        .iter()
        .filter(|l| l.a == p || l.b == p)
        .map(|l| format!("via {} ", l.ip(l.a != p)))
        .collect();
    loop {
        let r = format!("{} ", lab.anycast_route(p).unwrap());
        if !r.contains(&own) && others.iter().any(|o| r.contains(o.as_str())) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "after {timeout:?} the route of pop{} is still {r:?}",
            p + 1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With BFD (100 ms × 3) between each appliance and its router, a killed
/// appliance is withdrawn in well under a second, whatever the hold time (9 s
/// here), and so is the client-visible outage.
#[test]
fn with_bird_and_bfd_a_killed_appliance_is_withdrawn_in_under_a_second() {
    bfd_failover(Routers::Bird, "bfd3");
}

/// FRR runs multihop BFD (RFC 5883, UDP 4784) toward a ttl-security
/// neighbour; the appliance answers on the port it is spoken to.
#[test]
fn with_frr_and_bfd_a_killed_appliance_is_withdrawn_in_under_a_second() {
    bfd_failover(Routers::Frr, "frrbfd3");
}

/// Whether POP `p`'s router has its BFD session with the appliance Up.
fn router_bfd_up(lab: &TopoLab, p: usize) -> (bool, String) {
    let out = match lab.routers {
        Routers::Frr => lab.frrs[p].vtysh("show bfd peers").unwrap_or_default(),
        _ => lab.birds[p]
            .birdc(&["show", "bfd", "sessions"])
            .unwrap_or_default(),
    };
    let up = out.contains(" Up ") || out.contains("Status: up");
    (up, out)
}

fn bfd_failover(routers: Routers, tag: &str) {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    require_lab_programs();
    let mut opts = TopoOptions::new(tag, test_accel());
    opts.agent = Some(pias_qemu::build::agent().expect("building the agent"));
    opts.routers = routers;
    opts.bgp_hold_s = 9;
    opts.bfd = true;
    let mut lab = TopoLab::up(Topology::three_pops().unwrap(), &kernel(), &opts)
        .unwrap_or_else(|e| panic!("bringing the lab up: {e:#}"));
    lab.wait_agents_joined(30 * SEC)
        .unwrap_or_else(|e| panic!("{e:#}"));
    // BFD up on both ends.
    let t = Instant::now();
    loop {
        let (up, out) = router_bfd_up(&lab, 1);
        if up {
            break;
        }
        assert!(
            t.elapsed() < 20 * SEC,
            "{routers:?}'s BFD session never came up:\n{out}\n{:?}",
            lab.mgmt(1).unwrap().routing().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = lab.mgmt(1).unwrap().routing().unwrap();
    assert_eq!(r.neighbours[0].bfd, pias::status::BfdStatus::Up, "{r:?}");

    let mut probe = client(&lab, 1);
    let run =
        std::thread::spawn(move || probe.probe(DNS_WHOAMI, 600, Duration::from_millis(10), ANSWER));
    std::thread::sleep(2 * SEC);
    lab.appliances[1].kill();
    let rerouted = wait_moved_away(&lab, 1, 10 * SEC);
    let run = run.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    let outage = longest_outage(&run);
    eprintln!(
        "{routers:?} with BFD: pop2's appliance killed, route withdrawn {:.0} ms later (hold 9 s); \
         client-visible outage {:.0} ms [{:?}]",
        rerouted.as_secs_f64() * 1e3,
        outage.as_secs_f64() * 1e3,
        test_accel()
    );
    assert!(
        outage > Duration::ZERO,
        "the kill cost nothing: was it this POP's IAP?"
    );
    assert!(outage < SEC, "outage {outage:?} with BFD");
}
