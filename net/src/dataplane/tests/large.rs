//! Large TCP frames: a NATed flow's go on whole, readdressed, with a partial
//! checksum the device can finish; everything else is left to be cut.

use super::*;
use crate::offload::{complete_checksum, Offload};
use smoltcp::wire::checksum;

/// A sink that takes large frames (when `large`), keeping both kinds.
#[derive(Default)]
struct LargeOut {
    large: bool,
    /// Refuse large frames (a full ring).
    refuse: bool,
    frames: Vec<Vec<u8>>,
    larges: Vec<(Vec<u8>, Offload)>,
}

impl FrameSink for LargeOut {
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.frames.push(frame.to_vec());
        true
    }
    fn takes_large(&self) -> bool {
        self.large
    }
    fn send_large(&mut self, frame: &[u8], o: Offload) -> bool {
        if self.refuse {
            return false;
        }
        self.larges.push((frame.to_vec(), o));
        true
    }
}

const PAYLOAD: usize = 5000;
/// Within the carry limit, as the MSS clamp at the SYN makes it.
const GSO: u16 = 1200;

/// A large TCP frame as a host stack hands it to its device: ACK|PSH,
/// `PAYLOAD` bytes, the checksum field holding the pseudo-header sum.
fn large_frame(src: Endpoint, dst: Endpoint) -> (Vec<u8>, Offload) {
    let total = 20 + 20 + PAYLOAD;
    let mut f = vec![0u8; 14 + total];
    f[..6].copy_from_slice(&mac(99));
    f[6..12].copy_from_slice(&mac(src.ip.0[3]));
    f[12..14].copy_from_slice(&[8, 0]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    f[20] = 0x40;
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src.ip.0);
    f[30..34].copy_from_slice(&dst.ip.0);
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f[34..36].copy_from_slice(&src.port.to_be_bytes());
    f[36..38].copy_from_slice(&dst.port.to_be_bytes());
    f[38..42].copy_from_slice(&1000u32.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = tcp_flags::ACK | 0x08;
    f[48..50].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    let pseudo = checksum::pseudo_header_v4(
        &smoltcp::wire::Ipv4Address::from(src.ip.0),
        &smoltcp::wire::Ipv4Address::from(dst.ip.0),
        IpProtocol::Tcp,
        (20 + PAYLOAD) as u32,
    );
    f[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let o = Offload {
        partial: Some((34, 16)),
        valid: false,
        gso_size: GSO,
    };
    (f, o)
}

/// What the device would send: the checksum finished, then checked whole.
fn finished(frame: &[u8], o: Offload) -> (Endpoint, Endpoint, Vec<u8>) {
    let mut f = frame.to_vec();
    let (start, offset) = o.partial.expect("a partial checksum");
    complete_checksum(&mut f, start, offset).unwrap();
    let (src, dst, proto, seg) = parse(&f).expect("IPv4 with good checksums");
    assert_eq!(proto, IpProtocol::Tcp);
    let (sp, dp) = packet::ports(&seg);
    (
        Endpoint { ip: src, port: sp },
        Endpoint { ip: dst, port: dp },
        seg[20..].to_vec(),
    )
}

fn client_ep() -> Endpoint {
    Endpoint {
        ip: ip(CLIENT),
        port: 7000,
    }
}

fn group_ep(g: Group) -> Endpoint {
    Endpoint {
        ip: g.ip,
        port: g.port,
    }
}

#[test]
fn a_natted_flows_large_frames_go_on_whole_both_ways_with_checksums_the_device_can_finish() {
    let mut lan = Lan::new();
    // The client's nearest appliance is the JAP: IAP = JAP.
    lan.nearest_for_client = 1;
    let (g, syn) = tcp_syn_sent(&mut lan);
    let nat = syn.src;
    assert_eq!(nat.ip, appliance_ip(2));
    let before = lan.planes[1].counters();

    // Client to group, whole.
    let (mut f, o) = large_frame(client_ep(), group_ep(g));
    let payload = f[54..].to_vec();
    let mut out = LargeOut {
        large: true,
        ..LargeOut::default()
    };
    let v = lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out);
    assert_eq!(v, Verdict::Done);
    assert_eq!(out.larges.len(), 1, "one large frame out");
    assert!(out.frames.is_empty(), "{:?}", out.frames.len());
    let (sent, so) = &out.larges[0];
    assert_eq!(so.gso_size, GSO);
    assert_eq!(&sent[..6], &mac(TARGET), "to the target's MAC");
    let (src, dst, data) = finished(sent, *so);
    assert_eq!(src, nat, "from the flow's NAT port");
    assert_eq!(dst, syn.dst, "to the target");
    assert_eq!(data, payload);
    let after = lan.planes[1].counters();
    assert_eq!(after.rx_client, before.rx_client + 1);
    assert_eq!(after.tx_deliver, before.tx_deliver + 1);

    // Target to client, whole, from the group's address (after its SYN-ACK
    // went the ordinary way: the JAP knows the client's MAC then).
    let syn_ack = host_tcp(
        ip(TARGET),
        80,
        appliance_ip(2),
        nat.port,
        tcp_flags::SYN | tcp_flags::ACK,
        &[],
    );
    lan.run(VecDeque::from([(usize::MAX, syn_ack)]));
    assert_eq!(lan.client_got.len(), 1, "the SYN-ACK reached the client");
    let after = lan.planes[1].counters();
    let (mut f, o) = large_frame(syn.dst, nat);
    let mut out = LargeOut {
        large: true,
        ..LargeOut::default()
    };
    let v = lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out);
    assert_eq!(v, Verdict::Done);
    let (sent, so) = &out.larges[0];
    assert_eq!(&sent[..6], &mac(CLIENT));
    let (src, dst, data) = finished(sent, *so);
    assert_eq!((src, dst), (group_ep(g), client_ep()));
    assert_eq!(data, payload);
    assert_eq!(
        lan.planes[1].counters().tx_to_client,
        after.tx_to_client + 1
    );

    // A device that refuses it: taken (the core counted the delivery), but
    // not counted as sent.
    let before = lan.planes[1].counters();
    let (mut f, o) = large_frame(client_ep(), group_ep(g));
    let mut out = LargeOut {
        large: true,
        refuse: true,
        ..LargeOut::default()
    };
    let v = lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out);
    assert_eq!(v, Verdict::Done);
    let after = lan.planes[1].counters();
    assert_eq!(after.tx_deliver, before.tx_deliver);
    assert_eq!(after.tx_device_refused, before.tx_device_refused + 1);

    // What the ordinary path would refuse or must see: segments beyond the
    // carry limit, CWR (ECN), and SYN are left to be cut, untouched.
    let mut cases = Vec::new();
    let (f, mut o) = large_frame(client_ep(), group_ep(g));
    o.gso_size = 1460;
    cases.push(("beyond the carry limit", f, o));
    for (what, flag) in [("CWR", 0x80u8), ("SYN", tcp_flags::SYN)] {
        let (mut f, o) = large_frame(client_ep(), group_ep(g));
        f[47] |= flag;
        cases.push((what, f, o));
    }
    for (what, mut f, o) in cases {
        let copy = f.clone();
        let mut out = LargeOut {
            large: true,
            ..LargeOut::default()
        };
        let v = lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out);
        assert_eq!(v, Verdict::Cut, "{what}");
        assert_eq!(f, copy, "{what}");
        assert!(out.larges.is_empty(), "{what}");
    }

    // A device that cannot segment: to be cut, the frame untouched.
    let (mut f, o) = large_frame(client_ep(), group_ep(g));
    let copy = f.clone();
    let mut out = LargeOut::default();
    let v = lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out);
    assert_eq!(v, Verdict::Cut);
    assert_eq!(f, copy);
    assert!(out.larges.is_empty() && out.frames.is_empty());
}

