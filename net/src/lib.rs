//! The appliance's packet plane, independent of any driver: frame
//! classification and counting, a smoltcp `Device` over the `Nic` trait with
//! its offloads (partial checksums, large TCP frames cut or merged), the
//! proxy data path, metrics, routing and the management service. `no_std`,
//! no unsafe, host-tested.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod classify;
pub mod console;
pub mod dataplane;
pub mod device;
pub mod idle;
pub mod metrics;
pub mod mgmt;
pub mod offload;
pub mod routing;

pub use classify::{classify, classify_offloaded, DropReason};
pub use device::{Nic, NicDevice, NicError, FRAME_MAX, RX_BUF_LEN};
pub use offload::Offload;
