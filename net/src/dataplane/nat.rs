//! The JAP's NAT: each (group, client) flow gets a port of the JAP's unicast
//! address toward its target, and replies to that port map back. Fixed size,
//! keyed hashing (clients choose the keys); a full table refuses new flows
//! and never disturbs existing ones. Idle times follow RFC 4787 (UDP) and
//! RFC 5382 (TCP, state-aware: a FIN from both sides or a RST shortens it).

use crate::dataplane::packet::tcp_flags;
use pias::addr::{Endpoint, Group, Transport};
use pias::fixed::{FixedMap, KeyedBuild};
use pias::time::{Instant, SEC};

/// Idle times of NAT flows, µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeouts {
    /// A UDP flow (RFC 4787 REQ-5: at least 2 min).
    pub udp: u64,
    /// An established TCP connection (RFC 5382 REQ-5: at least 2 h 4 min).
    pub tcp_established: u64,
    /// A TCP connection opening or closing, or reset (RFC 5382: 4 min).
    pub tcp_transitory: u64,
}

impl Default for NatTimeouts {
    fn default() -> Self {
        NatTimeouts {
            udp: 300 * SEC,
            tcp_established: 7440 * SEC,
            tcp_transitory: 240 * SEC,
        }
    }
}

/// What one flow's TCP packets have shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeen {
    /// The target answered the SYN (the connection is established).
    pub established: bool,
    /// FIN from the client.
    pub fin_client: bool,
    /// FIN from the target.
    pub fin_target: bool,
    /// A RST either way.
    pub rst: bool,
}

/// One NAT flow.
#[derive(Clone, Copy, Debug)]
pub struct NatEntry {
    /// The port of the JAP's address it uses toward the target.
    pub port: u16,
    /// The target it is bound to.
    pub target: Endpoint,
    /// Last packet either way.
    pub last: Instant,
    /// TCP state (unused for UDP).
    pub tcp: TcpSeen,
}

impl NatEntry {
    fn idle_limit(&self, t: Transport, to: &NatTimeouts) -> u64 {
        match t {
            Transport::Udp => to.udp,
            Transport::Tcp => {
                let s = self.tcp;
                if s.rst || (s.fin_client && s.fin_target) || !s.established {
                    to.tcp_transitory
                } else {
                    to.tcp_established
                }
            }
        }
    }
}

/// Why a flow could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// The flow table is full.
    Full,
    /// Every port of the range is in use.
    NoPort,
}

/// The NAT table.
pub struct Nat {
    flows: FixedMap<(Group, Endpoint), NatEntry, KeyedBuild>,
    /// Port `first + i` belongs to `by_port[i]`.
    by_port: alloc::vec::Vec<Option<(Group, Endpoint)>>,
    first: u16,
    next: usize,
    timeouts: NatTimeouts,
}

impl Nat {
    /// A table of `capacity` flows using ports `first..first + ports`
    /// (`ports` at least `capacity`; cut at 65535), hashing with `key`.
    pub fn new(capacity: usize, first: u16, ports: usize, key: [u8; 16], t: NatTimeouts) -> Nat {
        let ports = ports.min(usize::from(u16::MAX - first) + 1);
        Nat {
            flows: FixedMap::with_capacity_and_hasher(capacity, KeyedBuild::new(key)),
            by_port: alloc::vec![None; ports],
            first,
            next: 0,
            timeouts: t,
        }
    }

