//! The audit webhook: an organization may have its events POSTed, one JSON event per request,
//! to a URL of its own. The events table is the outbox: the webhook row keeps the number of
//! the last event delivered (`delivered_seq`), and a background job sends the events after it
//! in chain order, one at a time, moving the mark only after a 2xx answer. A failure waits
//! with exponential backoff and tries the same event again, so events arrive in order and none
//! is lost, and an action never waits for a delivery. The job claims a webhook with a lease, so
//! several server instances never deliver one organization's events at once.
//!
//! Each request carries `X-Nulab-Pass-Timestamp` (Unix seconds) and `X-Nulab-Pass-Signature:
//! v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under the webhook's secret>`.

use std::time::{Duration, Instant};

use sqlx::Row;

use super::StoredEvent;
use super::store::COLUMNS;
use crate::db::{Db, Tx, skip_locked};

/// Time one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay; doubled per failure up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 3_600_000;
/// How long a claim on a webhook lasts.
const LEASE_MS: i64 = 120_000;
/// Events delivered per claim before other organizations get their turn.
const BATCH: i64 = 100;

/// An organization's webhook.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub org_id: String,
    pub url: String,
    pub secret: String,
    pub delivered_seq: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

const WEBHOOK_COLUMNS: &str =
    "org_id, url, secret, delivered_seq, attempts, next_attempt_at, last_error";

fn webhook_of(row: &sqlx::any::AnyRow) -> Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        org_id: row.try_get("org_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        delivered_seq: row.try_get("delivered_seq")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// The webhook of `org_id`, if one is configured.
pub async fn get(pool: &sqlx::AnyPool, org_id: &str) -> Result<Option<Webhook>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM audit_webhooks WHERE org_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(webhook_of)
        .transpose()
}

/// Sets (or replaces) the webhook of `org_id` with a new secret; events after the chain's
/// current head are delivered. Returns the secret (shown once to the admin).
pub async fn put(tx: &mut Tx, now: i64, org_id: &str, url: &str) -> Result<String, sqlx::Error> {
    let head: Option<(i64,)> = sqlx::query_as("SELECT seq FROM audit_chain_heads WHERE chain = $1")
        .bind(org_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    let secret = crate::secrets::new_token("whsec_");
    sqlx::query(
        "INSERT INTO audit_webhooks (org_id, url, secret, delivered_seq, attempts, \
         next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $5, $5) \
         ON CONFLICT (org_id) DO UPDATE SET url = $2, secret = $3, delivered_seq = $4, \
         attempts = 0, next_attempt_at = $5, claimed_until = NULL, last_error = NULL, updated_at = $5",
    )
    .bind(org_id.to_string())
    .bind(url.to_string())
    .bind(secret.clone())
    .bind(head.map_or(0, |h| h.0))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(secret)
}

/// Removes the webhook of `org_id`; whether there was one.
pub async fn delete(tx: &mut Tx, org_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM audit_webhooks WHERE org_id = $1")
        .bind(org_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The signature header value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mac =
        crate::secrets::hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    format!("v1={}", crate::secrets::hex(&mac))
}

/// What one delivery attempt came to.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// POSTs `body` to `url`, signed; `dev` allows http and non-public addresses.
pub async fn post(url: &str, secret: &str, now: i64, body: &str, dev: bool) -> Attempt {
    let started = Instant::now();
    let result = async {
        let url = url::Url::parse(url).map_err(|_| "the URL is not valid".to_string())?;
        let addrs = crate::net::check_url(&url, dev, TIMEOUT)
            .await
            .map_err(|r| format!("the URL was refused: {r}"))?;
        let client = crate::net::pinned_client(&url, &addrs, TIMEOUT)
            .map_err(|_| "no HTTP client could be built".to_string())?;
        let timestamp = now / 1000;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "nulab-pass-audit-webhook/1")
            .header("x-nulab-pass-timestamp", timestamp.to_string())
            .header("x-nulab-pass-signature", signature(secret, timestamp, body))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the request timed out".to_string()
                } else {
                    "the endpoint could not be reached".to_string()
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("the endpoint answered {}", status.as_u16()))
        }
    }
    .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    match result {
        Ok(status) => Attempt {
            status: Some(status),
            error: None,
            duration_ms,
        },
        Err(error) => Attempt {
            status: error
                .strip_prefix("the endpoint answered ")
                .and_then(|s| s.parse().ok()),
            error: Some(error),
            duration_ms,
        },
    }
}

/// Writes one attempt to the delivery log.
pub async fn log(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    event: Option<(&str, i64)>,
    attempt: &Attempt,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_webhook_deliveries (id, org_id, kind, seq, event_id, outcome, \
         status_code, error, attempted_at, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(org_id.to_string())
    .bind(if event.is_some() { "event" } else { "test" })
    .bind(event.map(|e| e.1))
    .bind(event.map(|e| e.0.to_string()))
    .bind(if attempt.delivered() { "delivered" } else { "failed" })
    .bind(attempt.status.map(i64::from))
    .bind(attempt.error.clone())
    .bind(now)
    .bind(attempt.duration_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// One line of the delivery log.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `event` or `test`.
    pub kind: String,
    pub seq: Option<i64>,
    pub event_id: Option<String>,
    /// `delivered` or `failed`.
    pub outcome: String,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub attempted_at: i64,
    pub duration_ms: i64,
}

/// The newest attempts of `org_id`'s webhook, newest first.
pub async fn deliveries(
    pool: &sqlx::AnyPool,
    org_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, seq, event_id, outcome, status_code, error, attempted_at, duration_ms \
         FROM audit_webhook_deliveries WHERE org_id = $1 ORDER BY attempted_at DESC, id DESC LIMIT $2",
    )
    .bind(org_id.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                kind: r.try_get("kind")?,
                seq: r.try_get("seq")?,
                event_id: r.try_get("event_id")?,
                outcome: r.try_get("outcome")?,
                status_code: r.try_get("status_code")?,
                error: r.try_get("error")?,
                attempted_at: r.try_get("attempted_at")?,
                duration_ms: r.try_get("duration_ms")?,
            })
        })
        .collect()
}

