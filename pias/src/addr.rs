//! IPv4 address and prefix types with a readable form for TOML ("198.18.0.2",
//! "203.0.113.0/24") and a compact form (4 bytes, 5 bytes) for postcard.

use core::fmt;
use core::str::FromStr;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An IPv4 address: the four octets in network order (`Ipv4([192, 0, 2, 1])`
/// is 192.0.2.1). Ordered as the big-endian integer; the default is 0.0.0.0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ipv4(pub [u8; 4]);

/// An IPv4 prefix: address and length (0..=32).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ipv4Prefix {
    /// The address as written; it may have host bits set (an interface's own
    /// address in "198.18.0.2/24"), see `has_host_bits` and `network`.
    pub addr: Ipv4,
    /// Prefix length in bits. Parsing and decoding refuse values above 32;
    /// `new` does not check.
    pub len: u8,
}

/// Why a textual address or prefix did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrParseError {
    /// Not four dot-separated decimal octets.
    BadAddress,
    /// Missing "/len", or len not a number in 0..=32.
    BadPrefixLen,
    /// Missing ":port", or port not a number in 0..=65535.
    BadPort,
    /// Not a group: "a.b.c.d:port/udp" or "a.b.c.d:port/tcp", port 1..=65535.
    BadGroup,
}

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrParseError::BadAddress => f.write_str("not an IPv4 address (a.b.c.d)"),
            AddrParseError::BadPrefixLen => f.write_str("not a prefix (a.b.c.d/len, len 0..=32)"),
            AddrParseError::BadPort => {
                f.write_str("not an endpoint (a.b.c.d:port, port 0..=65535)")
            }
            AddrParseError::BadGroup => {
                f.write_str("not a group (a.b.c.d:port/udp or a.b.c.d:port/tcp, port 1..=65535)")
            }
        }
    }
}

impl Ipv4 {
    /// 0.0.0.0, "no address".
    pub const UNSPECIFIED: Ipv4 = Ipv4([0; 4]);

    /// The address as a host-order integer (192.0.2.1 is 0xc000_0201).
    pub fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The address of a host-order integer; the inverse of `to_u32`.
    pub fn from_u32(v: u32) -> Self {
        Ipv4(v.to_be_bytes())
    }

    /// Whether this is 0.0.0.0.
    pub fn is_unspecified(self) -> bool {
        self.0 == [0; 4]
    }

    /// Whether the first octet is 224 or above: multicast (224/4), the
    /// reserved 240/4 and the limited broadcast 255.255.255.255, none of which
    /// may be a unicast host address.
    pub fn is_multicast_or_broadcast(self) -> bool {
        self.0[0] >= 224
    }
}

impl FromStr for Ipv4 {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        core::net::Ipv4Addr::from_str(s)
            .map(|a| Ipv4(a.octets()))
            .map_err(|_| AddrParseError::BadAddress)
    }
}

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

impl fmt::Debug for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Ipv4Prefix {
    /// The prefix `addr/len`, as given: `len` is not checked against 32.
    pub fn new(addr: Ipv4, len: u8) -> Self {
        Ipv4Prefix { addr, len }
    }

    /// The network mask as a host-order u32 (0 for /0).
    pub fn mask(self) -> u32 {
        match self.len {
            0 => 0,
            n if n >= 32 => u32::MAX,
            n => u32::MAX << (32 - n),
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4 {
        Ipv4::from_u32(self.addr.to_u32() & self.mask())
    }

    /// The subnet's broadcast address (all host bits set).
    pub fn broadcast(self) -> Ipv4 {
        Ipv4::from_u32(self.network().to_u32() | !self.mask())
    }

    /// Whether `ip` lies in the prefix (its first `len` bits match). Always
    /// false for a length above 32; /0 contains every address.
    pub fn contains(self, ip: Ipv4) -> bool {
        self.len <= 32 && (ip.to_u32() & self.mask()) == (self.addr.to_u32() & self.mask())
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(self, other: Ipv4Prefix) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(longer.addr)
    }

    /// Whether host bits are set (e.g. "203.0.113.1/24").
    pub fn has_host_bits(self) -> bool {
        self.addr.to_u32() & !self.mask() != 0
    }
}

impl FromStr for Ipv4Prefix {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or(AddrParseError::BadPrefixLen)?;
        let addr = a.parse()?;
        let len: u8 = l.parse().map_err(|_| AddrParseError::BadPrefixLen)?;
        if len > 32 || l.starts_with('+') {
            return Err(AddrParseError::BadPrefixLen);
        }
        Ok(Ipv4Prefix { addr, len })
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `fmt::Write` into a fixed buffer, for serializing to a string without alloc.
struct FixedBuf {
    buf: [u8; 24],
    len: usize,
}

impl fmt::Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn serialize_display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    use core::fmt::Write;
    let mut b = FixedBuf {
        buf: [0; 24],
        len: 0,
    };
    write!(b, "{v}").map_err(serde::ser::Error::custom)?;
    let text = core::str::from_utf8(&b.buf[..b.len]).map_err(serde::ser::Error::custom)?;
    s.serialize_str(text)
}

impl Serialize for Ipv4 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            serialize_display(self, s)
        } else {
            self.0.serialize(s)
        }
    }
}

