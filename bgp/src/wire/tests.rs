//! Wire tests: what we emit decodes with an independent decoder (zettabgp)
//! and with ours; every malformation gets its own NOTIFICATION code.

use super::update::{GRACEFUL_SHUTDOWN, MAX_PREPEND};
use super::*;
use proptest::prelude::*;
use zettabgp::prelude::*;

const ANYCAST: Prefix = Prefix {
    addr: [203, 0, 113, 0],
    len: 24,
};

fn zetta_params() -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        65001,
        90,
        BgpTransportMode::IPv4,
        std::net::Ipv4Addr::new(198, 18, 0, 1),
        vec![BgpCapability::SafiIPv4u, BgpCapability::CapASN32(65001)],
    );
    p.has_as32bit = true;
    // No add-path here: zettabgp's guess at path identifiers misreads plain NLRI.
    p.fuzzy_pathid = false;
    p
}

/// Decodes `msg` with zettabgp: (type, body length).
fn zetta_head(msg: &[u8]) -> (BgpMessageType, usize) {
    zetta_params()
        .decode_message_head(msg)
        .expect("zettabgp reads the header")
}

fn open_bytes(asn: u32, hold: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let n = OpenRepr {
        asn,
        hold_time: hold,
        bgp_id: [198, 18, 0, 2],
    }
    .emit(&mut b)
    .unwrap();
    b.truncate(n);
    b
}

fn update_bytes(withdrawn: &[Prefix], announced: &[Prefix], attrs: Attrs) -> Vec<u8> {
    let mut b = vec![0u8; MAX_LEN];
    let n = UpdateRepr {
        withdrawn,
        announced,
        local_as: 4_200_000_001,
        next_hop: [198, 18, 0, 2],
        attrs,
    }
    .emit(&mut b)
    .unwrap();
    b.truncate(n);
    b
}

/// zettabgp's AS path, flattened.
fn as_numbers(p: &BgpASpath) -> Vec<u32> {
    p.value
        .iter()
        .flat_map(|item| match item {
            BgpASitem::Seq(s) => s.value.iter().map(|a| a.value).collect::<Vec<_>>(),
            BgpASitem::Set(s) => s.value.iter().map(|a| a.value).collect(),
        })
        .collect()
}

#[test]
fn keepalive_is_a_bare_header() {
    let mut b = [0u8; 32];
    let n = emit_keepalive(&mut b).unwrap();
    assert_eq!(n, 19);
    assert_eq!(&b[..16], &MARKER);
    assert_eq!(&b[16..19], &[0, 19, kind::KEEPALIVE]);
    assert_eq!(Message::parse(&b[..n]), Ok(Message::Keepalive));
    assert_eq!(zetta_head(&b[..n]), (BgpMessageType::Keepalive, 0));
    assert_eq!(emit_keepalive(&mut b[..18]), None, "a short buffer refuses");
}

#[test]
fn open_decodes_with_zettabgp_and_ours() {
    let b = open_bytes(4_200_000_001, 90);
    let (ty, len) = zetta_head(&b);
    assert_eq!((ty, len), (BgpMessageType::Open, b.len() - 19));
    let mut z = BgpOpenMessage::new();
    z.decode_from(&zetta_params(), &b[19..]).unwrap();
    // zettabgp keeps the 2-octet field in `as_num` and the real AS in its capability.
    assert_eq!(z.as_num, u32::from(AS_TRANS));
    assert_eq!(z.hold_time, 90);
    assert_eq!(z.router_id, std::net::Ipv4Addr::new(198, 18, 0, 2));
    assert!(z.caps.contains(&BgpCapability::SafiIPv4u), "{:?}", z.caps);
    assert!(z.caps.contains(&BgpCapability::CapASN32(4_200_000_001)));
    // The 2-octet field holds AS_TRANS for a large AS.
    assert_eq!(u16::from_be_bytes([b[20], b[21]]), AS_TRANS);
    let Ok(Message::Open(o)) = Message::parse(&b) else {
        panic!("ours reads it")
    };
    assert_eq!(o.asn(), 4_200_000_001);
    assert_eq!((o.hold_time, o.bgp_id), (90, [198, 18, 0, 2]));
    assert!(o.ipv4_unicast() && o.mp_ipv4_unicast);
    // A small AS goes in the 2-octet field as itself.
    let Ok(Message::Open(o)) = Message::parse(&open_bytes(65010, 0)) else {
        panic!()
    };
    assert_eq!((o.my_as, o.asn(), o.hold_time), (65010, 65010, 0));
}

