use super::*;
use pias::addr::{Ipv4, Transport};

const GROUP: Group = Group {
    ip: Ipv4([203, 0, 113, 10]),
    port: 53,
    transport: Transport::Udp,
};
const SERVICE: Endpoint = Endpoint {
    ip: Ipv4([198, 18, 1, 20]),
    port: 53,
};
/// Where the JAP's messages come from: the group address, registration port.
const JAP_SRC: Endpoint = Endpoint {
    ip: Ipv4([203, 0, 113, 10]),
    port: 7000,
};
const T0: u64 = 1_700_000_000_000;

fn key() -> Key {
    Key([5; 32])
}

fn agent() -> Agent {
    Agent::new(AgentConfig::new(GROUP, SERVICE, key()), 42)
}

/// A proxy's side: signs what a JAP sends a target, numbering like its outbox.
struct Jap {
    id: ProxyId,
    boot: u64,
    seq: u64,
    key: Key,
}

impl Jap {
    fn new(id: ProxyId) -> Self {
        Jap {
            id,
            boot: 1_000,
            seq: 0,
            key: key(),
        }
    }

    fn sign(&mut self, msg: &Message) -> Vec<u8> {
        self.seq += 1;
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        let sender = Sender::Proxy {
            id: self.id,
            boot: self.boot,
        };
        let n = wire::encode(sender, 0, self.seq, msg, &self.key, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn ack(&mut self, nonce: u64) -> Vec<u8> {
        self.sign(&Message::Ack {
            group: GROUP,
            target: SERVICE,
            nonce,
        })
    }

    fn nack(&mut self, nonce: u64, reason: NackReason) -> Vec<u8> {
        self.sign(&Message::Nack {
            group: GROUP,
            target: SERVICE,
            nonce,
            reason,
        })
    }

    fn ping(&mut self, nonce: u64) -> Vec<u8> {
        self.sign(&Message::Ping {
            group: GROUP,
            target: SERVICE,
            nonce,
        })
    }

    fn rejoin(&mut self) -> Vec<u8> {
        self.sign(&Message::Rejoin {
            group: GROUP,
            target: SERVICE,
            nonce: 9,
        })
    }
}

/// Every datagram queued, parsed and verified as the JAP would: (to, message).
fn sent(a: &mut Agent) -> Vec<(Endpoint, Message<'static>)> {
    let mut v = Vec::new();
    while let Some(t) = a.poll_transmit() {
        let bytes: &'static [u8] = Box::leak(t.bytes.into_boxed_slice());
        let p = wire::parse(bytes).expect("the agent's datagrams parse");
        p.verify(&key()).expect("and verify with the group key");
        assert_eq!(p.sender, Sender::Target);
        v.push((t.to, p.message));
    }
    v
}

fn events(a: &mut Agent) -> Vec<Event> {
    std::iter::from_fn(|| a.poll_event()).collect()
}

/// The one registration sent: its kind and record.
fn one_registration(a: &mut Agent) -> (Request, Registration) {
    let s = sent(a);
    assert_eq!(s.len(), 1, "one datagram: {s:?}");
    let (to, msg) = &s[0];
    assert_eq!(
        *to, JAP_SRC,
        "registrations go to the group's registration port"
    );
    match msg {
        Message::Join(r) => (Request::Join, *r),
        Message::Leave(r) => (Request::Leave, *r),
        m => panic!("not a registration: {m:?}"),
    }
}

/// An agent joined at proxy 3 at T0.
fn joined(jap: &mut Jap) -> Agent {
    let mut a = agent();
    a.set_healthy(T0, true);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Join);
    a.handle_datagram(T0 + 5, JAP_SRC, &jap.ack(r.nonce));
    assert!(a.is_joined());
    assert_eq!(events(&mut a), vec![Event::Joined { proxy: jap.id }]);
    a
}

#[test]
fn join_then_ack_is_joined() {
    let mut a = agent();
    assert_eq!(a.poll_timeout(), None, "no verdict yet: nothing to do");
    assert!(sent(&mut a).is_empty());
    a.set_healthy(T0, true);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Join);
    assert_eq!(r.group, GROUP);
    assert_eq!(r.target, SERVICE);
    assert_eq!(r.timestamp_ms, T0);
    assert_eq!(r.options.weight, 1);
    assert!(!a.is_joined());
    // An ack of some other nonce is not ours.
    let mut jap = Jap::new(3);
    a.handle_datagram(T0 + 1, JAP_SRC, &jap.ack(r.nonce ^ 1));
    assert!(!a.is_joined());
    assert_eq!(a.ignored().unexpected, 1);
    a.handle_datagram(T0 + 2, JAP_SRC, &jap.ack(r.nonce));
    assert!(a.is_joined());
    assert_eq!(events(&mut a), vec![Event::Joined { proxy: 3 }]);
    assert_eq!(a.poll_timeout(), Some(T0 + 2 + 7_000));
}

