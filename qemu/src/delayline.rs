//! A userspace delay line: forwards Ethernet frames between two interfaces of
//! one network namespace through AF_PACKET sockets, each direction holding its
//! frames in a bounded timed queue and releasing them after a fixed delay, with
//! optional random loss. The host kernel has no `sch_netem` (PLATFORM.md), so
//! the lab's inter-POP links are veth pairs meeting in a namespace where this
//! runs.
//!
//! Offloads must be off on every veth a frame crosses (`ethtool -K IF tx off rx
//! off gso off tso off gro off`): with checksum offload the copied TCP/UDP
//! frames arrive with unfinished checksums, and GSO hands over 64 KB frames.
//!
//! `run` is the loop (bounded: it waits at most `MAX_WAIT` between looks at the
//! stop flag); `DelayLine::spawn_in` runs it on a thread inside a named
//! namespace; `pias-qemu delayline` runs it in the current one.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest sleep between looks at the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Frames read from one socket per wake-up before the queues are served again.
const RX_BATCH: usize = 256;
/// Largest frame read; anything longer (a GSO super-frame) is dropped and counted.
const MAX_FRAME: usize = 16 * 1024;

// linux/if_packet.h (kept here: older libc crates lack some of them).
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_int = 1;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_OUTGOING: u8 = 4;

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

/// How one link behaves (the same both ways).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// One-way delay added to every frame.
    pub delay: Duration,
    /// Percentage of frames dropped at random (0..=100).
    pub loss_pct: f64,
    /// Frames each direction may hold; a frame arriving at a full queue is dropped.
    pub queue: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            delay: Duration::ZERO,
            loss_pct: 0.0,
            queue: 1000,
        }
    }
}

impl Params {
    pub const MAX_DELAY: Duration = Duration::from_secs(10);
    pub const MAX_QUEUE: usize = 100_000;

    pub fn validate(&self) -> Result<()> {
        if self.delay > Params::MAX_DELAY {
            bail!(
                "delay {:?} is above the maximum {:?}",
                self.delay,
                Params::MAX_DELAY
            );
        }
        if !self.loss_pct.is_finite() || !(0.0..=100.0).contains(&self.loss_pct) {
            bail!("loss {} % is not within 0..=100", self.loss_pct);
        }
        if self.queue == 0 || self.queue > Params::MAX_QUEUE {
            bail!(
                "queue {} frames is not within 1..={}",
                self.queue,
                Params::MAX_QUEUE
            );
        }
        Ok(())
    }
}

/// One direction's frames in arrival order, each released `delay` after it arrived.
#[derive(Debug)]
pub struct TimedQueue {
    frames: VecDeque<(Instant, Vec<u8>)>,
    cap: usize,
    delay: Duration,
}

impl TimedQueue {
    pub fn new(delay: Duration, cap: usize) -> TimedQueue {
        TimedQueue {
            frames: VecDeque::with_capacity(cap.min(4096)),
            cap,
            delay,
        }
    }

    /// Holds a frame that arrived at `now`; `false` (frame dropped) when full.
    pub fn push(&mut self, now: Instant, frame: Vec<u8>) -> bool {
        if self.frames.len() >= self.cap {
            return false;
        }
        self.frames.push_back((now + self.delay, frame));
        true
    }

    /// The oldest frame if its time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.frames.front() {
            Some((due, _)) if *due <= now => self.frames.pop_front().map(|(_, f)| f),
            _ => None,
        }
    }

    /// When the oldest frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.frames.front().map(|(due, _)| *due)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// One direction's counters.
#[derive(Debug, Default)]
pub struct DirStats {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_loss: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub send_errors: AtomicU64,
    /// Frames in the queue (updated as the loop goes).
    pub held: AtomicU64,
}

/// Both directions' counters; `a_to_b` counts frames that arrived on A.
#[derive(Debug, Default)]
pub struct Stats {
    pub a_to_b: DirStats,
    pub b_to_a: DirStats,
}

