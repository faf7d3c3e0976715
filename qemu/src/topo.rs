//! The multi-POP lab's topology file (TOML) and the address plan derived from
//! it. `lab/three-pops.toml` is the default and documents the format.
//!
//! POP i (1-based, in file order): LAN 198.18.i.0/24, router .1, appliance .2,
//! client .10, targets .20 + k. Link n (1-based): 198.19.n.0/30, first POP .1,
//! second .2. Routes follow the path of least one-way delay (ties: fewer hops).

use crate::delayline;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// The default topology: three POPs in a triangle (10, 15 and 25 ms one way).
pub const THREE_POPS: &str = include_str!("../../lab/three-pops.toml");

pub const MAX_POPS: usize = 16;
pub const MAX_TARGETS: usize = 8;
pub const MAX_LINKS: usize = 64;
/// Longest POP name: it becomes part of interface names (15 bytes at most).
pub const MAX_NAME: usize = 10;

/// The anycast prefix every POP router sends to its own appliance.
pub const ANYCAST: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);
/// The A record every lab DNS server gives for `DNS_NAME`.
pub const DNS_NAME: &str = "pias.test";
pub const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
/// Each DNS server also answers this name with its own address.
pub const DNS_WHOAMI: &str = "whoami.test";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopo {
    pop: Vec<FilePop>,
    #[serde(default)]
    link: Vec<FileLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePop {
    name: String,
    #[serde(default)]
    targets: Vec<FileTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    services: Vec<Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLink {
    pops: [String; 2],
    delay_ms: u64,
    #[serde(default)]
    loss_pct: f64,
    #[serde(default = "default_queue")]
    queue: usize,
}

fn default_queue() -> usize {
    delayline::Params::default().queue
}

/// A service a target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// dnsmasq on port 53 (UDP and TCP).
    Dns,
    /// nginx on port 80.
    Http,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// 0-based within its POP.
    pub index: usize,
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pop {
    /// 1-based; the third octet of the POP's LAN, its node id and its cluster.
    pub index: u8,
    pub name: String,
    pub targets: Vec<Target>,
}

impl Pop {
    pub fn lan(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 0)
    }
    pub fn router_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 1)
    }
    pub fn appliance_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 2)
    }
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 10)
    }
    pub fn target_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 20 + k as u8)
    }
    /// The appliance's MAC on the POP bridge.
    pub fn appliance_mac(&self) -> [u8; 6] {
        [0x52, 0x54, 0x00, 0x00, self.index, 0x02]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// 1-based; the third octet of 198.19.n.0/30.
    pub index: u8,
    /// 0-based indices into `Topology::pops`.
    pub a: usize,
    pub b: usize,
    pub params: delayline::Params,
}

impl Link {
    /// The router address on side `a` (.1) or `b` (.2).
    pub fn ip(&self, side_a: bool) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.index, if side_a { 1 } else { 2 })
    }
    /// The far end of the link seen from POP `from` (0-based).
    pub fn other(&self, from: usize) -> usize {
        if from == self.a {
            self.b
        } else {
            self.a
        }
    }
}

/// One hop of a route: leave POP `from` over `link` towards `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub link: usize,
    pub next: usize,
}

