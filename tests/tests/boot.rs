//! Boot on both machine types, config by fw_cfg and by initrd, clean shutdown
//! on a management request, and (where it exists) KVM.

use pias::mgmt::Body;
use pias_qemu::{Accel, ConfigDelivery, Lab, Machine, Spec};
use pias_tests::{kernel, lab_with, mgmt, status_of, test_accel};
use std::time::Duration;

/// The checkout's revision as the kernel's build script names it.
fn git_rev() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    let rev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        out.status.success() && rev.len() == 12,
        "not a git checkout?"
    );
    rev
}

fn boot_status_shutdown(machine: Machine) {
    let mut lab = lab_with(&format!("boot-{machine}").replace('+', "-"), machine, 1);
    let s = status_of(&lab, 0);
    assert_eq!(s.node_id, 1);
    assert_eq!(s.name.as_str(), "pias-1");
    assert_eq!(s.interfaces[0].address.to_string(), "198.18.0.2/24");
    assert_eq!(s.mgmt.requests, 1);
    // The version and the revision built from, in the status and on the console.
    let version = format!("{}+{}", env!("CARGO_PKG_VERSION"), git_rev());
    assert_eq!(s.version.as_str(), version);
    let console = lab.appliances[0].console();
    assert!(
        console.contains(&format!("pias: starting, version {version}")),
        "{console}"
    );
    assert!(
        s.clock.tsc_khz > 100_000,
        "implausible TSC rate {:?}",
        s.clock
    );
    if test_accel() == Accel::Tcg {
        tcg_clock_measured_over_the_boot(&lab, &s, &console);
    }
    let mut client = mgmt(&lab, 0);
    assert_eq!(client.shutdown().expect("shutdown"), Body::ShuttingDown);
    pias_tests::assert_clean_exit(&mut lab, 0);
}

/// Under TCG the guest's TSC is the host's: the rate measured against QEMU's
/// virtual clock over the boot (at least 10 ms) must be the host's, and the
/// switch from the boot's first 1 ms rate must not have moved uptime ahead
/// of the time QEMU has been running.
fn tcg_clock_measured_over_the_boot(lab: &Lab, s: &pias::status::Status, console: &str) {
    assert_eq!(s.clock.source, pias::status::ClockSource::QemuLapic);
    let span_ms: u64 = console
        .lines()
        .find_map(|l| {
            let rest = l
                .split("measured against QEMU's virtual clock over ")
                .nth(1)?;
            rest.strip_suffix(" ms")?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no final clock measurement on the console:\n{console}"));
    assert!(span_ms >= 10, "measured over {span_ms} ms only:\n{console}");
    let host = pias_qemu::vslinux::guest::host_tsc_khz();
    let ppm = (s.clock.tsc_khz.abs_diff(host) as f64) / host as f64 * 1e6;
    assert!(
        ppm < 200.0,
        "guest {} kHz against the host's {host} kHz: {ppm:.0} ppm apart",
        s.clock.tsc_khz
    );
    let running = lab.appliances[0].started.elapsed();
    assert!(
        Duration::from_millis(s.uptime_ms) <= running,
        "uptime {} ms, but QEMU started {running:?} ago",
        s.uptime_ms
    );
}

#[test]
fn microvm_boots_answers_and_shuts_down() {
    boot_status_shutdown(Machine::Microvm);
}

#[test]
fn q35_boots_answers_and_shuts_down() {
    boot_status_shutdown(Machine::Q35);
}

#[test]
fn config_arrives_as_initrd_too() {
    for machine in Machine::all() {
        let mut lab = Lab::new("initrd").unwrap();
        let mut spec = Spec::new(
            machine,
            test_accel(),
            pias_image::encode(&lab.config_for(0)).unwrap(),
        );
        spec.delivery = ConfigDelivery::Initrd;
        lab.boot(&kernel(), spec).unwrap();
        lab.appliances[0]
            .wait_for("ready:", Duration::from_secs(30))
            .unwrap();
        assert!(lab.appliances[0].console().contains("config from Module"));
    }
}

#[test]
fn boots_under_kvm_when_the_host_has_it() {
    if !Accel::Kvm.available() {
        pias_tests::skip("no usable /dev/kvm: KVM boot not exercised on this host");
        return;
    }
    for machine in Machine::all() {
        let mut lab = Lab::new("kvm").unwrap();
        lab.boot(
            &kernel(),
            Spec::new(
                machine,
                Accel::Kvm,
                pias_image::encode(&lab.config_for(0)).unwrap(),
            ),
        )
        .unwrap();
        lab.appliances[0]
            .wait_for("ready:", Duration::from_secs(60))
            .unwrap();
        assert!(
            lab.appliances[0].console().contains("clock"),
            "{}",
            lab.appliances[0].console()
        );
    }
}
