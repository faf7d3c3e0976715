//! A small UDP DNS load client: sends `queries` A queries for one name to one
//! server at a bounded rate with a bounded number in flight, matches answers
//! to queries by id, and says how many were answered. Every wait is bounded:
//! each query by `per_query`, the whole run by `deadline`.

use crate::services::{dns_answered, dns_query};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// What to send.
#[derive(Clone, Debug)]
pub struct UdpLoad {
    /// The DNS server (an anycast group's address in a lab).
    pub server: SocketAddrV4,
    /// The name asked (type A).
    pub name: String,
    /// How many queries in all (at most 65,536: ids are not reused in a run).
    pub queries: u32,
    /// At most this many queries a second.
    pub rate: u32,
    /// At most this many unanswered queries at a time.
    pub window: usize,
    /// A query unanswered this long is lost.
    pub per_query: Duration,
    /// The whole run ends by then, whatever is left.
    pub deadline: Duration,
}

impl UdpLoad {
    /// `queries` for `name` to `server`, 2,000 a second, 32 in flight, 2 s
    /// per query, 60 s in all.
    pub fn new(server: SocketAddrV4, name: &str, queries: u32) -> UdpLoad {
        UdpLoad {
            server,
            name: name.to_string(),
            queries,
            rate: 2_000,
            window: 32,
            per_query: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        }
    }
}

/// What came of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Queries sent.
    pub sent: u32,
    /// Of those, answered (matching id, no error, at least one record).
    pub answered: u32,
    /// Answers with the right id but an error or no record.
    pub failed: u32,
    /// Queries unanswered within `per_query` (or by the deadline).
    pub lost: u32,
    /// Datagrams that matched no outstanding query (late, duplicate, foreign).
    pub unmatched: u32,
    /// How long the run took.
    pub elapsed: Duration,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} answered, {} failed, {} lost, {} unmatched in {:.2} s",
            self.sent,
            self.answered,
            self.failed,
            self.lost,
            self.unmatched,
            self.elapsed.as_secs_f64()
        )
    }
}

impl UdpLoad {
    /// Runs the load from a socket bound to `bind` (port chosen by the system).
    pub fn run(&self, bind: Ipv4Addr) -> Result<LoadReport> {
        let sock = UdpSocket::bind((bind, 0)).with_context(|| format!("binding to {bind}"))?;
        self.run_on(&sock)
    }

    /// Runs the load from inside network namespace `ns`.
    pub fn run_in(&self, ns: &str, bind: Ipv4Addr) -> Result<LoadReport> {
        let me = self.clone();
        crate::lab::inside_netns(ns, move || me.run(bind))
    }

    fn run_on(&self, sock: &UdpSocket) -> Result<LoadReport> {
        if self.queries > 65_536 {
            bail!("{} queries: ids would repeat within a run", self.queries);
        }
        if self.rate == 0 || self.window == 0 {
            bail!("rate and window must be above 0");
        }
        sock.connect(self.server)
            .with_context(|| format!("connecting to {}", self.server))?;
        let start = Instant::now();
        let end = start + self.deadline;
        let mut outstanding: HashMap<u16, Instant> = HashMap::with_capacity(self.window);
        let mut r = LoadReport::default();
        let mut buf = [0u8; 1500];
        loop {
            let now = Instant::now();
            if now >= end {
                r.lost += outstanding.len() as u32;
                break;
            }
            // Send what the rate and the window allow.
            let allowed = ((now - start).as_secs_f64() * f64::from(self.rate)) as u64 + 1;
            while r.sent < self.queries
                && u64::from(r.sent) < allowed
                && outstanding.len() < self.window
            {
                let id = r.sent as u16;
                // A refused send (ICMP from an earlier datagram) is retried next turn.
                if sock.send(&dns_query(id, &self.name)).is_err() {
                    break;
                }
                outstanding.insert(id, Instant::now());
                r.sent += 1;
            }
            if r.sent >= self.queries && outstanding.is_empty() {
                break;
            }
            // Wait for an answer, at most until the next send is due.
            let wait = if r.sent < self.queries && outstanding.len() < self.window {
                Duration::from_secs_f64(1.0 / f64::from(self.rate)).max(Duration::from_micros(200))
            } else {
                Duration::from_millis(20)
            };
            sock.set_read_timeout(Some(wait))?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let reply = &buf[..n];
                    let id = reply.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    match id.and_then(|id| outstanding.remove(&id).map(|_| id)) {
                        Some(id) if dns_answered(reply, id) => r.answered += 1,
                        Some(_) => r.failed += 1,
                        None => r.unmatched += 1,
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e).context("receiving answers"),
            }
            let now = Instant::now();
            let before = outstanding.len();
            outstanding.retain(|_, sent| now.duration_since(*sent) < self.per_query);
            r.lost += (before - outstanding.len()) as u32;
        }
        r.elapsed = start.elapsed();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A DNS server on loopback that answers every `drop_every`-th query
    /// never, and the others with one record.
    fn fake_server(drop_every: u16) -> (SocketAddrV4, Arc<AtomicBool>) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = match sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if id % drop_every == drop_every - 1 {
                    continue;
                }
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[7] = 1;
                let _ = sock.send_to(&reply, from);
            }
        });
        (addr, stop)
    }

    #[test]
    fn answers_are_matched_and_losses_counted() {
        let (addr, stop) = fake_server(10);
        let mut load = UdpLoad::new(addr, "pias.test", 500);
        load.rate = 5_000;
        load.per_query = Duration::from_millis(300);
        load.deadline = Duration::from_secs(20);
        let r = load.run(Ipv4Addr::LOCALHOST).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.sent, 500, "{r}");
        assert_eq!(r.answered, 450, "{r}");
        assert_eq!(r.lost, 50, "{r}");
        assert_eq!(r.failed + r.unmatched, 0, "{r}");
    }

    #[test]
    fn the_rate_is_a_bound() {
        let (addr, stop) = fake_server(u16::MAX);
        let mut load = UdpLoad::new(addr, "pias.test", 200);
        load.rate = 1_000;
        let r = load.run(Ipv4Addr::LOCALHOST).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.answered, 200, "{r}");
        // 200 at 1,000/s take at least 199 ms.
        assert!(r.elapsed >= Duration::from_millis(199), "{r}");
    }

    #[test]
    fn a_silent_server_ends_by_the_deadline() {
        let (addr, stop) = fake_server(1);
        let mut load = UdpLoad::new(addr, "pias.test", 100_000);
        assert!(load.run(Ipv4Addr::LOCALHOST).is_err(), "too many ids");
        load.queries = 1_000;
        load.per_query = Duration::from_secs(10);
        load.deadline = Duration::from_millis(500);
        let t = Instant::now();
        let r = load.run(Ipv4Addr::LOCALHOST).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(r.answered, 0, "{r}");
        assert_eq!(r.lost, r.sent, "{r}");
        assert_eq!(r.sent, 32, "the window bounds what is in flight: {r}");
    }
}
