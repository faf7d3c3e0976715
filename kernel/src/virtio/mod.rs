//! virtio-net through virtio-drivers: finds the device (virtio-mmio on
//! microvm, PCI elsewhere), supplies the DMA HAL from the arena, and
//! implements `pias_net::Nic` over `VirtIONetRaw` with pre-posted buffers.

use crate::arena;
use core::ptr::NonNull;
use pias_net::{Nic, NicError};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{
    DeviceStatus, DeviceType, InterruptStatus, SomeTransport, Transport,
};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Descriptors per virtqueue: room for a whole receive batch's transmits
/// (and more) while the device drains the queue.
const QUEUE: usize = 256;
/// Receive buffers: one per descriptor, virtio header plus a full frame.
const RX_BUF: usize = 2048;
/// Transmit buffers in flight: one per descriptor. With 64 a flood filled
/// the ring every receive batch and the loop waited on the device (25 kpps
/// forwarded, TCG); with 256, 53-57 kpps.
const TX_BUFS: usize = 256;
const TX_BUF: usize = 2048;

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

type Dev = VirtIONetRaw<ArenaHal, NoEventIdx, QUEUE>;

/// VIRTIO_F_RING_EVENT_IDX (virtio 1.2, 6.3).
const F_RING_EVENT_IDX: u64 = 1 << 29;

/// The transport with VIRTIO_F_RING_EVENT_IDX hidden from the driver.
/// virtio-drivers 0.13 decides whether to notify under event-index
/// suppression with `avail_idx >= avail_event + 1`, unwrapped: before the
/// 16-bit indices wrap it notifies on every buffer the device has not caught
/// up with (one notification per frame under load, each an exit that
/// contends for QEMU's lock), and after they wrap it stops notifying. Without
/// the feature it follows the used ring's NO_NOTIFY flag, which the device
/// sets while it is busy with the queue: no wrap arithmetic, and no
/// notification while the device is already working.
pub struct NoEventIdx(SomeTransport<'static>);

impl Transport for NoEventIdx {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features() & !F_RING_EVENT_IDX
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0
            .write_driver_features(driver_features & !F_RING_EVENT_IDX)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.0.write_config_space(offset, value)
    }
}

pub struct VirtioNic {
    dev: Dev,
    rx_bufs: &'static mut [[u8; RX_BUF]],
    /// The receive buffer each outstanding token (a descriptor index, below
    /// `QUEUE`) stands for: found in one step, not by a search.
    rx_slot_of: [Option<u16>; QUEUE],
    tx_bufs: &'static mut [[u8; TX_BUF]],
    /// The transmit buffer and length each outstanding token stands for.
    tx_slot_of: [Option<(u16, u16)>; QUEUE],
    /// Transmit buffers the device does not hold.
    tx_free: heapless::Vec<u16, TX_BUFS>,
    notifier: Notifier,
    /// Buffers posted / frames queued since the last `kick`.
    rx_reposted: bool,
    tx_queued: bool,
    pub kind: &'static str,
}

#[derive(Debug)]
pub enum ProbeError {
    NotFound,
    Init(&'static str),
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeError::NotFound => f.write_str("no virtio-net device (virtio-mmio or PCI)"),
            ProbeError::Init(why) => write!(f, "virtio-net init failed: {why}"),
        }
    }
}

/// Where to write a queue's index to notify the device (see `VirtioNic::kick`).
enum Notifier {
    /// virtio-mmio QueueNotify register (offset 0x50).
    Mmio { base: usize },
    /// virtio-pci notification addresses of the receive and transmit queues.
    Pci { rx: usize, tx: usize },
}

