//! Retention: each organization keeps its events for a number of days (default 400; the global
//! chain too). The job deletes the oldest prefix of a chain: every event before the first one
//! still within the period. It first writes a checkpoint (the last pruned event's number and
//! hash), which is what allows the database to delete those events, so the chain still
//! verifies from the checkpoint on; the pruning itself is an event of the chain.

use std::time::Duration;

use super::{Actor, AuditAction, Event, RequestMeta};
use crate::db::{Db, Tx};

/// Days an organization's events are kept unless it chose otherwise.
pub const DEFAULT_DAYS: i64 = 400;
/// The shortest and longest period an organization may choose.
pub const MIN_DAYS: i64 = 30;
pub const MAX_DAYS: i64 = 3650;
/// Webhook delivery log lines are kept this long.
const DELIVERY_LOG_MS: i64 = 30 * 86_400_000;

/// The retention period of `org_id` in days.
pub async fn days(pool: &sqlx::AnyPool, org_id: &str) -> Result<i64, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT retention_days FROM audit_settings WHERE org_id = $1")
            .bind(org_id.to_string())
            .fetch_optional(pool)
            .await?;
    Ok(row.map_or(DEFAULT_DAYS, |r| r.0))
}

/// Why a retention period is refused.
pub fn check_days(days: i64) -> Result<i64, String> {
    if (MIN_DAYS..=MAX_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(format!("must be between {MIN_DAYS} and {MAX_DAYS} days"))
    }
}

/// Stores the retention period of `org_id` (checked by [`check_days`] first).
pub async fn set_days(tx: &mut Tx, now: i64, org_id: &str, days: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_settings (org_id, retention_days, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id) DO UPDATE SET retention_days = $2, updated_at = $3",
    )
    .bind(org_id.to_string())
    .bind(days)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What one chain's pruning did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    pub chain: String,
    pub through_seq: i64,
    pub events: u64,
}

/// Prunes `chain` of events older than `cutoff` (Unix ms) in one transaction; `None` when
/// nothing is old enough.
pub async fn prune_chain(
    db: &Db,
    now: i64,
    chain_id: &str,
    cutoff: i64,
) -> Result<Option<Pruned>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Take the chain's head first: writers of this chain (and another pruning instance) wait.
    super::store::lock_head(&mut tx, chain_id).await?;
    let first_young: (Option<i64>,) =
        sqlx::query_as("SELECT MIN(seq) FROM audit_events WHERE chain = $1 AND occurred_at >= $2")
            .bind(chain_id.to_string())
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
    let through: (Option<i64>,) = match first_young.0 {
        Some(young) => {
            sqlx::query_as("SELECT MAX(seq) FROM audit_events WHERE chain = $1 AND seq < $2")
                .bind(chain_id.to_string())
                .bind(young)
                .fetch_one(&mut *tx)
                .await?
        }
        None => {
            sqlx::query_as("SELECT MAX(seq) FROM audit_events WHERE chain = $1")
                .bind(chain_id.to_string())
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let Some(through) = through.0 else {
        tx.rollback().await?;
        return Ok(None);
    };
    let (hash,): (String,) =
        sqlx::query_as("SELECT hash FROM audit_events WHERE chain = $1 AND seq = $2")
            .bind(chain_id.to_string())
            .bind(through)
            .fetch_one(&mut *tx)
            .await?;
    let deleted = checkpoint_and_delete(&mut tx, now, chain_id, through, &hash).await?;
    let org_id = (!chain_id.is_empty())
        .then(|| crate::ids::OrgId::parse(chain_id))
        .flatten();
    super::record(
        &mut tx,
        now,
        Event {
            org_id,
            action: AuditAction::AuditEventsPruned,
            actor: &Actor::System("retention"),
            target: None,
            meta: &RequestMeta::default(),
            details: serde_json::json!({
                "through_seq": through,
                "checkpoint_hash": hash,
                "events": deleted,
                "older_than": cutoff,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Pruned {
        chain: chain_id.to_string(),
        through_seq: through,
        events: deleted,
    }))
}

async fn checkpoint_and_delete(
    tx: &mut Tx,
    now: i64,
    chain_id: &str,
    through: i64,
    hash: &str,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("SELECT COUNT(*) FROM audit_events WHERE chain = $1 AND seq <= $2")
        .bind(chain_id.to_string())
        .bind(through)
        .fetch_one(&mut **tx)
        .await
        .and_then(|row| sqlx::Row::try_get::<i64, _>(&row, 0))?;
    sqlx::query(
        "INSERT INTO audit_checkpoints (chain, seq, hash, pruned, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(chain_id.to_string())
    .bind(through)
    .bind(hash.to_string())
    .bind(deleted)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let done = sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq <= $2")
        .bind(chain_id.to_string())
        .bind(through)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// Chains with events older than their retention period, with each one's cutoff.
async fn due(db: &Db, now: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT h.chain, $1 - COALESCE(s.retention_days, $2) * 86400000 AS cutoff \
         FROM audit_chain_heads h LEFT JOIN audit_settings s ON s.org_id = h.chain \
         WHERE EXISTS (SELECT 1 FROM audit_events e WHERE e.chain = h.chain \
         AND e.occurred_at < $1 - COALESCE(s.retention_days, $2) * 86400000)",
    )
    .bind(now)
    .bind(DEFAULT_DAYS)
    .fetch_all(db.pool())
    .await
}

/// One round of the job: prunes every chain that is due, and old delivery log lines.
pub async fn prune_all(db: &Db, now: i64) -> Result<Vec<Pruned>, sqlx::Error> {
    let mut done = Vec::new();
    for (chain_id, cutoff) in due(db, now).await? {
        if let Some(p) = prune_chain(db, now, &chain_id, cutoff).await? {
            tracing::info!(chain = %p.chain, through = p.through_seq, events = p.events, "audit events pruned");
            done.push(p);
        }
    }
    sqlx::query("DELETE FROM audit_webhook_deliveries WHERE attempted_at < $1")
        .bind(now - DELIVERY_LOG_MS)
        .execute(&mut *db.write().await?)
        .await?;
    Ok(done)
}

/// Runs retention hourly until aborted.
pub async fn run(state: crate::AppState) {
    loop {
        if let Err(err) = prune_all(&state.db, state.clock.now_ms()).await {
            tracing::warn!(error = %err, "audit retention failed");
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
