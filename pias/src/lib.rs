//! PIAS core: everything the appliance, the simulator and the host tools
//! share, from the config format to the proxy state machine itself.
//!
//! `no_std` (with `alloc`), no I/O, no unsafe. The crate holds:
//!
//! - **Configuration**: one appliance's [`config::Config`], its checks
//!   (`Config::validate`, which names the offending field), and the boot-time
//!   [`blob`] that carries it (header, CRC, postcard), whose errors map to the
//!   kernel's [`exit`] codes.
//! - **Management**: the [`mgmt`] request/response protocol on the management
//!   port and the [`status`] report it returns (identity, clock, interfaces,
//!   counters, table fill).
//! - **Wire protocol**: [`wire`], the signed proxy-to-proxy and
//!   target-to-proxy messages (header, postcard body, truncated HMAC-SHA256),
//!   with a total parser.
//! - **The proxy**: [`proxy::Proxy`], one PIAS proxy as a sans-IO state
//!   machine with the paper's three roles, IAP (ingress: caches each group's
//!   JAPs and carries client packets to them), JAP (join point: holds the
//!   targets, checks their health, NATs client flows to them) and RAP
//!   (rendezvous: knows each group's JAPs and answers lookups), plus
//!   membership (heartbeats between watching clusters, SWIM-style news).
//! - **Fixed-capacity tables**: [`fixed`] (`FixedVec`, `FixedMap`, FxHash)
//!   and [`pool`] (`ListPool`, per-group lists in one shared slab); they
//!   reserve once and answer "full" instead of growing.
//! - **Anti-replay**: [`replay`], a per-sender sequence window and a cache of
//!   recent registration nonces, both of fixed size.
//! - **Placement**: [`ring`], consistent hashing (splitmix64) of groups onto
//!   RAPs, over the [`roster`] of every proxy in the deployment, built once
//!   and shared.
//! - **Proximity**: [`proximity`], Vivaldi network coordinates that predict
//!   the RTT between proxies.
//! - **Time and ids**: [`time`] (microsecond `Instant`s, passed in by the
//!   caller), [`ids`] (proxy ids, roster entries, incarnations) and [`addr`]
//!   (IPv4 addresses, prefixes, endpoints, anycast groups).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod addr;
pub mod blob;
pub mod config;
pub mod exit;
pub mod fixed;
pub mod ids;
pub mod keys;
pub mod mgmt;
pub mod pool;
pub mod proximity;
pub mod proxy;
pub mod replay;
pub mod ring;
pub mod roster;
pub mod status;
pub mod time;
pub mod wire;

pub use addr::{Endpoint, Group, Ipv4, Ipv4Prefix, Transport};
pub use config::Config;
