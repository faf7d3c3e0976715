//! The appliances doing their job in a three-POP lab (issue 12 §5): unmodified
//! clients reach real servers through the anycast address, IAP -> JAP ->
//! target and back, and the deployment behaves as a service owner expects:
//!
//! - each POP's client gets the DNS answer from 203.0.113.10:53 and the web
//!   page and a 1 MB body (sha256) from 203.0.113.10:80, from its own POP's
//!   servers (the proximity policy);
//! - the load-policy group 203.0.113.12:53 spreads one client's flows over
//!   every member, about in proportion to the members behind each JAP;
//! - a client that is itself a member is never sent to itself;
//! - 60 s of 100 queries/s to each of the two DNS groups: nothing lost;
//! - a TCP connection keeps its target while another target joins and while
//!   its own target's agent leaves gracefully; new connections go elsewhere;
//! - a killed DNS server: its agent reports it, and queries move on;
//! - a killed JAP appliance under a query every 10 ms: the client-visible
//!   outage is measured and printed (the goal is under 1 s with the default
//!   timers; the test fails above 3 s, where the old 4 s detection sat).
//!
//! One lab serves every step, in order. Needs root and the programs that
//! scripts/install.sh installs; a missing one fails the test.

use pias_qemu::lab::inside_netns;
use pias_qemu::pops::{TopoLab, TopoOptions, DNS_GROUP, DNS_LOAD_GROUP, HTTP_GROUP};
use pias_qemu::rr::{longest_outage, DnsClient, Probe};
use pias_qemu::services::{sha256_file, BIG_FILE_LEN};
use pias_qemu::topo::{Topology, DNS_ANSWER, DNS_NAME, DNS_WHOAMI};
use pias_tests::{kernel, require_lab_programs, test_accel};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// The default triangle (10, 15, 25 ms one way), with a second web server
/// at pop1 so that a web client there has a target to move to.
const TOPOLOGY: &str = r#"
pop = [
  { name = "pop1", targets = [{ services = ["dns", "http"] }, { services = ["http"] }] },
  { name = "pop2", targets = [{ services = ["dns", "http"] }] },
  { name = "pop3", targets = [{ services = ["dns", "http"] }, { services = ["dns"] }] },
]
link = [
  { pops = ["pop1", "pop2"], delay_ms = 10 },
  { pops = ["pop2", "pop3"], delay_ms = 15 },
  { pops = ["pop1", "pop3"], delay_ms = 25 },
]
"#;

/// The anycast address of the groups.
const AA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const AA_LOAD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 12);
/// How long one answer may take (TCG on a shared host).
const ANSWER: Duration = Duration::from_secs(2);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn client(lab: &TopoLab, pop: usize, server: Ipv4Addr) -> DnsClient {
    let ip = lab.topology.pops[pop].client_ip();
    DnsClient::in_netns(&lab.client_ns(pop), ip, SocketAddrV4::new(server, 53))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Which server answered `whoami.test`, asked once from a fresh socket (a
/// fresh source port: a new flow) in `ns` bound to `bind`; None if unanswered.
fn whoami_once(ns: &str, bind: Ipv4Addr, server: Ipv4Addr) -> Option<Ipv4Addr> {
    let mut c = DnsClient::in_netns(ns, bind, SocketAddrV4::new(server, 53))
        .unwrap_or_else(|e| panic!("{e:#}"));
    c.ask(DNS_WHOAMI, ANSWER)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .map(|(_, a)| a)
}

/// Asks `whoami` from `flows` fresh sockets; the answering servers, counted.
fn spread(ns: &str, bind: Ipv4Addr, server: Ipv4Addr, flows: usize) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..flows {
        let who = whoami_once(ns, bind, server).map_or("unanswered".to_string(), |a| a.to_string());
        *by.entry(who).or_default() += 1;
    }
    by
}

/// The servers that answered a probe run, counted.
fn servers(probes: &[Probe]) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for p in probes {
        let who = p
            .answer
            .map_or("unanswered".to_string(), |(_, a)| a.to_string());
        *by.entry(who).or_default() += 1;
    }
    by
}

