//! UPDATE (RFC 4271 §4.3): checked on receipt (the speaker counts what it
//! hears but installs nothing) and built for our own prefixes with next-hop
//! self, an optional AS-path prepend and MED, and the RFC 8326
//! GRACEFUL_SHUTDOWN community.

use super::{code, kind, Error, Prefix, Prefixes, Writer};

/// Attribute flag bits.
const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED_LENGTH: u8 = 0x10;
/// Attribute types.
const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const MED: u8 = 4;
const COMMUNITIES: u8 = 8;
/// ORIGIN IGP.
const ORIGIN_IGP: u8 = 0;
/// AS_PATH segment types: AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET.
const AS_SEQUENCE: u8 = 2;
/// The well-known GRACEFUL_SHUTDOWN community, 65535:0 (RFC 8326).
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;
/// Most prepends sent (the AS path stays one short segment).
pub const MAX_PREPEND: u8 = 32;

/// A received UPDATE, checked: the prefix fields parse and the attributes are
/// well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    withdrawn: &'a [u8],
    attrs: &'a [u8],
    nlri: &'a [u8],
}

impl<'a> Update<'a> {
    /// Parses an UPDATE's body (after the header).
    pub(crate) fn parse(body: &'a [u8]) -> Result<Update<'a>, Error> {
        let list = || Error::new(code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST);
        let (withdrawn, rest) = split_len16(body).ok_or_else(list)?;
        let (attrs, nlri) = split_len16(rest).ok_or_else(list)?;
        let network = || Error::new(code::UPDATE, code::INVALID_NETWORK_FIELD);
        Prefixes::check(withdrawn).map_err(|()| network())?;
        Prefixes::check(nlri).map_err(|()| network())?;
        let seen = check_attributes(attrs)?;
        if !nlri.is_empty() {
            for t in [ORIGIN, AS_PATH, NEXT_HOP] {
                if seen[usize::from(t)] == 0 {
                    return Err(Error::with_data(
                        code::UPDATE,
                        code::MISSING_WELL_KNOWN_ATTRIBUTE,
                        &[t],
                    ));
                }
            }
        }
        Ok(Update {
            withdrawn,
            attrs,
            nlri,
        })
    }

    /// The prefixes withdrawn.
    pub fn withdrawn(&self) -> Prefixes<'a> {
        Prefixes::new(self.withdrawn)
    }

    /// The prefixes announced (IPv4 NLRI).
    pub fn announced(&self) -> Prefixes<'a> {
        Prefixes::new(self.nlri)
    }

    /// The raw path attributes.
    pub fn attributes(&self) -> &'a [u8] {
        self.attrs
    }
}

/// A 2-octet length and that many bytes; the rest.
fn split_len16(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = b.split_first_chunk::<2>()?;
    let n = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= n).then(|| rest.split_at(n))
}

/// Walks the attributes: each well framed, none twice, the well-known ones
/// we read well formed. How often each type was seen.
fn check_attributes(mut attrs: &[u8]) -> Result<[u8; 256], Error> {
    let list = || Error::new(code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST);
    let mut seen = [0u8; 256];
    while !attrs.is_empty() {
        let [flags, ty, rest @ ..] = attrs else {
            return Err(list());
        };
        let (len, rest) = if flags & EXTENDED_LENGTH != 0 {
            let (l, r) = rest.split_first_chunk::<2>().ok_or_else(list)?;
            (usize::from(u16::from_be_bytes(*l)), r)
        } else {
            let (l, r) = rest.split_first().ok_or_else(list)?;
            (usize::from(*l), r)
        };
        let Some(value) = rest.get(..len) else {
            return Err(Error::new(code::UPDATE, code::ATTRIBUTE_LENGTH_ERROR));
        };
        let whole = &attrs[..attrs.len() - rest.len() + len];
        attrs = &rest[len..];
        let slot = &mut seen[usize::from(*ty)];
        if *slot > 0 {
            return Err(list());
        }
        *slot = 1;
        if matches!(*ty, ORIGIN | AS_PATH | NEXT_HOP)
            && flags & (OPTIONAL | TRANSITIVE) != TRANSITIVE
        {
            return Err(Error::with_data(
                code::UPDATE,
                code::ATTRIBUTE_FLAGS_ERROR,
                whole,
            ));
        }
        let length_error = || Error::with_data(code::UPDATE, code::ATTRIBUTE_LENGTH_ERROR, whole);
        match (*ty, value) {
            (ORIGIN, [o]) if *o > 2 => {
                return Err(Error::with_data(code::UPDATE, code::INVALID_ORIGIN, whole))
            }
            (ORIGIN, [_]) | (NEXT_HOP, [_, _, _, _]) => {}
            (ORIGIN | NEXT_HOP, _) => return Err(length_error()),
            (AS_PATH, path) => check_as_path(path)?,
            _ => {}
        }
    }
    Ok(seen)
}

