//! Unit tests of one proxy, role by role, driven with crafted messages.

use super::*;
use crate::addr::{Ipv4, Transport};
use crate::wire::{JoinOptions, Key, RankedJap, Registration, Tried, MAX_MESSAGE};

const DK: Key = Key([1; 32]);
const GK: Key = Key([2; 32]);
const T0: Instant = 1_700_000_000 * SEC;
/// The boot of the peers in these tests.
const BOOT: u64 = T0 - SEC;

fn g() -> Group {
    Group {
        ip: Ipv4([203, 0, 113, 7]),
        port: 53,
        transport: Transport::Udp,
    }
}

fn proxy(id: ProxyId, peers: u32) -> Proxy {
    let mut cfg = ProxyConfig::new(id, 0, DK);
    cfg.groups.push(GroupConfig {
        group: g(),
        key: GK,
        policy: Policy::Proximity,
        band_pct: 10,
    });
    let list: Vec<PeerInfo> = (1..=peers)
        .map(|id| PeerInfo {
            id,
            cluster: id % 4,
        })
        .collect();
    Proxy::new(cfg, &list, T0)
}

/// `msg` signed by `sender`, addressed to proxy 1 (or, for a target's, to none).
fn signed(sender: Sender, seq: u64, msg: &Message, key: &Key) -> Vec<u8> {
    let to = if msg.target_group().is_some() { 0 } else { 1 };
    let mut out = vec![0u8; MAX_MESSAGE];
    let n = wire::encode(sender, to, seq, msg, key, &mut out).unwrap();
    out.truncate(n);
    out
}

/// `msg` from proxy `id` (in its life since `BOOT`), its `seq`-th message:
/// sequence numbers follow the sender's clock, so they count from `BOOT`.
fn from_peer(id: ProxyId, seq: u64, msg: &Message) -> Vec<u8> {
    signed(Sender::Proxy { id, boot: BOOT }, BOOT + seq, msg, &DK)
}

fn target(i: u8) -> Endpoint {
    Endpoint {
        ip: Ipv4([198, 19, 0, i]),
        port: 5000,
    }
}

fn registration(i: u8, nonce: u64) -> Registration {
    Registration {
        group: g(),
        target: target(i),
        timestamp_ms: T0 / MS,
        nonce,
        options: JoinOptions::default(),
    }
}

fn join(p: &mut Proxy, i: u8, nonce: u64) {
    let r = registration(i, nonce);
    p.handle_message(
        T0,
        target(i),
        &signed(Sender::Target, 1, &Message::Join(r), &GK),
    );
}

fn drain(p: &mut Proxy) -> Vec<Transmit> {
    core::iter::from_fn(|| p.poll_transmit()).collect()
}

fn reports(p: &mut Proxy) -> Vec<(ProxyId, u32)> {
    let mut out = Vec::new();
    for t in drain(p) {
        if let Transmit::Proxy { to, bytes } = t {
            if let Ok(Message::CountReport { count, .. }) = wire::parse(&bytes).map(|x| x.message) {
                out.push((to, count));
            }
        }
    }
    out
}

#[test]
fn jap_reports_the_first_member_then_only_outside_the_band() {
    let mut p = proxy(1, 12);
    join(&mut p, 1, 1);
    let first = reports(&mut p);
    assert_eq!(first.len(), 4, "the first member goes to all four RAPs");
    assert!(first.iter().all(|&(_, c)| c == 1));
    // 1 -> 2 leaves a 10% band around 1 (which is empty): report again.
    join(&mut p, 2, 2);
    assert_eq!(reports(&mut p).len(), 4);
    // The RAPs widen the band to 100%: 3 and 4 stay inside [0, 4] of 2.
    for rap in p.raps_of(&g()) {
        let ack = Message::ReportAck {
            group: g(),
            count: 2,
            band_pct: 100,
        };
        p.handle_message(T0 + 1, target(0), &from_peer(rap, 5, &ack));
    }
    join(&mut p, 3, 3);
    join(&mut p, 4, 4);
    assert!(reports(&mut p).is_empty(), "inside the band: no report");
    join(&mut p, 5, 5);
    assert_eq!(reports(&mut p).len(), 4, "5 is outside [0, 4]");
}

#[test]
fn rap_band_widens_as_its_table_fills() {
    let mut p = proxy(1, 4);
    let cap = p.rap.groups.capacity();
    assert_eq!(p.band_for_load(&g()), 10);
    for i in 0..cap * 6 / 10 {
        let grp = Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: i as u16,
            transport: Transport::Tcp,
        };
        let _ = p.rap.groups.insert(grp, crate::pool::List::default());
    }
    assert_eq!(p.band_for_load(&g()), 20);
    for i in cap * 6 / 10..cap * 9 / 10 {
        let grp = Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: i as u16,
            transport: Transport::Tcp,
        };
        let _ = p.rap.groups.insert(grp, crate::pool::List::default());
    }
    assert_eq!(p.band_for_load(&g()), 40, "four times the base above 80%");
}

#[test]
fn rap_band_widens_as_its_jap_entries_fill_too() {
    // One group, but the pool of JAP entries filling: the band follows the
    // fuller of the two tables.
    let mut p = proxy(1, 4);
    let cap = p.rap.japs.capacity();
    let mut list = crate::pool::List::default();
    let entry = |jap| super::rap::JapEntry {
        jap,
        count: 1,
        coord: Coord::default(),
        refreshed: T0,
    };
    for (upto, band) in [(cap * 4 / 10, 10), (cap * 6 / 10, 20), (cap * 9 / 10, 40)] {
        while p.rap.japs.len() < upto {
            let jap = p.rap.japs.len() as u32 + 1;
            p.rap.japs.push(&mut list, entry(jap)).unwrap();
        }
        assert_eq!(p.band_for_load(&g()), band, "{upto} of {cap} entries");
    }
}

