//! A lab: one network namespace holding a bridge (with the host side's
//! address) and a tap per appliance, and the QEMU processes attached to them.
//! Dropping the lab kills its appliances and deletes the namespace; so does
//! Ctrl-C (SIGINT/SIGTERM) in any program that uses labs.

use crate::machine::{Accel, Machine};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What one lab holds that must go when it goes: processes to kill, then
/// namespaces to delete, then directories to remove.
#[derive(Debug, Default)]
struct Resources {
    pids: Vec<u32>,
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
}

/// Labs alive in this process by name, for the Ctrl-C/SIGTERM handler.
fn registry() -> &'static Mutex<HashMap<String, Resources>> {
    static R: OnceLock<Mutex<HashMap<String, Resources>>> = OnceLock::new();
    R.get_or_init(|| {
        // A second handler cannot be installed; then the caller already has one.
        let _ = ctrlc::set_handler(|| {
            cleanup_all();
            std::process::exit(130);
        });
        Mutex::new(HashMap::new())
    })
}

fn with_entry(lab: &str, f: impl FnOnce(&mut Resources)) {
    if let Ok(mut r) = registry().lock() {
        f(r.entry(lab.to_string()).or_default());
    }
}

/// Registers a lab by name (idempotent).
pub(crate) fn register(lab: &str) {
    with_entry(lab, |_| {});
}

/// A process of `lab` to kill on cleanup.
pub(crate) fn register_pid(lab: &str, pid: u32) {
    with_entry(lab, |e| e.pids.push(pid));
}

/// A namespace of `lab` to delete on cleanup (after its processes are killed).
pub(crate) fn register_netns(lab: &str, ns: &str) {
    with_entry(lab, |e| e.netns.push(ns.to_string()));
}

/// A directory of `lab` to remove on cleanup.
pub(crate) fn register_dir(lab: &str, dir: &Path) {
    with_entry(lab, |e| e.dirs.push(dir.to_path_buf()));
}

/// Forgets a lab (its owner removed everything itself).
pub(crate) fn unregister(lab: &str) {
    let _ = take(lab);
}

/// Forgets a lab and returns what it registered, for its owner to release.
fn take(lab: &str) -> Option<Resources> {
    registry().lock().ok()?.remove(lab)
}