#[test]
fn announcement_decodes_with_zettabgp() {
    let attrs = Attrs {
        prepend: 2,
        med: Some(50),
        graceful_shutdown: true,
    };
    let other = Prefix {
        addr: [198, 51, 100, 0],
        len: 25,
    };
    let b = update_bytes(&[], &[ANYCAST, other], attrs);
    let (ty, len) = zetta_head(&b);
    assert_eq!(ty, BgpMessageType::Update);
    let mut z = BgpUpdateMessage::new();
    z.decode_from(&zetta_params(), &b[19..19 + len]).unwrap();
    let BgpAddrs::IPV4U(nets) = &z.updates else {
        panic!("IPv4 unicast NLRI: {:?}", z.updates)
    };
    let nets: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["203.0.113.0/24", "198.51.100.0/25"]);
    let mut seen = (false, false, false, false, false);
    for a in &z.attrs {
        match a {
            BgpAttrItem::Origin(o) => {
                seen.0 = true;
                assert_eq!(o.value, BgpAttrOrigin::Igp);
            }
            BgpAttrItem::ASPath(p) => {
                seen.1 = true;
                let path = as_numbers(p);
                assert_eq!(path, [4_200_000_001; 3], "ours plus two prepends");
            }
            BgpAttrItem::NextHop(n) => {
                seen.2 = true;
                assert_eq!(n.value.to_string(), "198.18.0.2");
            }
            BgpAttrItem::MED(m) => {
                seen.3 = true;
                assert_eq!(m.value, 50);
            }
            BgpAttrItem::CommunityList(c) => {
                seen.4 = true;
                let v: Vec<u32> = c.value.iter().map(|c| c.value).collect();
                assert_eq!(v, [GRACEFUL_SHUTDOWN]);
            }
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    assert_eq!(seen, (true, true, true, true, true));
    let Ok(Message::Update(u)) = Message::parse(&b) else {
        panic!("ours reads it")
    };
    assert_eq!(u.announced().collect::<Vec<_>>(), [ANYCAST, other]);
    assert_eq!(u.withdrawn().count(), 0);
}

#[test]
fn plain_announcement_has_no_med_or_community() {
    let b = update_bytes(&[], &[ANYCAST], Attrs::default());
    let mut z = BgpUpdateMessage::new();
    z.decode_from(&zetta_params(), &b[19..]).unwrap();
    assert_eq!(z.attrs.len(), 3, "ORIGIN, AS_PATH, NEXT_HOP: {:?}", z.attrs);
}

#[test]
fn withdrawal_decodes_with_zettabgp() {
    let b = update_bytes(&[ANYCAST], &[], Attrs::default());
    let mut z = BgpUpdateMessage::new();
    z.decode_from(&zetta_params(), &b[19..]).unwrap();
    let BgpAddrs::IPV4U(nets) = &z.withdraws else {
        panic!("{:?}", z.withdraws)
    };
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].to_string(), "203.0.113.0/24");
    assert!(z.attrs.is_empty(), "a withdrawal carries no attributes");
    assert!(
        matches!(&z.updates, BgpAddrs::IPV4U(v) if v.is_empty()),
        "{:?}",
        z.updates
    );
}

#[test]
fn notification_decodes_with_zettabgp() {
    let mut b = [0u8; 64];
    let e = Error::with_data(code::OPEN, code::BAD_PEER_AS, &[0xfd, 0xe9]);
    let n = emit_notification(&mut b, &e).unwrap();
    assert_eq!(n, 19 + 2 + 2);
    let (ty, len) = zetta_head(&b[..n]);
    assert_eq!(ty, BgpMessageType::Notification);
    let mut z = BgpNotificationMessage::new();
    z.decode_from(&zetta_params(), &b[19..19 + len]).unwrap();
    assert_eq!((z.error_code, z.error_subcode), (2, 2));
    assert_eq!(
        Message::parse(&b[..n]),
        Ok(Message::Notification(Notification {
            code: 2,
            subcode: 2,
            data: &[0xfd, 0xe9]
        }))
    );
}