impl Serialize for Ipv4Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            serialize_display(self, s)
        } else {
            (self.addr.0, self.len).serialize(s)
        }
    }
}

struct TextVisitor<T>(core::marker::PhantomData<T>);

impl<T> Visitor<'_> for TextVisitor<T>
where
    T: FromStr<Err = AddrParseError>,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an IPv4 address or prefix as a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|e: AddrParseError| E::custom(format_args!("{e}: {v:?}")))
    }
}

impl<'de> Deserialize<'de> for Ipv4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(TextVisitor(core::marker::PhantomData))
        } else {
            <[u8; 4]>::deserialize(d).map(Ipv4)
        }
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(TextVisitor(core::marker::PhantomData))
        } else {
            let (addr, len) = <([u8; 4], u8)>::deserialize(d)?;
            if len > 32 {
                return Err(de::Error::custom("prefix length above 32"));
            }
            Ok(Ipv4Prefix {
                addr: Ipv4(addr),
                len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let p: Ipv4Prefix = "203.0.113.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "203.0.113.0/24");
        assert!(p.contains("203.0.113.77".parse().unwrap()));
        assert!(!p.contains("203.0.114.1".parse().unwrap()));
        assert!(!p.has_host_bits());
        assert!("203.0.113.1/24"
            .parse::<Ipv4Prefix>()
            .unwrap()
            .has_host_bits());
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("1.2.3".parse::<Ipv4>(), Err(AddrParseError::BadAddress));
        assert_eq!(
            "1.2.3.4/33".parse::<Ipv4Prefix>(),
            Err(AddrParseError::BadPrefixLen)
        );
        assert_eq!(
            "1.2.3.4".parse::<Ipv4Prefix>(),
            Err(AddrParseError::BadPrefixLen)
        );
        assert_eq!(
            "1.2.3.4/+8".parse::<Ipv4Prefix>(),
            Err(AddrParseError::BadPrefixLen)
        );
    }

    #[test]
    fn overlap_and_masks() {
        let a: Ipv4Prefix = "198.18.0.0/15".parse().unwrap();
        let b: Ipv4Prefix = "198.19.4.0/24".parse().unwrap();
        let c: Ipv4Prefix = "203.0.113.0/24".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a));
        assert!(!a.overlaps(c));
        assert_eq!(Ipv4Prefix::new(Ipv4([1, 2, 3, 4]), 0).mask(), 0);
        assert!(Ipv4Prefix::new(Ipv4([1, 2, 3, 4]), 0).contains(Ipv4([9, 9, 9, 9])));
    }

    #[test]
    fn postcard_form_is_compact() {
        let p: Ipv4Prefix = "203.0.113.0/24".parse().unwrap();
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(bytes, vec![203, 0, 113, 0, 24]);
        assert_eq!(postcard::from_bytes::<Ipv4Prefix>(&bytes).unwrap(), p);
        assert!(postcard::from_bytes::<Ipv4Prefix>(&[1, 2, 3, 4, 40]).is_err());
    }

    /// The bytes a value writes into a hasher.
    fn written<T: core::hash::Hash>(v: &T) -> std::vec::Vec<u8> {
        #[derive(Default)]
        struct Record(std::vec::Vec<u8>);
        impl core::hash::Hasher for Record {
            fn write(&mut self, b: &[u8]) {
                self.0.extend_from_slice(b);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut r = Record::default();
        v.hash(&mut r);
        r.0
    }

    #[test]
    fn table_keys_write_every_field_and_differ_when_any_does() {
        let ips = [
            Ipv4([0, 0, 0, 0]),
            Ipv4([203, 0, 113, 7]),
            Ipv4([203, 0, 113, 8]),
            Ipv4([255; 4]),
        ];
        let ports = [0u16, 53, 54, 0xff00, u16::MAX];
        let mut groups = std::vec::Vec::new();
        let mut endpoints = std::vec::Vec::new();
        for ip in ips {
            for port in ports {
                endpoints.push(Endpoint { ip, port });
                for transport in [Transport::Udp, Transport::Tcp] {
                    groups.push(Group {
                        ip,
                        port,
                        transport,
                    });
                }
            }
        }
        for set in [
            groups.iter().map(written).collect::<std::vec::Vec<_>>(),
            endpoints.iter().map(written).collect(),
            ips.iter().map(written).collect(),
        ] {
            let distinct: std::collections::BTreeSet<_> = set.iter().collect();
            assert_eq!(distinct.len(), set.len(), "two keys wrote the same bytes");
        }
        // Equal values write equal bytes, one word each.
        let g = groups[7];
        assert_eq!(written(&g), written(&{ g }));
        assert_eq!(written(&g).len(), 8);
        assert_eq!(written(&endpoints[3]).len(), 8);
        assert_eq!(written(&ips[1]).len(), 4);
    }
}

/// Transport protocol of a group or endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Transport {
    /// UDP (encoded as 0 in `Group::key_bytes`).
    Udp,
    /// TCP (encoded as 1 in `Group::key_bytes`).
    Tcp,
}

