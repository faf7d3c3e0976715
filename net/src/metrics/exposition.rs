//! What the metrics port serves: every counter and table fill of the status,
//! the proxy's roles and BGP, as Prometheus text with stable names.

use super::text::{Kind, Millis, Text};
use crate::mgmt::Reports;
use core::fmt;
use pias::status::{
    Advertised, BfdStatus, BgpState, LoopMode, MgmtCounters, NeighbourReport, ProxyReport,
    RouteHealth, RoutingReport, Status,
};

/// The content type of format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One family of counters per field of a counter struct, named
/// `pias_<area>_<field>_total`.
macro_rules! counters {
    ($t:expr, $area:literal, $src:expr, { $($field:ident: $help:literal,)* }) => {
        $(
            $t.single(
                concat!("pias_", $area, "_", stringify!($field), "_total"),
                Kind::Counter,
                $help,
                $src.$field,
            )?;
        )*
    };
}

/// One family per field of `NeighbourReport`, a sample per neighbour.
macro_rules! per_neighbour {
    ($t:expr, $neighbours:expr, { $($field:ident: $help:literal,)* }) => {
        $(
            let name = concat!("pias_bgp_", stringify!($field), "_total");
            $t.family(name, Kind::Counter, $help)?;
            for n in $neighbours {
                $t.sample(name, &[("neighbour", &n.address)], n.$field)?;
            }
        )*
    };
}

/// Writes the whole exposition for the appliance into `out`; `None` if it
/// does not fit. `mgmt` are the management counters of the status.
pub fn render(reports: &impl Reports, mgmt: &MgmtCounters, out: &mut [u8]) -> Option<usize> {
    let status = reports.status(mgmt);
    let proxy = reports.proxy();
    let routing = reports.routing();
    let mut t = Text::new(out);
    write_all(&mut t, &status, &proxy, &routing).ok()?;
    t.finish()
}

/// Every family, in a fixed order.
pub fn write_all(t: &mut Text<'_>, s: &Status, p: &ProxyReport, r: &RoutingReport) -> fmt::Result {
    identity(t, s)?;
    tables(t, s)?;
    status_counters(t, s)?;
    proxy_counters(t, p)?;
    routing(t, r)
}

/// Who this is, since when, and its interfaces.
fn identity(t: &mut Text<'_>, s: &Status) -> fmt::Result {
    t.family(
        "pias_build_info",
        Kind::Gauge,
        "Always 1: the appliance's version, name and node id as labels.",
    )?;
    t.sample(
        "pias_build_info",
        &[
            ("version", &s.version),
            ("name", &s.name),
            ("node_id", &s.node_id),
        ],
        1,
    )?;
    t.single(
        "pias_uptime_seconds",
        Kind::Gauge,
        "Seconds since the kernel was entered.",
        Millis(s.uptime_ms),
    )?;
    t.single(
        "pias_clock_tsc_hertz",
        Kind::Gauge,
        "The TSC rate that uptime and timers use.",
        s.clock.tsc_khz.saturating_mul(1000),
    )?;
    t.family(
        "pias_interface_mtu_bytes",
        Kind::Gauge,
        "The configured IP MTU of each interface, with its address and MAC as labels.",
    )?;
    for i in &s.interfaces {
        let mac = Mac(i.mac);
        t.sample(
            "pias_interface_mtu_bytes",
            &[
                ("interface", &i.name),
                ("address", &i.address),
                ("mac", &mac),
            ],
            i.mtu,
        )?;
    }
    t.single(
        "pias_allocations_total",
        Kind::Counter,
        "Heap allocations since boot: flat while traffic flows (the packet path does not allocate).",
        s.allocations,
    )?;
    t.single(
        "pias_console_dropped_bytes_total",
        Kind::Counter,
        "Console bytes dropped since boot: log lines that found the console's queue full.",
        s.console_dropped,
    )
}

/// Fill of every fixed-size table and of the arena.
fn tables(t: &mut Text<'_>, s: &Status) -> fmt::Result {
    t.family(
        "pias_table_used",
        Kind::Gauge,
        "Units in use in a fixed-size table (entries; bytes for arena_bytes).",
    )?;
    for f in &s.tables {
        t.sample("pias_table_used", &[("table", &f.name)], f.used)?;
    }
    t.family(
        "pias_table_capacity",
        Kind::Gauge,
        "Units a fixed-size table reserved at boot; used never exceeds it.",
    )?;
    for f in &s.tables {
        t.sample("pias_table_capacity", &[("table", &f.name)], f.capacity)?;
    }
    Ok(())
}