fn release(res: Resources) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pids: Vec<nix::unistd::Pid> = res
        .pids
        .iter()
        .map(|&p| nix::unistd::Pid::from_raw(p as i32))
        .collect();
    for &pid in &pids {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    // Reap them (they are our children), so none is left as a zombie when
    // this process exits right after; bounded in time.
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &pids {
        while let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for ns in res.netns {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
    }
    for dir in res.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Kills every registered process, deletes every registered namespace and
/// removes every registered directory.
pub fn cleanup_all() {
    let labs: Vec<Resources> = match registry().lock() {
        Ok(mut r) => r.drain().map(|(_, v)| v).collect(),
        Err(_) => return,
    };
    for res in labs {
        release(res);
    }
}

/// A name for a new lab, unique on this machine while this process lives:
/// `pias-<tag>-<pid>-<seq>`.
pub(crate) fn lab_name(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "pias-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it creates
/// live in that namespace and keep working from any thread.
pub fn inside_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<T> {
        let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering namespace {path}"))?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// How the config blob reaches the appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigDelivery {
    /// `-fw_cfg name=opt/pias/config,file=…`
    FwCfg,
    /// `-initrd …` (PVH module 0)
    Initrd,
}

/// One appliance to boot.
#[derive(Clone, Debug)]
pub struct Spec {
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mb: u32,
    /// The blob bytes (any bytes: tests pass broken ones); `None` passes no config.
    pub blob: Option<Vec<u8>>,
    pub delivery: ConfigDelivery,
    /// Attach a virtio-net device on a new tap in the lab's bridge.
    pub nic: bool,
    /// Boot this image (GRUB, multiboot2; the config is inside it) from the
    /// machine's own BIOS instead of `-kernel`.
    pub image: Option<(PathBuf, pias_image::disk::Format)>,
    /// Boot this Linux kernel, initramfs and command line instead of the
    /// appliance (the Netfilter baseline of `bench --vs-linux`); no blob.
    pub linux: Option<LinuxBoot>,
}

/// A Linux guest's boot files and command line.
#[derive(Clone, Debug)]
pub struct LinuxBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

impl Spec {
    pub fn new(machine: Machine, accel: Accel, blob: Vec<u8>) -> Spec {
        Spec {
            machine,
            accel,
            memory_mb: 64,
            blob: Some(blob),
            delivery: ConfigDelivery::FwCfg,
            nic: true,
            image: None,
            linux: None,
        }
    }
}

/// A running (or exited) appliance.
pub struct Appliance {
    child: Child,
    pub serial: PathBuf,
    pub started: Instant,
    pub spec: Spec,
    exit: Option<ExitStatus>,
}

impl Appliance {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Waits until the console contains `needle`; returns the time since start.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console().contains(needle) {
                return Ok(self.started.elapsed());
            }
            if let Some(st) = self.try_exit()? {
                bail!(
                    "appliance exited ({st:?}) before printing {needle:?}; console:\n{}",
                    self.console()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no {needle:?} on the console within {timeout:?}; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The exit status if QEMU has exited (reaped once), else None.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Waits for QEMU to exit and returns its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit()? {
                return Ok(st.code());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "appliance still running after {timeout:?}; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self) {
        if self.try_exit().ok().flatten().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// User + system CPU time QEMU has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).unwrap_or(&"0").parse::<u64>()?
            + fields.get(12).unwrap_or(&"0").parse::<u64>()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as u64;
        Ok(Duration::from_micros(ticks * 1_000_000 / hz))
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A network namespace with bridge `br0` at `host_ip`/24.
pub struct Lab {
    pub ns: String,
    pub host_ip: Ipv4Addr,
    dir: tempfile::TempDir,
    taps: u32,
    pub appliances: Vec<Appliance>,
    /// This lab's management key, fresh per lab (`config_for` puts it in
    /// each appliance's config; `MgmtClient::new` signs with it).
    pub mgmt_key: pias::wire::Key,
}

/// A fresh random key from the OS's generator.
pub fn random_key() -> Result<pias::wire::Key> {
    let mut k = [0u8; 32];
    let mut f = File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut k).context("reading /dev/urandom")?;
    Ok(pias::wire::Key(k))
}

/// The lab subnet: the bridge is .1, appliances are .2, .3, …
pub const LAB_SUBNET: [u8; 3] = [198, 18, 0];

impl Lab {
    /// Creates the namespace and bridge. `tag` goes into the namespace's name.
    pub fn new(tag: &str) -> Result<Lab> {
        let ns = lab_name(tag);
        register(&ns);
        register_netns(&ns, &ns);
        let lab = Lab {
            host_ip: Ipv4Addr::new(LAB_SUBNET[0], LAB_SUBNET[1], LAB_SUBNET[2], 1),
            ns,
            dir: tempfile::Builder::new().prefix("pias-lab-").tempdir()?,
            taps: 0,
            appliances: Vec::new(),
            mgmt_key: random_key()?,
        };
        register_dir(&lab.ns, lab.dir.path());
        run(Command::new("ip").args(["netns", "add", &lab.ns]))?;
        lab.exec(&["ip", "link", "set", "lo", "up"])?;
        // No IPv6 on the lab's links: no router solicitations or MLD reports
        // reach the appliances to blur their counters.
        for k in ["all", "default"] {
            lab.exec(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
            ])?;
        }
        lab.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        lab.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.host_ip),
            "dev",
            "br0",
        ])?;
        lab.exec(&["ip", "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// Runs a command inside the namespace; fails on a non-zero exit.
    pub fn exec(&self, argv: &[&str]) -> Result<()> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv))
    }

    /// Runs a command inside the namespace and returns its output, whatever its exit.
    pub fn output(&self, argv: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .stdin(Stdio::null())
            .output()?)
    }

    /// The address the n-th appliance (0-based) is given by `config_for`.
    pub fn appliance_ip(n: usize) -> Ipv4Addr {
        Ipv4Addr::new(LAB_SUBNET[0], LAB_SUBNET[1], LAB_SUBNET[2], 2 + n as u8)
    }

    /// `example_config_for(n)` with this lab's management key.
    pub fn config_for(&self, n: usize) -> pias::Config {
        let mut cfg = Lab::example_config_for(n);
        cfg.management.key = self.mgmt_key.clone();
        cfg
    }

    /// The example config, renamed and readdressed for the n-th appliance,
    /// in a lab deployment of `max(8, n + 1)` proxies (ids 1.., all in
    /// cluster 1, at `appliance_ip`): every appliance of a lab of up to 8
    /// carries the same deployment section, whichever of them it is. Its
    /// management key is the example's, which is public.
    pub fn example_config_for(n: usize) -> pias::Config {
        const LAB_DEPLOYMENT: usize = 8;
        let mut cfg = pias::Config::example();
        cfg.node.id = 1 + n as u32;
        cfg.node.name = format!("pias-{}", n + 1)
            .as_str()
            .try_into()
            .unwrap_or_default();
        cfg.interfaces[0].address.addr = pias::Ipv4(Lab::appliance_ip(n).octets());
        cfg.deployment.proxies = (0..LAB_DEPLOYMENT.max(n + 1))
            .map(|i| pias::config::ProxyEntry {
                id: 1 + i as u32,
                cluster: cfg.node.cluster,
                address: pias::Ipv4(Lab::appliance_ip(i).octets()),
            })
            .collect();
        cfg
    }

    fn add_tap(&mut self) -> Result<String> {
        let tap = format!("tap{}", self.taps);
        self.taps += 1;
        self.exec(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"])?;
        self.exec(&["ip", "link", "set", &tap, "master", "br0"])?;
        self.exec(&["ip", "link", "set", &tap, "up"])?;
        Ok(tap)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The MAC address of appliance `n` (its index in `appliances`).
    pub fn mac_of(&self, n: usize) -> [u8; 6] {
        appliance_mac(n)
    }

    /// Boots an appliance; returns its index in `appliances`.
    pub fn boot(&mut self, kernel: &Path, spec: Spec) -> Result<usize> {
        let n = self.appliances.len();
        let tap = if spec.nic {
            Some(self.add_tap()?)
        } else {
            None
        };
        let mac = appliance_mac(n);
        let appliance = start_appliance(
            &self.ns,
            self.dir.path(),
            &n.to_string(),
            kernel,
            spec,
            tap.as_deref().map(|t| (t, mac)),
        )?;
        register_pid(&self.ns, appliance.pid());
        self.appliances.push(appliance);
        Ok(n)
    }

    /// QEMU's own stderr for appliance n (option errors and the like).
    pub fn qemu_stderr(&self, n: usize) -> String {
        std::fs::read_to_string(self.path(&format!("qemu-{n}.err"))).unwrap_or_default()
    }

    /// Waits until tap n reports carrier (QEMU attached), bounded.
    pub fn wait_carrier(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output(&["cat", &format!("/sys/class/net/tap{n}/carrier")])?;
            if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("tap{n} has no carrier after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `f` on a thread that has entered this lab's namespace: sockets it
    /// creates live in the lab and keep working from any thread.
    pub fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        inside_netns(&self.ns, f)
    }
}

/// The NIC's MAC of the lab's `n`th appliance: 52:54:00:00:00:(n + 2).
fn appliance_mac(n: usize) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, (n + 2) as u8]
}

/// Starts QEMU for `spec` inside namespace `ns`, its files (serial log,
/// config blob, QEMU's stderr) named `*-{tag}` in `dir`, its NIC (if any) on
/// `nic` = (tap, MAC). The caller registers the pid for cleanup.
pub(crate) fn start_appliance(
    ns: &str,
    dir: &Path,
    tag: &str,
    kernel: &Path,
    spec: Spec,
    nic: Option<(&str, [u8; 6])>,
) -> Result<Appliance> {
    let serial = dir.join(format!("serial-{tag}.log"));
    File::create(&serial)?;
    let mut args: Vec<String> = match &spec.image {
        // GRUB boots from the machine's default BIOS (qboot cannot boot a CD).
        Some(_) => vec!["-M".into(), spec.machine.qemu_type().into()],
        None => spec.machine.qemu_args(),
    };
    args.extend(spec.accel.qemu_args());
    args.extend(
        [
            "-m",
            &spec.memory_mb.to_string(),
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            &format!("file:{}", serial.display()),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .map(String::from),
    );
    {
        use pias_image::disk::Format;
        let drive = |fmt: &str, p: &Path| format!("file={},format={fmt},if=ide", p.display());
        match &spec.image {
            Some((iso, Format::Iso)) => {
                args.extend(["-cdrom".to_string(), iso.display().to_string()])
            }
            Some((raw, Format::Raw)) => args.extend(["-drive".to_string(), drive("raw", raw)]),
            Some((q, Format::Qcow2)) => args.extend(["-drive".to_string(), drive("qcow2", q)]),
            None => match &spec.linux {
                Some(l) => args.extend([
                    "-kernel".to_string(),
                    l.kernel.display().to_string(),
                    "-initrd".to_string(),
                    l.initrd.display().to_string(),
                    "-append".to_string(),
                    l.append.clone(),
                ]),
                None => args.extend(["-kernel".to_string(), kernel.display().to_string()]),
            },
        }
    }
    if let (Some(blob), None, None) = (&spec.blob, &spec.image, &spec.linux) {
        let path = dir.join(format!("config-{tag}.blob"));
        std::fs::write(&path, blob)?;
        match spec.delivery {
            ConfigDelivery::FwCfg => {
                args.push("-fw_cfg".into());
                args.push(format!("name=opt/pias/config,file={}", path.display()));
            }
            ConfigDelivery::Initrd => {
                args.push("-initrd".into());
                args.push(path.display().to_string());
            }
        }
    }
    if let Some((tap, mac)) = nic {
        // The host's first ARP can be lost if the tap has no carrier yet.
        args.push("-netdev".into());
        args.push(format!("tap,id=n0,ifname={tap},script=no,downscript=no"));
        args.push("-device".into());
        args.push(format!(
            "{},netdev=n0,mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            spec.machine.nic_device(),
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5]
        ));
    }
    let started = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "qemu-system-x86_64"])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("qemu-{tag}.err")))?)
        .spawn()
        .context("starting qemu-system-x86_64 (is QEMU installed?)")?;
    Ok(Appliance {
        child,
        serial,
        started,
        spec,
        exit: None,
    })
}

impl Drop for Lab {
    fn drop(&mut self) {
        for a in self.appliances.iter_mut() {
            a.kill();
        }
        // Everything else registered under this lab goes too: processes,
        // and the namespaces a harness added beside the lab's own (the
        // benchmark's client and target namespaces).
        if let Some(mut res) = take(&self.ns) {
            // The appliances are killed and reaped above; their pids may be
            // another process's by now.
            res.pids.clear();
            // The lab's own namespace is among them (registered in `new`).
            release(res);
        } else {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }
}
