//! How long the main loop keeps polling after its last frame before it
//! halts: it measures which of two policies moves more and keeps that.
//!
//! Polling on (spinning) catches a request/response peer's next frame without
//! a halt and an interrupt, which is what one request at a time wants. Under
//! a steady load the spinning vCPU instead takes host CPU that the host needs
//! to deliver the frames (QEMU's I/O thread, the peers): halting at once, and
//! waking on the NIC's interrupt to a batch of frames, moves more. Measured
//! under TCG on a 2-core host: 16 requests in flight 21.5–22.5k req/s spinning
//! against 26–36k halting at once; one in flight 0.10 ms against 0.20 ms p50.
//! Which side of that line a load falls on depends on the load and the host,
//! so [`IdlePolicy`] runs in one mode and, while traffic is heavy, tries the
//! other for one epoch after [`TRY_EVERY`] epochs of its own. A trial that moved at
//! least [`MARGIN_PERCENT`] % more bytes per second than the running mode is
//! tried again after one epoch of the running mode, and a second win in a
//! row switches (one noisy epoch does not). A trial costs what the worse mode
//! loses for an epoch, so each lost trial doubles the wait for the next, up
//! to [`MAX_TRY_EVERY`] epochs; a switch, or the running mode's rate moving
//! by [`LOAD_CHANGE_PERCENT`] % from where the last trial found it (another
//! load), brings it back to [`TRY_EVERY`]. Under light traffic it spins (the
//! two move the same frames, and spinning answers sooner), and under bulk
//! traffic (frames of [`BULK_BYTES_PER_FRAME`] bytes or more on average, a
//! TCP transfer's segments) too: there a halted loop lets the receive ring
//! fill, TCP takes what it loses for congestion and needs seconds to recover,
//! and the trials alone took iperf3 through the appliance from 5.1–5.9 to
//! 2.7–5.7 Gbit/s (TCG, 3 rounds each way). Sans-IO: times are the caller's
//! microseconds.

use pias::status::LoopMode;

/// One epoch: what moved is counted and compared per epoch.
pub const EPOCH_US: u64 = 40_000;
/// Epochs in the running mode between two trials of the other, at first.
pub const TRY_EVERY: u32 = 8;
/// The longest wait between trials, in epochs, after trials kept losing.
pub const MAX_TRY_EVERY: u32 = 64;
/// A running rate this far (percent) from the last trial's resets the wait.
pub const LOAD_CHANGE_PERCENT: u64 = 25;
/// A trial must beat the running mode's bytes per second by this much.
pub const MARGIN_PERCENT: u64 = 15;
/// Frames per second below which traffic is light: no trials, and spinning.
pub const HEAVY_FRAMES_PER_S: u64 = 10_000;
/// Bytes per frame, on average over an epoch, from which traffic is bulk: no
/// trials, and spinning.
pub const BULK_BYTES_PER_FRAME: u64 = 512;

/// What the loop does when a pass found no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keep polling until `spin_us` have passed since the last frame.
    Spin,
    /// Halt at once (until an interrupt or the next deadline).
    HaltAtOnce,
}

impl Mode {
    fn other(self) -> Mode {
        match self {
            Mode::Spin => Mode::HaltAtOnce,
            Mode::HaltAtOnce => Mode::Spin,
        }
    }
}

/// The policy's counters (shown in the status and the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Epochs run in the other mode to compare it with the running one.
    pub trials: u64,
    /// Times the running mode changed (a trial won twice in a row, or
    /// traffic fell light or turned bulk while it halted at once).
    pub switches: u64,
}

/// The idle policy (see the module's documentation).
#[derive(Clone, Debug)]
pub struct IdlePolicy {
    spin_us: u64,
    /// The running mode.
    mode: Mode,
    /// This epoch runs `mode.other()`, as a trial.
    trying: bool,
    /// The last trial won: the next one, one epoch later, confirms it.
    won_once: bool,
    epoch_start: u64,
    frames: u64,
    bytes: u64,
    /// Bytes per second of the running mode's last two whole epochs.
    recent: [Option<u64>; 2],
    /// Epochs in the running mode since the last trial.
    since_trial: u32,
    /// Epochs to wait between trials now (doubled by each lost trial).
    try_every: u32,
    /// The running mode's rate when the last trial was decided.
    rate_at_trial: Option<u64>,
    counters: PolicyCounters,
}

