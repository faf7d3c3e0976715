//! The smoltcp `Device` over any driver that implements `Nic`. Received frames
//! pass through `classify` first; drops, driver errors and full rings are counted.

use crate::classify::classify;
use pias::status::NetCounters;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The largest Ethernet frame handled (1500-byte MTU plus the header).
pub const FRAME_MAX: usize = 1514;

/// Receive buffer size: larger than any valid frame, so that an oversized
/// frame still arrives whole and is counted as oversized, not as a driver error.
pub const RX_BUF_LEN: usize = 2048;

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
    /// Copies the next received frame into `buf` and returns its length, or
    /// `Ok(None)` when nothing is pending. Frames longer than `buf` are errors.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError>;
    /// Whether `transmit` would find room now.
    fn can_transmit(&mut self) -> bool;
    /// Queues one frame for transmission.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError>;
    /// Tells the device about queued frames now (a driver may otherwise wait
    /// for the loop's next turn); the default does nothing.
    fn notify(&mut self) {}
}

/// Polls for room in a full transmit ring this many times (after telling the
/// device) before a frame is refused: a burst from the data path outruns a
/// ring that the device empties only when told.
const TX_ROOM_POLLS: usize = 20_000;

/// smoltcp's view of a `Nic`, with counters.
pub struct NicDevice<N: Nic> {
    nic: N,
    mac: [u8; 6],
    mtu: u16,
    rx_buf: [u8; RX_BUF_LEN],
    tx_buf: [u8; FRAME_MAX],
    /// Length of the frame `pull` left in `rx_buf`.
    pulled: usize,
    /// Gated: smoltcp gets only the frames the data path hands it with
    /// `hold_for_stack`; ungated it pulls from the driver itself.
    gated: bool,
    /// A frame in `rx_buf` handed to smoltcp, not yet consumed.
    held: Option<usize>,
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
        send(self.nic, self.counters, frame)
    }
}

impl<N: Nic> crate::dataplane::FrameSink for NicDevice<N> {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        send(&mut self.nic, &mut self.counters, frame)
    }
}