/// The ReportAcks `p` sent: (to, count, band).
fn acks(p: &mut Proxy) -> Vec<(ProxyId, u32, u8)> {
    let mut out = Vec::new();
    for t in drain(p) {
        if let Transmit::Proxy { to, bytes } = t {
            if let Ok(Message::ReportAck {
                count, band_pct, ..
            }) = wire::parse(&bytes).map(|x| x.message)
            {
                out.push((to, count, band_pct));
            }
        }
    }
    out
}

#[test]
fn a_rap_keeps_one_entry_per_jap_acks_it_and_forgets_it_on_zero_expiry_or_death() {
    let mut p = proxy(1, 6);
    p.cfg.max_japs_per_group = 2;
    let expiry = p.cfg.report_expiry;
    let report = |count| Message::CountReport {
        group: g(),
        count,
        coord: Coord::default(),
    };
    let mut seq = 0;
    let mut send = |p: &mut Proxy, at: Instant, from: ProxyId, count: u32| {
        seq += 1;
        p.handle_message(at, target(0), &from_peer(from, seq, &report(count)));
    };
    drain(&mut p);
    send(&mut p, T0, 2, 5);
    assert_eq!(p.rap_entries(&g()), vec![(2, 5)]);
    assert_eq!(acks(&mut p), vec![(2, 5, 10)]);
    // A second report from the same JAP updates its entry.
    send(&mut p, T0 + SEC, 2, 7);
    assert_eq!(p.rap_entries(&g()), vec![(2, 7)]);
    assert_eq!(acks(&mut p), vec![(2, 7, 10)]);
    send(&mut p, T0 + SEC, 3, 1);
    // The group holds two JAPs: a third is refused, unacknowledged.
    send(&mut p, T0 + SEC, 4, 1);
    assert_eq!(p.rap_entries(&g()).len(), 2);
    assert_eq!(acks(&mut p), vec![(3, 1, 10)]);
    assert_eq!((p.counters.rap.reports, p.counters.rap.refused), (4, 1));
    // A count of zero removes the entry (and is acknowledged).
    send(&mut p, T0 + 2 * SEC, 3, 0);
    assert_eq!(p.rap_entries(&g()), vec![(2, 7)]);
    assert_eq!(acks(&mut p), vec![(3, 0, 10)]);
    // Entries live `report_expiry` after their last refresh, no longer.
    send(&mut p, T0 + 10 * SEC, 5, 3);
    let timer = p.timers.get(Timer::RapExpiry).expect("expiry armed");
    assert_eq!(timer, T0 + expiry / 4, "armed by the first report");
    // The timer runs the expiry and comes back a quarter expiry later.
    p.handle_timeout(timer);
    assert_eq!(p.rap_entries(&g()).len(), 2);
    assert_eq!(
        p.timers.get(Timer::RapExpiry),
        Some(timer + (expiry / 4).max(SEC))
    );
    p.rap_expire(T0 + SEC + expiry - 1);
    assert_eq!(p.rap_entries(&g()).len(), 2);
    assert_eq!(p.counters.rap.expired, 0);
    p.rap_expire(T0 + SEC + expiry);
    assert_eq!(p.rap_entries(&g()), vec![(5, 3)]);
    assert_eq!(p.counters.rap.expired, 1);
    // A JAP that died is forgotten at once; the empty group goes, and with
    // it the expiry timer.
    p.rap_forget_jap(4);
    assert_eq!(p.rap_entries(&g()).len(), 1);
    p.rap_forget_jap(5);
    assert!(p.rap_entries(&g()).is_empty());
    assert!(p.rap.groups.is_empty());
    p.rap_expire(T0 + SEC + expiry + 1);
    assert_eq!(p.timers.get(Timer::RapExpiry), None);
}

#[test]
fn a_jap_reports_every_group_again_after_refuting_news_of_its_death() {
    // The RAPs dropped our entries when they believed us dead: once we
    // refute it, every group is reported to its RAPs again, even though its
    // count has not left the band.
    let mut p = proxy(1, 12);
    join(&mut p, 1, 1);
    assert_eq!(reports(&mut p).len(), 4);
    let mut seq = 100;
    for rap in p.raps_of(&g()) {
        let ack = Message::ReportAck {
            group: g(),
            count: 1,
            band_pct: 10,
        };
        seq += 1;
        p.handle_message(T0 + 1, target(0), &from_peer(rap, seq, &ack));
    }
    // (All within a few ms: no peer is silent long enough to be thought down,
    // which would change the RAPs.)
    p.handle_timeout(T0 + 2 * MS);
    assert!(reports(&mut p).is_empty(), "acked and in the band");
    let news = Message::News {
        subject: 1,
        incarnation: p.incarnation(),
        up: false,
    };
    p.handle_message(T0 + 3 * MS, target(0), &from_peer(2, seq + 1, &news));
    p.handle_timeout(T0 + 3 * MS);
    let again = reports(&mut p);
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(again.iter().all(|&(_, c)| c == 1));
}