/// An IPv4 transport endpoint (a target's `AT:r`, a client's source).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct Endpoint {
    /// The unicast address.
    pub ip: Ipv4,
    /// The transport port, in host order.
    pub port: u16,
}

/// An anycast group: the transport address `AA:g` inside an anycast prefix.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct Group {
    /// The anycast address `AA`, inside one of the configured anycast prefixes.
    pub ip: Ipv4,
    /// The group's port `g`, in host order.
    pub port: u16,
    /// Whether the group is reached over UDP or TCP; the same address and port
    /// over the other transport is a different group.
    pub transport: Transport,
}

impl Group {
    /// 7 bytes that identify the group, hashed for RAP placement.
    pub fn key_bytes(&self) -> [u8; 7] {
        let [a, b, c, d] = self.ip.0;
        let [p, q] = self.port.to_be_bytes();
        [a, b, c, d, p, q, self.transport as u8]
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{}:{}/{t}", self.ip, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// A decimal port: digits only (no sign), 0..=65535.
fn parse_port(s: &str) -> Result<u16, AddrParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrParseError::BadPort);
    }
    s.parse().map_err(|_| AddrParseError::BadPort)
}

impl FromStr for Transport {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            _ => Err(AddrParseError::BadGroup),
        }
    }
}

/// "198.18.1.20:53", the form `Display` writes.
impl FromStr for Endpoint {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, port) = s.rsplit_once(':').ok_or(AddrParseError::BadPort)?;
        Ok(Endpoint {
            ip: ip.parse()?,
            port: parse_port(port)?,
        })
    }
}

/// "203.0.113.10:53/udp", the form `Display` writes.
impl FromStr for Group {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |_| AddrParseError::BadGroup;
        let (ep, transport) = s.rsplit_once('/').ok_or(AddrParseError::BadGroup)?;
        let ep: Endpoint = ep.parse().map_err(bad)?;
        if ep.port == 0 {
            return Err(AddrParseError::BadGroup);
        }
        Ok(Group {
            ip: ep.ip,
            port: ep.port,
            transport: transport.parse().map_err(bad)?,
        })
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn groups_and_endpoints_round_trip() {
        let g: Group = "203.0.113.10:53/udp".parse().unwrap();
        assert_eq!(
            g,
            Group {
                ip: Ipv4([203, 0, 113, 10]),
                port: 53,
                transport: Transport::Udp,
            }
        );
        assert_eq!(g.to_string(), "203.0.113.10:53/udp");
        let t: Group = "203.0.113.10:443/tcp".parse().unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.to_string(), "203.0.113.10:443/tcp");
        let e: Endpoint = "198.18.1.20:53".parse().unwrap();
        assert_eq!(e.ip, Ipv4([198, 18, 1, 20]));
        assert_eq!(e.port, 53);
        assert_eq!(e.to_string(), "198.18.1.20:53");
        assert_eq!("1.2.3.4:65535".parse::<Endpoint>().unwrap().port, 65535);
    }

    #[test]
    fn refuses_malformed_groups_and_endpoints() {
        use AddrParseError::*;
        for (text, err) in [
            ("203.0.113.10:53", BadGroup),
            ("203.0.113.10:53/sctp", BadGroup),
            ("203.0.113.10:53/UDP", BadGroup),
            ("203.0.113.10/udp", BadGroup),
            ("203.0.113.10:/udp", BadGroup),
            ("203.0.113.10:0/udp", BadGroup),
            ("203.0.113.10:65536/udp", BadGroup),
            ("203.0.113.10:+53/udp", BadGroup),
            ("203.0.113:53/udp", BadGroup),
            (":53/udp", BadGroup),
            ("", BadGroup),
        ] {
            assert_eq!(text.parse::<Group>(), Err(err), "{text:?}");
        }
        for (text, err) in [
            ("198.18.1.20", BadPort),
            ("198.18.1.20:-1", BadPort),
            ("198.18.1.20:53:53", BadAddress),
            ("host:53", BadAddress),
        ] {
            assert_eq!(text.parse::<Endpoint>(), Err(err), "{text:?}");
        }
    }
}

// The table keys hash as one word each, not field by field (the derived
// form writes an address as a length and 4 bytes, then the port: several
// small writes, each a round of the keyed SipHash's buffering). Equal values
// write equal words, and different values different ones.
impl core::hash::Hash for Ipv4 {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(u32::from_be_bytes(self.0));
    }
}

impl core::hash::Hash for Endpoint {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(u32::from_be_bytes(self.ip.0)) << 16 | u64::from(self.port));
    }
}

impl core::hash::Hash for Group {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let t = match self.transport {
            Transport::Udp => 0u64,
            Transport::Tcp => 1,
        };
        state.write_u64(
            u64::from(u32::from_be_bytes(self.ip.0)) << 24 | u64::from(self.port) << 8 | t,
        );
    }
}
