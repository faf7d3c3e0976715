//! The libvirt domain examples in deploy/libvirt/ are valid libvirt XML
//! (`virt-xml-validate`, Debian's libvirt-clients), and say what the appliance
//! needs: the config under fw_cfg's `opt/pias/config`, a virtio NIC on the
//! root bus, a serial console and the debug-exit port. What they describe is
//! what the boot tests run: q35 + qboot + `-kernel` + fw_cfg (boot.rs), and
//! q35's default BIOS booting a `pias-image disk` qcow2 from SATA (grub.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/libvirt")
        .join(name)
}

/// Runs virt-xml-validate; (success, what it printed).
fn validate(path: &Path) -> (bool, String) {
    let out = Command::new("virt-xml-validate")
        .arg(path)
        .arg("domain")
        .output()
        .expect("virt-xml-validate is missing: bash scripts/install.sh (libvirt-clients, libxml2-utils)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_libvirt_examples_validate_and_carry_what_the_appliance_needs() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["pias-direct.xml", "pias-disk.xml"] {
        let path = example(name);
        let xml = std::fs::read_to_string(&path).unwrap();
        let (ok, text) = validate(&path);
        assert!(ok, "{name}: {text}");
        for needed in [
            "machine='q35'",
            "<model type='virtio'/>",
            "bus='0x00'",
            "<target type='serial' port='0'/>",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ] {
            assert!(xml.contains(needed), "{name} lacks {needed}");
        }
        // The validator bites: the same file with a malformed element fails.
        let broken = dir.path().join(name);
        std::fs::write(&broken, xml.replace("<vcpu>1</vcpu>", "<vcpu>one</vcpu>")).unwrap();
        let (ok, text) = validate(&broken);
        assert!(!ok, "a broken {name} validated: {text}");
    }
    let direct = std::fs::read_to_string(example("pias-direct.xml")).unwrap();
    assert!(direct.contains("<entry name='opt/pias/config' file="));
    assert!(direct.contains("<kernel>"));
    assert!(
        Path::new("/usr/share/qemu/qboot.rom").exists(),
        "the direct example's loader, qboot.rom, is missing (qemu-system-x86)"
    );
    let disk = std::fs::read_to_string(example("pias-disk.xml")).unwrap();
    assert!(disk.contains("<driver name='qemu' type='qcow2'/>") && disk.contains("bus='sata'"));
}
