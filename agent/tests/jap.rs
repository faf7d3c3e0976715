//! The agent binary against a real `pias::proxy::Proxy` as its JAP, over UDP
//! on loopback: the JAP listens on the group's address (127.0.0.10) at an
//! ephemeral "registration port", the agent and its nominal service live on
//! 127.0.0.2. Every wait is bounded.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pias::addr::{Endpoint, Group, Ipv4, Transport};
use pias::keys::group_key;
use pias::proxy::{PeerInfo, Proxy, ProxyConfig, Transmit, MS};
use pias::wire::Key;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const GROUP: Group = Group {
    ip: Ipv4([127, 0, 0, 10]),
    port: 53,
    transport: Transport::Udp,
};
const SERVICE: Endpoint = Endpoint {
    ip: Ipv4([127, 0, 0, 2]),
    port: 5353,
};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn secret() -> Key {
    Key([0x5e; 32])
}

/// A proxy serving every group in 127/8 by derivation, pinging targets every 300 ms.
fn new_proxy() -> Proxy {
    let mut cfg = ProxyConfig::new(1, 1, Key([1; 32]));
    cfg.group_secret = Some(secret());
    cfg.anycast = vec!["127.0.0.0/8".parse().unwrap()];
    cfg.target_ping = 300 * MS;
    Proxy::new(cfg, &[PeerInfo { id: 1, cluster: 1 }], now_us())
}

/// A real proxy behind a UDP socket on the group's address.
struct Jap {
    proxy: Arc<Mutex<Proxy>>,
    port: u16,
    stop: Arc<AtomicBool>,
    /// While set, what arrives is dropped unread (a proxy still booting).
    deaf: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Jap {
    fn start() -> Jap {
        let sock = UdpSocket::bind("127.0.0.10:0").expect("bind the JAP on 127.0.0.10");
        let port = sock.local_addr().unwrap().port();
        let proxy = Arc::new(Mutex::new(new_proxy()));
        let stop = Arc::new(AtomicBool::new(false));
        let deaf = Arc::new(AtomicBool::new(false));
        let (p, s, d) = (proxy.clone(), stop.clone(), deaf.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let wait = {
                    let mut proxy = p.lock().unwrap();
                    let now = now_us();
                    if proxy.poll_timeout().is_some_and(|t| t <= now) {
                        proxy.handle_timeout(now);
                    }
                    flush(&mut proxy, &sock);
                    proxy
                        .poll_timeout()
                        .map_or(20_000, |t| t.saturating_sub(now))
                        .clamp(1_000, 20_000)
                };
                sock.set_read_timeout(Some(Duration::from_micros(wait)))
                    .unwrap();
                if let Ok((n, SocketAddr::V4(src))) = sock.recv_from(&mut buf) {
                    if d.load(Ordering::SeqCst) {
                        continue;
                    }
                    let src = Endpoint {
                        ip: Ipv4(src.ip().octets()),
                        port: src.port(),
                    };
                    let mut proxy = p.lock().unwrap();
                    proxy.handle_message(now_us(), src, &buf[..n]);
                    flush(&mut proxy, &sock);
                }
            }
        });
        Jap {
            proxy,
            port,
            stop,
            deaf,
            thread: Some(thread),
        }
    }

    /// Drops (true) or takes (false) what arrives from now on.
    fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::SeqCst);
    }

    /// The proxy restarts: a new life with empty tables on the same address.
    fn restart(&self) {
        *self.proxy.lock().unwrap() = new_proxy();
    }

    fn held(&self) -> usize {
        self.proxy.lock().unwrap().targets_held(&GROUP)
    }

    fn live(&self) -> usize {
        self.proxy.lock().unwrap().live_targets(&GROUP)
    }

    fn counters(&self) -> pias::proxy::Counters {
        self.proxy.lock().unwrap().counters()
    }
}

impl Drop for Jap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends what the proxy has for targets; the rest (heartbeats, reports) has
/// nowhere to go in a one-proxy deployment.
fn flush(proxy: &mut Proxy, sock: &UdpSocket) {
    while let Some(t) = proxy.poll_transmit() {
        if let Transmit::Target { to, bytes, .. } = t {
            let to = SocketAddr::from((to.ip.0, to.port));
            let _ = sock.send_to(&bytes, to);
        }
    }
}