    /// The flow of `client` in `group` bound to `target`: the existing one
    /// (re-bound if the core moved it to another target), or a new one.
    pub fn map(
        &mut self,
        now: Instant,
        group: Group,
        client: Endpoint,
        target: Endpoint,
    ) -> Result<&mut NatEntry, NatError> {
        let key = (group, client);
        if self.flows.contains_key(&key) {
            let e = self.flows.get_mut(&key).ok_or(NatError::Full)?;
            if e.target != target {
                e.target = target;
                e.tcp = TcpSeen::default();
            }
            e.last = now;
            return Ok(e);
        }
        if self.flows.len() >= self.flows.capacity() {
            return Err(NatError::Full);
        }
        let n = self.by_port.len();
        let free = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|&i| self.by_port[i].is_none())
            .ok_or(NatError::NoPort)?;
        let port = self.first + free as u16;
        let entry = NatEntry {
            port,
            target,
            last: now,
            tcp: TcpSeen::default(),
        };
        self.flows.insert(key, entry).map_err(|_| NatError::Full)?;
        self.by_port[free] = Some(key);
        self.next = (free + 1) % n;
        self.flows.get_mut(&key).ok_or(NatError::Full)
    }

    /// The flow of `client` in `group`, if any.
    pub fn entry(&self, group: Group, client: Endpoint) -> Option<&NatEntry> {
        self.flows.get(&(group, client))
    }

    /// The flow of `client` in `group`, if any, to update.
    pub fn entry_mut(&mut self, group: Group, client: Endpoint) -> Option<&mut NatEntry> {
        self.flows.get_mut(&(group, client))
    }

    /// The flow using `port`, if any: (group, client, entry).
    pub fn by_port(&mut self, port: u16) -> Option<(Group, Endpoint, &mut NatEntry)> {
        let i = usize::from(port.checked_sub(self.first)?);
        let (g, c) = (*self.by_port.get(i)?)?;
        let e = self.flows.get_mut(&(g, c))?;
        Some((g, c, e))
    }

    /// Whether `port` is one of the NAT's ports.
    pub fn owns_port(&self, port: u16) -> bool {
        port >= self.first && usize::from(port - self.first) < self.by_port.len()
    }

    /// Notes the TCP flags of a packet of flow `e`, `from_client` or from the target.
    pub fn note_tcp(e: &mut NatEntry, flags: u8, from_client: bool) {
        if flags & tcp_flags::RST != 0 {
            e.tcp.rst = true;
        }
        if flags & tcp_flags::FIN != 0 {
            if from_client {
                e.tcp.fin_client = true;
            } else {
                e.tcp.fin_target = true;
            }
        }
        if !from_client && flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK != 0 {
            e.tcp.established = true;
        }
    }

    /// Forgets flows idle past their limit, calling `ended(group, client)`
    /// for each; returns how many ended.
    pub fn sweep(&mut self, now: Instant, mut ended: impl FnMut(Group, Endpoint)) -> usize {
        let to = self.timeouts;
        let first = self.first;
        let by_port = &mut self.by_port;
        let mut n = 0;
        self.flows.retain(|(g, c), e| {
            let keep = now.saturating_sub(e.last) < e.idle_limit(g.transport, &to);
            if !keep {
                if let Some(slot) = by_port.get_mut(usize::from(e.port - first)) {
                    *slot = None;
                }
                ended(*g, *c);
                n += 1;
            }
            keep
        });
        n
    }

    /// Flows in use and capacity.
    pub fn fill(&self) -> (usize, usize) {
        (self.flows.len(), self.flows.capacity())
    }

    /// The idle times.
    pub fn timeouts(&self) -> NatTimeouts {
        self.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pias::addr::Ipv4;

    fn g() -> Group {
        Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: 53,
            transport: Transport::Udp,
        }
    }
    fn ep(i: u8, port: u16) -> Endpoint {
        Endpoint {
            ip: Ipv4([198, 18, 0, i]),
            port,
        }
    }

    #[test]
    fn a_flow_keeps_its_port_and_replies_map_back() {
        let mut nat = Nat::new(4, 20000, 8, [1; 16], NatTimeouts::default());
        let p = nat.map(0, g(), ep(9, 1000), ep(20, 53)).unwrap().port;
        assert_eq!(nat.map(5, g(), ep(9, 1000), ep(20, 53)).unwrap().port, p);
        let q = nat.map(5, g(), ep(9, 1001), ep(20, 53)).unwrap().port;
        assert_ne!(p, q);
        let (gg, c, e) = nat.by_port(p).unwrap();
        assert_eq!((gg, c, e.target), (g(), ep(9, 1000), ep(20, 53)));
        assert!(nat.by_port(20007).is_none());
        assert!(nat.by_port(19999).is_none());
        assert!(!nat.owns_port(20008));
    }

    #[test]
    fn a_full_table_refuses_new_flows_and_keeps_the_old() {
        let mut nat = Nat::new(2, 20000, 2, [1; 16], NatTimeouts::default());
        let a = nat.map(0, g(), ep(9, 1), ep(20, 53)).unwrap().port;
        nat.map(0, g(), ep(9, 2), ep(20, 53)).unwrap();
        assert_eq!(
            nat.map(0, g(), ep(9, 3), ep(20, 53)).err(),
            Some(NatError::Full)
        );
        assert_eq!(nat.map(1, g(), ep(9, 1), ep(20, 53)).unwrap().port, a);
        assert_eq!(nat.fill(), (2, 2));
    }

    #[test]
    fn idle_flows_end_after_their_transport_limit_and_free_their_port() {
        let to = NatTimeouts::default();
        let mut nat = Nat::new(8, 20000, 8, [1; 16], to);
        let tcp = Group {
            transport: Transport::Tcp,
            ..g()
        };
        let u = nat.map(0, g(), ep(9, 1), ep(20, 53)).unwrap().port;
        // An established TCP flow, and one that was reset.
        let e = nat.map(0, tcp, ep(9, 2), ep(20, 80)).unwrap();
        Nat::note_tcp(e, tcp_flags::SYN | tcp_flags::ACK, false);
        let r = nat.map(0, tcp, ep(9, 3), ep(20, 80)).unwrap();
        Nat::note_tcp(r, tcp_flags::SYN | tcp_flags::ACK, false);
        Nat::note_tcp(r, tcp_flags::RST, true);
        let mut ended = vec![];
        nat.sweep(to.tcp_transitory, |g, c| ended.push((g.transport, c.port)));
        assert_eq!(ended, vec![(Transport::Tcp, 3)]);
        ended.clear();
        nat.sweep(to.udp, |g, c| ended.push((g.transport, c.port)));
        assert_eq!(ended, vec![(Transport::Udp, 1)]);
        assert!(nat.by_port(u).is_none());
        ended.clear();
        nat.sweep(to.tcp_established - 1, |g, c| {
            ended.push((g.transport, c.port))
        });
        assert!(ended.is_empty());
        nat.sweep(to.tcp_established, |g, c| ended.push((g.transport, c.port)));
        assert_eq!(ended, vec![(Transport::Tcp, 2)]);
        assert_eq!(nat.fill().0, 0);
    }

    #[test]
    fn fin_from_both_sides_shortens_the_wait() {
        let to = NatTimeouts::default();
        let mut nat = Nat::new(8, 20000, 8, [1; 16], to);
        let tcp = Group {
            transport: Transport::Tcp,
            ..g()
        };
        let e = nat.map(0, tcp, ep(9, 2), ep(20, 80)).unwrap();
        Nat::note_tcp(e, tcp_flags::SYN | tcp_flags::ACK, false);
        Nat::note_tcp(e, tcp_flags::FIN | tcp_flags::ACK, true);
        assert_eq!(
            nat.sweep(to.tcp_transitory, |_, _| {}),
            0,
            "half-closed stays"
        );
        let e = nat
            .map(to.tcp_transitory, tcp, ep(9, 2), ep(20, 80))
            .unwrap();
        Nat::note_tcp(e, tcp_flags::FIN | tcp_flags::ACK, false);
        assert_eq!(nat.sweep(2 * to.tcp_transitory, |_, _| {}), 1);
    }

    #[test]
    fn ports_go_round_robin_are_freed_by_expiry_and_can_run_out() {
        let to = NatTimeouts {
            udp: 10,
            tcp_established: 20,
            tcp_transitory: 5,
        };
        let mut nat = Nat::new(3, 20000, 3, [1; 16], to);
        assert_eq!(nat.timeouts(), to);
        let ports: Vec<u16> = (1..=3)
            .map(|i| nat.map(0, g(), ep(9, i), ep(20, 53)).unwrap().port)
            .collect();
        assert_eq!(ports, vec![20000, 20001, 20002]);
        // All three expire; their ports are free again, handed out from where
        // the last allocation stopped (so a port is not reused at once).
        assert_eq!(nat.sweep(10, |_, _| {}), 3);
        assert_eq!(nat.fill(), (0, 3));
        let again: Vec<u16> = (4..=6)
            .map(|i| nat.map(11, g(), ep(9, i), ep(20, 53)).unwrap().port)
            .collect();
        assert_eq!(again, vec![20000, 20001, 20002]);
        // A port freed while others are in use is not the next one handed
        // out: allocation goes on round the range.
        let mut rr = Nat::new(3, 40000, 3, [1; 16], to);
        rr.map(0, g(), ep(9, 1), ep(20, 53)).unwrap();
        rr.map(5, g(), ep(9, 2), ep(20, 53)).unwrap();
        assert_eq!(rr.sweep(10, |_, _| {}), 1, "the first flow ends");
        assert_eq!(rr.map(10, g(), ep(9, 3), ep(20, 53)).unwrap().port, 40002);
        assert_eq!(rr.map(10, g(), ep(9, 4), ep(20, 53)).unwrap().port, 40000);
        // Nor is a port freed just after its allocation.
        let mut once = Nat::new(3, 50000, 3, [1; 16], to);
        assert_eq!(once.map(0, g(), ep(9, 1), ep(20, 53)).unwrap().port, 50000);
        assert_eq!(once.sweep(10, |_, _| {}), 1);
        assert_eq!(once.map(10, g(), ep(9, 2), ep(20, 53)).unwrap().port, 50001);
        // More flows than ports: the ports run out before the table does.
        let mut narrow = Nat::new(4, 30000, 2, [1; 16], to);
        narrow.map(0, g(), ep(9, 1), ep(20, 53)).unwrap();
        narrow.map(0, g(), ep(9, 2), ep(20, 53)).unwrap();
        assert_eq!(
            narrow.map(0, g(), ep(9, 3), ep(20, 53)).err(),
            Some(NatError::NoPort)
        );
        // Freeing the first port makes it the next one found, past the wrap.
        let e = narrow.map(5, g(), ep(9, 2), ep(20, 53)).unwrap();
        assert_eq!(e.port, 30001);
        assert_eq!(narrow.sweep(10, |_, _| {}), 1);
        assert_eq!(
            narrow.map(10, g(), ep(9, 3), ep(20, 53)).unwrap().port,
            30000
        );
    }

    #[test]
    fn a_flow_moved_to_another_target_starts_its_tcp_state_afresh() {
        let mut nat = Nat::new(4, 20000, 8, [1; 16], NatTimeouts::default());
        let tcp = Group {
            transport: Transport::Tcp,
            ..g()
        };
        let e = nat.map(0, tcp, ep(9, 1), ep(20, 80)).unwrap();
        Nat::note_tcp(e, tcp_flags::SYN | tcp_flags::ACK, false);
        let port = e.port;
        // The same target: the state stays.
        let e = nat.map(1, tcp, ep(9, 1), ep(20, 80)).unwrap();
        assert!(e.tcp.established);
        // Another target: same port, fresh state, the new target.
        let e = nat.map(2, tcp, ep(9, 1), ep(21, 80)).unwrap();
        assert_eq!((e.port, e.target), (port, ep(21, 80)));
        assert_eq!(e.tcp, TcpSeen::default());
        assert_eq!(e.last, 2);
    }

    #[test]
    fn only_a_syn_ack_from_the_target_establishes() {
        let mut nat = Nat::new(4, 20000, 8, [1; 16], NatTimeouts::default());
        let e = nat.map(0, g(), ep(9, 1), ep(20, 80)).unwrap();
        for (flags, from_client) in [
            (tcp_flags::SYN, false),
            (tcp_flags::ACK, false),
            (tcp_flags::SYN | tcp_flags::ACK, true),
            (tcp_flags::SYN, true),
        ] {
            Nat::note_tcp(e, flags, from_client);
            assert_eq!(e.tcp, TcpSeen::default(), "{flags:#x} {from_client}");
        }
        Nat::note_tcp(e, tcp_flags::SYN | tcp_flags::ACK, false);
        assert!(e.tcp.established);
        Nat::note_tcp(e, tcp_flags::FIN, false);
        assert!(e.tcp.fin_target && !e.tcp.fin_client && !e.tcp.rst);
        Nat::note_tcp(e, tcp_flags::RST | tcp_flags::ACK, true);
        assert!(e.tcp.rst && !e.tcp.fin_client);
    }
}
