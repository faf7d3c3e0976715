//! The status report a proxy returns on its management port: identity, clock,
//! interface config, counters and table fill. Host tools decode it with postcard.

use crate::addr::{Ipv4, Ipv4Prefix};
use crate::config::{IFACE_NAME_LEN, MAX_INTERFACES, NODE_NAME_LEN};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Tables reported in one status.
pub const MAX_TABLES: usize = 20;
/// The longest version string a status carries.
pub const VERSION_LEN: usize = 40;

/// One status report, the body of a `Response` to `Op::Status`. A response
/// carrying the largest possible report fits `mgmt::MAX_RESPONSE` (a test
/// checks it). Counters are cumulative since boot.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The proxy id from `node.id` of the config.
    pub node_id: u32,
    /// The name from `node.name` of the config.
    pub name: String<NODE_NAME_LEN>,
    /// The kernel's version and the git revision it was built from
    /// ("0.1.0+1a2b3c4d5e6f"; "+unknown" when built outside a checkout).
    pub version: String<VERSION_LEN>,
    /// Milliseconds since the kernel was entered.
    pub uptime_ms: u64,
    /// Where the appliance's clock rate came from.
    pub clock: ClockInfo,
    /// The interfaces in use, with their MAC addresses.
    pub interfaces: Vec<InterfaceStatus, MAX_INTERFACES>,
    /// Packet-plane counters.
    pub net: NetCounters,
    /// Management-service counters, this request included.
    pub mgmt: MgmtCounters,
    /// The metrics port's counters (HTTP).
    pub http: HttpCounters,
    /// Main-loop counters: polls, halts and wake-ups.
    pub idle: IdleCounters,
    /// Fill of the appliance's fixed-size tables and memory.
    pub tables: Vec<TableFill, MAX_TABLES>,
    /// Heap allocations since boot: flat while traffic flows, since the
    /// per-packet path does not allocate.
    pub allocations: u64,
    /// Console bytes dropped since boot: log lines that found the console's
    /// queue full (the serial line is slower than they came).
    pub console_dropped: u64,
    /// What the main loop does now when a pass finds no work (the idle
    /// policy's running mode; a trial's epoch is not shown).
    pub loop_mode: LoopMode,
}

/// What the main loop does when a pass finds no work (`config::IdleMode`
/// and the idle policy, `pias_net::idle`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoopMode {
    /// `idle = "poll"`: it polls on and never halts.
    #[default]
    Poll,
    /// It polls on for a while after the last frame, then halts (light or
    /// bulk traffic, or a load that moves more this way).
    SpinThenHalt,
    /// It halts at once: the idle policy measured that this moves more.
    HaltAtOnce,
}

impl LoopMode {
    /// Every mode.
    pub const ALL: [LoopMode; 3] = [LoopMode::Poll, LoopMode::SpinThenHalt, LoopMode::HaltAtOnce];

    /// The mode's name ("poll", "spin_then_halt" or "halt_at_once").
    pub fn name(self) -> &'static str {
        match self {
            LoopMode::Poll => "poll",
            LoopMode::SpinThenHalt => "spin_then_halt",
            LoopMode::HaltAtOnce => "halt_at_once",
        }
    }
}

/// What the proxy and its data path counted, the body of `Op::Proxy`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyReport {
    /// The data path: what each packet became, every drop by reason.
    pub data: DataCounters,
    /// The proxy core, by role.
    pub proxy: crate::proxy::Counters,
}

/// How the appliance learned its TSC rate (the kernel tries kvmclock, then
/// CPUID, then QEMU's LAPIC timer, then the RTC).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// TSC rate read from the hypervisor (kvmclock / pvclock).
    Kvmclock,
    /// TSC rate from CPUID leaf 0x15 (crystal clock and TSC ratio).
    Cpuid,
    /// TSC rate measured against the CMOS RTC's periodic flag.
    RtcCalibrated,
    /// TSC rate measured against the local APIC timer of QEMU's TCG (1 GHz).
    QemuLapic,
}

/// The appliance's clock: the TSC, and how its rate was found.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Where the rate came from.
    pub source: ClockSource,
    /// TSC ticks per millisecond (the rate in kHz) that uptime and timers use.
    pub tsc_khz: u64,
}

