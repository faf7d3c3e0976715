//! The management protocol on the UDP management port: a request (status,
//! proxy counters or shutdown) and its response, each authenticated with the
//! appliance's management key.
//!
//! Every version frames a datagram the same way, so that an appliance can
//! verify a request of a version it does not speak and refuse it clearly:
//!
//! ```text
//! request:  "PIAQ" | version u8 | nonce u64 LE | version's fields | MAC (16)
//! response: "PIAR" | version u8 | the request's nonce u64 LE | body | MAC (16)
//! ```
//!
//! The MAC is HMAC-SHA256 under the management key over a label ("pias mgmt
//! request" or "pias mgmt response") and every byte before it, cut to 16
//! bytes. Version 3's fields are the sender's Unix time in ms (u64 LE) and the
//! operation (u8); its body is a postcard `Body`. The appliance answers
//! nothing it cannot verify; see `pias_net::mgmt::serve` for the checks.

use crate::addr::{Group, Ipv4, Transport};
use crate::status::{ProxyReport, Status};
use crate::wire::Key;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// "PIAQ": the first four bytes of every request datagram.
pub const REQUEST_MAGIC: [u8; 4] = *b"PIAQ";
/// "PIAR": the first four bytes of every response datagram.
pub const RESPONSE_MAGIC: [u8; 4] = *b"PIAR";
/// The protocol version this build speaks. Version 2 and older carried no
/// MAC: an appliance of this version answers them nothing. Version 4 added
/// the kernel's version to the status; version 5 the metrics port's
/// counters (`Status::http`); version 6 the offload counters of `NetCounters`;
/// version 7 the receive overruns (`NetCounters::rx_overruns`), the console's
/// dropped bytes, `DataCounters::arp_announcements` and
/// `JapCounters::misses_excused`; version 8 `NetCounters::tx_ring_waits`
/// and `IdleCounters::device_wakeups`; version 9 `IdleCounters::policy_trials`
/// and `IdleCounters::policy_switches`; version 10 `Status::loop_mode`.
pub const VERSION: u8 = 10;
/// Bytes of the MAC that ends every datagram.
pub const MAC_LEN: usize = 16;
/// A response fits in this many bytes: one UDP datagram on a 1500-byte MTU.
pub const MAX_RESPONSE: usize = 1472;
/// Requests are small; anything longer is refused unread.
pub const MAX_REQUEST: usize = 64;
/// A request without an argument: magic, version, nonce, time, op and MAC.
pub const REQUEST_LEN: usize = 4 + 1 + 8 + 8 + 1 + MAC_LEN;
/// `Op::Group`'s argument: the group's address, port (big-endian) and
/// transport (0 UDP, 1 TCP), as `Group::key_bytes`.
pub const GROUP_ARG_LEN: usize = 7;
/// The shortest datagram of any version: magic, version, nonce and MAC.
pub const MIN_DATAGRAM: usize = 4 + 1 + 8 + MAC_LEN;
/// A request whose time is further than this from the appliance's clock is
/// refused as stale (ms); the appliance remembers each nonce this long after
/// its time, so a replay is refused until it is stale.
pub const FRESHNESS_MS: u64 = 10_000;

