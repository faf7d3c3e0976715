//! The PIAS wire protocol (docs/protocol.md): a 28-byte header (magic, version,
//! kind, sender, receiver, the sender's boot, sequence), a postcard body, and a 16-byte
//! HMAC-SHA256 tag over both. `parse` is total: any bytes give a `Parsed`
//! message or a `WireError`; the caller then checks the tag with the right key
//! (`Parsed::verify`) and the sequence against its replay state.

use crate::addr::{Endpoint, Group};
use core::fmt;
use heapless::Vec;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use crate::ids::{Incarnation, ProxyId};

/// "PX": the first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"PX";
/// The protocol version; a receiver refuses any other.
pub const VERSION: u8 = 2;
/// Bytes before the body.
pub const HEADER_LEN: usize = 28;
/// Bytes of the truncated HMAC-SHA256 tag at the end.
pub const TAG_LEN: usize = 16;
/// The largest message: fits one UDP datagram on a 1500-byte MTU with room for tunnelling.
pub const MAX_MESSAGE: usize = 1400;
/// The largest client packet carried inside `Lookup` or `Forward`.
pub const MAX_CARRIED: usize = 1300;
/// JAPs in one ranked list.
pub const MAX_RANKED: usize = 8;
/// JAPs a carried packet has already been offered to (it is offered to each at most once).
pub const MAX_TRIED: usize = MAX_RANKED;

const OFF_VERSION: usize = 2;
const OFF_KIND: usize = 3;
const OFF_SENDER: usize = 4;
const OFF_TO: usize = 8;
const OFF_BOOT: usize = 12;
const OFF_SEQ: usize = 20;

/// Who signed a message, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A target (group member) or its agent: id 0 on the wire, no boot.
    Target,
    /// A proxy, in the life that began at `boot` (its clock, µs, at start).
    Proxy {
        /// The proxy's id (never 0).
        id: ProxyId,
        /// When this life of the proxy began: a restart gives a larger value.
        boot: u64,
    },
}

/// The JAPs a carried packet has been offered to, oldest first.
pub type Tried = Vec<ProxyId, MAX_TRIED>;

/// A 256-bit HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

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

/// Why bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a header and a tag (`HEADER_LEN + TAG_LEN`).
    TooShort,
    /// More than `MAX_MESSAGE` bytes.
    TooLong,
    /// The first two bytes are not `MAGIC`.
    BadMagic,
    /// The version byte found, which is not `VERSION`.
    UnsupportedVersion(u8),
    /// The body is not a message, its kind differs from the header's, or a
    /// field is out of its domain (a coordinate that is not finite, a target
    /// message with a proxy sender).
    Malformed,
    /// A carried packet or list exceeds its bound.
    Oversized,
    /// The tag does not verify.
    BadTag,
    /// Output buffer too small.
    NoSpace,
}

/// A message whose framing is valid; its tag is not yet checked.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The header's kind.
    pub kind: u8,
    /// Who signed it (not yet verified).
    pub sender: Sender,
    /// The proxy it is addressed to; 0 for a message to or from a target
    /// (sent to an anycast address). Signed, so it cannot be replayed to
    /// another proxy.
    pub to: ProxyId,
    /// The sender's sequence number within its life.
    pub seq: u64,
    /// The decoded body.
    pub message: Message<'a>,
    signed: &'a [u8],
    tag: &'a [u8],
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC accepts keys of any length, so this does not fail in practice; if it
/// did, the message is treated as unverifiable rather than panicking.
fn mac(key: &Key) -> Result<HmacSha256, WireError> {
    HmacSha256::new_from_slice(&key.0).map_err(|_| WireError::BadTag)
}

impl<'a> Parsed<'a> {
    /// Checks the tag with `key`.
    pub fn verify(&self, key: &Key) -> Result<(), WireError> {
        let mut m = mac(key)?;
        m.update(self.signed);
        m.verify_truncated_left(self.tag)
            .map_err(|_| WireError::BadTag)
    }
}

/// The header's kind byte of a datagram that starts like a PIAS message
/// (magic and version), without decoding or verifying it: for counters.
pub fn peek_kind(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= HEADER_LEN && bytes[..2] == MAGIC && bytes[OFF_VERSION] == VERSION)
        .then(|| bytes[OFF_KIND])
}

