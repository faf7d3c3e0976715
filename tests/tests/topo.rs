//! The multi-POP lab (`pias-qemu topo`): three POPs joined by userspace delay
//! lines, real dnsmasq and nginx in target namespaces, one appliance per POP;
//! and nothing of it left behind once it is dropped, fails to come up, or a
//! test panics with it.
//!
//! The appliances do not proxy yet: these tests check the infrastructure the
//! data-path tests will stand on. They need root and the programs that
//! scripts/install.sh installs; a missing one fails the test, never skips it.

use pias_qemu::pops::{PingStats, TopoLab, TopoOptions};
use pias_qemu::services::{sha256_file, BIG_FILE_LEN};
use pias_qemu::topo::{Topology, DNS_ANSWER, DNS_NAME, DNS_WHOAMI};
use pias_tests::{kernel, require_lab_programs, test_accel};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Namespaces whose names start with `prefix`.
fn netns_with(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Processes whose command line mentions `prefix` (the lab's files carry it).
fn processes_with(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(prefix) {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

/// Files in the temp directory named after the lab.
fn files_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_gone(prefix: &str, pids: &[u32]) {
    // `prefix-` so that lab ...-1 does not match lab ...-10.
    let p = format!("{prefix}-");
    assert_eq!(netns_with(&p), Vec::<String>::new(), "namespaces left");
    assert_eq!(processes_with(&p), Vec::<String>::new(), "processes left");
    assert_eq!(files_with(&p), Vec::<String>::new(), "files left");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still exists"
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A measured RTT against the configured round trip (twice the one-way
/// delay): never below it (the delay line never releases early), and at most
/// a few ms above it (scheduling on a busy 2-core host).
fn assert_rtt(what: &str, s: PingStats, want: Duration) {
    assert_eq!(s.received, s.sent, "{what}: lost pings ({s})");
    assert!(
        s.min >= want,
        "{what}: {s} is below the configured {:.0} ms",
        ms(want)
    );
    assert!(
        s.avg <= want + Duration::from_millis(5) + want / 10,
        "{what}: {s} is far above the configured {:.0} ms",
        ms(want)
    );
}

#[test]
fn three_pops_with_delays_services_and_appliances() {
    require_lab_programs();
    let started = Instant::now();
    let topo = Topology::three_pops().expect("default topology");
    let lab = TopoLab::up(topo, &kernel(), &TopoOptions::new("t3", test_accel()))
        .unwrap_or_else(|e| panic!("bringing the lab up: {e:#}"));
    let prefix = lab.prefix.clone();
    let pids = lab.pids();
    let up = started.elapsed();
    // 3 routers, 3 clients, 4 targets, 3 links.
    assert_eq!(lab.namespaces().len(), 13, "{:?}", lab.namespaces());
    let mut listed = netns_with(&format!("{prefix}-"));
    listed.sort();
    let mut made = lab.namespaces().to_vec();
    made.sort();
    assert_eq!(listed, made);

    // Delays: POP1-POP2 10 ms, POP2-POP3 15 ms, POP1-POP3 25 ms, one way.
    let r12 = lab.client_rtt(0, 1, 5).expect("ping pop1 -> pop2");
    let r13 = lab.client_rtt(0, 2, 5).expect("ping pop1 -> pop3");
    let r23 = lab.client_rtt(1, 2, 5).expect("ping pop2 -> pop3");
    eprintln!("pop1-pop2 {r12}\npop1-pop3 {r13}\npop2-pop3 {r23}");
    assert_rtt("pop1-pop2", r12, Duration::from_millis(20));
    assert_rtt("pop1-pop3", r13, Duration::from_millis(50));
    assert_rtt("pop2-pop3", r23, Duration::from_millis(30));
    assert!(r12.avg < r13.avg, "pop1-pop2 {r12} vs pop1-pop3 {r13}");

    // DNS: POP1's client asks POP3's servers; whoami says which answered.
    let c1 = lab.client_ns(0);
    for (ip, _) in [
        (Ipv4Addr::new(198, 18, 3, 20), 0),
        (Ipv4Addr::new(198, 18, 3, 21), 1),
    ] {
        let a = lab.dig(&c1, ip, DNS_NAME).expect("dig");
        assert_eq!(a, vec![DNS_ANSWER.to_string()], "dig @{ip} {DNS_NAME}");
        let w = lab.dig(&c1, ip, DNS_WHOAMI).expect("dig whoami");
        assert_eq!(w, vec![ip.to_string()], "dig @{ip} {DNS_WHOAMI}");
    }

    // HTTP: POP2's client fetches POP1's 1 MB file across the 10 ms link, intact.
    let web = lab
        .web
        .iter()
        .find(|w| w.pop == 0)
        .expect("pop1 runs nginx")
        .clone();
    let c2 = lab.client_ns(1);
    let t0 = Instant::now();
    let got = lab
        .curl(
            &c2,
            &format!("http://{}/big.bin", web.ip),
            "big-from-pop1.bin",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let fetch = t0.elapsed();
    assert_eq!(
        std::fs::metadata(&got).expect("fetched file").len(),
        BIG_FILE_LEN as u64
    );
    assert_eq!(
        sha256_file(&got).expect("sha256"),
        web.root.big_sha256,
        "the file arrived changed"
    );
    let index = lab
        .curl(&c2, &format!("http://{}/", web.ip), "index-from-pop1.html")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(std::fs::read_to_string(index).unwrap(), web.root.index);
    eprintln!("1 MB over pop1-pop2 in {:.0} ms", ms(fetch));

    // Each appliance answers its status from its POP's router.
    for (p, pop) in lab.topology.pops.iter().enumerate() {
        let s = lab.status(p).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(s.node_id, u32::from(pop.index));
        assert_eq!(s.name.as_str(), pop.name);
        assert_eq!(
            s.interfaces[0].address.to_string(),
            format!("{}/24", pop.appliance_ip())
        );
        assert_eq!(
            s.interfaces[0].gateway.map(|g| g.to_string()),
            Some(pop.router_ip().to_string())
        );
        // Each router sends the anycast prefix to its own appliance.
        let out = lab
            .output(&lab.router_ns(p), &["ip", "route", "get", "203.0.113.7"])
            .unwrap();
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(
            route.contains(&format!("via {} dev br0", pop.appliance_ip())),
            "{}: {route}",
            pop.name
        );
    }

    // The links lost nothing and are still forwarding.
    for d in &lab.delay_lines {
        assert!(d.running(), "delay line in {} stopped", d.netns);
        for dir in [&d.stats.a_to_b, &d.stats.b_to_a] {
            let g = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            assert!(g(&dir.forwarded) > 0, "{}: {dir}", d.netns);
            assert_eq!(
                g(&dir.dropped_full) + g(&dir.dropped_oversize) + g(&dir.send_errors),
                0,
                "{}: {dir}",
                d.netns
            );
        }
    }

    drop(lab);
    assert_gone(&prefix, &pids);
    eprintln!(
        "lab up in {:.1} s, whole test {:.1} s",
        up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

const TWO_POPS: &str = r#"
pop = [{ name = "a", targets = [{ services = ["dns", "http"] }] }, { name = "b" }]
link = [{ pops = ["a", "b"], delay_ms = 5 }]
"#;

/// A lab whose appliances cannot boot (no such kernel) fails to come up with
/// the reason, and removes what it had made: namespaces, delay lines,
/// dnsmasq and nginx.
#[test]
fn failed_bring_up_leaves_nothing() {
    require_lab_programs();
    let topo = Topology::parse(TWO_POPS).unwrap();
    let tag = "tfail";
    let err = match TopoLab::up(
        topo,
        Path::new("/nonexistent/pias-kernel"),
        &TopoOptions::new(tag, test_accel()),
    ) {
        Ok(_) => panic!("a lab without a kernel came up"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("appliance of a"), "{err}");
    assert_gone(&format!("pias-{tag}-{}", std::process::id()), &[]);
}

/// A test that panics with a lab up (as a failing assertion does) removes it
/// while unwinding.
#[test]
fn panic_removes_the_lab() {
    require_lab_programs();
    let topo = Topology::parse(TWO_POPS).unwrap();
    let kernel = kernel();
    let mut seen: Option<(String, Vec<u32>)> = None;
    let seen_ref = &mut seen;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let lab = TopoLab::up(topo, &kernel, &TopoOptions::new("tpanic", test_accel()))
            .unwrap_or_else(|e| panic!("bringing the lab up: {e:#}"));
        *seen_ref = Some((lab.prefix.clone(), lab.pids()));
        // 2 routers, 2 clients, 1 target, 1 link.
        assert_eq!(netns_with(&format!("{}-", lab.prefix)).len(), 6);
        std::panic::panic_any("a failing check");
    }));
    let payload = r.expect_err("the closure panics");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"a failing check"),
        "it panicked for another reason (see above)"
    );
    let (prefix, pids) = seen.expect("the lab came up before the panic");
    assert_eq!(pids.len(), 4, "2 appliances, dnsmasq, nginx");
    assert_gone(&prefix, &pids);
}
