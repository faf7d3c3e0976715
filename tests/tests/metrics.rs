//! The metrics port of booted appliances, checked with the ecosystem's tools:
//! `promtool check metrics` on what curl fetches, the same counters as the
//! management status, every refusal answered and counted (bad HTTP, another
//! path or method, a source outside the allow-list, a slow client, more
//! connections than slots) while the loop keeps answering; then a real
//! Prometheus scraping two appliances sees them up and a counter rising.

use pias_qemu::lab::inside_netns;
use pias_qemu::services::{require, start_prometheus};
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, lab_with, status_of, test_accel};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 9100;

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from((Lab::appliance_ip(n), PORT))
}

/// Every sample of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("a sample");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

/// `curl` inside the lab: (exit code, HTTP status, body).
fn curl(lab: &Lab, args: &[&str], url: &str) -> (Option<i32>, String, String) {
    let body = lab.path("curl.body");
    let out = lab
        .output(
            &[
                &["curl", "-sS", "--max-time", "5", "-o"][..],
                &[body.to_str().unwrap(), "-w", "%{http_code}"],
                args,
                &[url],
            ]
            .concat(),
        )
        .expect("running curl");
    let text = std::fs::read_to_string(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        text,
    )
}

fn scrape(lab: &Lab, n: usize) -> String {
    let (code, http, body) = curl(lab, &[], &format!("http://{}/metrics", addr(n)));
    assert_eq!((code, http.as_str()), (Some(0), "200"), "{body}");
    body
}

/// Sends `request` on a fresh connection from inside the lab; returns what
/// came back before the appliance closed (bounded by 5 s).
fn raw(lab: &Lab, n: usize, request: Vec<u8>) -> String {
    let to = addr(n);
    inside_netns(&lab.ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&request)?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .expect("raw request")
}

/// What became of one of many simultaneous connections.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Served,
    Refused,
    Other(String),
}

