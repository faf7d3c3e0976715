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
    let mut client = mgmt(&lab, 0);
    assert_eq!(client.shutdown().expect("shutdown"), Body::ShuttingDown);
    pias_tests::assert_clean_exit(&mut lab, 0);
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
