//! Sign-ins per day over the last 30 days, succeeded and failed by reason, from the audit log's
//! counts (`audit::store::sign_in_counts`): the chart's series and columns and the table beside it.

use super::charts::{Column, Series};
use crate::audit::store::SignInCount;
use crate::clock::DAY_MS;

/// Days the chart covers, today included.
pub const DAYS: i64 = 30;

/// Failure reasons drawn as their own series; the rest are summed as "other reasons".
const MAX_REASONS: usize = 5;

const SUCCEEDED_SSO: &str = "#1f6f5c";
const SUCCEEDED_PASSWORD: &str = "#6fb3a2";
const FAILED: [&str; MAX_REASONS + 1] = [
    "#b42318", "#d9822b", "#8250df", "#bf3989", "#9a6700", "#59636e",
];

/// The first millisecond the chart counts from: midnight UTC, 29 days before `now`'s day.
pub fn since(now: i64) -> i64 {
    (now.div_euclid(DAY_MS) - (DAYS - 1)) * DAY_MS
}

/// The chart's data: its series (bottom first) and one column per day, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIns {
    pub series: Vec<Series>,
    pub columns: Vec<Column>,
    /// Totals per series over the 30 days, in the order of `series`.
    pub totals: Vec<i64>,
}

impl SignIns {
    /// Every sign-in counted, succeeded or failed.
    pub fn total(&self) -> i64 {
        self.totals.iter().sum()
    }
}

/// A reason code in words for the legend: `invalid_credentials` → "Invalid credentials".
pub fn reason_label(code: &str) -> String {
    let words = code.replace(['_', '.'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Unknown reason".to_string(),
    }
}

/// Groups `counts` into 30 days of columns: SSO and password successes, then the most frequent
/// failure reasons (ties by code), then the other reasons together.
pub fn build(counts: &[SignInCount], now: i64) -> SignIns {
    let first_day = since(now) / DAY_MS;
    let failed = |c: &SignInCount| c.action.ends_with("failed");
    let mut reasons: Vec<(String, i64)> = Vec::new();
    for c in counts.iter().filter(|c| failed(c)) {
        let code = c.reason.clone().unwrap_or_else(|| "unknown".to_string());
        match reasons.iter_mut().find(|(r, _)| *r == code) {
            Some((_, n)) => *n += c.count,
            None => reasons.push((code, c.count)),
        }
    }
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown: Vec<String> = reasons
        .iter()
        .take(MAX_REASONS)
        .map(|(r, _)| r.clone())
        .collect();
    let mut series = vec![
        Series {
            label: "Succeeded through SSO".into(),
            colour: SUCCEEDED_SSO,
        },
        Series {
            label: "Succeeded with a password".into(),
            colour: SUCCEEDED_PASSWORD,
        },
    ];
    for (i, r) in shown.iter().enumerate() {
        series.push(Series {
            label: format!("Failed: {}", reason_label(r)),
            colour: FAILED[i],
        });
    }
    if reasons.len() > MAX_REASONS {
        series.push(Series {
            label: "Failed: other reasons".into(),
            colour: FAILED[MAX_REASONS],
        });
    }
    let index_of = |c: &SignInCount| -> usize {
        if !failed(c) {
            return usize::from(c.action != "sso.signin.succeeded");
        }
        let code = c.reason.as_deref().unwrap_or("unknown");
        2 + shown.iter().position(|r| r == code).unwrap_or(MAX_REASONS)
    };
    let mut columns: Vec<Column> = (0..DAYS)
        .map(|i| Column {
            label: day_label((first_day + i) * DAY_MS),
            values: vec![0; series.len()],
        })
        .collect();
    let mut totals = vec![0; series.len()];
    for c in counts {
        let Ok(day) = usize::try_from(c.day - first_day) else {
            continue;
        };
        let s = index_of(c);
        if let (Some(column), Some(total)) = (columns.get_mut(day), totals.get_mut(s)) {
            column.values[s] += c.count;
            *total += c.count;
        }
    }
    SignIns {
        series,
        columns,
        totals,
    }
}

/// `Dec 5` for a time in Unix ms (UTC).
fn day_label(ms: i64) -> String {
    let date = crate::billing::period::date_of(ms);
    format!("{} {}", &date.month().to_string()[..3], date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(day: i64, action: &str, reason: Option<&str>, n: i64) -> SignInCount {
        SignInCount {
            day,
            action: action.into(),
            reason: reason.map(str::to_string),
            count: n,
        }
    }

    #[test]
    fn thirty_days_of_successes_and_failures_by_reason() {
        // 2026-12-05 12:00 UTC is day 20792 since the epoch.
        let now = 20_792 * DAY_MS + 12 * 3_600_000;
        assert_eq!(since(now), 20_763 * DAY_MS);
        let counts = [
            count(20_762, "sso.signin.succeeded", None, 99), // before the window
            count(20_763, "sso.signin.succeeded", None, 4),
            count(20_763, "account.signed_in", None, 2),
            count(20_790, "sso.signin.failed", Some("signature_invalid"), 3),
            count(
                20_792,
                "account.sign_in_failed",
                Some("invalid_credentials"),
                5,
            ),
            count(20_792, "sso.signin.failed", Some("signature_invalid"), 1),
        ];
        let s = build(&counts, now);
        assert_eq!(s.columns.len(), 30);
        assert_eq!(s.columns[0].label, "Nov 6");
        assert_eq!(s.columns[29].label, "Dec 5");
        let labels: Vec<&str> = s.series.iter().map(|x| x.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Succeeded through SSO",
                "Succeeded with a password",
                "Failed: Invalid credentials",
                "Failed: Signature invalid"
            ]
        );
        assert_eq!(s.columns[0].values, [4, 2, 0, 0]);
        assert_eq!(s.columns[27].values, [0, 0, 0, 3]);
        assert_eq!(s.columns[29].values, [0, 0, 5, 1]);
        assert_eq!(s.totals, [4, 2, 5, 4]);
    }

    #[test]
    fn reasons_past_the_fifth_are_summed_as_other() {
        let now = 20_792 * DAY_MS;
        let counts: Vec<SignInCount> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .enumerate()
            .map(|(i, r)| count(20_792, "sso.signin.failed", Some(r), 10 - i as i64))
            .collect();
        let s = build(&counts, now);
        assert_eq!(s.series.len(), 2 + 5 + 1);
        assert_eq!(s.series[7].label, "Failed: other reasons");
        // f (5) and g (4) fall into "other reasons".
        assert_eq!(s.columns[29].values, [0, 0, 10, 9, 8, 7, 6, 9]);
        assert_eq!(reason_label("wrong_second_factor"), "Wrong second factor");
        assert_eq!(reason_label(""), "Unknown reason");
    }
}
