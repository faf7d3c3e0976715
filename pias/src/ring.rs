//! RAP placement: consistent hashing of a group's transport address over all
//! known proxies. Each proxy owns `VNODES` points on a 64-bit ring; a group's
//! RAPs are the first `k` distinct *live* proxies clockwise from its hash.
//! Removing or reviving a proxy moves only the groups it served (about k/N of
//! them); a lookup is a binary search plus a short walk.

use crate::addr::Group;
use crate::fixed::{FixedVec, Full};
use crate::wire::ProxyId;

/// Points per proxy: more points even out the load per proxy.
pub const VNODES: usize = 16;

/// splitmix64's finaliser: a fixed, well-mixed 64-bit hash every proxy computes alike.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ring position of a group.
pub fn group_hash(g: &Group) -> u64 {
    let mut b = [0u8; 8];
    b[..7].copy_from_slice(&g.key_bytes());
    mix64(u64::from_le_bytes(b) ^ 0x5049_4153_5241_5031) // "PIASRAP1"
}

fn point_hash(p: ProxyId, vnode: usize) -> u64 {
    mix64((u64::from(p) << 16 | vnode as u64) ^ 0x7069_6173_7269_6e67)
}

/// The ring over every known proxy (live or not); liveness is asked of the caller.
pub struct Ring {
    /// (position, proxy), sorted by position.
    points: FixedVec<(u64, ProxyId)>,
}

impl Ring {
    /// A ring for up to `max_proxies` proxies.
    pub fn with_capacity(max_proxies: usize) -> Self {
        Ring {
            points: FixedVec::with_capacity(max_proxies * VNODES),
        }
    }

    /// A ring holding `proxies` (built in one sort), with room for `max_proxies`.
    pub fn from_proxies(
        max_proxies: usize,
        proxies: impl IntoIterator<Item = ProxyId>,
    ) -> Result<Self, Full> {
        let mut r = Ring::with_capacity(max_proxies);
        for p in proxies {
            for v in 0..VNODES {
                r.points.push((point_hash(p, v), p))?;
            }
        }
        r.points.sort_unstable_by_key(|&(h, q)| (h, q));
        Ok(r)
    }

    /// Adds a proxy's points (a proxy is added once, when first known); O(N).
    pub fn add(&mut self, p: ProxyId) -> Result<(), Full> {
        let first = point_hash(p, 0);
        let at = self.points.partition_point(|&pt| pt < (first, p));
        if self.points.get(at) == Some(&(first, p)) {
            return Ok(());
        }
        if self.points.len() + VNODES > self.points.capacity() {
            return Err(Full);
        }
        for v in 0..VNODES {
            let pt = (point_hash(p, v), p);
            let at = self.points.partition_point(|&q| q < pt);
            self.points.insert(at, pt)?;
        }
        Ok(())
    }

    /// How many proxies have points on the ring (live or not).
    pub fn proxies(&self) -> usize {
        self.points.len() / VNODES
    }

