//! The PIAS wire protocol (docs/protocol.md): a 28-byte header (magic, version,
//! kind, sender, receiver, the sender's boot, sequence), a postcard body, and a 16-byte
//! HMAC-SHA256 tag over both. `parse` is total: any bytes give a `Parsed`
//! message or a `WireError`; the caller then checks the tag with the right key
//! (`Parsed::verify`) and the sequence against its replay state.

use core::fmt;
use heapless::Vec;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use crate::ids::{Incarnation, ProxyId};

mod message;
pub use self::message::{
    Bounced, Coord, JoinOptions, Message, NackReason, RankedJap, Registration, KINDS, KIND_NAMES,
    MAX_COORD,
};

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
mod tests;
