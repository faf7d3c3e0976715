//! The management protocol on the UDP management port: a request (status or
//! shutdown) and its response, postcard-encoded behind a 4-byte magic.

use crate::status::{ProxyReport, Status};
use serde::{Deserialize, Serialize};

/// "PIAQ": the first four bytes of every request datagram.
pub const REQUEST_MAGIC: [u8; 4] = *b"PIAQ";
/// "PIAR": the first four bytes of every response datagram.
pub const RESPONSE_MAGIC: [u8; 4] = *b"PIAR";
/// The protocol version this build speaks, carried in requests and responses.
pub const VERSION: u8 = 2;
/// A response with a full status (or proxy report) fits in this many bytes:
/// one UDP datagram on a 1500-byte MTU.
pub const MAX_RESPONSE: usize = 1400;
/// Requests are small; anything longer is refused.
pub const MAX_REQUEST: usize = 64;

/// What a request asks for.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The current `Status` report.
    Status,
    /// The proxy's and the data path's counters (`ProxyReport`).
    Proxy,
    /// A clean stop: the appliance replies, flushes, and exits through the
    /// debug-exit port. Honoured only with `management.allow_shutdown`.
    Shutdown,
}

/// A management request: `REQUEST_MAGIC` then this, postcard-encoded, at most
/// `MAX_REQUEST` bytes in all.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The sender's protocol version; anything but `VERSION` is refused with
    /// `Refusal::Version`.
    pub version: u8,
    /// Echoed in the response so a client can match replies to requests.
    pub nonce: u32,
    /// The operation asked for.
    pub op: Op,
}

/// Why a request from an allowed source was answered with a refusal.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request's version is not this build's.
    Version,
    /// Shutdown is disabled by `management.allow_shutdown = false`.
    ShutdownDisabled,
}

// No alloc to box the status into; a response is built once per request.
#[allow(clippy::large_enum_variant)]
/// The answer proper.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The report asked for by `Op::Status`.
    Status(Status),
    /// The counters asked for by `Op::Proxy`.
    Proxy(ProxyReport),
    /// `Op::Shutdown` was accepted; the appliance stops after this reply.
    ShuttingDown,
    /// The request was understood but not carried out.
    Refused(Refusal),
}

/// A management response: `RESPONSE_MAGIC` then this, postcard-encoded, at
/// most `MAX_RESPONSE` bytes in all.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The responder's protocol version (`VERSION`), also when it refuses the
    /// request's.
    pub version: u8,
    /// The request's nonce, unchanged.
    pub nonce: u32,
    /// The answer.
    pub body: Body,
}

/// Why a management message could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtError {
    /// Shorter than 4 bytes, or the first 4 are not the expected magic.
    BadMagic,
    /// A request longer than `MAX_REQUEST` bytes (refused before decoding).
    TooLong,
    /// The bytes after the magic are not one postcard message of the expected
    /// type, or bytes are left over after it.
    Decode,
    /// The output buffer cannot hold the magic and the encoded message.
    NoSpace,
}

fn encode<T: Serialize>(magic: [u8; 4], msg: &T, out: &mut [u8]) -> Result<usize, MgmtError> {
    if out.len() < 4 {
        return Err(MgmtError::NoSpace);
    }
    out[..4].copy_from_slice(&magic);
    let n = postcard::to_slice(msg, &mut out[4..])
        .map_err(|_| MgmtError::NoSpace)?
        .len();
    Ok(4 + n)
}

fn decode<'a, T: Deserialize<'a>>(magic: [u8; 4], bytes: &'a [u8]) -> Result<T, MgmtError> {
    if bytes.len() < 4 || bytes[..4] != magic {
        return Err(MgmtError::BadMagic);
    }
    let (msg, rest) = postcard::take_from_bytes(&bytes[4..]).map_err(|_| MgmtError::Decode)?;
    if !rest.is_empty() {
        return Err(MgmtError::Decode);
    }
    Ok(msg)
}

impl Request {
    /// Writes the magic and the request into `out`; `Ok(n)` is the datagram's
    /// length, `NoSpace` if `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, MgmtError> {
        encode(REQUEST_MAGIC, self, out)
    }

    /// Reads one whole request datagram. Total: any bytes give a `Request` or
    /// an error (`TooLong`, `BadMagic`, `Decode`); the version is not checked
    /// here.
    pub fn decode(bytes: &[u8]) -> Result<Self, MgmtError> {
        if bytes.len() > MAX_REQUEST {
            return Err(MgmtError::TooLong);
        }
        decode(REQUEST_MAGIC, bytes)
    }
}

