//! JAP choice at start-up: before any RTT probe has moved a coordinate, a
//! client whose IAP is itself a JAP of the group is served there (proximity).

use pias::proxy::{Policy, MS};
use pias_sim::{five_pops as pops, scenario as sim, scenario_group as group, Pos};

#[test]
fn with_fresh_coordinates_an_iap_that_is_a_jap_serves_its_own_clients() {
    let mut s = sim(Policy::Proximity);
    let key = pias_sim::GROUP_KEY;
    let at: Vec<Pos> = pops()
        .iter()
        .map(|(p, _)| Pos(p.0 + 0.5, p.1 + 0.5))
        .collect();
    let targets: Vec<usize> = at
        .iter()
        .map(|&p| s.add_target(group(), key.clone(), p))
        .collect();
    for &t in &targets {
        s.register(t, true);
    }
    s.run_for(200 * MS);
    for (i, &p) in at.iter().enumerate() {
        let c = s.add_client(p);
        let before: Vec<usize> = targets
            .iter()
            .map(|&t| s.targets[t].received.len())
            .collect();
        s.client_send(c, group(), b"hello");
        s.run_for(300 * MS);
        let got: Vec<usize> = targets
            .iter()
            .zip(&before)
            .map(|(&t, b)| s.targets[t].received.len() - b)
            .collect();
        let mut want = vec![0; targets.len()];
        want[i] = 1;
        assert_eq!(got, want, "client at POP {i}: which targets got its packet");
    }
}
