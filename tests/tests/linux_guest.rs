//! The baseline of `bench --vs-linux` (issue 9, section 1): the Linux guest
//! built from Debian's packages (kernel, busybox-static, nftables), booted on
//! microvm under TCG with the appliance's QEMU flags, forwards UDP and TCP for
//! the anycast address to a target by DNAT with masquerade.
//!
//! Never skipped: a missing Debian package (or no way to fetch the kernel
//! package) fails the test with the build's error.

use pias_qemu::build::workspace_root;
use pias_qemu::lab::inside_netns;
use pias_qemu::vslinux::guest::{Forward, GuestNet, LinuxGuest, Proto, ERROR_PREFIX, READY};
use pias_qemu::{Lab, LinuxBoot, Machine, Spec};
use pias_tests::test_accel;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GUEST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const ANYCAST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const UDP_PORT: u16 = 53;
const TCP_PORT: u16 = 80;
const TARGET_UDP: u16 = 5353;
const TARGET_TCP: u16 = 8080;

/// The target's namespace, wired to the lab's bridge by a veth; deleted on drop.
struct TargetNs(String);

impl TargetNs {
    fn new(lab: &Lab) -> TargetNs {
        let ns = format!("{}-t", lab.ns);
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip netns add")
            .success();
        assert!(ok, "creating namespace {ns}");
        let t = TargetNs(ns);
        lab.exec(&[
            "ip", "link", "add", "vt0", "type", "veth", "peer", "name", "eth0", "netns", &t.0,
        ])
        .expect("veth to the target");
        lab.exec(&["ip", "link", "set", "vt0", "master", "br0"])
            .expect("veth on the bridge");
        lab.exec(&["ip", "link", "set", "vt0", "up"])
            .expect("veth up");
        for argv in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", "198.18.0.3/24", "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
        ] {
            let ok = Command::new("ip")
                .args(["netns", "exec", &t.0])
                .args(&argv)
                .status()
                .expect("ip netns exec")
                .success();
            assert!(ok, "{argv:?} in {}", t.0);
        }
        t
    }
}

