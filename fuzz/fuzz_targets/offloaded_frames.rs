//! Any frames with any offload metadata (what a virtio-net header may say of
//! each) through the device layer, coalescing on, and the data path, as the
//! kernel's loop takes them: merged, offered whole, cut into segments on
//! request, or held for the stack with a partial checksum completed. Never a
//! panic.
#![no_main]

mod common;

use common::MAC;
use libfuzzer_sys::fuzz_target;
use pias_net::dataplane::{FrameSink, Verdict};
use pias_net::{Nic, NicDevice, NicError, Offload};

/// A device that delivers its frames, and takes everything it is sent.
struct Frames(std::collections::VecDeque<(Vec<u8>, Offload)>);
impl Nic for Frames {
    fn mac(&self) -> [u8; 6] {
        MAC
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Offload)>, NicError> {
        let Some((f, o)) = self.0.pop_front() else {
            return Ok(None);
        };
        let dst = buf.get_mut(..f.len()).ok_or(NicError)?;
        dst.copy_from_slice(&f);
        Ok(Some((f.len(), o)))
    }
    fn next_is_large(&self) -> bool {
        self.0.front().is_some_and(|(_, o)| o.gso_size > 0)
    }
    fn can_transmit(&mut self) -> bool {
        true
    }
    fn transmit(&mut self, _: &[u8]) -> Result<(), NicError> {
        Ok(())
    }
    fn takes_large(&self) -> bool {
        true
    }
    fn transmit_large(&mut self, _: &[u8], _: Offload) -> Result<(), NicError> {
        Ok(())
    }
}

struct Sink;
impl FrameSink for Sink {
    fn send_frame(&mut self, _: &[u8]) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    // Each frame: 7 bytes of metadata (flags; checksum start and offset; segment
    // size), 2 of length, then the frame.
    let mut frames = std::collections::VecDeque::new();
    let mut rest = data;
    while rest.len() >= 9 && frames.len() < 64 {
        let u16_at = |i: usize| u16::from_le_bytes([rest[i], rest[i + 1]]);
        let offload = Offload {
            partial: (rest[0] & 1 == 1).then(|| (u16_at(1), u16_at(3))),
            valid: rest[0] & 2 == 2,
            gso_size: if rest[0] & 4 == 4 { u16_at(5) } else { 0 },
        };
        let len = usize::from(u16_at(7));
        rest = &rest[9..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        frames.push_back((frame.to_vec(), offload));
    }
    let t0 = common::T0;
    let mut dp = common::data_plane(16, 1);
    let mut dev = NicDevice::gated(Frames(frames), 1500);
    dev.set_coalescing(true);
    // Bounded: 64 frames of at most 65,535 segments each.
    for _ in 0..64 * 65_536 {
        if !dev.pull() {
            break;
        }
        let (f, o, mut sink) = dev.split();
        match dp.ingress_offloaded(t0, f, o, &mut sink) {
            Verdict::Cut => dev.cut_current(),
            Verdict::Stack => {
                let _ = dev.hold_for_stack();
            }
            Verdict::Done => {}
        }
    }
    dp.flush(t0, &mut Sink);
});
