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
        let l = LargeTcp::parse(&big, 1448, 1500).expect("parse");
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
    assert!(LargeTcp::parse(&good, 1448, 1500).is_ok());
    assert_eq!(
        LargeTcp::parse(&good, 0, 1500),
        Err(OffloadError::BadLargeFrame)
    );
    assert_eq!(
        LargeTcp::parse(&good, 1500, 1500),
        Err(OffloadError::BadLargeFrame)
    );
    let mut udp = good.clone();
    udp[14 + 9] = 17;
    assert!(LargeTcp::parse(&udp, 1448, 1500).is_err());
    let mut frag = good.clone();
    frag[14 + 7] = 1;
    assert!(LargeTcp::parse(&frag, 1448, 1500).is_err());
    let mut thl = good.clone();
    thl[34 + 12] = 0x40; // 16-byte TCP header
    assert!(LargeTcp::parse(&thl, 1448, 1500).is_err());
    assert!(LargeTcp::parse(&good[..good.len() - 1], 1448, 1500).is_err());
    // Segments beyond the interface's MTU: refused; within it: fine.
    assert!(LargeTcp::parse(&good, 1448, 1000).is_err());
    assert!(LargeTcp::parse(&good, 960, 1000).is_ok());
    assert!(LargeTcp::parse(&good, 961, 1000).is_err());
    // No prefix of a frame, however cut, panics.
    for n in 0..good.len().min(200) {
        let _ = LargeTcp::parse(&good[..n], 1448, 1500);
    }
    let mut out = [0u8; 100];
    let l = LargeTcp::parse(&good, 1448, 1500).expect("parse");
    assert_eq!(l.segment(&good, 0, &mut out), Err(OffloadError::NoRoom));
}

/// Segment `i` of a flow: `len` payload bytes from offset `at` of a
/// counting pattern, sequence number 1000 + at, flags `flags`, window `win`.
pub(crate) fn flow_segment(at: usize, len: usize, flags: u8, win: u16) -> Vec<u8> {
    let mut f = tcp_frame(len, flags, 1000 + at as u32);
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[48..50].copy_from_slice(&win.to_be_bytes());
    for (k, b) in f[54..].iter_mut().enumerate() {
        *b = ((at + k) % 251) as u8;
    }
    // Checksums afresh over the new payload and window.
    let (s, d) = (
        IpAddress::Ipv4(Ipv4Address::from(SRC)),
        IpAddress::Ipv4(Ipv4Address::from(DST)),
    );
    TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(&s, &d);
    f
}

/// Merges `segs` as `NicDevice` does: the run's frame and how many joined.
fn merge(segs: &[Vec<u8>]) -> (Vec<u8>, usize, Option<Offload>) {
    let mut big = vec![0u8; crate::device::RX_BUF_LEN];
    let mut len = segs[0].len();
    big[..len].copy_from_slice(&segs[0]);
    let mut run = coalesce::start(&segs[0], Offload::NONE).expect("a plain segment");
    let mut joined = 1;
    for s in &segs[1..] {
        if !run.append(&mut big, &mut len, s, Offload::NONE) {
            break;
        }
        joined += 1;
    }
    let o = (run.segments > 1).then(|| run.finish(&mut big, len));
    big.truncate(len);
    (big, joined, o)
}

#[test]
fn a_run_of_segments_merges_and_cuts_back_into_the_same_segments() {
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    let mss = 1448;
    let mut segs: Vec<Vec<u8>> = (0..4)
        .map(|i| flow_segment(i * mss, mss, ACK, 500 + i as u16))
        .collect();
    segs.push(flow_segment(4 * mss, 700, ACK | PSH, 504));
    let (big, joined, o) = merge(&segs);
    assert_eq!(joined, 5);
    let o = o.expect("merged");
    assert_eq!(o.gso_size, 1448);
    assert_eq!(big.len(), 54 + 4 * mss + 700);
    // Finished as a device would, the merged frame's checksums hold.
    let mut whole = big.clone();
    let (start, offset) = o.partial.expect("partial");
    complete_checksum(&mut whole, start, offset).unwrap();
    let (_, flags, _, payload) = verify(&whole);
    assert_eq!(flags, ACK | PSH, "PSH of the last segment");
    assert_eq!(&whole[48..50], &504u16.to_be_bytes(), "the latest window");
    let want: Vec<u8> = segs.iter().flat_map(|s| s[54..].to_vec()).collect();
    assert_eq!(payload, want);
    // Cut again, it gives back the segments it was made of (IP
    // identification aside: the cut numbers them from the first's).
    let l = LargeTcp::parse(&big, o.gso_size, 1500).unwrap();
    assert_eq!(l.count(&big), 5);
    let mut out = [0u8; FRAME_MAX];
    for (i, s) in segs.iter().enumerate() {
        let n = l.segment(&big, i, &mut out).unwrap();
        let mut a = out[..n].to_vec();
        let mut b = s.clone();
        for f in [&mut a, &mut b] {
            f[18..20].fill(0); // identification
            f[24..26].fill(0); // IPv4 checksum
            f[48..50].fill(0); // window: the merged frame keeps the latest
            f[50..52].fill(0); // TCP checksum (over the window)
        }
        assert_eq!(a, b, "segment {i}");
        verify(&out[..n]);
    }
}

#[test]
fn only_the_next_segment_of_the_same_flow_joins_a_run() {
    const ACK: u8 = 0x10;
    let mss = 1000;
    let first = flow_segment(0, mss, ACK, 500);
    let next = flow_segment(mss, mss, ACK, 500);
    assert_eq!(merge(&[first.clone(), next.clone()]).1, 2);
    let changed = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut n = next.clone();
        f(&mut n);
        merge(&[first.clone(), n]).1
    };
    assert_eq!(changed(&|n| n[41] ^= 1), 1, "sequence number");
    assert_eq!(changed(&|n| n[45] ^= 1), 1, "ACK number");
    assert_eq!(changed(&|n| n[35] ^= 1), 1, "source port");
    assert_eq!(changed(&|n| n[29] ^= 1), 1, "source address");
    assert_eq!(changed(&|n| n[22] ^= 1), 1, "TTL");
    assert_eq!(changed(&|n| n[15] ^= 1), 1, "TOS");
    assert_eq!(changed(&|n| n[6] ^= 1), 1, "source MAC");
    assert_eq!(changed(&|n| n[47] |= 0x01), 1, "FIN");
    assert_eq!(changed(&|n| n[47] |= 0x80), 1, "CWR");
    // Longer than the first: refused; after a short one: refused.
    assert_eq!(
        merge(&[first.clone(), flow_segment(mss, mss + 1, ACK, 500)]).1,
        1
    );
    let short = flow_segment(mss, 500, ACK, 500);
    let after = flow_segment(mss + 500, mss, ACK, 500);
    assert_eq!(merge(&[first.clone(), short, after]).1, 2);
    // PSH ends a run; so do a SYN, an empty segment and a large frame.
    let pushed = flow_segment(0, mss, ACK | 0x08, 500);
    assert_eq!(merge(&[pushed, next.clone()]).1, 1);
    assert!(coalesce::start(&flow_segment(0, mss, 0x02, 500), Offload::NONE).is_none());
    assert!(coalesce::start(&tcp_frame(0, ACK, 1), Offload::NONE).is_none());
    let large = Offload {
        gso_size: 500,
        ..Offload::NONE
    };
    assert!(coalesce::start(&first, large).is_none());
    // No prefix of a segment panics.
    for n in 0..first.len().min(120) {
        let _ = coalesce::start(&first[..n], Offload::NONE);
    }
}