/// One interface as configured, plus what only the driver knows (the MAC).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// The configured name (`interfaces[].name`).
    pub name: String<IFACE_NAME_LEN>,
    /// The NIC's MAC address, as the device reports it.
    pub mac: [u8; 6],
    /// The configured unicast address and subnet length.
    pub address: Ipv4Prefix,
    /// The configured default gateway, if any.
    pub gateway: Option<Ipv4>,
    /// The configured IP MTU in bytes.
    pub mtu: u16,
}

/// Packet-plane counters. Every dropped frame is counted under one reason.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames the driver delivered, before classification (dropped ones too).
    pub rx_frames: u64,
    /// Bytes of those frames, Ethernet header included.
    pub rx_bytes: u64,
    /// Frames the driver accepted for transmission.
    pub tx_frames: u64,
    /// Bytes of those frames, Ethernet header included.
    pub tx_bytes: u64,
    /// Shorter than an Ethernet header.
    pub rx_runt: u64,
    /// Longer than the interface MTU plus the Ethernet header.
    pub rx_oversized: u64,
    /// Not addressed to our MAC, broadcast or multicast.
    pub rx_not_for_us: u64,
    /// EtherType other than ARP and IPv4 (VLAN tags included), or an IPv4
    /// fragment (this build does not reassemble).
    pub rx_unsupported: u64,
    /// Malformed ARP packet.
    pub rx_bad_arp: u64,
    /// Malformed IPv4 header (version, IHL, total length).
    pub rx_bad_ipv4: u64,
    /// IPv4 header checksum wrong.
    pub rx_bad_ip_checksum: u64,
    /// Truncated or inconsistent UDP, TCP or ICMP header.
    pub rx_bad_l4: u64,
    /// UDP, TCP or ICMP checksum wrong.
    pub rx_bad_l4_checksum: u64,
    /// The driver reported a receive error.
    pub rx_driver_errors: u64,
    /// A frame could not be queued, the transmit ring full: a data-path
    /// frame after the driver's bounded wait for room (at once while the
    /// ring is stalled: a wait ran out and the device has taken nothing
    /// since), or the stack's at once (smoltcp sends it again later).
    pub tx_ring_full: u64,
    /// Frames that found the transmit ring full (a large frame: the
    /// driver's large buffers all with the device) and waited for the device
    /// to take some (the driver halts meanwhile); `tx_ring_full` counts
    /// those still refused after.
    pub tx_ring_waits: u64,
    /// The driver refused a frame, or the frame exceeded `FRAME_MAX`.
    pub tx_driver_errors: u64,
    /// Large TCP frames received (segments the host coalesced past the MTU,
    /// with TCP segmentation offload negotiated).
    pub rx_large: u64,
    /// Segments cut in software from large frames that could not go on whole.
    pub rx_large_cut: u64,
    /// Segments merged in software into large frames (runs of one flow's
    /// in-order segments arriving back to back).
    pub rx_coalesced: u64,
    /// Frames dropped: offload metadata that does not fit the frame (a large
    /// frame that is not TCP/IPv4, or a partial checksum outside the frame).
    pub rx_bad_offload: u64,
    /// Large TCP frames handed to the device whole, for it to segment.
    pub tx_large: u64,
    /// Receive overruns: a whole receive ring's worth of frames taken back
    /// to back without ever finding the ring empty. The appliance was
    /// behind; the device may have had no buffer and the host dropped frames
    /// (virtio does not say). Target pings out meanwhile that go unanswered
    /// are excused (`jap.misses_excused`).
    pub rx_overruns: u64,
}

impl NetCounters {
    /// All frames dropped by the classifier, whatever the reason.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_runt
            + self.rx_bad_offload
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

/// Management-service counters: every datagram counts in `requests`; the
/// others count what went wrong.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MgmtCounters {
    /// Datagrams received on the management port, whatever became of them.
    pub requests: u64,
    /// From a source outside `management.allow`.
    pub refused_source: u64,
    /// Shutdown asked while `management.allow_shutdown` is false.
    pub refused_shutdown: u64,
    /// Drain or undrain asked of an appliance without BGP.
    pub refused_no_bgp: u64,
    /// Not a management datagram (bad magic, too short or too long), or
    /// authentic but undecodable.
    pub bad_requests: u64,
    /// The MAC does not verify under the management key (forged, another
    /// key, or an unauthenticated old-version client): no answer.
    pub bad_mac: u64,
    /// Authentic but of another protocol version: refused (`Refusal::Version`).
    pub bad_version: u64,
    /// Authentic but its time is more than `mgmt::FRESHNESS_MS` from the
    /// appliance's clock: no answer.
    pub stale: u64,
    /// Authentic and fresh, but its nonce was seen already: no answer.
    pub replayed: u64,
    /// Authentic and fresh, but the replay cache is full (more requests than
    /// it is sized for within the freshness window): no answer.
    pub replay_full: u64,
    /// A reply could not be encoded or sent (socket buffer full).
    pub reply_failures: u64,
}