impl Stats {
    fn dir(&self, from_a: bool) -> &DirStats {
        if from_a {
            &self.a_to_b
        } else {
            &self.b_to_a
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl fmt::Display for DirStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "received {}, forwarded {}, held {}, dropped: queue full {}, loss {}, oversize {}, send errors {}",
            g(&self.received),
            g(&self.forwarded),
            g(&self.held),
            g(&self.dropped_full),
            g(&self.dropped_loss),
            g(&self.dropped_oversize),
            g(&self.send_errors)
        )
    }
}

/// A small xorshift64* generator for the loss decisions (no need for crypto).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn lost(&mut self, pct: f64) -> bool {
        pct > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 100.0 < pct
    }
}

/// An AF_PACKET socket bound to one interface, non-blocking.
pub struct PacketSocket {
    fd: OwnedFd,
    name: String,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_ll(protocol: u16, ifindex: i32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

impl PacketSocket {
    /// Opens a packet socket that sees every frame arriving on `ifname` (in
    /// the calling thread's namespace) and none that it sends itself.
    pub fn open(ifname: &str) -> Result<PacketSocket> {
        let cname = CString::new(ifname).with_context(|| format!("interface name {ifname:?}"))?;
        // SAFETY: `cname` is a NUL-terminated string that lives across the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname:?} in this network namespace");
        }
        let ifindex = i32::try_from(ifindex).context("interface index out of range")?;
        // Protocol 0 receives nothing until bind() names the interface, so no
        // frame from another interface slips in between.
        // SAFETY: a plain system call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("AF_PACKET socket (needs root)");
        }
        // SAFETY: `raw` was just returned by socket() and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let all = (libc::ETH_P_ALL as u16).to_be();
        let sll = sockaddr_ll(all, ifindex);
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("binding a packet socket to {ifname}"));
        }
        // Frames for the other side's MAC must be read too (a veth delivers
        // them anyway; promiscuous mode makes it explicit for any device).
        let mreq = PacketMreq {
            mr_ifindex: ifindex,
            mr_type: PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(&fd, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
            .with_context(|| format!("promiscuous mode on {ifname}"))?;
        // Linux >= 4.20; without it, `recv` filters our own frames by type.
        let _ = setsockopt(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32);
        let rcvbuf: libc::c_int = 4 << 20;
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        Ok(PacketSocket {
            fd,
            name: ifname.to_string(),
        })
    }

    /// One frame that arrived on the interface: `Ok(None)` when none is
    /// waiting; `Ok(Some(len))` where len may exceed `buf` (truncated frame).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let mut sll = sockaddr_ll(0, 0);
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for buf.len() bytes; `sll` and `len`
            // describe a writable sockaddr_ll of that size.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sll.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is readable for frame.len() bytes; the socket is
        // bound, so no address is needed.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Waits until one of the sockets is readable or `wait` has passed; which are readable.
fn wait_readable(socks: &[PacketSocket; 2], wait: Duration) -> Result<[bool; 2]> {
    let mut fds = socks.each_ref().map(|s| libc::pollfd {
        fd: s.fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is an array of 2 valid pollfd; `ts` a valid timespec; a
    // null signal mask leaves the thread's mask unchanged.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; 2]);
        }
        return Err(e).context("ppoll on the packet sockets");
    }
    let mut ready = [false; 2];
    for (r, p) in ready.iter_mut().zip(fds.iter()) {
        if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 && rc > 0 {
            // A read reports the error.
            *r = true;
        }
        *r |= p.revents & libc::POLLIN != 0;
    }
    Ok(ready)
}

/// Opens both sockets (in the calling thread's namespace).
pub fn open(if_a: &str, if_b: &str) -> Result<[PacketSocket; 2]> {
    if if_a == if_b {
        bail!("the delay line needs two different interfaces, got {if_a} twice");
    }
    Ok([PacketSocket::open(if_a)?, PacketSocket::open(if_b)?])
}

/// Forwards frames between the two sockets until `stop` is set.
pub fn run(
    socks: &[PacketSocket; 2],
    params: &Params,
    stop: &AtomicBool,
    stats: &Stats,
) -> Result<()> {
    params.validate()?;
    let mut queues = [
        TimedQueue::new(params.delay, params.queue),
        TimedQueue::new(params.delay, params.queue),
    ];
    let mut rng = Rng::seeded();
    let mut buf = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (d, q) in queues.iter_mut().enumerate() {
            let out = &socks[1 - d];
            let st = stats.dir(d == 0);
            while let Some(frame) = q.pop_due(now) {
                match out.send(&frame) {
                    Ok(()) => bump(&st.forwarded),
                    Err(_) => bump(&st.send_errors),
                }
            }
        }
        let wait = queues
            .iter()
            .filter_map(TimedQueue::next_due)
            .min()
            .map_or(MAX_WAIT, |due| due.saturating_duration_since(now))
            .min(MAX_WAIT);
        let ready = wait_readable(socks, wait)?;
        for (d, sock) in socks.iter().enumerate() {
            if !ready[d] {
                continue;
            }
            let st = stats.dir(d == 0);
            for _ in 0..RX_BATCH {
                let n = match sock.recv(&mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(e).with_context(|| format!("reading frames on {}", sock.name))
                    }
                };
                bump(&st.received);
                if n > buf.len() {
                    bump(&st.dropped_oversize);
                } else if rng.lost(params.loss_pct) {
                    bump(&st.dropped_loss);
                } else if !queues[d].push(Instant::now(), buf[..n].to_vec()) {
                    bump(&st.dropped_full);
                }
            }
        }
        for (d, q) in queues.iter().enumerate() {
            stats
                .dir(d == 0)
                .held
                .store(q.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A delay line running on its own thread inside a network namespace;
/// stopped and joined on drop.
pub struct DelayLine {
    pub netns: String,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl DelayLine {
    /// Starts forwarding between `if_a` and `if_b` of namespace `netns`;
    /// returns once both sockets are open (or with the reason they are not).
    pub fn spawn_in(netns: &str, if_a: &str, if_b: &str, params: Params) -> Result<DelayLine> {
        params.validate()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let path = format!("/run/netns/{netns}");
        let (a, b) = (if_a.to_string(), if_b.to_string());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("delayline-{netns}"))
            .spawn(move || -> Result<()> {
                let opened = (|| {
                    let ns =
                        std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("entering namespace {path}"))?;
                    open(&a, &b)
                })();
                let socks = match opened {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        let _ = tx.send(Err(e));
                        bail!("{msg}");
                    }
                };
                run(&socks, &params, &stop2, &stats2)
            })
            .context("starting a delay-line thread")?;
        let line = DelayLine {
            netns: netns.to_string(),
            stats,
            stop,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(line),
            Ok(Err(e)) => Err(e.context(format!("delay line in {netns}"))),
            Err(_) => bail!("delay line in {netns} did not start within 5 s"),
        }
    }

    /// Whether the thread is still forwarding (it ends on a socket error).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread; the error it ended with, if any.
    pub fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("delay-line thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_releases_in_order_after_the_delay() {
        let t0 = Instant::now();
        let d = Duration::from_millis(10);
        let mut q = TimedQueue::new(d, 2);
        assert!(q.push(t0, vec![1]));
        assert!(q.push(t0 + Duration::from_millis(3), vec![2]));
        assert!(!q.push(t0, vec![3]), "a full queue must refuse");
        assert_eq!(q.pop_due(t0 + Duration::from_millis(9)), None);
        assert_eq!(q.next_due(), Some(t0 + d));
        assert_eq!(q.pop_due(t0 + d), Some(vec![1]));
        assert_eq!(q.pop_due(t0 + d), None);
        assert_eq!(q.pop_due(t0 + Duration::from_millis(13)), Some(vec![2]));
        assert!(q.is_empty());
    }

    #[test]
    fn params_are_checked() {
        let ok = Params::default();
        assert!(ok.validate().is_ok());
        for bad in [
            Params { queue: 0, ..ok },
            Params {
                loss_pct: 101.0,
                ..ok
            },
            Params {
                loss_pct: f64::NAN,
                ..ok
            },
            Params {
                delay: Duration::from_secs(11),
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn loss_rate_is_roughly_the_asked_one() {
        let mut r = Rng::seeded();
        let lost = (0..100_000).filter(|_| r.lost(10.0)).count();
        assert!(
            (8_000..12_000).contains(&lost),
            "{lost} of 100000 lost at 10 %"
        );
        assert!(!(0..1000).any(|_| r.lost(0.0)));
        assert!((0..1000).all(|_| r.lost(100.0)));
    }
}
