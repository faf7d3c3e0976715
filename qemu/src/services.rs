//! Real services for lab targets, started by the harness (no systemd) from
//! Debian's packages inside a target's namespace, every file of theirs (config,
//! pid, logs, web root) in the lab's directory: dnsmasq answering fixed
//! records, nginx serving an index page and a 1 MB random file, and
//! Prometheus scraping appliances.

use crate::lab::inside_netns;
use crate::topo::{DNS_ANSWER, DNS_NAME, DNS_WHOAMI};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Size of the random file each web server serves as `/big.bin`.
pub const BIG_FILE_LEN: usize = 1 << 20;

/// The path of `prog` on PATH (plus the sbin directories), or a clear error
/// naming what installs it.
pub fn require(prog: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs =
        path.split(':')
            .filter(|d| !d.is_empty())
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
    for d in dirs {
        let p = Path::new(d).join(prog);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{prog} is not installed (scripts/install.sh installs what the lab needs)")
}

/// A service process in a namespace; killed (and reaped) on drop.
pub struct ServiceProc {
    pub name: String,
    pub ns: String,
    /// Where its own log and its stderr go.
    pub log: PathBuf,
    child: Child,
}

impl ServiceProc {
    pub(crate) fn spawn(
        name: &str,
        ns: &str,
        log: PathBuf,
        argv: &[String],
    ) -> Result<ServiceProc> {
        let err = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let out = err.try_clone()?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} in {ns}"))?;
        Ok(ServiceProc {
            name: name.to_string(),
            ns: ns.to_string(),
            log,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error (with its log) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "{} in {} exited ({st}); its log {}:\n{}",
                self.name,
                self.ns,
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts dnsmasq on `ip`:53 in `ns`: `pias.test` -> `DNS_ANSWER`,
/// `whoami.test` -> `ip`; no upstream, no hosts file, no DHCP.
pub fn start_dns(ns: &str, ip: Ipv4Addr, dir: &Path, tag: &str) -> Result<ServiceProc> {
    let bin = require("dnsmasq")?;
    let argv: Vec<String> = vec![
        bin.display().to_string(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-poll".into(),
        format!("--address=/{DNS_NAME}/{DNS_ANSWER}"),
        format!("--host-record={DNS_WHOAMI},{ip}"),
        format!("--listen-address={ip}"),
        "--bind-interfaces".into(),
        "--port=53".into(),
        "--user=root".into(),
        "--group=root".into(),
        format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{tag}.pid")).display()
        ),
        format!(
            "--log-facility={}",
            dir.join(format!("dnsmasq-{tag}.log")).display()
        ),
        "--log-queries".into(),
    ];
    ServiceProc::spawn("dnsmasq", ns, dir.join(format!("dnsmasq-{tag}.out")), &argv)
}

/// Starts the target agent in `ns` for `service` (the server on `ip`):
/// joins `group` with `key`, health-checked by a TCP connect to the service.
pub fn start_agent(
    ns: &str,
    agent: &Path,
    group: pias::Group,
    service: std::net::SocketAddrV4,
    key: &pias::wire::Key,
    dir: &Path,
    tag: &str,
) -> Result<ServiceProc> {
    start_agent_checking(ns, agent, group, service, service, &[], key, dir, tag)
}

/// `start_agent`, health-checked by a TCP connect to `check` instead of the
/// service (for a service that takes a bare connection for work, as iperf3
/// does), with `extra` arguments for the agent.
#[allow(clippy::too_many_arguments)]
pub fn start_agent_checking(
    ns: &str,
    agent: &Path,
    group: pias::Group,
    service: std::net::SocketAddrV4,
    check: std::net::SocketAddrV4,
    extra: &[&str],
    key: &pias::wire::Key,
    dir: &Path,
    tag: &str,
) -> Result<ServiceProc> {
    let key_file = dir.join(format!("agent-{tag}.key"));
    let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key_file, hex).context("writing the agent's key file")?;
    let mut argv: Vec<String> = vec![
        agent.display().to_string(),
        "join".into(),
        "--group".into(),
        group.to_string(),
        "--service".into(),
        service.to_string(),
        "--key-file".into(),
        key_file.display().to_string(),
        "--check-tcp".into(),
        check.to_string(),
    ];
    argv.extend(extra.iter().map(|a| a.to_string()));
    ServiceProc::spawn(
        "pias-agent",
        ns,
        dir.join(format!("agent-{tag}.log")),
        &argv,
    )
}

/// What a web server serves.
#[derive(Clone, Debug)]
pub struct WebRoot {
    pub dir: PathBuf,
    /// `/big.bin`: BIG_FILE_LEN random bytes.
    pub big: PathBuf,
    pub big_sha256: String,
    /// The text of `/index.html`.
    pub index: String,
}

/// Starts nginx on `ip`:80 in `ns`, serving a generated root (index page
/// naming `title`, and `big.bin`).
pub fn start_http(
    ns: &str,
    ip: Ipv4Addr,
    dir: &Path,
    tag: &str,
    title: &str,
) -> Result<(ServiceProc, WebRoot)> {
    let bin = require("nginx")?;
    let root = dir.join(format!("www-{tag}"));
    std::fs::create_dir_all(&root)?;
    let index = format!("<html><body><h1>PIAS lab: {title}</h1><p>{ip}</p></body></html>\n");
    std::fs::write(root.join("index.html"), &index)?;
    let big = root.join("big.bin");
    random_file(&big, BIG_FILE_LEN)?;
    let big_sha256 = sha256_file(&big)?;
    let tmp = dir.join(format!("nginx-{tag}.tmp"));
    std::fs::create_dir_all(&tmp)?;
    let p = |name: &str| {
        dir.join(format!("nginx-{tag}.{name}"))
            .display()
            .to_string()
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {access};\n  default_type application/octet-stream;\n\
         \x20 types {{ text/html html; }}\n\
         \x20 client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
         \x20 fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n\
         \x20 scgi_temp_path {tmp}/scgi;\n\
         \x20 server {{\n    listen {ip}:80;\n    root {root};\n    index index.html;\n  }}\n}}\n",
        pid = p("pid"),
        err = p("err"),
        access = p("access"),
        tmp = tmp.display(),
        root = root.display(),
    );
    let conf_path = dir.join(format!("nginx-{tag}.conf"));
    std::fs::write(&conf_path, conf)?;
    let argv = vec![
        bin.display().to_string(),
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        p("err"),
        "-c".into(),
        conf_path.display().to_string(),
    ];
    let proc = ServiceProc::spawn("nginx", ns, dir.join(format!("nginx-{tag}.out")), &argv)?;
    Ok((
        proc,
        WebRoot {
            dir: root,
            big,
            big_sha256,
            index,
        },
    ))
}

/// Starts Prometheus in `ns`, listening on `listen` (e.g. 127.0.0.1:9090),
/// scraping `targets` (host:port) every `interval_s` seconds; its config
/// and storage live in `dir`.
pub fn start_prometheus(
    ns: &str,
    dir: &Path,
    listen: &str,
    targets: &[String],
    interval_s: u32,
) -> Result<ServiceProc> {
    let bin = require("prometheus")?;
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let conf = format!(
        "global:\n  scrape_interval: {interval_s}s\n  scrape_timeout: {interval_s}s\n\
         scrape_configs:\n  - job_name: pias\n    static_configs:\n      - targets: [{list}]\n"
    );
    let conf_path = dir.join("prometheus.yml");
    std::fs::write(&conf_path, conf)?;
    let data = dir.join("prometheus-data");
    std::fs::create_dir_all(&data)?;
    let argv = vec![
        bin.display().to_string(),
        format!("--config.file={}", conf_path.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address={listen}"),
        "--log.level=warn".into(),
    ];
    ServiceProc::spawn("prometheus", ns, dir.join("prometheus.out"), &argv)
}

/// Writes `len` pseudo-random bytes (xorshift seeded from the clock).
pub fn random_file(path: &Path, len: usize) -> Result<()> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
        | 1;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&buf)?;
    Ok(())
}