/// A message with this type and body, its length field right.
fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut b = MARKER.to_vec();
    b.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    b.push(ty);
    b.extend_from_slice(body);
    b
}

/// An OPEN body: version, AS, hold, id, and these optional parameters.
fn open_body(version: u8, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&65002u16.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

/// An UPDATE body from its three fields.
fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

const GOOD_ATTRS: [u8; 18] = [
    0x40, 1, 1, 0, // ORIGIN IGP
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea, // AS_PATH 65002
    0x40, 3, 4, 198, 18, // NEXT_HOP (two more bytes follow)
];

fn good_attrs() -> Vec<u8> {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[0, 1]);
    a
}

/// A malformed message: name, bytes, (code, subcode), data.
type Case<'a> = (&'a str, Vec<u8>, (u8, u8), &'a [u8]);

#[test]
fn every_malformation_has_its_notification() {
    let caps = [2u8, 6, 65, 4, 0, 0, 0xfd, 0xea];
    let mut bad_marker = msg(kind::KEEPALIVE, &[]);
    bad_marker[3] = 0;
    let mut short = msg(kind::KEEPALIVE, &[]);
    short[17] = 18;
    let mut long = msg(kind::KEEPALIVE, &[]);
    long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    let nlri = [24, 203, 0, 113];
    let with = |extra: &[u8]| {
        let mut a = good_attrs();
        a.extend_from_slice(extra);
        a
    };
    let cases: Vec<Case> = vec![
        ("marker", bad_marker, (1, 1), &[]),
        ("length 18", short, (1, 2), &[0, 18]),
        ("length 4097", long, (1, 2), &[0x10, 0x01]),
        ("type 5", msg(5, &[1, 1, 0, 0]), (1, 3), &[5]),
        ("type 0", msg(0, &[]), (1, 3), &[0]),
        ("KEEPALIVE with a body", msg(4, &[0]), (1, 2), &[0, 20]),
        ("short OPEN", msg(1, &[4, 0, 1, 0, 90]), (1, 2), &[0, 24]),
        ("short NOTIFICATION", msg(3, &[6]), (1, 2), &[0, 20]),
        ("short UPDATE", msg(2, &[0, 0, 0]), (1, 2), &[0, 22]),
        (
            "version 3",
            msg(1, &open_body(3, 90, [1, 1, 1, 1], &caps)),
            (2, 1),
            &[0, 4],
        ),
        (
            "hold 1",
            msg(1, &open_body(4, 1, [1, 1, 1, 1], &caps)),
            (2, 6),
            &[],
        ),
        (
            "hold 2",
            msg(1, &open_body(4, 2, [1, 1, 1, 1], &caps)),
            (2, 6),
            &[],
        ),
        (
            "identifier 0",
            msg(1, &open_body(4, 90, [0; 4], &caps)),
            (2, 3),
            &[],
        ),
        (
            "parameter type 1",
            msg(1, &open_body(4, 90, [1, 1, 1, 1], &[1, 0])),
            (2, 4),
            &[1],
        ),
        (
            "truncated capability",
            msg(1, &open_body(4, 90, [1, 1, 1, 1], &[2, 3, 65, 4, 0])),
            (2, 0),
            &[],
        ),
        (
            "AS4 capability of 2 bytes",
            msg(1, &open_body(4, 90, [1, 1, 1, 1], &[2, 4, 65, 2, 0, 1])),
            (2, 0),
            &[],
        ),
        (
            "parameters length past the end",
            {
                let mut b = open_body(4, 90, [1, 1, 1, 1], &caps);
                b[9] = 9;
                msg(1, &b)
            },
            (2, 0),
            &[],
        ),
        (
            "withdrawn length past the end",
            msg(2, &[0, 9, 24, 203, 0, 113, 0, 0]),
            (3, 1),
            &[],
        ),
        (
            "attributes length past the end",
            msg(2, &[0, 0, 0, 30, 0x40, 1, 1, 0]),
            (3, 1),
            &[],
        ),
        (
            "withdrawn /33",
            msg(2, &update_body(&[33, 1, 2, 3, 4, 5], &[], &[])),
            (3, 10),
            &[],
        ),
        (
            "NLRI missing a byte",
            msg(2, &update_body(&[], &good_attrs(), &[24, 203, 0])),
            (3, 10),
            &[],
        ),
        (
            "NLRI without NEXT_HOP",
            msg(2, &update_body(&[], &good_attrs()[..13], &nlri)),
            (3, 3),
            &[3],
        ),
        (
            "ORIGIN 3",
            msg(
                2,
                &update_body(
                    &[],
                    &[&[0x40, 1, 1, 3][..], &good_attrs()[4..]].concat(),
                    &nlri,
                ),
            ),
            (3, 6),
            &[0x40, 1, 1, 3],
        ),
        (
            "ORIGIN flagged optional",
            msg(
                2,
                &update_body(
                    &[],
                    &[&[0xc0, 1, 1, 0][..], &good_attrs()[4..]].concat(),
                    &nlri,
                ),
            ),
            (3, 4),
            &[0xc0, 1, 1, 0],
        ),
        (
            "NEXT_HOP of 5 bytes",
            msg(2, &update_body(&[], &[0x40, 3, 5, 1, 2, 3, 4, 5], &[])),
            (3, 5),
            &[0x40, 3, 5, 1, 2, 3, 4, 5],
        ),
        (
            "attribute value past the end",
            msg(2, &update_body(&[], &[0x80, 4, 4, 0, 0], &[])),
            (3, 5),
            &[],
        ),
        (
            "AS_PATH segment type 0",
            msg(
                2,
                &update_body(&[], &[0x40, 2, 6, 0, 1, 0, 0, 0xfd, 0xea], &[]),
            ),
            (3, 11),
            &[],
        ),
        (
            "AS_PATH count past the end",
            msg(
                2,
                &update_body(&[], &[0x40, 2, 6, 2, 2, 0, 0, 0xfd, 0xea], &[]),
            ),
            (3, 11),
            &[],
        ),
        (
            "MED twice",
            msg(
                2,
                &update_body(
                    &[],
                    &with(&[0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2]),
                    &nlri,
                ),
            ),
            (3, 1),
            &[],
        ),
    ];
    for (name, bytes, (c, s), data) in cases {
        let e = match frame(&bytes) {
            Err(e) => e,
            Ok(_) => Message::parse(&bytes).expect_err(name),
        };
        assert_eq!((e.code, e.subcode), (c, s), "{name}: {e:?}");
        assert_eq!(e.data(), data, "{name}");
    }
    // The good attributes themselves pass, with their NLRI.
    let ok = msg(2, &update_body(&[], &good_attrs(), &nlri));
    let Ok(Message::Update(u)) = Message::parse(&ok) else {
        panic!("{:?}", Message::parse(&ok))
    };
    assert_eq!(u.announced().collect::<Vec<_>>(), [ANYCAST]);
}

