//! POP-level topologies. A `Topology` is one ISP's POPs (with coordinates)
//! and its inter-POP links (with great-circle lengths). Loaders never return a
//! silent partial graph: a node without coordinates or a disconnected graph is
//! an error naming it, unless the caller asks to drop unlocated nodes, in which
//! case the dropped names are returned for the caller to report.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct Pop {
    pub isp: String,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    pub a: usize,
    pub b: usize,
    pub km: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    pub pops: Vec<Pop>,
    pub links: Vec<Link>,
}

/// What to do with nodes that have no coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlocated {
    /// Refuse the file, naming the first such node.
    Refuse,
    /// Leave them out and return their names.
    Drop,
}

#[derive(Debug)]
pub enum TopoError {
    Io {
        file: PathBuf,
        err: std::io::Error,
    },
    Xml {
        file: PathBuf,
        msg: String,
    },
    BadNode {
        file: PathBuf,
        node: String,
        why: String,
    },
    BadLine {
        file: PathBuf,
        line: usize,
        why: String,
    },
    Unlocated {
        file: PathBuf,
        node: String,
        count: usize,
    },
    Disconnected {
        file: PathBuf,
        node: String,
        reached: usize,
        total: usize,
    },
    Empty {
        file: PathBuf,
    },
}

impl fmt::Display for TopoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopoError::Io { file, err } => write!(f, "{}: {err}", file.display()),
            TopoError::Xml { file, msg } => write!(f, "{}: not GraphML: {msg}", file.display()),
            TopoError::BadNode { file, node, why } => write!(f, "{}: node {node}: {why}", file.display()),
            TopoError::BadLine { file, line, why } => write!(f, "{}:{line}: {why}", file.display()),
            TopoError::Unlocated { file, node, count } => write!(
                f,
                "{}: node {node} has no coordinates ({count} such nodes; drop them explicitly to go on)",
                file.display()
            ),
            TopoError::Disconnected { file, node, reached, total } => write!(
                f,
                "{}: graph is disconnected: node {node} is unreachable ({reached} of {total} nodes reachable)",
                file.display()
            ),
            TopoError::Empty { file } => write!(f, "{}: no nodes", file.display()),
        }
    }
}

impl std::error::Error for TopoError {}

/// Great-circle distance in km (haversine, mean Earth radius).
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

fn read(path: &Path) -> Result<String, TopoError> {
    std::fs::read_to_string(path).map_err(|err| TopoError::Io {
        file: path.to_path_buf(),
        err,
    })
}

impl Topology {
    fn add_link(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (a, b) = (a.min(b), a.max(b));
        if self.links.iter().any(|l| l.a == a && l.b == b) {
            return;
        }
        let (pa, pb) = (&self.pops[a], &self.pops[b]);
        let km = great_circle_km(pa.lat, pa.lon, pb.lat, pb.lon);
        self.links.push(Link { a, b, km });
    }

    /// Refuses an empty or disconnected graph, naming an unreachable node.
    pub fn check_connected(&self, file: &Path) -> Result<(), TopoError> {
        if self.pops.is_empty() {
            return Err(TopoError::Empty {
                file: file.to_path_buf(),
            });
        }
        let mut adj = vec![Vec::new(); self.pops.len()];
        for l in &self.links {
            adj[l.a].push(l.b);
            adj[l.b].push(l.a);
        }
        let mut seen = vec![false; self.pops.len()];
        let mut queue = VecDeque::from([0]);
        seen[0] = true;
        while let Some(n) = queue.pop_front() {
            for &m in &adj[n] {
                if !seen[m] {
                    seen[m] = true;
                    queue.push_back(m);
                }
            }
        }
        let reached = seen.iter().filter(|s| **s).count();
        match seen.iter().position(|s| !*s) {
            None => Ok(()),
            Some(i) => Err(TopoError::Disconnected {
                file: file.to_path_buf(),
                node: self.pops[i].city.clone(),
                reached,
                total: self.pops.len(),
            }),
        }
    }
}

/// Loads a GraphML file whose nodes carry `Latitude`/`Longitude` (and a
/// `label`), as one ISP named `isp`. Returns the topology and the dropped nodes.
pub fn load_graphml(
    path: &Path,
    isp: &str,
    unlocated: Unlocated,
) -> Result<(Topology, Vec<String>), TopoError> {
    parse_graphml(&read(path)?, path, isp, unlocated)
}

