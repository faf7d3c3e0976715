//! A minimal Linux guest that does by Netfilter what a PIAS appliance does:
//! DNAT of an anycast address's ports to a target, with masquerade, on one
//! virtio-net NIC. Built once from Debian's packages into a cache directory:
//!
//! - the kernel: `linux-image-<version>` (the package `linux-image-amd64`
//!   depends on), fetched with `apt-get download` and unpacked with
//!   `dpkg-deb -x`; its vmlinuz is used as is;
//! - the initramfs (newc cpio, gzip'd): only the kernel modules the job needs
//!   (virtio-mmio, virtio-net, nf_tables with NAT and masquerade, and their
//!   dependencies, by `modules.dep`), Debian's `busybox-static` as the shell
//!   and tools, `nft` from Debian's `nftables` with its shared libraries, and
//!   an init script that reads its settings from `/proc/cmdline` (the image
//!   is generic; [`LinuxGuest::cmdline`] writes the settings).
//!
//! Cache layout (`cache_dir`, e.g. `<workspace>/out/vs-linux`):
//!
//! ```text
//! vmlinuz-<version>              the kernel
//! initramfs-<version>.cpio.gz    the initramfs
//! built                          written last: version, recipe fingerprint, file names
//! .lock                          held while building (concurrent callers wait)
//! work/                          the .deb and its unpacked tree, removed after a build
//! ```
//!
//! A complete build whose recipe (init script, module list) matches this code
//! is reused without asking apt; delete the directory to rebuild (e.g. to pick
//! up a newer Debian kernel).
//!
//! On the serial console the guest prints [`READY`] once the rules are in and
//! the NIC is up, or a line starting with [`ERROR_PREFIX`] naming what failed
//! (then it powers off).

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Printed on the serial console once the rules are in and the NIC is up.
pub const READY: &str = "PIAS-BASELINE-READY";
/// Starts the console line the init prints when a step fails.
pub const ERROR_PREFIX: &str = "PIAS-BASELINE-ERROR:";

/// The Debian packages the build needs on the host besides apt and dpkg
/// (`linux-image-*` is downloaded, not installed).
pub const HOST_PACKAGES: &[&str] = &["busybox-static", "nftables"];

/// The modules loaded at boot, before their dependencies are added.
/// `crc32c_generic` is `libcrc32c`'s soft dependency ("crc32c"): without a
/// modprobe in the guest nothing would load it, and libcrc32c (needed by
/// nf_tables and conntrack) fails to initialise without it.
pub const ROOT_MODULES: &[&str] = &[
    "crc32c_generic",
    "virtio_mmio",
    "virtio_net",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
];

const BUSYBOX: &str = "/bin/busybox";
const NFT: &str = "/usr/sbin/nft";
/// Bump when the image's layout changes in a way the fingerprint misses.
const RECIPE_REVISION: u32 = 1;

