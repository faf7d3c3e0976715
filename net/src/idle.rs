//! How long the main loop keeps polling after its last frame before it
//! halts: it measures which of two policies moves more frames and keeps that.
//!
//! Polling on (spinning) catches a request/response peer's next frame without
//! a halt and an interrupt, which is what one request at a time wants. Under
//! a steady load the spinning vCPU instead takes host CPU that the host needs
//! to deliver the frames (QEMU's I/O thread, the peers): halting at once, and
//! waking on the NIC's interrupt to a batch of frames, moves more. Measured
//! under TCG on a 2-core host: 16 requests in flight 21.5–22.5k req/s spinning
//! against 26–36k halting at once; one in flight 0.10 ms against 0.20 ms p50.
//! Which side of that line a load falls on depends on the load and the host,
//! so [`IdlePolicy`] runs in one mode, tries the other for one epoch every
//! [`TRY_EVERY`] epochs while traffic is heavy, and switches when the trial
//! moved at least [`MARGIN_PERCENT`] % more frames per second than the mode
//! it runs. Under light traffic it spins (the two move the same frames and
//! spinning answers sooner). Sans-IO: times are the caller's microseconds.

/// One epoch: frames are counted and compared per epoch.
pub const EPOCH_US: u64 = 25_000;
/// Epochs in the running mode between two trials of the other.
pub const TRY_EVERY: u32 = 8;
/// A trial must beat the running mode's rate by this much to take over.
pub const MARGIN_PERCENT: u64 = 12;
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
    /// Times the running mode changed (a trial won, or traffic fell light
    /// while halting at once).
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
    epoch_start: u64,
    frames: u64,
    /// Frames per second of the running mode's last two whole epochs.
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
            epoch_start: now,
            frames: 0,
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

    /// Counts `frames` moved (received and sent) by one pass of the loop at
    /// `now`, ending the epoch if it is over. A clock that goes back is
    /// taken as no time passing.
    pub fn record(&mut self, now: u64, frames: u64) {
        self.frames = self.frames.saturating_add(frames);
        let elapsed = now.saturating_sub(self.epoch_start);
        if elapsed >= EPOCH_US {
            self.end_epoch(elapsed);
            self.epoch_start = now;
            self.frames = 0;
        }
    }

    fn end_epoch(&mut self, elapsed_us: u64) {
        // Frames per second; an epoch stretched by a long halt counts its time.
        let rate = self.frames.saturating_mul(1_000_000) / elapsed_us.max(1);
        let heavy = rate >= HEAVY_FRAMES_PER_S;
        if self.trying {
            self.trying = false;
            self.counters.trials += 1;
            let running = self.recent.iter().flatten().sum::<u64>() / 2;
            if rate.saturating_mul(100) >= running.saturating_mul(100 + MARGIN_PERCENT) && heavy {
                self.switch_to(self.mode.other(), rate);
            }
            self.since_trial = 0;
            return;
        }
        if !heavy {
            // Light traffic: the two move the same frames; spinning answers
            // sooner. Its rate is no baseline for a trial under load.
            if self.mode == Mode::HaltAtOnce {
                self.switch_to(Mode::Spin, rate);
            }
            self.recent = [None, None];
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `epochs` epochs in which the mode in effect moves
    /// `per_epoch(mode)` frames; returns the modes in effect, epoch by epoch.
    fn run(
        p: &mut IdlePolicy,
        now: &mut u64,
        epochs: usize,
        per_epoch: impl Fn(Mode) -> u64,
    ) -> Vec<Mode> {
        let mut modes = Vec::new();
        for _ in 0..epochs {
            let mode = p.mode();
            modes.push(mode);
            let frames = per_epoch(mode);
            // Frames arrive over the epoch in 5 passes; the last ends it.
            for i in 1..=5 {
                *now += EPOCH_US / 5;
                p.record(
                    *now,
                    if i == 5 {
                        frames - frames / 5 * 4
                    } else {
                        frames / 5
                    },
                );
            }
        }
        modes
    }

    /// 16 in flight: halting at once moves 30 % more.
    fn halting_wins(m: Mode) -> u64 {
        match m {
            Mode::Spin => 2_000,
            Mode::HaltAtOnce => 2_600,
        }
    }

    /// One at a time: spinning moves nearly twice as many.
    fn spinning_wins(m: Mode) -> u64 {
        match m {
            Mode::Spin => 900,
            Mode::HaltAtOnce => 500,
        }
    }

    #[test]
    fn starts_spinning_with_the_given_window() {
        let p = IdlePolicy::new(200, 0);
        assert_eq!(p.mode(), Mode::Spin);
        assert_eq!(p.spin_us(), 200);
    }

    #[test]
    fn a_load_that_moves_more_halting_is_run_halting_after_one_trial() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        let modes = run(&mut p, &mut now, 40, halting_wins);
        let first_trial = modes.iter().position(|&m| m == Mode::HaltAtOnce);
        assert_eq!(first_trial, Some(TRY_EVERY as usize));
        assert_eq!(p.counters().switches, 1);
        // From the trial on, halting runs, but for its own trials of spinning.
        let spin_after: usize = modes[TRY_EVERY as usize..]
            .iter()
            .filter(|&&m| m == Mode::Spin)
            .count();
        assert!(spin_after <= 40 / (TRY_EVERY as usize + 1), "{modes:?}");
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
            Mode::Spin => 2_000,
            Mode::HaltAtOnce => 2_000 * (100 + MARGIN_PERCENT - 2) / 100,
        });
        assert_eq!(p.counters().switches, 0);
        assert!(p.counters().trials > 0);
    }

    #[test]
    fn light_traffic_never_tries_and_falls_back_to_spinning() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        // 100 frames an epoch = 4,000 a second: light.
        let modes = run(&mut p, &mut now, 40, |_| 100);
        assert!(modes.iter().all(|&m| m == Mode::Spin));
        assert_eq!(p.counters().trials, 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        run(&mut p, &mut now, 2, |_| 100);
        assert_eq!(p.mode(), Mode::Spin);
    }

    #[test]
    fn a_long_halt_counts_its_time_and_a_clock_going_back_breaks_nothing() {
        let (mut p, mut now) = (IdlePolicy::new(200, 0), 0);
        run(&mut p, &mut now, 30, halting_wins);
        assert_eq!(p.mode, Mode::HaltAtOnce);
        // 2,600 frames over a 10 s halt is light traffic, not a heavy epoch.
        now += 10_000_000;
        p.record(now, 2_600);
        assert_eq!(p.mode(), Mode::Spin);
        p.record(now - 5, 10);
        p.record(0, u64::MAX);
        p.record(u64::MAX, u64::MAX);
        assert!(matches!(p.mode(), Mode::Spin | Mode::HaltAtOnce));
    }
}
