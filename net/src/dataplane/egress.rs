//! The core's `Transmit`s as frames: proxy messages from the unicast address,
//! target messages from the group's registration port, client packets NATed
//! to their target, replies to clients from the group's address; each to its
//! next hop (on-link, or the gateway), waiting for ARP when it is unknown.

use super::nat::Nat;
use super::packet::{self, arp_request, tcp_flags_of, Addressing, BuildError};
use super::{DataPlane, FrameSink, ANNOUNCE_INTERVAL, ARP_TICK};
use pias::addr::{Ipv4, Transport};
use pias::proxy::Transmit;
use pias::time::Instant;

impl DataPlane {
    /// Sends everything the core has queued: read in place (a `Transmit`
    /// holds a datagram's room, 1.4 KB, copied by each move: under TCG a
    /// few thousand cycles a copy), then what the core makes as asked.
    pub fn flush(&mut self, now: Instant, sink: &mut impl FrameSink) {
        let lent = self.proxy.lend_transmits();
        for t in lent.iter() {
            self.egress(now, t, sink);
        }
        self.proxy.return_transmits(lent);
        while let Some(t) = self.proxy.poll_transmit() {
            self.egress(now, &t, sink);
        }
    }

    fn egress(&mut self, now: Instant, t: &Transmit, sink: &mut impl FrameSink) {
        let ours = self.cfg.address.addr;
        match *t {
            Transmit::Proxy { to, ref bytes } => {
                let Some(dst) = self.proxy_address(to) else {
                    self.counters.tx_unknown_proxy += 1;
                    return;
                };
                let port = self.cfg.proxy_port;
                if self.udp(now, ours, port, dst, port, bytes, sink) {
                    self.counters.tx_proxy += 1;
                }
            }
            Transmit::Target {
                group,
                to,
                ref bytes,
            } => {
                let port = self.cfg.registration_port;
                if self.udp(now, group.ip, port, to.ip, to.port, bytes, sink) {
                    self.counters.tx_target += 1;
                }
            }
            Transmit::Deliver {
                group,
                client,
                target,
                ref packet,
            } => {
                let port = match self.nat.map(now, group, client, target) {
                    Ok(e) => {
                        if group.transport == Transport::Tcp {
                            Nat::note_tcp(e, tcp_flags_of(packet), true);
                        }
                        e.port
                    }
                    Err(_) => {
                        self.counters.nat_full += 1;
                        return;
                    }
                };
                let t = group.transport;
                if self.segment(now, ours, port, target.ip, target.port, t, packet, sink) {
                    self.counters.tx_deliver += 1;
                }
            }
            Transmit::ToClient {
                group,
                client,
                ref packet,
            } => {
                let t = group.transport;
                let (gi, gp) = (group.ip, group.port);
                if self.segment(now, gi, gp, client.ip, client.port, t, packet, sink) {
                    self.counters.tx_to_client += 1;
                }
            }
        }
    }

