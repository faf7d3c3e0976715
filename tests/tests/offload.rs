//! Checksum and TCP segmentation offload through one appliance (IAP = JAP),
//! on the benchmark's LAN, whose client and target keep Linux's offloads:
//! 16 MB each way over one TCP connection through 203.0.113.10 (the target
//! echoes what it gets) arrive intact, and the appliance's counters show
//! large frames going on whole both ways, none refused. Then 4 MB each way
//! from the client behind the lossy link, whose segments arrive one by one
//! (offloads off on the delay line, 1 % loss): intact too, and merged into
//! large frames by the appliance's receive coalescing.

use pias_qemu::lab::{inside_netns, Spec};
use pias_qemu::machine::Machine;
use pias_qemu::vslinux::lan::{BenchLan, ANYCAST, TARGET};
use pias_qemu::vslinux::side::{group, Sides, Which};
use pias_tests::{kernel, status_of, test_accel};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A group no other test uses, served by the echo below.
const PORT: u16 = 5202;
const BYTES: usize = 16 << 20;
/// From behind the lossy link (about 1 Gbit/s there).
const LOSSY_BYTES: usize = 4 << 20;

/// `bytes` pseudo-random bytes (xorshift), so a misplaced segment shows.
fn payload(bytes: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..bytes / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Accepts a connection in the target and echoes it until the client
/// closes its side; the bytes echoed.
fn echo(listener: &TcpListener) -> anyhow::Result<usize> {
    let (mut s, _) = listener.accept()?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            s.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        s.write_all(&buf[..n])?;
        total += n;
    }
}

/// Connects from the client (retrying while the group's join settles),
/// sends `data` while reading the echo, returns what came back.
fn exchange(data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let to = SocketAddrV4::new(ANYCAST, PORT);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match TcpStream::connect_timeout(&to.into(), Duration::from_secs(3)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {to}: {e}; again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&data)?;
        w.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back)?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok(back)
}

#[test]
fn large_tcp_frames_cross_the_appliance_whole_and_intact_and_segments_are_merged() {
    let mut lan = BenchLan::up("offload").expect("the LAN");
    let mut cfg = lan.lab.config_for(0);
    cfg.deployment.proxies.truncate(1);
    let blob = pias_image::encode(&cfg).expect("encoding");
    let i = lan
        .lab
        .boot(&kernel(), Spec::new(Machine::Microvm, test_accel(), blob))
        .expect("booting");
    Sides::wait_ready(&mut lan, i, Which::Pias).expect("ready");
    let console = lan.lab.appliances[i].console();
    assert!(
        console.contains("TSO rx true tx true"),
        "the tap offers TSO both ways and the driver takes it:\n{console}"
    );
    let target_ns = lan.target_ns.clone();
    let listener = inside_netns(&target_ns, || Ok(TcpListener::bind((TARGET, PORT))?))
        .expect("listening in the target");
    let server = std::thread::spawn(move || -> anyhow::Result<(usize, usize)> {
        Ok((echo(&listener)?, echo(&listener)?))
    });
    let g = group(ANYCAST, PORT, true);
    let _agents = Sides::agents(&lan, &[(g, SocketAddrV4::new(TARGET, PORT))]).expect("agent");
    let before = status_of(&lan.lab, i).net;

    let data = payload(BYTES);
    let sent = data.clone();
    let t0 = Instant::now();
    let back = inside_netns(&lan.client_ns, move || exchange(data))
        .unwrap_or_else(|e| panic!("the exchange: {e:#}"));
    let took = t0.elapsed();
    assert_eq!(back.len(), BYTES, "every byte came back");
    assert!(back == sent, "the bytes came back changed");

    let n = status_of(&lan.lab, i).net;
    let (rx, cut, tx) = (
        n.rx_large - before.rx_large,
        n.rx_large_cut - before.rx_large_cut,
        n.tx_large - before.tx_large,
    );
    eprintln!(
        "2 x {} MiB through {ANYCAST}:{PORT} in {:.0} ms: {rx} large frames in ({cut} segments cut), {tx} out; {} waits for transmit room",
        BYTES >> 20,
        took.as_secs_f64() * 1e3,
        n.tx_ring_waits - before.tx_ring_waits
    );
    assert!(rx > 0 && tx > 0, "no large frame went on whole: {n:?}");
    assert_eq!(n.rx_bad_offload, 0, "{n:?}");
    // A large frame waits for one of the driver's large buffers as any frame
    // waits for ring room: never a driver error.
    assert_eq!(n.tx_driver_errors, 0, "{n:?}");
    // Whole, not cut: most large frames went on as they came.
    assert!(
        cut < rx * 4,
        "{cut} segments cut from {rx} large frames: {n:?}"
    );

    // From behind the lossy link: segments one by one, merged here.
    let lossy = LOSSY_BYTES;
    let data = payload(lossy);
    let sent = data.clone();
    let t0 = Instant::now();
    let back = inside_netns(&lan.lossy_ns, move || exchange(data))
        .unwrap_or_else(|e| panic!("the lossy exchange: {e:#}"));
    let took = t0.elapsed();
    assert_eq!(
        back.len(),
        lossy,
        "every byte came back over the lossy link"
    );
    assert!(
        back == sent,
        "the bytes came back changed over the lossy link"
    );
    let (first, second) = server.join().expect("echo thread").expect("echo");
    assert_eq!((first, second), (BYTES, lossy), "the target got every byte");
    let m = status_of(&lan.lab, i).net;
    eprintln!(
        "2 x {} MiB from behind 1 % loss in {:.0} ms: {} segments merged, {} large frames out",
        lossy >> 20,
        took.as_secs_f64() * 1e3,
        m.rx_coalesced - n.rx_coalesced,
        m.tx_large - n.tx_large
    );
    assert!(
        m.rx_coalesced > n.rx_coalesced && m.tx_large > n.tx_large,
        "no segments merged and sent whole: {m:?}"
    );
    assert_eq!(m.rx_bad_offload, 0, "{m:?}");
    assert_eq!(m.tx_driver_errors, 0, "{m:?}");
}