/// The init (busybox sh). Settings come from `/proc/cmdline` as
/// `pias.addr=A/P`, `pias.gw=G` (optional), `pias.anycast=X` and
/// `pias.fwd=PROTO:PORT:TARGET:TPORT,…` (see [`LinuxGuest::cmdline`]).
const INIT: &str = r#"#!/bin/busybox sh
# PIAS baseline guest: DNAT + masquerade by nftables (see pias-qemu vslinux::guest).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
fail() {
    echo "PIAS-BASELINE-ERROR: $*"
    poweroff -f
    while :; do sleep 3600; done
}
P_addr= P_gw= P_anycast= P_fwd=
for kv in $(cat /proc/cmdline); do
    case "$kv" in
        pias.addr=*) P_addr=${kv#*=} ;;
        pias.gw=*) P_gw=${kv#*=} ;;
        pias.anycast=*) P_anycast=${kv#*=} ;;
        pias.fwd=*) P_fwd=${kv#*=} ;;
    esac
done
[ -n "$P_addr" ] || fail "no pias.addr= on the kernel command line"
[ -n "$P_anycast" ] || fail "no pias.anycast= on the kernel command line"
for m in $(cat /etc/modules); do
    out=$(insmod "/lib/modules/$m" 2>&1) || fail "insmod $m: $out"
done
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    [ $i -gt 500 ] && fail "no eth0 after 5 s (virtio-mmio device not found?)"
    usleep 10000
done
# The rules go in before the NIC comes up: a packet that met the NAT hook
# before its rules (nft registers a chain's hook before it commits the
# rules) would leave a conntrack entry without NAT that its flow keeps.
{
    echo "table ip nat {"
    echo "  chain prerouting {"
    echo "    type nat hook prerouting priority dstnat; policy accept;"
    for f in $(echo "$P_fwd" | tr , ' '); do
        set -- $(echo "$f" | tr : ' ')
        echo "    ip daddr $P_anycast $1 dport $2 dnat to $3:$4"
    done
    echo "  }"
    echo "  chain postrouting {"
    echo "    type nat hook postrouting priority srcnat; policy accept;"
    for f in $(echo "$P_fwd" | tr , ' '); do
        set -- $(echo "$f" | tr : ' ')
        echo "    ip daddr $3 $1 dport $4 masquerade"
    done
    echo "  }"
    echo "}"
} > /run/rules.nft
out=$(nft -f /run/rules.nft 2>&1) || fail "nft -f: $out"
for k in all default eth0; do
    echo 0 > /proc/sys/net/ipv4/conf/$k/send_redirects || fail "send_redirects=0 on $k"
done
echo 1 > /proc/sys/net/ipv4/ip_forward || fail "ip_forward=1"
ip link set lo up || fail "ip link set lo up"
ip link set eth0 up || fail "ip link set eth0 up"
ip addr add "$P_addr" dev eth0 || fail "ip addr add $P_addr dev eth0"
if [ -n "$P_gw" ]; then
    ip route add default via "$P_gw" || fail "ip route add default via $P_gw"
fi
ip addr add "$P_anycast/32" dev lo || fail "ip addr add $P_anycast/32 dev lo"
echo "PIAS-BASELINE-READY"
while :; do sleep 3600; done
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// nftables' (and the init's) name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// `proto` packets to the anycast address's `port` go to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub port: u16,
    pub to: SocketAddrV4,
}

/// The guest's network settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNet {
    /// The guest's unicast address on the LAN.
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The anycast address whose ports are DNATed (also added to `lo`, so
    /// packets to its other ports are answered as a host would, not routed on).
    pub anycast: Ipv4Addr,
    pub forwards: Vec<Forward>,
}

/// A built guest: kernel, initramfs and the kernel's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel's release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// The guest's TSC rate for `tsc_early_khz=` (0: let Linux calibrate).
    /// Under TCG the guest reads the host's TSC, so this is the host's rate,
    /// measured by `build`. Without it Linux calibrates the TSC against the
    /// PIT, which under TCG on a busy host fails now and then; it then marks
    /// the TSC unstable and the boot hangs (microvm has no HPET or PM timer
    /// to fall back on).
    pub tsc_khz: u64,
}

impl LinuxGuest {
    /// Builds into `cache_dir` (e.g. `<workspace>/out/vs-linux`) unless a
    /// complete build of this recipe is there already. Needs root (for
    /// `apt-get download` and `apt-get update`), network access to the Debian
    /// mirror on the first build, and the host packages in [`HOST_PACKAGES`].
    pub fn build(cache_dir: &Path) -> Result<LinuxGuest> {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        let lock = std::fs::File::create(cache_dir.join(".lock"))?;
        lock.lock()
            .with_context(|| format!("locking {}/.lock", cache_dir.display()))?;
        let built = match Self::cached(cache_dir) {
            Some(g) => Ok(g),
            None => {
                let built = build_into(cache_dir);
                let _ = std::fs::remove_dir_all(cache_dir.join("work"));
                built
            }
        };
        built.map(|g| LinuxGuest {
            tsc_khz: host_tsc_khz(),
            ..g
        })
    }

