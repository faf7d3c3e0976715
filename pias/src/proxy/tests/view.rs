//! `Proxy::group_report`: each role's view of a group, as the management
//! port shows it.

use super::*;
use crate::status::TargetHealth;

#[test]
fn a_group_report_shows_each_role() {
    let mut p = proxy(1, 40);
    let r = p.group_report(T0, &g());
    assert!(r.served && r.iap.is_none() && r.jap.is_none() && r.rap.is_none());
    assert_eq!(r.raps.as_slice(), p.raps_of(&g()).as_slice());
    assert!(!r.raps.is_empty());

    // As JAP: two targets joined, reported to the RAPs, none acknowledged.
    join(&mut p, 1, 1);
    join(&mut p, 2, 2);
    let sent = reports(&mut p);
    let jap = p.group_report(T0, &g()).jap.expect("a JAP view");
    assert_eq!(jap.targets_total, 2);
    assert_eq!(jap.members, 2);
    assert_eq!(
        jap.targets.iter().map(|t| t.endpoint).collect::<Vec<_>>(),
        vec![target(1), target(2)]
    );
    assert!(jap
        .targets
        .iter()
        .all(|t| t.health == TargetHealth::Up && !t.draining && t.flows == 0));
    let last = sent.last().expect("a count report").1;
    assert_eq!(jap.reported, Some(last));
    let mut to: Vec<_> = sent.iter().map(|s| s.0).collect();
    to.sort();
    to.dedup();
    let mut listed = jap.reported_to.to_vec();
    listed.sort();
    assert_eq!(listed, to);
    assert!(jap.acked_by.is_empty());

    // As RAP: a JAP's count, with the age of its report.
    let report = Message::CountReport {
        group: g(),
        count: 9,
        coord: Coord::default(),
    };
    p.handle_message(T0, target(0), &from_peer(5, 1, &report));
    let rap = p
        .group_report(T0 + 2_500 * MS, &g())
        .rap
        .expect("a RAP view");
    assert_eq!(rap.entries.as_slice(), &[(5, 9, 2_500)]);
    assert_eq!(rap.entries_total, 1);

    // As IAP: a lookup in flight, then the list a RAP answered, with its
    // time to live.
    let client = Endpoint {
        ip: Ipv4([198, 19, 200, 1]),
        port: 4000,
    };
    let mut q = proxy(1, 40);
    q.handle_client_packet(T0, g(), client, b"x");
    let iap = q.group_report(T0, &g()).iap.expect("an IAP view");
    assert!(iap.lookup_pending && !iap.cached && iap.japs.is_empty());
    let asked = drain(&mut q)
        .into_iter()
        .find_map(|t| match t {
            Transmit::Proxy { to, bytes } => match wire::parse(&bytes).ok()?.message {
                Message::Lookup { .. } => Some(to),
                _ => None,
            },
            _ => None,
        })
        .expect("a lookup");
    let mut list = heapless::Vec::new();
    list.push(RankedJap { jap: 7, count: 4 }).unwrap();
    let answer = Message::JapList {
        group: g(),
        japs: list,
        ttl_s: 60,
    };
    q.handle_message(T0 + MS, target(0), &from_peer(asked, 10, &answer));
    assert_eq!(q.counters.wire, Default::default(), "accepted");
    let iap = q
        .group_report(T0 + 11 * SEC, &g())
        .iap
        .expect("an IAP view");
    assert_eq!(iap.japs.as_slice(), &[(7, 4)]);
    assert!(!iap.lookup_pending);
    let ttl_left = iap.expires_in_ms;
    assert!(
        (48_000..=49_001).contains(&ttl_left),
        "60 s from the answer, 11 s on: {ttl_left}"
    );
}

#[test]
fn a_group_the_deployment_does_not_serve_is_reported_as_such() {
    let p = proxy(1, 8);
    let other = Group { port: 54, ..g() };
    let r = p.group_report(T0, &other);
    assert!(!r.served);
    assert!(r.iap.is_none() && r.jap.is_none() && r.rap.is_none());
}

#[test]
fn long_lists_are_cut_to_fit_and_counted_in_full() {
    let mut p = proxy(1, 40);
    for i in 1..=40u8 {
        join(&mut p, i, u64::from(i));
    }
    let jap = p.group_report(T0, &g()).jap.unwrap();
    assert_eq!(jap.targets.len(), crate::status::REPORT_TARGETS);
    assert_eq!(jap.targets_total, 40);
    assert_eq!(jap.members, 40);
}

/// Answers each lookup `p` sends with an empty list (no member known), until
/// it asks no more.
fn answer_every_lookup_empty(p: &mut Proxy) {
    let empty = Message::JapList {
        group: g(),
        japs: heapless::Vec::new(),
        ttl_s: 60,
    };
    for seq in 10.. {
        let asked = drain(p).into_iter().find_map(|t| match t {
            Transmit::Proxy { to, bytes } => match wire::parse(&bytes).ok()?.message {
                Message::Lookup { .. } => Some(to),
                _ => None,
            },
            _ => None,
        });
        let Some(asked) = asked else { break };
        p.handle_message(T0 + MS, target(0), &from_peer(asked, seq, &empty));
        assert!(seq < 10 + 2 * MAX_K as u64, "a lookup per RAP at most");
    }
}

#[test]
fn a_member_joining_here_ends_this_proxys_negative_entry_for_its_group() {
    let mut p = proxy(1, 40);
    let client = Endpoint {
        ip: Ipv4([198, 19, 200, 1]),
        port: 4000,
    };
    p.handle_client_packet(T0, g(), client, b"x");
    // Every RAP answers empty: a negative entry, packets dropped meanwhile.
    answer_every_lookup_empty(&mut p);
    let iap = p
        .group_report(T0 + 2 * MS, &g())
        .iap
        .expect("a negative entry");
    assert!(iap.japs.is_empty() && !iap.lookup_pending, "{iap:?}");
    p.handle_client_packet(T0 + 3 * MS, g(), client, b"y");
    assert_eq!(p.counters.iap.negative_hits, 1, "dropped while negative");
    // A member joins here: the entry goes; the next packet looks up again.
    join(&mut p, 1, 1);
    assert!(p.group_report(T0 + 4 * MS, &g()).iap.is_none());
    let lookups = p.counters.iap.lookups_sent;
    p.handle_client_packet(T0 + 5 * MS, g(), client, b"z");
    assert_eq!(p.counters.iap.negative_hits, 1);
    assert_eq!(p.counters.iap.lookups_sent, lookups + 1);
}

#[test]
fn a_join_while_a_lookup_is_out_leaves_no_negative_entry() {
    let mut p = proxy(1, 40);
    let client = Endpoint {
        ip: Ipv4([198, 19, 200, 1]),
        port: 4000,
    };
    p.handle_client_packet(T0, g(), client, b"x");
    // The member joins here while the lookup is out; the RAPs have not had
    // its report yet and answer empty, one after the other.
    join(&mut p, 1, 1);
    answer_every_lookup_empty(&mut p);
    assert_eq!(p.counters.iap.lookups_failed, 1, "every RAP said no member");
    assert!(
        p.group_report(T0 + 2 * MS, &g()).iap.is_none(),
        "no negative entry while this proxy holds a member"
    );
    let lookups = p.counters.iap.lookups_sent;
    p.handle_client_packet(T0 + 3 * MS, g(), client, b"y");
    assert_eq!(p.counters.iap.negative_hits, 0);
    assert_eq!(p.counters.iap.lookups_sent, lookups + 1, "looked up again");
}