fn send<N: Nic>(nic: &mut N, counters: &mut NetCounters, frame: &[u8]) -> bool {
    if !nic.can_transmit() {
        nic.notify();
        if !(0..TX_ROOM_POLLS).any(|_| {
            core::hint::spin_loop();
            nic.can_transmit()
        }) {
            counters.tx_ring_full += 1;
            return false;
        }
    }
    match nic.transmit(frame) {
        Ok(()) => {
            counters.tx_frames += 1;
            counters.tx_bytes += frame.len() as u64;
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
            rx_buf: [0; RX_BUF_LEN],
            tx_buf: [0; FRAME_MAX],
            pulled: 0,
            gated: false,
            held: None,
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

    /// Receives the next frame that passes `classify` (drops counted, at most
    /// a bounded number per call); true if one is ready for `split`.
    pub fn pull(&mut self) -> bool {
        match self.receive_classified() {
            Some(len) => {
                self.pulled = len;
                true
            }
            None => false,
        }
    }

    /// The frame `pull` received, and a sink to send frames meanwhile.
    pub fn split(&mut self) -> (&[u8], DeviceSink<'_, N>) {
        (
            &self.rx_buf[..self.pulled],
            DeviceSink {
                nic: &mut self.nic,
                counters: &mut self.counters,
            },
        )
    }

    /// Hands the frame `pull` received to smoltcp, at its next receive.
    pub fn hold_for_stack(&mut self) {
        self.held = Some(self.pulled);
    }

    fn receive_classified(&mut self) -> Option<usize> {
        let mut drops = 0;
        loop {
            let len = match self.nic.receive(&mut self.rx_buf) {
                Ok(Some(len)) => len,
                Ok(None) => return None,
                Err(NicError) => {
                    self.counters.rx_driver_errors += 1;
                    return None;
                }
            };
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += len as u64;
            match classify(&self.rx_buf[..len], self.mac, self.mtu) {
                Ok(()) => return Some(len),
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
        let len = match self.held.take() {
            Some(len) => len,
            None if self.gated => return None,
            None => self.receive_classified()?,
        };
        Some((
            RxToken {
                frame: &self.rx_buf[..len],
            },
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

/// A fake NIC for host tests: queues of frames in and out.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::VecDeque;

    pub struct FakeNic {
        pub mac: [u8; 6],
        pub inbox: VecDeque<Vec<u8>>,
        pub outbox: Vec<Vec<u8>>,
        pub tx_room: usize,
    }

    impl Nic for FakeNic {
        fn mac(&self) -> [u8; 6] {
            self.mac
        }
        fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
            match self.inbox.pop_front() {
                None => Ok(None),
                Some(f) if f.len() > buf.len() => Err(NicError),
                Some(f) => {
                    buf[..f.len()].copy_from_slice(&f);
                    Ok(Some(f.len()))
                }
            }
        }
        fn can_transmit(&mut self) -> bool {
            self.outbox.len() < self.tx_room
        }
        fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
            self.outbox.push(frame.to_vec());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeNic;
    use super::*;
    use crate::classify::tests::{udp_frame, OUR_IP, OUR_MAC};
    use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
    use smoltcp::socket::udp;
    use smoltcp::wire::{EthernetAddress, IpCidr};

    fn device(frames: Vec<Vec<u8>>) -> NicDevice<FakeNic> {
        NicDevice::new(
            FakeNic {
                mac: OUR_MAC,
                inbox: frames.into(),
                outbox: Vec::new(),
                tx_room: 16,
            },
            1500,
        )
    }

    #[test]
    fn junk_is_counted_and_good_frames_reach_a_socket() {
        let mut junk = udp_frame(7001, b"x");
        junk[20] ^= 0x55; // breaks the IP header checksum
        let frames = vec![vec![1, 2, 3], junk, udp_frame(7001, b"status?")];
        let mut dev = device(frames);
        let mut iface = Interface::new(
            Config::new(EthernetAddress(OUR_MAC).into()),
            &mut dev,
            Instant::ZERO,
        );
        iface.update_ip_addrs(|a| a.push(IpCidr::new(OUR_IP.into(), 24)).unwrap());
        let mut rx_meta = [udp::PacketMetadata::EMPTY; 4];
        let mut rx_data = [0u8; 512];
        let mut tx_meta = [udp::PacketMetadata::EMPTY; 4];
        let mut tx_data = [0u8; 512];
        let mut sock = udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_data[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_data[..]),
        );
        sock.bind(7001).unwrap();
        let mut storage = [SocketStorage::EMPTY; 1];
        let mut sockets = SocketSet::new(&mut storage[..]);
        let h = sockets.add(sock);
        for _ in 0..4 {
            iface.poll(Instant::ZERO, &mut dev, &mut sockets);
        }
        let (data, _meta) = sockets.get_mut::<udp::Socket>(h).recv().unwrap();
        assert_eq!(data, b"status?");
        assert_eq!(dev.counters.rx_frames, 3);
        assert_eq!(dev.counters.rx_runt, 1);
        assert_eq!(dev.counters.rx_bad_ip_checksum, 1);
    }

    #[test]
    fn oversized_frames_are_counted_as_oversized() {
        let mut big = udp_frame(7001, b"x");
        big.resize(1600, 0);
        let mut dev = device(vec![big]);
        assert!(dev.receive(Instant::ZERO).is_none());
        assert_eq!(dev.counters.rx_oversized, 1);
        assert_eq!(dev.counters.rx_driver_errors, 0);
    }

    #[test]
    fn full_ring_is_counted() {
        let mut dev = device(vec![]);
        dev.nic_mut().tx_room = 0;
        assert!(dev.transmit(Instant::ZERO).is_none());
        assert_eq!(dev.counters.tx_ring_full, 1);
    }

    #[test]
    fn driver_errors_are_counted() {
        let mut dev = device(vec![vec![0u8; RX_BUF_LEN + 10]]);
        assert!(dev.receive(Instant::ZERO).is_none());
        assert_eq!(dev.counters.rx_driver_errors, 1);
    }
}
