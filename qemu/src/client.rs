//! Talking to appliances from inside a lab: management requests over UDP and
//! ICMP echo over a raw socket. Every wait is bounded.

use crate::lab::Lab;
use anyhow::{bail, Context, Result};
use pias::mgmt::{Body, Op, Response};
use pias::status::{ProxyReport, Status};
use pias::wire::Key;
pub use pias_ctl::client::{random_nonce, sealed_request, timed_out, unix_ms};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// A management client bound inside a lab (`pias_ctl::Client` on a socket
/// made in the lab's namespace), signing with the appliance's management key.
pub struct MgmtClient {
    inner: pias_ctl::Client,
}

impl MgmtClient {
    /// A client of an appliance of `lab` (signing with the lab's key).
    pub fn new(lab: &Lab, target: Ipv4Addr, port: u16) -> Result<MgmtClient> {
        MgmtClient::in_netns(&lab.ns, lab.host_ip, target, port, lab.mgmt_key.clone())
    }

    /// A client in namespace `ns`, bound to its address `bind`, with `key`.
    pub fn in_netns(
        ns: &str,
        bind: Ipv4Addr,
        target: Ipv4Addr,
        port: u16,
        key: Key,
    ) -> Result<MgmtClient> {
        let sock = crate::lab::inside_netns(ns, move || {
            UdpSocket::bind((bind, 0)).with_context(|| format!("binding a UDP socket to {bind}"))
        })?;
        let target = SocketAddr::V4(SocketAddrV4::new(target, port));
        Ok(MgmtClient {
            inner: pias_ctl::Client::new(sock, target, key)?,
        })
    }

    /// Sends one request and waits up to `timeout` for its answer (no retry).
    pub fn request_once(&mut self, op: Op, timeout: Duration) -> Result<Response> {
        Ok(self.inner.request_once(op, timeout)?)
    }

    /// Sends `op` up to `tries` times (UDP may be lost while the lab settles).
    pub fn request(&mut self, op: Op, tries: u32, per_try: Duration) -> Result<Response> {
        Ok(self.inner.request(op, tries, per_try)?)
    }

    pub fn status(&mut self) -> Result<Status> {
        match self
            .request(Op::Status, 10, Duration::from_millis(500))?
            .body
        {
            Body::Status(s) => Ok(s),
            other => bail!("status request answered with {other:?}"),
        }
    }

    /// The proxy's and the data path's counters.
    pub fn proxy_report(&mut self) -> Result<ProxyReport> {
        match self
            .request(Op::Proxy, 10, Duration::from_millis(500))?
            .body
        {
            Body::Proxy(r) => Ok(r),
            other => bail!("proxy request answered with {other:?}"),
        }
    }

    /// What BGP is doing.
    pub fn routing(&mut self) -> Result<pias::status::RoutingReport> {
        match self
            .request(Op::Routing, 10, Duration::from_millis(500))?
            .body
        {
            Body::Routing(r) => Ok(r),
            other => bail!("routing request answered with {other:?}"),
        }
    }

    /// Starts (`true`) or ends a drain; the answer.
    pub fn drain(&mut self, on: bool) -> Result<Body> {
        let op = if on { Op::Drain } else { Op::Undrain };
        Ok(self.request(op, 5, Duration::from_millis(500))?.body)
    }

    pub fn shutdown(&mut self) -> Result<Body> {
        Ok(self
            .request(Op::Shutdown, 5, Duration::from_millis(500))?
            .body)
    }
}

/// ICMP echo over a raw socket inside a lab.
pub struct Pinger {
    sock: Socket,
    ident: u16,
    seq: u16,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pinger {
    pub fn new(lab: &Lab) -> Result<Pinger> {
        let sock = lab.inside(|| {
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
                .context("raw ICMP socket (needs root)")
        })?;
        Ok(Pinger {
            sock,
            ident: (std::process::id() & 0xffff) as u16,
            seq: 0,
        })
    }

    /// One echo request; `Ok(Some(rtt))` on a reply within `timeout`.
    pub fn ping(&mut self, to: Ipv4Addr, timeout: Duration) -> Result<Option<Duration>> {
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = vec![8u8, 0, 0, 0];
        pkt.extend_from_slice(&self.ident.to_be_bytes());
        pkt.extend_from_slice(&self.seq.to_be_bytes());
        pkt.extend_from_slice(b"pias-lab-echo-payload");
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        let sent = Instant::now();
        self.sock
            .send_to(&pkt, &SockAddr::from(SocketAddrV4::new(to, 0)))?;
        let mut buf = [0u8; 1500];
        loop {
            let left = (sent + timeout).saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            let n = match (&self.sock).read(&mut buf) {
                Ok(n) => n,
                Err(e) if timed_out(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let bytes = &buf[..n];
            let ihl = usize::from(bytes.first().copied().unwrap_or(0) & 0x0f) * 4;
            let icmp = bytes.get(ihl..).unwrap_or(&[]);
            let src = bytes
                .get(12..16)
                .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]));
            if icmp.len() >= 8
                && icmp[0] == 0
                && src == Some(to)
                && icmp[4..6] == self.ident.to_be_bytes()
                && icmp[6..8] == self.seq.to_be_bytes()
            {
                return Ok(Some(sent.elapsed()));
            }
        }
    }

    /// Pings every `interval` until the first reply or `timeout`; the time of
    /// the first reply since `since`.
    pub fn first_reply(
        &mut self,
        to: Ipv4Addr,
        since: Instant,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.ping(to, interval)?.is_some() {
                return Ok(since.elapsed());
            }
        }
        bail!("no echo reply from {to} within {timeout:?}")
    }
}
