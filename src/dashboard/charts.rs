//! The dashboard's charts, drawn on the server as SVG: a horizontal bar split into parts (seats,
//! members) and stacked columns per day (sign-ins). Colours are SVG attributes, never inline
//! styles, so the page's Content-Security-Policy holds; every text is escaped; each chart has a
//! `<title>` and a `<desc>` and each bar its own `<title>` (read by screen readers and shown on
//! hover). The numbers are also on the page as text.

use std::fmt::Write;

/// One named series: its label and colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    pub label: String,
    pub colour: &'static str,
}

/// One part of a split bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub series: Series,
    pub value: i64,
}

/// One column of stacked values: its label and one value per series (same order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub label: String,
    pub values: Vec<i64>,
}

/// Escapes text for SVG (XML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, id: &str, width: i64, height: i64, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(desc)
    );
}

fn legend(out: &mut String, series: &[&Series], y: i64, width: i64) {
    let (mut x, mut row) = (0, y);
    for s in series {
        let label = escape(&s.label);
        let w = 18 + 7 * i64::try_from(s.label.chars().count()).unwrap_or(20) + 14;
        if x + w > width && x > 0 {
            x = 0;
            row += 16;
        }
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11" fill="#1f2328">{label}</text>"##,
            row - 9,
            s.colour,
            x + 14,
            row
        );
        x += w;
    }
}

/// Rows the legend of `series` takes in `width` (the same wrapping as [`legend`]).
fn legend_rows(series: &[&Series], width: i64) -> i64 {
    let (mut x, mut rows) = (0, 1);
    for s in series {
        let w = 18 + 7 * i64::try_from(s.label.chars().count()).unwrap_or(20) + 14;
        if x + w > width && x > 0 {
            x = 0;
            rows += 1;
        }
        x += w;
    }
    rows
}

/// A horizontal bar of `total` width units split into `parts` (left to right; anything past
/// `total` widens the scale so nothing is cut off), with a legend below.
pub fn split_bar(id: &str, title: &str, parts: &[Part], total: i64) -> String {
    const W: i64 = 320;
    let sum: i64 = parts.iter().map(|p| p.value.max(0)).sum();
    let scale = sum.max(total).max(1);
    let series: Vec<&Series> = parts.iter().map(|p| &p.series).collect();
    let height = 34 + 16 * legend_rows(&series, W);
    let desc = parts
        .iter()
        .map(|p| format!("{}: {}", p.series.label, p.value))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = String::new();
    open(&mut out, id, W, height, title, &desc);
    let _ = write!(
        out,
        r##"<rect x="0" y="0" width="{W}" height="18" fill="#eef1f4"/>"##
    );
    let mut x = 0;
    for p in parts.iter().filter(|p| p.value > 0) {
        let w = W * p.value / scale;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="0" width="{w}" height="18" fill="{}"><title>{}: {}</title></rect>"#,
            p.series.colour,
            escape(&p.series.label),
            p.value
        );
        x += w;
    }
    if total > 0 && total < scale {
        let mark = W * total / scale;
        let _ = write!(
            out,
            r##"<line x1="{mark}" y1="-2" x2="{mark}" y2="22" stroke="#1f2328" stroke-width="2"/>"##
        );
    }
    legend(&mut out, &series, 36, W);
    out.push_str("</svg>");
    out
}