/// The metrics port (`ports.metrics`): connections, requests, and every
/// refusal by its reason.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpCounters {
    /// Connections accepted from an allowed source.
    pub connections: u64,
    /// Connection attempts (SYNs) dropped unanswered: the source is outside
    /// `management.allow` (every segment from it is dropped; each SYN counts).
    pub refused_source: u64,
    /// Connection attempts reset because every connection slot was busy.
    pub refused_busy: u64,
    /// Requests answered with the metrics (200).
    pub served: u64,
    /// Requests that were not well-formed HTTP/1.x (answered 400, closed), or
    /// cut off by the client closing mid-request (closed, unanswered).
    pub bad_requests: u64,
    /// Requests with a method other than GET or HEAD (answered 405, closed).
    pub bad_method: u64,
    /// Requests for another path than `/metrics` (answered 404).
    pub not_found: u64,
    /// Request heads longer than the appliance reads (answered 431, closed).
    pub too_large: u64,
    /// Connections reset because a handshake, a request or the taking of an
    /// answer took too long (a slow, silent or vanished client).
    pub timeouts: u64,
}

/// How the main loop spent its time (see `config::IdleMode`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleCounters {
    /// Iterations of the main loop.
    pub polls: u64,
    /// Times the loop halted, with nothing to do, waiting for an interrupt
    /// (the driver's halts waiting for transmit room are not counted here:
    /// `NetCounters::tx_ring_waits`).
    pub halts: u64,
    /// Interrupts taken (device, timer or spurious).
    pub wakeups: u64,
    /// Of those, the NIC's: it interrupts only a halted loop, so at most one
    /// per halt (more would mean it interrupts the loop while it polls).
    pub device_wakeups: u64,
    /// Epochs the idle policy ran its other mode (halting at once, or
    /// spinning) to compare it with the running one (`pias_net::idle`).
    pub policy_trials: u64,
    /// Times the idle policy changed mode: a trial moved more twice in a row, or
    /// traffic fell light or turned bulk while it halted at once.
    pub policy_switches: u64,
}

/// How full one fixed-size table (or memory pool) is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TableFill {
    /// Which table, e.g. "arena_bytes" or "sockets" (at most 16 bytes).
    pub name: String<16>,
    /// Units in use, in the table's own unit (entries, or bytes for memory).
    pub used: u64,
    /// Units reserved at start; `used` never exceeds it.
    pub capacity: u64,
}

