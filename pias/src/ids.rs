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