#[test]
fn unanswered_join_retries_with_backoff_and_fresh_nonces() {
    let mut a = agent();
    a.set_healthy(T0, true);
    let (_, first) = one_registration(&mut a);
    let mut now = T0;
    let mut nonces = vec![first.nonce];
    let mut waits = Vec::new();
    for _ in 0..7 {
        let next = a.poll_timeout().unwrap();
        waits.push(next - now);
        a.handle_timeout(next - 1);
        assert!(sent(&mut a).is_empty(), "nothing before the backoff ends");
        now = next;
        a.handle_timeout(now);
        let (req, r) = one_registration(&mut a);
        assert_eq!(req, Request::Join);
        assert_eq!(r.timestamp_ms, now, "each try is stamped afresh");
        nonces.push(r.nonce);
    }
    assert_eq!(
        waits,
        vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
    );
    let mut unique = nonces.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), nonces.len(), "a repeated nonce is a replay");
    // Said once, at the first retry.
    let ev = events(&mut a);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(
        ev[0],
        Event::NoAnswer {
            request: Request::Join,
            waited_ms: 1_000,
            ..
        }
    ));
    assert!(ev[0].to_string().contains("group key is wrong"));
    // An ack of an earlier try still counts.
    let mut jap = Jap::new(3);
    a.handle_datagram(now + 1, JAP_SRC, &jap.ack(nonces[nonces.len() - 3]));
    assert!(a.is_joined());
}

#[test]
fn nack_is_explained_and_the_join_retried() {
    let mut a = agent();
    a.set_healthy(T0, true);
    let (_, r) = one_registration(&mut a);
    let mut jap = Jap::new(3);
    a.handle_datagram(T0 + 3, JAP_SRC, &jap.nack(r.nonce, NackReason::Capacity));
    assert!(!a.is_joined());
    let ev = events(&mut a);
    assert_eq!(
        ev,
        vec![Event::Refused {
            request: Request::Join,
            reason: NackReason::Capacity
        }]
    );
    let line = ev[0].to_string();
    assert!(
        line.starts_with("join refused by the proxy: Capacity: its tables are full"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    // The retry keeps its backoff; a nack does not hasten it.
    assert_eq!(a.poll_timeout(), Some(T0 + 1_000));
    a.handle_timeout(T0 + 1_000);
    assert_eq!(one_registration(&mut a).0, Request::Join);
    // Every reason has its own explanation.
    let all = [
        NackReason::Capacity,
        NackReason::Auth,
        NackReason::UnknownGroup,
        NackReason::BadRequest,
        NackReason::NotResponsible,
    ];
    let texts: std::collections::HashSet<_> =
        all.iter().map(|&r| explain(Request::Join, r)).collect();
    assert_eq!(texts.len(), all.len());
}

#[test]
fn pings_answered_only_while_healthy() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    let pinger = Endpoint {
        ip: Ipv4([203, 0, 113, 10]),
        port: 7000,
    };
    a.handle_datagram(T0 + 2_000, pinger, &jap.ping(77));
    let s = sent(&mut a);
    assert_eq!(
        s,
        vec![(
            pinger,
            Message::Pong {
                group: GROUP,
                target: SERVICE,
                nonce: 77
            }
        )]
    );
    // Unhealthy: a leave, and pings go unanswered.
    a.set_healthy(T0 + 2_500, false);
    assert_eq!(events(&mut a), vec![Event::Unhealthy]);
    assert_eq!(one_registration(&mut a).0, Request::Leave);
    a.handle_datagram(T0 + 4_000, pinger, &jap.ping(78));
    assert!(sent(&mut a).is_empty(), "no pong while unhealthy");
    assert!(!a.is_joined());
}

#[test]
fn health_fall_leaves_and_rise_joins_again() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    a.set_healthy(T0 + 100, false);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Leave);
    a.handle_datagram(T0 + 101, JAP_SRC, &jap.ack(r.nonce));
    assert_eq!(events(&mut a), vec![Event::Unhealthy, Event::Left]);
    assert_eq!(a.poll_timeout(), None, "idle while unhealthy");
    assert!(!a.is_done(), "unhealthy is not shut down");
    a.set_healthy(T0 + 5_000, true);
    assert_eq!(events(&mut a), vec![Event::Healthy]);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Join);
    a.handle_datagram(T0 + 5_001, JAP_SRC, &jap.ack(r.nonce));
    assert!(a.is_joined());
}

