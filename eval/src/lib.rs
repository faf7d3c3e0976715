//! The evaluation of the paper's section 4 and beyond: topology input
//! (GraphML, Rocketfuel) and the stretch graph (`topology`, `internet`), the
//! simulated experiments over unchanged `pias::Proxy` machines (`groupdyn` with
//! its `workload`, `overhead`, `failover`, with `sizing` for their tables),
//! their CSV output (`experiments`), and the figures and the documentation's
//! tables drawn from those CSV files (`figures`, `plot`, `doctables`, with the
//! paper's reference values in `paper`).

pub mod csvdata;
pub mod doctables;
pub mod experiments;
pub mod failover;
pub mod figures;
pub mod groupdyn;
pub mod internet;
pub mod overhead;
pub mod paper;
pub mod par;
pub mod plot;
pub mod sizing;
pub mod topology;
pub mod workload;
