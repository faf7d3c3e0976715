//! `piasctl` against booted appliances, run as an operator would (inside the
//! lab's namespace): `status --json` and `counters --json` parse and agree
//! with the appliance; `watch` prints --count lines of rates; `routing` and
//! `drain` on an appliance without BGP say so; `groups` shows a joined member as JAP,
//! the cached JAP as IAP and the count as RAP; each error path is one line, bounded in time, and
//! prints no key; shutdown is refused where the config forbids it and stops
//! the appliance cleanly (status 33) where it allows it.

use pias_qemu::client::MgmtClient;
use pias_qemu::lab::inside_netns;
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, test_accel};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn piasctl(lab: &Lab, key_file: &std::path::Path, args: &[&str]) -> (Output, Duration) {
    let bin = pias_qemu::build::piasctl().expect("building piasctl");
    let t0 = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(bin)
        .arg("--key-file")
        .arg(key_file)
        .args(["--tries", "2", "--timeout-ms", "400"])
        .args(args)
        .output()
        .expect("running piasctl");
    (out, t0.elapsed())
}

/// `piasctl groups --json` of one group, asked every 300 ms until `done`
/// holds (20 s at most).
fn wait_json(
    lab: &Lab,
    key_file: &std::path::Path,
    appliance: &str,
    group: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (out, _) = piasctl(lab, key_file, &["groups", "--json", appliance, group]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if done(&r[0]) {
            return r[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{appliance} never got there: {r}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn hex(k: &pias::wire::Key) -> String {
    String::from_utf8(pias::keys::key_to_hex(k).to_vec()).unwrap()
}

#[test]
fn piasctl_reports_refuses_and_shuts_down() {
    let mut lab = Lab::new("ctl").unwrap();
    for n in 0..2 {
        let mut cfg = lab.config_for(n);
        cfg.management.allow_shutdown = n == 0;
        let blob = pias_image::encode(&cfg).unwrap();
        lab.boot(&kernel(), Spec::new(Machine::Microvm, test_accel(), blob))
            .unwrap();
    }
    for n in 0..2 {
        lab.appliances[n]
            .wait_for("ready:", Duration::from_secs(30))
            .unwrap();
        lab.wait_carrier(n, Duration::from_secs(5)).unwrap();
    }
    let key_file = lab.path("mgmt.key");
    std::fs::write(&key_file, hex(&lab.mgmt_key)).unwrap();
    let wrong_file = lab.path("wrong.key");
    let wrong = pias_qemu::lab::random_key().unwrap();
    std::fs::write(&wrong_file, hex(&wrong)).unwrap();
    let a0 = Lab::appliance_ip(0).to_string();
    let a1 = Lab::appliance_ip(1).to_string();
    let secrets = [hex(&lab.mgmt_key), hex(&wrong)];
    let text = |o: &Output| {
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        for s in &secrets {
            assert!(!t.contains(s.as_str()), "a key was printed: {t}");
        }
        t
    };

    // status --json: parses, and is this appliance.
    let (out, _) = piasctl(&lab, &key_file, &["status", "--json", &a0]);
    assert!(out.status.success(), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["node_id"], 1);
    assert_eq!(s["name"], "pias-1");
    let asked = s["mgmt"]["requests"].as_u64().unwrap();
    let now = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001)
        .unwrap()
        .status()
        .unwrap();
    assert!(now.mgmt.requests > asked, "{asked} then {:?}", now.mgmt);
    assert_eq!(s["net"]["rx_bad_l4"].as_u64(), Some(now.net.rx_bad_l4));
    // The readable form names it too.
    let (out, _) = piasctl(&lab, &key_file, &["status", &a0]);
    let t = text(&out);
    for want in [
        "pias-1 (node 1)  version 0.1.0+",
        "\nroles\n  IAP   client packets ",
        "\ntables (used / capacity)\n",
        "\ntop drops",
        "\ndetails\nnode 1 \"pias-1\"",
    ] {
        assert!(t.contains(want), "{want:?} in {t}");
    }
    // counters --json: the proxy's roles and the data path.
    let (out, _) = piasctl(&lab, &key_file, &["counters", "--json", &a0]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for part in ["data", "proxy"] {
        assert!(r[part].is_object(), "{r}");
    }
    assert!(
        r["proxy"]["iap"].is_object() && r["proxy"]["jap"].is_object(),
        "{r}"
    );

    // Error paths: one line each, bounded (2 tries of 400 ms), exit 1.
    let one_line = |o: &Output, want: &str| {
        let t = text(o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert_eq!(t.trim_end().lines().count(), 1, "{t}");
        assert!(t.contains(want), "wanted {want:?}: {t}");
    };
    let (out, took) = piasctl(&lab, &wrong_file, &["status", &a0]);
    one_line(&out, "no answer from 198.18.0.2:7001 (2 tries of 400 ms)");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (out, _) = piasctl(&lab, &key_file, &["status", "198.18.0.77"]);
    one_line(&out, "no answer from 198.18.0.77:7001");
    let (out, _) = piasctl(&lab, &key_file, &["status", "--port", "7999", &a0]);
    one_line(&out, "no answer from 198.18.0.2:7999");
    let (out, _) = piasctl(&lab, &lab.path("missing.key"), &["status", &a0]);
    one_line(&out, "--key-file: reading");
    let (out, _) = piasctl(&lab, &key_file, &["status", "pias-1"]);
    one_line(&out, "is not an IPv4 address");

    // watch: bounded by --count, one JSON object of rates per line.
    let (out, took) = piasctl(
        &lab,
        &key_file,
        &[
            "watch",
            "--json",
            "--count",
            "2",
            "--interval-ms",
            "300",
            &a0,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        // Each sample is two requests: the appliance counts them.
        assert!(l["mgmt_requests_per_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["drops_per_s"].as_f64().is_some(), "{l}");
    }
    assert!(took >= Duration::from_millis(600), "{took:?}");
    // routing and drain on an appliance without BGP.
    let (out, _) = piasctl(&lab, &key_file, &["routing", "--json", &a0]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["enabled"], false, "{r}");
    let (out, _) = piasctl(&lab, &key_file, &["drain", &a0]);
    one_line(&out, "has no BGP neighbours");

    // groups: a member joins through appliance 1 (its JAP); a client packet
    // through appliance 2 makes it an IAP with that JAP cached; the group's
    // live RAP holds appliance 1's count.
    let group: pias::Group = "203.0.113.10:5300/udp".parse().unwrap();
    let g = group.to_string();
    let (out, _) = piasctl(&lab, &key_file, &["groups", "--json", &a0, &g]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r[0]["served"], true, "{r}");
    assert!(r[0]["jap"].is_null() && r[0]["iap"].is_null(), "{r}");
    let (out, _) = piasctl(&lab, &key_file, &["groups", &a0, "203.0.113.10:5300"]);
    one_line(
        &out,
        "is not a group: write anycast-address:port/udp or /tcp",
    );
    lab.exec(&["ip", "route", "add", "203.0.113.10/32", "via", &a0])
        .unwrap();
    let service = std::net::SocketAddrV4::new(lab.host_ip, 5300);
    let _listener = inside_netns(&lab.ns, move || Ok(std::net::TcpListener::bind(service)?))
        .expect("a TCP service for the agent's health check");
    let agent = pias_qemu::build::agent().expect("building the agent");
    let key = pias::keys::group_key(&lab.config_for(0).deployment.group_secret, &group);
    let dir = lab.path("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let mut agent =
        pias_qemu::services::start_agent(&lab.ns, &agent, group, service, &key, &dir, "a")
            .expect("starting the agent");
    let jap = wait_json(&lab, &key_file, &a0, &g, |r| {
        r["jap"]["members"].as_u64() == Some(1)
    });
    agent.check_running().unwrap();
    assert_eq!(jap["jap"]["targets"][0]["endpoint"]["port"], 5300, "{jap}");
    let (out, _) = piasctl(&lab, &key_file, &["groups", &a0, &g]);
    let t = text(&out);
    assert!(t.contains("as JAP: 1 targets, 1 counted as members"), "{t}");
    assert!(t.contains("198.18.0.1:5300"), "{t}");
    // A client packet to the group through appliance 2.
    lab.exec(&["ip", "route", "replace", "203.0.113.10/32", "via", &a1])
        .unwrap();
    let to = std::net::SocketAddr::from(([203, 0, 113, 10], 5300));
    inside_netns(&lab.ns, move || {
        let s = std::net::UdpSocket::bind("198.18.0.1:0")?;
        s.send_to(b"hello", to)?;
        Ok(())
    })
    .unwrap();
    let iap = wait_json(&lab, &key_file, &a1, &g, |r| {
        r["iap"]["japs"][0][0].as_u64() == Some(1)
    });
    println!("appliance 2 as IAP: {}", iap["iap"]);
    // The RAP that answered holds JAP 1's count of 1.
    let mut held = false;
    for (n, a) in [(1u64, &a0), (2, &a1)] {
        if iap["raps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_u64() == Some(n))
        {
            let (out, _) = piasctl(&lab, &key_file, &["groups", "--json", a, &g]);
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let e = &r[0]["rap"]["entries"];
            if e.as_array()
                .is_some_and(|v| v.iter().any(|x| x[0] == 1 && x[1] == 1))
            {
                held = true;
                let (out, _) = piasctl(&lab, &key_file, &["groups", a, &g]);
                let t = text(&out);
                assert!(t.contains("as RAP: 1 JAP entries"), "{t}");
            }
        }
    }
    assert!(held, "a live RAP of the group holds JAP 1's count: {iap}");
    drop(agent);

    // Shutdown: refused by appliance 2's config, granted by appliance 1's.
    let (out, _) = piasctl(&lab, &key_file, &["shutdown", &a1]);
    one_line(&out, "management.allow_shutdown = false");
    assert!(lab.appliances[1].try_exit().unwrap().is_none());
    let (out, _) = piasctl(&lab, &key_file, &["shutdown", &a0]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shutting down"));
    pias_tests::assert_clean_exit(&mut lab, 0);
}
