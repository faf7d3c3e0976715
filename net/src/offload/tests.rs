use super::*;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket};

const SRC: [u8; 4] = [198, 18, 0, 2];
const DST: [u8; 4] = [203, 0, 113, 10];

/// A TCP/IPv4 frame with `payload` bytes (a counting pattern), flags
/// `flags`, sequence number `seq` and full checksums.
pub(crate) fn tcp_frame(payload: usize, flags: u8, seq: u32) -> Vec<u8> {
    let total = 20 + 20 + payload;
    let mut f = vec![0u8; 14 + total];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&SRC);
    ip[16..20].copy_from_slice(&DST);
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
    let t = &mut ip[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in t[20..].iter_mut().enumerate() {
        *b = (i * 7 + i / 251) as u8;
    }
    let (s, d) = (
        IpAddress::Ipv4(Ipv4Address::from(SRC)),
        IpAddress::Ipv4(Ipv4Address::from(DST)),
    );
    TcpPacket::new_unchecked(&mut t[..]).fill_checksum(&s, &d);
    f
}

fn verify(frame: &[u8]) -> (u32, u8, u16, Vec<u8>) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("ipv4");
    assert!(ip.verify_checksum(), "IPv4 checksum");
    assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
    let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
    let (s, d) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    assert!(tcp.verify_checksum(&s, &d), "TCP checksum");
    (
        tcp.seq_number().0 as u32,
        ip.payload()[13],
        ip.ident(),
        tcp.payload().to_vec(),
    )
}

#[test]
fn a_large_frame_cuts_into_valid_segments_that_add_up_to_it() {
    const FIN_PSH_CWR_ACK: u8 = 0x01 | 0x08 | 0x80 | 0x10;
    for payload in [1, 1447, 1448, 1449, 5000, 65_535 - 40] {
        let seq = 0xffff_f000; // wraps within the frame
        let big = tcp_frame(payload, FIN_PSH_CWR_ACK, seq);
        let l = LargeTcp::parse(&big, 1448).expect("parse");
        let n = l.count(&big);
        assert_eq!(n, payload.div_ceil(1448));
        let mut joined = Vec::new();
        let mut out = [0u8; FRAME_MAX];
        for i in 0..n {
            let len = l.segment(&big, i, &mut out).expect("segment");
            let (s, flags, id, data) = verify(&out[..len]);
            assert_eq!(s, seq.wrapping_add(joined.len() as u32), "segment {i}");
            assert_eq!(id, 0xfffeu16.wrapping_add(i as u16));
            assert_eq!(flags & 0x09 != 0, i == n - 1, "FIN/PSH on the last only");
            assert_eq!(flags & 0x80 != 0, i == 0, "CWR on the first only");
            assert!(flags & 0x10 != 0, "ACK on every segment");
            assert!(data.len() <= 1448);
            joined.extend_from_slice(&data);
        }
        assert_eq!(joined[..], big[54..], "payload {payload}");
        assert_eq!(l.segment(&big, n, &mut out), Err(OffloadError::NoRoom));
    }
}

#[test]
fn a_partial_checksum_completes_to_the_full_one() {
    let full = tcp_frame(999, 0x18, 7);
    let mut partial = full.clone();
    // What a host stack hands the device: the pseudo-header sum, uncomplemented.
    let pseudo = checksum::pseudo_header_v4(
        &Ipv4Address::from(SRC),
        &Ipv4Address::from(DST),
        IpProtocol::Tcp,
        (20 + 999) as u32,
    );
    partial[50..52].copy_from_slice(&pseudo.to_be_bytes());
    assert_ne!(partial, full);
    complete_checksum(&mut partial, 34, 16).expect("complete");
    assert_eq!(partial, full);
    // Out of the frame: refused, nothing written.
    let mut short = full[..40].to_vec();
    assert_eq!(
        complete_checksum(&mut short, 34, 16),
        Err(OffloadError::BadChecksumPosition)
    );
    assert_eq!(
        complete_checksum(&mut short, u16::MAX, u16::MAX),
        Err(OffloadError::BadChecksumPosition)
    );
}

#[test]
fn a_partial_sum_follows_an_address_change() {
    let new_dst = [198, 18, 0, 9];
    let len = 1000;
    let before = checksum::pseudo_header_v4(
        &Ipv4Address::from(SRC),
        &Ipv4Address::from(DST),
        IpProtocol::Tcp,
        len,
    );
    let after = checksum::pseudo_header_v4(
        &Ipv4Address::from(SRC),
        &Ipv4Address::from(new_dst),
        IpProtocol::Tcp,
        len,
    );
    // One's complement has two zeros; compare by value.
    let got = adjust_partial_sum(before, &DST, &new_dst);
    assert!(got == after || (got, after) == (0xffff, 0) || (got, after) == (0, 0xffff));
    assert_ne!(before, after);
}

#[test]
fn malformed_large_frames_are_refused() {
    let good = tcp_frame(3000, 0x10, 1);
    assert!(LargeTcp::parse(&good, 1448).is_ok());
    assert_eq!(LargeTcp::parse(&good, 0), Err(OffloadError::BadLargeFrame));
    assert_eq!(
        LargeTcp::parse(&good, 1500),
        Err(OffloadError::BadLargeFrame)
    );
    let mut udp = good.clone();
    udp[14 + 9] = 17;
    assert!(LargeTcp::parse(&udp, 1448).is_err());
    let mut frag = good.clone();
    frag[14 + 7] = 1;
    assert!(LargeTcp::parse(&frag, 1448).is_err());
    let mut thl = good.clone();
    thl[34 + 12] = 0x40; // 16-byte TCP header
    assert!(LargeTcp::parse(&thl, 1448).is_err());
    assert!(LargeTcp::parse(&good[..good.len() - 1], 1448).is_err());
    // No prefix of a frame, however cut, panics.
    for n in 0..good.len().min(200) {
        let _ = LargeTcp::parse(&good[..n], 1448);
    }
    let mut out = [0u8; 100];
    let l = LargeTcp::parse(&good, 1448).expect("parse");
    assert_eq!(l.segment(&good, 0, &mut out), Err(OffloadError::NoRoom));
}
