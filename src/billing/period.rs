//! Billing periods on the calendar (pure): a period starts at midnight UTC on its anchor day of
//! the month (clamped to the month's last day, so a period anchored on the 31st starts on
//! 28 February and again on 31 March) and lasts one month or one year.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::clock::DAY_MS;

/// How long one billing period lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Monthly,
    Yearly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }
    /// The unit of its price: "a seat a month".
    pub fn unit(self) -> &'static str {
        match self {
            Period::Monthly => "month",
            Period::Yearly => "year",
        }
    }
    pub fn parse(raw: &str) -> Option<Period> {
        match raw {
            "monthly" => Some(Period::Monthly),
            "yearly" => Some(Period::Yearly),
            _ => None,
        }
    }
}

/// Midnight UTC of the day that holds `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// The calendar date of `ms` (UTC).
pub fn date_of(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

/// Midnight UTC of `date`, in Unix milliseconds.
pub fn ms_of(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

/// The day of the month on which periods starting at `ms` are anchored.
pub fn anchor_of(ms: i64) -> i64 {
    i64::from(date_of(ms).day())
}

fn on_anchor(year: i32, month: Month, anchor: i64) -> Date {
    let last = month.length(year);
    let day = u8::try_from(anchor.clamp(1, i64::from(last))).unwrap_or(last);
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
}

/// The start of the period after the one that starts at `start`.
pub fn next_start(period: Period, anchor: i64, start: i64) -> i64 {
    let date = date_of(start);
    let next = match period {
        Period::Monthly => {
            let (year, month) = match date.month() {
                Month::December => (date.year() + 1, Month::January),
                m => (date.year(), m.next()),
            };
            on_anchor(year, month, anchor)
        }
        Period::Yearly => on_anchor(date.year() + 1, date.month(), anchor),
    };
    ms_of(next)
}

/// Whole days from `from` to `to` (both at midnight UTC).
pub fn days_between(from: i64, to: i64) -> i64 {
    (day_start(to) - day_start(from)) / DAY_MS
}

/// The start of the period that holds `now`, walking forward from `start`.
pub fn current_start(period: Period, anchor: i64, start: i64, now: i64) -> i64 {
    let mut s = start;
    loop {
        let next = next_start(period, anchor, s);
        if next > now {
            return s;
        }
        s = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn months_of_28_29_30_and_31_days() {
        let cases = [
            (date!(2027 - 02 - 01), 1, date!(2027 - 03 - 01), 28),
            (date!(2028 - 02 - 01), 1, date!(2028 - 03 - 01), 29),
            (date!(2026 - 04 - 01), 1, date!(2026 - 05 - 01), 30),
            (date!(2026 - 03 - 01), 1, date!(2026 - 04 - 01), 31),
            (date!(2026 - 12 - 15), 15, date!(2027 - 01 - 15), 31),
        ];
        for (start, anchor, next, days) in cases {
            let n = next_start(Period::Monthly, anchor, ms_of(start));
            assert_eq!(date_of(n), next, "after {start}");
            assert_eq!(days_between(ms_of(start), n), days, "days from {start}");
        }
    }

    #[test]
    fn an_anchor_beyond_the_month_is_its_last_day_and_comes_back() {
        let jan31 = ms_of(date!(2026 - 01 - 31));
        let feb = next_start(Period::Monthly, 31, jan31);
        assert_eq!(date_of(feb), date!(2026 - 02 - 28));
        let mar = next_start(Period::Monthly, 31, feb);
        assert_eq!(date_of(mar), date!(2026 - 03 - 31));
        let leap_feb = next_start(Period::Monthly, 30, ms_of(date!(2028 - 01 - 30)));
        assert_eq!(date_of(leap_feb), date!(2028 - 02 - 29));
    }

    #[test]
    fn years_of_365_and_366_days() {
        let start = ms_of(date!(2026 - 01 - 01));
        assert_eq!(
            days_between(start, next_start(Period::Yearly, 1, start)),
            365
        );
        let start = ms_of(date!(2027 - 06 - 10));
        assert_eq!(
            days_between(start, next_start(Period::Yearly, 10, start)),
            366
        );
        // Anchored on 29 February: 28 February in common years, 29 in leap years.
        let leap_day = ms_of(date!(2028 - 02 - 29));
        let next = next_start(Period::Yearly, 29, leap_day);
        assert_eq!(date_of(next), date!(2029 - 02 - 28));
    }

    #[test]
    fn the_current_period_is_found_from_an_old_start() {
        let start = ms_of(date!(2026 - 01 - 31));
        let now = ms_of(date!(2026 - 05 - 02)) + 5 * 3_600_000;
        let current = current_start(Period::Monthly, 31, start, now);
        assert_eq!(date_of(current), date!(2026 - 04 - 30));
        assert_eq!(day_start(now), ms_of(date!(2026 - 05 - 02)));
    }
}