impl Drop for TargetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Waits for the guest's READY; panics with its console on an error line, an
/// exit or a timeout.
fn wait_ready(lab: &mut Lab, timeout: Duration) -> Duration {
    let g = &mut lab.appliances[0];
    loop {
        let console = g.console();
        if console.contains(READY) {
            return g.started.elapsed();
        }
        let exited = g.try_exit().expect("try_wait");
        if console.contains(ERROR_PREFIX) || exited.is_some() || g.started.elapsed() > timeout {
            panic!(
                "the Linux guest is not ready (exit: {exited:?}, after {:?})\nconsole:\n{console}",
                g.started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// UDP and TCP echo servers in the target's namespace; they record their
/// peers' addresses and stop when the flag is dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Echo {
    fn start(ns: &str) -> Echo {
        let (udp, tcp) = inside_netns(ns, || {
            let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, TARGET_UDP))?;
            let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, TARGET_TCP))?;
            Ok((udp, tcp))
        })
        .expect("echo sockets in the target namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        {
            let (stop, peers) = (stop.clone(), peers.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        peers.lock().unwrap().push(from);
                        let _ = udp.send_to(&buf[..n], from);
                    }
                }
            });
        }
        {
            let (stop, peers) = (stop.clone(), peers.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut c, from)) => {
                            peers.lock().unwrap().push(from);
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 2048];
                            if let Ok(n) = c.read(&mut buf) {
                                let _ = c.write_all(&buf[..n]);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Echo { stop, peers }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn linux_guest_forwards_udp_and_tcp_through_dnat() {
    let guest = LinuxGuest::build(&workspace_root().join("out").join("vs-linux"))
        .expect("building the Linux baseline guest from Debian's packages");
    let bytes = guest.image_bytes().expect("image size");
    assert!(bytes > 1_000_000, "implausible image size {bytes}");

    let mut lab = Lab::new("vslinux").expect("creating the lab");
    lab.exec(&["ip", "route", "add", "203.0.113.0/24", "via", "198.18.0.2"])
        .expect("anycast route via the guest");
    let target = TargetNs::new(&lab);
    let echo = Echo::start(&target.0);

    let net = GuestNet {
        address: GUEST,
        prefix_len: 24,
        gateway: Some(lab.host_ip),
        anycast: ANYCAST,
        forwards: vec![
            Forward {
                proto: Proto::Udp,
                port: UDP_PORT,
                to: SocketAddrV4::new(TARGET, TARGET_UDP),
            },
            Forward {
                proto: Proto::Tcp,
                port: TCP_PORT,
                to: SocketAddrV4::new(TARGET, TARGET_TCP),
            },
        ],
    };
    // The appliance's QEMU flags (the lab's `Spec`), the guest's files.
    let mut spec = Spec::new(Machine::Microvm, test_accel(), Vec::new());
    spec.blob = None;
    spec.memory_mb = 128;
    spec.linux = Some(LinuxBoot {
        kernel: guest.kernel.clone(),
        initrd: guest.initrd.clone(),
        append: guest.cmdline(&net),
    });
    lab.boot(Path::new("unused: the spec boots Linux"), spec)
        .expect("starting qemu-system-x86_64");
    let started = lab.appliances[0].started;
    // UDP from QEMU's start on, as a benchmark would ask, so a request that
    // meets the guest while it is still setting up is in the test too. The
    // answer comes back from the anycast address, sent by the target.
    let ns = lab.ns.clone();
    let prober = std::thread::spawn(move || {
        inside_netns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let deadline = started + Duration::from_secs(120);
            let mut buf = [0u8; 64];
            while Instant::now() < deadline {
                let _ = s.send_to(b"udp via dnat", (ANYCAST, UDP_PORT));
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    return Ok(Some((buf[..n].to_vec(), from, started.elapsed())));
                }
            }
            Ok(None)
        })
    });
    let ready = wait_ready(&mut lab, Duration::from_secs(120));
    let udp_answered = prober
        .join()
        .expect("udp prober thread")
        .expect("udp client");
    let Some((data, from, first_answer)) = udp_answered else {
        panic!(
            "no UDP answer through the guest\nconsole:\n{}",
            lab.appliances[0].console()
        );
    };
    assert_eq!(data, b"udp via dnat");
    assert_eq!(from, SocketAddr::from((ANYCAST, UDP_PORT)));

    // TCP: a connection to the anycast address's port reaches the target.
    let echoed = lab
        .inside(move || {
            let mut c = TcpStream::connect_timeout(
                &SocketAddr::from((ANYCAST, TCP_PORT)),
                Duration::from_secs(10),
            )?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(b"tcp via dnat")?;
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf)?;
            Ok(buf[..n].to_vec())
        })
        .unwrap_or_else(|e| {
            panic!(
                "tcp through the guest: {e:#}\nconsole:\n{}",
                lab.appliances[0].console()
            )
        });
    assert_eq!(echoed, b"tcp via dnat");

    // A port without a forward is the guest's own: refused, not routed on.
    let refused = lab
        .inside(move || {
            Ok(TcpStream::connect_timeout(
                &SocketAddr::from((ANYCAST, TCP_PORT + 1)),
                Duration::from_secs(10),
            )
            .map_err(|e| e.kind()))
        })
        .unwrap();
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "an unforwarded port"
    );

    // Masquerade: the target saw the guest, not the client.
    let peers = echo.peers.lock().unwrap().clone();
    assert!(
        peers.len() >= 2 && peers.iter().all(|p| p.ip() == std::net::IpAddr::V4(GUEST)),
        "target's peers {peers:?}"
    );
    eprintln!(
        "Linux guest {} (TCG, microvm, 128 MiB): image {bytes} bytes, QEMU start -> ready {ready:?}, -> first UDP answer {first_answer:?}",
        guest.version
    );
    drop(echo);
    drop(target);
}
