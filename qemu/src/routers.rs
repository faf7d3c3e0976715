//! Real routers for the labs: BIRD 2 and FRR 8 from Debian's packages,
//! started by us inside a namespace (no systemd), with eBGP sessions to the
//! appliances and to other routers, and `birdc` / `vtysh` to read what they
//! learned. The appliance's routes go into the namespace's kernel table, so
//! traffic follows BGP.

use crate::lab::{register_dir, register_pid, run};
use crate::services::{require, ServiceProc};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The appliances' AS (every appliance originates the anycast prefix from it).
pub const APPLIANCE_AS: u32 = 65100;
/// POP n's router is in AS `ROUTER_AS_BASE + n` (n from 1).
pub const ROUTER_AS_BASE: u32 = 65000;

/// The kernel's route to `prefix` in namespace `ns` (`ip route show`).
fn kernel_route(ns: &str, prefix: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", prefix])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `cond` every 50 ms for at most `timeout`; whether it held.
fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One BGP neighbour of a router.
#[derive(Clone, Debug)]
pub struct BirdPeer {
    /// BIRD's protocol name for it.
    pub name: String,
    /// Our address on the shared link.
    pub local: Ipv4Addr,
    pub address: Ipv4Addr,
    pub asn: u32,
    /// An appliance (true): import only the anycast prefixes, export
    /// nothing, GTSM on, passive (the appliance connects). A router
    /// (false): exchange the anycast prefixes both ways.
    pub appliance: bool,
    /// Hold time proposed to it (s).
    pub hold_s: u16,
    /// Run BFD with it (100 ms, multiplier 3); the session falls with BFD.
    pub bfd: bool,
}

/// A router's BGP setup.
#[derive(Clone, Debug)]
pub struct BirdConfig {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    /// The anycast prefix ("203.0.113.0/24").
    pub anycast: String,
    pub peers: Vec<BirdPeer>,
}

impl BirdConfig {
    /// The configuration file. The GRACEFUL_SHUTDOWN community (65535,0)
    /// sets the local preference to 0 (RFC 8326), so a draining
    /// appliance's route loses to any other.
    pub fn render(&self) -> String {
        let mut c = String::new();
        c.push_str("log stderr all;\n");
        let _ = writeln!(c, "router id {};", self.router_id);
        c.push_str("protocol device { scan time 1; }\n");
        // Learned routes go into the namespace's kernel table; equal ones merge.
        c.push_str(
            "protocol kernel { ipv4 { import none; export all; }; merge paths on; scan time 5; }\n",
        );
        let _ = writeln!(
            c,
            "filter anycast_in {{\n  if net ~ [ {}{{{},32}} ] then {{\n    if (65535,0) ~ bgp_community then bgp_local_pref = 0;\n    accept;\n  }}\n  reject;\n}}",
            self.anycast,
            self.anycast.rsplit('/').next().unwrap_or("24")
        );
        let _ = writeln!(
            c,
            "filter anycast_out {{ if net ~ [ {}{{{},32}} ] then accept; reject; }}",
            self.anycast,
            self.anycast.rsplit('/').next().unwrap_or("24")
        );
        if self.peers.iter().any(|p| p.bfd) {
            c.push_str(
                "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }\n",
            );
        }
        for p in &self.peers {
            let _ = writeln!(c, "protocol bgp {} {{", p.name);
            if p.bfd {
                c.push_str("  bfd on;\n");
            }
            let _ = writeln!(c, "  local {} as {};", p.local, self.asn);
            let _ = writeln!(c, "  neighbor {} as {};", p.address, p.asn);
            let _ = writeln!(c, "  hold time {};", p.hold_s);
            let _ = writeln!(c, "  keepalive time {};", (p.hold_s / 3).max(1));
            c.push_str("  connect retry time 1;\n  error wait time 1, 4;\n");
            if p.appliance {
                // GTSM (RFC 5082): TTL 255 both ways; the appliance connects.
                c.push_str("  ttl security on;\n  passive on;\n");
                c.push_str("  ipv4 { import filter anycast_in; export none; };\n");
            } else {
                c.push_str("  ipv4 { import filter anycast_in; export filter anycast_out; };\n");
            }
            c.push_str("}\n");
        }
        c
    }
}

/// A running BIRD.
pub struct Bird {
    pub ns: String,
    pub conf: PathBuf,
    pub socket: PathBuf,
    proc: ServiceProc,
    dir: PathBuf,
    prefix: String,
}

impl Bird {
    /// Writes the config under `dir` and starts BIRD in `ns`, waiting (5 s)
    /// for its control socket. `prefix` registers it for cleanup.
    pub fn start(ns: &str, dir: &Path, name: &str, cfg: &BirdConfig, prefix: &str) -> Result<Bird> {
        require("bird")?;
        require("birdc")?;
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, cfg.render())
            .with_context(|| format!("writing {}", conf.display()))?;
        let mut b = Bird {
            ns: ns.to_string(),
            socket: dir.join(format!("{name}.ctl")),
            conf,
            proc: Self::spawn(ns, dir, name, &dir.join(format!("{name}.conf")))?,
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
        };
        register_pid(prefix, b.proc.pid());
        b.wait_ready(Duration::from_secs(5))?;
        Ok(b)
    }

    fn spawn(ns: &str, dir: &Path, name: &str, conf: &Path) -> Result<ServiceProc> {
        let sock = dir.join(format!("{name}.ctl"));
        let _ = std::fs::remove_file(&sock);
        ServiceProc::spawn(
            &format!("bird {name}"),
            ns,
            dir.join(format!("{name}.log")),
            &[
                "bird".into(),
                "-f".into(),
                "-c".into(),
                conf.display().to_string(),
                "-s".into(),
                sock.display().to_string(),
                "-P".into(),
                dir.join(format!("{name}.pid")).display().to_string(),
            ],
        )
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            self.proc.check_running()?;
            if self
                .birdc(&["show", "status"])
                .is_ok_and(|o| o.contains("Daemon is up"))
            {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "BIRD in {} not up after {timeout:?}:\n{}",
                    self.ns,
                    std::fs::read_to_string(&self.proc.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `birdc -s SOCKET ARGS…`; its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("running birdc")?;
        if !out.status.success() {
            bail!("birdc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// BIRD's state of protocol `name` ("Established", "Active", "Idle", …).
    pub fn session_state(&self, name: &str) -> Result<String> {
        let out = self.birdc(&["show", "protocols", name])?;
        Ok(out
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(5))
            .unwrap_or("")
            .to_string())
    }

    /// Every route BIRD has for `prefix`, with attributes (`show route for … all`).
    pub fn routes(&self, prefix: &str) -> Result<String> {
        self.birdc(&["show", "route", "for", prefix, "all"])
    }

    /// The kernel's route to `prefix` in the namespace (`ip route show`).
    pub fn kernel_route(&self, prefix: &str) -> Result<String> {
        kernel_route(&self.ns, prefix)
    }

    /// Polls `cond` on this router every 50 ms for at most `timeout`.
    pub fn wait(&self, timeout: Duration, mut cond: impl FnMut(&Bird) -> bool) -> bool {
        poll_until(timeout, || cond(self))
    }

    /// Stops BIRD (SIGKILL: a crash, the sessions die without NOTIFICATION)
    /// and starts it again with the same config.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        // Its kernel routes stay behind a killed BIRD: remove them as a
        // rebooted router would not have them.
        let name = self
            .conf
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| "bird".into());
        let _ = run(Command::new("ip").args(["-n", &self.ns, "route", "flush", "proto", "bird"]));
        self.proc = Self::spawn(&self.ns, &self.dir, &name, &self.conf)?;
        register_pid(&self.prefix, self.proc.pid());
        self.wait_ready(Duration::from_secs(5))
    }

    /// BIRD's own log and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }
}

impl BirdConfig {
    /// The same setup as FRR's configuration (bgpd's part; zebra needs
    /// none). FRR drops the local preference of a GRACEFUL_SHUTDOWN route to
    /// 0 by itself; `ebgp-requires-policy` stays on, so every session has
    /// its route-maps.
    pub fn render_frr(&self) -> String {
        let mut c = String::new();
        c.push_str("frr defaults traditional\nlog stdout\n!\n");
        let _ = writeln!(
            c,
            "ip prefix-list ANYCAST seq 5 permit {} le 32\n!",
            self.anycast
        );
        c.push_str("route-map ANYCAST permit 10\n match ip address prefix-list ANYCAST\n!\n");
        c.push_str("route-map NOTHING deny 10\n!\n");
        let _ = writeln!(c, "router bgp {}", self.asn);
        let _ = writeln!(c, " bgp router-id {}", self.router_id);
        c.push_str(" bgp bestpath as-path multipath-relax\n");
        for p in &self.peers {
            let _ = writeln!(c, " neighbor {} remote-as {}", p.address, p.asn);
            let _ = writeln!(c, " neighbor {} update-source {}", p.address, p.local);
            let _ = writeln!(
                c,
                " neighbor {} timers {} {}",
                p.address,
                (p.hold_s / 3).max(1),
                p.hold_s
            );
            let _ = writeln!(c, " neighbor {} timers connect 1", p.address);
            if p.appliance {
                let _ = writeln!(c, " neighbor {} ttl-security hops 1", p.address);
                let _ = writeln!(c, " neighbor {} passive", p.address);
            }
            if p.bfd {
                // With ttl-security FRR runs multihop BFD (RFC 5883).
                let _ = writeln!(c, " neighbor {} bfd", p.address);
                let _ = writeln!(c, " neighbor {} bfd profile fast", p.address);
            }
        }
        c.push_str(" !\n address-family ipv4 unicast\n");
        for p in &self.peers {
            let out = if p.appliance { "NOTHING" } else { "ANYCAST" };
            let _ = writeln!(c, "  neighbor {} route-map ANYCAST in", p.address);
            let _ = writeln!(c, "  neighbor {} route-map {out} out", p.address);
        }
        c.push_str(" exit-address-family\n!\n");
        c
    }

    /// bfdd's configuration: the profile BGP's BFD sessions use (100 ms × 3).
    pub fn render_frr_bfdd(&self) -> String {
        "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n"
            .to_string()
    }
}

/// A running FRR: zebra (the kernel's routes) and bgpd, as Debian's `frr`
/// user (in the `frrvty` group its vty needs), in their own directory.
pub struct Frr {
    pub ns: String,
    dir: tempfile::TempDir,
    zebra: ServiceProc,
    /// bfdd, when a peer runs BFD.
    bfdd: Option<ServiceProc>,
    bgpd: ServiceProc,
    prefix: String,
}

impl Frr {
    /// Writes the config and starts zebra, then bgpd, in `ns`; waits (5 s)
    /// for bgpd's vty. `prefix` registers them for cleanup.
    pub fn start(ns: &str, cfg: &BirdConfig, prefix: &str) -> Result<Frr> {
        for p in ["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd"] {
            if !Path::new(p).exists() {
                bail!("{p} is missing: install Debian's frr (scripts/install.sh does)");
            }
        }
        require("vtysh")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-frr-"))
            .tempdir()
            .context("creating FRR's directory")?;
        register_dir(prefix, dir.path());
        // FRR drops to its own user: let it in.
        run(Command::new("chown").args(["frr:frr", &dir.path().display().to_string()]))?;
        std::fs::write(dir.path().join("zebra.conf"), "log stdout\n")?;
        std::fs::write(dir.path().join("bgpd.conf"), cfg.render_frr())?;
        let zebra = Self::spawn(ns, dir.path(), "zebra")?;
        register_pid(prefix, zebra.pid());
        let api = dir.path().join("zserv.api");
        let end = Instant::now() + Duration::from_secs(5);
        while !api.exists() {
            if Instant::now() >= end {
                bail!(
                    "zebra did not start:\n{}",
                    std::fs::read_to_string(&zebra.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let bfdd = if cfg.peers.iter().any(|p| p.bfd) {
            std::fs::write(dir.path().join("bfdd.conf"), cfg.render_frr_bfdd())?;
            let b = Self::spawn(ns, dir.path(), "bfdd")?;
            register_pid(prefix, b.pid());
            Some(b)
        } else {
            None
        };
        let bgpd = Self::spawn(ns, dir.path(), "bgpd")?;
        register_pid(prefix, bgpd.pid());
        let mut f = Frr {
            ns: ns.to_string(),
            dir,
            zebra,
            bfdd,
            bgpd,
            prefix: prefix.to_string(),
        };
        f.wait_ready()?;
        Ok(f)
    }

    fn spawn(ns: &str, dir: &Path, daemon: &str) -> Result<ServiceProc> {
        let d = dir.display().to_string();
        let mut extra = Vec::new();
        if daemon == "bfdd" {
            extra = vec!["--bfdctl".to_string(), format!("{d}/bfdd.sock")];
        }
        ServiceProc::spawn(
            daemon,
            ns,
            dir.join(format!("{daemon}.log")),
            &[
                format!("/usr/lib/frr/{daemon}"),
                "-f".into(),
                format!("{d}/{daemon}.conf"),
                "-z".into(),
                format!("{d}/zserv.api"),
                "--vty_socket".into(),
                d.clone(),
                "-i".into(),
                format!("{d}/{daemon}.pid"),
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
            ]
            .into_iter()
            .chain(extra)
            .collect::<Vec<String>>(),
        )
    }

    fn wait_ready(&mut self) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            self.bgpd.check_running()?;
            if self
                .vtysh("show bgp summary")
                .is_ok_and(|o| o.contains("BGP router identifier"))
            {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!("bgpd in {} not up after 5 s:\n{}", self.ns, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one `vtysh -c COMMAND`; its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.path())
            .args(["-c", command])
            .output()
            .context("running vtysh")?;
        if !out.status.success() {
            bail!(
                "vtysh -c {command:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// FRR's view of `prefix` (`show ip bgp PREFIX`).
    pub fn routes(&self, prefix: &str) -> Result<String> {
        self.vtysh(&format!("show ip bgp {prefix}"))
    }

    /// The kernel's route to `prefix` in the namespace.
    pub fn kernel_route(&self, prefix: &str) -> Result<String> {
        kernel_route(&self.ns, prefix)
    }

    /// Polls `cond` every 50 ms for at most `timeout`.
    pub fn wait(&self, timeout: Duration, mut cond: impl FnMut(&Frr) -> bool) -> bool {
        poll_until(timeout, || cond(self))
    }

    /// Kills bgpd (a crash) and starts it again.
    pub fn restart_bgpd(&mut self) -> Result<()> {
        self.bgpd.kill();
        self.bgpd = Self::spawn(&self.ns, self.dir.path(), "bgpd")?;
        register_pid(&self.prefix, self.bgpd.pid());
        self.wait_ready()
    }

    /// zebra's, bfdd's and bgpd's logs.
    pub fn log(&self) -> String {
        let read = |p: &ServiceProc| std::fs::read_to_string(&p.log).unwrap_or_default();
        let bfdd = self.bfdd.as_ref().map(read).unwrap_or_default();
        format!(
            "zebra:\n{}\nbfdd:\n{bfdd}\nbgpd:\n{}",
            read(&self.zebra),
            read(&self.bgpd)
        )
    }
}
