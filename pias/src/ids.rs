//! Who is who in a deployment: proxy ids and the roster entry that places a
//! proxy in its cluster.

/// A proxy's id in its deployment; never 0 (the roster and config refuse it).
pub type ProxyId = u32;

/// Another proxy, as the deployment lists it.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// Its id.
    pub id: ProxyId,
    /// The cluster (POP) it belongs to.
    pub cluster: u32,
}

/// One life of a proxy, SWIM-style: `boot` is its clock (µs) when it started,
/// so a restart gives a larger one; `refutation` counts the times it denied
/// news of its own death in that life. Ordered by boot, then refutation.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Incarnation {
    /// The proxy's clock, µs, when this life began.
    pub boot: u64,
    /// Refutations so far in this life.
    pub refutation: u32,
}