#[test]
fn large_frames_without_a_flow_here_are_left_to_be_cut_untouched() {
    let mut lan = Lan::new();
    // IAP != JAP: the client's appliance has no NAT flow for it.
    let (g, syn) = tcp_syn_sent(&mut lan);
    let cases = [
        // At the IAP, which carries the client's segments to the JAP.
        (0, client_ep(), group_ep(g)),
        // At the JAP, from a client port with no flow.
        (
            1,
            Endpoint {
                ip: ip(CLIENT),
                port: 7001,
            },
            group_ep(g),
        ),
        // To a NAT port from someone other than the flow's target.
        (
            1,
            Endpoint {
                ip: ip(CLIENT),
                port: 80,
            },
            syn.src,
        ),
        // To the appliance's address, not a NAT port.
        (
            1,
            client_ep(),
            Endpoint {
                ip: appliance_ip(2),
                port: 179,
            },
        ),
    ];
    for (i, (at, from, to)) in cases.into_iter().enumerate() {
        let (mut f, o) = large_frame(from, to);
        let copy = f.clone();
        let mut out = LargeOut {
            large: true,
            ..LargeOut::default()
        };
        let before = lan.planes[at].counters();
        let v = lan.planes[at].ingress_offloaded(lan.now, &mut f, o, &mut out);
        assert_eq!(v, Verdict::Cut, "case {i}");
        assert_eq!(f, copy, "case {i}: the frame was changed");
        assert!(out.larges.is_empty() && out.frames.is_empty(), "case {i}");
        assert_eq!(lan.planes[at].counters(), before, "case {i}");
    }
    // Not a partial checksum where the TCP header has it: cut too.
    let mut lan = Lan::new();
    lan.nearest_for_client = 1;
    let (g, _) = tcp_syn_sent(&mut lan);
    let (mut f, mut o) = large_frame(client_ep(), group_ep(g));
    o.partial = None;
    let mut out = LargeOut {
        large: true,
        ..LargeOut::default()
    };
    assert_eq!(
        lan.planes[1].ingress_offloaded(lan.now, &mut f, o, &mut out),
        Verdict::Cut
    );
}