/// Splits and decodes a datagram; total over any input.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLong);
    }
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(WireError::TooShort);
    }
    if bytes[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes[OFF_VERSION] != VERSION {
        return Err(WireError::UnsupportedVersion(bytes[OFF_VERSION]));
    }
    let kind = bytes[OFF_KIND];
    let mut id = [0u8; 4];
    id.copy_from_slice(&bytes[OFF_SENDER..OFF_TO]);
    let id = u32::from_le_bytes(id);
    let mut to = [0u8; 4];
    to.copy_from_slice(&bytes[OFF_TO..OFF_BOOT]);
    let to = u32::from_le_bytes(to);
    let mut boot = [0u8; 8];
    boot.copy_from_slice(&bytes[OFF_BOOT..OFF_SEQ]);
    let boot = u64::from_le_bytes(boot);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[OFF_SEQ..HEADER_LEN]);
    let seq = u64::from_le_bytes(seq);
    let sender = match (id, boot) {
        (0, 0) => Sender::Target,
        (0, _) => return Err(WireError::Malformed),
        (id, boot) => Sender::Proxy { id, boot },
    };
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let (message, rest) = postcard::take_from_bytes::<Message>(&signed[HEADER_LEN..])
        .map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() || message.kind() != kind {
        return Err(WireError::Malformed);
    }
    check_bounds(&message)?;
    if message.from_target() != (sender == Sender::Target)
        || message.target_group().is_some() != (to == 0)
    {
        return Err(WireError::Malformed);
    }
    Ok(Parsed {
        kind,
        sender,
        to,
        seq,
        message,
        signed,
        tag,
    })
}