/// The agent binary, its stderr collected line by line; killed if still
/// running when dropped.
struct AgentProc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl AgentProc {
    fn spawn(jap: &Jap, key: &Key, extra: &[&str]) -> AgentProc {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("group.key");
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key_file, hex + "\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pias-agent"))
            .args(["join", "--group", "127.0.0.10:53/udp"])
            .args(["--service", "127.0.0.2:5353"])
            .arg("--key-file")
            .arg(&key_file)
            .args(["--registration-port", &jap.port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pias-agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, l) = (child.stderr.take().unwrap(), log.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        AgentProc {
            child,
            log,
            _dir: dir,
        }
    }

    /// Whether the agent has printed a line containing `what`, waiting up
    /// to 5 s for it: the lines reach the log through a reader thread, which
    /// on a loaded machine lags behind what the JAP has already seen (CI once
    /// failed on exactly that).
    fn said(&self, what: &str) -> bool {
        within(5 * SEC, || self.said_yet(what))
    }

    /// Whether the log holds a line containing `what` now, without waiting.
    fn said_yet(&self, what: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(what))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, sig).expect("signal the agent");
    }

    /// Waits (bounded) for the agent to exit; its status.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < end,
                "agent still running after {limit:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` every 20 ms for at most `limit`; whether it became true.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn joins_pongs_keep_it_up_and_sigterm_leaves() {
    let jap = Jap::start();
    let key = group_key(&secret(), &GROUP);
    let mut agent = AgentProc::spawn(&jap, &key, &["--ping-timeout-ms", "5000", "--weight", "3"]);
    assert!(within(5 * SEC, || jap.held() == 1), "{}", agent.log());
    // The target is the service (where clients go), not the agent's socket.
    let held = jap.proxy.lock().unwrap().target_flows(&GROUP);
    assert_eq!(held, vec![(SERVICE, 3, 0)]);
    assert!(agent.said("joined: proxy 1 is the JAP"), "{}", agent.log());

    // 2 s is six pings; three unanswered would make the target down.
    thread::sleep(2 * SEC);
    assert_eq!(jap.live(), 1, "pongs keep it up:\n{}", agent.log());
    assert_eq!(jap.counters().jap.targets_down, 0);

    // The control: a frozen agent answers nothing, and its target goes down;
    // thawed, its pongs bring it back.
    agent.signal(Signal::SIGSTOP);
    let frozen = within(4 * SEC, || jap.live() == 0);
    agent.signal(Signal::SIGCONT);
    assert!(frozen, "a silent target goes down");
    assert!(
        within(4 * SEC, || jap.live() == 1),
        "pongs bring it back:\n{}",
        agent.log()
    );

    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(3 * SEC);
    assert!(status.success(), "{status:?}:\n{}", agent.log());
    assert_eq!(jap.held(), 0, "the leave took effect:\n{}", agent.log());
    assert_eq!(jap.counters().jap.leaves, 1);
    assert!(agent.said("left the group"), "{}", agent.log());
}

#[test]
fn failing_health_check_leaves_and_passing_rejoins() {
    let jap = Jap::start();
    let key = group_key(&secret(), &GROUP);
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::write(&up, "").unwrap();
    let check = format!("test -e '{}'", up.display());
    let agent = AgentProc::spawn(
        &jap,
        &key,
        &[
            "--check-cmd",
            &check,
            "--check-interval-ms",
            "100",
            "--rise",
            "2",
            "--fall",
            "2",
        ],
    );
    assert!(within(5 * SEC, || jap.held() == 1), "{}", agent.log());

    std::fs::remove_file(&up).unwrap();
    assert!(
        within(3 * SEC, || jap.held() == 0),
        "a failed check leaves:\n{}",
        agent.log()
    );
    assert!(agent.said("service unhealthy"), "{}", agent.log());
    assert_eq!(jap.counters().jap.leaves, 1);

    std::fs::write(&up, "").unwrap();
    assert!(
        within(3 * SEC, || jap.held() == 1),
        "a passing check joins again:\n{}",
        agent.log()
    );
    assert!(agent.said("service healthy: joining"), "{}", agent.log());
}

