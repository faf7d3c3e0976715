//! Building outgoing frames and editing carried transport segments: IPv4
//! headers, UDP/TCP ports and checksums, TCP MSS clamping, ICMP errors.
//! Every function works in caller-provided buffers and fails softly.

use pias::addr::{Ipv4, Transport};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, TcpPacket, UdpPacket,
};

/// Ethernet header bytes.
pub const ETH_LEN: usize = 14;
/// IPv4 header bytes (no options: we never send any).
pub const IP_LEN: usize = 20;
/// UDP header bytes.
pub const UDP_LEN: usize = 8;
/// Smallest TCP header.
pub const TCP_MIN: usize = 20;
/// TTL of the packets we originate.
pub const TTL: u8 = 64;

/// Why a segment could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The segment is shorter than its transport header says.
    BadSegment,
    /// The frame would not fit the interface MTU or the buffer.
    TooBig,
}

pub(crate) fn addr(ip: Ipv4) -> Ipv4Address {
    Ipv4Address::from(ip.0)
}

pub(crate) fn ip_of(a: Ipv4Address) -> Ipv4 {
    Ipv4(a.octets())
}

pub(crate) fn protocol(t: Transport) -> IpProtocol {
    match t {
        Transport::Udp => IpProtocol::Udp,
        Transport::Tcp => IpProtocol::Tcp,
    }
}

/// The header length a segment of `t` claims, if the segment holds it.
pub fn segment_header_len(t: Transport, seg: &[u8]) -> Option<usize> {
    match t {
        Transport::Udp => (seg.len() >= UDP_LEN).then_some(UDP_LEN),
        Transport::Tcp => {
            let off = usize::from(*seg.get(12)? >> 4) * 4;
            (off >= TCP_MIN && seg.len() >= off).then_some(off)
        }
    }
}

/// The (source, destination) ports of a segment (caller checked its length).
pub fn ports(seg: &[u8]) -> (u16, u16) {
    match seg {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    }
}

/// Addresses and ports of one outgoing IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Addressing {
    /// Our MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src: Ipv4,
    /// IPv4 destination.
    pub dst: Ipv4,
    /// IPv4 identification.
    pub ident: u16,
}

/// Writes Ethernet and IPv4 headers for a payload of `payload_len` bytes of
/// `proto` into `buf`; returns the frame length.
fn headers(
    buf: &mut [u8],
    a: &Addressing,
    proto: IpProtocol,
    payload_len: usize,
) -> Result<usize, BuildError> {
    let total = ETH_LEN + IP_LEN + payload_len;
    if total > buf.len() || IP_LEN + payload_len > usize::from(u16::MAX) {
        return Err(BuildError::TooBig);
    }
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..total]);
    eth.set_src_addr(EthernetAddress(a.src_mac));
    eth.set_dst_addr(EthernetAddress(a.dst_mac));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.set_version(4);
    ip.set_header_len(IP_LEN as u8);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_len((IP_LEN + payload_len) as u16);
    ip.set_ident(a.ident);
    ip.clear_flags();
    ip.set_dont_frag(true);
    ip.set_frag_offset(0);
    ip.set_hop_limit(TTL);
    ip.set_next_header(proto);
    ip.set_src_addr(addr(a.src));
    ip.set_dst_addr(addr(a.dst));
    ip.fill_checksum();
    Ok(total)
}

/// A UDP datagram carrying `payload` from `a.src:sport` to `a.dst:dport`.
pub fn udp_frame(
    buf: &mut [u8],
    a: &Addressing,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let len = UDP_LEN + payload.len();
    let total = headers(buf, a, IpProtocol::Udp, len)?;
    let seg = &mut buf[ETH_LEN + IP_LEN..total];
    seg[UDP_LEN..].copy_from_slice(payload);
    let mut u = UdpPacket::new_unchecked(seg);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len(len as u16);
    u.fill_checksum(&IpAddress::Ipv4(addr(a.src)), &IpAddress::Ipv4(addr(a.dst)));
    Ok(total)
}

