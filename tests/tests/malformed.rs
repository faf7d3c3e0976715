//! A burst of malformed frames from the lab's bridge is counted and dropped,
//! and the appliance still answers afterwards.

use pias_qemu::client::Pinger;
use pias_qemu::{Lab, Machine};
use pias_tests::{lab_with, status_of};
use std::time::Duration;

/// A valid Ethernet + IPv4 + UDP frame to `dst` (checksums right), for mutation.
fn udp_frame(dst_mac: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src_ip);
    ip.extend_from_slice(&dst_ip);
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let ulen = (8 + payload.len()) as u16;
    let mut udp = vec![0x9c, 0x40, 0x1b, 0x59];
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src_ip);
    pseudo.extend_from_slice(&dst_ip);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&ulen.to_be_bytes());
    let sum = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let c = csum(&udp, sum);
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

fn csum(data: &[u8], start: u32) -> u16 {
    let mut sum = start;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A small deterministic generator for the random-bytes frames.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn malformed_burst_is_counted_and_survived() {
    let lab = lab_with("junk", Machine::Microvm, 1);
    let mac = [0x52, 0x54, 0, 0, 0, 2];
    let src = [198, 18, 0, 1];
    let dst = Lab::appliance_ip(0).octets();
    let good = udp_frame(mac, src, dst, b"not a management request");

    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40 {
        let len = 60 + (rng.next() % 1400) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        f[..6].copy_from_slice(&mac); // addressed to the appliance, so it is examined
        frames.push(f);
    }
    for cut in [20, 30, 40] {
        frames.push(good[..cut].to_vec()); // truncated IP / UDP headers
    }
    let mut ip_sum = good.clone();
    ip_sum[24] ^= 0xff;
    frames.push(ip_sum);
    let mut udp_sum = good.clone();
    let last = udp_sum.len() - 1;
    udp_sum[last] ^= 0x01;
    frames.push(udp_sum);
    let mut oversized = good.clone();
    oversized.resize(1600, 0);
    frames.push(oversized);
    let count = frames.len() as u64;
    let frames_copy = frames.clone();

    // Let the oversized frame through the host side (the appliance's MTU stays 1500).
    lab.exec(&["ip", "link", "set", "tap0", "mtu", "2000"])
        .unwrap();
    lab.exec(&["ip", "link", "set", "br0", "mtu", "2000"])
        .unwrap();
    let before = status_of(&lab, 0).net;
    let sent = lab
        .inside(move || {
            let ifc = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == "br0")
                .ok_or_else(|| anyhow::anyhow!("no br0 in the lab"))?;
            let pnet_datalink::Channel::Ethernet(mut tx, _rx) =
                pnet_datalink::channel(&ifc, Default::default())?
            else {
                anyhow::bail!("unexpected channel type");
            };
            let mut sent = 0u64;
            for f in &frames {
                if let Some(Ok(())) = tx.send_to(f, None) {
                    sent += 1;
                }
            }
            Ok(sent)
        })
        .unwrap();
    assert_eq!(sent, count);

    // The appliance still answers, and every frame of the burst was counted as a drop.
    let mut pinger = Pinger::new(&lab).unwrap();
    assert!(pinger
        .ping(Lab::appliance_ip(0), Duration::from_secs(2))
        .unwrap()
        .is_some());
    // Exactly: each drop counter moved by what the classifier says of the
    // burst's frames, and by nothing else (the lab has IPv6 off, so no
    // background frames can make up a shortfall).
    let after = status_of(&lab, 0).net;
    let mut want = pias::status::NetCounters::default();
    for f in &frames_copy {
        if let Err(r) = pias_net::classify(f, mac, 1500) {
            r.count(&mut want);
        }
    }
    assert!(
        want.rx_dropped() >= count - 2,
        "the burst is mostly bad: {want:?}"
    );
    let delta = |f: fn(&pias::status::NetCounters) -> u64| f(&after) - f(&before);
    for (name, f) in [
        (
            "rx_runt",
            (|c| c.rx_runt) as fn(&pias::status::NetCounters) -> u64,
        ),
        ("rx_oversized", |c| c.rx_oversized),
        ("rx_not_for_us", |c| c.rx_not_for_us),
        ("rx_unsupported", |c| c.rx_unsupported),
        ("rx_bad_arp", |c| c.rx_bad_arp),
        ("rx_bad_ipv4", |c| c.rx_bad_ipv4),
        ("rx_bad_ip_checksum", |c| c.rx_bad_ip_checksum),
        ("rx_bad_l4", |c| c.rx_bad_l4),
        ("rx_bad_l4_checksum", |c| c.rx_bad_l4_checksum),
    ] {
        assert_eq!(
            delta(f),
            f(&want),
            "{name}: before {before:?} after {after:?}"
        );
    }
    assert!(want.rx_bad_ip_checksum > 0 && want.rx_bad_l4_checksum > 0);
    assert!(want.rx_oversized > 0 && want.rx_bad_ipv4 > 0);
}
