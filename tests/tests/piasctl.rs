//! `piasctl` against booted appliances, run as an operator would (inside the
//! lab's namespace): `status --json` and `counters --json` parse and agree
//! with the appliance; `watch` prints --count lines of rates; `routing` and
//! `drain` on an appliance without BGP say so; each error path is one line, bounded in time, and
//! prints no key; shutdown is refused where the config forbids it and stops
//! the appliance cleanly (status 33) where it allows it.

use pias_qemu::client::MgmtClient;
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
    assert!(text(&out).contains("node 1 \"pias-1\""), "{}", text(&out));
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

    // Shutdown: refused by appliance 2's config, granted by appliance 1's.
    let (out, _) = piasctl(&lab, &key_file, &["shutdown", &a1]);
    one_line(&out, "management.allow_shutdown = false");
    assert!(lab.appliances[1].try_exit().unwrap().is_none());
    let (out, _) = piasctl(&lab, &key_file, &["shutdown", &a0]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shutting down"));
    pias_tests::assert_clean_exit(&mut lab, 0);
}