/// The packet plane, the management and metrics ports and the main loop.
fn status_counters(t: &mut Text<'_>, s: &Status) -> fmt::Result {
    counters!(t, "net", s.net, {
        rx_frames: "Frames the driver delivered, before classification (dropped ones too).",
        rx_bytes: "Bytes of the frames received, Ethernet header included.",
        tx_frames: "Frames the driver accepted for transmission.",
        tx_bytes: "Bytes of the frames transmitted, Ethernet header included.",
        rx_runt: "Frames dropped: shorter than an Ethernet header.",
        rx_oversized: "Frames dropped: longer than the interface MTU plus the Ethernet header.",
        rx_unsupported: "Frames dropped: EtherType other than ARP and IPv4 (VLAN tags included), or an IPv4 fragment (this build does not reassemble).",
        rx_bad_arp: "Frames dropped: malformed ARP packet.",
        rx_bad_ipv4: "Frames dropped: malformed IPv4 header (version, IHL, total length).",
        rx_bad_ip_checksum: "Frames dropped: IPv4 header checksum wrong.",
        rx_bad_l4: "Frames dropped: truncated or inconsistent UDP, TCP or ICMP header.",
        rx_bad_l4_checksum: "Frames dropped: UDP, TCP or ICMP checksum wrong.",
        rx_driver_errors: "The driver reported a receive error.",
        tx_ring_full: "Frames not queued, the transmit ring (or, for a large frame, the driver's large buffers) full: the data path's after a bounded wait for room; the stack's at once, sent again later.",
        tx_ring_waits: "Frames that found the transmit ring (or, for a large frame, the large buffers) full and waited (halted) for room.",
        tx_driver_errors: "The driver refused a frame, or the frame exceeded 1514 bytes.",
        rx_large: "Large TCP frames received (segments the host coalesced past the MTU).",
        rx_large_cut: "Segments cut in software from large frames that could not go on whole.",
        rx_coalesced: "Segments merged in software into large frames (one flow's, in order, back to back).",
        rx_bad_offload: "Frames dropped: offload metadata that does not fit the frame.",
        tx_large: "Large TCP frames handed to the device whole, for it to segment.",
        rx_overruns: "Receive overruns: a whole ring's worth of frames taken back to back, the ring never found empty (frames may have been lost).",
    });
    // Not `_not_for_us_`: "us" reads as microseconds to Prometheus's lint.
    t.single(
        "pias_net_rx_not_for_me_total",
        Kind::Counter,
        "Frames dropped: not addressed to our MAC, broadcast or multicast.",
        s.net.rx_not_for_us,
    )?;
    counters!(t, "mgmt", s.mgmt, {
        requests: "Datagrams received on the management port, whatever became of them.",
        refused_source: "Requests ignored: from a source outside management.allow.",
        refused_shutdown: "Shutdown asked while management.allow_shutdown is false.",
        refused_no_bgp: "Drain or undrain asked of an appliance without BGP.",
        bad_requests: "Requests ignored: not a management datagram (bad magic, too short or too long), or authentic but undecodable.",
        bad_mac: "Requests ignored: the MAC does not verify under the management key (forged, another key, or an unauthenticated old-version client): no answer.",
        bad_version: "Authentic but of another protocol version: refused (answered with a signed refusal).",
        stale: "Requests ignored: authentic but its time is more than 10 s from the appliance's clock: no answer.",
        replayed: "Requests ignored: authentic and fresh, but its nonce was seen already: no answer.",
        replay_full: "Requests ignored: authentic and fresh, but the replay cache is full (more requests than it is sized for within the freshness window): no answer.",
        reply_failures: "A reply could not be encoded or sent (socket buffer full).",
    });
    counters!(t, "http", s.http, {
        connections: "Connections accepted from an allowed source.",
        refused_source: "Connection attempts (SYNs) dropped unanswered: the source is outside management.allow (every segment from it is dropped; each SYN counts).",
        refused_busy: "Connection attempts reset because every connection slot was busy.",
        served: "Requests answered with the metrics (200).",
        bad_requests: "Requests that were not well-formed HTTP/1.x (answered 400, closed), or cut off by the client closing mid-request (closed, unanswered).",
        bad_method: "Requests with a method other than GET or HEAD (answered 405, closed).",
        not_found: "Requests for another path than /metrics (answered 404).",
        too_large: "Request heads longer than the appliance reads (answered 431, closed).",
        timeouts: "Connections reset because a handshake, a request or the taking of an answer took too long (a slow, silent or vanished client).",
    });
    counters!(t, "loop", s.idle, {
        polls: "Iterations of the main loop.",
        halts: "Times the loop halted, with nothing to do, waiting for an interrupt.",
        wakeups: "Interrupts taken (device, timer or spurious).",
        device_wakeups: "Interrupts from the NIC (at most one per halt: none while the loop polls).",
        policy_trials: "Epochs (40 ms) the idle policy ran its other mode, halting at once or polling on, to compare it with the running one.",
        policy_switches: "Times the idle policy changed mode: a trial moved at least 15 % more bytes twice in a row, or traffic fell light or turned bulk while it halted at once.",
    });
    t.family(
        "pias_loop_mode",
        Kind::Gauge,
        "1 for what the main loop does now when a pass finds no work: poll (idle = \"poll\"), spin_then_halt (polls on after the last frame, then halts) or halt_at_once (the idle policy measured that this moves more).",
    )?;
    for mode in LoopMode::ALL {
        t.sample(
            "pias_loop_mode",
            &[("mode", &mode.name())],
            u8::from(mode == s.loop_mode),
        )?;
    }
    Ok(())
}