impl IdlePolicy {
    /// A policy that spins `spin_us` after the last frame until it measures
    /// that halting at once moves more; `now` in µs.
    pub fn new(spin_us: u64, now: u64) -> IdlePolicy {
        IdlePolicy {
            spin_us,
            mode: Mode::Spin,
            trying: false,
            won_once: false,
            epoch_start: now,
            frames: 0,
            bytes: 0,
            recent: [None; 2],
            since_trial: 0,
            try_every: TRY_EVERY,
            rate_at_trial: None,
            counters: PolicyCounters::default(),
        }
    }

    /// The mode in effect now (a trial's, during a trial).
    pub fn mode(&self) -> Mode {
        if self.trying {
            self.mode.other()
        } else {
            self.mode
        }
    }

    /// The running mode as the status shows it (a trial's epoch shows the
    /// mode it is tried against).
    pub fn loop_mode(&self) -> LoopMode {
        match self.mode {
            Mode::Spin => LoopMode::SpinThenHalt,
            Mode::HaltAtOnce => LoopMode::HaltAtOnce,
        }
    }

    /// How long to keep polling after the last frame, in µs.
    pub fn spin_us(&self) -> u64 {
        match self.mode() {
            Mode::Spin => self.spin_us,
            Mode::HaltAtOnce => 0,
        }
    }

    /// The policy's counters.
    pub fn counters(&self) -> PolicyCounters {
        self.counters
    }

    /// Counts the `frames` and `bytes` moved (received and sent) by one pass
    /// of the loop at `now`, ending the epoch if it is over. A clock that
    /// goes back starts the epoch again from `now`.
    pub fn record(&mut self, now: u64, frames: u64, bytes: u64) {
        if now < self.epoch_start {
            self.epoch_start = now;
        }
        self.frames = self.frames.saturating_add(frames);
        self.bytes = self.bytes.saturating_add(bytes);
        let elapsed = now.saturating_sub(self.epoch_start);
        if elapsed >= EPOCH_US {
            self.end_epoch(elapsed);
            self.epoch_start = now;
            self.frames = 0;
            self.bytes = 0;
        }
    }

    fn end_epoch(&mut self, elapsed_us: u64) {
        // Per second; an epoch stretched by a long halt counts its time.
        let per_s = |n: u64| n.saturating_mul(1_000_000) / elapsed_us.max(1);
        let rate = per_s(self.bytes);
        let bulk = self.bytes >= self.frames.saturating_mul(BULK_BYTES_PER_FRAME);
        let heavy = per_s(self.frames) >= HEAVY_FRAMES_PER_S && !bulk;
        if self.trying {
            self.trying = false;
            self.counters.trials += 1;
            let running = self.recent.iter().flatten().sum::<u64>() / 2;
            let won =
                heavy && rate.saturating_mul(100) >= running.saturating_mul(100 + MARGIN_PERCENT);
            if won && self.won_once {
                self.switch_to(self.mode.other(), rate);
                return;
            }
            self.won_once = won;
            self.rate_at_trial = Some(running);
            if won {
                // A first win is tried again after one epoch of the running mode.
                self.since_trial = self.try_every.saturating_sub(1);
            } else {
                self.since_trial = 0;
                self.try_every = (self.try_every.saturating_mul(2)).min(MAX_TRY_EVERY);
            }
            return;
        }
        if !heavy {
            // Light traffic: the two move the same frames; spinning answers
            // sooner. Bulk traffic: trials of halting cost TCP dearly. Either
            // way its rate is no baseline for a trial of many small frames.
            if self.mode == Mode::HaltAtOnce {
                self.switch_to(Mode::Spin, rate);
            }
            self.recent = [None, None];
            self.won_once = false;
            return;
        }
        self.recent = [self.recent[1], Some(rate)];
        self.since_trial = self.since_trial.saturating_add(1);
        if let Some(then) = self.rate_at_trial {
            let moved = rate.abs_diff(then).saturating_mul(100);
            if moved >= then.saturating_mul(LOAD_CHANGE_PERCENT) {
                // Another load: what the last trials found no longer holds.
                self.try_every = TRY_EVERY;
                self.rate_at_trial = None;
            }
        }
        if self.since_trial >= self.try_every && self.recent[0].is_some() {
            self.trying = true;
        }
    }

