//! The lab harness: build the appliance (`build`), choose machine and
//! accelerator (`machine`), wire network namespaces, bridges and taps and boot
//! appliances in them (`lab`), and talk to them: management queries and ICMP
//! echo from inside the lab (`client`). Labs are removed on drop and on Ctrl-C.

pub mod bgpbench;
pub mod build;
pub mod client;
pub mod delayline;
pub mod host;
pub mod lab;
pub mod machine;
pub mod pops;
pub mod proxybench;
pub use pias_ctl::report;
pub mod routers;
pub mod rr;
pub mod services;
pub mod topo;
pub mod udpload;
pub mod vslinux;

pub use lab::{Appliance, ConfigDelivery, Lab, LinuxBoot, Spec};
pub use machine::{Accel, Machine};