    /// The complete build in `cache_dir` made by this recipe, if there is one.
    pub fn cached(cache_dir: &Path) -> Option<LinuxGuest> {
        let stamp = std::fs::read_to_string(cache_dir.join("built")).ok()?;
        let field = |k: &str| {
            stamp
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        if field("recipe")? != recipe_fingerprint() {
            return None;
        }
        let g = LinuxGuest {
            kernel: cache_dir.join(field("kernel")?),
            initrd: cache_dir.join(field("initrd")?),
            version: field("version")?,
            tsc_khz: 0,
        };
        (g.kernel.is_file() && g.initrd.is_file()).then_some(g)
    }

    /// Kernel + initramfs bytes.
    pub fn image_bytes(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.kernel)?.len() + std::fs::metadata(&self.initrd)?.len())
    }

    /// The kernel command line for `net`: console on the serial port, quiet,
    /// reboot (QEMU exits: `-no-reboot`) on a panic, no PCI probing (microvm
    /// has none), the TSC's rate (see [`LinuxGuest::tsc_khz`]), and the
    /// settings the init reads. ACPI stays on: microvm describes its
    /// virtio-mmio devices there (QEMU adds no `virtio_mmio.device=` when
    /// ACPI is on, and Debian's kernel is built without support for it).
    pub fn cmdline(&self, net: &GuestNet) -> String {
        let mut s = String::from("console=ttyS0 quiet panic=-1 pci=off");
        if self.tsc_khz > 0 {
            s.push_str(&format!(" tsc_early_khz={}", self.tsc_khz));
        }
        s.push_str(&format!(
            " pias.addr={}/{} pias.anycast={}",
            net.address, net.prefix_len, net.anycast
        ));
        if let Some(gw) = net.gateway {
            s.push_str(&format!(" pias.gw={gw}"));
        }
        if !net.forwards.is_empty() {
            let fwd: Vec<String> = net
                .forwards
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}:{}:{}",
                        f.proto.as_str(),
                        f.port,
                        f.to.ip(),
                        f.to.port()
                    )
                })
                .collect();
            s.push_str(&format!(" pias.fwd={}", fwd.join(",")));
        }
        s
    }
}