#[test]
fn the_metrics_port_serves_checked_text_and_refuses_what_it_must() {
    for p in ["promtool", "curl", "ping"] {
        require(p).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let kernel = kernel();
    let mut lab = Lab::new("metrics").unwrap();
    let mut cfg = lab.config_for(0);
    // Only the bridge's first address may ask; a second one may not.
    cfg.management.allow.clear();
    cfg.management
        .allow
        .push("198.18.0.1/32".parse().unwrap())
        .unwrap();
    lab.boot(
        &kernel,
        Spec::new(
            Machine::Microvm,
            test_accel(),
            pias_image::encode(&cfg).unwrap(),
        ),
    )
    .unwrap();
    // The ready line names the port.
    lab.appliances[0]
        .wait_for("metrics tcp/9100,", Duration::from_secs(30))
        .unwrap();
    lab.wait_carrier(0, Duration::from_secs(5)).unwrap();
    lab.exec(&["ip", "addr", "add", "198.18.0.250/24", "dev", "br0"])
        .unwrap();

    // promtool accepts what curl fetches, lint included.
    let text = scrape(&lab, 0);
    let file = lab.path("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    println!(
        "promtool check metrics: clean, {} samples, {} bytes [{:?}, microvm]",
        samples(&text).len(),
        text.len(),
        test_accel()
    );

    // The same counters as the management status, read just before.
    let status = status_of(&lab, 0);
    let m = samples(&scrape(&lab, 0));
    assert_eq!(
        m["pias_mgmt_requests_total"], status.mgmt.requests as f64,
        "no management request between the two"
    );
    assert!(m["pias_net_rx_frames_total"] >= status.net.rx_frames as f64);
    assert_eq!(
        m["pias_allocations_total"], status.allocations as f64,
        "a scrape allocates nothing"
    );
    for t in &status.tables {
        assert_eq!(
            m[&format!("pias_table_capacity{{table=\"{}\"}}", t.name)],
            t.capacity as f64,
            "{}",
            t.name
        );
    }
    let info = format!(
        "pias_build_info{{version=\"{}\",name=\"pias-1\",node_id=\"1\"}}",
        status.version
    );
    assert_eq!(m.get(&info), Some(&1.0), "{info}");
    assert_eq!(
        status.http.served + 1,
        m["pias_http_served_total"] as u64,
        "the status shows the port's counters"
    );

    // Refusals: answered with their status, counted under their reason.
    let url = format!("http://{}/metrics", addr(0));
    let (_, http, _) = curl(&lab, &["-X", "POST"], &url);
    assert_eq!(http, "405");
    let (_, http, _) = curl(&lab, &[], &format!("http://{}/", addr(0)));
    assert_eq!(http, "404");
    let answer = raw(&lab, 0, b"HELLO THERE\r\n\r\n".to_vec());
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(4096, b'x');
    let answer = raw(&lab, 0, long);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let (code, http, _) = curl(
        &lab,
        &["--interface", "198.18.0.250", "--connect-timeout", "2"],
        &url,
    );
    assert_eq!(
        (code, http.as_str()),
        (Some(28), "000"),
        "a source outside the allow-list gets no answer at all (curl times out)"
    );
    let m = samples(&scrape(&lab, 0));
    for (name, want) in [
        ("pias_http_bad_method_total", 1.0),
        ("pias_http_not_found_total", 1.0),
        ("pias_http_bad_requests_total", 1.0),
        ("pias_http_too_large_total", 1.0),
        ("pias_http_timeouts_total", 0.0),
    ] {
        assert_eq!(m[name], want, "{name}");
    }
    // Each of its SYNs (curl sends them again within its 2 s) is counted.
    assert!(m["pias_http_refused_source_total"] >= 1.0);

    // A slow client and a silent one hold two slots until their deadline
    // (10 s) resets them; meanwhile scrapes and pings are answered.
    let to = addr(0);
    let slow = inside_netns(&lab.ns, move || {
        let mut slow = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        slow.write_all(b"GET /met")?;
        let silent = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        Ok((slow, silent))
    })
    .unwrap();
    let t0 = Instant::now();
    let ping = lab
        .output(&[
            "ping",
            "-q",
            "-c",
            "100",
            "-i",
            "0.02",
            "-W",
            "1",
            "198.18.0.2",
        ])
        .unwrap();
    let ping_text = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(
        ping_text.contains(" 0% packet loss"),
        "pings answered while slots are held: {ping_text}"
    );
    scrape(&lab, 0);
    let (mut slow_conn, mut silent_conn) = slow;
    for c in [&mut slow_conn, &mut silent_conn] {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 64];
        let r = c.read(&mut buf);
        assert!(
            matches!(r, Ok(0)) || r.is_err(),
            "reset or closed, with no answer: {r:?}"
        );
    }
    let held = t0.elapsed();
    assert!(
        held >= Duration::from_secs(8) && held < Duration::from_secs(14),
        "reset at the 10 s deadline: {held:?}"
    );
    let m = samples(&scrape(&lab, 0));
    assert_eq!(m["pias_http_timeouts_total"], 2.0);

    // 100 connections at once: each is served or reset, none hangs; the
    // port counts both, and pings go on being answered.
    let before = samples(&scrape(&lab, 0));
    let outcomes = inside_netns(&lab.ns, move || {
        let threads: Vec<_> = (0..100)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
                        Ok(s) => s,
                        // All slots busy: the stack resets the SYN.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            return Outcome::Refused
                        }
                        Err(e) => return Outcome::Other(format!("connect: {e}")),
                    };
                    // Accepted: anything but a whole 200 answer is a failure.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    let req = b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
                    if let Err(e) = s.write_all(req) {
                        return Outcome::Other(format!("write: {e}"));
                    }
                    let _ = s.shutdown(Shutdown::Write);
                    let mut out = Vec::new();
                    match s.read_to_end(&mut out) {
                        Ok(_) if out.starts_with(b"HTTP/1.1 200 OK") => {
                            let text = String::from_utf8_lossy(&out);
                            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("Content-Length: "))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(usize::MAX);
                            if body.len() == len {
                                Outcome::Served
                            } else {
                                Outcome::Other(format!("{} of {len} body bytes", body.len()))
                            }
                        }
                        r => Outcome::Other(format!("{r:?} after {} bytes", out.len())),
                    }
                })
            })
            .collect();
        Ok(threads
            .into_iter()
            .map(|t| t.join().unwrap_or(Outcome::Other("panicked".into())))
            .collect::<Vec<_>>())
    })
    .unwrap();
    let served = outcomes.iter().filter(|o| **o == Outcome::Served).count();
    let refused = outcomes.iter().filter(|o| **o == Outcome::Refused).count();
    assert_eq!(served + refused, 100, "{outcomes:?}");
    let after = samples(&scrape(&lab, 0));
    let delta = |k: &str| after[k] - before[k];
    // The scrape that read `after` is one more served request.
    assert_eq!(delta("pias_http_served_total"), served as f64 + 1.0);
    assert!(served >= 4, "every slot served: {served}");
    assert_eq!(
        delta("pias_http_refused_busy_total"),
        refused as f64,
        "each reset counted once"
    );
    println!(
        "100 connections at once: {served} served, {refused} reset (refused_busy +{}) [{:?}, microvm]",
        delta("pias_http_refused_busy_total"),
        test_accel()
    );
    let ping = lab
        .output(&[
            "ping",
            "-q",
            "-c",
            "20",
            "-i",
            "0.02",
            "-W",
            "1",
            "198.18.0.2",
        ])
        .unwrap();
    assert!(String::from_utf8_lossy(&ping.stdout).contains(" 0% packet loss"));
    assert_eq!(
        after["pias_allocations_total"], before["pias_allocations_total"],
        "serving allocates nothing"
    );
}