#[test]
fn a_full_rap_refuses_a_new_group_without_an_ack() {
    let mut p = proxy(1, 4);
    let cap = p.rap.groups.capacity();
    for i in 0..cap {
        let grp = Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: i as u16,
            transport: Transport::Tcp,
        };
        p.rap
            .groups
            .insert(grp, crate::pool::List::default())
            .unwrap();
    }
    let report = Message::CountReport {
        group: g(),
        count: 3,
        coord: Coord::default(),
    };
    drain(&mut p);
    p.handle_message(T0, target(0), &from_peer(2, 1, &report));
    assert_eq!(p.counters.rap.refused, 1);
    assert!(drain(&mut p).is_empty(), "no ack: the JAP retries later");
}

#[test]
fn a_rap_forwards_a_lookups_packet_and_answers_with_its_list_and_ttl() {
    let mut p = proxy(1, 12);
    let report = Message::CountReport {
        group: g(),
        count: 3,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(2, 1, &report));
    drain(&mut p);
    let lookup = Message::Lookup {
        group: g(),
        client: target(1),
        iap_coord: Coord::default(),
        tried: Tried::new(),
        packet: Some(b"pkt"),
    };
    p.handle_message(T0 + 1, target(0), &from_peer(3, 1, &lookup));
    let mut forwarded_to = Vec::new();
    let mut lists = Vec::new();
    for t in drain(&mut p) {
        if let Transmit::Proxy { to, bytes } = t {
            match wire::parse(&bytes).map(|x| x.message) {
                Ok(Message::Forward { packet, .. }) => forwarded_to.push((to, packet.to_vec())),
                Ok(Message::JapList { japs, ttl_s, .. }) => lists.push((to, japs.len(), ttl_s)),
                _ => {}
            }
        }
    }
    assert_eq!(forwarded_to, vec![(2, b"pkt".to_vec())]);
    let ttl = u32::try_from(p.cfg.cache_ttl / SEC).unwrap();
    assert_eq!(lists, vec![(3, 1, ttl)]);
    assert_eq!((p.counters.rap.lookups, p.counters.rap.forwards), (1, 1));
}

#[test]
fn a_count_leaves_a_10_percent_band_beyond_it_and_is_retried_after_report_retry() {
    let mut p = proxy(1, 12);
    p.cfg.report_retry = 100 * MS;
    for i in 1..=10 {
        join(&mut p, i, u64::from(i));
    }
    drain(&mut p);
    let raps = p.raps_of(&g());
    let mut seq = 0;
    let mut ack_all = |p: &mut Proxy, count| {
        for &rap in &raps {
            seq += 1;
            let ack = Message::ReportAck {
                group: g(),
                count,
                band_pct: 10,
            };
            p.handle_message(T0 + 1, target(0), &from_peer(rap, seq, &ack));
        }
    };
    ack_all(&mut p, 10);
    // 10 ± 10%: 11 stays inside, 12 leaves.
    join(&mut p, 11, 11);
    assert!(reports(&mut p).is_empty(), "11 is within 10 ± 1");
    join(&mut p, 12, 12);
    assert_eq!(reports(&mut p).len(), 4, "12 is outside 10 ± 1");
    // Unacknowledged: sent again after report_retry, not before.
    p.handle_timeout(T0 + 99 * MS);
    assert!(reports(&mut p).is_empty(), "retried early");
    p.handle_timeout(T0 + 100 * MS);
    let again = reports(&mut p);
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(again.iter().all(|&(_, c)| c == 12));
}

#[test]
fn stale_and_forged_proxy_messages_change_nothing() {
    let mut p = proxy(1, 4);
    let hb = Message::Heartbeat {
        cluster: 2,
        coord: Coord::default(),
    };
    let good = from_peer(2, 100, &hb);
    p.handle_message(T0, target(0), &good);
    p.handle_message(T0, target(0), &good);
    assert_eq!(p.counters().wire.replayed, 1);
    let forged = signed(Sender::Proxy { id: 2, boot: BOOT }, 101, &hb, &Key([9; 32]));
    p.handle_message(T0, target(0), &forged);
    assert_eq!(p.counters().wire.bad_tag, 1);
    p.handle_message(T0, target(0), &from_peer(99, 102, &hb));
    assert_eq!(p.counters().wire.unknown_sender, 1);
    let old_life = signed(
        Sender::Proxy {
            id: 2,
            boot: BOOT - 1,
        },
        500,
        &hb,
        &DK,
    );
    p.handle_message(T0, target(0), &old_life);
    assert_eq!(p.counters().wire.stale_incarnation, 1);
}

#[test]
fn reordered_messages_over_a_global_sequence_are_accepted() {
    // A sender numbers all its messages in one sequence: we see 300 before 100.
    let mut p = proxy(1, 4);
    let hb = Message::Heartbeat {
        cluster: 2,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(2, 300, &hb));
    p.handle_message(T0, target(0), &from_peer(2, 100, &hb));
    let c = p.counters().wire;
    assert_eq!((c.stale, c.replayed), (0, 0), "{c:?}");
    p.handle_message(T0, target(0), &from_peer(2, 100, &hb));
    assert_eq!(p.counters().wire.replayed, 1);
}

