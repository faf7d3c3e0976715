//! The virtio-net driver over virtio-drivers' queues: negotiates checksum and
//! TCP segmentation offload (with mergeable receive buffers, so a 64 KB
//! frame arrives in 2 KiB pieces) and implements `pias_net::Nic` with
//! pre-posted buffers found by token.

use super::{
    find_mmio, find_pci, pci_notifier, ArenaHal, Notifier, ProbeError, QUEUE_RECEIVE,
    QUEUE_TRANSMIT,
};
use crate::arena;
use pias_net::{Nic, NicError, Offload};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, SomeTransport, Transport};

/// Descriptors per virtqueue: room for a whole receive batch's transmits
/// (and more) while the device drains the queue.
const QUEUE: usize = 256;
/// Receive buffers: one per descriptor. A frame larger than one (a large
/// TCP frame) spans several, VIRTIO_NET_F_MRG_RXBUF.
const RX_BUF: usize = 2048;
/// Transmit buffers in flight: one per descriptor. With 64 a flood filled
/// the ring every receive batch and the loop waited on the device (25 kpps
/// forwarded, TCG); with 256, 53-57 kpps.
const TX_BUFS: usize = 256;
const TX_BUF: usize = 2048;
/// A full transmit ring: how long the driver waits for room before the
/// frame is refused, and the halts it waits in. Under TCG the device model
/// drains the ring on the host's CPU that a polling guest would take from
/// it: halting there took a 64-byte flood from ~50k to ~60k pps forwarded.
const TX_ROOM_WAIT_US: u64 = 10_000;
const TX_ROOM_HALT_US: u64 = 20;
/// Buffers for large frames handed to the device to segment.
const LARGE_BUFS: usize = 8;
const LARGE_BUF: usize = HDR + pias_net::device::LARGE_FRAME_MAX;

/// Feature bits (virtio 1.2, 5.1.3 and 6).
const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_MAC: u64 = 1 << 5;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_HOST_TSO4: u64 = 1 << 11;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_STATUS: u64 = 1 << 16;
const F_VERSION_1: u64 = 1 << 32;

/// `virtio_net_hdr` with `num_buffers` (virtio 1.0, or MRG_RXBUF): 12 bytes.
/// The driver refuses a device that offers neither (a 10-byte header).
const HDR: usize = 12;
const HDR_F_NEEDS_CSUM: u8 = 1;
const HDR_F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;

/// What to ask of the device that offers `offered`: offloads only with what
/// they need (receiving large frames needs the partial checksums they carry
/// and buffers to merge; sending them needs the device to finish checksums).
fn choose_features(offered: u64) -> u64 {
    let wanted = F_MAC
        | F_STATUS
        | F_VERSION_1
        | F_MRG_RXBUF
        | F_CSUM
        | F_HOST_TSO4
        | F_GUEST_CSUM
        | F_GUEST_TSO4;
    let mut f = offered & wanted;
    if f & F_GUEST_CSUM == 0 || f & F_MRG_RXBUF == 0 {
        f &= !F_GUEST_TSO4;
    }
    if f & F_CSUM == 0 {
        f &= !F_HOST_TSO4;
    }
    f
}

/// A transmit buffer the device holds.
#[derive(Clone, Copy)]
enum TxSlot {
    Small(u16, u16),
    Large(u16, u32),
}

type Queue = VirtQueue<ArenaHal, QUEUE>;

pub struct VirtioNic {
    transport: SomeTransport<'static>,
    rx: Queue,
    tx: Queue,
    mac: [u8; 6],
    features: u64,
    rx_bufs: &'static mut [[u8; RX_BUF]],
    /// The receive buffer each outstanding token (a descriptor index, below
    /// `QUEUE`) stands for: found in one step, not by a search.
    rx_slot_of: [Option<u16>; QUEUE],
    tx_bufs: &'static mut [[u8; TX_BUF]],
    large_bufs: &'static mut [u8],
    /// The transmit buffer and length each outstanding token stands for.
    tx_slot_of: [Option<TxSlot>; QUEUE],
    /// Transmit buffers the device does not hold.
    tx_free: heapless::Vec<u16, TX_BUFS>,
    large_free: heapless::Vec<u16, LARGE_BUFS>,
    notifier: Notifier,
    /// Buffers posted / frames queued without a notification of the
    /// device since the last `kick` (it had asked not to be notified).
    rx_reposted: bool,
    tx_queued: bool,
    /// Whether a full transmit ring is waited out halted (else polled:
    /// `idle = "poll"`).
    pub halt_for_room: bool,
    /// A wait for transmit room ran out and the device has taken nothing
    /// since: frames are refused at once, not each after a full wait.
    tx_stalled: bool,
    /// Every receive buffer has been posted once (`init`): a buffer posted
    /// since notifies the device at once if it asks to be.
    started: bool,
    pub kind: &'static str,
}

