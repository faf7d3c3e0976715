//! The guest's monotonic clock agrees with the host's within 10% on both
//! machine types (the appliance's uptime across two status queries).

use pias_qemu::{Accel, Lab, Machine, Spec};
use pias_tests::{kernel, lab_with, mgmt};
use std::time::{Duration, Instant};

fn check(machine: Machine) {
    let lab = lab_with(&format!("clock-{}", machine).replace('+', "-"), machine, 1);
    measure(&lab, machine);
}

fn measure(lab: &Lab, machine: Machine) {
    // The wall clock comes from the RTC (microvm has one only with rtc=on
    // under KVM): without it every registration and management request
    // would be refused as stale.
    let console = lab.appliances[0].console();
    assert!(
        !console.contains("RTC gives no date"),
        "{machine}: no wall clock:\n{console}"
    );
    let mut client = mgmt(lab, 0);
    let t0 = Instant::now();
    let a = client.status().unwrap().uptime_ms;
    let host_a = t0.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let t1 = Instant::now();
    let b = client.status().unwrap().uptime_ms;
    let host_b = t1.elapsed();
    // Each query's round trip bounds when the guest read its clock.
    let host_ms = (t1 - t0).as_secs_f64() * 1e3;
    let slack = (host_a + host_b).as_secs_f64() * 1e3;
    let guest_ms = (b - a) as f64;
    let err = ((guest_ms - host_ms).abs() - slack).max(0.0) / host_ms;
    assert!(
        err < 0.10,
        "{machine}: guest {guest_ms} ms vs host {host_ms:.1} ms ({:.1}% off)",
        err * 100.0
    );
}

#[test]
fn microvm_clock_matches_host() {
    check(Machine::Microvm);
}

#[test]
fn q35_clock_matches_host() {
    check(Machine::Q35);
}

#[test]
fn kvm_clock_matches_host_when_the_host_has_kvm() {
    if !Accel::Kvm.available() {
        pias_tests::skip("no usable /dev/kvm: KVM clock not exercised on this host");
        return;
    }
    for machine in Machine::all() {
        let mut lab = Lab::new("clock-kvm").unwrap();
        let blob = pias_image::encode(&lab.config_for(0)).unwrap();
        lab.boot(&kernel(), Spec::new(machine, Accel::Kvm, blob))
            .unwrap();
        lab.appliances[0]
            .wait_for("ready:", Duration::from_secs(60))
            .unwrap();
        lab.wait_carrier(0, Duration::from_secs(5)).unwrap();
        measure(&lab, machine);
    }
}