#[test]
fn framing_waits_for_whole_messages() {
    let b = update_bytes(&[], &[ANYCAST], Attrs::default());
    for cut in 0..b.len() {
        assert_eq!(frame(&b[..cut]), Ok(None), "cut at {cut}");
    }
    let mut two = b.clone();
    two.extend_from_slice(&b);
    assert_eq!(frame(&two), Ok(Some(b.len())));
    // parse wants exactly one message.
    assert!(Message::parse(&two).is_err());
    assert!(Message::parse(&b[..b.len() - 1]).is_err());
}

fn prefix() -> impl Strategy<Value = Prefix> {
    (any::<[u8; 4]>(), 0u8..=32).prop_map(|(mut addr, len)| {
        // Host bits are not sent: clear them so the round trip is exact.
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        addr = (u32::from_be_bytes(addr) & mask).to_be_bytes();
        Prefix { addr, len }
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame(&bytes);
        let _ = Message::parse(&bytes);
        // With a valid header in front, the body parsers see them.
        for ty in 1..=4u8 {
            let m = msg(ty, &bytes);
            let _ = Message::parse(&m);
        }
    }

    #[test]
    fn updates_round_trip(
        withdrawn in proptest::collection::vec(prefix(), 0..8),
        announced in proptest::collection::vec(prefix(), 0..8),
        prepend in 0u8..40,
        med in proptest::option::of(any::<u32>()),
        graceful_shutdown in any::<bool>(),
    ) {
        let attrs = Attrs { prepend, med, graceful_shutdown };
        let b = update_bytes(&withdrawn, &announced, attrs);
        let Ok(Message::Update(u)) = Message::parse(&b) else {
            panic!("{:?}", Message::parse(&b))
        };
        prop_assert_eq!(u.withdrawn().collect::<Vec<_>>(), withdrawn);
        prop_assert_eq!(u.announced().collect::<Vec<_>>(), announced.clone());
        let mut z = BgpUpdateMessage::new();
        prop_assert!(z.decode_from(&zetta_params(), &b[19..]).is_ok());
        if !announced.is_empty() {
            let path = z.attrs.iter().find_map(|a| match a {
                BgpAttrItem::ASPath(p) => Some(as_numbers(p).len()),
                _ => None,
            });
            prop_assert_eq!(path, Some(1 + usize::from(prepend.min(MAX_PREPEND))));
        }
    }
}

#[test]
fn every_message_refuses_a_short_buffer_without_panicking() {
    let open = OpenRepr {
        asn: 65001,
        hold_time: 9,
        bgp_id: [1, 2, 3, 4],
    };
    let update = UpdateRepr {
        withdrawn: &[ANYCAST],
        announced: &[ANYCAST],
        local_as: 65001,
        next_hop: [1, 2, 3, 4],
        attrs: Attrs {
            prepend: 3,
            med: Some(1),
            graceful_shutdown: true,
        },
    };
    let e = Error::with_data(2, 2, &[1, 2]);
    let mut big = [0u8; 256];
    let full = (
        open.emit(&mut big).unwrap(),
        update.emit(&mut big).unwrap(),
        emit_notification(&mut big, &e).unwrap(),
    );
    for len in 0..256 {
        let mut b = vec![0u8; len];
        assert_eq!(open.emit(&mut b).is_some(), len >= full.0, "OPEN in {len}");
        assert_eq!(
            update.emit(&mut b).is_some(),
            len >= full.1,
            "UPDATE in {len}"
        );
        assert_eq!(
            emit_notification(&mut b, &e).is_some(),
            len >= full.2,
            "NOTIFICATION in {len}"
        );
    }
}

#[test]
fn parse_takes_exactly_one_message_and_names_its_kind() {
    let ka = msg(kind::KEEPALIVE, &[]);
    assert_eq!(Message::parse(&ka).map(|m| m.kind()), Ok(kind::KEEPALIVE));
    assert!(
        Message::parse(&[ka.clone(), ka].concat()).is_err(),
        "two messages"
    );
    let upd = update_bytes(&[ANYCAST], &[], Attrs::default());
    assert_eq!(Message::parse(&upd).map(|m| m.kind()), Ok(kind::UPDATE));
    let open = open_bytes(65001, 9);
    assert_eq!(Message::parse(&open).map(|m| m.kind()), Ok(kind::OPEN));
    let mut b = [0u8; 32];
    let n = emit_notification(&mut b, &Error::new(6, 2)).unwrap();
    assert_eq!(
        Message::parse(&b[..n]).map(|m| m.kind()),
        Ok(kind::NOTIFICATION)
    );
}

#[test]
fn every_known_code_has_its_own_description() {
    use std::collections::HashSet;
    let known = [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (2, 6),
        (2, 7),
        (3, 1),
        (3, 3),
        (3, 4),
        (3, 5),
        (3, 6),
        (3, 10),
        (3, 11),
        (6, 2),
        (6, 8),
    ];
    let names = [
        "connection not synchronized",
        "bad message length",
        "bad message type",
        "unsupported version",
        "bad peer AS",
        "bad BGP identifier",
        "unsupported optional parameter",
        "unacceptable hold time",
        "unsupported capability",
        "malformed attribute list",
        "missing well-known attribute",
        "attribute flags error",
        "attribute length error",
        "invalid ORIGIN",
        "invalid network field",
        "malformed AS_PATH",
        "administrative shutdown",
        "out of resources",
    ];
    let mut seen = HashSet::new();
    for ((c, s), name) in known.into_iter().zip(names) {
        let text = Error::new(c, s).to_string();
        assert_eq!(text, format!("{c}/{s} ({name})"));
        assert!(seen.insert(text.clone()), "{text} twice");
    }
    // Families fall back to their code's name.
    for (c, s, want) in [
        (1, 9, "message header error"),
        (2, 9, "OPEN message error"),
        (3, 99, "UPDATE message error"),
        (4, 0, "hold timer expired"),
        (5, 3, "finite state machine error"),
        (6, 99, "cease"),
        (9, 9, "unknown error code"),
    ] {
        assert!(Error::new(c, s).to_string().contains(want), "{c}/{s}");
    }
    assert_eq!(
        format!("{:?}", Error::with_data(1, 2, &[0, 18])),
        "Error(1/2 [00, 12])"
    );
}

#[test]
fn ipv4_unicast_is_what_the_capabilities_say() {
    let as4 = [65u8, 4, 0, 0, 0xfd, 0xea];
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("no MP capability: IPv4 unicast implied", as4.to_vec(), true),
        (
            "MP IPv4 unicast",
            [&as4[..], &[1, 4, 0, 1, 0, 1]].concat(),
            true,
        ),
        (
            "MP IPv6 unicast only",
            [&as4[..], &[1, 4, 0, 2, 0, 1]].concat(),
            false,
        ),
        (
            "MP IPv4 multicast only",
            [&as4[..], &[1, 4, 0, 1, 0, 2]].concat(),
            false,
        ),
    ];
    for (name, caps, want) in cases {
        let mut params = vec![2, caps.len() as u8];
        params.extend_from_slice(&caps);
        let m = msg(kind::OPEN, &open_body(4, 90, [1, 1, 1, 1], &params));
        let Ok(Message::Open(o)) = Message::parse(&m) else {
            panic!("{name}: {:?}", Message::parse(&m))
        };
        assert_eq!(o.ipv4_unicast(), want, "{name}");
        assert_eq!(o.as4, Some(65002), "{name}");
    }
}

