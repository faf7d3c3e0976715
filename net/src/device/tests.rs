//! `NicDevice` over the fake NIC: receiving, refusals, overruns, the
//! transmit ring, offloads and smoltcp's use of it.

use super::fake::FakeNic;
use super::*;
use crate::classify::classify;
use crate::classify::tests::{udp_frame, OUR_IP, OUR_MAC};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpCidr};

fn device(frames: Vec<Vec<u8>>) -> NicDevice<FakeNic> {
    NicDevice::new(
        FakeNic {
            mac: OUR_MAC,
            inbox: frames.into(),
            offloads: Default::default(),
            outbox: Vec::new(),
            large_out: Vec::new(),
            large: false,
            tx_room: 16,
            large_room: 4,
            rx_ring: usize::MAX,
            room_per_wait: 0,
            waits: 0,
            notifies: 0,
            notified_then: 0,
        },
        1500,
    )
}

/// What a smoltcp UDP socket on port 7001 of `dev` receives (the first
/// datagram), after a few polls.
fn received_on_7001(dev: &mut NicDevice<FakeNic>) -> Option<Vec<u8>> {
    let mut iface = Interface::new(
        Config::new(EthernetAddress(OUR_MAC).into()),
        dev,
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
        iface.poll(Instant::ZERO, dev, &mut sockets);
    }
    let got = sockets.get_mut::<udp::Socket>(h).recv().ok();
    got.map(|(data, _)| data.to_vec())
}