/// The data path and the proxy core, by role.
fn proxy_counters(t: &mut Text<'_>, p: &ProxyReport) -> fmt::Result {
    counters!(t, "data", p.data, {
        rx_proxy: "Proxy-to-proxy datagrams received on the proxy port.",
        rx_registration: "Target datagrams (join, leave, pong) received on a registration port.",
        rx_client: "Client packets to an anycast address taken in as IAP.",
        rx_target_reply: "Target replies on a NAT port, mapped back to their client.",
        rx_to_stack: "Frames handed to the network stack (ARP, ICMP echo, management).",
        drop_not_ours: "Packets dropped: IPv4 for an address that is neither ours nor anycast.",
        drop_gtsm: "Packets dropped: BGP segments (TCP 179) or BFD packets (UDP 3784) from anyone but a configured neighbour, or from one with a TTL below 255 (GTSM, RFC 5082).",
        drop_anycast_protocol: "Packets dropped: to an anycast address, neither UDP nor TCP (e.g. ICMP).",
        drop_no_flow: "Packets dropped: to a NAT port with no flow, or from another source than its target.",
        client_too_big: "A UDP client packet too large to carry: answered with ICMP \"fragmentation needed\".",
        mss_clamped: "TCP SYNs whose MSS was lowered to what the tunnel carries.",
        reply_too_big: "A target reply too large to carry back.",
        icmp_translated: "ICMP errors from a target about a NATed flow, sent on to its client.",
        icmp_unmatched: "ICMP errors about no known flow (dropped).",
        nat_full: "New flows refused: the NAT table (or its port range) was full.",
        nat_expired: "NAT flows ended (idle, or TCP closed).",
        tx_proxy: "Proxy datagrams sent.",
        tx_target: "Datagrams sent to targets (acks, pings).",
        tx_deliver: "Client packets delivered to targets.",
        tx_to_client: "Replies sent to clients from the anycast address.",
        tx_icmp: "ICMP errors sent.",
        tx_unknown_proxy: "A transmit to a proxy id with no known address.",
        tx_bad_segment: "A carried segment too short for its transport header.",
        tx_too_big: "A frame that would exceed the MTU.",
        arp_requests: "ARP requests sent for next hops.",
        arp_released: "Frames sent after their next hop answered.",
        arp_dropped: "Frames dropped: the next hop never answered, or the wait queue was full.",
        arp_announcements: "ARP announcements of the appliance's address sent (two at start, 2 s apart).",
        tx_device_refused: "Frames the device refused (ring full or driver error).",
    });
    counters!(t, "wire", p.proxy.wire, {
        malformed: "Not a message (framing, body, field domain).",
        bad_tag: "A tag that does not verify.",
        replayed: "A proxy message seen before.",
        stale: "A proxy message below its sender's replay window.",
        stale_incarnation: "A proxy message from an earlier life of its sender.",
        unknown_sender: "A sender that is not in the roster (or is this proxy).",
        misdirected: "A proxy message addressed to another proxy.",
        unknown_group: "A target message for a group this deployment does not serve.",
        oversized: "A packet or message too large to carry.",
        tx_queue_full: "A datagram dropped because the send queue was full.",
    });
    counters!(t, "membership", p.proxy.membership, {
        peers_down: "Peers this proxy came to believe down.",
        peers_up: "Peers this proxy came to believe up again.",
        restarts_seen: "Peers seen in a new life (restarted).",
        news_sent: "News messages sent (floods and re-floods).",
        news_duplicates: "News that changed nothing here (duplicates and older news).",
        refutations: "Times this proxy denied news of its own death.",
        damped: "Declarations of a peer's death held back by flap damping.",
        floods_refused: "Floods refused because too many were in progress.",
        peers_refused: "Peers refused because the peer table was full of peers it must keep.",
        peers_forgotten: "Peers whose state was forgotten (silent, up) to make room for another.",
    });
    counters!(t, "jap", p.proxy.jap, {
        joins: "Joins that added a target.",
        leaves: "Leaves that removed a target.",
        nack_capacity: "Registrations that were fresh and authentic but refused for lack of room.",
        nack_not_responsible: "Registrations refused as NotResponsible (a leave of an unknown target).",
        stale_registrations: "Registrations older or newer than the freshness window (no reply).",
        replayed_registrations: "Registrations whose nonce was seen before (no reply).",
        wrong_source: "Registrations not sent from the target's own address (no reply).",
        unexpected_pongs: "Pongs whose nonce was not the outstanding ping's.",
        rejoins_sent: "Rejoin requests sent to targets this proxy does not hold.",
        delivered: "Client packets delivered to a target.",
        targets_down: "Targets that went down.",
        misses_excused: "Unanswered pings not counted against their target: the host fell a receive ring behind meanwhile.",
        invalidations_sent: "Invalidations sent to IAPs.",
        reports_sent: "Count reports sent (one per RAP).",
        report_retries: "Count reports re-sent because a RAP had not acknowledged.",
        report_refreshes: "Count reports that were periodic refreshes.",
        flows_refused: "Flows not recorded because the flow table was full (the packet still goes).",
        groups_refused: "Groups refused because the group table was full.",
    });
    counters!(t, "rap", p.proxy.rap, {
        reports: "Count reports received from JAPs.",
        expired: "JAP entries forgotten because they were not refreshed.",
        lookups: "Lookups answered for IAPs.",
        forwards: "Packets forwarded to a JAP on a lookup.",
        no_member_drops: "Lookups whose packet found no JAP it had not been offered to.",
        refused: "Reports refused because the RAP tables were full.",
    });
    counters!(t, "iap", p.proxy.iap, {
        unknown_group: "Client packets for a group this deployment does not serve (no lookup).",
        lookups_sent: "Lookups sent to RAPs.",
        lookup_retries: "Lookups re-sent to another RAP (timeout or empty answer).",
        lookups_failed: "Lookups that every RAP left unanswered or empty.",
        negative_hits: "Client packets dropped while the group is known to have no member.",
        forwards: "Packets forwarded to a cached JAP.",
        list_refreshes: "Lookups without a packet that refresh a cached list in use.",
        invalidations: "Invalidations received from JAPs.",
        bounced_drops: "Packets dropped after every JAP they could go to bounced them.",
        refused: "Lookups or cache entries refused because a table was full.",
    });
    Ok(())
}

