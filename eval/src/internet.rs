//! A multi-ISP POP graph and policy routing for the stretch experiment (paper
//! section 4.3). ISPs peer wherever they share a city. An inter-domain path
//! takes the shortest AS path (ties to the lower ISP index), and inside each
//! ISP leaves by the exit nearest to where it entered (hot potato); intra-ISP
//! legs are shortest paths over great-circle link lengths.

use crate::topology::{great_circle_km, Pop, Topology};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

pub struct Internet {
    pub pops: Vec<Pop>,
    pub isps: Vec<String>,
    isp_of: Vec<usize>,
    /// For each POP, km to every POP of the same ISP (f64::INFINITY if unreachable).
    intra: Vec<HashMap<usize, f64>>,
    /// Peering points between two ISPs: (POP in the first, POP in the second).
    peerings: HashMap<(usize, usize), Vec<(usize, usize)>>,
    /// next_isp[a][b]: the neighbour of ISP a on its shortest AS path to b.
    next_isp: Vec<Vec<Option<usize>>>,
}

#[derive(Debug)]
pub enum BuildError {
    NoIsps,
    /// No chain of shared cities links this ISP to the first one.
    Isolated {
        isp: String,
    },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::NoIsps => f.write_str("no ISP topologies given"),
            BuildError::Isolated { isp } => write!(f, "ISP {isp} shares no city with the others (no peering): the internet is disconnected"),
        }
    }
}

impl std::error::Error for BuildError {}

/// A distance ordered by `total_cmp`, for the Dijkstra heap.
#[derive(PartialEq)]
struct Dist(f64);
impl Eq for Dist {}
impl PartialOrd for Dist {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Dist {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

impl Internet {
    /// Merges ISP topologies (one per ISP, each connected).
    pub fn build(topos: Vec<Topology>) -> Result<Internet, BuildError> {
        if topos.is_empty() {
            return Err(BuildError::NoIsps);
        }
        let mut pops = Vec::new();
        let mut isp_of = Vec::new();
        let mut isps = Vec::new();
        let mut adj: Vec<Vec<(usize, f64)>> = Vec::new();
        for (i, t) in topos.into_iter().enumerate() {
            let base = pops.len();
            isps.push(
                t.pops
                    .first()
                    .map_or_else(|| format!("isp{i}"), |p| p.isp.clone()),
            );
            for p in t.pops {
                pops.push(p);
                isp_of.push(i);
                adj.push(Vec::new());
            }
            for l in t.links {
                adj[base + l.a].push((base + l.b, l.km));
                adj[base + l.b].push((base + l.a, l.km));
            }
        }
        let intra = (0..pops.len()).map(|s| dijkstra(&adj, s)).collect();
        let mut peerings: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
        let mut by_city: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in pops.iter().enumerate() {
            by_city.entry(p.city.as_str()).or_default().push(i);
        }
        for members in by_city.values() {
            for &a in members {
                for &b in members {
                    if isp_of[a] != isp_of[b] {
                        peerings
                            .entry((isp_of[a], isp_of[b]))
                            .or_default()
                            .push((a, b));
                    }
                }
            }
        }
        for v in peerings.values_mut() {
            v.sort_unstable();
        }
        let n = isps.len();
        let mut next_isp = vec![vec![None; n]; n];
        for dst in 0..n {
            // BFS from the destination; each ISP's next hop is its predecessor towards dst.
            let mut dist = vec![usize::MAX; n];
            dist[dst] = 0;
            let mut q = VecDeque::from([dst]);
            while let Some(x) = q.pop_front() {
                for y in 0..n {
                    if dist[y] == usize::MAX && peerings.contains_key(&(x, y)) {
                        dist[y] = dist[x] + 1;
                        q.push_back(y);
                    }
                }
            }
            for src in 0..n {
                if src == dst || dist[src] == usize::MAX {
                    continue;
                }
                next_isp[src][dst] =
                    (0..n).find(|&y| dist[y] + 1 == dist[src] && peerings.contains_key(&(src, y)));
            }
            if let Some(lost) = (0..n).find(|&i| dist[i] == usize::MAX) {
                return Err(BuildError::Isolated {
                    isp: isps[lost].clone(),
                });
            }
        }
        Ok(Internet {
            pops,
            isps,
            isp_of,
            intra,
            peerings,
            next_isp,
        })
    }

    fn intra_km(&self, a: usize, b: usize) -> f64 {
        if a == b {
            return 0.0;
        }
        self.intra[a].get(&b).copied().unwrap_or(f64::INFINITY)
    }

    /// Length in km of the policy-routed path from POP `s` to POP `d`.
    pub fn path_km(&self, s: usize, d: usize) -> f64 {
        let mut cur = s;
        let mut total = 0.0;
        let target_isp = self.isp_of[d];
        for _ in 0..self.isps.len() {
            let here = self.isp_of[cur];
            if here == target_isp {
                return total + self.intra_km(cur, d);
            }
            let Some(next) = self.next_isp[here][target_isp] else {
                return f64::INFINITY;
            };
            let Some(exits) = self.peerings.get(&(here, next)) else {
                return f64::INFINITY;
            };
            // Hot potato: the exit nearest to where we are.
            let Some(&(a, b)) = exits
                .iter()
                .min_by(|x, y| self.intra_km(cur, x.0).total_cmp(&self.intra_km(cur, y.0)))
            else {
                return f64::INFINITY;
            };
            let (pa, pb) = (&self.pops[a], &self.pops[b]);
            total += self.intra_km(cur, a) + great_circle_km(pa.lat, pa.lon, pb.lat, pb.lon);
            cur = b;
        }
        f64::INFINITY
    }

    /// The proxy nearest `pop` by routed distance (native anycast's choice);
    /// ties go to the POP itself, then to the POP's own ISP (a route inside
    /// one's own network is preferred to an equally long one through a peer).
    pub fn nearest(&self, pop: usize, proxies: &[usize]) -> Option<usize> {
        let rank = |p: usize| (p != pop, self.isp_of[p] != self.isp_of[pop], p);
        proxies.iter().copied().min_by(|&a, &b| {
            self.path_km(pop, a)
                .total_cmp(&self.path_km(pop, b))
                .then(rank(a).cmp(&rank(b)))
        })
    }

    /// PIAS path / direct path for a client at POP `c` and a target at POP `t`
    /// (client -> IAP -> JAP -> target); `None` when the direct path is empty.
    pub fn stretch(&self, c: usize, t: usize, proxies: &[usize]) -> Option<f64> {
        let direct = self.path_km(c, t);
        if direct <= 0.0 || !direct.is_finite() {
            return None;
        }
        let iap = self.nearest(c, proxies)?;
        let jap = self.nearest(t, proxies)?;
        Some((self.path_km(c, iap) + self.path_km(iap, jap) + self.path_km(jap, t)) / direct)
    }
}

fn dijkstra(adj: &[Vec<(usize, f64)>], s: usize) -> HashMap<usize, f64> {
    let mut dist: HashMap<usize, f64> = HashMap::from([(s, 0.0)]);
    let mut heap = BinaryHeap::from([Reverse((Dist(0.0), s))]);
    while let Some(Reverse((Dist(d), n))) = heap.pop() {
        if d > dist.get(&n).copied().unwrap_or(f64::INFINITY) {
            continue;
        }
        for &(m, w) in &adj[n] {
            let nd = d + w;
            if nd < dist.get(&m).copied().unwrap_or(f64::INFINITY) {
                dist.insert(m, nd);
                heap.push(Reverse((Dist(nd), m)));
            }
        }
    }
    dist
}
