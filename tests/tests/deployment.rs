//! The largest deployment (20,000 proxies, `pias::config::MAX_PEERS`) in the
//! boot config: it encodes, decodes and boots, and how long reading it takes.

use pias::config::{ProxyEntry, MAX_PEERS};
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, test_accel};
use std::time::Duration;

/// Lab appliance 0's config in a deployment of `n` proxies (the others at
/// 10.x addresses, ten per cluster).
fn config_of(n: u32) -> pias::Config {
    let mut cfg = Lab::example_config_for(0);
    cfg.capacity.peers = n;
    cfg.deployment.proxies = (1..=n)
        .map(|id| ProxyEntry {
            id,
            cluster: if id == 1 { cfg.node.cluster } else { id / 10 },
            address: if id == 1 {
                cfg.interfaces[0].address.addr
            } else {
                pias::Ipv4::from_u32(0x0a00_0000 + id)
            },
        })
        .collect();
    cfg
}

/// Boots `blob` on q35 (qboot) and returns (host time to "ready:", the
/// kernel's own config read-and-check time in µs, its console line).
fn boot(blob: Vec<u8>) -> (Duration, u64, String) {
    let mut lab = Lab::new("deploy").unwrap();
    lab.boot(&kernel(), Spec::new(Machine::Q35, test_accel(), blob))
        .unwrap();
    let ready = lab.appliances[0]
        .wait_for("ready:", Duration::from_secs(60))
        .unwrap();
    let console = lab.appliances[0].console();
    let line = console
        .lines()
        .find(|l| l.contains("config: ") && l.contains("proxies"))
        .unwrap_or_default()
        .to_string();
    let us = line
        .split("checked in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no config timing on the console:\n{console}"));
    (ready, us, line)
}

#[test]
fn twenty_thousand_proxies_encode_decode_and_boot() {
    let big = config_of(MAX_PEERS);
    let blob = pias_image::encode(&big).unwrap();
    assert!(blob.len() <= pias::blob::MAX_BLOB);
    assert_eq!(pias_image::decode(&blob).unwrap(), big);

    let small = pias_image::encode(&Lab::example_config_for(0)).unwrap();
    let (small_ready, small_us, _) = boot(small.clone());
    let (big_ready, big_us, line) = boot(blob.clone());
    assert!(
        line.contains(&format!("{} bytes, 20000 proxies", blob.len())),
        "{line}"
    );
    // Measured at about 12 ms under TCG (docs/config.md); a second means
    // something is badly wrong (e.g. a quadratic check).
    assert!(big_us < 1_000_000, "config took {big_us} us: {line}");
    eprintln!(
        "q35+qboot {:?}: {}-byte blob: ready after {:.0} ms, config read+checked in {:.1} ms; \
         {}-byte blob: ready after {:.0} ms, config {:.1} ms",
        test_accel(),
        blob.len(),
        big_ready.as_secs_f64() * 1e3,
        big_us as f64 / 1e3,
        small.len(),
        small_ready.as_secs_f64() * 1e3,
        small_us as f64 / 1e3,
    );
}
