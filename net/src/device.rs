//! The smoltcp `Device` over any driver that implements `Nic`. Received frames
//! pass through `classify` first; drops, driver errors and full rings are counted.

use crate::classify::classify_offloaded;
use crate::offload::{coalesce, complete_checksum, LargeTcp, Offload};
use alloc::boxed::Box;
use pias::status::NetCounters;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The largest Ethernet frame handled (1500-byte MTU plus the header).
pub const FRAME_MAX: usize = 1514;

/// The largest frame a device may deliver with TCP segmentation offload: an
/// Ethernet header and the largest IPv4 packet.
pub const LARGE_FRAME_MAX: usize = 14 + 65_535;

/// Receive buffer size: larger than any valid frame (a large TCP frame
/// included), so that an oversized frame still arrives whole and is counted
/// as oversized, not as a driver error.
pub const RX_BUF_LEN: usize = LARGE_FRAME_MAX + 1;

/// Room for the frame read after a run being merged: any ordinary frame (a
/// large one is left in the device, `Nic::next_is_large`). A whole second
/// receive buffer here cost a quarter of the forwarding rate under TCG (the
/// 64 KiB allocation alone, measured; the cause is not understood).
const AHEAD_LEN: usize = 2048;

/// Frames dropped by the classifier in one `receive` call before it yields,
/// so a flood of junk cannot starve the rest of the loop.
const MAX_DROPS_PER_RECEIVE: usize = 64;

/// A driver error (the driver itself logs the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicError;

/// What the packet plane needs of a network driver.
pub trait Nic {
    /// The interface's MAC address; `NicDevice` reads it once, in `new`.
    fn mac(&self) -> [u8; 6];
    /// Copies the next received frame into `buf` and returns its length and
    /// what the device says of it, or `Ok(None)` when nothing is pending.
    /// Frames longer than `buf` are errors.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Offload)>, NicError>;
    /// How many received frames the device can hold for the driver at once
    /// (its receive ring): that many taken back to back, the ring never
    /// found empty, is an overrun (`NicDevice::take_overrun`). The default:
    /// unbounded, never an overrun.
    fn rx_ring_len(&self) -> usize {
        usize::MAX
    }
    /// Whether the next received frame is a large one (the default: never).
    fn next_is_large(&self) -> bool {
        false
    }
    /// Whether `transmit` would find room now.
    fn can_transmit(&mut self) -> bool;
    /// Whether `transmit_large` would find room now (a device with fewer
    /// large buffers than ring slots runs out of those first); the default
    /// is `can_transmit`'s answer.
    fn can_transmit_large(&mut self) -> bool {
        self.can_transmit()
    }
    /// Whether a frame (`large`: for `transmit_large`) would find room now.
    fn has_room(&mut self, large: bool) -> bool {
        if large {
            self.can_transmit_large()
        } else {
            self.can_transmit()
        }
    }
    /// Queues one frame for transmission.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError>;
    /// Whether the device segments large TCP frames (`transmit_large`).
    fn takes_large(&self) -> bool {
        false
    }
    /// Queues a large TCP/IPv4 frame with a partial checksum, for the device
    /// to cut into segments of `offload.gso_size` payload bytes.
    fn transmit_large(&mut self, _frame: &[u8], _offload: Offload) -> Result<(), NicError> {
        Err(NicError)
    }
    /// Tells the device about queued frames now (a driver may otherwise wait
    /// for the loop's next turn); the default does nothing.
    fn notify(&mut self) {}
    /// Waits, bounded, for room for a frame (`large`: for `transmit_large`)
    /// in a full transmit ring (the device told already); false if there is
    /// still none. The default polls `TX_ROOM_POLLS` times.
    fn wait_for_room(&mut self, large: bool) -> bool {
        (0..TX_ROOM_POLLS).any(|_| {
            core::hint::spin_loop();
            self.has_room(large)
        })
    }
}

/// Polls for room in a full transmit ring this many times (after telling the
/// device) before a frame is refused: a burst from the data path outruns a
/// ring that the device empties only when told.
const TX_ROOM_POLLS: usize = 20_000;

/// The frame `pull` made current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Current {
    /// `rx_buf[..len]`, as the driver delivered it.
    Received(usize, Offload),
    /// `seg_buf[..len]`, a segment cut from a large frame in `rx_buf`.
    Segment(usize),
}

/// A large frame in `rx_buf` being cut into segments, one per `pull`.
struct Cutting {
    large: LargeTcp,
    len: usize,
    next: usize,
    count: usize,
}

