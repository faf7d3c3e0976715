//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492): multiprotocol IPv4
//! unicast (RFC 4760) and 4-octet AS numbers (RFC 6793).

use super::{code, kind, Error, Writer, AS_TRANS, VERSION};

/// Optional parameter type: capabilities.
const PARAM_CAPABILITIES: u8 = 2;
/// Capability: multiprotocol extensions.
const CAP_MP: u8 = 1;
/// Capability: 4-octet AS numbers.
const CAP_AS4: u8 = 65;
/// AFI IPv4, SAFI unicast.
const AFI_IPV4: u16 = 1;
const SAFI_UNICAST: u8 = 1;

/// A received OPEN, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field (AS_TRANS for a large AS).
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    /// BGP identifier, not 0.
    pub bgp_id: [u8; 4],
    /// The 4-octet AS capability's number, if sent.
    pub as4: Option<u32>,
    /// Whether any multiprotocol capability was sent.
    pub mp_any: bool,
    /// Whether the multiprotocol capability for IPv4 unicast was sent.
    pub mp_ipv4_unicast: bool,
}

impl Open {
    /// The peer's AS number.
    pub fn asn(&self) -> u32 {
        self.as4.unwrap_or(u32::from(self.my_as))
    }

    /// Whether IPv4 unicast routes may be exchanged: sent as a capability, or
    /// implied by a peer that sends no multiprotocol capability at all.
    pub fn ipv4_unicast(&self) -> bool {
        self.mp_ipv4_unicast || !self.mp_any
    }

    /// Parses an OPEN's body (after the header).
    pub(crate) fn parse(body: &[u8]) -> Result<Open, Error> {
        let malformed = || Error::new(code::OPEN, code::UNSPECIFIC);
        let fixed = body.get(..10).ok_or_else(malformed)?;
        if fixed[0] != VERSION {
            return Err(Error::with_data(
                code::OPEN,
                code::UNSUPPORTED_VERSION,
                &u16::from(VERSION).to_be_bytes(),
            ));
        }
        let my_as = u16::from_be_bytes([fixed[1], fixed[2]]);
        let hold_time = u16::from_be_bytes([fixed[3], fixed[4]]);
        if hold_time == 1 || hold_time == 2 {
            return Err(Error::new(code::OPEN, code::UNACCEPTABLE_HOLD_TIME));
        }
        let bgp_id = [fixed[5], fixed[6], fixed[7], fixed[8]];
        if bgp_id == [0; 4] {
            return Err(Error::new(code::OPEN, code::BAD_BGP_IDENTIFIER));
        }
        let params = &body[10..];
        if params.len() != usize::from(fixed[9]) {
            return Err(malformed());
        }
        let mut open = Open {
            my_as,
            hold_time,
            bgp_id,
            as4: None,
            mp_any: false,
            mp_ipv4_unicast: false,
        };
        let mut rest = params;
        while let [ty, len, tail @ ..] = rest {
            let value = tail.get(..usize::from(*len)).ok_or_else(malformed)?;
            rest = &tail[usize::from(*len)..];
            if *ty != PARAM_CAPABILITIES {
                return Err(Error::with_data(
                    code::OPEN,
                    code::UNSUPPORTED_OPTIONAL_PARAMETER,
                    &[*ty],
                ));
            }
            open.capabilities(value)?;
        }
        if !rest.is_empty() {
            return Err(malformed());
        }
        Ok(open)
    }

    /// Reads one capabilities parameter; unknown capabilities are ignored.
    fn capabilities(&mut self, mut caps: &[u8]) -> Result<(), Error> {
        let malformed = || Error::new(code::OPEN, code::UNSPECIFIC);
        while !caps.is_empty() {
            let [c, len, tail @ ..] = caps else {
                return Err(malformed());
            };
            let value = tail.get(..usize::from(*len)).ok_or_else(malformed)?;
            caps = &tail[usize::from(*len)..];
            match (*c, value) {
                (CAP_MP, [a0, a1, _, safi]) => {
                    self.mp_any = true;
                    if u16::from_be_bytes([*a0, *a1]) == AFI_IPV4 && *safi == SAFI_UNICAST {
                        self.mp_ipv4_unicast = true;
                    }
                }
                (CAP_AS4, [a, b, c, d]) => self.as4 = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                (CAP_MP | CAP_AS4, _) => return Err(malformed()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// An OPEN to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRepr {
    /// Our AS number (sent as AS_TRANS in the 2-octet field when large).
    pub asn: u32,
    /// Our proposed hold time in seconds.
    pub hold_time: u16,
    /// Our BGP identifier.
    pub bgp_id: [u8; 4],
}

impl OpenRepr {
    /// The 4-octet AS capability with our number, as the data of a 2/7
    /// NOTIFICATION or inside the OPEN.
    pub fn as4_capability(&self) -> [u8; 6] {
        let a = self.asn.to_be_bytes();
        [CAP_AS4, 4, a[0], a[1], a[2], a[3]]
    }

    /// The multiprotocol IPv4 unicast capability.
    pub fn mp_capability() -> [u8; 6] {
        let afi = AFI_IPV4.to_be_bytes();
        [CAP_MP, 4, afi[0], afi[1], 0, SAFI_UNICAST]
    }

    /// Writes the OPEN into `buf`; its length, or None if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let mut w = Writer::new(buf, kind::OPEN);
        w.u8(VERSION);
        w.u16(u16::try_from(self.asn).unwrap_or(AS_TRANS));
        w.u16(self.hold_time);
        w.put(&self.bgp_id);
        let caps = [Self::mp_capability(), self.as4_capability()];
        w.u8(2 + 12);
        w.u8(PARAM_CAPABILITIES);
        w.u8(12);
        for c in caps {
            w.put(&c);
        }
        w.finish()
    }
}
