//! Which proxies are a group's RAPs, known before the simulator starts, so
//! that each proxy's RAP tables can be sized for what it will hold (the core
//! reserves and writes every table at start, so a table sized for the
//! busiest proxy would be resident in all of them).

use pias::addr::Group;
use pias::proxy::PeerInfo;
use pias::roster::Roster;
use pias::wire::ProxyId;
use pias_sim::Pos;

/// The roster `pias_sim::Sim::new` builds for `pops`: ids from 1 in POP
/// order, each POP one cluster.
pub fn roster(pops: &[(Pos, usize)]) -> Roster {
    let mut peers = Vec::new();
    let mut id: ProxyId = 1;
    for (c, &(_, n)) in pops.iter().enumerate() {
        for _ in 0..n {
            peers.push(PeerInfo {
                id,
                cluster: c as u32,
            });
            id += 1;
        }
    }
    Roster::new(&peers, peers.len())
}

/// The `k` RAPs of `g` among the proxies `up` holds for, in the order
/// `Proxy::raps_of` finds them (the same ring walk).
pub fn raps(roster: &Roster, g: &Group, k: usize, up: impl Fn(ProxyId) -> bool) -> Vec<ProxyId> {
    let mut out = vec![0; k];
    let n = roster.ring().raps(g, k, up, &mut out);
    out.truncate(n);
    out
}
