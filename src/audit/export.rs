//! Exporting an organization's events as CSV or JSON Lines, streamed: a task reads rows from
//! the database one at a time (sqlx `fetch`) and hands each formatted line through a small
//! bounded channel to the response body, so memory stays constant however many events match
//! and a slow reader slows the query instead of filling memory.

use axum::body::Bytes;
use futures_util::{Stream, TryStreamExt};
use sqlx::AnyPool;

use super::StoredEvent;
use super::query::{Bind, Filter, where_clause};

/// An export format (`format=csv|jsonl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// Reads the `format` parameter.
    pub fn parse(raw: &str) -> Option<Format> {
        match raw {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::JsonLines),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/jsonl; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
        }
    }
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "id,seq,occurred_at,time,action,actor_type,actor_id,actor_label,\
     target_type,target_id,ip,user_agent,details,prev_hash,hash\r\n";

/// Lines buffered between the database reader and the response body.
const CHANNEL_LINES: usize = 64;

/// The export of `chain`'s events that match `filter`, newest first, as a stream of lines.
pub fn stream(
    pool: AnyPool,
    chain: String,
    filter: Filter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_LINES);
    tokio::spawn(async move {
        if format == Format::Csv && tx.send(Ok(Bytes::from(CSV_HEADER))).await.is_err() {
            return;
        }
        let (clause, binds) = where_clause(&chain, &filter, None);
        let sql = format!(
            "SELECT {} FROM audit_events WHERE {clause} ORDER BY seq DESC",
            super::store::COLUMNS
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                Bind::Text(v) => query.bind(v),
                Bind::Int(v) => query.bind(v),
            };
        }
        let mut rows = query.fetch(&pool);
        loop {
            let line = match rows.try_next().await {
                Ok(Some(row)) => StoredEvent::of(&row).map(|e| line_of(&e, format)),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let item = line.map(Bytes::from).map_err(|e| {
                // The status line is already sent: the body ends early and the log says why.
                tracing::error!(error = %e, "audit export failed while streaming");
                std::io::Error::other("the export failed; see the server log")
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// One event as one line of the format (with its line ending).
pub fn line_of(event: &StoredEvent, format: Format) -> String {
    match format {
        Format::JsonLines => {
            let mut line = serde_json::to_string(event).unwrap_or_default();
            line.push('\n');
            line
        }
        Format::Csv => {
            let fields = [
                event.id.clone(),
                event.seq.map(|s| s.to_string()).unwrap_or_default(),
                event.occurred_at.to_string(),
                rfc3339(event.occurred_at),
                event.action.clone(),
                event.actor_type.clone(),
                event.actor_id.clone().unwrap_or_default(),
                event.actor_label.clone().unwrap_or_default(),
                event.target_type.clone().unwrap_or_default(),
                event.target_id.clone().unwrap_or_default(),
                event.ip.clone().unwrap_or_default(),
                event.user_agent.clone().unwrap_or_default(),
                event.details.to_string(),
                event.prev_hash.clone().unwrap_or_default(),
                event.hash.clone().unwrap_or_default(),
            ];
            let mut line = fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(",");
            line.push_str("\r\n");
            line
        }
    }
}

/// The time in RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A field that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`:
/// user agents and names are chosen by whoever sent the request.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(1_764_547_200_123), "2025-12-01T00:00:00.123Z");
    }
}