/// The proxy data path's counters (`pias_net::dataplane`): what each
/// received packet became and what was sent, every drop under its reason.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataCounters {
    /// Proxy-to-proxy datagrams received on the proxy port.
    pub rx_proxy: u64,
    /// Target datagrams (join, leave, pong) received on a registration port.
    pub rx_registration: u64,
    /// Client packets to an anycast address taken in as IAP.
    pub rx_client: u64,
    /// Target replies on a NAT port, mapped back to their client.
    pub rx_target_reply: u64,
    /// Frames handed to the network stack (ARP, ICMP echo, management).
    pub rx_to_stack: u64,
    /// IPv4 for an address that is neither ours nor anycast.
    pub drop_not_ours: u64,
    /// BGP segments (TCP 179) or BFD packets (UDP 3784) from anyone but a
    /// configured neighbour, or from one with a TTL below 255 (GTSM, RFC 5082).
    pub drop_gtsm: u64,
    /// To an anycast address, neither UDP nor TCP (e.g. ICMP).
    pub drop_anycast_protocol: u64,
    /// To a NAT port with no flow, or from another source than its target.
    pub drop_no_flow: u64,
    /// A UDP client packet too large to carry: answered with ICMP
    /// "fragmentation needed".
    pub client_too_big: u64,
    /// TCP SYNs whose MSS was lowered to what the tunnel carries.
    pub mss_clamped: u64,
    /// A target reply too large to carry back.
    pub reply_too_big: u64,
    /// ICMP errors from a target about a NATed flow, sent on to its client.
    pub icmp_translated: u64,
    /// ICMP errors about no known flow (dropped).
    pub icmp_unmatched: u64,
    /// New flows refused: the NAT table (or its port range) was full.
    pub nat_full: u64,
    /// NAT flows ended (idle, or TCP closed).
    pub nat_expired: u64,
    /// Proxy datagrams sent.
    pub tx_proxy: u64,
    /// Datagrams sent to targets (acks, pings).
    pub tx_target: u64,
    /// Client packets delivered to targets.
    pub tx_deliver: u64,
    /// Replies sent to clients from the anycast address.
    pub tx_to_client: u64,
    /// ICMP errors sent.
    pub tx_icmp: u64,
    /// A transmit to a proxy id with no known address.
    pub tx_unknown_proxy: u64,
    /// A carried segment too short for its transport header.
    pub tx_bad_segment: u64,
    /// A frame that would exceed the MTU.
    pub tx_too_big: u64,
    /// ARP requests sent for next hops.
    pub arp_requests: u64,
    /// Frames sent after their next hop answered.
    pub arp_released: u64,
    /// Frames dropped: the next hop never answered, or the wait queue was full.
    pub arp_dropped: u64,
    /// ARP announcements of our address sent (RFC 5227: two at start, 2 s
    /// apart), so that neighbours holding an older MAC for it update it.
    pub arp_announcements: u64,
    /// Frames the device refused (ring full or driver error).
    pub tx_device_refused: u64,
}

/// What BGP is doing, the body of `Op::Routing`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingReport {
    /// Whether BGP is configured at all.
    pub enabled: bool,
    /// The latest health check: Down, Degraded or Up.
    pub health: RouteHealth,
    /// The debounced verdict (after rise/fall): the appliance can serve.
    pub serving: bool,
    /// A drain is on (announced with GRACEFUL_SHUTDOWN, then withdrawn).
    pub draining: bool,
    /// Times the verdict changed.
    pub flips: u64,
    /// BGP segments dropped for a TTL below 255 (GTSM, RFC 5082).
    pub gtsm_dropped: u64,
    /// One entry per neighbour.
    pub neighbours: Vec<NeighbourReport, { crate::config::MAX_BGP_NEIGHBOURS }>,
}

/// The appliance's health as BGP sees it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteHealth {
    /// It hears no other proxy (or must hear a remote one and does not).
    #[default]
    Down,
    /// It hears its cluster but no proxy outside it.
    Degraded,
    /// It can serve.
    Up,
}

/// What a neighbour has from us.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Advertised {
    /// Nothing (withdrawn, or the session is down).
    #[default]
    Nothing,
    /// The prefixes.
    Announced,
    /// The prefixes, with worse attributes (degraded).
    Degraded,
    /// The prefixes tagged GRACEFUL_SHUTDOWN (draining).
    GracefulShutdown,
}

/// One BGP neighbour.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeighbourReport {
    /// Its address.
    pub address: Ipv4,
    /// Its AS.
    pub remote_as: u32,
    /// RFC 4271 state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: BgpState,
    /// What it has from us.
    pub advertised: Advertised,
    /// The negotiated hold time (s).
    pub hold_time_s: u16,
    /// Times the session reached Established.
    pub established: u64,
    /// Times it left Established.
    pub dropped: u64,
    /// Connection attempts (or waits for one, when passive).
    pub connect_attempts: u64,
    /// UPDATEs received.
    pub updates_in: u64,
    /// UPDATEs sent.
    pub updates_out: u64,
    /// Prefixes the neighbour announced to us (counted, not installed).
    pub prefixes_in: u64,
    /// NOTIFICATIONs received.
    pub notifications_in: u64,
    /// NOTIFICATIONs sent.
    pub notifications_out: u64,
    /// Of those, for malformed messages from the neighbour.
    pub malformed: u64,
    /// Hold timer expiries.
    pub hold_expired: u64,
    /// Connections lost without a NOTIFICATION.
    pub connection_lost: u64,
    /// The last NOTIFICATION sent (code, subcode).
    pub last_error_sent: Option<(u8, u8)>,
    /// The last NOTIFICATION received (code, subcode).
    pub last_error_received: Option<(u8, u8)>,
    /// Its BFD session (`Off` when not configured).
    pub bfd: BfdStatus,
    /// Times BFD went from Up to Down (each took the BGP session down).
    pub bfd_downs: u64,
    /// BFD packets refused (malformed, authenticated, not ours).
    pub bfd_rx_bad: u64,
}