impl Notifier {
    fn notify(&self, queue: u16) {
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
fn pci_notifier(root: &mut PciRootAny, df: DeviceFunction) -> Option<Notifier> {
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

fn find_mmio() -> Option<(SomeTransport<'static>, usize)> {
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

type PciRootAny = virtio_drivers::transport::pci::bus::PciRoot<crate::pci::AnyCam>;

fn find_pci() -> Result<Option<(SomeTransport<'static>, PciRootAny, DeviceFunction)>, ProbeError> {
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

impl VirtioNic {
    pub fn probe() -> Result<VirtioNic, ProbeError> {
        let (mut dev, notifier, kind) = match find_mmio() {
            Some((t, base)) => {
                let dev = Dev::new(NoEventIdx(t)).map_err(|_| ProbeError::Init("device setup"))?;
                (dev, Notifier::Mmio { base }, "virtio-mmio")
            }
            None => {
                let (t, mut root, df) = find_pci()?.ok_or(ProbeError::NotFound)?;
                let dev = Dev::new(NoEventIdx(t)).map_err(|_| ProbeError::Init("device setup"))?;
                let n = pci_notifier(&mut root, df)
                    .ok_or(ProbeError::Init("virtio PCI capabilities"))?;
                (dev, n, "virtio-pci")
            }
        };
        let rx_bufs =
            arena::alloc_slice(QUEUE, || [0u8; RX_BUF]).map_err(|_| ProbeError::Init("arena"))?;
        let tx_bufs =
            arena::alloc_slice(TX_BUFS, || [0u8; TX_BUF]).map_err(|_| ProbeError::Init("arena"))?;
        let mut rx_slot_of = [None; QUEUE];
        for (i, buf) in rx_bufs.iter_mut().enumerate() {
            // SAFETY: each buffer lives in the arena for ever (never freed or
            // reused), and is touched again only after `poll_receive` returns its
            // token and `receive_complete` takes it back (see `receive`).
            let token =
                unsafe { dev.receive_begin(buf) }.map_err(|_| ProbeError::Init("rx post"))?;
            *rx_slot_of
                .get_mut(usize::from(token))
                .ok_or(ProbeError::Init("rx token beyond the queue"))? = Some(i as u16);
        }
        dev.enable_interrupts();
        Ok(VirtioNic {
            dev,
            rx_bufs,
            rx_slot_of,
            tx_bufs,
            tx_slot_of: [None; QUEUE],
            tx_free: (0..TX_BUFS as u16).collect(),
            notifier,
            rx_reposted: false,
            tx_queued: false,
            kind,
        })
    }

    /// Acknowledges the device's interrupt so that the next event raises a new edge.
    pub fn ack_interrupt(&mut self) {
        let _ = self.dev.ack_interrupt();
    }

    /// Notifies the device of buffers added since the last call: one
    /// notification per loop pass at most, whatever virtio-drivers decided
    /// per buffer (with event indices hidden by `NoEventIdx` it follows the
    /// device's NO_NOTIFY flag, which has no wrap to get wrong; this pass
    /// keeps a queue from waiting on a missed notification all the same).
    pub fn kick(&mut self) {
        if core::mem::take(&mut self.rx_reposted) {
            self.notifier.notify(QUEUE_RECEIVE);
        }
        if core::mem::take(&mut self.tx_queued) {
            self.notifier.notify(QUEUE_TRANSMIT);
        }
    }

    /// Notifies the device and waits (bounded by `timeout_us`) until it has
    /// taken every queued frame, so nothing is lost when the appliance stops.
    pub fn flush_tx(&mut self, timeout_us: u64) -> bool {
        self.tx_queued = true;
        self.kick();
        let deadline = crate::time::uptime_us() + timeout_us;
        loop {
            self.reclaim_tx();
            if self.tx_free.is_full() {
                return true;
            }
            if crate::time::uptime_us() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    /// Whether a received frame is waiting.
    pub fn rx_pending(&self) -> bool {
        self.dev.poll_receive().is_some()
    }

    fn reclaim_tx(&mut self) {
        while let Some(token) = self.dev.poll_transmit() {
            let Some((i, len)) = self
                .tx_slot_of
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                log::error!("virtio: unknown transmit token {token}");
                return;
            };
            let (i, len) = (usize::from(i), usize::from(len));
            // SAFETY: this token was stored with slot i and length len when
            // `transmit_begin` returned it for `tx_bufs[i][..len]`, so this is
            // the same buffer.
            if unsafe { self.dev.transmit_complete(token, &self.tx_bufs[i][..len]) }.is_err() {
                log::warn!("virtio: transmit completion failed");
            }
            // Slot i was taken from `tx_free`, so there is room to give it back.
            let _ = self.tx_free.push(i as u16);
        }
    }
}

impl Nic for VirtioNic {
    fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    fn notify(&mut self) {
        self.kick();
    }

    fn receive(&mut self, out: &mut [u8]) -> Result<Option<usize>, NicError> {
        let Some(token) = self.dev.poll_receive() else {
            return Ok(None);
        };
        let Some(i) = self
            .rx_slot_of
            .get_mut(usize::from(token))
            .and_then(Option::take)
        else {
            log::error!("virtio: unknown receive token {token}");
            return Err(NicError);
        };
        let i = usize::from(i);
        // SAFETY: slot i held this token, which `receive_begin` returned for the
        // whole of `rx_bufs[i]`.
        let done = unsafe { self.dev.receive_complete(token, &mut self.rx_bufs[i]) };
        let result = match done {
            Ok((hdr, len)) if len <= out.len() && hdr + len <= RX_BUF => {
                out[..len].copy_from_slice(&self.rx_bufs[i][hdr..hdr + len]);
                Ok(Some(len))
            }
            _ => Err(NicError),
        };
        // SAFETY: the device has returned buffer i and the frame is copied out;
        // it is posted whole again and, as in `probe`, not touched until its new
        // token comes back.
        match unsafe { self.dev.receive_begin(&mut self.rx_bufs[i]) } {
            Ok(t) => match self.rx_slot_of.get_mut(usize::from(t)) {
                Some(slot) => {
                    *slot = Some(i as u16);
                    self.rx_reposted = true;
                }
                None => log::error!("virtio: receive token {t} beyond the queue"),
            },
            Err(_) => log::error!("virtio: could not re-post receive buffer {i}"),
        }
        result
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        self.dev.can_send() && !self.tx_free.is_empty()
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.reclaim_tx();
        let i = usize::from(*self.tx_free.last().ok_or(NicError)?);
        let hdr = self
            .dev
            .fill_buffer_header(&mut self.tx_bufs[i])
            .map_err(|_| NicError)?;
        let len = hdr + frame.len();
        if len > TX_BUF {
            return Err(NicError);
        }
        self.tx_bufs[i][hdr..len].copy_from_slice(frame);
        // SAFETY: slot i is in `tx_free`, so the device does not hold buffer
        // i; it stays untouched until `reclaim_tx` sees the new token come
        // back and completes it with the same slice.
        let token =
            unsafe { self.dev.transmit_begin(&self.tx_bufs[i][..len]) }.map_err(|_| NicError)?;
        // Buffer i is the device's now.
        self.tx_free.pop();
        match self.tx_slot_of.get_mut(usize::from(token)) {
            Some(slot) => *slot = Some((i as u16, len as u16)),
            // Not a descriptor index: the buffer can never be reclaimed, so
            // it is retired (never written again) rather than reused.
            None => {
                log::error!("virtio: transmit token {token} beyond the queue; buffer {i} retired")
            }
        }
        self.tx_queued = true;
        Ok(())
    }
}