/// smoltcp's view of a `Nic`, with counters.
pub struct NicDevice<N: Nic> {
    nic: N,
    mac: [u8; 6],
    mtu: u16,
    rx_buf: Box<[u8]>,
    /// The frame received after a run of segments being merged in `rx_buf`
    /// that did not continue it: the next `pull`'s (`AHEAD_LEN`).
    ahead: Box<[u8]>,
    pending: Option<(usize, Offload)>,
    /// Merge runs of one flow's TCP segments into large frames.
    coalesce: bool,
    /// Where segments of a large frame are cut.
    seg_buf: [u8; FRAME_MAX],
    tx_buf: [u8; FRAME_MAX],
    /// The frame `pull` left for `split`.
    current: Option<Current>,
    cutting: Option<Cutting>,
    /// Gated: smoltcp gets only the frames the data path hands it with
    /// `hold_for_stack`; ungated it pulls from the driver itself.
    gated: bool,
    /// A frame handed to smoltcp, not yet consumed.
    held: Option<Current>,
    /// Frames received back to back since the ring was last found empty.
    rx_run: usize,
    /// An overrun since the last `take_overrun`.
    overrun: bool,
    /// Frames and bytes in and out, and every drop by reason; the status
    /// report's `net`.
    pub counters: NetCounters,
}

/// The transmit half of a `NicDevice`, lent out while a received frame is
/// being read: frames the data path sends go straight to the driver.
pub struct DeviceSink<'a, N: Nic> {
    nic: &'a mut N,
    counters: &'a mut NetCounters,
}

impl<N: Nic> crate::dataplane::FrameSink for DeviceSink<'_, N> {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        send(self.nic, self.counters, frame, None)
    }
    fn takes_large(&self) -> bool {
        self.nic.takes_large()
    }
    fn send_large(&mut self, frame: &[u8], offload: Offload) -> bool {
        send(self.nic, self.counters, frame, Some(offload))
    }
}

impl<N: Nic> crate::dataplane::FrameSink for NicDevice<N> {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        send(&mut self.nic, &mut self.counters, frame, None)
    }
    fn takes_large(&self) -> bool {
        self.nic.takes_large()
    }
    fn send_large(&mut self, frame: &[u8], offload: Offload) -> bool {
        send(&mut self.nic, &mut self.counters, frame, Some(offload))
    }
}

/// Sends `frame` (large, for the device to segment, with `large`).
fn send<N: Nic>(
    nic: &mut N,
    counters: &mut NetCounters,
    frame: &[u8],
    large: Option<Offload>,
) -> bool {
    if !nic.has_room(large.is_some()) {
        nic.notify();
        counters.tx_ring_waits += 1;
        if !nic.wait_for_room(large.is_some()) {
            counters.tx_ring_full += 1;
            return false;
        }
    }
    let sent = match large {
        None => nic.transmit(frame),
        Some(o) => nic.transmit_large(frame, o),
    };
    match sent {
        Ok(()) => {
            counters.tx_frames += 1;
            counters.tx_bytes += frame.len() as u64;
            if large.is_some() {
                counters.tx_large += 1;
            }
            true
        }
        Err(NicError) => {
            counters.tx_driver_errors += 1;
            false
        }
    }
}

impl<N: Nic> NicDevice<N> {
    /// `mtu` is the IP MTU (at most 1500).
    pub fn new(nic: N, mtu: u16) -> Self {
        let mac = nic.mac();
        NicDevice {
            nic,
            mac,
            mtu: mtu.min((FRAME_MAX - crate::classify::ETHERNET_HEADER) as u16),
            rx_buf: alloc::vec![0; RX_BUF_LEN].into_boxed_slice(),
            ahead: alloc::vec![0; AHEAD_LEN].into_boxed_slice(),
            pending: None,
            coalesce: false,
            seg_buf: [0; FRAME_MAX],
            tx_buf: [0; FRAME_MAX],
            current: None,
            cutting: None,
            gated: false,
            held: None,
            rx_run: 0,
            overrun: false,
            counters: NetCounters::default(),
        }
    }

    /// A device whose frames go to the data path first (`pull`, `split`),
    /// smoltcp seeing only those handed on with `hold_for_stack`.
    pub fn gated(nic: N, mtu: u16) -> Self {
        let mut d = NicDevice::new(nic, mtu);
        d.gated = true;
        d
    }