    fn switch_to(&mut self, mode: Mode, rate: u64) {
        self.mode = mode;
        self.counters.switches += 1;
        self.recent = [None, Some(rate)];
        self.since_trial = 0;
        self.won_once = false;
        self.try_every = TRY_EVERY;
        self.rate_at_trial = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    /// Runs `epochs` epochs in which the mode in effect moves
    /// `per_epoch(mode)` (frames, bytes); returns the modes in effect, epoch
    /// by epoch.
    fn run(
        p: &mut IdlePolicy,
        now: &mut u64,
        epochs: usize,
        per_epoch: impl Fn(Mode) -> (u64, u64),
    ) -> Vec<Mode> {
        let mut modes = Vec::new();
        for _ in 0..epochs {
            let mode = p.mode();
            modes.push(mode);
            let (frames, bytes) = per_epoch(mode);
            // What moved arrives over the epoch in 5 passes; the last ends it.
            for i in 1..=5 {
                *now += EPOCH_US / 5;
                let part = |n: u64| if i == 5 { n - n / 5 * 4 } else { n / 5 };
                p.record(*now, part(frames), part(bytes));
            }
        }
        modes
    }

    /// Frames of 100 bytes.
    fn small(frames: u64) -> (u64, u64) {
        (frames, frames * 100)
    }

    /// 16 in flight: halting at once moves 30 % more.
    fn halting_wins(m: Mode) -> (u64, u64) {
        match m {
            Mode::Spin => small(2_000),
            Mode::HaltAtOnce => small(2_600),
        }
    }

    /// One at a time: spinning moves nearly twice as much.
    fn spinning_wins(m: Mode) -> (u64, u64) {
        match m {
            Mode::Spin => small(900),
            Mode::HaltAtOnce => small(500),
        }
    }

    #[test]
    fn starts_spinning_with_the_given_window() {
        let p = IdlePolicy::new(200, 0);
        assert_eq!(p.mode(), Mode::Spin);
        assert_eq!(p.spin_us(), 200);
    }

    #[test]
    fn a_load_that_moves_more_halting_is_run_halting_after_two_trials_in_a_row() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, 40, halting_wins);
        let t = TRY_EVERY as usize;
        // A trial after TRY_EVERY epochs, one epoch spinning, the second trial.
        assert!(modes[..t].iter().all(|&m| m == Mode::Spin), "{modes:?}");
        assert_eq!(
            modes[t..t + 3],
            [Mode::HaltAtOnce, Mode::Spin, Mode::HaltAtOnce]
        );
        assert_eq!(p.counters().switches, 1);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        // Halting from then on, but for its own (losing) trials of spinning,
        // each further from the last.
        let spinning: Vec<usize> = (t + 3..40).filter(|&i| modes[i] == Mode::Spin).collect();
        assert_eq!(spinning.len(), 2, "{modes:?}");
        assert!(
            spinning[1] - spinning[0] > spinning[0] - (t + 2),
            "{spinning:?}"
        );
        assert_eq!(p.spin_us(), if p.mode() == Mode::Spin { 200 } else { 0 });
    }

    #[test]
    fn bulk_traffic_is_never_tried_and_falls_back_to_spinning() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        // A TCP transfer: 64 KB segments one way, acks the other; halting
        // would move more, but no trial runs.
        let bulk = |m: Mode| match m {
            Mode::Spin => (1_000, 1_000 * 8_000),
            Mode::HaltAtOnce => (1_300, 1_300 * 8_000),
        };
        let modes = run(&mut p, &mut now, 60, bulk);
        assert!(modes.iter().all(|&m| m == Mode::Spin), "{modes:?}");
        assert_eq!(p.counters().trials, 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        run(&mut p, &mut now, 2, bulk);
        assert_eq!(p.mode(), Mode::Spin);
    }

    #[test]
    fn a_load_that_moves_more_spinning_keeps_spinning() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, 60, spinning_wins);
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials >= 3, "{:?}", p.counters());
        let halting = modes.iter().filter(|&&m| m == Mode::HaltAtOnce).count();
        assert_eq!(halting as u64, p.counters().trials);
    }

    #[test]
    fn one_lucky_trial_does_not_switch() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let lucky = Cell::new(true);
        run(&mut p, &mut now, 60, |m| match m {
            Mode::Spin => small(2_000),
            // The first trial wins by 30 %, every later one loses.
            Mode::HaltAtOnce => small(if lucky.replace(false) { 2_600 } else { 1_900 }),
        });
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials >= 3, "{:?}", p.counters());
    }

    #[test]
    fn lost_trials_come_ever_more_seldom_up_to_the_cap() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, 400, spinning_wins);
        let trials: Vec<usize> = (0..400).filter(|&i| modes[i] == Mode::HaltAtOnce).collect();
        let waits: Vec<usize> = trials.windows(2).map(|w| w[1] - w[0] - 1).collect();
        let t = TRY_EVERY as usize;
        assert_eq!(trials[0], t);
        assert_eq!(waits[..3], [2 * t, 4 * t, 8 * t], "{trials:?}");
        assert!(
            waits.iter().all(|&w| w <= MAX_TRY_EVERY as usize),
            "{waits:?}"
        );
        assert_eq!(*waits.last().unwrap(), MAX_TRY_EVERY as usize, "{waits:?}");
    }

    #[test]
    fn another_load_brings_the_trials_back_at_once() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        run(&mut p, &mut now, 200, spinning_wins);
        assert_eq!(p.try_every, MAX_TRY_EVERY);
        // The load doubles, halting now moves more: found within
        // TRY_EVERY + a few epochs, not MAX_TRY_EVERY.
        let modes = run(&mut p, &mut now, 3 * TRY_EVERY as usize, |m| match m {
            Mode::Spin => small(1_800),
            Mode::HaltAtOnce => small(2_600),
        });
        assert_eq!(p.mode, Mode::HaltAtOnce, "{modes:?}");
        assert_eq!(p.counters().switches, 1);
    }

    #[test]
    fn bytes_are_compared_not_frames() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        // Small frames, fewer of them but larger when spinning.
        run(&mut p, &mut now, 60, |m| match m {
            Mode::Spin => (1_000, 400_000),
            Mode::HaltAtOnce => (1_300, 300_000),
        });
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials > 0);
    }

    #[test]
    fn the_policy_follows_the_load_when_it_changes() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        assert_eq!(p.loop_mode(), LoopMode::SpinThenHalt);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        assert_eq!(p.loop_mode(), LoopMode::HaltAtOnce);
        run(&mut p, &mut now, 30, spinning_wins);
        assert_eq!(p.mode, Mode::Spin);
        assert_eq!(p.loop_mode(), LoopMode::SpinThenHalt);
        assert_eq!(p.counters().switches, 2);
    }

    #[test]
    fn the_status_shows_the_running_mode_not_a_trials() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, TRY_EVERY as usize + 1, halting_wins);
        // The last epoch run was the first trial, and the next one is
        // spinning again (a first win waits for its confirmation).
        assert_eq!(modes.last(), Some(&Mode::HaltAtOnce), "{modes:?}");
        assert_eq!(p.counters().trials, 1);
        assert_eq!(p.loop_mode(), LoopMode::SpinThenHalt);
        // One epoch spinning, and the second trial is on: it runs halting,
        // the status shows spinning.
        run(&mut p, &mut now, 1, halting_wins);
        assert_eq!(p.mode(), Mode::HaltAtOnce);
        assert_eq!(p.loop_mode(), LoopMode::SpinThenHalt);
    }

    #[test]
    fn a_gain_within_the_margin_does_not_switch() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        run(&mut p, &mut now, 50, |m| match m {
            Mode::Spin => small(2_000),
            Mode::HaltAtOnce => small(2_000 * (100 + MARGIN_PERCENT - 2) / 100),
        });
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials > 0);
    }

    #[test]
    fn light_traffic_never_tries_and_falls_back_to_spinning() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        // 100 frames an epoch = 4,000 a second: light.
        let modes = run(&mut p, &mut now, 40, |_| small(100));
        assert!(modes.iter().all(|&m| m == Mode::Spin));
        assert_eq!(p.counters().trials, 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        run(&mut p, &mut now, 2, |_| small(100));
        assert_eq!(p.mode(), Mode::Spin);
    }

    #[test]
    fn a_long_halt_counts_its_time_and_a_clock_going_back_breaks_nothing() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        // 2,600 frames over a 10 s halt is light traffic, not a heavy epoch.
        now += 10_000_000;
        p.record(now, 2_600, 260_000);
        assert_eq!(p.mode(), Mode::Spin);
        // Extreme counts and times neither panic nor leave the policy stuck:
        // after the clock jumps far ahead and back, epochs end again.
        p.record(now - 5, 10, 1_000);
        p.record(u64::MAX, u64::MAX, u64::MAX);
        p.record(u64::MAX, 0, u64::MAX);
        let mut now = 1_000;
        p.record(now, 0, 0);
        run(&mut p, &mut now, 40, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
    }

    #[test]
    fn light_traffic_between_a_win_and_its_confirmation_forgets_the_win() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let calls = Cell::new(0u32);
        // The first trial wins; the epoch after it is light; the second
        // trial wins too, but it is a first win again: no switch yet.
        let modes = run(&mut p, &mut now, TRY_EVERY as usize + 2, |m| {
            calls.set(calls.get() + 1);
            match (m, calls.get()) {
                (_, n) if n == TRY_EVERY + 2 => small(100),
                (Mode::Spin, _) => small(2_000),
                (Mode::HaltAtOnce, _) => small(2_600),
            }
        });
        assert_eq!(modes[TRY_EVERY as usize], Mode::HaltAtOnce);
        assert!(!p.won_once);
        assert_eq!(p.counters().switches, 0);
    }
}