#[test]
fn every_origin_value_up_to_incomplete_is_accepted() {
    for origin in 0..=2u8 {
        let attrs = [&[0x40, 1, 1, origin][..], &good_attrs()[4..]].concat();
        let m = msg(2, &update_body(&[], &attrs, &[24, 203, 0, 113]));
        assert!(Message::parse(&m).is_ok(), "ORIGIN {origin}");
    }
}

#[test]
fn the_largest_message_is_4096_bytes_and_no_more() {
    // An announcement of k /32s with p prepends is base + 5k + 4p bytes.
    let len = |k: usize, prepend: u8| {
        let prefixes = vec![
            Prefix {
                addr: [203, 0, 113, 1],
                len: 32
            };
            k
        ];
        let mut b = vec![0u8; 8192];
        UpdateRepr {
            withdrawn: &[],
            announced: &prefixes,
            local_as: 65001,
            next_hop: [1, 2, 3, 4],
            attrs: Attrs {
                prepend,
                med: None,
                graceful_shutdown: false,
            },
        }
        .emit(&mut b)
    };
    // (With no prefix there are no attributes either: measure from one.)
    let base = len(1, 0).unwrap() - 5;
    // 4096 and 4097 bytes: choose k and p so that base + 5k + 4p hits each.
    let fit = |target: usize| {
        (0..=32u8)
            .find(|&p| (target - base - 4 * usize::from(p)).is_multiple_of(5))
            .map(|p| ((target - base - 4 * usize::from(p)) / 5, p))
            .unwrap()
    };
    let (k, p) = fit(4096);
    assert_eq!(len(k, p), Some(4096));
    let (k, p) = fit(4097);
    assert_eq!(len(k, p), None, "4097 bytes is too long");
}

#[test]
fn the_graceful_shutdown_community_is_optional_transitive() {
    let b = update_bytes(
        &[],
        &[ANYCAST],
        Attrs {
            prepend: 0,
            med: None,
            graceful_shutdown: true,
        },
    );
    let at = b
        .windows(7)
        .position(|w| w[1] == 8 && w[2] == 4 && w[3..] == GRACEFUL_SHUTDOWN.to_be_bytes())
        .expect("a COMMUNITIES attribute");
    assert_eq!(b[at], 0xc0, "flags: optional, transitive");
}
