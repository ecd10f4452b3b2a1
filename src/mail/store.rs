//! SQL of the outbox.

use sqlx::Row;

use super::Mail;
use crate::db::{Dialect, Tx, skip_locked};

const INSERT: &str = "INSERT INTO outbox (id, kind, to_addr, subject, body_text, body_html, \
     kept_text, kept_html, status, attempts, created_at, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9)";

/// Writes a message: its bodies as they go out, and (for a message with a single-use link)
/// the bodies to keep once it is delivered.
pub(super) async fn insert(
    tx: &mut Tx,
    now: i64,
    mail: &Mail,
    (text, html): (&str, &str),
    kept: Option<&(String, String)>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(mail.kind.as_str())
        .bind(mail.to.clone())
        .bind(mail.subject.clone())
        .bind(text.to_string())
        .bind(html.to_string())
        .bind(kept.map(|k| k.0.clone()))
        .bind(kept.map(|k| k.1.clone()))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Where an outbox message is in its delivery; stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// Delivered to the SMTP server.
    Sent,
    /// Given up after the last attempt.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<OutboxStatus, sqlx::Error> {
        match raw {
            "pending" => Ok(OutboxStatus::Pending),
            "sent" => Ok(OutboxStatus::Sent),
            "failed" => Ok(OutboxStatus::Failed),
            other => Err(sqlx::Error::Decode(
                format!("unknown outbox status {other:?}").into(),
            )),
        }
    }
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message in the outbox.
#[derive(Clone, Debug)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: super::MailKind,
    pub to_addr: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, kind, to_addr, subject, body_text, body_html, status, attempts, \
     created_at, sent_at, last_error";

fn from_row(row: &sqlx::any::AnyRow) -> Result<OutboxMessage, sqlx::Error> {
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        kind: {
            let raw: String = row.try_get("kind")?;
            super::MailKind::parse(&raw).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "kind".into(),
                source: format!("unknown mail kind {raw:?}").into(),
            })?
        },
        to_addr: row.try_get("to_addr")?,
        subject: row.try_get("subject")?,
        body_text: row.try_get("body_text")?,
        body_html: row.try_get("body_html")?,
        status: OutboxStatus::parse(&row.try_get::<String, _>("status")?)?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// Claims up to `limit` due messages for `lease_ms`: another sender (another server instance)
/// skips them until the lease ends, so a message is handed to one sender at a time.
pub async fn claim_due(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let sql = format!(
        "UPDATE outbox SET claimed_until = $1 WHERE id IN (SELECT id FROM outbox \
         WHERE status = 'pending' AND next_attempt_at <= $2 \
         AND (claimed_until IS NULL OR claimed_until < $2) \
         ORDER BY next_attempt_at, id LIMIT $3{}) RETURNING {COLUMNS}",
        skip_locked(dialect)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Once a message leaves the outbox for good, a single-use link in it is removed: the bodies
/// become the kept ones (in one statement, every right-hand side reads the row as it was).
/// `$2` is the time.
macro_rules! redact {
    () => {
        "body_text = COALESCE(kept_text, body_text), \
         body_html = COALESCE(kept_html, body_html), kept_text = NULL, kept_html = NULL, \
         redacted_at = CASE WHEN kept_text IS NULL THEN redacted_at ELSE $2 END"
    };
}

const MARK_SENT: &str = concat!(
    "UPDATE outbox SET status = 'sent', sent_at = $2, claimed_until = NULL, \
     attempts = attempts + 1, last_error = NULL, ",
    redact!(),
    " WHERE id = $1 AND status = 'pending'"
);

/// Records a delivery and removes the message's single-use link from the outbox. Only a
/// pending message changes, so a message is marked sent once.
pub async fn mark_sent(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_SENT)
        .bind(id.to_string())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

const MARK_RETRY: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, \
     claimed_until = NULL, last_error = $3 WHERE id = $1 AND status = 'pending'";

/// Records a failed attempt and when to try again.
pub async fn mark_retry(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_RETRY)
        .bind(id.to_string())
        .bind(next_attempt_at)
        .bind(error.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

const MARK_FAILED: &str = concat!(
    "UPDATE outbox SET status = 'failed', attempts = attempts + 1, \
     claimed_until = NULL, last_error = $3, ",
    redact!(),
    " WHERE id = $1 AND status = 'pending'"
);

/// Gives up on a message the SMTP server refused permanently (e.g. an unknown mailbox); its
/// single-use link leaves the outbox too.
pub async fn mark_failed(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    now: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_FAILED)
        .bind(id.to_string())
        .bind(now)
        .bind(error.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

const SELECT_RECENT: &str = "SELECT id, kind, to_addr, subject, body_text, body_html, status, \
     attempts, created_at, sent_at, last_error FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1";

/// The newest messages, newest first (the development mail page, tests).
pub async fn recent(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let rows = sqlx::query(SELECT_RECENT)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}
