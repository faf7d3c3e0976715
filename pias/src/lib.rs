//! PIAS core: the types shared by the appliance and the host tools.
//!
//! `no_std`, no I/O, no unsafe. This crate holds the boot-time configuration
//! (`config`, `blob`), the management protocol and status report (`mgmt`,
//! `status`), and the small address types they use (`addr`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod blob;
pub mod config;
pub mod exit;
pub mod mgmt;
pub mod status;

pub use addr::{Ipv4, Ipv4Prefix};
pub use config::Config;
