//! The evaluation of the paper's section 4 and beyond: topology input
//! (GraphML, Rocketfuel) and the stretch graph (`topology`, `internet`), the
//! simulated experiments over unchanged `pias::Proxy` machines (`groupdyn`,
//! `overhead`, `failover`, with `sizing` for their tables), and their CSV/SVG output (`experiments`, `plot`).

pub mod experiments;
pub mod failover;
pub mod groupdyn;
pub mod internet;
pub mod overhead;
pub mod par;
pub mod plot;
pub mod sizing;
pub mod topology;
