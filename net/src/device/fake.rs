//! A fake NIC for host tests: queues of frames in and out.

use super::*;
use std::collections::VecDeque;

pub struct FakeNic {
    pub mac: [u8; 6],
    pub inbox: VecDeque<Vec<u8>>,
    /// What the device says of each frame in `inbox` (none when empty).
    pub offloads: VecDeque<Offload>,
    pub outbox: Vec<Vec<u8>>,
    /// Large frames sent whole, when `large` is set.
    pub large_out: Vec<(Vec<u8>, Offload)>,
    pub large: bool,
    pub tx_room: usize,
    /// Large frames `large_out` may hold (the device's large buffers).
    pub large_room: usize,
    /// `Nic::rx_ring_len`.
    pub rx_ring: usize,
    /// Room the device makes per `wait_for_room` (of the kind waited for), if
    /// told of the queued frames since the last wait (as a virtio device
    /// takes them only when notified); the waits asked of it, and the
    /// notifications (`notified_then` of them at the last wait).
    pub room_per_wait: usize,
    pub waits: usize,
    pub notifies: usize,
    pub notified_then: usize,
}

impl Nic for FakeNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Offload)>, NicError> {
        match self.inbox.pop_front() {
            None => Ok(None),
            Some(f) if f.len() > buf.len() => Err(NicError),
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                Ok(Some((
                    f.len(),
                    self.offloads.pop_front().unwrap_or_default(),
                )))
            }
        }
    }
    fn next_is_large(&self) -> bool {
        self.offloads.front().is_some_and(|o| o.gso_size > 0)
    }
    fn rx_ring_len(&self) -> usize {
        self.rx_ring
    }
    fn can_transmit(&mut self) -> bool {
        self.outbox.len() < self.tx_room
    }
    fn can_transmit_large(&mut self) -> bool {
        self.large && self.large_out.len() < self.large_room
    }
    fn wait_for_room(&mut self, large: bool) -> bool {
        self.waits += 1;
        if self.notifies > self.notified_then {
            if large {
                self.large_room += self.room_per_wait;
            } else {
                self.tx_room += self.room_per_wait;
            }
        }
        self.notified_then = self.notifies;
        self.has_room(large)
    }
    fn notify(&mut self) {
        self.notifies += 1;
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.outbox.push(frame.to_vec());
        Ok(())
    }
    fn takes_large(&self) -> bool {
        self.large
    }
    fn transmit_large(&mut self, frame: &[u8], o: Offload) -> Result<(), NicError> {
        if !self.can_transmit_large() {
            return Err(NicError);
        }
        self.large_out.push((frame.to_vec(), o));
        Ok(())
    }
}