/// `load_graphml` on text already read; `path` names it in errors.
pub fn parse_graphml(
    text: &str,
    path: &Path,
    isp: &str,
    unlocated: Unlocated,
) -> Result<(Topology, Vec<String>), TopoError> {
    let file = path.to_path_buf();
    let doc = roxmltree::Document::parse(text).map_err(|e| TopoError::Xml {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let mut key_of = HashMap::new();
    for k in doc.descendants().filter(|n| n.has_tag_name("key")) {
        if let (Some(id), Some(name)) = (k.attribute("id"), k.attribute("attr.name")) {
            if k.attribute("for").is_none_or(|f| f == "node") {
                key_of.insert(name.to_string(), id.to_string());
            }
        }
    }
    let (Some(lat_key), Some(lon_key)) = (key_of.get("Latitude"), key_of.get("Longitude")) else {
        return Err(TopoError::Xml {
            file,
            msg: "no Latitude/Longitude node keys".into(),
        });
    };
    let label_key = key_of.get("label");
    let mut topo = Topology::default();
    let mut index = HashMap::new();
    let mut dropped = Vec::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("node")) {
        let id = node.attribute("id").ok_or_else(|| TopoError::BadNode {
            file: file.clone(),
            node: "?".into(),
            why: "node without an id".into(),
        })?;
        let data = |key: &str| {
            node.children()
                .find(|c| c.has_tag_name("data") && c.attribute("key") == Some(key))
                .and_then(|c| c.text())
                .map(str::trim)
        };
        let name = label_key.and_then(|k| data(k)).unwrap_or(id).to_string();
        let parse = |v: Option<&str>, what: &str| -> Result<Option<f64>, TopoError> {
            match v {
                None => Ok(None),
                Some(s) => s.parse::<f64>().map(Some).map_err(|_| TopoError::BadNode {
                    file: file.clone(),
                    node: name.clone(),
                    why: format!("{what} {s:?} is not a number"),
                }),
            }
        };
        match (
            parse(data(lat_key), "Latitude")?,
            parse(data(lon_key), "Longitude")?,
        ) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(TopoError::BadNode {
                        file,
                        node: name,
                        why: format!("coordinates {lat},{lon} out of range"),
                    });
                }
                index.insert(id.to_string(), topo.pops.len());
                topo.pops.push(Pop {
                    isp: isp.to_string(),
                    city: name,
                    lat,
                    lon,
                });
            }
            _ => dropped.push(name),
        }
    }
    if unlocated == Unlocated::Refuse {
        if let Some(first) = dropped.first() {
            return Err(TopoError::Unlocated {
                file,
                node: first.clone(),
                count: dropped.len(),
            });
        }
    }
    for edge in doc.descendants().filter(|n| n.has_tag_name("edge")) {
        let (Some(s), Some(t)) = (edge.attribute("source"), edge.attribute("target")) else {
            return Err(TopoError::BadNode {
                file,
                node: "edge".into(),
                why: "edge without source/target".into(),
            });
        };
        if let (Some(&a), Some(&b)) = (index.get(s), index.get(t)) {
            topo.add_link(a, b);
        }
    }
    topo.check_connected(path)?;
    Ok((topo, dropped))
}

/// `City, ST<TAB>lat<TAB>lon` lines (Rocketfuel's derived city table).
pub fn load_cities(path: &Path) -> Result<HashMap<String, (f64, f64)>, TopoError> {
    parse_cities(&read(path)?, path)
}

/// `load_cities` on text already read; `path` names it in errors.
pub fn parse_cities(text: &str, path: &Path) -> Result<HashMap<String, (f64, f64)>, TopoError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| TopoError::BadLine {
            file: path.to_path_buf(),
            line: i + 1,
            why: why.to_string(),
        };
        let mut parts = line.split('\t');
        let (Some(city), Some(lat), Some(lon)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected City<TAB>lat<TAB>lon"));
        };
        let lat: f64 = lat
            .trim()
            .parse()
            .map_err(|_| bad("latitude is not a number"))?;
        let lon: f64 = lon
            .trim()
            .parse()
            .map_err(|_| bad("longitude is not a number"))?;
        out.insert(city.trim().to_string(), (lat, lon));
    }
    Ok(out)
}

