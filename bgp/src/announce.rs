//! What to announce, from the appliance's health and the operator's drain:
//! rise/fall debounce flaps, a degraded appliance may announce with worse
//! attributes instead of withdrawing, and a drain (or a clean shutdown)
//! re-announces with GRACEFUL_SHUTDOWN for a while before it withdraws.

use crate::session::Route;
use crate::wire::Attrs;
use crate::Millis;

/// The appliance's health, as one check saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// It cannot serve: withdraw.
    Down,
    /// It can serve, less well (e.g. hears no proxy outside its POP).
    Degraded,
    /// It can serve.
    Up,
}

/// How health turns into a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Checks in a row that must say it can serve before announcing.
    pub rise: u8,
    /// Checks in a row that must say Down before withdrawing.
    pub fall: u8,
    /// How long a drain announces with GRACEFUL_SHUTDOWN before withdrawing.
    pub drain_delay: Millis,
    /// Attributes while degraded; None: withdraw while degraded.
    pub degraded: Option<Attrs>,
}

/// The announcement policy of one appliance.
#[derive(Clone, Debug)]
pub struct Announcer {
    cfg: AnnounceConfig,
    /// The debounced verdict: can it serve?
    serving: bool,
    /// The latest check's health.
    last: Health,
    /// The latest check's health that was not Down: what the route's
    /// attributes follow (a Down check that has not yet made `fall` must not
    /// make the route look better).
    quality: Health,
    /// Checks in a row that disagree with `serving`.
    run: u8,
    /// When a drain started.
    draining_since: Option<Millis>,
    /// Verdict changes (for the status).
    flips: u64,
}

impl Announcer {
    /// Starts not serving: the route is announced after `rise` good checks.
    pub fn new(cfg: AnnounceConfig) -> Announcer {
        Announcer {
            cfg,
            serving: false,
            last: Health::Down,
            quality: Health::Degraded,
            run: 0,
            draining_since: None,
            flips: 0,
        }
    }

    /// One health check's result.
    pub fn observe(&mut self, health: Health) {
        self.last = health;
        if health != Health::Down {
            self.quality = health;
        }
        let says_serving = health != Health::Down;
        if says_serving == self.serving {
            self.run = 0;
            return;
        }
        self.run = self.run.saturating_add(1);
        let needed = if says_serving {
            self.cfg.rise
        } else {
            self.cfg.fall
        };
        if self.run >= needed.max(1) {
            self.serving = says_serving;
            self.run = 0;
            self.flips += 1;
        }
    }

    /// Starts a drain at `now` (a second drain keeps the first's start).
    pub fn drain(&mut self, now: Millis) {
        self.draining_since.get_or_insert(now);
    }

    /// Ends a drain: the route follows health again.
    pub fn undrain(&mut self) {
        self.draining_since = None;
    }

    /// Whether a drain is on.
    pub fn draining(&self) -> bool {
        self.draining_since.is_some()
    }

    /// Whether the debounced verdict is "can serve".
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// The latest check's health.
    pub fn health(&self) -> Health {
        self.last
    }

    /// Times the debounced verdict changed.
    pub fn flips(&self) -> u64 {
        self.flips
    }

    /// Whether a drain has run its delay (the route is withdrawn).
    pub fn drained(&self, now: Millis) -> bool {
        self.draining_since
            .is_some_and(|t| now >= t.saturating_add(self.cfg.drain_delay))
    }

    /// When the route changes by itself next (a drain's delay ending).
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.draining_since
            .map(|t| t.saturating_add(self.cfg.drain_delay))
    }

    /// The route to announce at `now`.
    pub fn route(&self, now: Millis) -> Route {
        if !self.serving || self.drained(now) {
            return Route::Withdrawn;
        }
        let attrs = if self.quality == Health::Degraded {
            match self.cfg.degraded {
                Some(a) => a,
                None => return Route::Withdrawn,
            }
        } else {
            Attrs::default()
        };
        Route::Announced(Attrs {
            graceful_shutdown: self.draining(),
            ..attrs
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AnnounceConfig {
        AnnounceConfig {
            rise: 2,
            fall: 3,
            drain_delay: 5_000,
            degraded: Some(Attrs {
                prepend: 3,
                med: Some(100),
                graceful_shutdown: false,
            }),
        }
    }

    #[test]
    fn rise_and_fall_debounce() {
        let mut a = Announcer::new(cfg());
        assert_eq!(a.route(0), Route::Withdrawn);
        assert!(!a.serving(), "it starts not serving");
        a.observe(Health::Up);
        assert_eq!(a.route(0), Route::Withdrawn, "one good check is not enough");
        assert!(!a.serving());
        a.observe(Health::Up);
        assert_eq!(a.route(0), Route::Announced(Attrs::default()));
        // Two bad checks, a good one, two bad: never three in a row.
        for h in [
            Health::Down,
            Health::Down,
            Health::Up,
            Health::Down,
            Health::Down,
        ] {
            a.observe(h);
            assert!(a.serving(), "{h:?}");
        }
        a.observe(Health::Down);
        assert_eq!(a.route(0), Route::Withdrawn);
        assert_eq!(a.flips(), 2);
    }

    #[test]
    fn degraded_announces_worse_or_withdraws() {
        let mut a = Announcer::new(cfg());
        a.observe(Health::Degraded);
        a.observe(Health::Degraded);
        assert_eq!(a.route(0), Route::Announced(cfg().degraded.unwrap()));
        a.observe(Health::Up);
        assert_eq!(a.route(0), Route::Announced(Attrs::default()));
        let mut w = Announcer::new(AnnounceConfig {
            degraded: None,
            ..cfg()
        });
        w.observe(Health::Degraded);
        w.observe(Health::Degraded);
        assert!(w.serving());
        assert_eq!(w.route(0), Route::Withdrawn);
    }

    #[test]
    fn a_down_check_short_of_fall_keeps_the_degraded_attributes() {
        let mut a = Announcer::new(cfg());
        a.observe(Health::Degraded);
        a.observe(Health::Degraded);
        let degraded = Route::Announced(cfg().degraded.unwrap());
        assert_eq!(a.route(0), degraded);
        a.observe(Health::Down);
        assert!(a.serving());
        assert_eq!(a.route(0), degraded, "one Down check must not look better");
    }

    #[test]
    fn drain_tags_then_withdraws_and_undrain_restores() {
        let mut a = Announcer::new(cfg());
        a.observe(Health::Up);
        a.observe(Health::Up);
        a.drain(1_000);
        let gshut = Route::Announced(Attrs {
            graceful_shutdown: true,
            ..Attrs::default()
        });
        assert_eq!(a.route(1_000), gshut);
        assert_eq!(a.poll_timeout(), Some(6_000));
        a.drain(3_000);
        assert_eq!(
            a.route(5_999),
            gshut,
            "a second drain keeps the first start"
        );
        assert_eq!(a.route(6_000), Route::Withdrawn);
        assert!(a.drained(6_000));
        a.undrain();
        assert_eq!(a.route(7_000), Route::Announced(Attrs::default()));
        // Draining a route that is not announced announces nothing.
        let mut down = Announcer::new(cfg());
        down.drain(0);
        assert_eq!(down.route(0), Route::Withdrawn);
    }
}
