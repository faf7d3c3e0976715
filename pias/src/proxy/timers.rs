//! The proxy's one timer table (quinn-proto's `TimerTable`): a deadline per
//! kind of timer; `poll_timeout` is the earliest, `None` when none is armed.

use crate::time::Instant;

/// The kinds of timer a proxy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Heartbeats to watchers and the check for silent watched peers.
    Heartbeat,
    /// The next RTT probe.
    Probe,
    /// Idle flows, old probes and decayed flap damping are swept.
    Sweep,
    /// The earliest target ping or passive check over the JAP's groups.
    Targets,
    /// The earliest count-report retry or refresh over the JAP's groups.
    Reports,
    /// The RAP forgets JAP entries that were not refreshed.
    RapExpiry,
    /// The earliest lookup deadline over the IAP's pending lookups.
    Lookups,
}

impl Timer {
    /// Every kind, in the order `handle_timeout` runs them.
    pub const ALL: [Timer; 7] = [
        Timer::Heartbeat,
        Timer::Targets,
        Timer::Reports,
        Timer::Lookups,
        Timer::Probe,
        Timer::RapExpiry,
        Timer::Sweep,
    ];

    fn index(self) -> usize {
        match self {
            Timer::Heartbeat => 0,
            Timer::Probe => 1,
            Timer::Sweep => 2,
            Timer::Targets => 3,
            Timer::Reports => 4,
            Timer::RapExpiry => 5,
            Timer::Lookups => 6,
        }
    }
}

/// A deadline per timer kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 7],
}

impl TimerTable {
    /// Arms `t` for `at` (replacing its deadline).
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.deadlines[t.index()] = Some(at);
    }

    /// Arms `t` for `at` unless it is armed earlier already.
    pub fn set_earliest(&mut self, t: Timer, at: Instant) {
        let slot = &mut self.deadlines[t.index()];
        *slot = Some(slot.map_or(at, |d| d.min(at)));
    }

    /// Disarms `t`.
    pub fn stop(&mut self, t: Timer) {
        self.deadlines[t.index()] = None;
    }

    /// The deadline of `t`, if armed.
    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.deadlines[t.index()]
    }

    /// Whether `t` is armed and due at `now`.
    pub fn is_due(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|d| d <= now)
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_armed_timer_and_none_when_idle() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Sweep, 50);
        t.set(Timer::Lookups, 30);
        t.set_earliest(Timer::Lookups, 40);
        assert_eq!(t.get(Timer::Lookups), Some(30));
        t.set_earliest(Timer::Lookups, 10);
        assert_eq!(t.next(), Some(10));
        assert!(t.is_due(Timer::Lookups, 10) && !t.is_due(Timer::Sweep, 49));
        t.stop(Timer::Lookups);
        assert_eq!(t.next(), Some(50));
        t.stop(Timer::Sweep);
        assert_eq!(t.next(), None);
        let distinct: std::collections::HashSet<usize> =
            Timer::ALL.iter().map(|t| t.index()).collect();
        assert_eq!(distinct.len(), Timer::ALL.len());
    }
}
