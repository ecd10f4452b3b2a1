//! Money (pure): amounts in integer minor units, their display, proration of seat additions to
//! the day, and tax. Every rounding is half up, once, on the final amount.

use serde::Serialize;

/// An amount with its currency, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY).
    pub amount: i64,
    pub currency: String,
    /// For people, e.g. `$12.34`.
    pub formatted: String,
}

impl Money {
    pub fn new(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: currency.to_string(),
            formatted: format(amount, currency),
        }
    }
}

/// Digits after the decimal point of a currency (ISO 4217).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "HUF" | "TWD" | "UGX" | "XAF" | "XOF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// `amount` minor units for people: `$1,234.50`, `¥1,200`, `€8.00`, `12.00 CHF`.
pub fn format(amount: i64, currency: &str) -> String {
    let exp = exponent(currency);
    let unit = 10_i64.pow(exp);
    let abs = amount.unsigned_abs();
    let whole = abs / unit.unsigned_abs();
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let number = if exp == 0 {
        grouped
    } else {
        let frac = abs % unit.unsigned_abs();
        format!("{grouped}.{frac:0width$}", width = exp as usize)
    };
    let sign = if amount < 0 { "-" } else { "" };
    match currency {
        "USD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        "JPY" => format!("{sign}¥{number}"),
        _ => format!("{sign}{number} {currency}"),
    }
}

/// `numerator / denominator` rounded half up (for non-negative values).
fn div_round(numerator: i128, denominator: i128) -> i64 {
    if denominator == 0 {
        return 0;
    }
    let q = (2 * numerator + denominator) / (2 * denominator);
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// The charge for `added` seats at `unit_price` per period, for `days_left` of `period_days`
/// days (the day of the change counts: added on the first day is the whole period, on the
/// last day one day).
pub fn prorate(unit_price: i64, added: i64, days_left: i64, period_days: i64) -> i64 {
    div_round(
        i128::from(unit_price) * i128::from(added) * i128::from(days_left),
        i128::from(period_days),
    )
}

/// Tax on `amount` at `basis_points` (1000 = 10%).
pub fn tax(amount: i64, basis_points: i64) -> i64 {
    div_round(i128::from(amount) * i128::from(basis_points), 10_000)
}

/// A tax rate for people: 1000 → `10%`, 825 → `8.25%`.
pub fn rate(basis_points: i64) -> String {
    let whole = basis_points / 100;
    match basis_points % 100 {
        0 => format!("{whole}%"),
        frac if frac % 10 == 0 => format!("{whole}.{}%", frac / 10),
        frac => format!("{whole}.{frac:02}%"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::period::{Period, days_between, ms_of, next_start};
    use time::macros::date;

    /// Days left in the period [start, next) when seats are added on `day`, and the period's days.
    fn days(period: Period, start: time::Date, day: time::Date) -> (i64, i64) {
        let start = ms_of(start);
        let end = next_start(period, i64::from(time::Date::day(date_of_ms(start))), start);
        (days_between(ms_of(day), end), days_between(start, end))
    }

    fn date_of_ms(ms: i64) -> time::Date {
        crate::billing::period::date_of(ms)
    }

    #[test]
    fn first_and_last_day_of_a_31_day_month() {
        // $8.00 a seat a month, March 2026 (31 days).
        // 3 seats added on 1 March: 3 × 800 × 31/31 = 2400.
        let (left, total) = days(
            Period::Monthly,
            date!(2026 - 03 - 01),
            date!(2026 - 03 - 01),
        );
        assert_eq!((left, total), (31, 31));
        assert_eq!(prorate(800, 3, left, total), 2400);
        // 3 seats added on 31 March: 3 × 800 × 1/31 = 77.42 → 77.
        let (left, total) = days(
            Period::Monthly,
            date!(2026 - 03 - 01),
            date!(2026 - 03 - 31),
        );
        assert_eq!((left, total), (1, 31));
        assert_eq!(prorate(800, 3, left, total), 77);
    }

    #[test]
    fn february_in_common_and_leap_years() {
        // 2 seats on 15 February 2027 (28 days): 14 days left, 1600 × 14/28 = 800.
        let (left, total) = days(
            Period::Monthly,
            date!(2027 - 02 - 01),
            date!(2027 - 02 - 15),
        );
        assert_eq!((left, total), (14, 28));
        assert_eq!(prorate(800, 2, left, total), 800);
        // 1 seat on 15 February 2028 (29 days): 15 days left, 800 × 15/29 = 413.79 → 414.
        let (left, total) = days(
            Period::Monthly,
            date!(2028 - 02 - 01),
            date!(2028 - 02 - 15),
        );
        assert_eq!((left, total), (15, 29));
        assert_eq!(prorate(800, 1, left, total), 414);
    }

    #[test]
    fn a_30_day_month_anchored_mid_month() {
        // Period 10 April → 10 May 2026 (30 days); 1 seat on 25 April: 15 days, 800 × 15/30 = 400.
        let (left, total) = days(
            Period::Monthly,
            date!(2026 - 04 - 10),
            date!(2026 - 04 - 25),
        );
        assert_eq!((left, total), (15, 30));
        assert_eq!(prorate(800, 1, left, total), 400);
    }

    #[test]
    fn yearly_plans() {
        // $80.00 a seat a year, 2026 (365 days); 4 seats on 2 July: 183 days left
        // (30 + 31 + 30 + 31 + 30 + 31), 32000 × 183/365 = 16043.84 → 16044.
        let (left, total) = days(Period::Yearly, date!(2026 - 01 - 01), date!(2026 - 07 - 02));
        assert_eq!((left, total), (183, 365));
        assert_eq!(prorate(8000, 4, left, total), 16044);
        // 10 June 2027 → 10 June 2028 holds 29 February (366 days); 1 seat on the last day,
        // 9 June 2028: 8000 × 1/366 = 21.86 → 22; on the first day: the whole 8000.
        let (left, total) = days(Period::Yearly, date!(2027 - 06 - 10), date!(2028 - 06 - 09));
        assert_eq!((left, total), (1, 366));
        assert_eq!(prorate(8000, 1, left, total), 22);
        let (left, total) = days(Period::Yearly, date!(2027 - 06 - 10), date!(2027 - 06 - 10));
        assert_eq!(prorate(8000, 1, left, total), 8000);
    }

    #[test]
    fn tax_and_display() {
        assert_eq!(tax(2400, 1000), 240);
        assert_eq!(tax(77, 1000), 8); // 7.7 → 8
        assert_eq!(tax(414, 825), 34); // 34.155 → 34
        assert_eq!(tax(1000, 0), 0);
        assert_eq!(format(123_456_789, "USD"), "$1,234,567.89");
        assert_eq!(format(800, "USD"), "$8.00");
        assert_eq!(format(5, "EUR"), "€0.05");
        assert_eq!(format(120_000, "JPY"), "¥120,000");
        assert_eq!(format(-2400, "USD"), "-$24.00");
        assert_eq!(format(1200, "CHF"), "12.00 CHF");
        assert_eq!(rate(1000), "10%");
        assert_eq!(rate(825), "8.25%");
        assert_eq!(rate(750), "7.5%");
    }

    #[test]
    fn huge_amounts_do_not_overflow() {
        assert_eq!(
            prorate(100_000_000, 1_000_000, 366, 366),
            100_000_000_000_000
        );
    }
}