/// Claims the webhooks that have undelivered events and are due.
async fn claim_due(db: &Db, now: i64) -> Result<Vec<Webhook>, sqlx::Error> {
    let sql = format!(
        "UPDATE audit_webhooks SET claimed_until = $1 WHERE org_id IN (SELECT w.org_id FROM \
         audit_webhooks w WHERE w.next_attempt_at <= $2 \
         AND (w.claimed_until IS NULL OR w.claimed_until < $2) \
         AND EXISTS (SELECT 1 FROM audit_chain_heads h WHERE h.chain = w.org_id AND h.seq > w.delivered_seq) \
         ORDER BY w.next_attempt_at LIMIT 20{}) RETURNING {WEBHOOK_COLUMNS}",
        skip_locked(db.dialect())
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now + LEASE_MS)
        .bind(now)
        .fetch_all(&mut *db.write().await?)
        .await?;
    rows.iter().map(webhook_of).collect()
}

/// Delivers the claimed webhook's next events in order; stops at the first failure.
async fn deliver_batch(db: &Db, hook: &Webhook, now: i64, dev: bool) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hook.org_id.clone())
        .bind(hook.delivered_seq)
        .bind(BATCH)
        .fetch_all(db.pool())
        .await?;
    if rows.is_empty() {
        return release(db, hook).await;
    }
    // Renewing the claim is a synchronous commit, and on PostgreSQL that puts the log on disk up
    // to it: a sign-in's event, committed without waiting for the disk
    // (`db::Batch::defer_flush`), is then on disk before it leaves for the receiver.
    sqlx::query("UPDATE audit_webhooks SET claimed_until = $2 WHERE org_id = $1")
        .bind(hook.org_id.clone())
        .bind(now + LEASE_MS)
        .execute(&mut *db.write().await?)
        .await?;
    for row in &rows {
        let event = StoredEvent::of(row)?;
        let seq = event.seq.unwrap_or_default();
        let body = serde_json::to_string(&event).unwrap_or_default();
        let attempt = post(&hook.url, &hook.secret, now, &body, dev).await;
        log(
            &mut *db.write().await?,
            &hook.org_id,
            Some((&event.id, seq)),
            &attempt,
            now,
        )
        .await?;
        if let Some(error) = &attempt.error {
            let attempts = hook.attempts + 1;
            let wait = (BASE_BACKOFF_MS << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
            sqlx::query(
                "UPDATE audit_webhooks SET attempts = $2, next_attempt_at = $3, \
                 claimed_until = NULL, last_error = $4 WHERE org_id = $1 AND url = $5",
            )
            .bind(hook.org_id.clone())
            .bind(attempts)
            .bind(now + wait)
            .bind(error.clone())
            .bind(hook.url.clone())
            .execute(&mut *db.write().await?)
            .await?;
            return Ok(());
        }
        // Only the claimant moves the mark, and only forward (a reconfigured webhook restarts).
        sqlx::query(
            "UPDATE audit_webhooks SET delivered_seq = $2, attempts = 0, last_error = NULL \
             WHERE org_id = $1 AND url = $3 AND delivered_seq < $2",
        )
        .bind(hook.org_id.clone())
        .bind(seq)
        .bind(hook.url.clone())
        .execute(&mut *db.write().await?)
        .await?;
    }
    release(db, hook).await
}

/// Lets go of the claim on `hook`.
async fn release(db: &Db, hook: &Webhook) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_webhooks SET claimed_until = NULL WHERE org_id = $1")
        .bind(hook.org_id.clone())
        .execute(&mut *db.write().await?)
        .await?;
    Ok(())
}

/// One round of the job: every due webhook gets its next events.
pub async fn deliver_due(db: &Db, now: i64, dev: bool) -> Result<usize, sqlx::Error> {
    let hooks = claim_due(db, now).await?;
    for hook in &hooks {
        deliver_batch(db, hook, now, dev).await?;
    }
    Ok(hooks.len())
}

/// Runs the delivery job until aborted.
pub async fn run(state: crate::AppState) {
    let poll = Duration::from_millis(state.config.outbox_poll_ms.clamp(10, 5_000));
    loop {
        if let Err(err) = deliver_due(&state.db, state.clock.now_ms(), state.config.dev).await {
            tracing::warn!(error = %err, "audit webhook delivery failed");
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let s = signature("whsec_x", 1_700_000_000, "{\"a\":1}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64);
        assert_ne!(s, signature("whsec_x", 1_700_000_001, "{\"a\":1}"));
        assert_ne!(s, signature("whsec_x", 1_700_000_000, "{\"a\":2}"));
        assert_ne!(s, signature("whsec_y", 1_700_000_000, "{\"a\":1}"));
    }
}