    /// Heap bytes reserved for the points.
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * core::mem::size_of::<(u64, ProxyId)>()
    }

    /// Writes the first `k` distinct proxies for which `live` holds, walking
    /// clockwise from the group's hash, into `out`; returns how many were found.
    pub fn raps(
        &self,
        g: &Group,
        k: usize,
        live: impl Fn(ProxyId) -> bool,
        out: &mut [ProxyId],
    ) -> usize {
        let pts = self.points.as_slice();
        if pts.is_empty() {
            return 0;
        }
        let want = k.min(out.len());
        let h = group_hash(g);
        let start = pts.partition_point(|&(ph, _)| ph < h);
        let mut found = 0;
        for i in 0..pts.len() {
            if found == want {
                break;
            }
            let (_, p) = pts[(start + i) % pts.len()];
            if out[..found].contains(&p) || !live(p) {
                continue;
            }
            out[found] = p;
            found += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4, Transport};

    fn group(i: u32) -> Group {
        Group {
            ip: Ipv4([203, 0, 113, (i % 256) as u8]),
            port: 1000 + (i / 256) as u16,
            transport: Transport::Udp,
        }
    }

    fn ring(n: u32) -> Ring {
        Ring::from_proxies(n as usize, 1..=n).unwrap()
    }

    #[test]
    fn incremental_and_bulk_builds_agree() {
        let mut r = Ring::with_capacity(30);
        for p in (1..=30).rev() {
            r.add(p).unwrap();
            r.add(p).unwrap();
        }
        let bulk = ring(30);
        assert_eq!(r.points.as_slice(), bulk.points.as_slice());
    }

    fn raps(r: &Ring, g: &Group, dead: &[ProxyId]) -> Vec<ProxyId> {
        let mut out = [0; 4];
        let n = r.raps(g, 4, |p| !dead.contains(&p), &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn k_distinct_live_raps() {
        let r = ring(50);
        for i in 0..200 {
            let set = raps(&r, &group(i), &[]);
            assert_eq!(set.len(), 4);
            let mut s = set.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 4);
        }
        let set = raps(&ring(3), &group(1), &[]);
        assert_eq!(set.len(), 3, "fewer proxies than k: all of them");
    }

    #[test]
    fn a_death_moves_about_k_over_n_of_groups() {
        let n = 200;
        let r = ring(n);
        let groups = 20_000;
        let before: Vec<_> = (0..groups).map(|i| raps(&r, &group(i), &[])).collect();
        let dead = 77;
        let mut changed = 0;
        for (i, b) in before.iter().enumerate() {
            let a = raps(&r, &group(i as u32), &[dead]);
            if &a != b {
                changed += 1;
                assert!(b.contains(&dead), "group {i} moved though its RAPs lived");
                assert!(!a.contains(&dead));
            }
        }
        let expected = groups as f64 * 4.0 / n as f64;
        let got = changed as f64;
        assert!(
            (got - expected).abs() < expected * 0.5,
            "{changed} groups moved, expected about {expected}"
        );
    }

    #[test]
    fn a_new_proxy_takes_about_k_over_n_of_groups() {
        let n = 100;
        let mut r = ring(n);
        let groups = 10_000u32;
        let before: Vec<_> = (0..groups).map(|i| raps(&r, &group(i), &[])).collect();
        r = Ring::from_proxies(n as usize + 1, 1..=n).unwrap();
        r.add(n + 1).unwrap();
        let moved = (0..groups)
            .filter(|&i| raps(&r, &group(i), &[]) != before[i as usize])
            .count();
        let expected = groups as f64 * 4.0 / (n + 1) as f64;
        assert!(
            (moved as f64 - expected).abs() < expected * 0.5,
            "{moved} moved, expected about {expected}"
        );
    }

    #[test]
    fn full_ring_refuses() {
        let mut r = Ring::with_capacity(2);
        r.add(1).unwrap();
        r.add(2).unwrap();
        assert_eq!(r.add(3), Err(Full));
        assert_eq!(r.proxies(), 2);
    }

    /// Every proxy of a deployment, whatever its version, must put a group
    /// at the same place on the ring: these values are the protocol.
    #[test]
    fn group_and_point_hashes_are_pinned_known_answers() {
        use crate::addr::{Ipv4, Transport};
        let g = |ip: [u8; 4], port, transport| Group {
            ip: Ipv4(ip),
            port,
            transport,
        };
        let cases = [
            (
                g([203, 0, 113, 7], 53, Transport::Udp),
                0x073c_a348_74a9_8bc2,
            ),
            (
                g([203, 0, 113, 7], 53, Transport::Tcp),
                0xbc25_bbcc_e216_3f78,
            ),
            (
                g([203, 0, 113, 7], 80, Transport::Tcp),
                0xba98_a09d_ca8c_9731,
            ),
            (
                g([203, 0, 113, 8], 53, Transport::Udp),
                0xa2b2_0089_4b99_2d6c,
            ),
        ];
        for (group, want) in cases {
            assert_eq!(group_hash(&group), want, "{group}");
        }
        assert_eq!(point_hash(1, 0), 1_222_104_804_653_380_435);
    }
}
