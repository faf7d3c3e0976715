//! PCI: configuration access (q35's ECAM, found and if need be enabled through
//! the MCH's PCIEXBAR; legacy port 0xcf8 otherwise), and BAR assignment,
//! which qboot leaves to us.

use crate::port::{inl, outl};
use virtio_drivers::transport::pci::bus::{
    BarInfo, Cam, Command, ConfigurationAccess, DeviceFunction, MemoryBarType, MmioCam, PciRoot,
};

const Q35_ECAM_DEFAULT: u64 = 0xb000_0000;
const MCH_PCIEXBAR: u8 = 0x60;
const Q35_VENDOR_DEVICE: u32 = 0x29c0_8086;

/// Legacy configuration mechanism #1 (ports 0xcf8/0xcfc).
pub struct PortCam;

fn port_address(df: DeviceFunction, off: u8) -> u32 {
    0x8000_0000
        | u32::from(df.bus) << 16
        | u32::from(df.device) << 11
        | u32::from(df.function) << 8
        | u32::from(off & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, off: u8) -> u32 {
        // SAFETY: configuration mechanism #1: the address goes to 0xcf8, the
        // word comes from 0xcfc. Neither touches memory, and configuration
        // reads have no side effects. The pair cannot be split: one CPU, and no
        // interrupt handler uses these ports.
        unsafe {
            outl(0xcf8, port_address(df, off));
            inl(0xcfc)
        }
    }

    fn write_word(&mut self, df: DeviceFunction, off: u8, data: u32) {
        // SAFETY: the port pair as in `read_word`. The write reprograms the
        // device; the only writers are `cam` (PCIEXBAR) and virtio-drivers'
        // `PciRoot` as `assign_bars` and `pci_notifier` drive it: BAR sizing
        // with decoding off, BARs placed in the PCI hole (where no RAM is), and
        // the command register.
        unsafe {
            outl(0xcf8, port_address(df, off));
            outl(0xcfc, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Either way of reaching configuration space.
pub enum AnyCam {
    Ecam(MmioCam<'static>),
    Port(PortCam),
}

impl ConfigurationAccess for AnyCam {
    fn read_word(&self, df: DeviceFunction, off: u8) -> u32 {
        match self {
            AnyCam::Ecam(c) => c.read_word(df, off),
            AnyCam::Port(c) => c.read_word(df, off),
        }
    }
    fn write_word(&mut self, df: DeviceFunction, off: u8, data: u32) {
        match self {
            AnyCam::Ecam(c) => c.write_word(df, off, data),
            AnyCam::Port(c) => c.write_word(df, off, data),
        }
    }
    unsafe fn unsafe_clone(&self) -> Self {
        match self {
            // SAFETY: our caller accepted `unsafe_clone`'s contract (the clone
            // reads only read-only fields), which is what `MmioCam` asks in turn.
            AnyCam::Ecam(c) => AnyCam::Ecam(unsafe { c.unsafe_clone() }),
            AnyCam::Port(_) => AnyCam::Port(PortCam),
        }
    }
}

/// The root complex, through ECAM when the chipset has one.
pub fn root() -> PciRoot<AnyCam> {
    PciRoot::new(cam())
}

/// Configuration access, through ECAM when the chipset has one (enabling it if
/// the firmware did not).
pub fn cam() -> AnyCam {
    let mut port = PortCam;
    let host = DeviceFunction {
        bus: 0,
        device: 0,
        function: 0,
    };
    if port.read_word(host, 0) == Q35_VENDOR_DEVICE {
        let lo = port.read_word(host, MCH_PCIEXBAR);
        let hi = port.read_word(host, MCH_PCIEXBAR + 4);
        let mut base = (u64::from(hi) << 32 | u64::from(lo)) & 0xf_f000_0000;
        if lo & 1 == 0 || base == 0 {
            // Firmware (qboot) left ECAM off: enable it, 256 buses, at QEMU's usual place.
            port.write_word(host, MCH_PCIEXBAR + 4, 0);
            port.write_word(host, MCH_PCIEXBAR, Q35_ECAM_DEFAULT as u32 | 1);
            base = Q35_ECAM_DEFAULT;
        }
        if base < crate::phys::MAPPED_LIMIT {
            // SAFETY: PCIEXBAR now decodes ECAM at `base`. The mask makes `base`
            // 256 MiB-aligned and the check puts it below 4 GiB, so the whole
            // 256 MiB window is identity-mapped (uncached when above 2 GiB, as
            // our default and QEMU firmware's choice are). No Rust reference
            // points into it. It is not unique: each call makes a new `MmioCam`,
            // and `virtio::pci_notifier` holds a second one, used only for reads.
            let cam = unsafe { MmioCam::new(base as usize as *mut u8, Cam::Ecam) };
            return AnyCam::Ecam(cam);
        }
    }
    AnyCam::Port(PortCam)
}

/// Reads one byte of configuration space.
pub fn read_u8(cam: &AnyCam, df: DeviceFunction, off: u8) -> u8 {
    (cam.read_word(df, off & !3) >> (8 * (off & 3))) as u8
}

/// Where BARs are placed: in the 32-bit PCI hole above q35's ECAM.
const MMIO_WINDOW: (u64, u64) = (0xc000_0000, 0xfe00_0000);
const IO_WINDOW: (u32, u32) = (0xc000, 0xffff);

static NEXT_MMIO: spin::Mutex<u64> = spin::Mutex::new(MMIO_WINDOW.0);
static NEXT_IO: spin::Mutex<u32> = spin::Mutex::new(IO_WINDOW.0);

fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Sizes and places every BAR of `df`, then enables decoding and bus mastering.
pub fn assign_bars(root: &mut PciRoot<AnyCam>, df: DeviceFunction) -> Result<(), &'static str> {
    let mut i = 0u8;
    while i < 6 {
        let info = root.bar_info(df, i).map_err(|_| "unreadable BAR")?;
        let mut step = 1;
        match info {
            Some(BarInfo::Memory {
                address_type, size, ..
            }) if size > 0 => {
                let mut next = NEXT_MMIO.lock();
                let at = align_up(*next, size.max(4096));
                if at + size > MMIO_WINDOW.1 {
                    return Err("PCI memory window exhausted");
                }
                *next = at + size;
                match address_type {
                    MemoryBarType::Width64 => {
                        root.set_bar_64(df, i, at);
                        step = 2;
                    }
                    _ => root.set_bar_32(df, i, at as u32),
                }
            }
            Some(BarInfo::IO { size, .. }) if size > 0 => {
                let mut next = NEXT_IO.lock();
                let at = align_up(u64::from(*next), u64::from(size)) as u32;
                if at + size > IO_WINDOW.1 {
                    return Err("PCI I/O window exhausted");
                }
                *next = at + size;
                root.set_bar_32(df, i, at);
            }
            _ => {}
        }
        i += step;
    }
    root.set_command(
        df,
        Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    Ok(())
}
