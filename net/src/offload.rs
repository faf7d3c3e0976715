//! virtio-net offloads in the packet plane: what the driver says of a frame
//! (checksum left partial by the sender, TCP segments coalesced past the MTU),
//! and the software fallbacks where such a frame cannot go on as it is:
//! completing a partial checksum, and cutting a large TCP frame into segments.

pub mod coalesce;

use crate::device::FRAME_MAX;
use smoltcp::wire::checksum;

/// What the driver knows of a received frame, or asks of the device for a
/// transmitted one (virtio 1.2, 5.1.6: `virtio_net_hdr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// The transport checksum is partial: the field at `start + offset`
    /// holds the pseudo-header sum, and the rest is summed from `start`.
    pub partial: Option<(u16, u16)>,
    /// The device vouches for the checksum (VIRTIO_NET_HDR_F_DATA_VALID).
    pub valid: bool,
    /// A TCP/IPv4 frame larger than the MTU, to be cut into segments of this
    /// many payload bytes (0: an ordinary frame).
    pub gso_size: u16,
}

impl Offload {
    /// No offload: a complete frame with its checksums in place.
    pub const NONE: Offload = Offload {
        partial: None,
        valid: false,
        gso_size: 0,
    };

    /// Whether the transport checksum need not be verified in software: the
    /// frame comes from a stack on the host that left it to the device, or
    /// the device checked it.
    pub fn checksum_trusted(&self) -> bool {
        self.valid || self.partial.is_some()
    }
}

/// Why an offloaded frame cannot be completed or cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// The partial checksum's position is outside the frame.
    BadChecksumPosition,
    /// A large frame that is not a well-formed TCP/IPv4 frame (or has a
    /// segment size of 0).
    BadLargeFrame,
    /// A segment would not fit the buffer given.
    NoRoom,
}

/// Where the checksum lies in a UDP header.
const UDP_CHECKSUM_AT: u16 = 6;

/// Finishes a partial checksum in place: sums `frame` from `start` to its
/// end (the caller cuts off any link padding; the field holds the
/// pseudo-header sum) and stores the complement at `start + offset`.
pub fn complete_checksum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let (start, field) = (usize::from(start), usize::from(start) + usize::from(offset));
    if field + 2 > frame.len() || start > field {
        return Err(OffloadError::BadChecksumPosition);
    }
    let mut sum = !checksum::data(&frame[start..]);
    // A UDP checksum of 0 means "none": the computed 0 is sent as its
    // other form (RFC 768).
    if offset == UDP_CHECKSUM_AT && sum == 0 {
        sum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Adds `new` and takes away `old` (16-bit words) in a one's complement sum
/// kept as is (not complemented): the pseudo-header sum a partial checksum
/// field holds. RFC 1624 for a complemented field is the mirror of this.
pub fn adjust_partial_sum(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    checksum::combine(&[sum, !checksum::data(old), checksum::data(new)])
}

/// Where the parts of a large TCP/IPv4 frame are, checked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LargeTcp {
    /// IPv4 header length.
    pub ihl: usize,
    /// TCP header length.
    pub thl: usize,
    /// Payload bytes per segment.
    pub mss: usize,
}

impl LargeTcp {
    /// Checks `frame` (Ethernet, IPv4 without fragments, TCP) as a frame to
    /// cut at `gso_size`: every length consistent with the frame's own, and
    /// each segment within the IP MTU `mtu`.
    pub fn parse(frame: &[u8], gso_size: u16, mtu: u16) -> Result<LargeTcp, OffloadError> {
        let bad = OffloadError::BadLargeFrame;
        const ETH: usize = 14;
        if frame.len() < ETH + 40 || frame[12..14] != [0x08, 0x00] || gso_size == 0 {
            return Err(bad);
        }
        let ip = &frame[ETH..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || total != ip.len() {
            return Err(bad);
        }
        if ip[6] & 0x3f != 0 || ip[7] != 0 {
            return Err(bad); // a fragment
        }
        let thl = usize::from(ip.get(ihl + 12).ok_or(bad)? >> 4) * 4;
        if thl < 20 || ihl + thl > total {
            return Err(bad);
        }
        let mss = usize::from(gso_size);
        // Each segment must fit an ordinary frame, within the MTU.
        if ETH + ihl + thl + mss > FRAME_MAX || ihl + thl + mss > usize::from(mtu) {
            return Err(bad);
        }
        Ok(LargeTcp { ihl, thl, mss })
    }

    /// Number of payload bytes in `frame`.
    fn payload(&self, frame: &[u8]) -> usize {
        frame.len() - 14 - self.ihl - self.thl
    }

    /// How many segments `frame` makes.
    pub fn count(&self, frame: &[u8]) -> usize {
        self.payload(frame).div_ceil(self.mss).max(1)
    }

    /// Writes segment `i` of `frame` into `out` as a complete frame (IPv4
    /// total length, identification + i and checksum; TCP sequence number,
    /// FIN and PSH on the last segment only, CWR on the first only, and a full
    /// checksum) and returns its length.
    pub fn segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> Result<usize, OffloadError> {
        let hdrs = 14 + self.ihl + self.thl;
        let payload = self.payload(frame);
        let from = i * self.mss;
        if from >= payload.max(1) {
            return Err(OffloadError::NoRoom);
        }
        let len = self.mss.min(payload - from);
        let n = hdrs + len;
        let out = out.get_mut(..n).ok_or(OffloadError::NoRoom)?;
        out[..hdrs].copy_from_slice(&frame[..hdrs]);
        out[hdrs..].copy_from_slice(&frame[hdrs + from..hdrs + from + len]);
        let last = from + len >= payload;
        // IPv4: length, identification, checksum.
        let ip = 14;
        let ip_total = (self.ihl + self.thl + len) as u16;
        out[ip + 2..ip + 4].copy_from_slice(&ip_total.to_be_bytes());
        let id = u16::from_be_bytes([out[ip + 4], out[ip + 5]]).wrapping_add(i as u16);
        out[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
        out[ip + 10..ip + 12].fill(0);
        let ip_sum = !checksum::data(&out[ip..ip + self.ihl]);
        out[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
        // TCP: sequence number, flags, checksum.
        let t = ip + self.ihl;
        let seq = u32::from_be_bytes([out[t + 4], out[t + 5], out[t + 6], out[t + 7]])
            .wrapping_add(from as u32);
        out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        const FIN: u8 = 0x01;
        const PSH: u8 = 0x08;
        const CWR: u8 = 0x80;
        if !last {
            out[t + 13] &= !(FIN | PSH);
        }
        if i != 0 {
            out[t + 13] &= !CWR;
        }
        out[t + 16..t + 18].fill(0);
        let mut proto_len = [0u8; 4];
        proto_len[1] = 6;
        proto_len[2..].copy_from_slice(&((self.thl + len) as u16).to_be_bytes());
        let sum = !checksum::combine(&[
            checksum::data(&out[ip + 12..ip + 20]),
            checksum::data(&proto_len),
            checksum::data(&out[t..]),
        ]);
        out[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests;