/// The p-th percentile latency of the answered probes.
fn percentile(probes: &[Probe], p: f64) -> Duration {
    let mut v: Vec<Duration> = probes
        .iter()
        .filter_map(|p| p.answer.map(|a| a.0))
        .collect();
    v.sort_unstable();
    let i = ((p / 100.0) * v.len().saturating_sub(1) as f64).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// Whether `a` is on POP `pop`'s LAN (one of its servers).
fn at_pop(lab: &TopoLab, pop: usize, a: Ipv4Addr) -> bool {
    a.octets()[..3] == lab.topology.pops[pop].lan().octets()[..3]
}

/// Waits (bounded) until the client of `pop` is answered by one of its own
/// POP's servers on the proximity group, ten times in a row; how long that
/// took and which server.
fn wait_answered_at_home(lab: &TopoLab, pop: usize, limit: Duration) -> (Duration, Ipv4Addr) {
    let t0 = Instant::now();
    let mut c = client(lab, pop, AA);
    let mut streak = 0;
    while streak < 10 {
        let got = c
            .ask(DNS_WHOAMI, ANSWER)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let last = got.map(|(_, a)| a);
        if last.is_some_and(|a| at_pop(lab, pop, a)) {
            streak += 1;
        } else {
            streak = 0;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            t0.elapsed() < limit,
            "pop{}'s client not answered at home within {limit:?} (last: {last:?})",
            pop + 1
        );
        if streak == 10 {
            return (t0.elapsed(), last.unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
    }
    (t0.elapsed(), Ipv4Addr::UNSPECIFIED)
}

/// An HTTP/1.1 connection kept open across requests.
struct Http {
    stream: BufReader<TcpStream>,
}

impl Http {
    fn open(ns: &str, to: SocketAddrV4) -> Http {
        let stream = inside_netns(ns, move || {
            Ok(TcpStream::connect_timeout(
                &to.into(),
                Duration::from_secs(5),
            )?)
        })
        .unwrap_or_else(|e| panic!("connecting to {to}: {e:#}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Http {
            stream: BufReader::new(stream),
        }
    }

    /// GET `path` on this connection; the body.
    fn get(&mut self, path: &str) -> Vec<u8> {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: pias.test\r\nConnection: keep-alive\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let mut status = String::new();
        self.stream
            .read_line(&mut status)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(status.starts_with("HTTP/1.1 200"), "GET {path}: {status:?}");
        let mut len = None;
        loop {
            let mut line = String::new();
            self.stream
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.unwrap_or_else(|| panic!("GET {path}: no Content-Length"));
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        body
    }
}

/// The sha256 of `bytes` (hex), by the lab's own sha256sum.
fn sha256(lab: &TopoLab, bytes: &[u8]) -> String {
    let f = lab.path("sha256-input.bin");
    std::fs::write(&f, bytes).unwrap();
    sha256_file(&f).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The page's server: the address it names.
fn page_of(lab: &TopoLab, body: &[u8]) -> Ipv4Addr {
    let text = String::from_utf8_lossy(body);
    lab.web
        .iter()
        .find(|w| w.root.index == text)
        .unwrap_or_else(|| panic!("a page no lab server serves: {text}"))
        .ip
}

#[test]
fn anycast_services_through_the_appliances() {
    require_lab_programs();
    let started = Instant::now();
    let mut opts = TopoOptions::new("anycast", test_accel());
    opts.agent = Some(pias_qemu::build::agent().expect("building the agent"));
    let topo = Topology::parse(TOPOLOGY).expect("the test's topology");
    let mut lab = TopoLab::up(topo, &kernel(), &opts)
        .unwrap_or_else(|e| panic!("bringing the lab up: {e:#}"));
    lab.wait_agents_joined(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // pop1's second web server stays out of the group until the affinity step.
    let late_web = lab.agent_of(0, 1, HTTP_GROUP).unwrap();
    lab.stop_agent(late_web, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("lab up in {:.1} s", started.elapsed().as_secs_f64());
    let pops = lab.topology.pops.clone();
    let own = |p: usize| pops[p].target_ip(0);

    // ---- Proximity: every POP's client is answered by its own POP's server.
    for (p, pop) in pops.iter().enumerate() {
        let (took, server) = wait_answered_at_home(&lab, p, Duration::from_secs(90));
        eprintln!(
            "{}: answered by its own {server} after {:.1} s",
            pop.name,
            took.as_secs_f64()
        );
    }

    // ---- Unmodified dig and curl, from every POP, through 203.0.113.10.
    for (p, pop) in pops.iter().enumerate() {
        let ns = lab.client_ns(p);
        let a = lab
            .dig(&ns, AA, DNS_NAME)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            a,
            vec![DNS_ANSWER.to_string()],
            "dig @{AA} {DNS_NAME} from {}",
            pop.name
        );
        let w = lab
            .dig(&ns, AA, DNS_WHOAMI)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let home = w.len() == 1 && w[0].parse().is_ok_and(|a| at_pop(&lab, p, a));
        assert!(home, "dig @{AA} {DNS_WHOAMI} from {}: {w:?}", pop.name);
        let web = lab
            .web
            .iter()
            .find(|w| w.pop == p && w.target == 0)
            .unwrap()
            .clone();
        let index = lab
            .curl(&ns, &format!("http://{AA}/"), &format!("index-{p}.html"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            std::fs::read_to_string(index).unwrap(),
            web.root.index,
            "from {}",
            pop.name
        );
        let t0 = Instant::now();
        let big = lab
            .curl(
                &ns,
                &format!("http://{AA}/big.bin"),
                &format!("big-{p}.bin"),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        let took = t0.elapsed();
        let got = std::fs::read(&big).unwrap();
        assert_eq!(got.len(), BIG_FILE_LEN, "from {}", pop.name);
        assert_eq!(
            sha256(&lab, &got),
            web.root.big_sha256,
            "1 MB from {} arrived changed",
            pop.name
        );
        eprintln!(
            "{}: dig and curl through {AA} (1 MB intact in {:.0} ms)",
            pop.name,
            ms(took)
        );
    }

    // ---- Policies are per group: one client's 120 flows to the proximity
    // group all go to its own POP; to the load group they spread over every
    // member in proportion to the members behind each JAP (pop3 has two of
    // the four DNS servers).
    let c1 = (lab.client_ns(0), pops[0].client_ip());
    let near = spread(&c1.0, c1.1, AA, 120);
    eprintln!("120 flows from pop1 to {AA} (proximity): {near:?}");
    assert_eq!(near.get(&own(0).to_string()), Some(&120), "{near:?}");
    let load = spread(&c1.0, c1.1, AA_LOAD, 120);
    eprintln!("120 flows from pop1 to {AA_LOAD} (load): {load:?}");
    assert!(!load.contains_key("unanswered"), "{load:?}");
    let dns_servers: Vec<Ipv4Addr> = vec![own(0), own(1), own(2), pops[2].target_ip(1)];
    for s in &dns_servers {
        assert!(
            load.get(&s.to_string()).is_some_and(|n| *n >= 3),
            "{s} got too few: {load:?}"
        );
    }
    let pop3: usize = [own(2), pops[2].target_ip(1)]
        .iter()
        .map(|s| load.get(&s.to_string()).copied().unwrap_or(0))
        .sum();
    assert!(
        (36..=84).contains(&pop3),
        "pop3's share of 120 should be about half: {load:?}"
    );

    // ---- A client that is itself a member is never sent to itself.
    let me = own(0);
    let selfish = spread(&lab.target_ns(0, 0), me, AA, 30);
    eprintln!("30 flows from member {me} to {AA}: {selfish:?}");
    assert!(
        !selfish.contains_key(&me.to_string()),
        "a member was sent to itself: {selfish:?}"
    );
    assert!(!selfish.contains_key("unanswered"), "{selfish:?}");

    // ---- 60 s at 100 queries/s to each DNS group, no fault: nothing lost.
    let mut steady1 = client(&lab, 0, AA);
    let mut steady3 = client(&lab, 2, AA_LOAD);
    let far = std::thread::spawn(move || {
        steady3.probe(DNS_WHOAMI, 6_000, Duration::from_millis(10), ANSWER)
    });
    let near = steady1
        .probe(DNS_WHOAMI, 6_000, Duration::from_millis(10), ANSWER)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let far = far.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    for (what, run) in [
        ("pop1 -> proximity group", &near),
        ("pop3 -> load group", &far),
    ] {
        let lost = run.iter().filter(|p| p.answer.is_none()).count();
        eprintln!(
            "60 s at 100/s, {what}: {} sent, {lost} lost, p50 {:.2} ms, p99 {:.2} ms, by {:?}",
            run.len(),
            ms(percentile(run, 50.0)),
            ms(percentile(run, 99.0)),
            servers(run)
        );
        assert_eq!(run.len(), 6_000, "{what}");
        assert_eq!(lost, 0, "{what}: lost queries with no fault");
    }
    assert_eq!(
        servers(&near).len(),
        1,
        "one flow, one server: {:?}",
        servers(&near)
    );

    // ---- TCP affinity across a join and a graceful leave at pop1.
    let web0 = lab
        .web
        .iter()
        .find(|w| w.pop == 0 && w.target == 0)
        .unwrap()
        .clone();
    let web1 = lab
        .web
        .iter()
        .find(|w| w.pop == 0 && w.target == 1)
        .unwrap()
        .clone();
    let to80 = SocketAddrV4::new(AA, HTTP_GROUP.port);
    let mut conn = Http::open(&lab.client_ns(0), to80);
    assert_eq!(
        page_of(&lab, &conn.get("/")),
        web0.ip,
        "the only pop1 web member"
    );
    lab.restart_agent(late_web)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_agent_log(late_web, "joined", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        page_of(&lab, &conn.get("/")),
        web0.ip,
        "moved when another target joined"
    );
    let first_web = lab.agent_of(0, 0, HTTP_GROUP).unwrap();
    lab.stop_agent(first_web, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        page_of(&lab, &conn.get("/")),
        web0.ip,
        "moved when its target left"
    );
    let body = conn.get("/big.bin");
    assert_eq!(
        sha256(&lab, &body),
        web0.root.big_sha256,
        "1 MB on the kept connection"
    );
    for n in 0..5 {
        let mut fresh = Http::open(&lab.client_ns(0), to80);
        assert_eq!(
            page_of(&lab, &fresh.get("/")),
            web1.ip,
            "new connection {n} after the leave"
        );
    }
    drop(conn);
    eprintln!(
        "TCP affinity: kept {} across a join and its leave; new connections to {}",
        web0.ip, web1.ip
    );

    // ---- A killed DNS server: its agents report it, and queries move on.
    let mut probe = client(&lab, 0, AA);
    let run =
        std::thread::spawn(move || probe.probe(DNS_WHOAMI, 600, Duration::from_millis(10), ANSWER));
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = Instant::now();
    lab.kill_service(0, 0, "dnsmasq")
        .unwrap_or_else(|e| panic!("{e:#}"));
    for g in [DNS_GROUP, DNS_LOAD_GROUP] {
        let a = lab.agent_of(0, 0, g).unwrap();
        lab.wait_agent_log(a, "service unhealthy", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let reported = killed_at.elapsed();
    let run = run.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    let moved = run
        .iter()
        .rposition(|p| p.answer.is_none_or(|(_, a)| a == own(0)))
        .map_or(Duration::ZERO, |i| run[i].sent);
    eprintln!(
        "dnsmasq at {} killed: its agents reported it within {:.2} s; queries moved {:.2} s after the \
         kill (longest outage {:.0} ms), answered by {:?}",
        own(0),
        reported.as_secs_f64(),
        (moved.saturating_sub(Duration::from_secs(1))).as_secs_f64(),
        ms(longest_outage(&run)),
        servers(&run)
    );
    let tail = &run[run.len() - 100..];
    assert!(
        tail.iter()
            .all(|p| p.answer.is_some_and(|(_, a)| a != own(0))),
        "the last second still not answered by another server: {:?}",
        servers(tail)
    );
    let jap_server = tail.last().unwrap().answer.unwrap().1;
    let jap = pops
        .iter()
        .position(|p| p.lan().octets()[..3] == jap_server.octets()[..3])
        .unwrap();
    assert_ne!(jap, 0, "pop1 has no DNS server left");

    // ---- A killed JAP appliance under a query every 10 ms.
    let mut probe = client(&lab, 0, AA);
    let run =
        std::thread::spawn(move || probe.probe(DNS_WHOAMI, 800, Duration::from_millis(10), ANSWER));
    std::thread::sleep(Duration::from_secs(2));
    lab.appliances[jap].kill();
    let run = run.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"));
    let outage = longest_outage(&run);
    let lost = run.iter().filter(|p| p.answer.is_none()).count();
    eprintln!(
        "JAP {} killed under 100 queries/s from pop1: client-visible outage {:.0} ms ({lost} of {} \
         lost), answered by {:?} [{:?}]",
        pops[jap].name,
        ms(outage),
        run.len(),
        servers(&run),
        test_accel()
    );
    let tail = &run[run.len() - 100..];
    assert!(
        tail.iter().all(|p| p
            .answer
            .is_some_and(|(_, a)| !a.octets()[..3].eq(&jap_server.octets()[..3]) && a != own(0))),
        "the last second not answered from the remaining POP: {:?}",
        servers(tail)
    );
    assert!(
        outage > Duration::ZERO,
        "killing the JAP cost nothing: was it the JAP?"
    );
    // Measured 635 ms under TCG (peer_dead 600 ms, then the IAP's next RAP
    // answer); the goal is under 1 s. 2 s leaves room for a loaded CI host
    // and still fails the old ~4 s membership detection.
    assert!(outage < Duration::from_secs(2), "outage {outage:?}");
    eprintln!("whole test {:.1} s", started.elapsed().as_secs_f64());
}
