//! BGP-4 messages on the wire (RFC 4271 §4): framing of a byte stream into
//! messages, a total parser for each type, and emitters for what the speaker
//! sends. Every error carries the NOTIFICATION it calls for.

mod error;
mod open;
mod update;

pub use self::error::{code, Error, Notification};
pub use self::open::{Open, OpenRepr};
pub use self::update::{Attrs, Update, UpdateRepr, GRACEFUL_SHUTDOWN, MAX_PREPEND};

/// The all-ones marker that starts every message.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows.
pub const MAX_LEN: usize = 4096;
/// The only version spoken.
pub const VERSION: u8 = 4;
/// The 2-octet AS number standing for a 4-octet one (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// Message types.
pub mod kind {
    /// OPEN.
    pub const OPEN: u8 = 1;
    /// UPDATE.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 4;
}

/// An IPv4 prefix as BGP carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prefix {
    /// The network's address (host bits are not sent).
    pub addr: [u8; 4],
    /// Length in bits, 0..=32.
    pub len: u8,
}

impl Prefix {
    /// Bytes of the address that go on the wire.
    fn wire_bytes(self) -> usize {
        usize::from(self.len.min(32)).div_ceil(8)
    }
}

/// One message, borrowed from the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update<'a>),
    /// NOTIFICATION.
    Notification(Notification<'a>),
    /// KEEPALIVE.
    Keepalive,
}

/// How long the message at the start of `stream` is: `Ok(None)` while it is
/// incomplete, an error if its header is bad (the stream is then lost).
pub fn frame(stream: &[u8]) -> Result<Option<usize>, Error> {
    let Some(header) = stream.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16] != MARKER {
        return Err(Error::new(code::HEADER, code::CONNECTION_NOT_SYNCHRONIZED));
    }
    let len = u16::from_be_bytes([header[16], header[17]]);
    if !(HEADER_LEN..=MAX_LEN).contains(&usize::from(len)) {
        return Err(Error::with_data(
            code::HEADER,
            code::BAD_MESSAGE_LENGTH,
            &len.to_be_bytes(),
        ));
    }
    Ok((stream.len() >= usize::from(len)).then_some(usize::from(len)))
}

impl<'a> Message<'a> {
    /// Parses one whole message (as `frame` delimited it, header included).
    pub fn parse(msg: &'a [u8]) -> Result<Message<'a>, Error> {
        let len = match frame(msg)? {
            Some(n) if n == msg.len() => n,
            _ => {
                let n = u16::try_from(msg.len()).unwrap_or(u16::MAX);
                return Err(Error::with_data(
                    code::HEADER,
                    code::BAD_MESSAGE_LENGTH,
                    &n.to_be_bytes(),
                ));
            }
        };
        let ty = msg[18];
        let body = &msg[HEADER_LEN..];
        let min = match ty {
            kind::OPEN => 29,
            kind::UPDATE => 23,
            kind::NOTIFICATION => 21,
            kind::KEEPALIVE => 19,
            _ => {
                return Err(Error::with_data(
                    code::HEADER,
                    code::BAD_MESSAGE_TYPE,
                    &[ty],
                ))
            }
        };
        if len < min || (ty == kind::KEEPALIVE && len != HEADER_LEN) {
            return Err(Error::with_data(
                code::HEADER,
                code::BAD_MESSAGE_LENGTH,
                &(len as u16).to_be_bytes(),
            ));
        }
        Ok(match ty {
            kind::OPEN => Message::Open(Open::parse(body)?),
            kind::UPDATE => Message::Update(Update::parse(body)?),
            kind::NOTIFICATION => Message::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: &body[2..],
            }),
            _ => Message::Keepalive,
        })
    }

    /// The message's type octet.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Open(_) => kind::OPEN,
            Message::Update(_) => kind::UPDATE,
            Message::Notification(_) => kind::NOTIFICATION,
            Message::Keepalive => kind::KEEPALIVE,
        }
    }
}

/// A cursor that writes a message into a caller's buffer; every write is
/// checked, and `finish` fills in the header.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
    ok: bool,
}

impl<'a> Writer<'a> {
    /// Starts a message of type `ty` in `buf`.
    pub(crate) fn new(buf: &'a mut [u8], ty: u8) -> Writer<'a> {
        let mut w = Writer {
            buf,
            at: 0,
            ok: true,
        };
        w.put(&MARKER);
        w.put(&[0, 0, ty]);
        w
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.at..self.at + bytes.len()) {
            Some(dst) if self.ok => {
                dst.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            _ => self.ok = false,
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Where the next byte goes (to patch a length in later).
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// Writes `v` at `pos`, written earlier.
    pub(crate) fn patch_u16(&mut self, pos: usize, v: u16) {
        if let Some(dst) = self.buf.get_mut(pos..pos + 2) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn prefix(&mut self, p: Prefix) {
        self.u8(p.len.min(32));
        let n = p.wire_bytes();
        self.put(&p.addr[..n]);
    }

    /// The message's length, or None if it did not fit the buffer or
    /// exceeds the largest message.
    pub(crate) fn finish(mut self) -> Option<usize> {
        if !self.ok || self.at > MAX_LEN {
            return None;
        }
        let len = self.at as u16;
        self.patch_u16(16, len);
        Some(self.at)
    }
}

/// Writes a KEEPALIVE into `buf`; its length, or None if `buf` is too short.
pub fn emit_keepalive(buf: &mut [u8]) -> Option<usize> {
    Writer::new(buf, kind::KEEPALIVE).finish()
}

/// Writes the NOTIFICATION for `err` into `buf`; its length, or None.
pub fn emit_notification(buf: &mut [u8], err: &Error) -> Option<usize> {
    let mut w = Writer::new(buf, kind::NOTIFICATION);
    w.u8(err.code);
    w.u8(err.subcode);
    w.put(err.data());
    w.finish()
}

/// Walks the prefixes of a withdrawn-routes or NLRI field (already checked
/// by `Update::parse`); a malformed tail ends the walk.
#[derive(Clone, Debug)]
pub struct Prefixes<'a> {
    rest: &'a [u8],
}

impl<'a> Prefixes<'a> {
    pub(crate) fn new(field: &'a [u8]) -> Self {
        Prefixes { rest: field }
    }

    /// Checks a whole field: every length ≤ 32 and its bytes present.
    pub(crate) fn check(field: &[u8]) -> Result<(), ()> {
        let mut it = Prefixes::new(field);
        while !it.rest.is_empty() {
            it.next().ok_or(())?;
        }
        Ok(())
    }
}

impl Iterator for Prefixes<'_> {
    type Item = Prefix;

    fn next(&mut self) -> Option<Prefix> {
        let (&len, tail) = self.rest.split_first()?;
        if len > 32 {
            self.rest = &[];
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let Some(bytes) = tail.get(..n) else {
            self.rest = &[];
            return None;
        };
        let mut addr = [0u8; 4];
        addr[..n].copy_from_slice(bytes);
        self.rest = &tail[n..];
        Some(Prefix { addr, len })
    }
}

#[cfg(test)]
mod tests;