const REQUEST_LABEL: &[u8] = b"pias mgmt request";
const RESPONSE_LABEL: &[u8] = b"pias mgmt response";
const VERSION_AT: usize = 4;
const NONCE_AT: usize = 5;
const TIME_AT: usize = 13;
const OP_AT: usize = 21;
const HEADER_LEN: usize = 13;

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
    /// Drain: re-announce the anycast prefixes with GRACEFUL_SHUTDOWN, then
    /// withdraw them after `bgp.drain_delay_ms`; the proxy keeps serving
    /// what still reaches it. Refused (`Refusal::NoBgp`) without BGP.
    Drain,
    /// End a drain: announce again as health allows.
    Undrain,
    /// What BGP is doing (`RoutingReport`).
    Routing,
    /// What this proxy knows of a group as IAP, JAP and RAP (`GroupReport`);
    /// the group travels after the op byte (`GROUP_ARG_LEN` bytes).
    Group(Group),
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Status => 0,
            Op::Proxy => 1,
            Op::Shutdown => 2,
            Op::Drain => 3,
            Op::Undrain => 4,
            Op::Routing => 5,
            Op::Group(_) => 6,
        }
    }

    /// The op from its code and the bytes after it (which must be exactly
    /// its argument).
    fn decode(c: u8, arg: &[u8]) -> Option<Op> {
        let op = match c {
            0 => Op::Status,
            1 => Op::Proxy,
            2 => Op::Shutdown,
            3 => Op::Drain,
            4 => Op::Undrain,
            5 => Op::Routing,
            6 => {
                let [a, b, c, d, p, q, t]: [u8; GROUP_ARG_LEN] = arg.try_into().ok()?;
                let transport = match t {
                    0 => Transport::Udp,
                    1 => Transport::Tcp,
                    _ => return None,
                };
                return Some(Op::Group(Group {
                    ip: Ipv4([a, b, c, d]),
                    port: u16::from_be_bytes([p, q]),
                    transport,
                }));
            }
            _ => return None,
        };
        arg.is_empty().then_some(op)
    }

    /// The argument's bytes after the op code.
    fn arg(&self) -> ([u8; GROUP_ARG_LEN], usize) {
        match self {
            Op::Group(g) => (g.key_bytes(), GROUP_ARG_LEN),
            _ => ([0; GROUP_ARG_LEN], 0),
        }
    }
}

/// A version 3 management request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Random per request: echoed in the response (which a client matches to
    /// its request by it) and remembered by the appliance against replay.
    pub nonce: u64,
    /// The sender's clock, Unix time in ms.
    pub unix_ms: u64,
    /// The operation asked for.
    pub op: Op,
}

/// Why a request that passed every check was answered with a refusal.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request's version is not this build's (its MAC was good).
    Version,
    /// Shutdown is disabled by `management.allow_shutdown = false`.
    ShutdownDisabled,
    /// Drain or undrain asked of an appliance without BGP neighbours.
    NoBgp,
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
    /// The routing report (`Op::Routing`); for `Op::Drain` and
    /// `Op::Undrain`, with `draining` as the request set it.
    Routing(crate::status::RoutingReport),
    /// What the proxy knows of the group asked about (`Op::Group`).
    Group(crate::status::GroupReport),
    /// The request was understood but not carried out.
    Refused(Refusal),
}

/// A management response.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The responder's protocol version (`VERSION`), also when it refuses the
    /// request's.
    pub version: u8,
    /// The request's nonce, unchanged.
    pub nonce: u64,
    /// The answer.
    pub body: Body,
}

/// Why a management datagram could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtError {
    /// Shorter than the framing, or the first 4 bytes are not the expected magic.
    BadMagic,
    /// A request longer than `MAX_REQUEST` bytes (refused unread).
    TooLong,
    /// The MAC does not verify under the key: a forgery, another key, or an
    /// unauthenticated (version 2 or older) request.
    BadMac,
    /// Authentic, but of another version (its nonce, to answer with).
    Version {
        /// The request's nonce.
        nonce: u64,
        /// The version it speaks.
        version: u8,
    },
    /// Authentic and of this version, but its fields or body do not decode.
    Decode,
    /// The output buffer cannot hold the datagram.
    NoSpace,
}

fn mac(key: &Key, label: &[u8], bytes: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    // The fixed-size constructor (a 32-byte key padded to the block) cannot fail.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&key.0);
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&block.into());
    m.update(label);
    m.update(bytes);
    m
}

/// Appends the MAC of `out[..n]` and returns the datagram's length.
fn seal(key: &Key, label: &[u8], out: &mut [u8], n: usize) -> Result<usize, MgmtError> {
    let end = n + MAC_LEN;
    if out.len() < end {
        return Err(MgmtError::NoSpace);
    }
    let tag = mac(key, label, &out[..n]).finalize().into_bytes();
    out[n..end].copy_from_slice(&tag[..MAC_LEN]);
    Ok(end)
}

