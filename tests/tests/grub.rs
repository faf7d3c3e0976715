//! Bare-metal style boot: `pias-image disk` images (GRUB, multiboot2, the
//! config as module2) on q35 with its default BIOS — a hybrid ISO as a CD-ROM,
//! the raw disk and the qcow2 as disks — each answering; then an image's
//! config replaced in place (`set-config`) boots as the new config says.
//! Exercises the multiboot2 entry (which zeroes .bss itself), boot information
//! and module parsing (a padded config slot), and arena placement around a
//! module GRUB puts right after the image.

use pias_image::disk::{self, Format};
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, status_of, test_accel};
use std::time::Duration;

fn image_spec(path: std::path::PathBuf, format: Format) -> Spec {
    let mut spec = Spec::new(Machine::Q35, test_accel(), Vec::new());
    spec.blob = None;
    spec.image = Some((path, format));
    spec.memory_mb = 128;
    spec
}

#[test]
fn disk_images_boot_from_the_bios_and_their_config_is_replaced_in_place() {
    let mut lab = Lab::new("grub").unwrap();
    let formats = [Format::Iso, Format::Raw, Format::Qcow2];
    let mut images = Vec::new();
    for (n, format) in formats.iter().enumerate() {
        let blob = pias_image::encode(&lab.config_for(n)).unwrap();
        let path = lab.path(&format!("pias-{n}.{format:?}").to_lowercase());
        disk::build(&kernel(), &blob, *format, &path)
            .unwrap_or_else(|e| panic!("building the {format:?} image: {e:#}"));
        images.push(path);
    }
    // The qcow2 really is one (qemu-img wrote it), the others are not.
    assert!(disk::is_qcow2(&images[2]).unwrap());
    assert!(!disk::is_qcow2(&images[1]).unwrap());

    // A fourth appliance from a copy of the qcow2 whose config is replaced:
    // it must come up as appliance 3, under its new name.
    let replaced = lab.path("replaced.qcow2");
    std::fs::copy(&images[2], &replaced).unwrap();
    let mut cfg = lab.config_for(3);
    cfg.node.name = "pias-replaced".try_into().unwrap();
    let new_blob = pias_image::encode(&cfg).unwrap();
    disk::set_config(&replaced, &new_blob).unwrap();
    assert_eq!(disk::get_config(&replaced).unwrap(), new_blob);
    // The raw copy keeps its own config; garbage is refused with the reason.
    assert_eq!(
        disk::get_config(&images[1]).unwrap(),
        pias_image::encode(&lab.config_for(1)).unwrap()
    );
    let err = disk::set_config(&images[1], b"not a blob").unwrap_err();
    assert!(format!("{err:#}").contains("refused"), "{err:#}");
    let not_an_image = lab.path("plain.bin");
    std::fs::write(&not_an_image, vec![0u8; 1 << 20]).unwrap();
    let err = disk::set_config(&not_an_image, &new_blob).unwrap_err();
    assert!(
        format!("{err:#}").contains("no PIAS config slot"),
        "{err:#}"
    );
    // A raw image cut off inside its config slot, and a qcow2 whose header
    // is damaged: each refused by the tool that reads it, with the reason.
    let cut = lab.path("cut.raw");
    let mut bytes = std::fs::read(&images[1]).unwrap();
    let at = bytes
        .windows(pias::blob::MAGIC.len())
        .position(|w| w == pias::blob::MAGIC)
        .expect("the raw image holds its config");
    bytes.truncate(at + 100);
    std::fs::write(&cut, &bytes).unwrap();
    for err in [
        disk::get_config(&cut).unwrap_err(),
        disk::set_config(&cut, &new_blob).unwrap_err(),
    ] {
        assert!(
            format!("{err:#}").contains("no PIAS config slot"),
            "{err:#}"
        );
    }
    let damaged = lab.path("damaged.qcow2");
    let mut q = std::fs::read(&images[2]).unwrap();
    q[4..512].fill(0xff);
    std::fs::write(&damaged, &q).unwrap();
    let err = disk::get_config(&damaged).unwrap_err();
    assert!(
        format!("{err:#}").contains("qemu-img convert (package qemu-utils) failed"),
        "{err:#}"
    );
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        q,
        "a refused image is left as it was"
    );
    assert!(disk::set_config(&damaged, &new_blob).is_err());
    assert_eq!(std::fs::read(&damaged).unwrap(), q);

    for (path, format) in images
        .iter()
        .zip(formats)
        .chain([(&replaced, Format::Qcow2)])
    {
        lab.boot(&kernel(), image_spec(path.clone(), format))
            .unwrap();
    }
    for (n, format) in formats.iter().chain([&Format::Qcow2]).enumerate() {
        lab.appliances[n]
            .wait_for("ready:", Duration::from_secs(90))
            .unwrap_or_else(|e| {
                panic!(
                    "{format:?} image {n}: {e:#}\nconsole:\n{}\nqemu:\n{}",
                    lab.appliances[n].console(),
                    lab.qemu_stderr(n)
                )
            });
        let console = lab.appliances[n].console();
        assert!(
            console.contains("boot: Multiboot2") && console.contains("config from Module"),
            "{console}"
        );
        lab.wait_carrier(n, Duration::from_secs(5)).unwrap();
        let s = status_of(&lab, n);
        let want = if n == 3 {
            "pias-replaced".to_string()
        } else {
            format!("pias-{}", n + 1)
        };
        assert_eq!(s.name.as_str(), want, "{format:?} image {n}");
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
        eprintln!(
            "{format:?} image {n}: answering as {want} [{:?}, q35]",
            test_accel()
        );
    }
}
