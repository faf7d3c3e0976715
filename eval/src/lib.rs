//! The evaluation of the paper's section 4: topology input (GraphML with
//! Latitude/Longitude, Rocketfuel `.cch` maps with a city table) turned into
//! POP-level graphs, checked for connectivity, with clear errors naming the
//! file and the line or node at fault.

pub mod internet;
pub mod topology;