/// What identifies the image's recipe: the init, the module list and the
/// revision. A cached build with another fingerprint is rebuilt.
fn recipe_fingerprint() -> String {
    // FNV-1a, 64 bits: stable across toolchains (unlike DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{RECIPE_REVISION}\n{INIT}\n{}", ROOT_MODULES.join(","));
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn build_into(cache_dir: &Path) -> Result<LinuxGuest> {
    for (path, pkg) in [(BUSYBOX, "busybox-static"), (NFT, "nftables")] {
        if !Path::new(path).is_file() {
            bail!(
                "{path} not found: the Linux baseline guest needs the Debian package {pkg} \
                 (apt-get install -y {})",
                HOST_PACKAGES.join(" ")
            );
        }
    }
    let work = cache_dir.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let deps = capture(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let package = kernel_package(&deps)
        .context("`apt-cache depends linux-image-amd64` names no linux-image-* package")?;
    let version = package["linux-image-".len()..].to_string();
    let deb = download(&package, &work)?;
    let root = work.join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let _ = std::fs::remove_file(&deb);

    let moddir = root.join("lib/modules").join(&version);
    if !moddir.join("modules.dep").is_file() {
        // Debian's package leaves modules.dep to depmod in its postinst.
        run_ok(
            Command::new(BUSYBOX)
                .args(["depmod", "-b"])
                .arg(&root)
                .arg(&version),
        )
        .context("generating modules.dep")?;
    }
    let dep = std::fs::read_to_string(moddir.join("modules.dep"))?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let modules = module_closure(&dep, &builtin, ROOT_MODULES)?;

    let mut tree = Tree::default();
    for d in [
        "dev", "proc", "sys", "run", "tmp", "bin", "sbin", "usr/bin", "usr/sbin",
    ] {
        tree.dir(d);
    }
    tree.add("dev/console", Node::Char(5, 1));
    tree.add("init", Node::File(INIT.as_bytes().to_vec(), 0o755));
    let mut order = String::new();
    for m in &modules {
        let bytes = module_bytes(&moddir.join(m))?;
        let name = ko_name(m);
        tree.add(&format!("lib/modules/{name}"), Node::File(bytes, 0o644));
        order.push_str(&name);
        order.push('\n');
    }
    tree.add("etc/modules", Node::File(order.into_bytes(), 0o644));
    for bin in [BUSYBOX, NFT] {
        tree.add_host_file(Path::new(bin), 0o755)?;
        let ldd = Command::new("ldd").arg(bin).stdin(Stdio::null()).output();
        let ldd = ldd.context("running ldd")?;
        // A static binary makes ldd fail ("not a dynamic executable"): no libraries.
        if ldd.status.success() {
            for lib in parse_ldd(&String::from_utf8_lossy(&ldd.stdout)) {
                tree.add_host_file(&lib, 0o755)?;
            }
        }
    }

    let kernel_name = format!("vmlinuz-{version}");
    let initrd_name = format!("initramfs-{version}.cpio.gz");
    let tmp = work.join("initramfs.tmp");
    {
        let file = std::fs::File::create(&tmp)?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::best(),
        );
        tree.write_newc(&mut gz)?;
        gz.finish()?.flush()?;
    }
    std::fs::rename(&tmp, cache_dir.join(&initrd_name))?;
    std::fs::copy(
        root.join("boot").join(&kernel_name),
        work.join("vmlinuz.tmp"),
    )
    .with_context(|| format!("{kernel_name} is not in {package}"))?;
    std::fs::rename(work.join("vmlinuz.tmp"), cache_dir.join(&kernel_name))?;
    std::fs::write(
        cache_dir.join("built"),
        format!(
            "version={version}\nrecipe={}\nkernel={kernel_name}\ninitrd={initrd_name}\npackage={package}\nmodules={}\n",
            recipe_fingerprint(),
            modules.len()
        ),
    )?;
    Ok(LinuxGuest {
        kernel: cache_dir.join(kernel_name),
        initrd: cache_dir.join(initrd_name),
        version,
        tsc_khz: 0,
    })
}

/// The host's TSC rate in kHz, measured once per process over 50 ms against
/// the monotonic clock (the median of three, so one preemption at the wrong
/// moment does not skew it).
pub fn host_tsc_khz() -> u64 {
    static KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        let rdtsc = || {
            // SAFETY: `rdtsc` only reads the time-stamp counter, which every
            // x86_64 CPU has; it touches no memory.
            unsafe { std::arch::x86_64::_rdtsc() }
        };
        let mut khz: Vec<u64> = (0..3)
            .map(|_| {
                let (t0, c0) = (std::time::Instant::now(), rdtsc());
                std::thread::sleep(std::time::Duration::from_millis(50));
                let (c1, t1) = (rdtsc(), std::time::Instant::now());
                let ns = (t1 - t0).as_nanos().max(1);
                (u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns) as u64
            })
            .collect();
        khz.sort_unstable();
        khz[1]
    })
}

/// `apt-get download package` into `dir`; runs `apt-get update` and retries
/// once if the first attempt fails (no package lists yet, or stale ones).
fn download(package: &str, dir: &Path) -> Result<PathBuf> {
    let get = || {
        run_ok(
            Command::new("apt-get")
                // The download directory is root's: fetch as root, not as _apt.
                .args(["-q", "-o", "APT::Sandbox::User=root", "download", package])
                .current_dir(dir),
        )
    };
    if let Err(first) = get() {
        run_ok(Command::new("apt-get").args(["-q", "update"]))
            .with_context(|| format!("apt-get download {package} failed ({first:#}); then"))?;
        get().with_context(|| format!("apt-get download {package} (after apt-get update)"))?;
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
            return Ok(p);
        }
    }
    bail!(
        "apt-get download {package} left no .deb in {}",
        dir.display()
    )
}

