//! Machine types and accelerators, and how QEMU is told about them.

use std::fmt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `-M microvm`: virtio-mmio, qboot built in.
    Microvm,
    /// `-M q35` with qboot as firmware: virtio-net-pci.
    Q35,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

impl Machine {
    pub fn parse(s: &str) -> Option<Machine> {
        match s {
            "microvm" => Some(Machine::Microvm),
            "q35" => Some(Machine::Q35),
            _ => None,
        }
    }

    /// QEMU's name for the machine type.
    pub fn qemu_type(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Machine::Microvm => vec!["-M".into(), "microvm,rtc=on".into()],
            Machine::Q35 => vec!["-M".into(), "q35".into(), "-bios".into(), QBOOT.into()],
        }
    }

    pub fn nic_device(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        }
    }

    pub fn all() -> [Machine; 2] {
        [Machine::Microvm, Machine::Q35]
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35+qboot",
        })
    }
}

impl Accel {
    pub fn parse(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// KVM when /dev/kvm is real hardware virtualisation; TCG when there is no
    /// /dev/kvm or it is PVM (software nested virtualisation, slower than TCG
    /// for this appliance). `PIAS_ACCEL=kvm|tcg` overrides. Returns the choice
    /// and the reason, which callers print.
    pub fn auto() -> (Accel, String) {
        if let Ok(v) = std::env::var("PIAS_ACCEL") {
            if let Some(a) = Accel::parse(&v) {
                return (a, format!("PIAS_ACCEL={v}"));
            }
        }
        if !Path::new("/dev/kvm").exists() {
            return (Accel::Tcg, "no /dev/kvm".into());
        }
        if Path::new("/sys/module/kvm_pvm").exists() {
            return (
                Accel::Tcg,
                "/dev/kvm is PVM nested virtualisation (slower than TCG here); set PIAS_ACCEL=kvm to use it".into(),
            );
        }
        (Accel::Kvm, "/dev/kvm present".into())
    }

    pub fn available(self) -> bool {
        match self {
            Accel::Tcg => true,
            Accel::Kvm => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
        }
    }

    pub fn qemu_args(self) -> Vec<String> {
        match self {
            // `-cpu host` alone aborts QEMU 7.2 on these hosts (MSR 0x10a).
            Accel::Kvm => vec![
                "-accel".into(),
                "kvm".into(),
                "-cpu".into(),
                "host,-arch-capabilities".into(),
            ],
            Accel::Tcg => vec!["-accel".into(), "tcg".into()],
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}