#[test]
fn unauthenticated_registrations_get_no_reply_at_all() {
    let mut p = proxy(1, 4);
    // Bad tag, aimed at a victim address inside the body.
    let r = registration(9, 77);
    p.handle_message(
        T0,
        target(1),
        &signed(Sender::Target, 1, &Message::Join(r), &Key([5; 32])),
    );
    // Right key, but from another address than the target's.
    p.handle_message(
        T0,
        target(1),
        &signed(Sender::Target, 1, &Message::Join(r), &GK),
    );
    // Stale.
    let mut old = registration(9, 78);
    old.timestamp_ms -= 31_000;
    p.handle_message(
        T0,
        target(9),
        &signed(Sender::Target, 1, &Message::Join(old), &GK),
    );
    assert!(drain(&mut p).is_empty(), "no reply before authentication");
    let c = p.counters();
    assert_eq!(
        (
            c.wire.bad_tag,
            c.jap.wrong_source,
            c.jap.stale_registrations
        ),
        (1, 1, 1)
    );
    // A valid one is answered; its replay is not.
    let ok = signed(Sender::Target, 1, &Message::Join(registration(9, 79)), &GK);
    p.handle_message(T0, target(9), &ok);
    assert!(drain(&mut p)
        .iter()
        .any(|t| matches!(t, Transmit::Target { to, .. } if *to == target(9))));
    p.handle_message(T0 + SEC, target(9), &ok);
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.counters().jap.replayed_registrations, 1);
}

#[test]
fn packets_to_a_group_that_is_not_served_cause_no_lookup() {
    let mut p = proxy(1, 4);
    let other = Group { port: 9999, ..g() };
    for i in 0..1000u16 {
        let client = Endpoint {
            ip: Ipv4([198, 19, 200, 1]),
            port: i,
        };
        p.handle_client_packet(T0, other, client, b"x");
    }
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.table_fill()[9], ("pending", 0, 256));
    assert_eq!(p.counters().iap.unknown_group, 1000);
}

#[test]
fn last_target_down_keeps_its_group_and_is_still_pinged() {
    let mut p = proxy(1, 4);
    join(&mut p, 1, 1);
    drain(&mut p);
    // The target never answers: after `target_fall` pings it is down.
    let mut now = T0;
    let mut pings_after_down = 0;
    for _ in 0..10 {
        now += 2 * SEC;
        p.handle_timeout(now);
        let pinged = drain(&mut p)
            .iter()
            .filter(|t| matches!(t, Transmit::Target { .. }))
            .count();
        if p.live_targets(&g()) == 0 {
            pings_after_down += pinged;
        }
    }
    assert_eq!(p.live_targets(&g()), 0);
    assert_eq!(p.targets_held(&g()), 1, "the down target is kept");
    assert!(
        pings_after_down >= 5,
        "a down target is still pinged ({pings_after_down})"
    );
    let fill = p.table_fill();
    assert_eq!(fill[3].0, "targets");
    assert_eq!(fill[3].1, 1, "the fill counts down targets");
}

#[test]
fn pings_lost_while_the_host_overran_its_receive_ring_do_not_take_a_target_down() {
    let mut p = proxy(1, 4);
    join(&mut p, 1, 1);
    drain(&mut p);
    // The target stays silent for 10 ping periods, but the host overran
    // its receive ring while each ping was out: no miss counts.
    let mut now = T0;
    for _ in 0..10 {
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
        p.handle_receive_overrun(now + SEC);
    }
    assert_eq!(p.live_targets(&g()), 1, "excused misses took it down");
    let c = p.counters().jap;
    assert_eq!(c.targets_down, 0);
    // The first period had no ping out; the nine after it were excused.
    assert_eq!(c.misses_excused, 9, "{c:?}");
    // The ping out during the last overrun is excused; an overrun before a
    // ping went out excuses nothing: three real misses (`target_fall`) take
    // the target down.
    for _ in 0..3 {
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
    }
    assert_eq!(p.live_targets(&g()), 1, "down one period early");
    now += 2 * SEC;
    p.handle_timeout(now);
    assert_eq!(p.live_targets(&g()), 0, "real misses no longer count");
    assert_eq!(p.counters().jap.targets_down, 1);
    assert_eq!(p.counters().jap.misses_excused, 10);
}

#[test]
fn a_target_whose_pings_an_overrun_excused_still_takes_new_flows() {
    // One target, an appliance flooded past its receive ring: each ping's
    // pong may be lost before the proxy sees it. That is no evidence against
    // the target, so it keeps taking new clients (a flood once left a lone
    // target refusing every new flow until a pong got through: a new
    // client's packets were all invalidated for as long as the flood went on).
    let mut p = proxy(1, 1);
    join(&mut p, 1, 1);
    drain(&mut p);
    let mut now = T0;
    for i in 0..5u16 {
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
        p.handle_receive_overrun(now + SEC);
        let client = Endpoint {
            ip: Ipv4([198, 51, 100, 1]),
            port: 4000 + i,
        };
        p.handle_client_packet(now + SEC, g(), client, b"new flow");
        assert_eq!(delivered_to(&drain(&mut p)), vec![target(1)], "period {i}");
    }
    let c = p.counters().jap;
    assert_eq!((c.misses_excused, c.invalidations_sent), (4, 0), "{c:?}");
}

#[test]
fn a_suspect_target_takes_new_flows_only_when_none_is_up() {
    let mut p = proxy(1, 1);
    join(&mut p, 1, 1);
    drain(&mut p);
    // One ping out, then one unanswered: suspect, not down (fall is 3).
    let mut now = T0;
    for _ in 0..2 {
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
    }
    assert_eq!(p.live_targets(&g()), 1);
    let client = |port| Endpoint {
        ip: Ipv4([198, 51, 100, 1]),
        port,
    };
    // Alone, it still takes a new client (refusing it would refuse all).
    p.handle_client_packet(now, g(), client(4000), b"new");
    assert_eq!(delivered_to(&drain(&mut p)), vec![target(1)]);
    // With an up target beside it, new clients go to that one, however
    // many flows it has.
    let r = Registration {
        timestamp_ms: now / MS,
        ..registration(2, 2)
    };
    p.handle_message(
        now,
        target(2),
        &signed(Sender::Target, 1, &Message::Join(r), &GK),
    );
    drain(&mut p);
    for port in 4001..4005 {
        p.handle_client_packet(now, g(), client(port), b"new");
        assert_eq!(delivered_to(&drain(&mut p)), vec![target(2)]);
    }
    assert_eq!(p.counters().jap.invalidations_sent, 0);
}

