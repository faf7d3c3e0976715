//! BFD beside the BGP sessions: UDP sockets receive every neighbour's control
//! packets on 3784 (single hop, RFC 5881) and 4784 (multihop, RFC 5883: what
//! FRR runs toward a ttl-security neighbour), TTL 255 checked by the data
//! path either way; another sends ours from an ephemeral port, to the port
//! the neighbour uses. A session going from Up to Down takes its BGP session
//! down at once, long before the hold timer would.

use super::Routing;
use pias_bgp::bfd::{BfdConfig, BfdSession, BfdState, MULTIHOP_PORT};
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// Our packets once Up: every 100 ms, and we take them as often; three
/// missed make the session Down (300 ms).
const INTERVAL_US: u32 = 100_000;
const DETECT_MULT: u8 = 3;

/// BFD's UDP sockets, bound by the caller.
#[derive(Clone, Copy, Debug)]
pub struct BfdSockets {
    /// Bound to 3784 (single hop).
    pub single: SocketHandle,
    /// Bound to 4784 (multihop).
    pub multi: SocketHandle,
    /// Bound to a port in 49152..=65535, sends every packet.
    pub tx: SocketHandle,
}

/// A BFD session for the `i`-th neighbour, its discriminator unique per
/// neighbour and varied across boots by `seed`.
pub(super) fn session(i: usize, seed: u16, now_us: u64) -> BfdSession {
    let disc = (u32::from(seed) << 8 | (i as u32 + 1)).max(1);
    BfdSession::new(
        BfdConfig {
            local_disc: disc,
            desired_min_tx: INTERVAL_US,
            required_min_rx: INTERVAL_US,
            detect_mult: DETECT_MULT,
        },
        now_us,
    )
}

impl Routing {
    /// When a BFD session has work next (µs).
    pub(super) fn bfd_timeout(&self) -> Option<u64> {
        self.neighbours
            .iter()
            .filter_map(|n| n.bfd.as_ref())
            .map(BfdSession::poll_timeout)
            .min()
    }

    /// Takes received BFD packets, runs the timers, sends what is due; a
    /// session that went Down takes its BGP session with it.
    pub(super) fn poll_bfd(&mut self, now_us: u64, sockets: &mut SocketSet<'_>) {
        let Some(BfdSockets { single, multi, tx }) = self.bfd_sockets else {
            return;
        };
        let was_up: heapless::Vec<bool, { pias::config::MAX_BGP_NEIGHBOURS }> = self
            .neighbours
            .iter()
            .map(|n| n.bfd.as_ref().is_some_and(|b| b.state() == BfdState::Up))
            .collect();
        for (rx, port) in [(single, pias_bgp::bfd::PORT), (multi, MULTIHOP_PORT)] {
            let sock = sockets.get_mut::<udp::Socket>(rx);
            while let Ok((data, meta)) = sock.recv() {
                let IpAddress::Ipv4(from) = meta.endpoint.addr;
                let from = pias::Ipv4(from.octets());
                if let Some(n) = self.neighbours.iter_mut().find(|n| n.address == from) {
                    if let Some(b) = n.bfd.as_mut() {
                        if b.handle_packet(now_us, data).is_ok() {
                            // Answer on the port the neighbour speaks on.
                            n.bfd_port = port;
                        }
                    }
                }
            }
        }
        let sock = sockets.get_mut::<udp::Socket>(tx);
        for n in &mut self.neighbours {
            let Some(b) = n.bfd.as_mut() else {
                continue;
            };
            if b.poll_timeout() <= now_us {
                b.handle_timeout(now_us);
            }
            if let Some(p) = b.poll_transmit(now_us) {
                let to =
                    IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(n.address.0)), n.bfd_port);
                let _ = sock.send_slice(&p, to);
            }
        }
        for (i, up) in was_up.into_iter().enumerate() {
            let n = &mut self.neighbours[i];
            let failed = n
                .bfd
                .as_ref()
                .is_some_and(|b| b.state() != BfdState::Up && !b.neighbour_admin_down());
            if up && failed {
                // The neighbour (or the path to it) is gone: so is the session.
                // (A neighbour that turned BFD off administratively is not a
                // path failure, RFC 5882 §3.2: the session stays.)
                let s = sockets.get_mut::<smoltcp::socket::tcp::Socket>(n.socket);
                s.abort();
                n.session.handle_closed(now_us / 1_000);
                n.closing_since = None;
            }
        }
    }
}
