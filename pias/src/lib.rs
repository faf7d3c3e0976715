//! PIAS core: the types shared by the appliance and the host tools.
//!
//! `no_std`, no I/O, no unsafe. This crate holds the boot-time configuration
//! (`config`, `blob`), the management protocol and status report (`mgmt`,
//! `status`), and the small address types they use (`addr`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod addr;
pub mod blob;
pub mod config;
pub mod exit;
pub mod fixed;
pub mod ids;
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
