//! virtio through virtio-drivers: finds the network device (virtio-mmio on
//! microvm, PCI elsewhere), supplies the DMA HAL from the arena, and knows
//! where to notify its queues; the driver itself is `net`.

mod net;

pub use net::VirtioNic;

use crate::arena;
use core::ptr::NonNull;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, SomeTransport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

const MMIO_BASE: usize = 0xfeb0_0000;
const MMIO_STRIDE: usize = 512;
const MMIO_SLOTS: usize = 32;
const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;
/// virtio-net queue indices.
const QUEUE_RECEIVE: u16 = 0;
const QUEUE_TRANSMIT: u16 = 1;

/// DMA from the boot arena; addresses are identity-mapped, so physical = virtual.
pub struct ArenaHal;

// SAFETY: everything the kernel addresses (image, stack, arena, MMIO) is in
// the identity map, so virtual = physical, and x86 DMA is cache-coherent, so
// `share` and `unshare` need no copies or flushes. `dma_alloc` returns fresh,
// zeroed, page-aligned arena pages that are never handed out again
// (`dma_dealloc` keeps them), so they alias nothing. One gap: on arena
// exhaustion it returns `(0, dangling)`, which the trait's contract does not
// allow; it is sound only because virtio-drivers 0.13 (pinned with `=`) checks
// for physical address 0 in its one caller, `Dma::new`, before using the pointer.
unsafe impl Hal for ArenaHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match arena::alloc_pages(pages)
            .ok()
            .and_then(|a| Some((a as u64, NonNull::new(a as *mut u8)?)))
        {
            Some(r) => r,
            None => {
                log::error!("virtio: no arena left for {pages} DMA pages");
                (0, NonNull::dangling())
            }
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // Arena memory is reserved for the life of the appliance.
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

#[derive(Debug)]
pub enum ProbeError {
    NotFound,
    Init(&'static str),
    /// The arena has no room for the named buffers.
    OutOfMemory(&'static str),
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeError::NotFound => f.write_str("no virtio-net device (virtio-mmio or PCI)"),
            ProbeError::Init(why) => write!(f, "virtio-net init failed: {why}"),
            ProbeError::OutOfMemory(what) => write!(
                f,
                "no room in the arena for virtio-net's {what} (give the VM more memory, -m)"
            ),
        }
    }
}

/// Where to write a queue's index to notify the device (see `VirtioNic::kick`).
pub(crate) enum Notifier {
    /// virtio-mmio QueueNotify register (offset 0x50).
    Mmio { base: usize },
    /// virtio-pci notification addresses of the receive and transmit queues.
    Pci { rx: usize, tx: usize },
}

impl Notifier {
    pub(crate) fn notify(&self, queue: u16) {
        // SAFETY: `base + 0x50` is QueueNotify of the virtio-mmio device
        // `find_mmio` found, and `rx`/`tx` are the notify addresses
        // `pci_notifier` derived from the device's capability inside a BAR
        // `assign_bars` placed: device registers, identity-mapped uncached and
        // aligned for the write. Writing a queue index only tells the device to
        // look at that queue, whose posted buffers it owns already.
        unsafe {
            match *self {
                Notifier::Mmio { base } => {
                    core::ptr::write_volatile((base + 0x50) as *mut u32, u32::from(queue))
                }
                Notifier::Pci { rx, tx } => {
                    let addr = if queue == QUEUE_RECEIVE { rx } else { tx };
                    core::ptr::write_volatile(addr as *mut u16, queue)
                }
            }
        }
    }
}

const PCI_CAP_VENDOR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON: u8 = 1;
const VIRTIO_PCI_CAP_NOTIFY: u8 = 2;
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1e;

/// Finds the notification addresses of queues 0 and 1 from the virtio PCI
/// capabilities (after BAR assignment and queue setup).
pub(crate) fn pci_notifier(root: &mut PciRootAny, df: DeviceFunction) -> Option<Notifier> {
    use virtio_drivers::transport::pci::bus::ConfigurationAccess;
    let cam = crate::pci::cam();
    let mut common = None;
    let mut notify = None;
    for cap in root.capabilities(df) {
        if cap.id != PCI_CAP_VENDOR {
            continue;
        }
        let off = cap.offset;
        let cfg_type = crate::pci::read_u8(&cam, df, off + 3);
        let bar = crate::pci::read_u8(&cam, df, off + 4);
        let offset = cam.read_word(df, off + 8) as u64;
        match cfg_type {
            VIRTIO_PCI_CAP_COMMON if common.is_none() => common = Some((bar, offset)),
            VIRTIO_PCI_CAP_NOTIFY if notify.is_none() => {
                notify = Some((bar, offset, cam.read_word(df, off + 16) as u64))
            }
            _ => {}
        }
    }
    let bar_base = |root: &mut PciRootAny, bar: u8| {
        root.bar_info(df, bar)
            .ok()
            .flatten()
            .and_then(|b| b.memory_address_size())
            .map(|(a, _)| a)
    };
    let (cbar, coff) = common?;
    let (nbar, noff, mult) = notify?;
    let common_base = (bar_base(root, cbar)? + coff) as usize;
    let notify_base = bar_base(root, nbar)? + noff;
    let mut addr = [0usize; 2];
    for (q, slot) in addr.iter_mut().enumerate() {
        // SAFETY: `common_base` is the device's common configuration structure
        // (an assigned BAR plus the capability's offset), identity-mapped
        // uncached; queue_select and queue_notify_off are aligned u16 registers.
        // Selecting a queue only changes which queue those registers show, and
        // virtio-drivers selects again before each queue access of its own.
        let off = unsafe {
            core::ptr::write_volatile((common_base + COMMON_QUEUE_SELECT) as *mut u16, q as u16);
            core::ptr::read_volatile((common_base + COMMON_QUEUE_NOTIFY_OFF) as *const u16)
        };
        *slot = (notify_base + u64::from(off) * mult) as usize;
    }
    Some(Notifier::Pci {
        rx: addr[0],
        tx: addr[1],
    })
}

pub(crate) fn find_mmio() -> Option<(SomeTransport<'static>, usize)> {
    for slot in 0..MMIO_SLOTS {
        let addr = MMIO_BASE + slot * MMIO_STRIDE;
        // SAFETY: the microvm virtio-mmio window is identity-mapped and uncached;
        // MagicValue (offset 0) and DeviceID (offset 8) are aligned u32 registers
        // whose reads have no side effects. On other machine types the window is
        // unassigned and reads return all-ones or 0, which the check skips.
        let (magic, id) = unsafe {
            (
                core::ptr::read_volatile(addr as *const u32),
                core::ptr::read_volatile((addr + 8) as *const u32),
            )
        };
        if magic != VIRTIO_MMIO_MAGIC || id != DeviceType::Network as u32 {
            continue;
        }
        let header = NonNull::new(addr as *mut VirtIOHeader)?;
        // SAFETY: a virtio-mmio network device answered at `addr`, which is
        // 512-aligned; its 512-byte window (header and config space) is
        // identity-mapped, exists for the whole run, and is used only through
        // this transport and `Notifier::Mmio`'s QueueNotify writes.
        match unsafe { MmioTransport::new(header, MMIO_STRIDE) } {
            Ok(t) => return Some((t.into(), addr)),
            Err(e) => log::warn!("virtio-mmio at {addr:#x}: {e}"),
        }
    }
    None
}

pub(crate) type PciRootAny = virtio_drivers::transport::pci::bus::PciRoot<crate::pci::AnyCam>;

pub(crate) fn find_pci(
) -> Result<Option<(SomeTransport<'static>, PciRootAny, DeviceFunction)>, ProbeError> {
    let mut root = crate::pci::root();
    let found = root
        .enumerate_bus(0)
        .find(|(_, info)| virtio_device_type(info) == Some(DeviceType::Network));
    let Some((df, _)) = found else {
        return Ok(None);
    };
    crate::pci::assign_bars(&mut root, df).map_err(ProbeError::Init)?;
    let t = PciTransport::new::<ArenaHal, _>(&mut root, df)
        .map_err(|_| ProbeError::Init("PCI transport"))?;
    Ok(Some((t.into(), root, df)))
}
