//! The comparison's load generators and meters, the same code for both
//! sides, every loop bounded in count and time: DNS request/response
//! (`rr::DnsClient`), an open-loop flood of 64-byte frames counted at the
//! target's sink, iperf3 (Debian's) both ways, and a guest's idle CPU.

use super::lan::{Sink, SINK_PORT};
use crate::lab::inside_netns;
use crate::rr::{DnsClient, RrResult};
use crate::services::require;
use crate::topo::DNS_NAME;
use crate::Appliance;
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// UDP payload of a 64-byte Ethernet frame (no FCS): 64 − 14 − 20 − 8.
pub const FLOOD_PAYLOAD: usize = 22;
/// A query unanswered after this is lost.
const RR_TIMEOUT: Duration = Duration::from_millis(500);

/// `n` queries with `in_flight` outstanding from `bind` in `ns` to `server`.
pub fn rr(
    ns: &str,
    bind: Ipv4Addr,
    server: SocketAddrV4,
    n: usize,
    in_flight: usize,
) -> Result<RrResult> {
    let mut c = DnsClient::in_netns(ns, bind, server)?;
    c.load(
        DNS_NAME,
        n,
        in_flight,
        None,
        RR_TIMEOUT,
        Duration::from_secs(120),
    )
}

/// A new query this often while waiting for the first answer: the boot
/// figure's resolution.
const FIRST_ANSWER_GAP: Duration = Duration::from_millis(2);

/// Asks from `bind` in `ns` every 2 ms until answered (when) or `within`
/// passes (None); `between` runs before each query (see
/// `DnsClient::first_answer`).
pub fn first_answer(
    ns: &str,
    bind: Ipv4Addr,
    server: SocketAddrV4,
    within: Duration,
    between: impl FnMut() -> Result<()>,
) -> Result<Option<Instant>> {
    let mut c = DnsClient::in_netns(ns, bind, server)?;
    c.first_answer(DNS_NAME, FIRST_ANSWER_GAP, within, between)
}

/// What a flood did.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub sent: u64,
    pub received: u64,
    pub elapsed: Duration,
}

impl Flood {
    /// Frames that reached the sink, per second of sending.
    pub fn pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Fraction of the frames sent that never arrived.
    pub fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }
}

/// Sends 64-byte frames as fast as one socket can from `bind` in `ns` to
/// `to` (the sink's port through the guest) for `dur` or `max` frames,
/// whichever ends first; then waits for stragglers and reads the sink.
pub fn flood(
    ns: &str,
    bind: Ipv4Addr,
    to: Ipv4Addr,
    sink: &Sink,
    dur: Duration,
    max: u64,
) -> Result<Flood> {
    let sock = inside_netns(ns, move || Ok(UdpSocket::bind((bind, 0))?))?;
    let dst = SocketAddrV4::new(to, SINK_PORT);
    let before = sink.count();
    let payload = [0x5au8; FLOOD_PAYLOAD];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < max && t0.elapsed() < dur {
        // Full socket buffers (ENOBUFS) are not frames sent.
        if sock.send_to(&payload, dst).is_ok() {
            sent += 1;
        }
    }
    let elapsed = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    Ok(Flood {
        sent,
        received: sink.count() - before,
        elapsed,
    })
}

/// Tries of an iperf3 run that could not connect or found the server busy.
const IPERF_TRIES: u32 = 8;

/// iperf3 from `ns` to `server`:`port` for `secs` (`reverse`: the server
/// sends); the received throughput in Mbit/s. A run that cannot connect, or
/// finds the server still busy with a test whose client went away (the
/// server gives up on it after 5 s without data, `lan.rs`), is tried again a
/// second later, 8 tries in all, and says so: right after a flood the host
/// and the target are still catching up. (An appliance once
/// counted the server down after a flood, its pongs lost in it; it now
/// excuses pings lost in a receive overrun, `tests/tests/overrun.rs`.)
pub fn iperf(ns: &str, server: Ipv4Addr, port: u16, secs: u32, reverse: bool) -> Result<f64> {
    let mut tries = 0;
    loop {
        tries += 1;
        match iperf_once(ns, server, port, secs, reverse) {
            Err(e) if tries < IPERF_TRIES && retryable(&format!("{e:#}")) => {
                eprintln!("  {e:#}; again in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// Whether an iperf3 failure is one a second's wait can mend.
fn retryable(error: &str) -> bool {
    error.contains("unable to connect") || error.contains("server is busy")
}

fn iperf_once(ns: &str, server: Ipv4Addr, port: u16, secs: u32, reverse: bool) -> Result<f64> {
    let bin = require("iperf3")?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(bin)
        .args(["-c", &server.to_string(), "-p", &port.to_string()])
        .args(["-t", &secs.to_string(), "-J", "--connect-timeout", "3000"]);
    if reverse {
        cmd.arg("-R");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting iperf3")?;
    // Bounded: the test's length plus connection and teardown.
    let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 15);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("iperf3 to {server}:{port} still running after {secs} s + 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3 to {server}:{port}: {e}");
    }
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3's JSON has no end.sum_received.bits_per_second")?;
    Ok(bps / 1e6)
}

/// The guest's QEMU process's CPU use over `dur`, percent of one core.
pub fn idle_cpu(guest: &Appliance, dur: Duration) -> Result<f64> {
    let c0 = guest.cpu_time()?;
    let t0 = Instant::now();
    std::thread::sleep(dur);
    let used = guest.cpu_time()? - c0;
    Ok(100.0 * used.as_secs_f64() / t0.elapsed().as_secs_f64())
}

/// Milliseconds of a latency percentile (NaN if nothing was answered).
pub fn ms(r: &RrResult, p: f64) -> f64 {
    r.percentile(p).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::retryable;

    #[test]
    fn a_busy_server_and_a_refused_connection_are_tried_again_nothing_else() {
        let busy =
            "iperf3 to 203.0.113.10:5201: the server is busy running a test. try again later";
        assert!(retryable(busy));
        assert!(retryable(
            "iperf3 to 203.0.113.10:5201: unable to connect to server: Connection refused"
        ));
        assert!(!retryable(
            "iperf3 to 203.0.113.10:5201 still running after 2 s + 15 s"
        ));
        assert!(!retryable("iperf3 printed no JSON: "));
    }
}