/// The package `apt-cache depends linux-image-amd64` names first.
pub fn kernel_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let p = l.trim().strip_prefix("Depends:")?.trim();
        p.starts_with("linux-image-").then(|| p.to_string())
    })
}

/// A module's name as the kernel knows it: file name without `.ko[.*]`,
/// dashes as underscores.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The module's file name in the initramfs: always an uncompressed `.ko`.
fn ko_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    format!("{}.ko", file.split(".ko").next().unwrap_or(file))
}

/// The modules to load for `roots`, each after its dependencies (paths as
/// `modules.dep` gives them, relative to the modules directory). Roots built
/// into the kernel (`modules.builtin`) are skipped; a root that is neither
/// built in nor in `modules.dep` is an error.
pub fn module_closure(
    modules_dep: &str,
    modules_builtin: &str,
    roots: &[&str],
) -> Result<Vec<String>> {
    let builtin: HashSet<String> = modules_builtin
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect();
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_name: HashMap<String, &str> = HashMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let module = module.trim();
        deps.insert(module, rest.split_whitespace().collect());
        by_name.insert(module_name(module), module);
    }
    fn visit<'a>(
        m: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(m) {
            return Ok(());
        }
        let Some(ds) = deps.get(m) else {
            bail!("modules.dep lists {m} as a dependency but has no line for it");
        };
        for d in ds {
            visit(d, deps, seen, out)?;
        }
        out.push(m.to_string());
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for root in roots {
        let name = root.replace('-', "_");
        if builtin.contains(&name) {
            continue;
        }
        let Some(path) = by_name.get(&name) else {
            bail!("module {root} is neither built into the kernel nor in modules.dep");
        };
        visit(path, &deps, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// A module's bytes, decompressed (busybox insmod loads plain ELF only).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let raw = std::fs::read(path).with_context(|| format!("reading {name}"))?;
    if name.ends_with(".ko") {
        Ok(raw)
    } else if name.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else if name.ends_with(".ko.xz") {
        capture_bytes(Command::new("xz").arg("-dc").arg(path))
    } else if name.ends_with(".ko.zst") {
        capture_bytes(Command::new("zstd").arg("-dc").arg(path))
    } else {
        bail!("{name}: unknown module compression")
    }
}

/// The absolute paths `ldd` resolved (libraries and the dynamic loader).
pub fn parse_ldd(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.split_once("=>").map_or(l, |(_, r)| r.trim());
            let p = l.split_whitespace().next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

fn capture(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&capture_bytes(cmd)?).into_owned())
}

fn capture_bytes(cmd: &mut Command) -> Result<Vec<u8>> {
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
    Ok(out.stdout)
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    capture_bytes(cmd).map(|_| ())
}

/// An entry of the initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// Contents and permission bits.
    File(Vec<u8>, u32),
    /// A character device (major, minor).
    Char(u32, u32),
}

/// The initramfs's tree, by path without a leading `/`; parents are added as
/// directories. Sorted, so every directory comes before what it holds.
#[derive(Clone, Debug, Default)]
pub struct Tree(BTreeMap<String, Node>);

impl Tree {
    pub fn dir(&mut self, path: &str) {
        self.add(path, Node::Dir);
    }

