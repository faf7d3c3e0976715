//! The management client (authenticated requests over a UDP socket, every
//! wait bounded) and the readable reports, shared by `piasctl` and the lab
//! harness.

pub mod client;
pub mod report;

pub use client::{Client, ClientError};