impl Response {
    /// Writes the magic and the response into `out`; `Ok(n)` is the
    /// datagram's length, `NoSpace` if `out` is too small (`MAX_RESPONSE`
    /// always suffices).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, MgmtError> {
        encode(RESPONSE_MAGIC, self, out)
    }

    /// Reads one whole response datagram. Total: any bytes give a `Response`
    /// or an error (`BadMagic`, `Decode`).
    pub fn decode(bytes: &[u8]) -> Result<Self, MgmtError> {
        decode(RESPONSE_MAGIC, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::*;
    use proptest::prelude::*;

    fn full_status() -> Status {
        let cfg = crate::Config::example();
        let mut interfaces = heapless::Vec::new();
        for i in cfg.interfaces.iter() {
            interfaces
                .push(InterfaceStatus {
                    name: i.name.clone(),
                    mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                    address: i.address,
                    gateway: i.gateway,
                    mtu: i.mtu,
                })
                .unwrap();
        }
        let mut tables = heapless::Vec::new();
        for _ in 0..MAX_TABLES {
            tables
                .push(TableFill {
                    name: "0123456789abcdef".try_into().unwrap(),
                    used: u64::MAX,
                    capacity: u64::MAX,
                })
                .unwrap();
        }
        let max = NetCounters {
            rx_frames: u64::MAX,
            ..Default::default()
        };
        Status {
            node_id: u32::MAX,
            name: "n".repeat(32).as_str().try_into().unwrap(),
            uptime_ms: u64::MAX,
            clock: ClockInfo {
                source: ClockSource::RtcCalibrated,
                tsc_khz: u64::MAX,
            },
            interfaces,
            net: NetCounters {
                rx_bytes: u64::MAX,
                tx_frames: u64::MAX,
                tx_bytes: u64::MAX,
                rx_runt: u64::MAX,
                rx_oversized: u64::MAX,
                rx_not_for_us: u64::MAX,
                rx_unsupported: u64::MAX,
                rx_bad_arp: u64::MAX,
                rx_bad_ipv4: u64::MAX,
                rx_bad_ip_checksum: u64::MAX,
                rx_bad_l4: u64::MAX,
                rx_bad_l4_checksum: u64::MAX,
                rx_driver_errors: u64::MAX,
                tx_ring_full: u64::MAX,
                tx_driver_errors: u64::MAX,
                ..max
            },
            mgmt: MgmtCounters {
                requests: u64::MAX,
                refused_source: u64::MAX,
                refused_shutdown: u64::MAX,
                bad_requests: u64::MAX,
                reply_failures: u64::MAX,
            },
            idle: IdleCounters {
                polls: u64::MAX,
                halts: u64::MAX,
                wakeups: u64::MAX,
            },
            tables,
            allocations: u64::MAX,
        }
    }

    /// A report with every counter at its largest: postcard writes each u64
    /// as a varint, so a default report's encoding has one zero byte per
    /// field, and the same count of 10-byte maximal varints decodes to it.
    fn full_proxy_report() -> ProxyReport {
        let zeros = postcard::to_allocvec(&ProxyReport::default()).unwrap();
        assert!(zeros.iter().all(|&b| b == 0));
        let mut max = Vec::new();
        for _ in &zeros {
            max.extend_from_slice(&[0xff; 9]);
            max.push(0x01);
        }
        let r: ProxyReport = postcard::from_bytes(&max).unwrap();
        assert_eq!(r.data.rx_client, u64::MAX);
        assert_eq!(r.proxy.iap.lookups_sent, u64::MAX);
        r
    }

    #[test]
    fn largest_proxy_report_fits_the_response_bound() {
        let r = Response {
            version: VERSION,
            nonce: u32::MAX,
            body: Body::Proxy(full_proxy_report()),
        };
        let mut out = [0u8; MAX_RESPONSE];
        let n = r.encode(&mut out).unwrap();
        assert_eq!(Response::decode(&out[..n]).unwrap(), r);
    }

    #[test]
    fn largest_status_fits_the_response_bound() {
        let r = Response {
            version: VERSION,
            nonce: u32::MAX,
            body: Body::Status(full_status()),
        };
        let mut out = [0u8; MAX_RESPONSE];
        let n = r.encode(&mut out).unwrap();
        assert_eq!(Response::decode(&out[..n]).unwrap(), r);
    }

    #[test]
    fn request_round_trip_and_refusals() {
        let q = Request {
            version: VERSION,
            nonce: 7,
            op: Op::Shutdown,
        };
        let mut out = [0u8; MAX_REQUEST];
        let n = q.encode(&mut out).unwrap();
        assert_eq!(Request::decode(&out[..n]).unwrap(), q);
        assert_eq!(
            Request::decode(b"NOPE\x01\x07\x00"),
            Err(MgmtError::BadMagic)
        );
        assert_eq!(
            Request::decode(&[0u8; MAX_REQUEST + 1]),
            Err(MgmtError::TooLong)
        );
        let mut trailing = out[..n].to_vec();
        trailing.push(0);
        assert_eq!(Request::decode(&trailing), Err(MgmtError::Decode));
    }

    proptest! {
        #[test]
        fn decoders_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
