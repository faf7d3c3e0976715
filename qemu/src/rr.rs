//! A UDP request/response load client for the labs: DNS queries to a server
//! (an anycast group or a target), each with its own id, a bounded number in
//! flight, a bounded total and a deadline; answers matched by id, latencies
//! kept for percentiles. Used by the proxy benchmark and the lab tests.

use crate::services::{dns_answered, dns_query};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// What one load run saw.
#[derive(Clone, Debug, Default)]
pub struct RrResult {
    /// Queries sent.
    pub sent: usize,
    /// Queries answered (matched by id, no error, at least one record).
    pub answered: usize,
    /// Latency of each answered query.
    pub rtts: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RrResult {
    /// The `p`-th percentile latency (0..=100), if anything was answered.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut v = self.rtts.clone();
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
        v.get(i).copied()
    }

    /// Answers per second over the run.
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Unanswered fraction.
    pub fn loss(&self) -> f64 {
        1.0 - self.answered as f64 / (self.sent.max(1) as f64)
    }
}

/// One query of a paced probe run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    /// Its latency and the answer's A record, if answered in time.
    pub answer: Option<(Duration, Ipv4Addr)>,
}

/// The longest client-visible outage of a probe run: from the first
/// unanswered query after an answered one (or the start) to the next answered
/// query's send (or the last query's send, if none was answered after it).
pub fn longest_outage(probes: &[Probe]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Duration> = None;
    for p in probes {
        match (p.answer.is_some(), since) {
            (false, None) => since = Some(p.sent),
            (true, Some(s)) => {
                longest = longest.max(p.sent - s);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (since, probes.last()) {
        longest = longest.max(last.sent - s);
    }
    longest
}

/// A DNS client bound inside a namespace.
pub struct DnsClient {
    sock: UdpSocket,
    server: SocketAddrV4,
    next_id: u16,
}

impl DnsClient {
    /// A client in namespace `ns` on address `bind`, asking `server`.
    pub fn in_netns(ns: &str, bind: Ipv4Addr, server: SocketAddrV4) -> Result<DnsClient> {
        let sock = crate::lab::inside_netns(ns, move || {
            UdpSocket::bind((bind, 0)).with_context(|| format!("binding a UDP socket to {bind}"))
        })?;
        Ok(DnsClient {
            sock,
            server,
            next_id: 1,
        })
    }

    /// One query for `name`: its latency and the answer's first A record,
    /// or None if unanswered within `timeout`.
    pub fn ask(&mut self, name: &str, timeout: Duration) -> Result<Option<(Duration, Ipv4Addr)>> {
        let id = self.take_id();
        let t0 = Instant::now();
        self.sock.send_to(&dns_query(id, name), self.server)?;
        let mut buf = [0u8; 1500];
        loop {
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if dns_answered(&buf[..n], id) {
                let a = last_a_record(&buf[..n]).unwrap_or(Ipv4Addr::UNSPECIFIED);
                return Ok(Some((t0.elapsed(), a)));
            }
        }
    }

    /// Asks for `name` once every `gap` (a fresh query each time, whatever
    /// became of the last) until one is answered or `within` has passed;
    /// `between` runs once per gap (and may end the wait with an error).
    /// Returns when the first answer came. A send the kernel refuses (no
    /// route yet, say) counts as a try.
    pub fn first_answer(
        &mut self,
        name: &str,
        gap: Duration,
        within: Duration,
        mut between: impl FnMut() -> Result<()>,
    ) -> Result<Option<Instant>> {
        let start = Instant::now();
        let first_id = self.next_id;
        let mut buf = [0u8; 1500];
        // Non-blocking, with short sleeps: a socket timeout is counted in
        // the kernel's ticks (4 ms at HZ=250), too coarse for the gap.
        self.sock.set_nonblocking(true)?;
        let result = (|| {
            while start.elapsed() < within {
                between()?;
                let id = self.take_id();
                let _ = self.sock.send_to(&dns_query(id, name), self.server);
                let sent = Instant::now();
                while sent.elapsed() < gap {
                    match self.sock.recv_from(&mut buf) {
                        Ok((n, _)) if n >= 2 => {
                            let got = u16::from_be_bytes([buf[0], buf[1]]);
                            // Any query of this wait counts (ids wrap past 65535).
                            let ours = (1..=id.wrapping_sub(first_id))
                                .contains(&got.wrapping_sub(first_id));
                            if ours && dns_answered(&buf[..n], got) {
                                return Ok(Some(Instant::now()));
                            }
                        }
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(None)
        })();
        self.sock.set_nonblocking(false)?;
        result
    }

    /// Sends `total` queries for `name` keeping up to `in_flight` outstanding
    /// (one every `gap` at most, if set); each unanswered after `timeout` is
    /// given up; the run stops at `deadline` whatever is left.
    pub fn load(
        &mut self,
        name: &str,
        total: usize,
        in_flight: usize,
        gap: Option<Duration>,
        timeout: Duration,
        deadline: Duration,
    ) -> Result<RrResult> {
        let mut r = RrResult::default();
        let mut pending: HashMap<u16, Instant> = HashMap::new();
        let start = Instant::now();
        let mut last_send = start - gap.unwrap_or_default();
        let mut buf = [0u8; 1500];
        self.sock.set_read_timeout(Some(Duration::from_millis(1)))?;
        while (r.sent < total || !pending.is_empty()) && start.elapsed() < deadline {
            let now = Instant::now();
            pending.retain(|_, t| now.duration_since(*t) < timeout);
            let paced = gap.is_none_or(|g| now.duration_since(last_send) >= g);
            if r.sent < total && pending.len() < in_flight && paced {
                let id = self.take_id();
                self.sock.send_to(&dns_query(id, name), self.server)?;
                pending.insert(id, now);
                r.sent += 1;
                last_send = now;
                if pending.len() < in_flight && gap.is_none() {
                    continue;
                }
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 2 => {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    if let Some(t) = pending.remove(&id) {
                        if dns_answered(&buf[..n], id) {
                            r.answered += 1;
                            r.rtts.push(t.elapsed());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// Sends one query for `name` every `gap`, `count` in all, and records
    /// for each when it was sent and what answered it (the answer's A record:
    /// for `whoami.test`, the server). A query unanswered within `timeout` is
    /// lost; the run ends `timeout` after the last send at most.
    pub fn probe(
        &mut self,
        name: &str,
        count: usize,
        gap: Duration,
        timeout: Duration,
    ) -> Result<Vec<Probe>> {
        let mut probes: Vec<Probe> = Vec::with_capacity(count);
        let mut pending: HashMap<u16, usize> = HashMap::new();
        let start = Instant::now();
        let mut buf = [0u8; 1500];
        self.sock.set_read_timeout(Some(Duration::from_millis(1)))?;
        loop {
            let now = start.elapsed();
            pending.retain(|_, i| now.saturating_sub(probes[*i].sent) < timeout);
            if probes.len() < count && now >= gap * probes.len() as u32 {
                let id = self.take_id();
                self.sock.send_to(&dns_query(id, name), self.server)?;
                pending.insert(id, probes.len());
                probes.push(Probe {
                    sent: now,
                    answer: None,
                });
                continue;
            }
            if probes.len() == count && pending.is_empty() {
                break;
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 2 => {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    if let Some(i) = pending.remove(&id) {
                        if dns_answered(&buf[..n], id) {
                            let p = &mut probes[i];
                            let server = last_a_record(&buf[..n]).unwrap_or(Ipv4Addr::UNSPECIFIED);
                            p.answer = Some((start.elapsed().saturating_sub(p.sent), server));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(probes)
    }

    fn take_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The last 4-byte record's data in a DNS answer (the A record for the
/// simple answers of the lab's dnsmasq).
pub fn last_a_record(reply: &[u8]) -> Option<Ipv4Addr> {
    let ancount = u16::from_be_bytes([*reply.get(6)?, *reply.get(7)?]);
    if ancount == 0 || reply.len() < 4 {
        return None;
    }
    let d = &reply[reply.len() - 4..];
    Some(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let r = RrResult {
            sent: 4,
            answered: 3,
            rtts: [3, 1, 2].map(Duration::from_millis).to_vec(),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(r.percentile(50.0), Some(Duration::from_millis(2)));
        assert_eq!(r.percentile(100.0), Some(Duration::from_millis(3)));
        assert_eq!(r.percentile(0.0), Some(Duration::from_millis(1)));
        assert!((r.rate() - 3.0).abs() < 1e-9);
        assert!((r.loss() - 0.25).abs() < 1e-9);
        assert_eq!(RrResult::default().percentile(50.0), None);
    }

    /// A loopback DNS server that answers only queries arriving `after` its
    /// start (and first sends one answer to an id the client never used);
    /// returns its address and how many queries it saw, when it stops.
    fn late_server(
        after: Duration,
        runs: Duration,
    ) -> (SocketAddrV4, std::thread::JoinHandle<usize>) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = match sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let server = std::thread::spawn(move || {
            let start = Instant::now();
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            let mut seen = 0;
            let mut stray_sent = false;
            let mut buf = [0u8; 512];
            while start.elapsed() < runs {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                seen += 1;
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[7] = 1;
                if !stray_sent {
                    let mut stray = reply.clone();
                    stray[..2].copy_from_slice(&0x7777u16.to_be_bytes());
                    sock.send_to(&stray, from).unwrap();
                    stray_sent = true;
                }
                if start.elapsed() >= after {
                    sock.send_to(&reply, from).unwrap();
                }
            }
            seen
        });
        (addr, server)
    }

    fn client_of(server: SocketAddrV4) -> DnsClient {
        DnsClient {
            sock: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
            server,
            next_id: 1,
        }
    }

    #[test]
    fn first_answer_keeps_asking_until_answered() {
        let (addr, server) = late_server(Duration::from_millis(60), Duration::from_millis(400));
        let mut c = client_of(addr);
        let start = Instant::now();
        let mut looks = 0;
        let at = c
            .first_answer(
                "pias.test",
                Duration::from_millis(2),
                Duration::from_secs(5),
                || {
                    looks += 1;
                    Ok(())
                },
            )
            .unwrap()
            .expect("answered once the server answers");
        let took = at - start;
        assert!(
            took >= Duration::from_millis(60),
            "the stray answer counted: {took:?}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(looks >= 5, "a query (and a look) every 2 ms: {looks}");
        assert!(server.join().unwrap() >= 5);
    }

    #[test]
    fn first_answer_gives_up_after_within_and_between_can_stop_it() {
        let (addr, server) = late_server(Duration::from_secs(60), Duration::from_millis(200));
        let mut c = client_of(addr);
        let start = Instant::now();
        let none = c
            .first_answer(
                "pias.test",
                Duration::from_millis(2),
                Duration::from_millis(50),
                || Ok(()),
            )
            .unwrap();
        assert_eq!(none, None);
        assert!(start.elapsed() < Duration::from_millis(150));
        let mut looks = 0;
        let err = c.first_answer(
            "pias.test",
            Duration::from_millis(2),
            Duration::from_secs(5),
            || {
                looks += 1;
                if looks == 3 {
                    anyhow::bail!("the guest died");
                }
                Ok(())
            },
        );
        assert!(err.is_err());
        assert_eq!(looks, 3);
        // At most one query per 2 ms (and the three before the error).
        assert!(server.join().unwrap() <= 30);
    }

    #[test]
    fn outage_is_the_longest_unanswered_run() {
        let ip = Ipv4Addr::new(198, 18, 1, 20);
        let run = |answered: &[bool]| -> Vec<Probe> {
            answered
                .iter()
                .enumerate()
                .map(|(i, &a)| Probe {
                    sent: Duration::from_millis(10 * i as u64),
                    answer: a.then_some((Duration::from_millis(1), ip)),
                })
                .collect()
        };
        assert_eq!(longest_outage(&run(&[true; 5])), Duration::ZERO);
        assert_eq!(longest_outage(&[]), Duration::ZERO);
        // Lost at 10 and 20 ms, answered again at 30: 20 ms.
        let gap = run(&[true, false, false, true, false, true]);
        assert_eq!(longest_outage(&gap), Duration::from_millis(20));
        // Lost from 20 ms to the end (40 ms).
        let tail = run(&[true, true, false, false, false]);
        assert_eq!(longest_outage(&tail), Duration::from_millis(20));
        let head = run(&[false, false, false, true]);
        assert_eq!(longest_outage(&head), Duration::from_millis(30));
    }
}