/// Carried packets within `MAX_CARRIED`; coordinates finite (a NaN would
/// rank as any distance); weights within their range.
fn check_bounds(m: &Message) -> Result<(), WireError> {
    let carried = match m {
        Message::Lookup { packet, .. } => packet.map_or(0, <[u8]>::len),
        Message::Forward { packet, .. } => packet.len(),
        Message::Invalidate { bounced, .. } => bounced.as_ref().map_or(0, |b| b.packet.len()),
        _ => 0,
    };
    if carried > MAX_CARRIED {
        return Err(WireError::Oversized);
    }
    let coord = match m {
        Message::CountReport { coord, .. }
        | Message::Heartbeat { coord, .. }
        | Message::RttReply { coord, .. } => Some(coord),
        Message::Lookup { iap_coord, .. } => Some(iap_coord),
        _ => None,
    };
    if coord.is_some_and(|c| !c.is_valid()) {
        return Err(WireError::Malformed);
    }
    if let Message::Join(r) = m {
        if r.options.weight == 0 || r.options.weight > JoinOptions::MAX_WEIGHT {
            return Err(WireError::Malformed);
        }
    }
    Ok(())
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

/// Encodes and signs a message from `sender` to proxy `to` (0: to or from a
/// target) into `out`; returns its length.
pub fn encode(
    sender: Sender,
    to: ProxyId,
    seq: u64,
    message: &Message,
    key: &Key,
    out: &mut [u8],
) -> Result<usize, WireError> {
    check_bounds(message)?;
    let limit = out.len().min(MAX_MESSAGE);
    if limit < HEADER_LEN + TAG_LEN {
        return Err(WireError::NoSpace);
    }
    let body_room = limit - HEADER_LEN - TAG_LEN;
    let body = postcard::to_slice(message, &mut out[HEADER_LEN..HEADER_LEN + body_room])
        .map_err(|_| WireError::NoSpace)?
        .len();
    finish(sender, to, seq, message.kind(), body, key, out)
}

/// Frames and signs an already-encoded body (any bytes) as a message of
/// `kind`: for tools and fuzzing, which need validly signed input whose body
/// may be anything. `out` holds the whole message.
pub fn seal(
    sender: Sender,
    to: ProxyId,
    seq: u64,
    kind: u8,
    body: &[u8],
    key: &Key,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let limit = out.len().min(MAX_MESSAGE);
    if HEADER_LEN + body.len() + TAG_LEN > limit {
        return Err(WireError::NoSpace);
    }
    out[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
    finish(sender, to, seq, kind, body.len(), key, out)
}

/// Writes the header before a body already at `out[HEADER_LEN..]`, then the tag.
fn finish(
    sender: Sender,
    to: ProxyId,
    seq: u64,
    kind: u8,
    body: usize,
    key: &Key,
    out: &mut [u8],
) -> Result<usize, WireError> {
    out[..2].copy_from_slice(&MAGIC);
    out[OFF_VERSION] = VERSION;
    out[OFF_KIND] = kind;
    let (id, boot) = match sender {
        Sender::Target => (0u32, 0u64),
        Sender::Proxy { id, boot } => (id, boot),
    };
    out[OFF_SENDER..OFF_TO].copy_from_slice(&id.to_le_bytes());
    out[OFF_TO..OFF_BOOT].copy_from_slice(&to.to_le_bytes());
    out[OFF_BOOT..OFF_SEQ].copy_from_slice(&boot.to_le_bytes());
    out[OFF_SEQ..HEADER_LEN].copy_from_slice(&seq.to_le_bytes());
    let signed_len = HEADER_LEN + body;
    let mut m = mac(key)?;
    m.update(&out[..signed_len]);
    let tag = m.finalize().into_bytes();
    out[signed_len..signed_len + TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
    Ok(signed_len + TAG_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4, Transport};
    use proptest::prelude::*;

    fn group() -> Group {
        Group {
            ip: Ipv4([203, 0, 113, 1]),
            port: 53,
            transport: Transport::Udp,
        }
    }

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint {
            ip: Ipv4([198, 18, 1, last]),
            port,
        }
    }

    const K: Key = Key([7; 32]);
    const PROXY: Sender = Sender::Proxy { id: 17, boot: 99 };

    /// Where a message goes: proxy 9, or 0 for a target's message or one to a target.
    fn to_of(m: &Message) -> ProxyId {
        if m.target_group().is_some() {
            0
        } else {
            9
        }
    }

    fn all_messages(packet: &[u8]) -> std::vec::Vec<Message<'_>> {
        let reg = Registration {
            group: group(),
            target: ep(5, 5353),
            timestamp_ms: 1_700_000_000_000,
            nonce: 99,
            options: JoinOptions { weight: 3 },
        };
        let mut tried = Tried::new();
        tried.push(6).unwrap();
        let mut japs = Vec::new();
        japs.push(RankedJap { jap: 4, count: 10 }).unwrap();
        vec![
            Message::Join(reg),
            Message::Leave(reg),
            Message::Ack {
                group: group(),
                target: ep(5, 1),
                nonce: 1,
            },
            Message::Nack {
                group: group(),
                target: ep(5, 1),
                nonce: 1,
                reason: NackReason::Capacity,
            },
            Message::Ping {
                group: group(),
                target: ep(5, 1),
                nonce: 2,
            },
            Message::Pong {
                group: group(),
                target: ep(5, 1),
                nonce: 2,
            },
            Message::CountReport {
                group: group(),
                count: 12,
                coord: Coord::default(),
            },
            Message::ReportAck {
                group: group(),
                count: 12,
                band_pct: 25,
            },
            Message::Lookup {
                group: group(),
                client: ep(9, 4000),
                iap_coord: Coord::default(),
                tried: tried.clone(),
                packet: Some(packet),
            },
            Message::JapList {
                group: group(),
                japs,
                ttl_s: 3600,
            },
            Message::Forward {
                group: group(),
                client: ep(9, 4000),
                iap: 3,
                tried: tried.clone(),
                packet,
            },
            Message::Invalidate {
                group: group(),
                gone: true,
                bounced: Some(Bounced {
                    client: ep(9, 4000),
                    tried,
                    packet,
                }),
            },
            Message::Heartbeat {
                cluster: 2,
                coord: Coord {
                    x: 1.0,
                    y: -2.0,
                    h: 0.5,
                    err: 0.3,
                },
            },
            Message::News {
                subject: 8,
                incarnation: Incarnation {
                    boot: 17,
                    refutation: 2,
                },
                up: false,
            },
            Message::RttProbe { nonce: 3 },
            Message::RttReply {
                nonce: 3,
                coord: Coord::default(),
            },
            Message::Rejoin {
                group: group(),
                target: ep(5, 1),
                nonce: 4,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_verifies() {
        let payload = [0xabu8; 100];
        let messages = all_messages(&payload);
        assert_eq!(messages.len(), KINDS);
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(usize::from(m.kind()), i, "kinds are the variant order");
            let sender = if m.from_target() {
                Sender::Target
            } else {
                PROXY
            };
            let mut out = [0u8; MAX_MESSAGE];
            let n = encode(sender, to_of(m), 1, m, &K, &mut out).unwrap();
            assert_eq!(peek_kind(&out[..n]), Some(i as u8));
            assert!(KIND_NAMES[i].len() > 2);
            let mut out = [0u8; MAX_MESSAGE];
            let n = encode(sender, to_of(m), 1000 + i as u64, m, &K, &mut out).unwrap();
            let p = parse(&out[..n]).unwrap();
            assert_eq!((&p.message, p.sender, p.seq), (m, sender, 1000 + i as u64));
            p.verify(&K).unwrap();
            assert_eq!(p.verify(&Key([8; 32])), Err(WireError::BadTag));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let m = Message::CountReport {
            group: group(),
            count: 12,
            coord: Coord::default(),
        };
        let mut out = [0u8; MAX_MESSAGE];
        let n = encode(PROXY, 9, 1, &m, &K, &mut out).unwrap();
        for i in 0..n {
            let mut b = out[..n].to_vec();
            b[i] ^= 0x01;
            if let Ok(p) = parse(&b) {
                assert_eq!(
                    p.verify(&K),
                    Err(WireError::BadTag),
                    "flip at byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn framing_errors_are_named() {
        let m = Message::Heartbeat {
            cluster: 1,
            coord: Coord::default(),
        };
        let mut out = [0u8; MAX_MESSAGE];
        let n = encode(PROXY, 9, 1, &m, &K, &mut out).unwrap();
        let good = out[..n].to_vec();
        assert_eq!(parse(&good[..10]).unwrap_err(), WireError::TooShort);
        let mut b = good.clone();
        b[0] = b'Q';
        assert_eq!(parse(&b).unwrap_err(), WireError::BadMagic);
        let mut b = good.clone();
        b[2] = 9;
        assert_eq!(parse(&b).unwrap_err(), WireError::UnsupportedVersion(9));
        let mut b = good.clone();
        b[3] = 11;
        assert_eq!(parse(&b).unwrap_err(), WireError::Malformed);
        assert_eq!(
            parse(&[0u8; MAX_MESSAGE + 1]).unwrap_err(),
            WireError::TooLong
        );
        let big = [0u8; MAX_CARRIED + 1];
        let m = Message::Forward {
            group: group(),
            client: ep(1, 1),
            iap: 1,
            tried: Tried::new(),
            packet: &big,
        };
        assert_eq!(
            encode(PROXY, 9, 1, &m, &K, &mut out).unwrap_err(),
            WireError::Oversized
        );
    }

    #[test]
    fn keys_are_never_printed() {
        assert_eq!(format!("{:?}", Key([0x41; 32])), "Key(<redacted>)");
    }

    /// Frames `m` as `sender` without `encode`'s checks (which refuse it).
    fn sealed(sender: Sender, m: &Message) -> std::vec::Vec<u8> {
        let body = postcard::to_allocvec(m).unwrap();
        let mut out = [0u8; MAX_MESSAGE];
        let n = seal(sender, to_of(m), 1, m.kind(), &body, &K, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn out_of_domain_fields_and_mismatched_senders_are_malformed() {
        let nan = Message::Heartbeat {
            cluster: 1,
            coord: Coord {
                x: f32::NAN,
                ..Coord::default()
            },
        };
        let inf = Message::CountReport {
            group: group(),
            count: 1,
            coord: Coord {
                h: f32::INFINITY,
                ..Coord::default()
            },
        };
        let mut reg = Registration {
            group: group(),
            target: ep(5, 5353),
            timestamp_ms: 1,
            nonce: 1,
            options: JoinOptions { weight: 0 },
        };
        let mut out = [0u8; MAX_MESSAGE];
        for (sender, m) in [
            (PROXY, nan),
            (PROXY, inf),
            (Sender::Target, Message::Join(reg)),
        ] {
            assert_eq!(
                encode(sender, to_of(&m), 1, &m, &K, &mut out).unwrap_err(),
                WireError::Malformed,
                "{m:?}"
            );
            assert_eq!(
                parse(&sealed(sender, &m)).unwrap_err(),
                WireError::Malformed
            );
        }
        reg.options.weight = JoinOptions::MAX_WEIGHT;
        assert!(parse(&sealed(Sender::Target, &Message::Join(reg))).is_ok());
        reg.options.weight = JoinOptions::MAX_WEIGHT + 1;
        assert!(parse(&sealed(Sender::Target, &Message::Join(reg))).is_err());
        // A join signed as a proxy, a heartbeat as a target: refused.
        reg.options.weight = 1;
        assert_eq!(
            parse(&sealed(PROXY, &Message::Join(reg))).unwrap_err(),
            WireError::Malformed
        );
        let hb = Message::Heartbeat {
            cluster: 1,
            coord: Coord::default(),
        };
        assert_eq!(
            parse(&sealed(Sender::Target, &hb)).unwrap_err(),
            WireError::Malformed
        );
    }

    proptest! {
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(p) = parse(&bytes) {
                let _ = p.verify(&K);
            }
        }

    }
}