    fn addressing(&mut self, src: Ipv4, dst: Ipv4) -> Addressing {
        Addressing {
            src_mac: self.cfg.mac,
            dst_mac: [0; 6],
            src,
            dst,
            ident: self.next_ident(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn udp(
        &mut self,
        now: Instant,
        src: Ipv4,
        sport: u16,
        dst: Ipv4,
        dport: u16,
        payload: &[u8],
        sink: &mut impl FrameSink,
    ) -> bool {
        self.build_and_send(now, src, dst, sink, |buf, a| {
            packet::udp_frame(buf, a, sport, dport, payload)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        now: Instant,
        src: Ipv4,
        sport: u16,
        dst: Ipv4,
        dport: u16,
        t: Transport,
        seg: &[u8],
        sink: &mut impl FrameSink,
    ) -> bool {
        self.build_and_send(now, src, dst, sink, |buf, a| {
            packet::segment_frame(buf, a, t, sport, dport, seg)
        })
    }

    /// Builds a frame from `src` to `dst` with `build` in the transmit
    /// buffer and sends it on.
    fn build_and_send(
        &mut self,
        now: Instant,
        src: Ipv4,
        dst: Ipv4,
        sink: &mut impl FrameSink,
        build: impl FnOnce(&mut [u8], &Addressing) -> Result<usize, BuildError>,
    ) -> bool {
        let a = self.addressing(src, dst);
        // The buffer is lent out while `finish` borrows the rest of `self`
        // (nothing on the way builds another frame: it would find none).
        let mut tx = core::mem::take(&mut self.tx);
        let built = build(&mut tx, &a);
        let sent = self.finish(now, dst, built, &mut tx, sink);
        self.tx = tx;
        sent
    }

    fn finish(
        &mut self,
        now: Instant,
        dst: Ipv4,
        built: Result<usize, BuildError>,
        tx: &mut [u8],
        sink: &mut impl FrameSink,
    ) -> bool {
        let n = match built {
            Ok(n) if n <= packet::ETH_LEN + usize::from(self.cfg.mtu) => n,
            Ok(_) | Err(BuildError::TooBig) => {
                self.counters.tx_too_big += 1;
                return false;
            }
            Err(BuildError::BadSegment) => {
                self.counters.tx_bad_segment += 1;
                return false;
            }
        };
        self.send_to(now, dst, &mut tx[..n], sink)
    }

    /// Sends a built frame toward `dst`: fills in the next hop's MAC, or holds
    /// the frame and asks ARP for it.
    pub(super) fn send_to(
        &mut self,
        now: Instant,
        dst: Ipv4,
        frame: &mut [u8],
        sink: &mut impl FrameSink,
    ) -> bool {
        let hop = if self.cfg.address.contains(dst) {
            dst
        } else if let Some(gw) = self.cfg.gateway {
            gw
        } else {
            self.counters.arp_dropped += 1;
            return false;
        };
        if let Some(mac) = self.neighbours.lookup(now, hop) {
            frame[..6].copy_from_slice(&mac);
            return self.emit(frame, sink);
        }
        if !self.neighbours.hold(now, hop, frame) {
            self.counters.arp_dropped += 1;
        }
        if self.neighbours.should_ask(now, hop) {
            let mut req = [0u8; 64];
            let n = arp_request(&mut req, self.cfg.mac, self.cfg.address.addr, hop);
            if self.emit(&req[..n], sink) {
                self.counters.arp_requests += 1;
            }
        }
        true
    }

    /// An ARP announcement of our address (RFC 5227 §2.3: a broadcast
    /// request whose sender and target are both our address): a neighbour
    /// holding another MAC for it, that of the VM this appliance replaced,
    /// takes ours. Refused by the device, it is tried again at the next tick.
    pub(super) fn announce(&mut self, now: Instant, sink: &mut impl FrameSink) {
        let mut req = [0u8; 64];
        let ours = self.cfg.address.addr;
        let n = arp_request(&mut req, self.cfg.mac, ours, ours);
        if self.emit(&req[..n], sink) {
            self.counters.arp_announcements += 1;
            self.announce_left -= 1;
            self.next_announce = now + ANNOUNCE_INTERVAL;
        } else {
            self.next_announce = now + ARP_TICK;
        }
    }

    fn emit(&mut self, frame: &[u8], sink: &mut impl FrameSink) -> bool {
        let ok = sink.send_frame(frame);
        if !ok {
            self.counters.tx_device_refused += 1;
        }
        ok
    }

    /// Sends held frames whose next hop answered; drops those that waited
    /// too long.
    pub(super) fn release_pending(&mut self, now: Instant, sink: &mut impl FrameSink) {
        self.arp_checked = now;
        if !self.neighbours.has_pending() {
            return;
        }
        let counters = &mut self.counters;
        let (sent, dropped) = self.neighbours.release(now, |f| {
            let ok = sink.send_frame(f);
            if !ok {
                counters.tx_device_refused += 1;
            }
            ok
        });
        self.counters.arp_released += sent;
        self.counters.arp_dropped += dropped;
    }
}