#[test]
fn junk_is_counted_and_good_frames_reach_a_socket() {
    let mut junk = udp_frame(7001, b"x");
    junk[20] ^= 0x55; // breaks the IP header checksum
    let frames = vec![vec![1, 2, 3], junk, udp_frame(7001, b"status?")];
    let mut dev = device(frames);
    assert_eq!(received_on_7001(&mut dev), Some(b"status?".to_vec()));
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
fn a_full_ring_waits_on_the_driver_then_sends_or_refuses() {
    use crate::dataplane::FrameSink;
    let frame = udp_frame(7001, b"x");
    let mut dev = device(vec![]);
    dev.nic_mut().tx_room = 0;
    // The device is told, then waited for; it makes room: the frame goes
    // (the fake takes frames only when told, as virtio does).
    dev.nic_mut().room_per_wait = 1;
    assert!(dev.send_frame(&frame));
    assert_eq!((dev.nic_mut().waits, dev.nic_mut().outbox.len()), (1, 1));
    assert_eq!(dev.nic_mut().notifies, 1);
    assert_eq!(
        (dev.counters.tx_ring_full, dev.counters.tx_ring_waits),
        (0, 1)
    );
    // Room while there is some: no wait.
    dev.nic_mut().tx_room = 2;
    assert!(dev.send_frame(&frame));
    assert_eq!(dev.nic_mut().waits, 1);
    // A wait that ends with the ring still full: refused and counted.
    dev.nic_mut().room_per_wait = 0;
    assert!(!dev.send_frame(&frame));
    assert_eq!((dev.nic_mut().waits, dev.nic_mut().outbox.len()), (2, 2));
    assert_eq!(
        (dev.counters.tx_ring_full, dev.counters.tx_ring_waits),
        (1, 2)
    );
    assert_eq!(dev.counters.tx_frames, 2);
}

#[test]
fn a_rings_worth_of_frames_back_to_back_is_an_overrun() {
    let mut dev = device((0..9).map(|_| udp_frame(7001, b"x")).collect());
    dev.nic_mut().rx_ring = 4;
    let mut pulled = 0;
    while dev.pull() {
        pulled += 1;
    }
    assert_eq!(pulled, 9);
    assert_eq!(dev.counters.rx_overruns, 2, "one per 4 frames in a row");
    assert!(dev.take_overrun());
    assert!(!dev.take_overrun(), "taken once");
}

#[test]
fn finding_the_ring_empty_starts_the_run_again() {
    let mut dev = device((0..3).map(|_| udp_frame(7001, b"x")).collect());
    dev.nic_mut().rx_ring = 4;
    while dev.pull() {}
    dev.nic_mut()
        .inbox
        .extend((0..3).map(|_| udp_frame(7001, b"x")));
    while dev.pull() {}
    assert_eq!(dev.counters.rx_frames, 6);
    assert_eq!(dev.counters.rx_overruns, 0);
    assert!(!dev.take_overrun());
}

#[test]
fn driver_errors_are_counted() {
    let mut dev = device(vec![vec![0u8; RX_BUF_LEN + 10]]);
    assert!(dev.receive(Instant::ZERO).is_none());
    assert_eq!(dev.counters.rx_driver_errors, 1);
}

/// A large TCP frame to us, as a device with TSO delivers it.
fn large(payload: usize) -> (Vec<u8>, Offload) {
    let mut f = crate::offload::tests::tcp_frame(payload, 0x10, 1);
    f[..6].copy_from_slice(&OUR_MAC);
    let o = Offload {
        partial: Some((34, 16)),
        valid: false,
        gso_size: 1000,
    };
    (f, o)
}

#[test]
fn a_large_frame_waits_for_a_large_buffer_then_goes_or_is_refused() {
    use crate::dataplane::FrameSink;
    let (f, o) = large(3000);
    let mut dev = device(vec![]);
    dev.nic_mut().large = true;
    // Ring slots free, but no large buffer: the device is told, then waited
    // for, and the room it makes is a large buffer.
    dev.nic_mut().large_room = 0;
    dev.nic_mut().room_per_wait = 1;
    assert!(dev.send_large(&f, o));
    let nic = dev.nic_mut();
    assert_eq!((nic.waits, nic.notifies, nic.large_out.len()), (1, 1, 1));
    assert_eq!(nic.tx_room, 16, "the wait was for a large buffer");
    assert_eq!((dev.counters.tx_ring_waits, dev.counters.tx_large), (1, 1));
    // An ordinary frame still finds its room without a wait.
    assert!(dev.send_frame(&udp_frame(7001, b"x")));
    assert_eq!(dev.nic_mut().waits, 1);
    // No large buffer comes back: refused as a full ring, not a driver error.
    dev.nic_mut().room_per_wait = 0;
    assert!(!dev.send_large(&f, o));
    assert_eq!(dev.nic_mut().waits, 2);
    assert_eq!(
        (dev.counters.tx_ring_full, dev.counters.tx_driver_errors),
        (1, 0)
    );
}

#[test]
fn a_large_frame_is_offered_whole_then_cut_on_request() {
    let (f, o) = large(4500);
    let mut dev = device(vec![f.clone()]);
    dev.nic_mut().offloads.push_back(o);
    assert!(dev.pull());
    let (frame, got, _) = dev.split();
    assert_eq!((frame.len(), got), (f.len(), o), "offered whole");
    assert_eq!(dev.counters.rx_large, 1);
    dev.cut_current();
    let mut payload = Vec::new();
    while dev.pull() {
        let (seg, got, _) = dev.split();
        assert_eq!(got, Offload::NONE, "a segment is an ordinary frame");
        assert!(seg.len() <= FRAME_MAX);
        assert_eq!(classify(seg, OUR_MAC, 1500), Ok(()), "checksums good");
        payload.extend_from_slice(&seg[54..]);
    }
    assert_eq!(payload, f[54..]);
    assert_eq!(dev.counters.rx_large_cut, 5);
    // Nothing left: the device is drained.
    assert!(!dev.pull());
}

#[test]
fn offload_metadata_that_does_not_fit_the_frame_is_a_counted_drop() {
    let (f, mut o) = large(3000);
    o.gso_size = 0; // then it is an oversized ordinary frame
    let udp = udp_frame(7001, b"x");
    let bad_partial = Offload {
        partial: Some((40, 200)),
        ..Offload::NONE
    };
    let gso_udp = Offload {
        gso_size: 100,
        ..Offload::NONE
    };
    let mut dev = device(vec![f, udp.clone(), udp]);
    dev.nic_mut().offloads.extend([o, bad_partial, gso_udp]);
    assert!(!dev.pull());
    assert_eq!(dev.counters.rx_oversized, 1);
    assert_eq!(dev.counters.rx_bad_offload, 2);
    assert_eq!(dev.counters.rx_dropped(), 3);
}

#[test]
fn the_stack_gets_partial_checksums_completed() {
    // A UDP datagram whose checksum the host left to the device.
    let mut partial = udp_frame(7001, b"status?");
    let full = partial.clone();
    let o = Offload {
        partial: Some((34, 6)),
        ..Offload::NONE
    };
    // The field as a host stack leaves it: the pseudo-header sum.
    let pseudo = smoltcp::wire::checksum::combine(&[
        smoltcp::wire::checksum::data(&full[26..34]),
        smoltcp::wire::checksum::data(&[0, 17]),
        smoltcp::wire::checksum::data(&full[38..40]),
    ]);
    partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
    let mut dev = device(vec![partial]);
    dev.nic_mut().offloads.push_back(o);
    assert_eq!(received_on_7001(&mut dev), Some(b"status?".to_vec()));
    assert_eq!(dev.counters.rx_bad_l4_checksum, 0);
}

#[test]
fn an_ungated_stack_gets_a_large_frame_in_segments() {
    let (f, o) = large(2500);
    let mut dev = device(vec![f]);
    dev.nic_mut().offloads.push_back(o);
    let mut n = 0;
    while let Some((rx, _tx)) = dev.receive(Instant::ZERO) {
        phy::RxToken::consume(rx, |seg| {
            assert!(seg.len() <= FRAME_MAX);
            assert_eq!(classify(seg, OUR_MAC, 1500), Ok(()));
        });
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(dev.counters.rx_large_cut, 3);
}

#[test]
fn coalescing_merges_a_flows_run_and_keeps_the_frame_after_it() {
    use crate::offload::tests::flow_segment;
    let seg = |i: usize| {
        let mut f = flow_segment(i * 1000, 1000, 0x10, 500);
        f[..6].copy_from_slice(&OUR_MAC);
        f
    };
    let udp = udp_frame(7001, b"after");
    let frames = vec![seg(0), seg(1), seg(2), udp.clone(), seg(3)];
    for on in [false, true] {
        let mut dev = device(frames.clone());
        dev.set_coalescing(on);
        let mut got = Vec::new();
        while dev.pull() {
            let (f, o, _) = dev.split();
            got.push((f.len(), o.gso_size));
        }
        if on {
            // Three segments as one large frame, then the datagram
            // (held back, not lost), then the last segment alone.
            assert_eq!(got, vec![(54 + 3000, 1000), (udp.len(), 0), (1054, 0)]);
            assert_eq!(dev.counters.rx_coalesced, 3);
        } else {
            assert_eq!(got.len(), 5);
            assert_eq!(dev.counters.rx_coalesced, 0);
        }
        assert_eq!(dev.counters.rx_frames, 5);
    }
    // A large frame after a run stays in the device until the next pull.
    let (big, o) = large(3000);
    let mut dev = device(vec![seg(0), seg(1), big.clone()]);
    dev.nic_mut()
        .offloads
        .extend([Offload::NONE, Offload::NONE, o]);
    dev.set_coalescing(true);
    assert!(dev.pull());
    assert_eq!(dev.split().0.len(), 54 + 2000);
    assert!(dev.pull());
    let (f, got, _) = dev.split();
    assert_eq!((f.len(), got), (big.len(), o), "whole, as delivered");
    assert!(!dev.pull());
    assert_eq!(dev.counters.rx_driver_errors, 0);
}