    pub fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_matches('/');
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            self.0.entry(p.to_string()).or_insert(Node::Dir);
            parent = p;
        }
        self.0.insert(path.to_string(), node);
    }

    /// A host file at the same path (symlinks followed: the target's bytes).
    pub fn add_host_file(&mut self, path: &Path, mode: u32) -> Result<()> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.add(&path.to_string_lossy(), Node::File(bytes, mode));
        Ok(())
    }

    /// Writes the tree as a newc cpio archive (owner root, mtime 0).
    pub fn write_newc<W: Write>(&self, mut w: W) -> std::io::Result<W> {
        use cpio::newc::{Builder, ModeFileType};
        for (ino, (path, node)) in self.0.iter().enumerate() {
            let b = Builder::new(path).ino(ino as u32 + 1);
            w = match node {
                Node::Dir => b
                    .mode(0o755)
                    .nlink(2)
                    .set_mode_file_type(ModeFileType::Directory)
                    .write(w, 0)
                    .finish()?,
                Node::Char(major, minor) => b
                    .mode(0o600)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .set_mode_file_type(ModeFileType::Char)
                    .write(w, 0)
                    .finish()?,
                Node::File(data, mode) => {
                    let len = u32::try_from(data.len()).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "file over 4 GiB")
                    })?;
                    let mut fw = b
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Regular)
                        .write(w, len);
                    fw.write_all(data)?;
                    fw.finish()?
                }
            };
        }
        cpio::newc::trailer(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nfnetlink.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c-generic.ko.xz:
kernel/net/netfilter/nft_masq.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nfnetlink.ko kernel/net/netfilter/nf_nat.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_nat.ko: kernel/lib/libcrc32c.ko
";

    fn pos(v: &[String], m: &str) -> usize {
        v.iter()
            .position(|x| x.ends_with(m))
            .unwrap_or_else(|| panic!("{m} missing from {v:?}"))
    }

    #[test]
    fn closure_puts_dependencies_first_once_each() {
        let v = module_closure(
            DEP,
            "kernel/net/packet/af_packet.ko\n",
            &["crc32c_generic", "virtio_mmio", "virtio_net", "nft_masq"],
        )
        .unwrap();
        assert_eq!(v.len(), 12, "{v:?}");
        let set: HashSet<&String> = v.iter().collect();
        assert_eq!(set.len(), v.len(), "duplicates in {v:?}");
        assert_eq!(v[0], "kernel/crypto/crc32c-generic.ko.xz");
        assert!(pos(&v, "/virtio.ko") < pos(&v, "/virtio_mmio.ko"));
        assert!(pos(&v, "/virtio_ring.ko") < pos(&v, "/virtio_net.ko"));
        assert!(pos(&v, "/failover.ko") < pos(&v, "/net_failover.ko"));
        assert!(pos(&v, "/net_failover.ko") < pos(&v, "/virtio_net.ko"));
        assert!(pos(&v, "/libcrc32c.ko") < pos(&v, "/nf_tables.ko"));
        assert!(pos(&v, "/nf_nat.ko") < pos(&v, "/nft_masq.ko"));
        assert!(pos(&v, "/nf_tables.ko") < pos(&v, "/nft_masq.ko"));
        assert_eq!(v.last().unwrap(), "kernel/net/netfilter/nft_masq.ko");
    }

    #[test]
    fn closure_skips_builtins_and_refuses_unknown_modules() {
        let v = module_closure(
            DEP,
            "kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/virtio/virtio.ko\n",
            &["virtio_mmio"],
        )
        .unwrap();
        assert!(v.is_empty(), "{v:?}");
        let e = module_closure(DEP, "", &["nft_nat"]).unwrap_err();
        assert!(e.to_string().contains("nft_nat"), "{e}");
        let broken = "a.ko: b.ko\n";
        let e = module_closure(broken, "", &["a"]).unwrap_err();
        assert!(e.to_string().contains("b.ko"), "{e}");
    }

    #[test]
    fn module_file_names() {
        assert_eq!(
            module_name("kernel/crypto/crc32c-generic.ko.xz"),
            "crc32c_generic"
        );
        assert_eq!(
            ko_name("kernel/crypto/crc32c-generic.ko.zst"),
            "crc32c-generic.ko"
        );
        assert_eq!(ko_name("kernel/net/netfilter/nf_nat.ko"), "nf_nat.ko");
    }

    #[test]
    fn kernel_package_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            kernel_package(out).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(kernel_package("linux-image-amd64\n"), None);
    }

    #[test]
    fn ldd_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out),
            [
                "/lib/x86_64-linux-gnu/libnftables.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    fn net() -> GuestNet {
        GuestNet {
            address: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            anycast: Ipv4Addr::new(203, 0, 113, 10),
            forwards: vec![
                Forward {
                    proto: Proto::Udp,
                    port: 53,
                    to: "198.18.0.3:5353".parse().unwrap(),
                },
                Forward {
                    proto: Proto::Tcp,
                    port: 80,
                    to: "198.18.0.4:8080".parse().unwrap(),
                },
            ],
        }
    }

    fn guest() -> LinuxGuest {
        LinuxGuest {
            kernel: "/c/vmlinuz-6.1.0-56-amd64".into(),
            initrd: "/c/initramfs-6.1.0-56-amd64.cpio.gz".into(),
            version: "6.1.0-56-amd64".into(),
            tsc_khz: 2_596_105,
        }
    }

    #[test]
    fn cmdline_carries_console_and_settings() {
        let c = guest().cmdline(&net());
        let words: Vec<&str> = c.split(' ').collect();
        for w in [
            "console=ttyS0",
            "quiet",
            "tsc_early_khz=2596105",
            "pias.addr=198.18.0.2/24",
            "pias.gw=198.18.0.1",
            "pias.anycast=203.0.113.10",
            "pias.fwd=udp:53:198.18.0.3:5353,tcp:80:198.18.0.4:8080",
        ] {
            assert!(words.contains(&w), "{w} missing from {c}");
        }
        let mut n = net();
        n.gateway = None;
        n.forwards.clear();
        let c = guest().cmdline(&n);
        assert!(!c.contains("pias.gw") && !c.contains("pias.fwd"), "{c}");
        // Every setting the init reads is a word it matches.
        for w in c.split(' ').filter(|w| w.starts_with("pias.")) {
            let key = w.split('=').next().unwrap();
            assert!(INIT.contains(&format!("{key}=*)")), "init ignores {key}");
        }
    }

    #[test]
    fn newc_archive_reads_back() {
        let mut t = Tree::default();
        t.add("init", Node::File(b"#!/bin/sh\n".to_vec(), 0o755));
        t.add("dev/console", Node::Char(5, 1));
        t.add("lib/modules/a.ko", Node::File(vec![7; 1001], 0o644));
        let bytes = t.write_newc(Vec::new()).unwrap();
        assert_eq!(&bytes[..6], b"070701");
        let mut r = &bytes[..];
        let mut seen = Vec::new();
        loop {
            let mut e = cpio::NewcReader::new(r).unwrap();
            if e.entry().is_trailer() {
                break;
            }
            let (name, mode) = (e.entry().name().to_string(), e.entry().mode());
            let (rmaj, rmin) = (e.entry().rdev_major(), e.entry().rdev_minor());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((name, mode, data.len(), rmaj, rmin));
            r = e.finish().unwrap();
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/a.ko"
            ]
        );
        assert_eq!(seen[0].1, 0o040755);
        assert_eq!((seen[1].1, seen[1].3, seen[1].4), (0o020600, 5, 1));
        assert_eq!((seen[2].1, seen[2].2), (0o100755, 10));
        assert_eq!(seen[5].2, 1001);
        // newc pads every header+name and every file's data to 4 bytes.
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn host_tsc_rate_is_plausible() {
        let khz = host_tsc_khz();
        assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
    }

    #[test]
    fn fingerprint_is_stable_per_recipe() {
        assert_eq!(recipe_fingerprint(), recipe_fingerprint());
        assert_eq!(recipe_fingerprint().len(), 16);
    }
}