/// Stacked columns, one per entry of `columns`, each stacking its values in the order of
/// `series` from the bottom up; the y axis is labelled with 0 and the highest total.
pub fn stacked_columns(id: &str, title: &str, series: &[Series], columns: &[Column]) -> String {
    const W: i64 = 640;
    const LEFT: i64 = 36;
    const TOP: i64 = 10;
    const BOTTOM: i64 = 170;
    let max = columns
        .iter()
        .map(|c| c.values.iter().map(|v| v.max(&0)).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let refs: Vec<&Series> = series.iter().collect();
    let height = BOTTOM + 44 + 16 * legend_rows(&refs, W);
    let total: i64 = columns.iter().flat_map(|c| c.values.iter()).sum();
    let desc = format!(
        "{} in all over {} days; the busiest day had {max}.",
        total,
        columns.len()
    );
    let mut out = String::new();
    open(&mut out, id, W, height, title, &desc);
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{W}" y2="{BOTTOM}" stroke="#59636e"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#1f2328">{max}</text><text x="{}" y="{BOTTOM}" font-size="11" text-anchor="end" fill="#1f2328">0</text>"##,
        LEFT - 4,
        TOP + 8,
        LEFT - 4
    );
    let n = i64::try_from(columns.len().max(1)).unwrap_or(1);
    let step = (W - LEFT) / n;
    let bar = (step - 2).max(1);
    for (i, column) in columns.iter().enumerate() {
        let x = LEFT + step * i64::try_from(i).unwrap_or(0) + 1;
        let mut y = BOTTOM;
        for (s, value) in series.iter().zip(&column.values).filter(|(_, v)| **v > 0) {
            let h = ((BOTTOM - TOP) * value / max).max(1);
            y -= h;
            let _ = write!(
                out,
                r#"<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="{}"><title>{}: {} {value}</title></rect>"#,
                s.colour,
                escape(&column.label),
                escape(&s.label)
            );
        }
        // A label under every fifth column and the last keeps 30 days readable.
        if i % 5 == 0 || i + 1 == columns.len() {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#1f2328">{}</text>"##,
                x + bar / 2,
                BOTTOM + 14,
                escape(&column.label)
            );
        }
    }
    legend(&mut out, &refs, BOTTOM + 38, W);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, colour: &'static str) -> Series {
        Series {
            label: label.into(),
            colour,
        }
    }

    #[test]
    fn a_split_bar_is_drawn_to_scale_and_marks_the_total_when_exceeded() {
        let parts = [
            Part {
                series: series("Used", "#111111"),
                value: 6,
            },
            Part {
                series: series("Reserved", "#222222"),
                value: 2,
            },
        ];
        let svg = split_bar("seats", "Seats", &parts, 4);
        // 8 over a total of 4: the scale is 8, used is 320 × 6/8 = 240 wide, the mark at 160.
        assert!(svg.contains(r##"<rect x="0" y="0" width="240" height="18" fill="#111111">"##));
        assert!(svg.contains(r##"<rect x="240" y="0" width="80" height="18" fill="#222222">"##));
        assert!(svg.contains(r#"x1="160""#), "{svg}");
        assert!(svg.contains("<desc id=\"seats-desc\">Used: 6, Reserved: 2</desc>"));
        let within = split_bar("seats", "Seats", &parts, 16);
        assert!(within.contains(r##"width="120" height="18" fill="#111111""##));
        assert!(!within.contains("x1="), "no mark while within the total");
    }

    #[test]
    fn stacked_columns_stack_each_series_and_escape_text() {
        let s = [series("OK", "#0a0a0a"), series("<bad> & \"x\"", "#b0b0b0")];
        let columns = [
            Column {
                label: "Dec 4".into(),
                values: vec![3, 1],
            },
            Column {
                label: "Dec 5".into(),
                values: vec![0, 0],
            },
        ];
        let svg = stacked_columns("signins", "Sign-ins", &s, &columns);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style="), "no inline style under the CSP");
        assert!(!svg.contains("<bad>"), "{svg}");
        assert!(svg.contains("&lt;bad&gt; &amp; &quot;x&quot;"));
        // The highest total is 4: 3 of 4 of 160 px is 120 high, 1 is 40 on top of it.
        assert!(
            svg.contains(r##"y="50" width="300" height="120" fill="#0a0a0a""##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"y="10" width="300" height="40" fill="#b0b0b0""##),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect x=\"3").count(),
            2,
            "the empty day draws no bar"
        );
        assert!(svg.contains("4 in all over 2 days; the busiest day had 4."));
    }
}