/// The SHA-256 of a file, in hex (coreutils' sha256sum).
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!(
            "sha256sum {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(h) if h.len() == 64 => Ok(h.to_string()),
        _ => bail!("sha256sum printed {text:?}"),
    }
}

/// A DNS query for `name` A with id `id`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `reply` answers query `id` without error and with at least one record.
pub fn dns_answered(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12
        && reply[0..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) >= 1
}

/// Waits (bounded) until the DNS server on `ip` answers `pias.test`, asking
/// from inside namespace `ns`.
pub fn wait_dns(ns: &str, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
    inside_netns(ns, move || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let deadline = Instant::now() + timeout;
        let mut id = 1u16;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            id = id.wrapping_add(1);
            // Refused (nothing bound yet) is a reason to retry.
            let _ = sock.send_to(&dns_query(id, DNS_NAME), (ip, 53));
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if dns_answered(&buf[..n], id) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("no DNS answer from {ip}:53 within {timeout:?}")
    })
}

/// Waits (bounded) until something accepts TCP connections on `ip`:80, from
/// inside namespace `ns`.
pub fn wait_http(ns: &str, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
    inside_netns(ns, move || {
        let deadline = Instant::now() + timeout;
        let to = SocketAddr::from((ip, 80));
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("nothing accepts on {to} within {timeout:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_is_well_formed() {
        let q = dns_query(0x1234, "pias.test");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x04pias\x04test\x00\x00\x01\x00\x01");
        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(!dns_answered(&r, 0x1234), "no answer record yet");
        r[7] = 1;
        assert!(dns_answered(&r, 0x1234));
        assert!(!dns_answered(&r, 0x1235));
        assert!(!dns_answered(&r[..5], 0x1234));
    }

    #[test]
    fn random_file_has_the_length_and_a_hash() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.bin");
        random_file(&p, 1000).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1000);
        assert_eq!(sha256_file(&p).unwrap().len(), 64);
    }
}
