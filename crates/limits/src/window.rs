//! Fixed budget windows aligned to UTC: the minute, the hour, the day and the calendar month.
//!
//! A window is identified by its first instant (`start`); it ends where the next one starts
//! (`end`), which is also when its budget resets. Both functions are total: at the extreme
//! ends of chrono's range they saturate instead of failing.

use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, TimeDelta, Utc};

/// The length of a budget: every window of a kind starts at a UTC boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// From `hh:mm:00` to the next minute.
    Minute,
    /// From `hh:00:00` to the next hour.
    Hour,
    /// From `00:00:00` UTC to the next midnight.
    Day,
    /// From the first day of the month at `00:00:00` UTC to the first instant of the next month.
    Month,
}

impl Window {
    /// Every kind of window, shortest first.
    pub const ALL: [Window; 4] = [Window::Minute, Window::Hour, Window::Day, Window::Month];

    /// The name used in messages and in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// The first instant of the window that contains `at`.
    pub fn start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let fixed_secs = match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
            Window::Month => return month_start(at),
        };
        let into_window = TimeDelta::seconds(at.timestamp().rem_euclid(fixed_secs))
            + TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
        at.checked_sub_signed(into_window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The first instant after the window that contains `at`: when its budget resets.
    pub fn end(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let start = self.start(at);
        let end = match self {
            Window::Minute => start.checked_add_signed(TimeDelta::minutes(1)),
            Window::Hour => start.checked_add_signed(TimeDelta::hours(1)),
            Window::Day => start.checked_add_signed(TimeDelta::days(1)),
            Window::Month => start.checked_add_months(Months::new(1)),
        };
        end.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let day_start = Window::Day.start(at);
    day_start
        .checked_sub_days(Days::new(u64::from(day_start.day0())))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn fixed_windows_truncate_to_their_boundary() {
        let at = utc(2025, 3, 14, 15, 9, 26) + TimeDelta::milliseconds(535);
        assert_eq!(Window::Minute.start(at), utc(2025, 3, 14, 15, 9, 0));
        assert_eq!(Window::Minute.end(at), utc(2025, 3, 14, 15, 10, 0));
        assert_eq!(Window::Hour.start(at), utc(2025, 3, 14, 15, 0, 0));
        assert_eq!(Window::Hour.end(at), utc(2025, 3, 14, 16, 0, 0));
        assert_eq!(Window::Day.start(at), utc(2025, 3, 14, 0, 0, 0));
        assert_eq!(Window::Day.end(at), utc(2025, 3, 15, 0, 0, 0));
        assert_eq!(Window::Month.start(at), utc(2025, 3, 1, 0, 0, 0));
        assert_eq!(Window::Month.end(at), utc(2025, 4, 1, 0, 0, 0));
    }

    #[test]
    fn a_boundary_instant_starts_a_new_window() {
        let at = utc(2025, 3, 1, 0, 0, 0);
        for window in Window::ALL {
            assert_eq!(window.start(at), at, "{window}");
            assert!(window.end(at) > at, "{window}");
        }
        let just_before = at - TimeDelta::nanoseconds(1);
        assert_eq!(Window::Minute.end(just_before), at);
        assert_eq!(Window::Month.start(just_before), utc(2025, 2, 1, 0, 0, 0));
        assert_eq!(Window::Month.end(just_before), at);
    }

    #[test]
    fn month_rolls_over_from_december_to_january() {
        let at = utc(2024, 12, 31, 23, 59, 59);
        assert_eq!(Window::Month.start(at), utc(2024, 12, 1, 0, 0, 0));
        assert_eq!(Window::Month.end(at), utc(2025, 1, 1, 0, 0, 0));
        assert_eq!(Window::Day.end(at), utc(2025, 1, 1, 0, 0, 0));
        assert_eq!(Window::Hour.end(at), utc(2025, 1, 1, 0, 0, 0));
        assert_eq!(Window::Minute.end(at), utc(2025, 1, 1, 0, 0, 0));
    }

    #[test]
    fn months_have_their_calendar_length() {
        assert_eq!(
            Window::Month.end(utc(2024, 2, 29, 12, 0, 0)),
            utc(2024, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            Window::Month.end(utc(2025, 2, 28, 12, 0, 0)),
            utc(2025, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            Window::Month.end(utc(2025, 1, 31, 12, 0, 0)),
            utc(2025, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            Window::Month.end(utc(2025, 4, 30, 12, 0, 0)),
            utc(2025, 5, 1, 0, 0, 0)
        );
    }

    #[test]
    fn instants_before_the_epoch_are_aligned_too() {
        let at = utc(1969, 12, 31, 23, 59, 30);
        assert_eq!(Window::Minute.start(at), utc(1969, 12, 31, 23, 59, 0));
        assert_eq!(Window::Day.start(at), utc(1969, 12, 31, 0, 0, 0));
        assert_eq!(Window::Month.end(at), utc(1970, 1, 1, 0, 0, 0));
    }

    #[test]
    fn windows_saturate_at_the_end_of_time() {
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(Window::Month.end(last), DateTime::<Utc>::MAX_UTC);
        assert!(Window::Month.start(last) <= last);
    }
}