/// Prometheus's instant query `q` from inside the lab: the result vector.
fn query(lab: &Lab, q: &str) -> Vec<serde_json::Value> {
    let out = lab
        .output(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--data-urlencode",
            &format!("query={q}"),
            "http://127.0.0.1:9090/api/v1/query",
        ])
        .expect("curl");
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_scrapes_two_appliances() {
    for p in ["prometheus", "curl", "ping"] {
        require(p).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let lab = lab_with("prom", Machine::Microvm, 2);
    let targets: Vec<String> = (0..2).map(|n| addr(n).to_string()).collect();
    let dir = lab.path("prom");
    std::fs::create_dir_all(&dir).unwrap();
    let mut prom = start_prometheus(&lab.ns, &dir, "127.0.0.1:9090", &targets, 1).unwrap();

    // Both targets up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        prom.check_running().unwrap();
        let up = query(&lab, "up");
        if up.len() == 2 && up.iter().all(|s| value(s) == 1.0) {
            break up;
        }
        assert!(Instant::now() < deadline, "up never 1 for both: {up:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut instances: Vec<_> = up
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap().to_owned())
        .collect();
    instances.sort();
    assert_eq!(instances, targets);

    // A counter rises under traffic: 500 pings to appliance 1 only. Both
    // see the same scrapes and the same proxy heartbeats, so the pinged
    // one's counter must outgrow the other's by the pings (not by its
    // scrapes alone).
    let frames = |lab: &Lab| -> BTreeMap<String, f64> {
        query(lab, "pias_net_rx_frames_total")
            .iter()
            .map(|s| {
                (
                    s["metric"]["instance"].as_str().unwrap().to_owned(),
                    value(s),
                )
            })
            .collect()
    };
    let before = frames(&lab);
    assert_eq!(before.len(), 2, "{before:?}");
    let ip = Lab::appliance_ip(0).to_string();
    let out = lab
        .output(&["ping", "-q", "-c", "500", "-i", "0.005", "-W", "1", &ip])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (pinged, quiet) = (&targets[0], &targets[1]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = frames(&lab);
        let rise = |t: &String| after.get(t).copied().unwrap_or(0.0) - before[t];
        if rise(pinged) >= 500.0 && rise(pinged) - rise(quiet) >= 400.0 {
            println!(
                "Prometheus: up == 1 for both; pias_net_rx_frames_total rose by {} on the pinged appliance, {} on the other [{:?}, microvm]",
                rise(pinged),
                rise(quiet),
                test_accel()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pinged appliance's counter did not outgrow the other's by the pings: {before:?} -> {after:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    prom.check_running().unwrap();
}
