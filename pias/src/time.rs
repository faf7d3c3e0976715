//! The one clock every state machine is given: `Instant`, microseconds, passed
//! in as `now` (sans-IO), and the units to write durations with.

/// Time in microseconds. The proxy treats it as wall-clock time for the
/// freshness of registrations (the caller's clock must be roughly in sync).
pub type Instant = u64;
/// One millisecond, in `Instant` units.
pub const MS: u64 = 1_000;
/// One second, in `Instant` units.
pub const SEC: u64 = 1_000_000;

/// A calendar date and time (UTC), as a real-time clock gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2026.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl DateTime {
    /// Seconds since the Unix epoch, or None for a date out of range
    /// (before 1970, or a field outside its domain).
    pub fn unix_seconds(self) -> Option<u64> {
        let DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = self;
        if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        // Days from civil (Howard Hinnant's algorithm), shifted to March-based years.
        let (y, m) = if month <= 2 {
            (i64::from(year) - 1, i64::from(month) + 9)
        } else {
            (i64::from(year), i64::from(month) - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        u64::try_from(secs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn known_dates() {
        // Values from `date -u -d '…' +%s`.
        assert_eq!(dt(1970, 1, 1, 0, 0, 0).unix_seconds(), Some(0));
        assert_eq!(dt(2000, 2, 29, 12, 0, 0).unix_seconds(), Some(951_825_600));
        assert_eq!(
            dt(2026, 11, 26, 16, 0, 34).unix_seconds(),
            Some(1_795_708_834)
        );
        assert_eq!(dt(2100, 3, 1, 0, 0, 0).unix_seconds(), Some(4_107_542_400));
    }

    #[test]
    fn out_of_range_is_refused() {
        assert_eq!(dt(1969, 12, 31, 23, 59, 59).unix_seconds(), None);
        assert_eq!(dt(2026, 13, 1, 0, 0, 0).unix_seconds(), None);
        assert_eq!(dt(2026, 1, 0, 0, 0, 0).unix_seconds(), None);
        assert_eq!(dt(2026, 1, 1, 24, 0, 0).unix_seconds(), None);
    }
}