/// Loads a Rocketfuel `.cch` map as POPs by city: routers in one city form a
/// POP, router links between cities become POP links. Routers at location `T`
/// (ambiguous: they connect several cities) are contracted: the located
/// routers around each connected group of them are linked to each other. So
/// are routers in cities without coordinates, when the caller drops those.
pub fn load_cch(
    path: &Path,
    cities: &HashMap<String, (f64, f64)>,
    isp: &str,
    unlocated: Unlocated,
) -> Result<(Topology, Vec<String>), TopoError> {
    parse_cch(&read(path)?, path, cities, isp, unlocated)
}

/// `load_cch` on text already read; `path` names it in errors.
pub fn parse_cch(
    text: &str,
    path: &Path,
    cities: &HashMap<String, (f64, f64)>,
    isp: &str,
    unlocated: Unlocated,
) -> Result<(Topology, Vec<String>), TopoError> {
    let mut city_of_router: HashMap<i64, String> = HashMap::new();
    let mut router_links: Vec<(i64, i64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('-') {
            continue; // external address lines
        }
        let bad = |why: String| TopoError::BadLine {
            file: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let mut tokens = line.split_whitespace();
        let uid: i64 = tokens
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("expected a router id first".into()))?;
        let loc = tokens
            .next()
            .and_then(|t| t.strip_prefix('@'))
            .ok_or_else(|| bad("expected @location second".into()))?;
        let Some(arrow) = line.find("->") else {
            return Err(bad("no '->' before the neighbour list".into()));
        };
        for t in line[arrow + 2..].split_whitespace() {
            if let Some(n) = t.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                let n: i64 = n
                    .parse()
                    .map_err(|_| bad(format!("neighbour {t} is not a router id")))?;
                router_links.push((uid, n));
            }
        }
        if loc != "T" {
            city_of_router.insert(uid, loc.replace('+', " "));
        }
    }
    let mut topo = Topology::default();
    let mut pop_of_city: HashMap<String, usize> = HashMap::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut names: Vec<&String> = city_of_router
        .values()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    names.sort();
    for city in names {
        match cities.get(city) {
            Some(&(lat, lon)) => {
                pop_of_city.insert(city.clone(), topo.pops.len());
                topo.pops.push(Pop {
                    isp: isp.to_string(),
                    city: city.clone(),
                    lat,
                    lon,
                });
            }
            None => dropped.push(city.clone()),
        }
    }
    if unlocated == Unlocated::Refuse {
        if let Some(first) = dropped.first() {
            return Err(TopoError::Unlocated {
                file: path.to_path_buf(),
                node: first.clone(),
                count: dropped.len(),
            });
        }
    }
    let pop = |r: &i64| {
        city_of_router
            .get(r)
            .and_then(|c| pop_of_city.get(c))
            .copied()
    };
    // With Unlocated::Drop, routers in dropped cities are contracted like `T` ones.
    let located = |r: &i64| pop(r).is_some();
    let mut ambiguous: HashMap<i64, Vec<i64>> = HashMap::new();
    for &(a, b) in &router_links {
        match (located(&a), located(&b)) {
            (true, true) => {
                if let (Some(pa), Some(pb)) = (pop(&a), pop(&b)) {
                    topo.add_link(pa, pb);
                }
            }
            _ => {
                ambiguous.entry(a).or_default().push(b);
                ambiguous.entry(b).or_default().push(a);
            }
        }
    }
    // Each connected group of ambiguous routers joins the POPs around it.
    let mut done: HashSet<i64> = HashSet::new();
    for &start in ambiguous.keys() {
        if located(&start) || !done.insert(start) {
            continue;
        }
        let mut border: Vec<usize> = Vec::new();
        let mut stack = vec![start];
        while let Some(r) = stack.pop() {
            for n in ambiguous.get(&r).map(Vec::as_slice).unwrap_or(&[]) {
                if located(n) {
                    border.extend(pop(n));
                } else if done.insert(*n) {
                    stack.push(*n);
                }
            }
        }
        border.sort_unstable();
        border.dedup();
        for (i, &a) in border.iter().enumerate() {
            for &b in &border[i + 1..] {
                topo.add_link(a, b);
            }
        }
    }
    topo.check_connected(path)?;
    Ok((topo, dropped))
}
