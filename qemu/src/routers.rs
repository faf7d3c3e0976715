//! Real routers for the labs: BIRD 2 from Debian's package, started by us
//! inside a namespace (no systemd), with eBGP sessions to the appliances and
//! to other routers, and `birdc` to read what it learned. The appliance's
//! routes go into the namespace's kernel table, so traffic follows BGP.

use crate::lab::{register_pid, run};
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
        let out = Command::new("ip")
            .args(["-n", &self.ns, "route", "show", prefix])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Polls `cond` on this router every 50 ms for at most `timeout`.
    pub fn wait(&self, timeout: Duration, mut cond: impl FnMut(&Bird) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