#[test]
fn overruns_leave_a_down_target_down() {
    let mut p = proxy(1, 4);
    join(&mut p, 1, 1);
    drain(&mut p);
    // Silent without overruns: down after `target_fall` (3) misses.
    let mut now = T0;
    for _ in 0..4 {
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
    }
    assert_eq!(p.live_targets(&g()), 0);
    // Overruns while it is down neither bring it back nor take it down again.
    for _ in 0..5 {
        p.handle_receive_overrun(now + SEC);
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
    }
    let c = p.counters().jap;
    assert_eq!((c.targets_down, c.misses_excused), (1, 5));
    assert_eq!(p.live_targets(&g()), 0, "an excused miss is no answer");
    assert_eq!(p.targets_held(&g()), 1);
}

#[test]
fn overruns_keep_excusing_a_silent_target_only_so_long() {
    let mut p = proxy(1, 4);
    join(&mut p, 1, 1);
    drain(&mut p);
    // A dead target behind an appliance that overruns every period (a
    // flood that never ends, or frames sent to cause overruns): 30 misses
    // in a row are excused (10 x `target_fall`), then 3 count.
    let mut now = T0 + 2 * SEC;
    p.handle_timeout(now);
    drain(&mut p);
    let mut periods = 0;
    while p.live_targets(&g()) == 1 && periods < 100 {
        p.handle_receive_overrun(now + SEC);
        now += 2 * SEC;
        p.handle_timeout(now);
        drain(&mut p);
        periods += 1;
    }
    assert_eq!(
        periods,
        30 + 3,
        "down after the excused run and target_fall"
    );
    let c = p.counters().jap;
    assert_eq!((c.misses_excused, c.targets_down), (30, 1));
}