/// A carried transport segment re-addressed: ports replaced, length (UDP)
/// and checksum made right for the new addresses.
pub fn segment_frame(
    buf: &mut [u8],
    a: &Addressing,
    t: Transport,
    sport: u16,
    dport: u16,
    seg: &[u8],
) -> Result<usize, BuildError> {
    segment_header_len(t, seg).ok_or(BuildError::BadSegment)?;
    let total = headers(buf, a, protocol(t), seg.len())?;
    let out = &mut buf[ETH_LEN + IP_LEN..total];
    out.copy_from_slice(seg);
    let (src, dst) = (IpAddress::Ipv4(addr(a.src)), IpAddress::Ipv4(addr(a.dst)));
    match t {
        Transport::Udp => {
            let mut u = UdpPacket::new_unchecked(out);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(seg.len() as u16);
            u.fill_checksum(&src, &dst);
        }
        Transport::Tcp => {
            let mut p = TcpPacket::new_unchecked(out);
            p.set_src_port(sport);
            p.set_dst_port(dport);
            p.fill_checksum(&src, &dst);
        }
    }
    Ok(total)
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// CWR (congestion window reduced, ECN).
    pub const CWR: u8 = 0x80;
}

/// The flags byte of a TCP segment (0 if too short).
pub fn tcp_flags_of(seg: &[u8]) -> u8 {
    seg.get(13).copied().unwrap_or(0)
}

/// Lowers the MSS option of a SYN segment to at most `clamp`; returns whether
/// it changed. The checksum is not touched: the segment is re-checksummed
/// when it is sent on with new addresses.
pub fn clamp_mss(seg: &mut [u8], clamp: u16) -> bool {
    if tcp_flags_of(seg) & tcp_flags::SYN == 0 {
        return false;
    }
    let Some(end) = segment_header_len(Transport::Tcp, seg) else {
        return false;
    };
    let mut i = TCP_MIN;
    while i < end {
        match seg[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let Some(&len) = seg.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let mss = u16::from_be_bytes([seg[i + 2], seg[i + 3]]);
                    if mss > clamp {
                        seg[i + 2..i + 4].copy_from_slice(&clamp.to_be_bytes());
                        return true;
                    }
                    return false;
                }
                i += len;
            }
        }
    }
    false
}

/// ICMP type "destination unreachable".
pub const ICMP_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set" (RFC 1191).
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// Its code "port unreachable".
pub const ICMP_PORT_UNREACHABLE: u8 = 3;