/// Checks magic, length and MAC (in constant time); the bytes it covers.
fn open<'a>(
    key: &Key,
    label: &[u8],
    magic: [u8; 4],
    bytes: &'a [u8],
) -> Result<&'a [u8], MgmtError> {
    if bytes.len() < MIN_DATAGRAM || bytes[..4] != magic {
        return Err(MgmtError::BadMagic);
    }
    let (covered, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    mac(key, label, covered)
        .verify_truncated_left(tag)
        .map_err(|_| MgmtError::BadMac)?;
    Ok(covered)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Seals `covered` (a request of any version, its MAC left out) into `out`:
/// `covered` then its MAC; the datagram's length. For clients of other
/// versions and for tests.
pub fn seal_request_bytes(key: &Key, covered: &[u8], out: &mut [u8]) -> Result<usize, MgmtError> {
    let n = covered.len();
    if out.len() < n {
        return Err(MgmtError::NoSpace);
    }
    out[..n].copy_from_slice(covered);
    seal(key, REQUEST_LABEL, out, n)
}

impl Request {
    /// Writes the request, sealed with `key`; `Ok(n)` is the datagram's length.
    pub fn seal(&self, key: &Key, out: &mut [u8]) -> Result<usize, MgmtError> {
        let (arg, arg_len) = self.op.arg();
        let n = REQUEST_LEN - MAC_LEN + arg_len;
        if out.len() < n + MAC_LEN {
            return Err(MgmtError::NoSpace);
        }
        out[..4].copy_from_slice(&REQUEST_MAGIC);
        out[VERSION_AT] = VERSION;
        out[NONCE_AT..TIME_AT].copy_from_slice(&self.nonce.to_le_bytes());
        out[TIME_AT..OP_AT].copy_from_slice(&self.unix_ms.to_le_bytes());
        out[OP_AT] = self.op.code();
        out[OP_AT + 1..n].copy_from_slice(&arg[..arg_len]);
        seal(key, REQUEST_LABEL, out, n)
    }

    /// Reads one whole request datagram: length, magic and MAC first (nothing
    /// else is read from an unauthenticated datagram), then the version, then
    /// the fields. Total: any bytes give a `Request` or an error. Freshness and
    /// replay are the caller's to check.
    pub fn open(key: &Key, bytes: &[u8]) -> Result<Self, MgmtError> {
        if bytes.len() > MAX_REQUEST {
            return Err(MgmtError::TooLong);
        }
        let b = open(key, REQUEST_LABEL, REQUEST_MAGIC, bytes)?;
        let nonce = u64_at(b, NONCE_AT);
        if b[VERSION_AT] != VERSION {
            return Err(MgmtError::Version {
                nonce,
                version: b[VERSION_AT],
            });
        }
        if b.len() <= OP_AT {
            return Err(MgmtError::Decode);
        }
        let op = Op::decode(b[OP_AT], &b[OP_AT + 1..]).ok_or(MgmtError::Decode)?;
        Ok(Request {
            nonce,
            unix_ms: u64_at(b, TIME_AT),
            op,
        })
    }
}

impl Response {
    /// Writes the response, sealed with `key`; `Ok(n)` is the datagram's
    /// length (`MAX_RESPONSE` always suffices).
    pub fn seal(&self, key: &Key, out: &mut [u8]) -> Result<usize, MgmtError> {
        if out.len() < HEADER_LEN + MAC_LEN {
            return Err(MgmtError::NoSpace);
        }
        out[..4].copy_from_slice(&RESPONSE_MAGIC);
        out[VERSION_AT] = self.version;
        out[NONCE_AT..HEADER_LEN].copy_from_slice(&self.nonce.to_le_bytes());
        let room = out.len() - MAC_LEN;
        let body = postcard::to_slice(&self.body, &mut out[HEADER_LEN..room])
            .map_err(|_| MgmtError::NoSpace)?
            .len();
        seal(key, RESPONSE_LABEL, out, HEADER_LEN + body)
    }

    /// Reads one whole response datagram, verifying its MAC under `key`
    /// first. Total: any bytes give a `Response` or an error; the caller
    /// checks its nonce and version.
    pub fn open(key: &Key, bytes: &[u8]) -> Result<Self, MgmtError> {
        let b = open(key, RESPONSE_LABEL, RESPONSE_MAGIC, bytes)?;
        let (body, rest) =
            postcard::take_from_bytes(&b[HEADER_LEN..]).map_err(|_| MgmtError::Decode)?;
        if !rest.is_empty() {
            return Err(MgmtError::Decode);
        }
        Ok(Response {
            version: b[VERSION_AT],
            nonce: u64_at(b, NONCE_AT),
            body,
        })
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
            version: "v"
                .repeat(crate::status::VERSION_LEN)
                .as_str()
                .try_into()
                .unwrap(),
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
                tx_ring_waits: u64::MAX,
                tx_driver_errors: u64::MAX,
                rx_large: u64::MAX,
                rx_large_cut: u64::MAX,
                rx_coalesced: u64::MAX,
                rx_bad_offload: u64::MAX,
                tx_large: u64::MAX,
                rx_overruns: u64::MAX,
                ..max
            },
            mgmt: MgmtCounters {
                requests: u64::MAX,
                refused_source: u64::MAX,
                refused_shutdown: u64::MAX,
                refused_no_bgp: u64::MAX,
                bad_requests: u64::MAX,
                bad_mac: u64::MAX,
                bad_version: u64::MAX,
                stale: u64::MAX,
                replayed: u64::MAX,
                replay_full: u64::MAX,
                reply_failures: u64::MAX,
            },
            http: HttpCounters {
                connections: u64::MAX,
                refused_source: u64::MAX,
                refused_busy: u64::MAX,
                served: u64::MAX,
                bad_requests: u64::MAX,
                bad_method: u64::MAX,
                not_found: u64::MAX,
                too_large: u64::MAX,
                timeouts: u64::MAX,
            },
            idle: IdleCounters {
                polls: u64::MAX,
                halts: u64::MAX,
                wakeups: u64::MAX,
                device_wakeups: u64::MAX,
                policy_trials: u64::MAX,
                policy_switches: u64::MAX,
            },
            tables,
            allocations: u64::MAX,
            console_dropped: u64::MAX,
            loop_mode: LoopMode::HaltAtOnce,
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

    const KEY: Key = crate::config::EXAMPLE_MANAGEMENT_KEY;

    fn round_trip(r: &Response) {
        let mut out = [0u8; MAX_RESPONSE];
        let n = r.seal(&KEY, &mut out).unwrap();
        assert_eq!(&Response::open(&KEY, &out[..n]).unwrap(), r);
    }

    #[test]
    fn largest_proxy_report_fits_the_response_bound() {
        round_trip(&Response {
            version: VERSION,
            nonce: u64::MAX,
            body: Body::Proxy(full_proxy_report()),
        });
    }

    #[test]
    fn largest_routing_report_fits_the_response_bound() {
        let n = NeighbourReport {
            address: crate::Ipv4([255; 4]),
            remote_as: u32::MAX,
            state: BgpState::Established,
            advertised: Advertised::GracefulShutdown,
            hold_time_s: u16::MAX,
            established: u64::MAX,
            dropped: u64::MAX,
            connect_attempts: u64::MAX,
            updates_in: u64::MAX,
            updates_out: u64::MAX,
            prefixes_in: u64::MAX,
            notifications_in: u64::MAX,
            notifications_out: u64::MAX,
            malformed: u64::MAX,
            hold_expired: u64::MAX,
            connection_lost: u64::MAX,
            last_error_sent: Some((255, 255)),
            last_error_received: Some((255, 255)),
            bfd: crate::status::BfdStatus::AdminDown,
            bfd_downs: u64::MAX,
            bfd_rx_bad: u64::MAX,
        };
        let mut r = RoutingReport {
            enabled: true,
            health: RouteHealth::Degraded,
            serving: true,
            draining: true,
            flips: u64::MAX,
            gtsm_dropped: u64::MAX,
            neighbours: heapless::Vec::new(),
        };
        while r.neighbours.push(n).is_ok() {}
        round_trip(&Response {
            version: VERSION,
            nonce: u64::MAX,
            body: Body::Routing(r),
        });
    }

    #[test]
    fn largest_status_fits_the_response_bound() {
        round_trip(&Response {
            version: VERSION,
            nonce: u64::MAX,
            body: Body::Status(full_status()),
        });
    }

    fn sealed(q: &Request) -> Vec<u8> {
        let mut out = [0u8; MAX_REQUEST];
        let n = q.seal(&KEY, &mut out).unwrap();
        out[..n].to_vec()
    }

    const Q: Request = Request {
        nonce: 0x0123_4567_89ab_cdef,
        unix_ms: 1_780_000_000_000,
        op: Op::Shutdown,
    };

    #[test]
    fn requests_round_trip_under_their_key_only() {
        let bytes = sealed(&Q);
        assert_eq!(bytes.len(), REQUEST_LEN);
        assert_eq!(Request::open(&KEY, &bytes), Ok(Q));
        let other = crate::config::EXAMPLE_KEY;
        assert_eq!(Request::open(&other, &bytes), Err(MgmtError::BadMac));
        // Every single flipped bit is caught (field or MAC).
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let e = Request::open(&KEY, &b).unwrap_err();
                assert!(
                    matches!(e, MgmtError::BadMac | MgmtError::BadMagic),
                    "byte {i} bit {bit}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_and_foreign_requests_are_named() {
        let bytes = sealed(&Q);
        assert_eq!(
            Request::open(&KEY, &bytes[..MIN_DATAGRAM - 1]),
            Err(MgmtError::BadMagic)
        );
        assert_eq!(
            Request::open(&KEY, &[0u8; MAX_REQUEST + 1]),
            Err(MgmtError::TooLong)
        );
        let mut nope = bytes.clone();
        nope[..4].copy_from_slice(b"NOPE");
        assert_eq!(Request::open(&KEY, &nope), Err(MgmtError::BadMagic));
        // A version 2 request (magic, then postcard {version 2, nonce, op}):
        // no MAC, so it is not authentic.
        assert_eq!(
            Request::open(&KEY, b"PIAQ\x02\x07\x00"),
            Err(MgmtError::BadMagic)
        );
        let mut v2 = b"PIAQ\x02\x07\x00".to_vec();
        v2.resize(MIN_DATAGRAM, 0);
        assert_eq!(Request::open(&KEY, &v2), Err(MgmtError::BadMac));
        // An authentic request of a later version (longer, other fields) is
        // recognised as such, with the nonce to answer.
        let mut later = bytes[..HEADER_LEN].to_vec();
        later[VERSION_AT] = VERSION + 1;
        later.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let n = later.len();
        later.resize(n + MAC_LEN, 0);
        let n = seal(&KEY, REQUEST_LABEL, &mut later, n).unwrap();
        assert_eq!(
            Request::open(&KEY, &later[..n]),
            Err(MgmtError::Version {
                nonce: Q.nonce,
                version: VERSION + 1
            })
        );
        // This version with an unknown operation, authentic: a decode error.
        let mut bad_op = bytes[..REQUEST_LEN - MAC_LEN].to_vec();
        bad_op[OP_AT] = 7;
        bad_op.resize(REQUEST_LEN, 0);
        seal(&KEY, REQUEST_LABEL, &mut bad_op, REQUEST_LEN - MAC_LEN).unwrap();
        assert_eq!(Request::open(&KEY, &bad_op), Err(MgmtError::Decode));
    }

    #[test]
    fn the_wire_layout_is_the_documented_one() {
        // docs/appliance.md: a request is 38 bytes; any datagram 29..=64.
        assert_eq!((REQUEST_LEN, MIN_DATAGRAM, MAX_REQUEST), (38, 29, 64));
        // Every operation travels as its own code and comes back as itself.
        let ops = [
            (Op::Status, 0),
            (Op::Proxy, 1),
            (Op::Shutdown, 2),
            (Op::Drain, 3),
            (Op::Undrain, 4),
            (Op::Routing, 5),
        ];
        for (op, code) in ops {
            let q = Request { op, ..Q };
            let bytes = sealed(&q);
            assert_eq!(bytes[OP_AT], code, "{op:?}");
            assert_eq!(Request::open(&KEY, &bytes), Ok(q));
        }
        assert_eq!(Op::decode(7, &[]), None);
        assert_eq!(Op::decode(0, &[0]), None, "no argument to Status");
    }

    #[test]
    fn a_group_request_carries_its_group_and_nothing_else() {
        for (g, arg) in [
            ("203.0.113.10:53/udp", [203, 0, 113, 10, 0, 53, 0]),
            ("203.0.113.255:65535/tcp", [203, 0, 113, 255, 255, 255, 1]),
        ] {
            let q = Request {
                op: Op::Group(g.parse().unwrap()),
                ..Q
            };
            let bytes = sealed(&q);
            assert_eq!(bytes.len(), REQUEST_LEN + GROUP_ARG_LEN);
            assert_eq!(bytes[OP_AT], 6);
            assert_eq!(bytes[OP_AT + 1..OP_AT + 1 + GROUP_ARG_LEN], arg);
            assert_eq!(Request::open(&KEY, &bytes), Ok(q));
            let mut room = [0u8; REQUEST_LEN + GROUP_ARG_LEN - 1];
            assert_eq!(q.seal(&KEY, &mut room), Err(MgmtError::NoSpace));
        }
        // Authentic, but a short or long argument, or a transport that is
        // neither UDP nor TCP: refused.
        let good = sealed(&Request {
            op: Op::Group("203.0.113.10:53/udp".parse().unwrap()),
            ..Q
        });
        let covered = &good[..good.len() - MAC_LEN];
        let mut cases = vec![covered[..covered.len() - 1].to_vec()];
        let mut long = covered.to_vec();
        long.push(0);
        cases.push(long);
        let mut udp_tcp = covered.to_vec();
        *udp_tcp.last_mut().unwrap() = 2;
        cases.push(udp_tcp);
        for c in cases {
            let mut out = [0u8; MAX_REQUEST];
            let n = seal_request_bytes(&KEY, &c, &mut out).unwrap();
            assert_eq!(
                Request::open(&KEY, &out[..n]),
                Err(MgmtError::Decode),
                "{c:?}"
            );
        }
    }

    #[test]
    fn the_largest_group_report_fits_a_response() {
        let g: crate::addr::Group = "255.255.255.255:65535/tcp".parse().unwrap();
        let max_list = |n: usize| (0..n).map(|_| u32::MAX).collect::<heapless::Vec<_, 8>>();
        let t = TargetView {
            endpoint: crate::addr::Endpoint {
                ip: crate::Ipv4([255; 4]),
                port: u16::MAX,
            },
            weight: u16::MAX,
            health: TargetHealth::Suspect,
            draining: true,
            flows: u32::MAX,
        };
        let report = GroupReport {
            group: g,
            served: true,
            raps: max_list(crate::proxy::MAX_K),
            iap: Some(IapView {
                cached: true,
                japs: (0..crate::wire::MAX_RANKED)
                    .map(|_| (u32::MAX, u32::MAX))
                    .collect(),
                expires_in_ms: u64::MAX,
                lookup_pending: true,
            }),
            jap: Some(JapView {
                targets: (0..REPORT_TARGETS).map(|_| t).collect(),
                targets_total: u32::MAX,
                members: u32::MAX,
                reported: Some(u32::MAX),
                reported_to: max_list(crate::proxy::MAX_K),
                acked_by: max_list(crate::proxy::MAX_K),
            }),
            rap: Some(RapView {
                entries: (0..REPORT_RAP_ENTRIES)
                    .map(|_| (u32::MAX, u32::MAX, u64::MAX))
                    .collect(),
                entries_total: u32::MAX,
            }),
        };
        let r = Response {
            version: VERSION,
            nonce: u64::MAX,
            body: Body::Group(report.clone()),
        };
        let mut out = [0u8; MAX_RESPONSE];
        let n = r.seal(&KEY, &mut out).expect("fits");
        assert_eq!(
            Response::open(&KEY, &out[..n]).unwrap().body,
            Body::Group(report)
        );
    }

    #[test]
    fn sealing_needs_exactly_the_room_it_uses() {
        let mut out = [0u8; REQUEST_LEN];
        assert_eq!(Q.seal(&KEY, &mut out), Ok(REQUEST_LEN));
        assert_eq!(
            Q.seal(&KEY, &mut out[..REQUEST_LEN - 1]),
            Err(MgmtError::NoSpace)
        );
        // Any covered bytes: sealed into a larger buffer or one of just the
        // right size, refused in a smaller one; what comes out verifies.
        let covered = &sealed(&Q)[..REQUEST_LEN - MAC_LEN];
        let mut big = [0u8; MAX_REQUEST];
        assert_eq!(seal_request_bytes(&KEY, covered, &mut big), Ok(REQUEST_LEN));
        assert_eq!(Request::open(&KEY, &big[..REQUEST_LEN]), Ok(Q));
        assert_eq!(
            seal_request_bytes(&KEY, covered, &mut big[..REQUEST_LEN]),
            Ok(REQUEST_LEN)
        );
        for short in [REQUEST_LEN - 1, covered.len() - 1, 4] {
            assert_eq!(
                seal_request_bytes(&KEY, covered, &mut big[..short]),
                Err(MgmtError::NoSpace),
                "{short} bytes"
            );
        }
        // An authentic datagram of the longest accepted length is read (here:
        // a later version), one byte more is refused unread.
        let mut longest = [0u8; MAX_REQUEST + 1];
        longest[..HEADER_LEN].copy_from_slice(&sealed(&Q)[..HEADER_LEN]);
        longest[VERSION_AT] = VERSION + 1;
        let n = seal(&KEY, REQUEST_LABEL, &mut longest, MAX_REQUEST - MAC_LEN).unwrap();
        assert_eq!(n, MAX_REQUEST);
        assert_eq!(
            Request::open(&KEY, &longest[..n]),
            Err(MgmtError::Version {
                nonce: Q.nonce,
                version: VERSION + 1
            })
        );
        // A response with a one-byte body fits a buffer of just its size.
        let r = Response {
            version: VERSION,
            nonce: 9,
            body: Body::ShuttingDown,
        };
        let mut out = [0u8; HEADER_LEN + 1 + MAC_LEN];
        assert_eq!(r.seal(&KEY, &mut out), Ok(HEADER_LEN + 1 + MAC_LEN));
        assert_eq!(Response::open(&KEY, &out), Ok(r));
    }

    #[test]
    fn a_response_is_bound_to_its_key_and_label() {
        let r = Response {
            version: VERSION,
            nonce: 9,
            body: Body::ShuttingDown,
        };
        let mut out = [0u8; MAX_RESPONSE];
        let n = r.seal(&KEY, &mut out).unwrap();
        assert_eq!(
            Response::open(&crate::config::EXAMPLE_KEY, &out[..n]),
            Err(MgmtError::BadMac)
        );
        // A request's MAC does not make a response, even with the magic swapped.
        let mut q = sealed(&Q);
        q[..4].copy_from_slice(&RESPONSE_MAGIC);
        assert!(Response::open(&KEY, &q).is_err());
        assert_eq!(
            r.seal(&KEY, &mut out[..HEADER_LEN + 1]),
            Err(MgmtError::NoSpace)
        );
    }

    proptest! {
        #[test]
        fn decoders_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::open(&KEY, &bytes);
            let _ = Response::open(&KEY, &bytes);
        }
    }
}