/// Writes one 0/1 sample per state of an enumeration, 1 for the current one.
fn states<S: Copy + PartialEq>(
    t: &mut Text<'_>,
    name: &str,
    neighbour: &dyn fmt::Display,
    all: &[(S, &str)],
    now: S,
) -> fmt::Result {
    for (state, label) in all {
        t.sample(
            name,
            &[("neighbour", neighbour), ("state", label)],
            u8::from(*state == now),
        )?;
    }
    Ok(())
}

const HEALTH: [(RouteHealth, &str); 3] = [
    (RouteHealth::Down, "down"),
    (RouteHealth::Degraded, "degraded"),
    (RouteHealth::Up, "up"),
];
const BGP_STATES: [(BgpState, &str); 6] = [
    (BgpState::Idle, "idle"),
    (BgpState::Connect, "connect"),
    (BgpState::Active, "active"),
    (BgpState::OpenSent, "open_sent"),
    (BgpState::OpenConfirm, "open_confirm"),
    (BgpState::Established, "established"),
];
const ADVERTISED: [(Advertised, &str); 4] = [
    (Advertised::Nothing, "nothing"),
    (Advertised::Announced, "announced"),
    (Advertised::Degraded, "degraded"),
    (Advertised::GracefulShutdown, "graceful_shutdown"),
];
const BFD_STATES: [(BfdStatus, &str); 5] = [
    (BfdStatus::Off, "off"),
    (BfdStatus::AdminDown, "admin_down"),
    (BfdStatus::Down, "down"),
    (BfdStatus::Init, "init"),
    (BfdStatus::Up, "up"),
];

