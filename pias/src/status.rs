//! The status report a proxy returns on its management port: identity, clock,
//! interface config, counters and table fill. Host tools decode it with postcard.

use crate::addr::{Ipv4, Ipv4Prefix};
use crate::config::{IFACE_NAME_LEN, MAX_INTERFACES, NODE_NAME_LEN};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Tables reported in one status.
pub const MAX_TABLES: usize = 8;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub node_id: u32,
    pub name: String<NODE_NAME_LEN>,
    pub uptime_ms: u64,
    pub clock: ClockInfo,
    pub interfaces: Vec<InterfaceStatus, MAX_INTERFACES>,
    pub net: NetCounters,
    pub mgmt: MgmtCounters,
    pub idle: IdleCounters,
    pub tables: Vec<TableFill, MAX_TABLES>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// TSC rate read from the hypervisor (kvmclock / pvclock).
    Kvmclock,
    /// TSC rate from CPUID leaf 0x15/0x16.
    Cpuid,
    /// TSC rate measured against the CMOS RTC's periodic flag.
    RtcCalibrated,
    /// TSC rate measured against the local APIC timer of QEMU's TCG (1 GHz).
    QemuLapic,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub source: ClockSource,
    pub tsc_khz: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub name: String<IFACE_NAME_LEN>,
    pub mac: [u8; 6],
    pub address: Ipv4Prefix,
    pub gateway: Option<Ipv4>,
    pub mtu: u16,
}

/// Packet-plane counters. Every dropped frame is counted under one reason.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Shorter than an Ethernet header.
    pub rx_runt: u64,
    /// Longer than the interface MTU plus the Ethernet header.
    pub rx_oversized: u64,
    /// Not addressed to our MAC, broadcast or multicast.
    pub rx_not_for_us: u64,
    /// EtherType other than ARP and IPv4.
    pub rx_unsupported: u64,
    /// Malformed ARP packet.
    pub rx_bad_arp: u64,
    /// Malformed IPv4 header (version, IHL, total length, fragments).
    pub rx_bad_ipv4: u64,
    /// IPv4 header checksum wrong.
    pub rx_bad_ip_checksum: u64,
    /// Truncated or inconsistent UDP/ICMP header.
    pub rx_bad_l4: u64,
    /// UDP/ICMP checksum wrong.
    pub rx_bad_l4_checksum: u64,
    /// The driver reported a receive error.
    pub rx_driver_errors: u64,
    /// A frame could not be queued for transmission (ring full).
    pub tx_ring_full: u64,
    /// The driver reported a transmit error.
    pub tx_driver_errors: u64,
}

impl NetCounters {
    /// All frames dropped by the classifier, whatever the reason.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_runt
            + self.rx_oversized
            + self.rx_not_for_us
            + self.rx_unsupported
            + self.rx_bad_arp
            + self.rx_bad_ipv4
            + self.rx_bad_ip_checksum
            + self.rx_bad_l4
            + self.rx_bad_l4_checksum
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MgmtCounters {
    pub requests: u64,
    /// From a source outside `management.allow`.
    pub refused_source: u64,
    /// Shutdown asked while `management.allow_shutdown` is false.
    pub refused_shutdown: u64,
    /// Not a valid request (bad magic, version or encoding).
    pub bad_requests: u64,
    /// A reply could not be sent (socket buffer full).
    pub reply_failures: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleCounters {
    /// Iterations of the main loop.
    pub polls: u64,
    /// Times the loop halted waiting for an interrupt.
    pub halts: u64,
    /// Interrupts taken (device, timer or spurious).
    pub wakeups: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableFill {
    pub name: String<16>,
    pub used: u64,
    pub capacity: u64,
}
