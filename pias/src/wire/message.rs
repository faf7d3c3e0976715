//! The messages of the wire protocol: every kind with its fields, the
//! registration and its options, and the network coordinate they carry.

use super::{ProxyId, Tried, MAX_RANKED};
use crate::addr::{Endpoint, Group};
use crate::ids::Incarnation;
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// Why a join or leave was refused.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackReason {
    /// A table is full; existing members are unaffected.
    Capacity,
    /// The tag did not verify with the group's key, or the request was stale or replayed.
    Auth,
    /// No such group is configured.
    UnknownGroup,
    /// Malformed or contradictory request.
    BadRequest,
    /// This proxy does not serve that group or address.
    NotResponsible,
}

/// A target's registration: `join(AA:g, AT:r)` / `leave(AA:g, AT:r)`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// The group `AA:g` to join or leave.
    pub group: Group,
    /// The target's own endpoint `AT:r`; the datagram must come from its
    /// address.
    pub target: Endpoint,
    /// The target's clock, ms since the Unix epoch; must be within the freshness window.
    pub timestamp_ms: u64,
    /// Random per request; a repeated nonce is a replay.
    pub nonce: u64,
    /// What the target asks of its JAP (ignored in a leave).
    pub options: JoinOptions,
}

/// The options of a join (the paper's `join(AA:g, AT:r, options)`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// The target's capacity relative to its group's other members (1..=1000):
    /// it gets new flows in proportion, and its JAP's reported count is the
    /// sum of its live targets' weights. 0 is refused.
    pub weight: u16,
}

impl JoinOptions {
    /// The largest weight a join may carry.
    pub const MAX_WEIGHT: u16 = 1000;
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions { weight: 1 }
    }
}

/// One JAP in a RAP's answer, best first.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankedJap {
    /// The JAP's proxy id.
    pub jap: ProxyId,
    /// The approximate member count the RAP holds for it.
    pub count: u32,
}

/// Every message. The header's kind is the variant's index.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// Target -> JAP (group key).
    Join(Registration),
    /// Target -> JAP (group key).
    Leave(Registration),
    /// JAP -> target (group key): the join or leave with this nonce took effect.
    Ack {
        /// The registration's group.
        group: Group,
        /// The registration's target.
        target: Endpoint,
        /// The registration's nonce, echoed.
        nonce: u64,
    },
    /// JAP -> target (group key).
    Nack {
        /// The registration's group.
        group: Group,
        /// The registration's target.
        target: Endpoint,
        /// The registration's nonce, echoed.
        nonce: u64,
        /// Why it was refused.
        reason: NackReason,
    },
    /// JAP -> target health check (group key).
    Ping {
        /// The group the target is checked for.
        group: Group,
        /// The target checked.
        target: Endpoint,
        /// Fresh per ping; only a pong echoing the outstanding one counts.
        nonce: u64,
    },
    /// Target -> JAP answer (group key).
    Pong {
        /// The ping's group.
        group: Group,
        /// The answering target (itself).
        target: Endpoint,
        /// The ping's nonce, echoed.
        nonce: u64,
    },
    /// JAP -> RAP: approximately `count` live targets of `group` here.
    CountReport {
        /// The group reported on.
        group: Group,
        /// The sum of the weights of the group's live targets at this JAP;
        /// 0 withdraws the JAP from the RAP's list.
        count: u32,
        /// The JAP's network coordinate, for the RAP's proximity ranking.
        coord: Coord,
    },
    /// RAP -> JAP: report again when the count leaves +-`band_pct`% of the last value.
    ReportAck {
        /// The group of the acknowledged report.
        group: Group,
        /// The count acknowledged; the JAP ignores an ack for any but its
        /// latest report.
        count: u32,
        /// Half-width of the band in percent of the last count (0: report
        /// every change); the RAP widens it as its table fills.
        band_pct: u8,
    },
    /// IAP -> RAP: unknown group; may carry the client's packet, which the
    /// RAP forwards to a JAP not in `tried` (JAPs that already bounced it). A
    /// retry after a timeout carries none: the first may have been delivered.
    Lookup {
        /// The group the client addressed.
        group: Group,
        /// The client's endpoint (the packet's source): for the client-hash
        /// policy, and so that a target is never sent its own packet.
        client: Endpoint,
        /// The IAP's network coordinate, for proximity ranking.
        iap_coord: Coord,
        /// JAPs that have already bounced the packet.
        tried: Tried,
        /// The client's packet (at most `MAX_CARRIED` bytes), or none on a retry.
        #[serde(borrow)]
        packet: Option<&'a [u8]>,
    },
    /// RAP -> IAP: JAPs for the group, best first, to cache for `ttl_s`.
    JapList {
        /// The group looked up.
        group: Group,
        /// Up to `MAX_RANKED` JAPs the RAP believes live, best first (nearest
        /// the IAP under the proximity policy, else most members); empty if it
        /// knows none.
        japs: Vec<RankedJap, MAX_RANKED>,
        /// How long the IAP may cache the list, in seconds (the IAP caps it
        /// with its own `cache_ttl`).
        ttl_s: u32,
    },
    /// IAP or RAP -> JAP: a client packet to deliver; `iap` is the client's
    /// ingress proxy; `tried` the JAPs that bounced it before.
    Forward {
        /// The group the client addressed.
        group: Group,
        /// The client's endpoint (the packet's source; replies go back to it).
        client: Endpoint,
        /// The client's ingress proxy, which an `Invalidate` goes back to.
        iap: ProxyId,
        /// JAPs that bounced the packet before this one.
        tried: Tried,
        /// The client's packet, at most `MAX_CARRIED` bytes.
        packet: &'a [u8],
    },
    /// JAP -> IAP: this JAP has no target for the group's clients (`gone`:
    /// no live target at all, drop it from the cache) or for one client (its
    /// one target is the client itself, P2P). `bounced` returns the packet
    /// that found none, so the IAP can offer it to a JAP not yet tried.
    Invalidate {
        /// The group concerned.
        group: Group,
        /// True: no live target at all for the group here.
        gone: bool,
        /// The packet that found no target, if this answers one.
        #[serde(borrow)]
        bounced: Option<Bounced<'a>>,
    },
    /// Proxy -> proxy liveness, with the sender's network coordinate.
    Heartbeat {
        /// The sender's cluster.
        cluster: u32,
        /// The sender's current network coordinate.
        coord: Coord,
    },
    /// Flooded up/down news about `subject` in its life `incarnation`
    /// (SWIM's order: a later incarnation wins; at the same one, down wins).
    News {
        /// The proxy the news is about.
        subject: ProxyId,
        /// The life of `subject` the news is about.
        incarnation: Incarnation,
        /// True: up (alive, or a refutation); false: down.
        up: bool,
    },
    /// RTT measurement: the reply echoes the probe's nonce and carries the
    /// replier's coordinate.
    RttProbe {
        /// Random; the prober keeps it with the send time to match the reply.
        nonce: u64,
    },
    /// Proxy -> proxy: the answer to an `RttProbe`.
    RttReply {
        /// The probe's nonce, echoed.
        nonce: u64,
        /// The replier's current network coordinate.
        coord: Coord,
    },
    /// JAP -> target (group key): this proxy does not hold the target (its
    /// JAP died and anycast brought its pong here): register again.
    Rejoin {
        /// The pong's group.
        group: Group,
        /// The pong's target, the only address this is sent to.
        target: Endpoint,
        /// The pong's nonce, echoed.
        nonce: u64,
    },
}

