//! A small BGP-4 speaker (RFC 4271) for an anycast appliance: it announces a
//! few prefixes with next-hop self and withdraws them, and parses (but does
//! not install) what its peer sends. `wire` holds the message views and their
//! total parsing; `session` the per-neighbour FSM, sans-IO: the caller owns
//! the TCP connection, feeds received bytes and the time in, and takes bytes
//! to send out. `no_std`, no unsafe, no allocation.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod announce;
pub mod bfd;
pub mod session;
pub mod wire;

pub use announce::{AnnounceConfig, Announcer, Health};
pub use session::{Counters, Route, Session, SessionConfig, State};
pub use wire::{Error, Message, Prefix};

/// Milliseconds: the unit of every `now` and timer here.
pub type Millis = u64;