    /// Merges runs of in-order TCP segments of one flow that arrive back to
    /// back into large frames (`offload::coalesce`), which the data path may
    /// then forward whole; off unless set.
    pub fn set_coalescing(&mut self, on: bool) {
        self.coalesce = on;
    }

    /// Makes the next frame current: the next segment of a large frame being
    /// cut, or the next received frame that passes `classify` (drops
    /// counted, at most a bounded number per call), merged with the segments
    /// that continue it when coalescing. True if one is ready for `split`.
    pub fn pull(&mut self) -> bool {
        self.current = self.next_segment().or_else(|| {
            self.next_received()
                .map(|(len, o)| Current::Received(len, o))
        });
        self.current.is_some()
    }

    /// The next received frame in `rx_buf` (the one held back first).
    fn next_received(&mut self) -> Option<(usize, Offload)> {
        let (mut len, mut o) = match self.pending.take() {
            Some((n, o)) => {
                self.rx_buf[..n].copy_from_slice(&self.ahead[..n]);
                (n, o)
            }
            None => self.receive_classified(false)?,
        };
        if !self.coalesce {
            return Some((len, o));
        }
        let Some(mut run) = coalesce::start(&self.rx_buf[..len], o) else {
            return Some((len, o));
        };
        // A large frame after the run stays in the device for the next pull.
        while run.open() && !self.nic.next_is_large() {
            let Some((n, next)) = self.receive_classified(true) else {
                break;
            };
            if !run.append(&mut self.rx_buf, &mut len, &self.ahead[..n], next) {
                self.pending = Some((n, next));
                break;
            }
        }
        if run.segments > 1 {
            o = run.finish(&mut self.rx_buf, len);
            self.counters.rx_coalesced += run.segments as u64;
        }
        Some((len, o))
    }

    fn next_segment(&mut self) -> Option<Current> {
        let c = self.cutting.as_mut()?;
        if c.next < c.count {
            if let Ok(n) = c
                .large
                .segment(&self.rx_buf[..c.len], c.next, &mut self.seg_buf)
            {
                c.next += 1;
                self.counters.rx_large_cut += 1;
                return Some(Current::Segment(n));
            }
        }
        self.cutting = None;
        None
    }

    /// The current frame, what the driver said of it (a segment is an
    /// ordinary frame), and a sink to send frames meanwhile.
    pub fn split(&mut self) -> (&mut [u8], Offload, DeviceSink<'_, N>) {
        let (frame, offload) = match self.current {
            Some(Current::Received(len, o)) => (&mut self.rx_buf[..len], o),
            Some(Current::Segment(len)) => (&mut self.seg_buf[..len], Offload::NONE),
            None => (&mut self.rx_buf[..0], Offload::NONE),
        };
        (
            frame,
            offload,
            DeviceSink {
                nic: &mut self.nic,
                counters: &mut self.counters,
            },
        )
    }

    /// The current frame is a large one that cannot go on whole: the next
    /// `pull`s return its segments, each a complete frame.
    pub fn cut_current(&mut self) {
        if let Some(Current::Received(len, o)) = self.current {
            if o.gso_size > 0 {
                // `classify` parsed it already; a failure here cuts nothing.
                self.cutting = LargeTcp::parse(&self.rx_buf[..len], o.gso_size, self.mtu)
                    .ok()
                    .map(|large| Cutting {
                        count: large.count(&self.rx_buf[..len]),
                        large,
                        len,
                        next: 0,
                    });
            }
        }
    }

    /// Hands the current frame to smoltcp, at its next receive; true if it
    /// was held. A large frame is cut instead (its segments come next), and a
    /// partial checksum is completed first (smoltcp verifies checksums).
    pub fn hold_for_stack(&mut self) -> bool {
        match self.current {
            Some(Current::Received(len, o)) if o.gso_size > 0 => {
                let _ = len;
                self.cut_current();
                false
            }
            Some(Current::Received(len, o)) => {
                if let Some((start, offset)) = o.partial {
                    // Up to the IPv4 packet's end: not over link padding.
                    let end = ip_end(&self.rx_buf[..len]);
                    let done = complete_checksum(&mut self.rx_buf[..end], start, offset);
                    if done.is_err() {
                        self.counters.rx_bad_offload += 1;
                        return false;
                    }
                }
                self.held = self.current;
                true
            }
            Some(Current::Segment(_)) => {
                self.held = self.current;
                true
            }
            None => false,
        }
    }