/// A path's cost (one-way delay, hops) and its first hop.
type Reach = Option<((Duration, usize), Option<Hop>)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub pops: Vec<Pop>,
    pub links: Vec<Link>,
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Topology {
    /// The default three-POP topology.
    pub fn three_pops() -> Result<Topology> {
        Topology::parse(THREE_POPS).context("the embedded lab/three-pops.toml")
    }

    pub fn load(path: &Path) -> Result<Topology> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Topology::parse(&text).with_context(|| format!("topology {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Topology> {
        let f: FileTopo = toml::from_str(text).context("topology TOML")?;
        if f.pop.is_empty() || f.pop.len() > MAX_POPS {
            bail!("pop: {} POPs, expected 1..={MAX_POPS}", f.pop.len());
        }
        if f.link.len() > MAX_LINKS {
            bail!("link: {} links, at most {MAX_LINKS}", f.link.len());
        }
        let mut pops: Vec<Pop> = Vec::new();
        for (i, p) in f.pop.iter().enumerate() {
            if !name_ok(&p.name) {
                bail!(
                    "pop[{i}].name {:?}: 1..={MAX_NAME} bytes of a-z, 0-9 and -",
                    p.name
                );
            }
            if pops.iter().any(|q| q.name == p.name) {
                bail!("pop[{i}].name {:?} appears twice", p.name);
            }
            if p.targets.len() > MAX_TARGETS {
                bail!(
                    "pop[{i}].targets: {} targets, at most {MAX_TARGETS}",
                    p.targets.len()
                );
            }
            let mut targets = Vec::new();
            for (k, t) in p.targets.iter().enumerate() {
                let mut services = t.services.clone();
                services.dedup();
                if services.is_empty() {
                    bail!("pop[{i}].targets[{k}].services is empty");
                }
                targets.push(Target { index: k, services });
            }
            pops.push(Pop {
                index: i as u8 + 1,
                name: p.name.clone(),
                targets,
            });
        }
        let find = |n: &str, at: String| -> Result<usize> {
            pops.iter()
                .position(|p| p.name == n)
                .with_context(|| format!("{at}: no POP named {n:?}"))
        };
        let mut links: Vec<Link> = Vec::new();
        for (n, l) in f.link.iter().enumerate() {
            let a = find(&l.pops[0], format!("link[{n}].pops"))?;
            let b = find(&l.pops[1], format!("link[{n}].pops"))?;
            if a == b {
                bail!("link[{n}] joins {:?} to itself", l.pops[0]);
            }
            if links
                .iter()
                .any(|o| (o.a, o.b) == (a, b) || (o.a, o.b) == (b, a))
            {
                bail!(
                    "link[{n}]: {:?} and {:?} are already linked",
                    l.pops[0],
                    l.pops[1]
                );
            }
            let params = delayline::Params {
                delay: Duration::from_millis(l.delay_ms),
                loss_pct: l.loss_pct,
                queue: l.queue,
            };
            params.validate().with_context(|| format!("link[{n}]"))?;
            links.push(Link {
                index: n as u8 + 1,
                a,
                b,
                params,
            });
        }
        let topo = Topology { pops, links };
        for j in 1..topo.pops.len() {
            if topo.first_hop(0, j).is_none() {
                bail!(
                    "link: POP {:?} cannot reach POP {:?} (the links leave it apart)",
                    topo.pops[0].name,
                    topo.pops[j].name
                );
            }
        }
        Ok(topo)
    }

    pub fn pop(&self, name: &str) -> Option<usize> {
        self.pops.iter().position(|p| p.name == name)
    }

    /// Least (one-way delay, hops) from `from` to every POP, and the first
    /// hop of that path (Dijkstra over at most `MAX_POPS` nodes).
    fn shortest(&self, from: usize) -> Vec<Reach> {
        let n = self.pops.len();
        let mut best: Vec<Reach> = vec![None; n];
        let mut done = vec![false; n];
        if from < n {
            best[from] = Some(((Duration::ZERO, 0), None));
        }
        loop {
            let cur = (0..n)
                .filter(|&i| !done[i])
                .filter_map(|i| best[i].map(|(c, _)| (c, i)))
                .min();
            let Some((cost, u)) = cur else {
                break;
            };
            done[u] = true;
            for (li, l) in self.links.iter().enumerate() {
                if l.a != u && l.b != u {
                    continue;
                }
                let v = l.other(u);
                let c = (cost.0 + l.params.delay, cost.1 + 1);
                let hop = match best[u] {
                    Some((_, Some(h))) => h,
                    _ => Hop { link: li, next: v },
                };
                if best[v].is_none_or(|(old, _)| c < old) {
                    best[v] = Some((c, Some(hop)));
                }
            }
        }
        best
    }

    /// The first hop from POP `from` towards POP `to` (0-based); `None` when
    /// `from == to` or unreachable.
    pub fn first_hop(&self, from: usize, to: usize) -> Option<Hop> {
        self.shortest(from).get(to).copied().flatten()?.1
    }

    /// The one-way delay of the routed path between two POPs.
    pub fn path_delay(&self, from: usize, to: usize) -> Option<Duration> {
        self.shortest(from)
            .get(to)
            .copied()
            .flatten()
            .map(|((d, _), _)| d)
    }
}

/// The appliance config of a POP: the example config (as `Lab::config_for`),
/// with node id and cluster = the POP's index, named after the POP, on the
/// POP's LAN behind its router, managed from anywhere in 198.18.0.0/15.
/// The deployment's secrets for one lab run: fresh random keys each time.
#[derive(Clone)]
pub struct LabKeys {
    /// The deployment key (proxy to proxy).
    pub deployment: pias::wire::Key,
    /// The group secret every group's key derives from.
    pub group_secret: pias::wire::Key,
    /// The appliances' management key.
    pub management: pias::wire::Key,
}

impl LabKeys {
    /// Three fresh random keys (from the OS's generator).
    pub fn random() -> anyhow::Result<LabKeys> {
        Ok(LabKeys {
            deployment: crate::lab::random_key()?,
            group_secret: crate::lab::random_key()?,
            management: crate::lab::random_key()?,
        })
    }

    /// The key a service owner gets for `group`.
    pub fn group_key(&self, group: &pias::Group) -> pias::wire::Key {
        pias::keys::group_key(&self.group_secret, group)
    }
}

/// The config of `pop`'s appliance in `topo`: id = cluster = the POP's index,
/// 198.18.i.2/24 behind the router .1, every POP's appliance in the
/// deployment, the run's keys, management from 198.18.0.0/15.
pub fn topo_config(topo: &Topology, pop: &Pop, keys: &LabKeys) -> pias::Config {
    let mut cfg = crate::Lab::example_config_for(usize::from(pop.index.saturating_sub(1)));
    cfg.node.id = u32::from(pop.index);
    cfg.node.cluster = u32::from(pop.index);
    cfg.node.name = pop.name.as_str().try_into().unwrap_or_default();
    cfg.interfaces[0].address = pias::Ipv4Prefix::new(pias::Ipv4(pop.appliance_ip().octets()), 24);
    cfg.interfaces[0].gateway = Some(pias::Ipv4(pop.router_ip().octets()));
    cfg.management.allow.clear();
    let _ = cfg
        .management
        .allow
        .push(pias::Ipv4Prefix::new(pias::Ipv4([198, 18, 0, 0]), 15));
    cfg.management.key = keys.management.clone();
    cfg.deployment.key = keys.deployment.clone();
    cfg.deployment.group_secret = keys.group_secret.clone();
    // The second DNS group is spread by load; the others follow the default.
    let _ = cfg.deployment.groups.push(pias::config::GroupOverride {
        group: crate::pops::DNS_LOAD_GROUP,
        policy: pias::proxy::Policy::Load,
        band_pct: cfg.deployment.band_pct,
    });
    cfg.deployment.proxies = topo
        .pops
        .iter()
        .map(|p| pias::config::ProxyEntry {
            id: u32::from(p.index),
            cluster: u32::from(p.index),
            address: pias::Ipv4(p.appliance_ip().octets()),
        })
        .collect();
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topology_parses_and_routes_by_delay() {
        let t = Topology::parse(THREE_POPS).unwrap();
        assert_eq!(t.pops.len(), 3);
        assert_eq!(t.links.len(), 3);
        assert_eq!(t.pops[2].target_ip(1), Ipv4Addr::new(198, 18, 3, 21));
        assert_eq!(t.path_delay(0, 1), Some(Duration::from_millis(10)));
        assert_eq!(t.path_delay(1, 2), Some(Duration::from_millis(15)));
        // 25 direct or 10 + 15 through pop2: the tie goes to fewer hops.
        assert_eq!(t.path_delay(0, 2), Some(Duration::from_millis(25)));
        assert_eq!(t.first_hop(0, 2), Some(Hop { link: 2, next: 2 }));
        assert_eq!(t.first_hop(0, 0), None);
    }

    #[test]
    fn a_longer_direct_link_is_bypassed() {
        let t = Topology::parse(
            r#"
            pop = [{ name = "a" }, { name = "b" }, { name = "c" }]
            link = [{ pops = ["a", "b"], delay_ms = 5 },
                    { pops = ["b", "c"], delay_ms = 5 },
                    { pops = ["a", "c"], delay_ms = 30 }]
            "#,
        )
        .unwrap();
        assert_eq!(t.first_hop(0, 2), Some(Hop { link: 0, next: 1 }));
        assert_eq!(t.first_hop(2, 0), Some(Hop { link: 1, next: 1 }));
        assert_eq!(t.path_delay(0, 2), Some(Duration::from_millis(10)));
    }

    #[test]
    fn bad_files_are_refused_with_the_field() {
        for (text, needle) in [
            ("pop = []", "expected 1..="),
            (r#"pop = [{ name = "A" }]"#, "pop[0].name"),
            (r#"pop = [{ name = "a" }, { name = "a" }]"#, "twice"),
            (r#"pop = [{ name = "a" }, { name = "b" }]"#, "cannot reach"),
            (
                r#"pop = [{ name = "a" }]
                   link = [{ pops = ["a", "z"], delay_ms = 1 }]"#,
                "no POP named \"z\"",
            ),
            (
                r#"pop = [{ name = "a" }]
                   link = [{ pops = ["a", "a"], delay_ms = 1 }]"#,
                "itself",
            ),
            (
                r#"pop = [{ name = "a" }, { name = "b" }]
                   link = [{ pops = ["a", "b"], delay_ms = 1, loss_pct = 200.0 }]"#,
                "loss",
            ),
            (
                r#"pop = [{ name = "a", targets = [{ services = [] }] }]"#,
                "services is empty",
            ),
            (
                r#"pop = [{ name = "a", targets = [{ services = ["ftp"] }] }]"#,
                "ftp",
            ),
            (r#"pop = [{ name = "a", colour = 1 }]"#, "colour"),
        ] {
            let err = format!("{:#}", Topology::parse(text).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn config_is_addressed_for_its_pop() {
        let t = Topology::three_pops().unwrap();
        let c = topo_config(&t, &t.pops[2], &LabKeys::random().unwrap());
        assert_eq!(c.node.id, 3);
        assert_eq!(c.node.cluster, 3);
        assert_eq!(c.node.name.as_str(), "pop3");
        assert_eq!(c.interfaces[0].address.to_string(), "198.18.3.2/24");
        assert_eq!(
            c.interfaces[0].gateway.map(|g| g.to_string()).as_deref(),
            Some("198.18.3.1")
        );
        assert_eq!(c.management.allow[0].to_string(), "198.18.0.0/15");
        let p = pias::proxy::ProxyConfig::from_config(&c);
        let policy = |g| p.group_policy(g).map(|g| g.policy);
        assert_eq!(
            policy(&crate::pops::DNS_LOAD_GROUP),
            Some(pias::proxy::Policy::Load)
        );
        assert_eq!(
            policy(&crate::pops::DNS_GROUP),
            Some(pias::proxy::Policy::Proximity)
        );
        pias_image::encode(&c).unwrap();
    }
}