/// An AS_PATH of 4-octet AS numbers (both ends sent the capability): each
/// segment a known type, a non-zero count and that many numbers.
fn check_as_path(mut path: &[u8]) -> Result<(), Error> {
    let bad = || Error::new(code::UPDATE, code::MALFORMED_AS_PATH);
    while !path.is_empty() {
        let [ty, count, rest @ ..] = path else {
            return Err(bad());
        };
        let n = usize::from(*count) * 4;
        if !(1..=4).contains(ty) || *count == 0 || rest.len() < n {
            return Err(bad());
        }
        path = &rest[n..];
    }
    Ok(())
}

/// The attributes of our announcement, chosen by the appliance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Attrs {
    /// Extra copies of our AS in the path (0: just ours), at most 32.
    pub prepend: u8,
    /// MULTI_EXIT_DISC, if any.
    pub med: Option<u32>,
    /// Tag the route GRACEFUL_SHUTDOWN (65535:0) so that peers prefer others.
    pub graceful_shutdown: bool,
}

/// An UPDATE to send.
#[derive(Clone, Copy, Debug)]
pub struct UpdateRepr<'a> {
    /// Prefixes to withdraw.
    pub withdrawn: &'a [Prefix],
    /// Prefixes to announce, with `attrs`.
    pub announced: &'a [Prefix],
    /// Our AS (the path's first element).
    pub local_as: u32,
    /// NEXT_HOP: our own address.
    pub next_hop: [u8; 4],
    /// Per-state attributes.
    pub attrs: Attrs,
}

impl UpdateRepr<'_> {
    /// Writes the UPDATE into `buf`; its length, or None if it does not fit.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let mut w = Writer::new(buf, kind::UPDATE);
        let at = w.position();
        w.u16(0);
        for p in self.withdrawn {
            w.prefix(*p);
        }
        let len = w.position().saturating_sub(at + 2);
        w.patch_u16(at, len as u16);
        let at = w.position();
        w.u16(0);
        if !self.announced.is_empty() {
            let a = &self.attrs;
            w.put(&[TRANSITIVE, ORIGIN, 1, ORIGIN_IGP]);
            let count = 1 + a.prepend.min(MAX_PREPEND);
            w.put(&[TRANSITIVE, AS_PATH, 2 + 4 * count, AS_SEQUENCE, count]);
            for _ in 0..count {
                w.u32(self.local_as);
            }
            w.put(&[TRANSITIVE, NEXT_HOP, 4]);
            w.put(&self.next_hop);
            if let Some(med) = a.med {
                w.put(&[OPTIONAL, MED, 4]);
                w.u32(med);
            }
            if a.graceful_shutdown {
                w.put(&[OPTIONAL | TRANSITIVE, COMMUNITIES, 4]);
                w.u32(GRACEFUL_SHUTDOWN);
            }
        }
        let len = w.position().saturating_sub(at + 2);
        w.patch_u16(at, len as u16);
        for p in self.announced {
            w.prefix(*p);
        }
        w.finish()
    }
}
