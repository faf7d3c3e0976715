//! Received frames: ARP is snooped and passed on; IPv4 to the unicast
//! address is a proxy message, a target's reply on a NAT port, an ICMP error
//! about a flow, or the stack's; IPv4 to an anycast address is a target's
//! registration or a client's packet. The frame has passed `classify`.

use super::arp::parse_arp;
use super::nat::Nat;
use super::packet::{self, clamp_mss, ip_of, ports, tcp_flags_of, Addressing};
use super::{DataPlane, FrameSink, Verdict};
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::time::Instant;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

impl DataPlane {
    /// Takes one received frame (already checked by `classify`) and sends
    /// what it causes through `sink`.
    pub fn ingress(&mut self, now: Instant, frame: &[u8], sink: &mut impl FrameSink) -> Verdict {
        let verdict = self.dispatch(now, frame, sink);
        if verdict == Verdict::Stack {
            self.counters.rx_to_stack += 1;
        }
        self.flush(now, sink);
        verdict
    }

    fn dispatch(&mut self, now: Instant, frame: &[u8], sink: &mut impl FrameSink) -> Verdict {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Verdict::Stack;
        };
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                self.snoop_arp(now, frame, sink);
                Verdict::Stack
            }
            EthernetProtocol::Ipv4 => self.ipv4(now, eth.payload(), sink),
            _ => Verdict::Stack,
        }
    }

    /// Learns next hops from ARP addressed to our unicast address (requests
    /// for it and replies to ours); smoltcp answers the requests itself.
    fn snoop_arp(&mut self, now: Instant, frame: &[u8], sink: &mut impl FrameSink) {
        let Some(a) = parse_arp(frame) else {
            return;
        };
        let ours = self.cfg.address.addr;
        if a.target_ip == ours && self.cfg.address.contains(a.sender_ip) {
            self.neighbours.learn(now, a.sender_ip, a.sender_mac);
            self.release_pending(now, sink);
        }
    }

    fn ipv4(&mut self, now: Instant, bytes: &[u8], sink: &mut impl FrameSink) -> Verdict {
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            return Verdict::Stack;
        };
        let (src, dst) = (ip_of(ip.src_addr()), ip_of(ip.dst_addr()));
        let transport = match ip.next_header() {
            IpProtocol::Udp => Some(Transport::Udp),
            IpProtocol::Tcp => Some(Transport::Tcp),
            _ => None,
        };
        let seg = ip.payload();
        if dst == self.cfg.address.addr {
            if transport.is_some_and(|t| self.gtsm_refuses(t, src, ip.hop_limit(), seg)) {
                self.counters.drop_gtsm += 1;
                return Verdict::Done;
            }
            return match transport {
                Some(t) => self.unicast(now, t, src, seg),
                None if ip.next_header() == IpProtocol::Icmp => self.icmp(now, seg, sink),
                None => Verdict::Stack,
            };
        }
        if self.is_anycast(dst) {
            match transport {
                Some(t) => self.anycast(now, t, src, dst, bytes, seg, sink),
                None => self.counters.drop_anycast_protocol += 1,
            }
            return Verdict::Done;
        }
        if dst.is_multicast_or_broadcast() || dst == self.cfg.address.broadcast() {
            return Verdict::Stack;
        }
        self.counters.drop_not_ours += 1;
        Verdict::Done
    }

    /// Whether a segment is BGP (TCP to or from 179) or BFD (UDP to 3784 or 4784)
    /// that is not from a configured neighbour, or is from one but arrived
    /// with a TTL below 255: it was not sent by a router on our link (GTSM,
    /// RFC 5082; RFC 5881 §5). Nobody else may reach those sockets (a stray
    /// SYN would hold a passive session's listening socket).
    pub(super) fn gtsm_refuses(&self, t: Transport, src: Ipv4, ttl: u8, seg: &[u8]) -> bool {
        let (sport, dport) = ports(seg);
        let guarded = match t {
            Transport::Tcp => {
                sport == crate::routing::BGP_PORT || dport == crate::routing::BGP_PORT
            }
            Transport::Udp => dport == pias_bgp::bfd::PORT || dport == pias_bgp::bfd::MULTIHOP_PORT,
        };
        guarded && (ttl != 255 || !self.cfg.bgp_neighbours.contains(&src))
    }

    /// To our unicast address: the proxy port, a NAT port, or the stack's.
    fn unicast(&mut self, now: Instant, t: Transport, src: Ipv4, seg: &[u8]) -> Verdict {
        let (sport, dport) = ports(seg);
        let from = Endpoint {
            ip: src,
            port: sport,
        };
        if t == Transport::Udp && dport == self.cfg.proxy_port {
            self.counters.rx_proxy += 1;
            let body = seg.get(packet::UDP_LEN..).unwrap_or_default();
            self.proxy.handle_message(now, from, body);
            return Verdict::Done;
        }
        if !self.nat.owns_port(dport) {
            return Verdict::Stack;
        }
        let clamp = self.cfg.mss_clamp();
        let Some((group, client, e)) = self.nat.by_port(dport) else {
            self.counters.drop_no_flow += 1;
            return Verdict::Done;
        };
        if group.transport != t || e.target != from {
            self.counters.drop_no_flow += 1;
            return Verdict::Done;
        }
        e.last = now;
        let mut seg = seg;
        if t == Transport::Tcp {
            Nat::note_tcp(e, tcp_flags_of(seg), false);
            // The target's SYN-ACK sets the size of the client's segments,
            // which the IAP carries: clamp it here.
            if let Some(buf) = self.scratch.get_mut(..seg.len()) {
                buf.copy_from_slice(seg);
                if clamp_mss(buf, clamp) {
                    self.counters.mss_clamped += 1;
                    seg = &self.scratch[..seg.len()];
                }
            }
        }
        let target = e.target;
        self.counters.rx_target_reply += 1;
        self.proxy
            .handle_target_packet(now, group, target, client, seg);
        Verdict::Done
    }

    /// To an anycast address: a registration, or a client's packet (IAP).
    #[allow(clippy::too_many_arguments)]
    fn anycast(
        &mut self,
        now: Instant,
        t: Transport,
        src: Ipv4,
        dst: Ipv4,
        ip_bytes: &[u8],
        seg: &[u8],
        sink: &mut impl FrameSink,
    ) {
        let (sport, dport) = ports(seg);
        let from = Endpoint {
            ip: src,
            port: sport,
        };
        if t == Transport::Udp && dport == self.cfg.registration_port {
            self.counters.rx_registration += 1;
            let body = seg.get(packet::UDP_LEN..).unwrap_or_default();
            self.proxy.handle_message(now, from, body);
            return;
        }
        let group = Group {
            ip: dst,
            port: dport,
            transport: t,
        };
        if seg.len() > self.cfg.carry_limit() {
            self.counters.client_too_big += 1;
            if t == Transport::Udp {
                let mtu = (self.cfg.carry_limit() + packet::IP_LEN) as u16;
                self.send_icmp_error(now, dst, src, packet::ICMP_FRAG_NEEDED, mtu, ip_bytes, sink);
            }
            return;
        }
        let mut seg = seg;
        if t == Transport::Tcp {
            let clamp = self.cfg.mss_clamp();
            if let Some(buf) = self.scratch.get_mut(..seg.len()) {
                buf.copy_from_slice(seg);
                if clamp_mss(buf, clamp) {
                    self.counters.mss_clamped += 1;
                    seg = &self.scratch[..seg.len()];
                }
            }
        }
        self.counters.rx_client += 1;
        self.proxy.handle_client_packet(now, group, from, seg);
    }

    /// ICMP to our unicast address: an error about a NATed flow goes on to
    /// its client, from the group's address and about the client's own
    /// packet; everything else is the stack's (echo) or dropped by it.
    fn icmp(&mut self, now: Instant, body: &[u8], sink: &mut impl FrameSink) -> Verdict {
        let kind = body.first().copied().unwrap_or(0);
        if !matches!(kind, 3 | 11 | 12) {
            return Verdict::Stack;
        }
        let code = body.get(1).copied().unwrap_or(0);
        let Some(inner) = body.get(8..) else {
            self.counters.icmp_unmatched += 1;
            return Verdict::Done;
        };
        let Some(m) = self.match_quoted(inner) else {
            self.counters.icmp_unmatched += 1;
            return Verdict::Done;
        };
        // Quote the client's packet as the client sent it: client → group.
        let mut quoted = [0u8; packet::IP_LEN + 8];
        let Some(src_hdr) = inner.get(..packet::IP_LEN) else {
            self.counters.icmp_unmatched += 1;
            return Verdict::Done;
        };
        quoted[..packet::IP_LEN].copy_from_slice(src_hdr);
        if let Some(l4) = inner.get(m.ihl..m.ihl + 8) {
            quoted[packet::IP_LEN..].copy_from_slice(l4);
        }
        quoted[0] = 0x45; // options are not quoted on
        quoted[12..16].copy_from_slice(&m.client.ip.0);
        quoted[16..20].copy_from_slice(&m.group.ip.0);
        quoted[10..12].fill(0);
        let mut hdr = Ipv4Packet::new_unchecked(&mut quoted[..]);
        hdr.fill_checksum();
        quoted[20..22].copy_from_slice(&m.client.port.to_be_bytes());
        quoted[22..24].copy_from_slice(&m.group.port.to_be_bytes());
        if m.group.transport == Transport::Udp {
            quoted[26..28].fill(0); // no checksum: the ports changed
        }
        let extra = u16::from_be_bytes([
            body.get(6).copied().unwrap_or(0),
            body.get(7).copied().unwrap_or(0),
        ]);
        self.counters.icmp_translated += 1;
        let a = m.group.ip;
        self.send_icmp_raw(now, a, m.client.ip, kind, code, extra, &quoted, sink);
        Verdict::Done
    }

    /// The NAT flow a quoted packet (IPv4 header + 8 bytes, as we sent it to
    /// a target) belongs to.
    fn match_quoted(&mut self, inner: &[u8]) -> Option<Quoted> {
        let ihl = usize::from(inner.first()? & 0x0f) * 4;
        if ihl < packet::IP_LEN || inner.len() < ihl + 8 || inner[0] >> 4 != 4 {
            return None;
        }
        let t = match inner[9] {
            17 => Transport::Udp,
            6 => Transport::Tcp,
            _ => return None,
        };
        let src = Ipv4([inner[12], inner[13], inner[14], inner[15]]);
        let dst = Ipv4([inner[16], inner[17], inner[18], inner[19]]);
        let (sport, dport) = ports(&inner[ihl..]);
        if src != self.cfg.address.addr {
            return None;
        }
        let (group, client, e) = self.nat.by_port(sport)?;
        (group.transport == t
            && e.target
                == Endpoint {
                    ip: dst,
                    port: dport,
                })
        .then_some(Quoted { group, client, ihl })
    }

    /// An ICMP error from `from` to `to` quoting the start of `ip_bytes`
    /// (its IPv4 header and 8 bytes more).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_icmp_error(
        &mut self,
        now: Instant,
        from: Ipv4,
        to: Ipv4,
        code: u8,
        extra: u16,
        ip_bytes: &[u8],
        sink: &mut impl FrameSink,
    ) {
        let ihl = usize::from(ip_bytes.first().copied().unwrap_or(0) & 0x0f) * 4;
        let quoted = &ip_bytes[..(ihl + 8).min(ip_bytes.len())];
        self.send_icmp_raw(
            now,
            from,
            to,
            packet::ICMP_UNREACHABLE,
            code,
            extra,
            quoted,
            sink,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn send_icmp_raw(
        &mut self,
        now: Instant,
        from: Ipv4,
        to: Ipv4,
        kind: u8,
        code: u8,
        extra: u16,
        quoted: &[u8],
        sink: &mut impl FrameSink,
    ) {
        let ident = self.next_ident();
        let a = Addressing {
            src_mac: self.cfg.mac,
            dst_mac: [0; 6],
            src: from,
            dst: to,
            ident,
        };
        let mut tx = [0u8; packet::ETH_LEN + packet::IP_LEN + 8 + 68];
        match packet::icmp_error(&mut tx, &a, kind, code, extra, quoted) {
            Ok(n) => {
                self.counters.tx_icmp += 1;
                self.send_to(now, to, &mut tx[..n], sink);
            }
            Err(_) => self.counters.tx_too_big += 1,
        }
    }
}

struct Quoted {
    group: Group,
    client: Endpoint,
    /// Length of the quoted IPv4 header.
    ihl: usize,
}