/// An ICMP error (`kind`, `code`, 16-bit `extra` in the second half of the
/// rest-of-header: the next-hop MTU for "fragmentation needed") quoting
/// `quoted` (an IPv4 header and at least 8 bytes of what followed it).
pub fn icmp_error(
    buf: &mut [u8],
    a: &Addressing,
    kind: u8,
    code: u8,
    extra: u16,
    quoted: &[u8],
) -> Result<usize, BuildError> {
    let len = 8 + quoted.len();
    let total = headers(buf, a, IpProtocol::Icmp, len)?;
    let body = &mut buf[ETH_LEN + IP_LEN..total];
    body[0] = kind;
    body[1] = code;
    body[2..4].fill(0);
    body[4..6].fill(0);
    body[6..8].copy_from_slice(&extra.to_be_bytes());
    body[8..].copy_from_slice(quoted);
    let sum = !smoltcp::wire::checksum::data(body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(total)
}

/// An ARP request for `target` from `(our_mac, our_ip)`.
pub fn arp_request(buf: &mut [u8], our_mac: [u8; 6], our_ip: Ipv4, target: Ipv4) -> usize {
    arp(buf, 1, our_mac, our_ip, [0xff; 6], [0; 6], target)
}

/// An ARP reply telling `(to_mac, to_ip)` that `our_ip` is at `our_mac`.
pub fn arp_reply(
    buf: &mut [u8],
    our_mac: [u8; 6],
    our_ip: Ipv4,
    to_mac: [u8; 6],
    to_ip: Ipv4,
) -> usize {
    arp(buf, 2, our_mac, our_ip, to_mac, to_mac, to_ip)
}

fn arp(
    buf: &mut [u8],
    op: u16,
    our_mac: [u8; 6],
    our_ip: Ipv4,
    eth_dst: [u8; 6],
    target_mac: [u8; 6],
    target_ip: Ipv4,
) -> usize {
    const LEN: usize = ETH_LEN + 28;
    if buf.len() < LEN {
        return 0;
    }
    buf[0..6].copy_from_slice(&eth_dst);
    buf[6..12].copy_from_slice(&our_mac);
    buf[12..14].copy_from_slice(&[0x08, 0x06]);
    let p = &mut buf[ETH_LEN..LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&op.to_be_bytes());
    p[8..14].copy_from_slice(&our_mac);
    p[14..18].copy_from_slice(&our_ip.0);
    p[18..24].copy_from_slice(&target_mac);
    p[24..28].copy_from_slice(&target_ip.0);
    LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A SYN header with `options` (padded with NOPs to a multiple of 4).
    fn syn(options: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(1);
        }
        let mut seg = vec![0u8; TCP_MIN];
        seg[12] = (((TCP_MIN + opts.len()) / 4) as u8) << 4;
        seg[13] = tcp_flags::SYN;
        seg.extend_from_slice(&opts);
        seg
    }

    #[test]
    fn segment_header_lengths_at_their_bounds() {
        assert_eq!(segment_header_len(Transport::Udp, &[0; 8]), Some(8));
        assert_eq!(segment_header_len(Transport::Udp, &[0; 7]), None);
        let mut tcp = syn(&[]);
        assert_eq!(segment_header_len(Transport::Tcp, &tcp), Some(20));
        tcp[12] = 4 << 4; // 16 bytes: below the minimum
        assert_eq!(segment_header_len(Transport::Tcp, &tcp), None);
        tcp[12] = 6 << 4; // 24 bytes claimed, 20 present
        assert_eq!(segment_header_len(Transport::Tcp, &tcp), None);
        assert_eq!(segment_header_len(Transport::Tcp, &tcp[..12]), None);
    }

    #[test]
    fn the_mss_option_is_found_among_others_and_only_lowered() {
        let mss = |seg: &[u8]| {
            let i = seg[TCP_MIN..].windows(2).position(|w| w == [2, 4]).unwrap() + TCP_MIN;
            u16::from_be_bytes([seg[i + 2], seg[i + 3]])
        };
        // After NOPs and SACK-permitted: lowered to the clamp.
        let mut s = syn(&[1, 1, 4, 2, 2, 4, 0x05, 0xb4]);
        assert!(clamp_mss(&mut s, 1360));
        assert_eq!(mss(&s), 1360);
        // Already at or below the clamp: unchanged.
        for v in [1360u16, 1000] {
            let mut s = syn(&[2, 4, (v >> 8) as u8, v as u8]);
            assert!(!clamp_mss(&mut s, 1360), "{v}");
            assert_eq!(mss(&s), v);
        }
        // Not a SYN, an end-of-options first, a zero-length or overlong
        // option: nothing is touched.
        let mut s = syn(&[2, 4, 0x05, 0xb4]);
        s[13] = tcp_flags::ACK;
        assert!(!clamp_mss(&mut s, 1360));
        for opts in [
            &[0u8, 0, 0, 0, 2, 4, 0x05, 0xb4][..],
            &[3, 0, 0, 0, 2, 4, 0x05, 0xb4],
            &[3, 9, 0, 0, 2, 4, 0x05, 0xb4],
        ] {
            let mut s = syn(opts);
            let before = s.clone();
            assert!(!clamp_mss(&mut s, 1360), "{opts:?}");
            assert_eq!(s, before);
        }
        // An MSS option cut by the header's end is not read past it.
        let mut s = syn(&[1, 1, 2, 4]);
        s.extend_from_slice(&[0x05, 0xb4]);
        assert!(!clamp_mss(&mut s, 1360));
    }

    #[test]
    fn frames_fit_their_buffer_exactly_or_are_refused() {
        let a = Addressing {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: Ipv4([198, 18, 0, 2]),
            dst: Ipv4([198, 18, 0, 3]),
            ident: 7,
        };
        let total = ETH_LEN + IP_LEN + UDP_LEN + 10;
        let mut buf = vec![0u8; total];
        assert_eq!(udp_frame(&mut buf, &a, 1, 2, &[9; 10]), Ok(total));
        let ip = Ipv4Packet::new_checked(&buf[ETH_LEN..]).unwrap();
        assert_eq!(usize::from(ip.total_len()), IP_LEN + UDP_LEN + 10);
        assert!(ip.verify_checksum());
        assert_eq!(
            udp_frame(&mut buf[..total - 1], &a, 1, 2, &[9; 10]),
            Err(BuildError::TooBig)
        );
        // An IPv4 packet cannot exceed 65,535 bytes, whatever the buffer.
        let mut big = vec![0u8; 70_000];
        let most = usize::from(u16::MAX) - IP_LEN - UDP_LEN;
        assert!(udp_frame(&mut big, &a, 1, 2, &vec![0; most]).is_ok());
        assert_eq!(
            udp_frame(&mut big, &a, 1, 2, &vec![0; most + 1]),
            Err(BuildError::TooBig)
        );
    }
}
