#!/usr/bin/env bash
# Installs what a fresh machine lacks to build, boot and test the appliance:
# QEMU (Debian's qemu-system-x86, which brings qboot.rom), ping, iproute2, GRUB's ISO tools,
# qemu-img and virt-xml-validate (disk images, libvirt examples),
# the multi-POP lab's tools and services (ethtool, dnsmasq, nginx, dig, curl, BIRD 2 and FRR),
# Prometheus and promtool (the metrics port's checks), rsvg-convert (the figures),
# busybox-static, nftables and iperf3 (the Linux baseline of bench --vs-linux),
# and the Rust target x86_64-unknown-none. Idempotent; needs root for apt.
set -euo pipefail
# What is missing, by the commands and files the project uses.
missing() {
  need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  [ -f /usr/share/qemu/qboot.rom ] || need+=(qemu-system-x86)
  command -v ping >/dev/null || need+=(iputils-ping)
  command -v ip >/dev/null || need+=(iproute2)
  # GRUB ISO builds (multiboot2 boot test): grub-mkrescue needs these.
  command -v grub-mkrescue >/dev/null || need+=(grub-pc-bin grub-common)
  [ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
  command -v xorriso >/dev/null || need+=(xorriso)
  command -v mformat >/dev/null || need+=(mtools)
  # Disk images (pias-image disk: qcow2) and the libvirt domain examples' check.
  command -v qemu-img >/dev/null || need+=(qemu-utils)
  command -v virt-xml-validate >/dev/null || need+=(libvirt-clients)
  command -v xmllint >/dev/null || need+=(libxml2-utils)
  # The multi-POP lab (pias-qemu topo): offloads off on veths, services in target
  # namespaces (started by the harness, not by systemd: dnsmasq-base has no service), clients.
  command -v ethtool >/dev/null || need+=(ethtool)
  command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
  command -v nginx >/dev/null || need+=(nginx)
  command -v dig >/dev/null || need+=(dnsutils)
  command -v curl >/dev/null || need+=(curl)
  command -v sha256sum >/dev/null || need+=(coreutils)
  # Real routers for the BGP labs (started by the harness inside namespaces).
  command -v bird >/dev/null || need+=(bird2)
  [ -x /usr/lib/frr/bgpd ] || need+=(frr)
  # The metrics port's checks: promtool (in Debian's prometheus package) and a
  # real Prometheus scraping a lab; rsvg-convert renders the committed figures.
  command -v promtool >/dev/null || need+=(prometheus)
  command -v prometheus >/dev/null || need+=(prometheus)
  command -v rsvg-convert >/dev/null || need+=(librsvg2-bin)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  # The Linux + nftables baseline of `pias-qemu bench --vs-linux` (its kernel is
  # fetched with apt-get download into out/vs-linux, not installed) and iperf3.
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v nft >/dev/null || need+=(nftables)
  command -v iperf3 >/dev/null || need+=(iperf3)
}
# Twice: an install can remove what an earlier check found (a machine with a
# backported qemu-utils loses it to Debian's qemu-system-x86, which conflicts;
# the second round installs Debian's own).
export DEBIAN_FRONTEND=noninteractive
for round in 1 2; do
  missing
  [ ${#need[@]} -eq 0 ] && break
  echo "installing (round $round): ${need[*]}" >&2
  [ "$round" = 1 ] && apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
done
missing
if [ ${#need[@]} -gt 0 ]; then
  echo "install.sh: still missing after installing: ${need[*]}" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
# rust-toolchain.toml names the toolchain and the target; this fetches what is missing.
rustup show active-toolchain >/dev/null
rustup target add x86_64-unknown-none >/dev/null 2>&1 || true
rustup target list --installed | grep -q x86_64-unknown-none