/// A BFD session's state.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BfdStatus {
    /// Not configured for this neighbour.
    #[default]
    Off,
    /// Held down.
    AdminDown,
    /// Down.
    Down,
    /// Coming up.
    Init,
    /// Up.
    Up,
}

/// RFC 4271's session states.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BgpState {
    /// Not connected.
    #[default]
    Idle,
    /// Connecting.
    Connect,
    /// Waiting for the neighbour to connect.
    Active,
    /// OPEN sent.
    OpenSent,
    /// OPENs exchanged.
    OpenConfirm,
    /// Up.
    Established,
}

/// Targets a `GroupReport` lists; `JapView::targets_total` counts them all.
pub const REPORT_TARGETS: usize = 16;
/// RAP entries a `GroupReport` lists; `RapView::entries_total` counts them all.
pub const REPORT_RAP_ENTRIES: usize = 24;

/// What one proxy knows of one group, by role: the body of `Op::Group`.
/// Lists are cut to fit one datagram; each view says how many there were.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The group asked about.
    pub group: crate::addr::Group,
    /// The deployment serves it (a policy applies); if false, client packets
    /// to it are dropped (`iap.unknown_group`).
    pub served: bool,
    /// Its live RAPs as this proxy sees the membership, nearest hash first.
    pub raps: Vec<u32, { crate::proxy::MAX_K }>,
    /// As IAP: the cached JAP list, if any.
    pub iap: Option<IapView>,
    /// As JAP: its targets, if it holds any for the group.
    pub jap: Option<JapView>,
    /// As RAP: the JAPs and counts it holds, if it is one of the group's RAPs
    /// with entries.
    pub rap: Option<RapView>,
}

/// The IAP's cache entry for a group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IapView {
    /// A cache entry exists (else only a lookup is in flight).
    pub cached: bool,
    /// JAPs as a RAP ranked them (id, count); empty in an entry: a negative
    /// entry (no member anywhere), packets dropped until it expires.
    pub japs: Vec<(u32, u32), { crate::wire::MAX_RANKED }>,
    /// Milliseconds until the entry expires.
    pub expires_in_ms: u64,
    /// A lookup for the group is in flight.
    pub lookup_pending: bool,
}

/// One target as its JAP holds it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetView {
    /// Where client packets go.
    pub endpoint: crate::addr::Endpoint,
    /// Its weight.
    pub weight: u16,
    /// Up, Suspect (missed a ping) or Down.
    pub health: TargetHealth,
    /// It left while flows were bound to it: they stay until they end.
    pub draining: bool,
    /// Flows mapped to it now.
    pub flows: u32,
}

/// A target's health as its JAP sees it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetHealth {
    /// Answering pings.
    Up,
    /// Missed a ping; still gets its flows.
    Suspect,
    /// Missed enough pings: no flows.
    Down,
}

/// The JAP's state for a group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JapView {
    /// Targets held (the first `REPORT_TARGETS` listed).
    pub targets: Vec<TargetView, REPORT_TARGETS>,
    /// Targets held in all, whatever their health.
    pub targets_total: u32,
    /// Members counted (live, not draining): what the RAPs are told.
    pub members: u32,
    /// The count last sent to the RAPs (None: nothing yet).
    pub reported: Option<u32>,
    /// The RAPs that count went to.
    pub reported_to: Vec<u32, { crate::proxy::MAX_K }>,
    /// Of those, the ones that acknowledged it.
    pub acked_by: Vec<u32, { crate::proxy::MAX_K }>,
}

/// The RAP's entries for a group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RapView {
    /// (JAP, approximate member count, ms since its last report), the first
    /// `REPORT_RAP_ENTRIES`.
    pub entries: Vec<(u32, u32, u64), REPORT_RAP_ENTRIES>,
    /// Entries held in all.
    pub entries_total: u32,
}
