//! Checks each received Ethernet frame before smoltcp sees it, so that every
//! malformed or unwanted frame is dropped under a named, counted reason.

use crate::offload::{LargeTcp, Offload};
use pias::status::NetCounters;
use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet,
    TcpPacket, UdpPacket,
};

/// Why a received frame was dropped; each reason has its own counter in
/// `NetCounters` (see `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header (`rx_runt`).
    Runt,
    /// Longer than the Ethernet header plus the interface's IP MTU
    /// (`rx_oversized`).
    Oversized,
    /// Unicast to another MAC address (`rx_not_for_us`).
    NotForUs,
    /// An EtherType other than ARP and IPv4 (VLAN-tagged frames included), or
    /// an IPv4 fragment, which this build does not reassemble
    /// (`rx_unsupported`).
    Unsupported,
    /// An ARP packet smoltcp cannot parse (`rx_bad_arp`).
    BadArp,
    /// An IPv4 header that is truncated, inconsistent with the frame, or not
    /// version 4 (`rx_bad_ipv4`).
    BadIpv4,
    /// A wrong IPv4 header checksum (`rx_bad_ip_checksum`).
    BadIpChecksum,
    /// A truncated or inconsistent UDP, TCP or ICMP header, e.g. a UDP length
    /// that disagrees with the IP payload (`rx_bad_l4`).
    BadL4,
    /// A wrong UDP, TCP or ICMP checksum (`rx_bad_l4_checksum`).
    BadL4Checksum,
    /// Offload metadata that does not fit the frame: a large frame that is
    /// not a well-formed TCP/IPv4 one, or a partial checksum outside the
    /// frame (`rx_bad_offload`).
    BadOffload,
}

impl DropReason {
    /// Adds one to the counter for this reason.
    pub fn count(self, c: &mut NetCounters) {
        let slot = match self {
            DropReason::Runt => &mut c.rx_runt,
            DropReason::Oversized => &mut c.rx_oversized,
            DropReason::NotForUs => &mut c.rx_not_for_us,
            DropReason::Unsupported => &mut c.rx_unsupported,
            DropReason::BadArp => &mut c.rx_bad_arp,
            DropReason::BadIpv4 => &mut c.rx_bad_ipv4,
            DropReason::BadIpChecksum => &mut c.rx_bad_ip_checksum,
            DropReason::BadL4 => &mut c.rx_bad_l4,
            DropReason::BadL4Checksum => &mut c.rx_bad_l4_checksum,
            DropReason::BadOffload => &mut c.rx_bad_offload,
        };
        *slot = slot.wrapping_add(1);
    }
}

/// Ethernet header length (no VLAN tags: tagged frames are `Unsupported`).
pub const ETHERNET_HEADER: usize = 14;

/// Accepts a frame that smoltcp may process, or says why it must be dropped.
/// `mtu` is the IP MTU of the interface.
pub fn classify(frame: &[u8], our_mac: [u8; 6], mtu: u16) -> Result<(), DropReason> {
    classify_offloaded(frame, our_mac, mtu, Offload::NONE)
}

/// `classify` for a frame the driver described with `offload`: a large TCP
/// frame may exceed the MTU (it is checked as such instead), and a transport
/// checksum the host left to the device, or the device checked, is not
/// verified again.
pub fn classify_offloaded(
    frame: &[u8],
    our_mac: [u8; 6],
    mtu: u16,
    offload: Offload,
) -> Result<(), DropReason> {
    if frame.len() < ETHERNET_HEADER {
        return Err(DropReason::Runt);
    }
    if offload.gso_size > 0 {
        LargeTcp::parse(frame, offload.gso_size, mtu).map_err(|_| DropReason::BadOffload)?;
    } else if frame.len() > ETHERNET_HEADER + usize::from(mtu) {
        return Err(DropReason::Oversized);
    }
    if let Some((start, offset)) = offload.partial {
        let field = usize::from(start) + usize::from(offset);
        if usize::from(start) < ETHERNET_HEADER + 20 || field + 2 > frame.len() {
            return Err(DropReason::BadOffload);
        }
    }
    let eth = EthernetFrame::new_unchecked(frame);
    let dst = eth.dst_addr().0;
    let group = dst[0] & 1 == 1; // broadcast or multicast
    if dst != our_mac && !group {
        return Err(DropReason::NotForUs);
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::BadArp)?;
            smoltcp::wire::ArpRepr::parse(&arp).map_err(|_| DropReason::BadArp)?;
            Ok(())
        }
        EthernetProtocol::Ipv4 => classify_ipv4(eth.payload(), offload.checksum_trusted()),
        _ => Err(DropReason::Unsupported),
    }
}

