//! The billing page's chart, drawn on the server as SVG: managed accounts against seats at the
//! end of each of the last 12 months (the latest daily record of each month). Colours are SVG
//! attributes, not inline styles, so the page's Content-Security-Policy holds.

use std::fmt::Write;

use super::period::{date_of, ms_of};

/// One month of the chart: its label and the latest (seats, managed) recorded in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Month {
    pub label: String,
    pub value: Option<(i64, i64)>,
}

/// The 12 months ending with the one of `now`, each with its latest record from `usage`
/// (day, seats, managed; oldest first).
pub fn months(usage: &[(i64, i64, i64)], now: i64) -> Vec<Month> {
    let today = date_of(now);
    let mut out = Vec::with_capacity(12);
    let (mut year, mut month) = (today.year(), today.month());
    for _ in 0..12 {
        out.push((year, month));
        month = month.previous();
        if month == time::Month::December {
            year -= 1;
        }
    }
    out.reverse();
    out.into_iter()
        .map(|(year, month)| {
            let value = usage
                .iter()
                .rfind(|(day, _, _)| {
                    let d = date_of(*day);
                    d.year() == year && d.month() == month
                })
                .map(|&(_, seats, managed)| (seats, managed));
            Month {
                label: format!("{} {}", &month.to_string()[..3], year % 100),
                value,
            }
        })
        .collect()
}

/// The first day of the month 11 months before `now`'s: the oldest record the chart needs.
pub fn since(now: i64) -> i64 {
    let today = date_of(now);
    let mut d = today.replace_day(1).unwrap_or(today);
    for _ in 0..11 {
        d = d
            .previous_day()
            .and_then(|p| p.replace_day(1).ok())
            .unwrap_or(d);
    }
    ms_of(d)
}

const W: i64 = 640;
const H: i64 = 220;
const LEFT: i64 = 40;
const BOTTOM: i64 = 190;
const TOP: i64 = 20;

/// The chart as an `<svg>` element.
pub fn svg(months: &[Month]) -> String {
    let max = months
        .iter()
        .filter_map(|m| m.value.map(|(s, u)| s.max(u)))
        .max()
        .unwrap_or(0)
        .max(1);
    let step = (W - LEFT - 20) / i64::try_from(months.len().max(1)).unwrap_or(1);
    let x = |i: usize| LEFT + step / 2 + step * i64::try_from(i).unwrap_or(0);
    let y = |v: i64| BOTTOM - (BOTTOM - TOP) * v / max;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Managed accounts and seats, last 12 months</title>"##
    );
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{}" y2="{BOTTOM}" stroke="#888"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#888"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#444">{max}</text><text x="{}" y="{BOTTOM}" font-size="11" text-anchor="end" fill="#444">0</text>"##,
        W - 10,
        LEFT - 4,
        TOP + 4,
        LEFT - 4
    );
    for (i, m) in months.iter().enumerate() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#444">{}</text>"##,
            x(i),
            BOTTOM + 16,
            m.label
        );
    }
    for (series, colour, name) in [(0, "#2a6fdb", "seats"), (1, "#d9822b", "managed")] {
        let points: Vec<String> = months
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                m.value.map(|(s, u)| {
                    let v = if series == 0 { s } else { u };
                    format!("{},{}", x(i), y(v))
                })
            })
            .collect();
        let _ = write!(
            out,
            r##"<polyline class="{name}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                out,
                r##"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"##
            );
        }
    }
    let _ = write!(
        out,
        r##"<rect x="{}" y="4" width="10" height="10" fill="#2a6fdb"/><text x="{}" y="13" font-size="11" fill="#222">Seats</text><rect x="{}" y="4" width="10" height="10" fill="#d9822b"/><text x="{}" y="13" font-size="11" fill="#222">Managed accounts</text></svg>"##,
        LEFT + 10,
        LEFT + 24,
        LEFT + 80,
        LEFT + 94
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn twelve_months_with_the_latest_record_of_each() {
        let day = |d: time::Date| ms_of(d);
        let usage = [
            (day(date!(2026 - 01 - 10)), 5, 1),
            (day(date!(2026 - 01 - 20)), 8, 3),
            (day(date!(2026 - 11 - 02)), 10, 9),
            (day(date!(2026 - 12 - 01)), 12, 10),
        ];
        let months = months(&usage, day(date!(2026 - 12 - 05)));
        assert_eq!(months.len(), 12);
        assert_eq!(months[0].label, "Jan 26");
        assert_eq!(months[0].value, Some((8, 3)));
        assert_eq!(months[1].value, None);
        assert_eq!(months[10].value, Some((10, 9)));
        assert_eq!(
            months[11],
            Month {
                label: "Dec 26".into(),
                value: Some((12, 10))
            }
        );
        assert_eq!(
            date_of(since(day(date!(2026 - 12 - 05)))),
            date!(2026 - 01 - 01)
        );
        assert_eq!(
            date_of(since(day(date!(2027 - 03 - 31)))),
            date!(2026 - 04 - 01)
        );
    }

    #[test]
    fn the_svg_draws_both_series_to_scale() {
        let months = vec![
            Month {
                label: "Nov 26".into(),
                value: Some((10, 5)),
            },
            Month {
                label: "Dec 26".into(),
                value: Some((20, 10)),
            },
        ];
        let svg = svg(&months);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style="), "no inline style under the CSP");
        // Seats 20 is the top (y = 20); managed 10 is half way (y = 105); 5 is at 148 (170 × 5/20 = 42.5, cut to 42).
        assert!(
            svg.contains(r#"class="seats" points="185,105 475,20""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"class="managed" points="185,148 475,105""#),
            "{svg}"
        );
    }
}
