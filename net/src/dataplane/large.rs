//! Large TCP frames (segments the host coalesced past the MTU) that can go
//! on whole: a client's segment of a flow NATed here, or a target's reply,
//! rewritten in place and handed to a device that segments. Anything else
//! is cut into ordinary segments by the device layer and comes back one by one.

use super::nat::Nat;
use super::packet::{self, tcp_flags};
use super::{DataPlane, FrameSink, Verdict};
use crate::offload::{adjust_partial_sum, LargeTcp, Offload};
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::time::Instant;

/// Where the fields a rewrite touches are, in a frame with a 20-byte IPv4
/// header (the only kind that goes on whole).
const IP: usize = packet::ETH_LEN;
const TCP: usize = IP + packet::IP_LEN;

impl DataPlane {
    /// Takes one received frame the driver described with `offload`. An
    /// ordinary frame goes to `ingress` (a partial checksum needs nothing
    /// more: every frame the data path sends has its checksums computed
    /// afresh). A large TCP frame goes on whole when it can (`Done`);
    /// otherwise `Cut`: the caller cuts it into segments and passes them in
    /// one by one, and nothing here has changed.
    pub fn ingress_offloaded(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        offload: Offload,
        sink: &mut impl FrameSink,
    ) -> Verdict {
        if offload.gso_size == 0 {
            return self.ingress(now, frame, sink);
        }
        if !sink.takes_large() || !self.forward_large(now, frame, offload, sink) {
            return Verdict::Cut;
        }
        self.flush(now, sink);
        Verdict::Done
    }

    /// Rewrites and sends `frame` whole if it is a NATed flow's and the
    /// ordinary path would have sent each of its segments; false (and `frame`
    /// untouched, nothing changed) if not.
    fn forward_large(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        o: Offload,
        sink: &mut impl FrameSink,
    ) -> bool {
        let Ok(l) = LargeTcp::parse(frame, o.gso_size, self.cfg.mtu) else {
            return false;
        };
        // The device must finish the checksum where the TCP header has it.
        if l.ihl != packet::IP_LEN || o.partial != Some((TCP as u16, 16)) {
            return false;
        }
        let src = ipv4_at(frame, IP + 12);
        let dst = ipv4_at(frame, IP + 16);
        let ttl = frame[IP + 8];
        let (sport, dport) = packet::ports(&frame[TCP..]);
        let flags = packet::tcp_flags_of(&frame[TCP..]);
        // SYN and RST go the ordinary way (MSS clamping, NAT state); so does
        // CWR, which a device segments right only with ECN negotiated.
        if flags & (tcp_flags::SYN | tcp_flags::RST | tcp_flags::CWR) != 0 {
            return false;
        }
        let from = Endpoint {
            ip: src,
            port: sport,
        };
        if dst == self.cfg.address.addr {
            // A target's reply, to a NAT port (GTSM as for any segment to us).
            if !self.nat.owns_port(dport)
                || self.gtsm_refuses(Transport::Tcp, src, ttl, &frame[TCP..])
            {
                return false;
            }
            let Some((group, client, e)) = self.nat.by_port(dport) else {
                return false;
            };
            if group.transport != Transport::Tcp || e.target != from {
                return false;
            }
            let Some(mac) = self.next_hop_mac(now, client.ip) else {
                return false;
            };
            let Some((_, _, e)) = self.nat.by_port(dport) else {
                return false;
            };
            e.last = now;
            Nat::note_tcp(e, flags, false);
            self.proxy.jap_target_reply(now, group, from, client);
            self.counters.rx_target_reply += 1;
            let g = Endpoint {
                ip: group.ip,
                port: group.port,
            };
            if self.send_whole(frame, o, mac, g, client, sink) {
                self.counters.tx_to_client += 1;
            }
            return true;
        }
        if !self.is_anycast(dst) {
            return false;
        }
        // A client's segment to a group: each segment within what the IAP
        // may carry, as the ordinary path requires.
        if l.thl + l.mss > self.cfg.carry_limit() {
            return false;
        }
        let group = Group {
            ip: dst,
            port: dport,
            transport: Transport::Tcp,
        };
        // The flow's first packets (its SYN at least) went the ordinary way
        // and made its NAT entry; its target must be reachable now, and still
        // the core's choice.
        let Some(e) = self.nat.entry(group, from) else {
            return false;
        };
        let (bound, port) = (e.target, e.port);
        let Some(mac) = self.next_hop_mac(now, bound.ip) else {
            return false;
        };
        if !self.proxy.whole_client_segment(now, group, from, bound) {
            return false;
        }
        if let Some(e) = self.nat.entry_mut(group, from) {
            e.last = now;
            Nat::note_tcp(e, flags, true);
        }
        self.counters.rx_client += 1;
        let ours = Endpoint {
            ip: self.cfg.address.addr,
            port,
        };
        if self.send_whole(frame, o, mac, ours, bound, sink) {
            self.counters.tx_deliver += 1;
        }
        true
    }

    /// Readdresses `frame` and hands it to the device to segment; false (and
    /// counted) if the device refused it.
    fn send_whole(
        &mut self,
        frame: &mut [u8],
        o: Offload,
        mac: [u8; 6],
        src: Endpoint,
        dst: Endpoint,
        sink: &mut impl FrameSink,
    ) -> bool {
        rewrite(frame, self.cfg.mac, mac, src, dst);
        let offload = Offload {
            partial: o.partial,
            valid: false,
            gso_size: o.gso_size,
        };
        let sent = sink.send_large(frame, offload);
        if !sent {
            self.counters.tx_device_refused += 1;
        }
        sent
    }

    /// The MAC of the next hop toward `dst`, if known.
    fn next_hop_mac(&self, now: Instant, dst: Ipv4) -> Option<[u8; 6]> {
        let hop = if self.cfg.address.contains(dst) {
            dst
        } else {
            self.cfg.gateway?
        };
        self.neighbours.lookup(now, hop)
    }
}

fn ipv4_at(frame: &[u8], at: usize) -> Ipv4 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&frame[at..at + 4]);
    Ipv4(a)
}

/// Readdresses a large frame in place: MACs, IPv4 addresses (TTL 64, header
/// checksum afresh), TCP ports, and the partial checksum's pseudo-header sum
/// (the ports lie in what the device sums, so only the addresses count).
fn rewrite(frame: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], src: Endpoint, dst: Endpoint) {
    frame[..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    let mut old = [0u8; 8];
    old.copy_from_slice(&frame[IP + 12..IP + 20]);
    let mut new = [0u8; 8];
    new[..4].copy_from_slice(&src.ip.0);
    new[4..].copy_from_slice(&dst.ip.0);
    frame[IP + 12..IP + 20].copy_from_slice(&new);
    frame[IP + 8] = packet::TTL;
    frame[IP + 10..IP + 12].fill(0);
    let sum = !smoltcp::wire::checksum::data(&frame[IP..TCP]);
    frame[IP + 10..IP + 12].copy_from_slice(&sum.to_be_bytes());
    frame[TCP..TCP + 2].copy_from_slice(&src.port.to_be_bytes());
    frame[TCP + 2..TCP + 4].copy_from_slice(&dst.port.to_be_bytes());
    let field = TCP + 16;
    let partial = u16::from_be_bytes([frame[field], frame[field + 1]]);
    let adjusted = adjust_partial_sum(partial, &old, &new);
    frame[field..field + 2].copy_from_slice(&adjusted.to_be_bytes());
}
