//! The one clock every state machine is given: `Instant`, microseconds, passed
//! in as `now` (sans-IO), and the units to write durations with.

/// Time in microseconds. The proxy treats it as wall-clock time for the
/// freshness of registrations (the caller's clock must be roughly in sync).
pub type Instant = u64;
/// One millisecond, in `Instant` units.
pub const MS: u64 = 1_000;
/// One second, in `Instant` units.
pub const SEC: u64 = 1_000_000;
