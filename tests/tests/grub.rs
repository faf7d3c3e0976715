//! Bare-metal style boot: a GRUB ISO (multiboot2, config as module2) on q35
//! with its default BIOS. Exercises the multiboot2 entry (which zeroes .bss
//! itself), boot information and module parsing, and arena placement around
//! a module GRUB puts right after the image.

use pias_qemu::{build, Lab, Machine, Spec};
use pias_tests::{kernel, status_of, test_accel};
use std::time::Duration;

#[test]
fn grub_iso_boots_through_multiboot2_with_the_config_module() {
    let mut lab = Lab::new("grub").unwrap();
    let blob = pias_image::encode(&lab.config_for(0)).unwrap();
    let iso = lab.path("pias.iso");
    build::iso(&kernel(), &blob, &iso).expect("building the ISO");
    let mut spec = Spec::new(Machine::Q35, test_accel(), Vec::new());
    spec.blob = None;
    spec.iso = Some(iso);
    spec.memory_mb = 128;
    lab.boot(&kernel(), spec).unwrap();
    lab.appliances[0]
        .wait_for("ready:", Duration::from_secs(60))
        .unwrap();
    let console = lab.appliances[0].console();
    assert!(
        console.contains("boot: Multiboot2") && console.contains("config from Module"),
        "{console}"
    );
    lab.wait_carrier(0, Duration::from_secs(5)).unwrap();
    let s = status_of(&lab, 0);
    assert_eq!(s.name.as_str(), "pias-1");
    let (used, capacity) = s
        .tables
        .iter()
        .find(|t| t.name.as_str() == "arena_bytes")
        .map(|t| (t.used, t.capacity))
        .unwrap();
    assert!(
        capacity > 8 << 20,
        "arena {used}/{capacity}: placed in a small gap"
    );
}