#[test]
fn a_pong_from_an_unknown_target_asks_it_to_rejoin() {
    let mut p = proxy(1, 4);
    let pong = Message::Pong {
        group: g(),
        target: target(4),
        nonce: 12,
    };
    p.handle_message(T0, target(4), &signed(Sender::Target, 1, &pong, &GK));
    let out = drain(&mut p);
    assert_eq!(out.len(), 1);
    let Transmit::Target { to, bytes, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(*to, target(4));
    let parsed = wire::parse(bytes).unwrap();
    parsed.verify(&GK).unwrap();
    assert!(matches!(parsed.message, Message::Rejoin { nonce: 12, .. }));
}

#[test]
fn a_lookup_retry_does_not_carry_the_packet_again() {
    let mut p = proxy(1, 12);
    let client = Endpoint {
        ip: Ipv4([198, 19, 200, 1]),
        port: 4000,
    };
    p.handle_client_packet(T0, g(), client, b"first");
    let lookups = |out: Vec<Transmit>| -> Vec<Option<usize>> {
        out.iter()
            .filter_map(|t| match t {
                Transmit::Proxy { bytes, .. } => match wire::parse(bytes).ok()?.message {
                    Message::Lookup { packet, .. } => Some(packet.map(<[u8]>::len)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    assert!(
        !p.raps_of(&g()).contains(&1),
        "a proxy that must ask another RAP"
    );
    let first = lookups(drain(&mut p));
    assert_eq!(first, vec![Some(5)]);
    p.handle_timeout(T0 + SEC);
    assert_eq!(
        lookups(drain(&mut p)),
        vec![None],
        "the retry carries no packet"
    );
    assert_eq!(p.counters().iap.lookup_retries, 1);
}

#[test]
fn an_empty_answer_asks_the_next_rap_with_the_packet() {
    let mut p = proxy(1, 40);
    let client = Endpoint {
        ip: Ipv4([198, 19, 200, 1]),
        port: 4000,
    };
    let raps = p.raps_of(&g());
    assert!(!raps.contains(&1), "pick a proxy that is not a RAP of g");
    p.handle_client_packet(T0, g(), client, b"first");
    let asked = |out: &[Transmit]| -> Option<(ProxyId, Option<usize>)> {
        out.iter().find_map(|t| match t {
            Transmit::Proxy { to, bytes } => match wire::parse(bytes).ok()?.message {
                Message::Lookup { packet, .. } => Some((*to, packet.map(<[u8]>::len))),
                _ => None,
            },
            _ => None,
        })
    };
    let (first, _) = asked(&drain(&mut p)).unwrap();
    let empty = Message::JapList {
        group: g(),
        japs: heapless::Vec::new(),
        ttl_s: 3600,
    };
    p.handle_message(T0 + MS, target(0), &from_peer(first, 10, &empty));
    let (second, packet) = asked(&drain(&mut p)).expect("asks the next RAP");
    assert_ne!(second, first);
    assert_eq!(packet, Some(5), "the first RAP did not deliver it");
    let mut list = heapless::Vec::new();
    list.push(RankedJap { jap: 7, count: 1 }).unwrap();
    let answer = Message::JapList {
        group: g(),
        japs: list,
        ttl_s: 3600,
    };
    p.handle_message(T0 + 2 * MS, target(0), &from_peer(second, 11, &answer));
    assert_eq!(p.cached_japs(&g()), vec![7]);
}

#[test]
fn a_replayed_join_after_leave_is_refused_across_the_freshness_window_at_the_rated_rate() {
    let mut p = proxy(1, 4);
    let x = target(1);
    let original = signed(Sender::Target, 1, &Message::Join(registration(1, 1)), &GK);
    p.handle_message(T0, x, &original);
    assert_eq!(p.live_targets(&g()), 1);
    // 25 s of other registrations at the rated 100 per second (2,500 nonces:
    // more than the old 1,024-entry cache, which evicted its newest entries).
    for i in 0..2500u32 {
        let now = T0 + u64::from(i) * 10 * MS;
        let other = Endpoint {
            ip: Ipv4::from_u32(0xc613_1000 + i),
            port: 5000,
        };
        let r = Registration {
            target: other,
            timestamp_ms: now / MS,
            nonce: 1000 + u64::from(i),
            ..registration(0, 0)
        };
        p.handle_message(
            now,
            other,
            &signed(Sender::Target, 1, &Message::Join(r), &GK),
        );
    }
    let leave = signed(Sender::Target, 1, &Message::Leave(registration(1, 2)), &GK);
    p.handle_message(T0 + 25 * SEC, x, &leave);
    drain(&mut p);
    let c = p.counters().jap;
    assert_eq!(c.leaves, 1);
    let (name, used, cap) = p.table_fill()[5];
    assert_eq!(name, "nonces");
    assert!(
        used > 2500 && used < cap,
        "{used} of {cap}: the cache holds the rated rate"
    );
    // 29 s after it was made, the captured join is still fresh: replayed.
    p.handle_message(T0 + 29 * SEC, x, &original);
    assert!(
        p.target_flows(&g()).iter().all(|(ep, _, _)| *ep != x),
        "the departed target was re-admitted by a replay"
    );
    assert_eq!(p.counters().jap.replayed_registrations, 1);
    assert!(drain(&mut p).is_empty());
}

#[test]
fn a_message_for_another_proxy_is_refused_when_replayed_here() {
    let mut p = proxy(1, 12);
    let lookup = Message::Lookup {
        group: g(),
        client: target(1),
        iap_coord: Coord::default(),
        tried: Tried::new(),
        packet: Some(b"pkt"),
    };
    // Proxy 2's lookup to proxy 3, captured and sent to proxy 1.
    let mut out = vec![0u8; MAX_MESSAGE];
    let sender = Sender::Proxy { id: 2, boot: BOOT };
    let n = wire::encode(sender, 3, 71, &lookup, &DK, &mut out).unwrap();
    p.handle_message(T0, target(0), &out[..n]);
    let c = p.counters();
    assert_eq!((c.wire.misdirected, c.rap.lookups), (1, 0));
    assert!(drain(&mut p).is_empty(), "no signed reply");
}

#[test]
fn coordinates_beyond_any_rtt_are_refused_and_ranking_cannot_overflow() {
    let mut p = proxy(1, 40);
    let raps = p.raps_of(&g());
    let far = Message::Heartbeat {
        cluster: 1,
        coord: Coord {
            x: 1.0e30,
            y: 0.0,
            h: 1.0,
            err: 1.0,
        },
    };
    // `encode` refuses it; a peer's bytes could still carry it.
    assert!(wire::encode(Sender::Target, 1, 1, &far, &DK, &mut [0u8; 200]).is_err());
    let body = postcard::to_allocvec(&far).unwrap();
    let mut out = [0u8; MAX_MESSAGE];
    let sender = Sender::Proxy {
        id: raps[0],
        boot: BOOT,
    };
    let n = wire::seal(sender, 1, 1, far.kind(), &body, &DK, &mut out).unwrap();
    p.handle_message(T0, target(0), &out[..n]);
    assert_eq!(p.counters().wire.malformed, 1);
    // The largest coordinates the wire accepts, at every RAP: still no overflow.
    let edge = Message::Heartbeat {
        cluster: 1,
        coord: Coord {
            x: wire::MAX_COORD,
            y: -wire::MAX_COORD,
            h: wire::MAX_COORD,
            err: wire::MAX_COORD,
        },
    };
    for (i, &r) in raps.iter().enumerate() {
        p.handle_message(T0, target(0), &from_peer(r, 10 + i as u64, &edge));
    }
    assert!(p.predicted_rtt_ms(raps[0]).is_some_and(|d| d.is_finite()));
    p.handle_client_packet(T0, g(), target(7), b"x");
    assert!(drain(&mut p)
        .iter()
        .any(|t| matches!(t, Transmit::Proxy { bytes, .. }
            if matches!(wire::parse(bytes).map(|x| x.message), Ok(Message::Lookup { .. })))));
}

#[test]
fn forged_proxy_messages_of_every_kind_change_nothing() {
    let mut p = proxy(1, 12);
    join(&mut p, 1, 1);
    drain(&mut p);
    let forge = |seq: u64, msg: &Message| {
        signed(
            Sender::Proxy { id: 2, boot: BOOT },
            BOOT + seq,
            msg,
            &Key([7; 32]),
        )
    };
    let before = (p.peer_up(3), p.live_targets(&g()), p.cached_japs(&g()));
    let news = Message::News {
        subject: 3,
        incarnation: Incarnation::default(),
        up: false,
    };
    let ack = Message::ReportAck {
        group: g(),
        count: 1,
        band_pct: 100,
    };
    let mut list = heapless::Vec::new();
    list.push(RankedJap { jap: 9, count: 1 }).unwrap();
    let japs = Message::JapList {
        group: g(),
        japs: list,
        ttl_s: 3600,
    };
    let fwd = Message::Forward {
        group: g(),
        client: target(9),
        iap: 2,
        tried: Tried::new(),
        packet: b"x",
    };
    // A huge sequence number too: verified before any replay state is touched.
    for (i, m) in [news, ack, japs, fwd].iter().enumerate() {
        p.handle_message(T0, target(0), &forge(u64::MAX / 2 + i as u64, m));
    }
    assert_eq!(p.counters().wire.bad_tag, 4);
    assert!(drain(&mut p).is_empty(), "no output for forged input");
    assert_eq!(
        (p.peer_up(3), p.live_targets(&g()), p.cached_japs(&g())),
        before
    );
    // Proxy 2 itself is not locked out by the forged huge numbers.
    let hb = Message::Heartbeat {
        cluster: 2,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(2, 5, &hb));
    let c = p.counters().wire;
    assert_eq!((c.stale, c.replayed), (0, 0));
    // Forged pongs (wrong group key) answering every ping keep nothing alive.
    for k in 1..6 {
        let now = T0 + k * 2 * SEC;
        p.handle_timeout(now);
        let pings: Vec<u64> = drain(&mut p)
            .iter()
            .filter_map(|t| match t {
                Transmit::Target { bytes, .. } => match wire::parse(bytes).ok()?.message {
                    Message::Ping { nonce, .. } => Some(nonce),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for nonce in pings {
            let pong = Message::Pong {
                group: g(),
                target: target(1),
                nonce,
            };
            let forged = signed(Sender::Target, 1, &pong, &Key([8; 32]));
            p.handle_message(now, target(1), &forged);
        }
    }
    assert_eq!(p.live_targets(&g()), 0, "forged pongs kept it alive");
}

#[test]
fn a_jap_reports_zero_even_with_a_band_of_100_percent() {
    let mut p = proxy(1, 12);
    join(&mut p, 1, 1);
    drain(&mut p);
    for rap in p.raps_of(&g()) {
        let ack = Message::ReportAck {
            group: g(),
            count: 1,
            band_pct: 100,
        };
        p.handle_message(T0, target(0), &from_peer(rap, 5, &ack));
    }
    let leave = signed(Sender::Target, 1, &Message::Leave(registration(1, 2)), &GK);
    p.handle_message(T0 + SEC, target(1), &leave);
    let zeros: Vec<u32> = reports(&mut p).into_iter().map(|(_, c)| c).collect();
    assert_eq!(zeros, vec![0; 4], "0 is outside any band of 1");
}

/// A proxy serving every group of 203.0.113.0/24 under a group secret.
fn derived_proxy(secret: &Key) -> Proxy {
    let mut cfg = ProxyConfig::new(1, 0, DK);
    cfg.group_secret = Some(secret.clone());
    cfg.anycast = vec![crate::addr::Ipv4Prefix::new(Ipv4([203, 0, 113, 0]), 24)];
    let list = [PeerInfo { id: 1, cluster: 0 }];
    Proxy::new(cfg, &list, T0)
}

#[test]
fn any_group_in_the_prefixes_joins_with_its_derived_key_and_acks_its_agent() {
    let secret = Key([9; 32]);
    let mut p = derived_proxy(&secret);
    let grp = Group {
        ip: Ipv4([203, 0, 113, 200]),
        port: 8080,
        transport: Transport::Tcp,
    };
    let service = target(3);
    // The agent sends from its own port on the service's address.
    let agent = Endpoint {
        ip: service.ip,
        port: 40000,
    };
    let r = Registration {
        group: grp,
        ..registration(3, 77)
    };
    let msg = Message::Join(r);
    // Signed with the wrong group's key: refused, no answer.
    let other = crate::keys::group_key(&secret, &g());
    p.handle_message(T0, agent, &signed(Sender::Target, 1, &msg, &other));
    assert_eq!(p.counters().wire.bad_tag, 1);
    assert!(drain(&mut p).is_empty());
    // With its own derived key: held, and the ack goes to the agent's port.
    let key = crate::keys::group_key(&secret, &grp);
    p.handle_message(T0, agent, &signed(Sender::Target, 1, &msg, &key));
    assert_eq!(p.targets_held(&grp), 1);
    let out = drain(&mut p);
    assert!(
        out.iter()
            .any(|t| matches!(t, Transmit::Target { to, .. } if *to == agent)),
        "{out:?}"
    );
    // Health pings go to the agent too, not to the service's port.
    p.handle_timeout(T0 + 3 * SEC);
    let pings: Vec<Endpoint> = drain(&mut p)
        .into_iter()
        .filter_map(|t| match t {
            Transmit::Target { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(pings, vec![agent]);
}

#[test]
fn a_group_outside_the_prefixes_is_not_served_even_with_a_secret() {
    let secret = Key([9; 32]);
    let mut p = derived_proxy(&secret);
    let outside = Group {
        ip: Ipv4([203, 0, 114, 1]),
        port: 53,
        transport: Transport::Udp,
    };
    let r = Registration {
        group: outside,
        ..registration(3, 78)
    };
    let key = crate::keys::group_key(&secret, &outside);
    p.handle_message(
        T0,
        target(3),
        &signed(Sender::Target, 1, &Message::Join(r), &key),
    );
    assert_eq!(p.counters().wire.unknown_group, 1);
    assert_eq!(p.targets_held(&outside), 0);
    assert!(drain(&mut p).is_empty());
}

fn delivered_to(out: &[Transmit]) -> Vec<Endpoint> {
    out.iter()
        .filter_map(|t| match t {
            Transmit::Deliver { target, .. } => Some(*target),
            _ => None,
        })
        .collect()
}

fn leave(p: &mut Proxy, i: u8, nonce: u64, now: Instant) {
    let r = Registration {
        timestamp_ms: now / MS,
        ..registration(i, nonce)
    };
    p.handle_message(
        now,
        target(i),
        &signed(Sender::Target, 1, &Message::Leave(r), &GK),
    );
}

#[test]
fn a_flow_keeps_its_target_across_a_join_and_the_targets_graceful_leave() {
    let mut p = proxy(1, 1);
    join(&mut p, 1, 1);
    let client = Endpoint {
        ip: Ipv4([198, 51, 100, 1]),
        port: 4000,
    };
    p.handle_client_packet(T0, g(), client, b"syn");
    assert_eq!(delivered_to(&drain(&mut p)), vec![target(1)]);
    // Another target joins: the flow stays.
    join(&mut p, 2, 2);
    p.handle_client_packet(T0 + MS, g(), client, b"data");
    assert_eq!(delivered_to(&drain(&mut p)), vec![target(1)]);
    // Its target leaves gracefully: acked, no longer counted, but the flow
    // still reaches it; a new client goes to the other target.
    leave(&mut p, 1, 3, T0 + 2 * MS);
    assert_eq!(p.counters().jap.leaves, 1);
    assert_eq!(p.live_targets(&g()), 1);
    p.handle_timeout(T0 + 3 * MS);
    p.handle_client_packet(T0 + 4 * MS, g(), client, b"more");
    let other = Endpoint {
        ip: Ipv4([198, 51, 100, 2]),
        port: 4000,
    };
    p.handle_client_packet(T0 + 4 * MS, g(), other, b"syn");
    assert_eq!(delivered_to(&drain(&mut p)), vec![target(1), target(2)]);
    // A draining target is not pinged.
    p.handle_timeout(T0 + 3 * SEC);
    let pinged: Vec<Endpoint> = drain(&mut p)
        .into_iter()
        .filter_map(|t| match t {
            Transmit::Target { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert!(!pinged.contains(&target(1)), "{pinged:?}");
    // Once its flow ends, it is forgotten.
    p.end_flow(g(), client);
    assert_eq!(p.targets_held(&g()), 1);
    p.handle_client_packet(T0 + 3 * SEC, g(), client, b"new");
    assert_eq!(delivered_to(&drain(&mut p)), vec![target(2)]);
}

mod membership;
mod view;

#[test]
fn lent_transmits_are_the_queue_in_order_and_are_gone_once_returned() {
    let mut p = proxy(1, 1);
    join(&mut p, 1, 1);
    let _ = drain(&mut p);
    let client = |port| Endpoint {
        ip: Ipv4([198, 51, 100, 1]),
        port,
    };
    for (port, data) in [(4000, &b"one"[..]), (4001, b"two"), (4002, b"three")] {
        p.handle_client_packet(T0, g(), client(port), data);
    }
    let lent = p.lend_transmits();
    let seen: Vec<(Endpoint, Vec<u8>)> = lent
        .iter()
        .map(|t| match t {
            Transmit::Deliver { client, packet, .. } => (*client, packet.to_vec()),
            other => panic!("not a delivery: {other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (client(4000), b"one".to_vec()),
            (client(4001), b"two".to_vec()),
            (client(4002), b"three".to_vec()),
        ]
    );
    // Queued while lent: kept, after what was lent (which is gone).
    p.handle_client_packet(T0, g(), client(4003), b"four");
    p.return_transmits(lent);
    let rest = drain(&mut p);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(
        matches!(&rest[0], Transmit::Deliver { client: c, packet, .. }
        if *c == client(4003) && packet.as_slice() == b"four")
    );
    assert!(drain(&mut p).is_empty());
}

#[test]
fn a_packet_beyond_a_datagram_is_counted_not_queued_and_the_largest_reply_is_whole() {
    let mut p = proxy(1, 1);
    join(&mut p, 1, 1);
    let _ = drain(&mut p);
    let client = Endpoint {
        ip: Ipv4([198, 51, 100, 1]),
        port: 4000,
    };
    let big = vec![7u8; MAX_MESSAGE + 1];
    p.handle_client_packet(T0, g(), client, &big);
    assert_eq!(p.counters().wire.oversized, 1);
    assert!(drain(&mut p).is_empty());
    p.handle_client_packet(T0, g(), client, b"query");
    let out = drain(&mut p);
    assert!(
        matches!(&out[..], [Transmit::Deliver { packet, .. }] if packet.as_slice() == b"query"),
        "{out:?}"
    );
    // A target's reply: a datagram's worth goes whole, a byte more is counted.
    p.handle_target_packet(T0, g(), target(1), client, &big);
    assert_eq!(p.counters().wire.oversized, 2);
    assert!(drain(&mut p).is_empty());
    p.handle_target_packet(T0, g(), target(1), client, &big[..MAX_MESSAGE]);
    let out = drain(&mut p);
    assert!(
        matches!(&out[..], [Transmit::ToClient { client: c, packet, .. }]
            if *c == client && packet.as_slice() == &big[..MAX_MESSAGE]),
        "{out:?}"
    );
}