#[test]
fn first_verdict_unhealthy_waits_without_joining() {
    let mut a = agent();
    a.set_healthy(T0, false);
    assert_eq!(events(&mut a), vec![Event::Waiting]);
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.poll_timeout(), None);
    a.set_healthy(T0 + 1, true);
    assert_eq!(one_registration(&mut a).0, Request::Join);
}

#[test]
fn silence_means_rejoin() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    // Pings keep it joined.
    a.handle_datagram(T0 + 6_000, JAP_SRC, &jap.ping(1));
    sent(&mut a);
    a.handle_timeout(T0 + 12_000);
    assert!(a.is_joined());
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.poll_timeout(), Some(T0 + 13_000));
    // Then nothing for the ping timeout: join again, at once.
    a.handle_timeout(T0 + 13_000);
    assert_eq!(
        events(&mut a),
        vec![Event::Silent {
            proxy: 3,
            for_ms: 7_000
        }]
    );
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Join);
    assert!(!a.is_joined());
    // Anycast took it to proxy 8, which acks.
    let mut next = Jap::new(8);
    a.handle_datagram(T0 + 13_010, JAP_SRC, &next.ack(r.nonce));
    assert_eq!(events(&mut a), vec![Event::Joined { proxy: 8 }]);
}

#[test]
fn rejoin_message_joins_at_once() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    let mut other = Jap::new(5);
    a.handle_datagram(T0 + 3_000, JAP_SRC, &other.rejoin());
    assert_eq!(events(&mut a), vec![Event::RejoinAsked { proxy: 5 }]);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Join);
    assert_eq!(r.timestamp_ms, T0 + 3_000);
    // A second Rejoin right away does not restart the join.
    a.handle_datagram(T0 + 3_001, JAP_SRC, &other.rejoin());
    assert!(sent(&mut a).is_empty());
}

#[test]
fn forged_and_foreign_messages_are_ignored() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    // Signed with another key: no pong.
    let mut forger = Jap::new(3);
    forger.key = Key([6; 32]);
    forger.seq = 100;
    a.handle_datagram(T0 + 1_000, JAP_SRC, &forger.ping(1));
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.ignored().forged, 1);
    // Nor does a forged ping keep it joined past the timeout.
    a.handle_timeout(T0 + 7_005);
    assert!(!a.is_joined());
    assert_eq!(one_registration(&mut a).0, Request::Join);
    // Another group's or target's messages, garbage, and a target's message.
    let other = Message::Ping {
        group: Group { port: 54, ..GROUP },
        target: SERVICE,
        nonce: 1,
    };
    a.handle_datagram(T0 + 7_010, JAP_SRC, &jap.sign(&other));
    let other = Message::Ping {
        group: GROUP,
        target: Endpoint {
            port: 54,
            ..SERVICE
        },
        nonce: 1,
    };
    a.handle_datagram(T0 + 7_011, JAP_SRC, &jap.sign(&other));
    a.handle_datagram(
        T0 + 7_012,
        JAP_SRC,
        b"PX\x02garbage that is long enough!!!!!!!!!!!",
    );
    a.handle_datagram(T0 + 7_013, JAP_SRC, &[]);
    let mut buf = vec![0u8; 200];
    let pong = Message::Pong {
        group: GROUP,
        target: SERVICE,
        nonce: 1,
    };
    let n = wire::encode(Sender::Target, 0, 1, &pong, &key(), &mut buf).unwrap();
    a.handle_datagram(T0 + 7_014, JAP_SRC, &buf[..n]);
    assert_eq!(a.ignored().foreign, 5);
    assert!(sent(&mut a).is_empty());
}