#[test]
fn restarted_jap_gets_the_target_back_within_the_ping_timeout() {
    let jap = Jap::start();
    let key = group_key(&secret(), &GROUP);
    let agent = AgentProc::spawn(&jap, &key, &["--ping-timeout-ms", "1500"]);
    assert!(within(5 * SEC, || jap.held() == 1), "{}", agent.log());
    // Let it settle into pings and pongs.
    thread::sleep(SEC);

    jap.restart();
    assert_eq!(jap.held(), 0, "a new life holds nothing");
    let restarted = Instant::now();
    assert!(
        within(4 * SEC, || jap.held() == 1),
        "the agent joins the new life:\n{}",
        agent.log()
    );
    // Within the ping timeout (1.5 s) and some slack for a loaded machine.
    assert!(restarted.elapsed() < Duration::from_millis(3_000));
    assert!(agent.said("rejoining"), "{}", agent.log());
    assert!(within(2 * SEC, || jap.live() == 1));
}

#[test]
fn an_agent_started_before_its_proxy_joins_at_its_retry_pace() {
    let jap = Jap::start();
    jap.set_deaf(true);
    let key = group_key(&secret(), &GROUP);
    let agent = AgentProc::spawn(&jap, &key, &["--retry-ms", "20", "--retry-cap-ms", "20"]);
    // Past the default pace's second try (1 s): with it, the next would come
    // at 3 s from the start.
    thread::sleep(Duration::from_millis(1_200));
    assert!(agent.said("no answer to the join"), "{}", agent.log());
    assert_eq!(jap.held(), 0, "a deaf proxy holds nothing");
    jap.set_deaf(false);
    let up = Instant::now();
    assert!(
        within(4 * SEC, || jap.held() == 1),
        "the agent joins once the proxy answers:\n{}",
        agent.log()
    );
    // Every 20 ms, not 1 s, 2 s, 4 s …: joined well before the default's
    // next try, with slack for a loaded machine.
    assert!(
        up.elapsed() < Duration::from_millis(1_000),
        "joined {:?} after the proxy came up",
        up.elapsed()
    );
}

#[test]
fn wrong_key_gets_no_ack_and_says_so() {
    let jap = Jap::start();
    let wrong = group_key(&Key([0x77; 32]), &GROUP);
    let agent = AgentProc::spawn(&jap, &wrong, &[]);
    assert!(
        within(4 * SEC, || agent.said_yet("no answer to the join")),
        "{}",
        agent.log()
    );
    assert!(agent.said("group key is wrong"));
    assert_eq!(jap.held(), 0);
    assert!(jap.counters().wire.bad_tag >= 1, "the proxy saw a bad tag");
    assert!(!agent.said_yet("joined"), "{}", agent.log());
}

#[test]
fn bad_arguments_fail_in_one_line() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pias-agent"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, err) = run(&[
        "join",
        "--group",
        "127.0.0.10:53",
        "--service",
        "127.0.0.2:53",
        "--key-hex",
        "00",
    ]);
    assert!(!status.success());
    assert!(err.contains("a.b.c.d:port/udp"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "secret-ish but short").unwrap();
    let (status, err) = run(&[
        "join",
        "--group",
        "127.0.0.10:53/udp",
        "--service",
        "127.0.0.2:53",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("64 hex digits or 32 raw bytes"), "{err}");
    assert!(!err.contains("secret-ish"), "never prints the key: {err}");

    let hex = "ab".repeat(32);
    // A well-formed join with a good key, and `extra`.
    let join_with = |extra: &[&str]| {
        let base = [
            "join",
            "--group",
            "127.0.0.10:53/udp",
            "--service",
            "127.0.0.2:53",
            "--key-hex",
            &hex,
        ];
        run(&[&base[..], extra].concat())
    };
    let (status, err) = join_with(&["--bind", "127.0.0.3:0"]);
    assert!(!status.success());
    assert!(err.contains("must be the service's"), "{err}");
    assert!(!err.contains(&hex));

    let (status, err) = join_with(&["--retry-ms", "500", "--retry-cap-ms", "100"]);
    assert!(!status.success());
    assert!(
        err.contains("--retry-cap-ms 100 is below --retry-ms 500"),
        "{err}"
    );
}