    /// Receives the next frame that passes `classify` into `rx_buf` (or
    /// `ahead`), counting the others.
    fn receive_classified(&mut self, ahead: bool) -> Option<(usize, Offload)> {
        let mut drops = 0;
        loop {
            let buf = if ahead {
                &mut self.ahead
            } else {
                &mut self.rx_buf
            };
            let (len, offload) = match self.nic.receive(buf) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.rx_run = 0;
                    return None;
                }
                Err(NicError) => {
                    self.counters.rx_driver_errors += 1;
                    return None;
                }
            };
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += len as u64;
            self.rx_run += 1;
            if self.rx_run >= self.nic.rx_ring_len() {
                self.rx_run = 0;
                self.overrun = true;
                self.counters.rx_overruns += 1;
            }
            let frame = buf.get(..len).unwrap_or_default();
            match classify_offloaded(frame, self.mac, self.mtu, offload) {
                Ok(()) => {
                    if offload.gso_size > 0 {
                        self.counters.rx_large += 1;
                    }
                    return Some((len, offload));
                }
                Err(reason) => {
                    reason.count(&mut self.counters);
                    drops += 1;
                    if drops >= MAX_DROPS_PER_RECEIVE {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the receive path overran since the last call: a whole ring's
    /// worth of frames (`Nic::rx_ring_len`) came back to back without the
    /// ring ever being found empty, so the device may have had no buffer and
    /// frames may have been lost before the driver saw them. The loop tells
    /// the proxy (`Proxy::handle_receive_overrun`).
    pub fn take_overrun(&mut self) -> bool {
        core::mem::take(&mut self.overrun)
    }

    /// The next frame for an ungated smoltcp: large frames cut, partial
    /// checksums completed.
    fn next_for_stack(&mut self) -> Option<Current> {
        for _ in 0..MAX_DROPS_PER_RECEIVE {
            if !self.pull() {
                return None;
            }
            if self.hold_for_stack() {
                return self.held.take();
            }
        }
        None
    }

    /// The driver's MAC address, as read at construction.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The driver, for what smoltcp does not do: notifying the device,
    /// acknowledging its interrupt, flushing at shutdown.
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }
}

/// Where the IPv4 packet in `frame` ends (the frame's end for anything
/// else, or a length beyond it).
fn ip_end(frame: &[u8]) -> usize {
    let total = match (frame.get(12..14), frame.get(16..18)) {
        (Some([0x08, 0x00]), Some(t)) => usize::from(u16::from_be_bytes([t[0], t[1]])),
        _ => return frame.len(),
    };
    (14 + total).min(frame.len())
}

/// smoltcp's handle on one received frame that passed `classify`; it
/// borrows the device's receive buffer until consumed.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

/// smoltcp's handle on one transmission: the frame is built in the device's
/// transmit buffer, then handed to the driver and counted.
pub struct TxToken<'a, N: Nic> {
    nic: &'a mut N,
    buf: &'a mut [u8; FRAME_MAX],
    counters: &'a mut NetCounters,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl<N: Nic> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let fits = len <= FRAME_MAX;
        let buf = &mut self.buf[..len.min(FRAME_MAX)];
        let r = f(buf);
        if !fits {
            self.counters.tx_driver_errors += 1;
            return r;
        }
        match self.nic.transmit(buf) {
            Ok(()) => {
                self.counters.tx_frames += 1;
                self.counters.tx_bytes += len as u64;
            }
            Err(NicError) => self.counters.tx_driver_errors += 1,
        }
        r
    }
}

impl<N: Nic> Device for NicDevice<N> {
    type RxToken<'a>
        = RxToken<'a>
    where
        N: 'a;
    type TxToken<'a>
        = TxToken<'a, N>
    where
        N: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_, N>)> {
        let c = match self.held.take() {
            Some(c) => c,
            None if self.gated => return None,
            None => self.next_for_stack()?,
        };
        let frame = match c {
            Current::Received(len, _) => &self.rx_buf[..len],
            Current::Segment(len) => &self.seg_buf[..len],
        };
        Some((
            RxToken { frame },
            TxToken {
                nic: &mut self.nic,
                buf: &mut self.tx_buf,
                counters: &mut self.counters,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, N>> {
        if !self.nic.can_transmit() {
            self.counters.tx_ring_full += 1;
            return None;
        }
        Some(TxToken {
            nic: &mut self.nic,
            buf: &mut self.tx_buf,
            counters: &mut self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = usize::from(self.mtu) + crate::classify::ETHERNET_HEADER;
        caps.max_burst_size = Some(1);
        caps
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
