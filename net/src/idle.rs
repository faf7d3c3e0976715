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
//! other for one epoch every [`TRY_EVERY`] epochs. A trial that moved at
//! least [`MARGIN_PERCENT`] % more bytes per second than the running mode is
//! tried again after one epoch of the running mode, and a second win in a
//! row switches (one noisy epoch does not). Under light traffic it spins (the
//! two move the same frames, and spinning answers sooner). Sans-IO: times
//! are the caller's microseconds.

/// One epoch: what moved is counted and compared per epoch.
pub const EPOCH_US: u64 = 40_000;
/// Epochs in the running mode between two trials of the other.
pub const TRY_EVERY: u32 = 8;
/// A trial must beat the running mode's bytes per second by this much.
pub const MARGIN_PERCENT: u64 = 15;
/// Frames per second below which traffic is light: no trials, and spinning.
pub const HEAVY_FRAMES_PER_S: u64 = 10_000;

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
    /// traffic fell light while it halted at once).
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
    /// goes back is taken as no time passing.
    pub fn record(&mut self, now: u64, frames: u64, bytes: u64) {
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
        let heavy = per_s(self.frames) >= HEAVY_FRAMES_PER_S;
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
            // A first win is tried again after one epoch of the running mode.
            self.since_trial = if won { TRY_EVERY - 1 } else { 0 };
            return;
        }
        if !heavy {
            // Light traffic: the two move the same frames; spinning answers
            // sooner. Its rate is no baseline for a trial under load.
            if self.mode == Mode::HaltAtOnce {
                self.switch_to(Mode::Spin, rate);
            }
            self.recent = [None, None];
            self.won_once = false;
            return;
        }
        self.recent = [self.recent[1], Some(rate)];
        self.since_trial = self.since_trial.saturating_add(1);
        if self.since_trial >= TRY_EVERY && self.recent[0].is_some() {
            self.trying = true;
        }
    }

    fn switch_to(&mut self, mode: Mode, rate: u64) {
        self.mode = mode;
        self.counters.switches += 1;
        self.recent = [None, Some(rate)];
        self.since_trial = 0;
        self.won_once = false;
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
        // Halting from then on, but for its own (losing) trials of spinning.
        let spinning = modes[t + 3..].iter().filter(|&&m| m == Mode::Spin).count();
        assert_eq!(spinning, (40 - t - 3) / (t + 1), "{modes:?}");
        assert_eq!(p.spin_us(), if p.mode() == Mode::Spin { 200 } else { 0 });
    }

    #[test]
    fn a_load_that_moves_more_spinning_keeps_spinning() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, 60, spinning_wins);
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials >= 5, "{:?}", p.counters());
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
        assert!(p.counters().trials >= 4, "{:?}", p.counters());
    }

    #[test]
    fn bytes_are_compared_not_frames() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        // A bulk transfer: halting moves more frames (acks), fewer bytes.
        run(&mut p, &mut now, 60, |m| match m {
            Mode::Spin => (1_000, 1_500_000),
            Mode::HaltAtOnce => (1_300, 900_000),
        });
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials > 0);
    }

    #[test]
    fn the_policy_follows_the_load_when_it_changes() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        run(&mut p, &mut now, 30, spinning_wins);
        assert_eq!(p.mode, Mode::Spin);
        assert_eq!(p.counters().switches, 2);
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
        p.record(now - 5, 10, 1_000);
        p.record(0, u64::MAX, u64::MAX);
        p.record(u64::MAX, u64::MAX, u64::MAX);
        assert!(matches!(p.mode(), Mode::Spin | Mode::HaltAtOnce));
    }
}