/// BGP and BFD: the verdict, then each neighbour's session.
fn routing(t: &mut Text<'_>, r: &RoutingReport) -> fmt::Result {
    t.single(
        "pias_bgp_enabled",
        Kind::Gauge,
        "1 if BGP is configured.",
        u8::from(r.enabled),
    )?;
    t.single(
        "pias_bgp_serving",
        Kind::Gauge,
        "1 if the debounced health verdict lets the appliance announce its prefixes.",
        u8::from(r.serving),
    )?;
    t.single(
        "pias_bgp_draining",
        Kind::Gauge,
        "1 while a drain is on (GRACEFUL_SHUTDOWN, then withdrawn).",
        u8::from(r.draining),
    )?;
    t.family(
        "pias_bgp_health",
        Kind::Gauge,
        "The latest health check: 1 for the current state (down: hears no other proxy; degraded: only its cluster; up).",
    )?;
    for (state, label) in HEALTH {
        t.sample(
            "pias_bgp_health",
            &[("state", &label)],
            u8::from(state == r.health),
        )?;
    }
    t.single(
        "pias_bgp_health_flips_total",
        Kind::Counter,
        "Times the debounced verdict changed.",
        r.flips,
    )?;
    // GTSM drops (BGP and BFD) are the data path's `drop_gtsm`, exposed as
    // pias_data_drop_gtsm_total: not again here.
    if r.neighbours.is_empty() {
        return Ok(());
    }
    neighbours(t, &r.neighbours)
}

/// Each neighbour's state, what it has from us, and its counters.
fn neighbours(t: &mut Text<'_>, ns: &[NeighbourReport]) -> fmt::Result {
    t.family(
        "pias_bgp_session_state",
        Kind::Gauge,
        "1 for the session's current RFC 4271 state.",
    )?;
    for n in ns {
        states(
            t,
            "pias_bgp_session_state",
            &n.address,
            &BGP_STATES,
            n.state,
        )?;
    }
    t.family(
        "pias_bgp_advertised",
        Kind::Gauge,
        "1 for what the neighbour has from us now.",
    )?;
    for n in ns {
        states(
            t,
            "pias_bgp_advertised",
            &n.address,
            &ADVERTISED,
            n.advertised,
        )?;
    }
    t.family(
        "pias_bgp_hold_time_seconds",
        Kind::Gauge,
        "The negotiated hold time, with the neighbour's AS as a label.",
    )?;
    for n in ns {
        t.sample(
            "pias_bgp_hold_time_seconds",
            &[("neighbour", &n.address), ("remote_as", &n.remote_as)],
            n.hold_time_s,
        )?;
    }
    t.family(
        "pias_bfd_session_state",
        Kind::Gauge,
        "1 for the BFD session's current state (off: not configured).",
    )?;
    for n in ns {
        states(t, "pias_bfd_session_state", &n.address, &BFD_STATES, n.bfd)?;
    }
    per_neighbour!(t, ns, {
        established: "Times the session reached Established.",
        dropped: "Times the session left Established.",
        connect_attempts: "Connection attempts (or waits for one, when passive).",
        updates_in: "UPDATEs received.",
        updates_out: "UPDATEs sent.",
        prefixes_in: "Prefixes the neighbour announced to us (counted, not installed).",
        notifications_in: "NOTIFICATIONs received.",
        notifications_out: "NOTIFICATIONs sent.",
        malformed: "NOTIFICATIONs sent for malformed messages from the neighbour.",
        hold_expired: "Hold timer expiries.",
        connection_lost: "Connections lost without a NOTIFICATION.",
        bfd_downs: "Times BFD went from Up to Down (each took the BGP session down).",
        bfd_rx_bad: "BFD packets refused (malformed, authenticated, not ours).",
    });
    Ok(())
}

/// A MAC address as six colon-separated hex pairs.
struct Mac([u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
