//! Round trips, tampering, framing errors and field domains of the wire format.

use super::*;
use crate::addr::{Endpoint, Group, Ipv4, Transport};
use proptest::prelude::*;

fn group() -> Group {
    Group {
        ip: Ipv4([203, 0, 113, 1]),
        port: 53,
        transport: Transport::Udp,
    }
}

fn ep(last: u8, port: u16) -> Endpoint {
    Endpoint {
        ip: Ipv4([198, 18, 1, last]),
        port,
    }
}

const K: Key = Key([7; 32]);
const PROXY: Sender = Sender::Proxy { id: 17, boot: 99 };

/// Where a message goes: proxy 9, or 0 for a target's message or one to a target.
fn to_of(m: &Message) -> ProxyId {
    if m.target_group().is_some() {
        0
    } else {
        9
    }
}

fn all_messages(packet: &[u8]) -> std::vec::Vec<Message<'_>> {
    let reg = Registration {
        group: group(),
        target: ep(5, 5353),
        timestamp_ms: 1_700_000_000_000,
        nonce: 99,
        options: JoinOptions { weight: 3 },
    };
    let mut tried = Tried::new();
    tried.push(6).unwrap();
    let mut japs = Vec::new();
    japs.push(RankedJap { jap: 4, count: 10 }).unwrap();
    vec![
        Message::Join(reg),
        Message::Leave(reg),
        Message::Ack {
            group: group(),
            target: ep(5, 1),
            nonce: 1,
        },
        Message::Nack {
            group: group(),
            target: ep(5, 1),
            nonce: 1,
            reason: NackReason::Capacity,
        },
        Message::Ping {
            group: group(),
            target: ep(5, 1),
            nonce: 2,
        },
        Message::Pong {
            group: group(),
            target: ep(5, 1),
            nonce: 2,
        },
        Message::CountReport {
            group: group(),
            count: 12,
            coord: Coord::default(),
        },
        Message::ReportAck {
            group: group(),
            count: 12,
            band_pct: 25,
        },
        Message::Lookup {
            group: group(),
            client: ep(9, 4000),
            iap_coord: Coord::default(),
            tried: tried.clone(),
            packet: Some(packet),
        },
        Message::JapList {
            group: group(),
            japs,
            ttl_s: 3600,
        },
        Message::Forward {
            group: group(),
            client: ep(9, 4000),
            iap: 3,
            tried: tried.clone(),
            packet,
        },
        Message::Invalidate {
            group: group(),
            gone: true,
            bounced: Some(Bounced {
                client: ep(9, 4000),
                tried,
                packet,
            }),
        },
        Message::Heartbeat {
            cluster: 2,
            coord: Coord {
                x: 1.0,
                y: -2.0,
                h: 0.5,
                err: 0.3,
            },
        },
        Message::News {
            subject: 8,
            incarnation: Incarnation {
                boot: 17,
                refutation: 2,
            },
            up: false,
        },
        Message::RttProbe { nonce: 3 },
        Message::RttReply {
            nonce: 3,
            coord: Coord::default(),
        },
        Message::Rejoin {
            group: group(),
            target: ep(5, 1),
            nonce: 4,
        },
    ]
}

#[test]
fn every_message_round_trips_and_verifies() {
    let payload = [0xabu8; 100];
    let messages = all_messages(&payload);
    assert_eq!(messages.len(), KINDS);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(usize::from(m.kind()), i, "kinds are the variant order");
        let sender = if m.from_target() {
            Sender::Target
        } else {
            PROXY
        };
        let mut out = [0u8; MAX_MESSAGE];
        let n = encode(sender, to_of(m), 1, m, &K, &mut out).unwrap();
        assert_eq!(peek_kind(&out[..n]), Some(i as u8));
        assert!(KIND_NAMES[i].len() > 2);
        let mut out = [0u8; MAX_MESSAGE];
        let n = encode(sender, to_of(m), 1000 + i as u64, m, &K, &mut out).unwrap();
        let p = parse(&out[..n]).unwrap();
        assert_eq!((&p.message, p.sender, p.seq), (m, sender, 1000 + i as u64));
        p.verify(&K).unwrap();
        assert_eq!(p.verify(&Key([8; 32])), Err(WireError::BadTag));
    }
}

