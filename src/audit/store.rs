//! SQL of the audit log.

use sqlx::Row;

use super::{Event, StoredEvent};
use crate::db::Tx;

const INSERT: &str = "INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, \
     actor_id, actor_label, target_type, target_id, ip, user_agent, details) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub(super) async fn insert(tx: &mut Tx, now: i64, event: &Event<'_>) -> Result<(), sqlx::Error> {
    let (actor_type, actor_id, actor_label) = event.actor.parts();
    sqlx::query(INSERT)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(event.org_id.map(|id| id.to_string()))
        .bind(now)
        .bind(event.action.as_str())
        .bind(actor_type)
        .bind(actor_id.map(str::to_string))
        .bind(actor_label.map(str::to_string))
        .bind(event.target.as_ref().map(|t| t.kind))
        .bind(event.target.as_ref().map(|t| t.id.clone()))
        .bind(event.meta.ip.clone())
        .bind(event.meta.user_agent.clone())
        .bind(event.details.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT_RECENT: &str = "SELECT id, org_id, occurred_at, action, actor_type, actor_id, \
     actor_label, target_type, target_id, ip, user_agent, details FROM audit_events \
     WHERE ($1 = '' OR org_id = $1) ORDER BY occurred_at DESC, id DESC LIMIT $2";

/// The newest events, of one org or (with `None`) of all; newest first.
pub async fn recent(
    pool: &sqlx::AnyPool,
    org_id: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(SELECT_RECENT)
        .bind(org_id.unwrap_or("").to_string())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            Ok(StoredEvent {
                id: row.try_get("id")?,
                org_id: row.try_get("org_id")?,
                occurred_at: row.try_get("occurred_at")?,
                action: row.try_get("action")?,
                actor_type: row.try_get("actor_type")?,
                actor_id: row.try_get("actor_id")?,
                actor_label: row.try_get("actor_label")?,
                target_type: row.try_get("target_type")?,
                target_id: row.try_get("target_id")?,
                ip: row.try_get("ip")?,
                user_agent: row.try_get("user_agent")?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}
