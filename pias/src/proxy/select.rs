//! JAP selection, the one function the RAP (first packet) and the IAP (every
//! later packet) both apply, so a client's flow stays on the JAP it started on.

use super::Policy;
use crate::addr::Endpoint;
use crate::ring::mix64;
use crate::wire::{ProxyId, RankedJap};

/// The JAP for `client`'s packet among `japs` (as the RAP ranked them),
/// skipping those in `tried` and those `live` says are down.
///
/// - `Proximity`: the first candidate (the RAP ranked them by distance to the IAP).
/// - `Load`: weighted rendezvous hashing of the client's endpoint, weights the
///   JAPs' counts: clients spread in proportion to members, and a client maps
///   to the same JAP from any IAP holding the same list.
/// - `ClientHash`: rendezvous hashing of the client's address: the same JAP for
///   all of a host's flows, from any IAP.
/// - `Random`: rendezvous hashing of the client's endpoint salted with the
///   IAP's id: random over clients, stable for one client at one IAP.
pub fn pick(
    policy: Policy,
    japs: &[RankedJap],
    client: Endpoint,
    iap: ProxyId,
    tried: &[ProxyId],
    live: impl Fn(ProxyId) -> bool,
) -> Option<ProxyId> {
    let mut candidates = japs
        .iter()
        .filter(|r| !tried.contains(&r.jap) && live(r.jap));
    let flow = (u64::from(client.ip.to_u32()) << 16) | u64::from(client.port);
    match policy {
        Policy::Proximity => candidates.next().map(|r| r.jap),
        Policy::ClientHash => {
            let host = u64::from(client.ip.to_u32());
            candidates
                .max_by_key(|r| (mix64(host ^ mix64(u64::from(r.jap))), r.jap))
                .map(|r| r.jap)
        }
        Policy::Random => {
            let salt = mix64(u64::from(iap) ^ 0x7261_6e64);
            candidates
                .max_by_key(|r| (mix64(flow ^ salt ^ mix64(u64::from(r.jap))), r.jap))
                .map(|r| r.jap)
        }
        Policy::Load => {
            let mut best: Option<(f64, ProxyId)> = None;
            for r in candidates {
                let score = weighted_score(mix64(flow ^ mix64(u64::from(r.jap))), r.count);
                if best.is_none_or(|(s, j)| score > s || (score == s && r.jap > j)) {
                    best = Some((score, r.jap));
                }
            }
            best.map(|(_, j)| j)
        }
    }
}

/// Weighted rendezvous score `w / -ln(u)` with `u` uniform in (0, 1) from
/// `hash`: the largest wins with probability `w / Σw`.
pub(super) fn weighted_score(hash: u64, weight: u32) -> f64 {
    let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let w = f64::from(weight.max(1));
    w / -libm::log(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Ipv4;

    fn client(i: u32) -> Endpoint {
        Endpoint {
            ip: Ipv4::from_u32(0xc613_0000 + i),
            port: 40000 + (i % 7) as u16,
        }
    }

    fn list(counts: &[(ProxyId, u32)]) -> heapless::Vec<RankedJap, 8> {
        counts
            .iter()
            .map(|&(jap, count)| RankedJap { jap, count })
            .collect()
    }

    #[test]
    fn load_spreads_clients_in_proportion_to_counts() {
        let japs = list(&[(3, 1), (5, 2), (9, 5)]);
        let mut hits = [0u32; 3];
        let n = 16_000;
        for i in 0..n {
            match pick(Policy::Load, &japs, client(i), 1, &[], |_| true) {
                Some(3) => hits[0] += 1,
                Some(5) => hits[1] += 1,
                Some(9) => hits[2] += 1,
                other => panic!("picked {other:?}"),
            }
        }
        for (h, w) in hits.iter().zip([1.0, 2.0, 5.0]) {
            let share = f64::from(*h) / f64::from(n);
            assert!(
                (share - w / 8.0).abs() < 0.02,
                "share {share} for weight {w}"
            );
        }
    }

    #[test]
    fn a_client_keeps_its_jap_from_any_iap_and_when_its_order_changes() {
        let a = list(&[(3, 4), (5, 4), (9, 4)]);
        let b = list(&[(9, 4), (3, 4), (5, 4)]);
        for i in 0..500 {
            for policy in [Policy::Load, Policy::ClientHash] {
                let x = pick(policy, &a, client(i), 1, &[], |_| true);
                assert_eq!(x, pick(policy, &b, client(i), 2, &[], |_| true));
            }
        }
    }

    #[test]
    fn tried_and_dead_japs_are_skipped() {
        let japs = list(&[(3, 1), (5, 1), (9, 1)]);
        for policy in [
            Policy::Proximity,
            Policy::Load,
            Policy::ClientHash,
            Policy::Random,
        ] {
            for i in 0..100 {
                let got = pick(policy, &japs, client(i), 1, &[3], |j| j != 9);
                assert_eq!(got, Some(5), "{policy:?}");
                assert_eq!(pick(policy, &japs, client(i), 1, &[3, 5], |j| j != 9), None);
            }
        }
        assert_eq!(
            pick(Policy::Proximity, &japs, client(0), 1, &[], |_| true),
            Some(3)
        );
    }
}