/// `trusted`: the transport checksum is not verified (see `Offload`).
fn classify_ipv4(bytes: &[u8], trusted: bool) -> Result<(), DropReason> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| DropReason::BadIpv4)?;
    if ip.version() != 4 {
        return Err(DropReason::BadIpv4);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        // This build does not reassemble; proxied traffic is not fragmented by design.
        return Err(DropReason::Unsupported);
    }
    let src = IpAddress::Ipv4(ip.src_addr());
    let dst = IpAddress::Ipv4(ip.dst_addr());
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| DropReason::BadL4)?;
            if usize::from(udp.len()) != payload.len() {
                return Err(DropReason::BadL4);
            }
            if !trusted && !udp.verify_checksum(&src, &dst) {
                return Err(DropReason::BadL4Checksum);
            }
            Ok(())
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::BadL4)?;
            if !trusted && !icmp.verify_checksum() {
                return Err(DropReason::BadL4Checksum);
            }
            Ok(())
        }
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| DropReason::BadL4)?;
            if !trusted && !tcp.verify_checksum(&src, &dst) {
                return Err(DropReason::BadL4Checksum);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Address, Ipv4Repr, UdpRepr,
    };

    pub const OUR_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    pub const PEER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
    pub const OUR_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
    pub const PEER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 9);

    /// A well-formed UDP frame from the peer to us.
    pub fn udp_frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 40000,
            dst_port,
        };
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: OUR_IP,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(PEER_MAC),
            dst_addr: EthernetAddress(OUR_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        let mut u = UdpPacket::new_unchecked(p.payload_mut());
        udp.emit(
            &mut u,
            &IpAddress::Ipv4(PEER_IP),
            &IpAddress::Ipv4(OUR_IP),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
        buf
    }

    fn icmp_echo_frame() -> Vec<u8> {
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"ping",
        };
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: OUR_IP,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress(OUR_MAC));
        f.set_src_addr(EthernetAddress(PEER_MAC));
        f.set_ethertype(EthernetProtocol::Ipv4);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        let mut i = Icmpv4Packet::new_unchecked(p.payload_mut());
        icmp.emit(&mut i, &ChecksumCapabilities::default());
        buf
    }

    #[test]
    fn good_frames_pass() {
        assert_eq!(classify(&udp_frame(7001, b"hello"), OUR_MAC, 1500), Ok(()));
        assert_eq!(classify(&icmp_echo_frame(), OUR_MAC, 1500), Ok(()));
    }

    #[test]
    fn each_defect_is_named() {
        let good = udp_frame(7001, b"hello");
        assert_eq!(classify(&good[..10], OUR_MAC, 1500), Err(DropReason::Runt));
        assert_eq!(
            classify(&vec![0xffu8; 1600], OUR_MAC, 1500),
            Err(DropReason::Oversized)
        );
        assert_eq!(classify(&good, PEER_MAC, 1500), Err(DropReason::NotForUs));

        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(classify(&v6, OUR_MAC, 1500), Err(DropReason::Unsupported));

        assert_eq!(
            classify(&good[..30], OUR_MAC, 1500),
            Err(DropReason::BadIpv4)
        );

        let mut ipsum = good.clone();
        ipsum[14 + 10] ^= 0xff;
        assert_eq!(
            classify(&ipsum, OUR_MAC, 1500),
            Err(DropReason::BadIpChecksum)
        );

        let mut udpsum = good.clone();
        let last = udpsum.len() - 1;
        udpsum[last] ^= 0x01;
        assert_eq!(
            classify(&udpsum, OUR_MAC, 1500),
            Err(DropReason::BadL4Checksum)
        );

        let mut udplen = good.clone();
        udplen[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(classify(&udplen, OUR_MAC, 1500), Err(DropReason::BadL4));

        let mut arp = good[..14].to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 10]);
        assert_eq!(classify(&arp, OUR_MAC, 1500), Err(DropReason::BadArp));

        let mut icmp = icmp_echo_frame();
        let last = icmp.len() - 1;
        icmp[last] ^= 0x10;
        assert_eq!(
            classify(&icmp, OUR_MAC, 1500),
            Err(DropReason::BadL4Checksum)
        );
    }

    #[test]
    fn counting_adds_to_the_named_counter_only() {
        let mut c = NetCounters::default();
        DropReason::BadL4Checksum.count(&mut c);
        DropReason::Runt.count(&mut c);
        assert_eq!(c.rx_bad_l4_checksum, 1);
        assert_eq!(c.rx_runt, 1);
        assert_eq!(c.rx_dropped(), 2);
    }

    /// Recomputes the IPv4 header checksum after a header field changed.
    fn fix_ip(mut f: Vec<u8>) -> Vec<u8> {
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    /// A TCP SYN from the peer to us with data offset `words` (5 = no
    /// options), its checksum right for whatever it claims.
    fn tcp_frame(words: u8) -> Vec<u8> {
        let seg_len = 20;
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: OUR_IP,
            next_header: IpProtocol::Tcp,
            payload_len: seg_len,
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + 20 + seg_len];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress(OUR_MAC));
        f.set_src_addr(EthernetAddress(PEER_MAC));
        f.set_ethertype(EthernetProtocol::Ipv4);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        let seg = p.payload_mut();
        seg[..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&80u16.to_be_bytes());
        seg[12] = words << 4;
        seg[13] = 0x02; // SYN
        seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let mut t = TcpPacket::new_unchecked(&mut seg[..]);
        t.fill_checksum(&IpAddress::Ipv4(PEER_IP), &IpAddress::Ipv4(OUR_IP));
        buf
    }

    /// A well-formed ARP request from the peer, to Ethernet broadcast.
    fn arp_request_broadcast() -> Vec<u8> {
        let arp = smoltcp::wire::ArpRepr::EthernetIpv4 {
            operation: smoltcp::wire::ArpOperation::Request,
            source_hardware_addr: EthernetAddress(PEER_MAC),
            source_protocol_addr: PEER_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: OUR_IP,
        };
        let mut buf = vec![0u8; 14 + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress::BROADCAST);
        f.set_src_addr(EthernetAddress(PEER_MAC));
        f.set_ethertype(EthernetProtocol::Arp);
        arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        buf
    }

    /// The boundaries, each frame with its verdict: accepted frames at the
    /// limits, and each refusal counted under its own counter and no other.
    #[test]
    fn boundary_table_each_reason_bumps_only_its_counter() {
        let good = udp_frame(7001, b"hello");
        let full = udp_frame(7001, &[7u8; 1500 - 20 - 8]);
        assert_eq!(full.len(), 14 + 1500);
        let mut one_over = udp_frame(7001, &[7u8; 1500 - 20 - 8 + 1]);
        one_over.truncate(14 + 1501);
        let mut multicast = good.clone();
        multicast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
        let mut more_frags = good.clone();
        more_frags[14 + 6] |= 0x20;
        let mut offset = good.clone();
        offset[14 + 7] = 1;
        let mut udp_long = good.clone();
        udp_long[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&(8u16 + 6).to_be_bytes());
        let mut udp_short = good.clone();
        udp_short[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&(8u16 + 4).to_be_bytes());
        let mut vlan = good.clone();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        let mut v5 = good.clone();
        v5[14] = 0x55;
        let cases: [(&str, Vec<u8>, Result<(), DropReason>); 16] = [
            ("a small UDP datagram", good.clone(), Ok(())),
            ("a full-size frame (IP MTU 1500)", full, Ok(())),
            ("one byte over", one_over, Err(DropReason::Oversized)),
            ("broadcast ARP request", arp_request_broadcast(), Ok(())),
            ("IPv4 multicast to a group MAC", fix_ip(multicast), Ok(())),
            ("a TCP SYN", tcp_frame(5), Ok(())),
            (
                "the Ethernet header alone",
                good[..14].to_vec(),
                Err(DropReason::BadIpv4),
            ),
            ("13 bytes", good[..13].to_vec(), Err(DropReason::Runt)),
            (
                "more fragments",
                fix_ip(more_frags),
                Err(DropReason::Unsupported),
            ),
            (
                "a fragment offset",
                fix_ip(offset),
                Err(DropReason::Unsupported),
            ),
            ("VLAN-tagged", vlan, Err(DropReason::Unsupported)),
            ("IP version 5", fix_ip(v5), Err(DropReason::BadIpv4)),
            (
                "UDP length beyond the packet",
                udp_long,
                Err(DropReason::BadL4),
            ),
            (
                "UDP length short of the packet",
                udp_short,
                Err(DropReason::BadL4),
            ),
            (
                "TCP data offset 15 words (past the segment)",
                tcp_frame(15),
                Err(DropReason::BadL4),
            ),
            (
                "TCP data offset 4 words (under the header)",
                tcp_frame(4),
                Err(DropReason::BadL4),
            ),
        ];
        for (what, frame, want) in cases {
            let got = classify(&frame, OUR_MAC, 1500);
            assert_eq!(got, want, "{what}");
            let mut c = NetCounters::default();
            if let Err(r) = got {
                r.count(&mut c);
                assert_eq!(c.rx_dropped(), 1, "{what}: {c:?}");
                let named = match r {
                    DropReason::Runt => c.rx_runt,
                    DropReason::Oversized => c.rx_oversized,
                    DropReason::NotForUs => c.rx_not_for_us,
                    DropReason::Unsupported => c.rx_unsupported,
                    DropReason::BadArp => c.rx_bad_arp,
                    DropReason::BadIpv4 => c.rx_bad_ipv4,
                    DropReason::BadIpChecksum => c.rx_bad_ip_checksum,
                    DropReason::BadL4 => c.rx_bad_l4,
                    DropReason::BadL4Checksum => c.rx_bad_l4_checksum,
                    DropReason::BadOffload => c.rx_bad_offload,
                };
                assert_eq!(named, 1, "{what}: counted elsewhere: {c:?}");
            }
        }
    }

    #[test]
    fn offloads_decide_what_is_verified_and_where_a_partial_checksum_may_be() {
        let trusted = [
            Offload {
                valid: true,
                ..Offload::NONE
            },
            Offload {
                partial: Some((34, 16)),
                ..Offload::NONE
            },
        ];
        let mut tcp = crate::offload::tests::tcp_frame(100, 0x10, 1);
        tcp[..6].copy_from_slice(&OUR_MAC);
        assert_eq!(classify(&tcp, OUR_MAC, 1500), Ok(()));
        tcp[50] ^= 0xff; // the TCP checksum
        let mut udp = udp_frame(7001, b"x");
        udp[40] ^= 0xff; // the UDP checksum
        for f in [&tcp, &udp] {
            // Wrong, and nobody vouches for it: dropped.
            assert_eq!(classify(f, OUR_MAC, 1500), Err(DropReason::BadL4Checksum));
            // The device checked it, or the host left it to the device.
            for o in trusted {
                let o = Offload {
                    partial: o.partial.map(|(s, _)| (s, 6)),
                    ..o
                };
                assert_eq!(classify_offloaded(f, OUR_MAC, 1500, o), Ok(()), "{o:?}");
            }
        }
        // The partial checksum's field must lie in the frame, after the IPv4 header.
        let n = tcp.len() as u16;
        let at = |start: u16, offset: u16| {
            let o = Offload {
                partial: Some((start, offset)),
                ..Offload::NONE
            };
            classify_offloaded(&tcp, OUR_MAC, 1500, o)
        };
        assert_eq!(at(34, n - 2 - 34), Ok(()), "the last two bytes");
        assert_eq!(at(34, n - 1 - 34), Err(DropReason::BadOffload));
        assert_eq!(at(34, n), Err(DropReason::BadOffload));
        assert_eq!(
            at(33, 17),
            Err(DropReason::BadOffload),
            "in the IPv4 header"
        );
    }

    proptest! {
        #[test]
        fn classify_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = classify(&bytes, OUR_MAC, 1500);
        }

        #[test]
        fn mutated_good_frames_never_panic(pos in 0usize..47, val in any::<u8>()) {
            let mut f = udp_frame(7001, b"hello");
            f[pos] = val;
            let _ = classify(&f, OUR_MAC, 1500);
        }
    }
}