impl VirtioNic {
    pub fn probe() -> Result<VirtioNic, ProbeError> {
        match find_mmio() {
            Some((t, base)) => VirtioNic::init(t, || Some(Notifier::Mmio { base }), "virtio-mmio"),
            None => {
                let (t, mut root, df) = find_pci()?.ok_or(ProbeError::NotFound)?;
                VirtioNic::init(t, move || pci_notifier(&mut root, df), "virtio-pci")
            }
        }
    }

    /// Negotiates features, sets up both queues and posts every receive
    /// buffer; `notifier` finds where to notify (after queue setup).
    fn init(
        mut t: SomeTransport<'static>,
        notifier: impl FnOnce() -> Option<Notifier>,
        kind: &'static str,
    ) -> Result<VirtioNic, ProbeError> {
        t.set_status(DeviceStatus::empty());
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = choose_features(t.read_device_features());
        if features & (F_VERSION_1 | F_MRG_RXBUF) == 0 {
            return Err(ProbeError::Init(
                "device offers neither VIRTIO_F_VERSION_1 nor MRG_RXBUF",
            ));
        }
        if features & F_MAC == 0 {
            return Err(ProbeError::Init("device has no MAC address"));
        }
        t.write_driver_features(features);
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
        t.set_guest_page_size(4096);
        if !t.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(ProbeError::Init("device refused the features"));
        }
        let rx = Queue::new(&mut t, QUEUE_RECEIVE, false, false)
            .map_err(|_| ProbeError::Init("receive queue"))?;
        let tx = Queue::new(&mut t, QUEUE_TRANSMIT, false, false)
            .map_err(|_| ProbeError::Init("transmit queue"))?;
        let mac: [u8; 6] = t
            .read_config_space(0)
            .map_err(|_| ProbeError::Init("MAC address"))?;
        t.finish_init();
        let notifier = notifier().ok_or(ProbeError::Init("virtio PCI capabilities"))?;
        let rx_bufs = arena::alloc_slice(QUEUE, || [0u8; RX_BUF])
            .map_err(|_| ProbeError::OutOfMemory("receive buffers"))?;
        let tx_bufs = arena::alloc_slice(TX_BUFS, || [0u8; TX_BUF])
            .map_err(|_| ProbeError::OutOfMemory("transmit buffers"))?;
        let large = if features & F_HOST_TSO4 != 0 {
            LARGE_BUFS
        } else {
            0
        };
        let large_bufs = arena::alloc_slice(large * LARGE_BUF, || 0u8)
            .map_err(|_| ProbeError::OutOfMemory("large transmit buffers"))?;
        let mut nic = VirtioNic {
            transport: t,
            rx,
            tx,
            mac,
            features,
            rx_bufs,
            rx_slot_of: [None; QUEUE],
            tx_bufs,
            large_bufs,
            tx_slot_of: [None; QUEUE],
            tx_free: (0..TX_BUFS as u16).collect(),
            large_free: (0..large as u16).collect(),
            notifier,
            rx_reposted: false,
            tx_queued: false,
            halt_for_room: true,
            tx_stalled: false,
            started: false,
            kind,
        };
        // Every buffer posted, then one notification: not one each (an
        // exit each, ~5 µs under TCG, 1-2 ms of the boot).
        for i in 0..QUEUE {
            nic.post_rx(i)
                .map_err(|_| ProbeError::Init("receive buffer post"))?;
        }
        nic.started = true;
        nic.kick();
        // No interrupts while the loop polls (as NAPI does): only a halted
        // loop asks for them (`arm_wakeup`). Completed transmits never wake it.
        nic.rx.set_dev_notify(false);
        nic.tx.set_dev_notify(false);
        log::info!(
            "virtio-net: checksum offload rx {} tx {}, TSO rx {} tx {}, mergeable rx buffers {}",
            features & F_GUEST_CSUM != 0,
            features & F_CSUM != 0,
            features & F_GUEST_TSO4 != 0,
            features & F_HOST_TSO4 != 0,
            features & F_MRG_RXBUF != 0,
        );
        Ok(nic)
    }

    /// Posts receive buffer `i` to the device.
    fn post_rx(&mut self, i: usize) -> Result<(), NicError> {
        let buf = self.rx_bufs.get_mut(i).ok_or(NicError)?;
        // SAFETY: each buffer lives in the arena for ever (never freed or
        // reused), and is touched again only after its token comes back
        // from the used ring and `take_rx` pops it with the same buffer.
        let token = unsafe { self.rx.add(&[], &mut [&mut buf[..]]) }.map_err(|_| NicError)?;
        match self.rx_slot_of.get_mut(usize::from(token)) {
            Some(slot) => *slot = Some(i as u16),
            None => {
                log::error!("virtio: receive token {token} beyond the queue");
                return Err(NicError);
            }
        }
        if self.started && self.rx.should_notify() {
            self.notifier.notify(QUEUE_RECEIVE);
            self.rx_reposted = false;
        } else {
            self.rx_reposted = true;
        }
        Ok(())
    }

    /// Takes the next used receive buffer back from the device: its index
    /// and the bytes the device wrote.
    fn take_rx(&mut self) -> Result<Option<(usize, usize)>, NicError> {
        let Some(token) = self.rx.peek_used() else {
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
        // SAFETY: slot i held this token, which `post_rx` got for the whole
        // of `rx_bufs[i]`.
        let used = unsafe {
            self.rx
                .pop_used(token, &[], &mut [&mut self.rx_bufs[i][..]])
        }
        .map_err(|_| NicError)?;
        Ok(Some((i, (used as usize).min(RX_BUF))))
    }

    /// Before the loop halts: asks the device to interrupt when a frame
    /// arrives and acknowledges its last interrupt (so the next is a new
    /// edge). True if the loop may halt; false if a frame came meanwhile
    /// (then it must not: `disarm_wakeup` and poll).
    /// Without this, the device interrupted the polling loop for every batch
    /// of frames it delivered: under TCG an exit, the handler and an EOI each.
    pub fn arm_wakeup(&mut self) -> bool {
        self.rx.set_dev_notify(true);
        // The flag's store must be seen before the used ring is read again
        // (the device writes the ring, then reads the flag).
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let _ = self.transport.ack_interrupt();
        !self.rx.can_pop()
    }

    /// After the halt: back to polling without interrupts.
    pub fn disarm_wakeup(&mut self) {
        self.rx.set_dev_notify(false);
    }

    /// Notifies the device of buffers added since the last call, each queue
    /// only if it has news: once per loop pass, so that no queue waits on a
    /// notification skipped while the device said it was busy.
    pub fn kick(&mut self) {
        let (rx, tx) = (
            core::mem::take(&mut self.rx_reposted),
            core::mem::take(&mut self.tx_queued),
        );
        if rx || tx {
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        }
        if rx && self.rx.should_notify() {
            self.notifier.notify(QUEUE_RECEIVE);
        }
        if tx && self.tx.should_notify() {
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
            if self.tx_free.is_full() && self.tx_slot_of.iter().all(Option::is_none) {
                return true;
            }
            if crate::time::uptime_us() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    fn reclaim_tx(&mut self) {
        while let Some(token) = self.tx.peek_used() {
            let Some(slot) = self
                .tx_slot_of
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                log::error!("virtio: unknown transmit token {token}");
                return;
            };
            let (buf, free): (&[u8], _) = match slot {
                TxSlot::Small(i, len) => (
                    &self.tx_bufs[usize::from(i)][..usize::from(len)],
                    self.tx_free.push(i).is_ok(),
                ),
                TxSlot::Large(i, len) => {
                    let at = usize::from(i) * LARGE_BUF;
                    (
                        &self.large_bufs[at..at + len as usize],
                        self.large_free.push(i).is_ok(),
                    )
                }
            };
            // SAFETY: this token was stored with this buffer and length when
            // `queue_tx` added it, so this is the same buffer.
            if unsafe { self.tx.pop_used(token, &[buf], &mut []) }.is_err() || !free {
                log::warn!("virtio: transmit completion failed");
            }
            self.tx_stalled = false;
        }
    }

    /// Hands `buf` (header and frame) to the device, as `slot`.
    fn queue_tx(&mut self, slot: TxSlot) -> Result<(), NicError> {
        let buf: &[u8] = match slot {
            TxSlot::Small(i, len) => &self.tx_bufs[usize::from(i)][..usize::from(len)],
            TxSlot::Large(i, len) => {
                let at = usize::from(i) * LARGE_BUF;
                &self.large_bufs[at..at + len as usize]
            }
        };
        // SAFETY: the buffer is one the device does not hold (taken from a
        // free list by the caller, which removes it only on success); it stays
        // untouched until `reclaim_tx` sees the token come back and pops it
        // with the same slice.
        let token = unsafe { self.tx.add(&[buf], &mut []) }.map_err(|_| NicError)?;
        match self.tx_slot_of.get_mut(usize::from(token)) {
            Some(s) => *s = Some(slot),
            // Not a descriptor index: the buffer can never be reclaimed, so
            // it is retired (never written again) rather than reused.
            None => log::error!("virtio: transmit token {token} beyond the queue; buffer retired"),
        }
        // Wake the device now unless it is at work on the queue already (it
        // sets NO_NOTIFY then, and finds this frame by itself); `kick`
        // looks again at the end of the loop's pass.
        self.tx_queued = !self.tx.should_notify();
        if !self.tx_queued {
            self.notifier.notify(QUEUE_TRANSMIT);
        }
        Ok(())
    }
}

/// Appends `data` to `out[*len..]`; false if it does not fit.
fn append(out: &mut [u8], len: &mut usize, data: &[u8]) -> bool {
    match out.get_mut(*len..*len + data.len()) {
        Some(dst) => {
            dst.copy_from_slice(data);
            *len += data.len();
            true
        }
        None => false,
    }
}

/// What the header says of a received frame.
fn rx_offload(hdr: &[u8]) -> Result<Offload, NicError> {
    let u16_at = |at: usize| u16::from_le_bytes([hdr[at], hdr[at + 1]]);
    let flags = hdr[0];
    let partial = (flags & HDR_F_NEEDS_CSUM != 0).then(|| (u16_at(6), u16_at(8)));
    let gso_size = match hdr[1] {
        GSO_NONE => 0,
        GSO_TCPV4 => u16_at(4),
        // Not negotiated: TCPv6, UDP and ECN (GUEST_ECN) never come.
        _ => return Err(NicError),
    };
    Ok(Offload {
        partial,
        valid: flags & HDR_F_DATA_VALID != 0,
        gso_size,
    })
}

impl Nic for VirtioNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn notify(&mut self) {
        self.kick();
    }

    fn receive(&mut self, out: &mut [u8]) -> Result<Option<(usize, Offload)>, NicError> {
        let Some((i, used)) = self.take_rx()? else {
            return Ok(None);
        };
        let mut hdr = [0u8; HDR];
        let mut ok = used >= HDR;
        if ok {
            hdr.copy_from_slice(&self.rx_bufs[i][..HDR]);
        }
        let mut len = 0;
        ok = ok && append(out, &mut len, &self.rx_bufs[i][HDR..used]);
        let _ = self.post_rx(i);
        let buffers = if self.features & F_MRG_RXBUF != 0 {
            u16::from_le_bytes([hdr[10], hdr[11]]).clamp(1, QUEUE as u16)
        } else {
            1
        };
        // The device makes all of a frame's buffers used at once.
        for _ in 1..buffers {
            let Some((k, used)) = self.take_rx()? else {
                log::warn!("virtio: a merged frame ended early");
                return Err(NicError);
            };
            ok = ok && append(out, &mut len, &self.rx_bufs[k][..used]);
            let _ = self.post_rx(k);
        }
        if !ok {
            return Err(NicError);
        }
        Ok(Some((len, rx_offload(&hdr)?)))
    }

    fn rx_ring_len(&self) -> usize {
        // A small frame takes one buffer, and every buffer is posted.
        QUEUE
    }

    fn next_is_large(&self) -> bool {
        // The first buffer of the next used frame says (its header's GSO type).
        let Some(token) = self.rx.peek_used() else {
            return false;
        };
        let slot = self.rx_slot_of.get(usize::from(token)).copied().flatten();
        slot.and_then(|i| self.rx_bufs.get(usize::from(i)))
            .is_some_and(|b| b[1] != GSO_NONE)
    }

    fn wait_for_room(&mut self, large: bool) -> bool {
        if self.has_room(large) {
            return true;
        }
        if self.tx_stalled {
            return false;
        }
        let deadline = crate::time::uptime_us() + TX_ROOM_WAIT_US;
        loop {
            if !(self.halt_for_room && crate::interrupts::halt_us(TX_ROOM_HALT_US)) {
                core::hint::spin_loop();
            }
            if self.has_room(large) {
                return true;
            }
            if crate::time::uptime_us() >= deadline {
                self.tx_stalled = true;
                let kind = if large { "large " } else { "" };
                log::warn!("virtio: the device took no {kind}transmit buffer back in {TX_ROOM_WAIT_US} us; refusing frames until it does");
                return false;
            }
        }
    }

    fn can_transmit(&mut self) -> bool {
        self.reclaim_tx();
        self.tx.available_desc() >= 1 && !self.tx_free.is_empty()
    }

    fn can_transmit_large(&mut self) -> bool {
        self.reclaim_tx();
        self.takes_large() && self.tx.available_desc() >= 1 && !self.large_free.is_empty()
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.reclaim_tx();
        let i = *self.tx_free.last().ok_or(NicError)?;
        let len = HDR + frame.len();
        let buf = self.tx_bufs.get_mut(usize::from(i)).ok_or(NicError)?;
        let dst = buf.get_mut(..len).ok_or(NicError)?;
        dst[..HDR].fill(0);
        dst[HDR..].copy_from_slice(frame);
        self.queue_tx(TxSlot::Small(i, len as u16))?;
        // Buffer i is the device's now.
        self.tx_free.pop();
        Ok(())
    }

    fn takes_large(&self) -> bool {
        self.features & F_HOST_TSO4 != 0
    }

    fn transmit_large(&mut self, frame: &[u8], o: Offload) -> Result<(), NicError> {
        let (Some((start, offset)), true) = (o.partial, self.takes_large()) else {
            return Err(NicError);
        };
        let ihl = usize::from(frame.get(14).ok_or(NicError)? & 0x0f) * 4;
        let thl = usize::from(frame.get(14 + ihl + 12).ok_or(NicError)? >> 4) * 4;
        // `NicDevice` waited for a large buffer (`wait_for_room`) already.
        let i = *self.large_free.last().ok_or(NicError)?;
        let len = HDR + frame.len();
        // Within buffer i: the next one may be the device's.
        if len > LARGE_BUF {
            return Err(NicError);
        }
        let at = usize::from(i) * LARGE_BUF;
        let dst = self.large_bufs.get_mut(at..at + len).ok_or(NicError)?;
        let mut hdr = [0u8; HDR];
        hdr[0] = HDR_F_NEEDS_CSUM;
        hdr[1] = GSO_TCPV4;
        hdr[2..4].copy_from_slice(&((14 + ihl + thl) as u16).to_le_bytes());
        hdr[4..6].copy_from_slice(&o.gso_size.to_le_bytes());
        hdr[6..8].copy_from_slice(&start.to_le_bytes());
        hdr[8..10].copy_from_slice(&offset.to_le_bytes());
        dst[..HDR].copy_from_slice(&hdr);
        dst[HDR..].copy_from_slice(frame);
        self.queue_tx(TxSlot::Large(i, len as u32))?;
        self.large_free.pop();
        Ok(())
    }
}