#[test]
fn tampering_is_detected() {
    let m = Message::CountReport {
        group: group(),
        count: 12,
        coord: Coord::default(),
    };
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode(PROXY, 9, 1, &m, &K, &mut out).unwrap();
    for i in 0..n {
        let mut b = out[..n].to_vec();
        b[i] ^= 0x01;
        if let Ok(p) = parse(&b) {
            assert_eq!(
                p.verify(&K),
                Err(WireError::BadTag),
                "flip at byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn framing_errors_are_named() {
    let m = Message::Heartbeat {
        cluster: 1,
        coord: Coord::default(),
    };
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode(PROXY, 9, 1, &m, &K, &mut out).unwrap();
    let good = out[..n].to_vec();
    assert_eq!(parse(&good[..10]).unwrap_err(), WireError::TooShort);
    let mut b = good.clone();
    b[0] = b'Q';
    assert_eq!(parse(&b).unwrap_err(), WireError::BadMagic);
    let mut b = good.clone();
    b[2] = 9;
    assert_eq!(parse(&b).unwrap_err(), WireError::UnsupportedVersion(9));
    let mut b = good.clone();
    b[3] = 11;
    assert_eq!(parse(&b).unwrap_err(), WireError::Malformed);
    assert_eq!(
        parse(&[0u8; MAX_MESSAGE + 1]).unwrap_err(),
        WireError::TooLong
    );
    let big = [0u8; MAX_CARRIED + 1];
    let m = Message::Forward {
        group: group(),
        client: ep(1, 1),
        iap: 1,
        tried: Tried::new(),
        packet: &big,
    };
    assert_eq!(
        encode(PROXY, 9, 1, &m, &K, &mut out).unwrap_err(),
        WireError::Oversized
    );
}

#[test]
fn keys_are_never_printed() {
    assert_eq!(format!("{:?}", Key([0x41; 32])), "Key(<redacted>)");
}

/// Frames `m` as `sender` without `encode`'s checks (which refuse it).
fn sealed(sender: Sender, m: &Message) -> std::vec::Vec<u8> {
    let body = postcard::to_allocvec(m).unwrap();
    let mut out = [0u8; MAX_MESSAGE];
    let n = seal(sender, to_of(m), 1, m.kind(), &body, &K, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn out_of_domain_fields_and_mismatched_senders_are_malformed() {
    let nan = Message::Heartbeat {
        cluster: 1,
        coord: Coord {
            x: f32::NAN,
            ..Coord::default()
        },
    };
    let inf = Message::CountReport {
        group: group(),
        count: 1,
        coord: Coord {
            h: f32::INFINITY,
            ..Coord::default()
        },
    };
    let mut reg = Registration {
        group: group(),
        target: ep(5, 5353),
        timestamp_ms: 1,
        nonce: 1,
        options: JoinOptions { weight: 0 },
    };
    let mut out = [0u8; MAX_MESSAGE];
    for (sender, m) in [
        (PROXY, nan),
        (PROXY, inf),
        (Sender::Target, Message::Join(reg)),
    ] {
        assert_eq!(
            encode(sender, to_of(&m), 1, &m, &K, &mut out).unwrap_err(),
            WireError::Malformed,
            "{m:?}"
        );
        assert_eq!(
            parse(&sealed(sender, &m)).unwrap_err(),
            WireError::Malformed
        );
    }
    reg.options.weight = JoinOptions::MAX_WEIGHT;
    assert!(parse(&sealed(Sender::Target, &Message::Join(reg))).is_ok());
    reg.options.weight = JoinOptions::MAX_WEIGHT + 1;
    assert!(parse(&sealed(Sender::Target, &Message::Join(reg))).is_err());
    // A join signed as a proxy, a heartbeat as a target: refused.
    reg.options.weight = 1;
    assert_eq!(
        parse(&sealed(PROXY, &Message::Join(reg))).unwrap_err(),
        WireError::Malformed
    );
    let hb = Message::Heartbeat {
        cluster: 1,
        coord: Coord::default(),
    };
    assert_eq!(
        parse(&sealed(Sender::Target, &hb)).unwrap_err(),
        WireError::Malformed
    );
}

/// A parsed message encodes again (same sender, receiver, sequence and
/// key) to bytes that parse to the same message and verify.
fn re_encodes_to_itself(p: &Parsed) -> Result<(), TestCaseError> {
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode(p.sender, p.to, p.seq, &p.message, &K, &mut out)
        .map_err(|e| TestCaseError::fail(format!("{e:?} re-encoding {:?}", p.message)))?;
    let again = parse(&out[..n]).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(&again.message, &p.message);
    prop_assert_eq!((again.sender, again.to, again.seq), (p.sender, p.to, p.seq));
    prop_assert!(again.verify(&K).is_ok());
    Ok(())
}

proptest! {
    /// Total, and random bytes never verify; what parses re-encodes to itself.
    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        if let Ok(p) = parse(&bytes) {
            prop_assert!(p.verify(&K).is_err(), "random bytes verified: {:?}", p.message);
            re_encodes_to_itself(&p)?;
        }
    }

    /// Any body sealed under the key: if it decodes, it verifies, and it
    /// re-encodes to itself (the decoder accepts nothing the encoder could
    /// not have written in meaning).
    #[test]
    fn sealed_bodies_that_parse_verify_and_round_trip(
        kind in 0u8..20,
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut out = [0u8; MAX_MESSAGE];
        let n = seal(Sender::Proxy { id: 3, boot: 1 }, 7, 9, kind, &body, &K, &mut out).unwrap();
        if let Ok(p) = parse(&out[..n]) {
            prop_assert!(p.verify(&K).is_ok());
            re_encodes_to_itself(&p)?;
        }
    }
}

#[test]
fn carried_packets_and_coordinates_are_bounded_in_every_message_that_has_them() {
    let carries = |m: &Message| {
        matches!(
            m,
            Message::Lookup { .. } | Message::Forward { .. } | Message::Invalidate { .. }
        )
    };
    let mut out = [0u8; MAX_MESSAGE];
    // Exactly MAX_CARRIED bytes: carried, whichever message carries them.
    let most = [0u8; MAX_CARRIED];
    let mut n = 0;
    for m in all_messages(&most).iter().filter(|m| carries(m)) {
        let len =
            encode(PROXY, to_of(m), 1, m, &K, &mut out).unwrap_or_else(|e| panic!("{e:?}: {m:?}"));
        assert_eq!(parse(&out[..len]).map(|p| p.message), Ok(m.clone()));
        n += 1;
    }
    assert_eq!(n, 3);
    // One byte more: refused by encode, and by parse when signed anyway.
    let over = [0u8; MAX_CARRIED + 1];
    for m in all_messages(&over).iter().filter(|m| carries(m)) {
        assert_eq!(
            encode(PROXY, to_of(m), 1, m, &K, &mut out),
            Err(WireError::Oversized),
            "{m:?}"
        );
        assert_eq!(
            parse(&sealed(PROXY, m)).unwrap_err(),
            WireError::Oversized,
            "{m:?}"
        );
    }
    // A lookup's IAP coordinate must be finite like every other coordinate.
    let lookup = Message::Lookup {
        group: group(),
        client: ep(9, 4000),
        iap_coord: Coord {
            y: f32::NAN,
            ..Coord::default()
        },
        tried: Tried::new(),
        packet: None,
    };
    assert_eq!(
        encode(PROXY, to_of(&lookup), 1, &lookup, &K, &mut out),
        Err(WireError::Malformed)
    );
    assert_eq!(
        parse(&sealed(PROXY, &lookup)).unwrap_err(),
        WireError::Malformed
    );
}

#[test]
fn length_limits_at_their_bounds() {
    let mut out = [0u8; 2 * MAX_MESSAGE];
    // An empty body fills exactly header and tag: read, then found malformed.
    let n = seal(PROXY, 9, 1, 11, &[], &K, &mut out).unwrap();
    assert_eq!(n, HEADER_LEN + TAG_LEN);
    assert_eq!(parse(&out[..n]).unwrap_err(), WireError::Malformed);
    assert_eq!(parse(&out[..n - 1]).unwrap_err(), WireError::TooShort);
    // A message of exactly MAX_MESSAGE bytes is read (its body is garbage).
    let body = [0xffu8; MAX_MESSAGE - HEADER_LEN - TAG_LEN];
    let n = seal(PROXY, 9, 1, 11, &body, &K, &mut out).unwrap();
    assert_eq!(n, MAX_MESSAGE);
    assert_eq!(parse(&out[..n]).unwrap_err(), WireError::Malformed);
    // seal needs exactly the room the message takes, and never more than
    // MAX_MESSAGE.
    let mut exact = [0u8; HEADER_LEN + 5 + TAG_LEN];
    assert_eq!(
        seal(PROXY, 9, 1, 11, &[1; 5], &K, &mut exact),
        Ok(HEADER_LEN + 5 + TAG_LEN)
    );
    assert_eq!(
        seal(PROXY, 9, 1, 11, &[1; 6], &K, &mut exact),
        Err(WireError::NoSpace)
    );
    assert_eq!(
        seal(PROXY, 9, 1, 11, &[1; MAX_MESSAGE], &K, &mut out),
        Err(WireError::NoSpace)
    );
    // encode into less than a header and tag: refused, not a panic.
    let hb = Message::Heartbeat {
        cluster: 1,
        coord: Coord::default(),
    };
    // A heartbeat needs a few dozen bytes and fits a buffer of its size.
    let n = encode(PROXY, 9, 1, &hb, &K, &mut out).unwrap();
    assert!(n < 100, "{n}");
    let mut exact = std::vec![0u8; n];
    assert_eq!(encode(PROXY, 9, 1, &hb, &K, &mut exact), Ok(n));
    for room in [0, 12, 20, HEADER_LEN + TAG_LEN - 1, HEADER_LEN + TAG_LEN] {
        assert_eq!(
            encode(PROXY, 9, 1, &hb, &K, &mut out[..room]),
            Err(WireError::NoSpace),
            "{room} bytes"
        );
    }
}

#[test]
fn peek_kind_needs_the_magic_the_version_and_a_whole_header() {
    let hb = Message::Heartbeat {
        cluster: 1,
        coord: Coord::default(),
    };
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode(PROXY, 9, 1, &hb, &K, &mut out).unwrap();
    let good = &out[..n];
    assert_eq!(peek_kind(good), Some(hb.kind()));
    assert_eq!(peek_kind(&good[..HEADER_LEN]), Some(hb.kind()));
    assert_eq!(peek_kind(&good[..HEADER_LEN - 1]), None);
    let mut b = good.to_vec();
    b[1] = b'Y';
    assert_eq!(peek_kind(&b), None, "magic");
    let mut b = good.to_vec();
    b[2] = VERSION + 1;
    assert_eq!(peek_kind(&b), None, "version");
}
