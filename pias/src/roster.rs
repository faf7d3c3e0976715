//! The deployment's proxies as every proxy knows them at start: ids, clusters
//! and the RAP ring. Immutable once built, so one `Arc<Roster>` serves every
//! proxy of a process (the simulator runs thousands; the appliance runs one).

use crate::ids::PeerInfo;
use crate::ring::Ring;
use crate::wire::ProxyId;
use alloc::vec::Vec;

/// Every member proxy with its cluster, indexed by id and by cluster, plus
/// the consistent-hash ring over all members. Built once by `new`, never
/// changed after.
pub struct Roster {
    /// Member ids, sorted, each once; 0 is never a member.
    ids: Vec<ProxyId>,
    /// `cluster_of[i]` is the cluster of `ids[i]`.
    cluster_of: Vec<u32>,
    /// (cluster, id), sorted: a cluster's members are one contiguous run.
    by_cluster: Vec<(u32, ProxyId)>,
    /// Distinct clusters, sorted.
    cluster_list: Vec<u32>,
    ring: Ring,
    refused: usize,
}

impl Roster {
    /// A roster of `proxies` (duplicates and id 0 ignored), at most
    /// `max_proxies` of them; the rest are refused and counted in `refused`.
    pub fn new(proxies: &[PeerInfo], max_proxies: usize) -> Roster {
        let mut members: Vec<PeerInfo> = proxies.iter().copied().filter(|p| p.id != 0).collect();
        members.sort_unstable_by_key(|p| p.id);
        members.dedup_by_key(|p| p.id);
        let refused = members.len().saturating_sub(max_proxies);
        members.truncate(max_proxies);
        let ids: Vec<ProxyId> = members.iter().map(|p| p.id).collect();
        let cluster_of: Vec<u32> = members.iter().map(|p| p.cluster).collect();
        let mut by_cluster: Vec<(u32, ProxyId)> =
            members.iter().map(|p| (p.cluster, p.id)).collect();
        by_cluster.sort_unstable();
        let mut cluster_list: Vec<u32> = cluster_of.clone();
        cluster_list.sort_unstable();
        cluster_list.dedup();
        // Capacity is exactly the members kept, so building cannot overflow.
        let ring = Ring::from_proxies(ids.len(), ids.iter().copied())
            .unwrap_or_else(|_| Ring::with_capacity(0));
        Roster {
            ids,
            cluster_of,
            by_cluster,
            cluster_list,
            ring,
            refused,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the roster has no member at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Proxies left out because the roster was full.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Member ids, sorted ascending, each once (never 0); `index_of` gives a
    /// position in this slice.
    pub fn ids(&self) -> &[ProxyId] {
        &self.ids
    }

    /// Position of `p` among the members, if it is one.
    pub fn index_of(&self, p: ProxyId) -> Option<usize> {
        self.ids.binary_search(&p).ok()
    }

    /// Whether `p` is a member (O(log N)).
    pub fn contains(&self, p: ProxyId) -> bool {
        self.index_of(p).is_some()
    }

    /// The cluster of member `p`; `None` if `p` is not a member.
    pub fn cluster_of(&self, p: ProxyId) -> Option<u32> {
        self.index_of(p).map(|i| self.cluster_of[i])
    }

    /// The members of cluster `c`, as (cluster, id) pairs.
    pub fn cluster_members(&self, c: u32) -> &[(u32, ProxyId)] {
        let lo = self.by_cluster.partition_point(|&(x, _)| x < c);
        let hi = self.by_cluster.partition_point(|&(x, _)| x <= c);
        &self.by_cluster[lo..hi]
    }

    /// Distinct clusters, sorted.
    pub fn clusters(&self) -> &[u32] {
        &self.cluster_list
    }

    /// The RAP placement ring over every member (liveness is the caller's to
    /// apply in `Ring::raps`).
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Heap bytes this roster holds (shared by every proxy that uses it).
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        self.ids.capacity() * size_of::<ProxyId>()
            + self.cluster_of.capacity() * size_of::<u32>()
            + self.by_cluster.capacity() * size_of::<(u32, ProxyId)>()
            + self.cluster_list.capacity() * size_of::<u32>()
            + self.ring.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: ProxyId, cluster: u32) -> PeerInfo {
        PeerInfo { id, cluster }
    }

    #[test]
    fn members_sorted_deduplicated_and_zero_ignored() {
        let r = Roster::new(&[info(5, 1), info(0, 0), info(2, 0), info(5, 1)], 10);
        assert_eq!(r.ids(), &[2, 5]);
        assert_eq!(r.cluster_of(5), Some(1));
        assert_eq!(r.cluster_of(3), None);
        assert_eq!(r.refused(), 0);
        assert_eq!(r.ring().proxies(), 2);
    }

    #[test]
    fn beyond_capacity_is_refused_and_counted() {
        let peers: Vec<PeerInfo> = (1..=10).map(|i| info(i, 0)).collect();
        let r = Roster::new(&peers, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r.refused(), 6);
        assert_eq!(r.ring().proxies(), 4);
    }

    #[test]
    fn cluster_members_are_one_run() {
        let peers = [info(1, 2), info(2, 0), info(3, 2), info(4, 1), info(5, 2)];
        let r = Roster::new(&peers, 10);
        let two: Vec<ProxyId> = r.cluster_members(2).iter().map(|&(_, p)| p).collect();
        assert_eq!(two, vec![1, 3, 5]);
        assert!(r.cluster_members(7).is_empty());
        assert_eq!(r.clusters(), &[0, 1, 2]);
    }
}