#[test]
fn replayed_messages_are_ignored() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    let ping = jap.ping(1);
    a.handle_datagram(T0 + 2_000, JAP_SRC, &ping);
    assert_eq!(sent(&mut a).len(), 1);
    // The same ping again (a replay) neither gets a pong nor counts as life.
    a.handle_datagram(T0 + 6_000, JAP_SRC, &ping);
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.ignored().replayed, 1);
    a.handle_timeout(T0 + 9_000);
    assert!(!a.is_joined(), "silent since T0 + 2 s");
    // A restarted proxy (later boot) starts afresh even with low numbers.
    let mut restarted = Jap::new(3);
    restarted.boot = 2_000;
    let (_, r) = one_registration(&mut a);
    a.handle_datagram(T0 + 9_001, JAP_SRC, &restarted.ack(r.nonce));
    assert!(a.is_joined());
    // And the old life can no longer speak.
    a.handle_datagram(T0 + 9_002, JAP_SRC, &jap.ping(2));
    assert!(sent(&mut a).is_empty());
}

#[test]
fn shutdown_leaves_then_is_done() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    a.shutdown(T0 + 1_000);
    let (req, r) = one_registration(&mut a);
    assert_eq!(req, Request::Leave);
    assert!(!a.is_done());
    // Retried at the shutdown pace.
    assert_eq!(a.poll_timeout(), Some(T0 + 1_300));
    a.handle_timeout(T0 + 1_300);
    let (req, r2) = one_registration(&mut a);
    assert_eq!(req, Request::Leave);
    // No pongs while stopping, and health changes no longer matter.
    a.handle_datagram(T0 + 1_301, JAP_SRC, &jap.ping(1));
    a.set_healthy(T0 + 1_302, false);
    assert!(sent(&mut a).is_empty());
    a.handle_datagram(T0 + 1_310, JAP_SRC, &jap.ack(r.nonce));
    assert!(a.is_done());
    assert_eq!(events(&mut a).last(), Some(&Event::Left));
    assert_eq!(a.poll_timeout(), None);
    let _ = r2;
}

#[test]
fn shutdown_before_joining_is_done_at_once_and_a_lost_leave_gives_up() {
    let mut a = agent();
    a.shutdown(T0);
    assert!(a.is_done());
    assert!(sent(&mut a).is_empty());

    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    a.set_healthy(T0 + 10, false);
    let mut tries = 0;
    while let Some(t) = a.poll_timeout() {
        tries += sent(&mut a).len();
        a.handle_timeout(t);
    }
    assert_eq!(tries, 4, "leave_tries");
    assert!(events(&mut a).contains(&Event::LeaveUnanswered));
    assert!(!a.is_done(), "unhealthy, not stopped");
}

#[test]
fn leave_nacked_not_responsible_is_left() {
    let mut jap = Jap::new(3);
    let mut a = joined(&mut jap);
    a.shutdown(T0 + 50);
    let (_, r) = one_registration(&mut a);
    a.handle_datagram(
        T0 + 51,
        JAP_SRC,
        &jap.nack(r.nonce, NackReason::NotResponsible),
    );
    assert!(a.is_done());
    let ev = events(&mut a);
    assert!(ev[0].to_string().contains("already gone"), "{ev:?}");
}

#[test]
fn weight_goes_in_the_join() {
    let mut cfg = AgentConfig::new(GROUP, SERVICE, key());
    cfg.weight = 40;
    cfg.registration_port = 7100;
    let mut a = Agent::new(cfg, 1);
    a.set_healthy(T0, true);
    let s = sent(&mut a);
    assert_eq!(s[0].0.port, 7100);
    let Message::Join(r) = s[0].1 else {
        panic!("not a join")
    };
    assert_eq!(r.options.weight, 40);
}

#[test]
fn rise_and_fall_count_runs() {
    let mut h = RiseFall::new(2, 3);
    assert_eq!(h.observe(true), Some(true), "the first result decides");
    assert_eq!(h.observe(false), None);
    assert_eq!(h.observe(false), None);
    assert_eq!(h.observe(true), None, "a pass breaks the run");
    assert_eq!(h.observe(false), None);
    assert_eq!(h.observe(false), None);
    assert_eq!(h.observe(false), Some(false));
    assert_eq!(h.observe(false), None);
    assert_eq!(h.observe(true), None);
    assert_eq!(h.observe(true), Some(true));
}

#[test]
fn keys_parse_from_hex_or_raw_bytes() {
    let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
    let k = parse_key(hex.as_bytes()).unwrap();
    assert_eq!(k.0[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(k.0[31], 0xff);
    assert_eq!(parse_key(&[9u8; 32]).unwrap(), Key([9; 32]));
    assert_eq!(parse_key(b"abc"), Err(KeyError::BadLength(3)));
    let bad = "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_eq!(parse_key(bad.as_bytes()), Err(KeyError::NotHex));
    // The message names the length, never the content.
    assert!(!KeyError::BadLength(3).to_string().contains("abc"));
}