/// A client packet that a JAP sends back to its IAP.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Bounced<'a> {
    /// The client it came from.
    pub client: Endpoint,
    /// The JAPs it has been offered to, the bouncing one included.
    pub tried: Tried,
    /// The packet.
    pub packet: &'a [u8],
}

/// A network coordinate (Vivaldi: 2-D position plus height, in milliseconds,
/// and the node's own relative error estimate).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Coord {
    /// Position on the first axis, ms.
    pub x: f32,
    /// Position on the second axis, ms.
    pub y: f32,
    /// Height, ms: the access-link delay added to every distance (at least
    /// 0.1 in the coordinates `proximity` produces).
    pub h: f32,
    /// Relative error of the estimate: 1.0 for a fresh node, kept within
    /// 0.01..=10 by updates.
    pub err: f32,
}

/// Number of message kinds; kinds are 0..KINDS.
pub const KINDS: usize = 17;

/// Names of the kinds, indexed by kind (for counters and reports).
pub const KIND_NAMES: [&str; KINDS] = [
    "join",
    "leave",
    "ack",
    "nack",
    "ping",
    "pong",
    "count_report",
    "report_ack",
    "lookup",
    "jap_list",
    "forward",
    "invalidate",
    "heartbeat",
    "news",
    "rtt_probe",
    "rtt_reply",
    "rejoin",
];

impl Message<'_> {
    /// The header kind of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Join(_) => 0,
            Message::Leave(_) => 1,
            Message::Ack { .. } => 2,
            Message::Nack { .. } => 3,
            Message::Ping { .. } => 4,
            Message::Pong { .. } => 5,
            Message::CountReport { .. } => 6,
            Message::ReportAck { .. } => 7,
            Message::Lookup { .. } => 8,
            Message::JapList { .. } => 9,
            Message::Forward { .. } => 10,
            Message::Invalidate { .. } => 11,
            Message::Heartbeat { .. } => 12,
            Message::News { .. } => 13,
            Message::RttProbe { .. } => 14,
            Message::RttReply { .. } => 15,
            Message::Rejoin { .. } => 16,
        }
    }

    /// Whether only a target sends this (join, leave, pong); the rest are a proxy's.
    pub fn from_target(&self) -> bool {
        matches!(
            self,
            Message::Join(_) | Message::Leave(_) | Message::Pong { .. }
        )
    }

    /// Messages between a target and its JAP are signed with the group's key;
    /// the rest with the deployment key. Returns the group for the former.
    pub fn target_group(&self) -> Option<Group> {
        match self {
            Message::Join(r) | Message::Leave(r) => Some(r.group),
            Message::Ack { group, .. }
            | Message::Nack { group, .. }
            | Message::Ping { group, .. }
            | Message::Pong { group, .. }
            | Message::Rejoin { group, .. } => Some(*group),
            _ => None,
        }
    }
}

/// The largest magnitude of a coordinate's fields on the wire (ms): far
/// beyond any RTT, small enough that no distance or score overflows.
pub const MAX_COORD: f32 = 1.0e6;

impl Coord {
    /// Whether every field is a finite number within `MAX_COORD`.
    pub fn is_valid(&self) -> bool {
        [self.x, self.y, self.h, self.err]
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_COORD)
    }
}
