//! The audit log for an organization's admins: searching, one event in detail, export, the
//! chain head, and the retention and webhook settings; shared by the page (`pages`) and the
//! JSON API (`api`). Sits above `saml` so that an SSO failure's reason code reads in words.

pub mod api;
pub mod pages;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::query::{BadParam, CursorKey, Filter, RawFilter, where_clause};
use super::{AuditAction, Event, StoredEvent, retention, webhook};
use crate::AppState;
use crate::orgs::AdminScope;
use crate::paging::Page;
use crate::web::error::AppError;

/// Every query parameter of the viewer, the API and the export.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// An action or a prefix at a dot boundary: `sso`, `sso.signin`, `domain.verified`.
    pub action: Option<String>,
    /// An account or API token id, or an email (matched against the actor's label).
    pub actor: Option<String>,
    /// The target's id.
    pub target: Option<String>,
    /// The client's IP address.
    pub ip: Option<String>,
    /// From this time on: RFC 3339, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` (UTC) or Unix ms.
    pub since: Option<String>,
    /// Before this time (same forms).
    pub until: Option<String>,
    /// Free text in the action, actor, target and details (case-insensitive).
    pub q: Option<String>,
    /// From the previous page's `next_cursor` (ignored by the export).
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
    /// `csv` or `jsonl`: stream every matching event in that format instead of a page.
    pub format: Option<String>,
}

impl AuditQuery {
    pub fn raw_filter(&self) -> RawFilter {
        RawFilter {
            action: self.action.clone(),
            actor: self.actor.clone(),
            target: self.target.clone(),
            ip: self.ip.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            q: self.q.clone(),
        }
    }
}

pub(super) fn invalid(param: &str, message: impl std::fmt::Display) -> AppError {
    AppError::client(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        format!("{param}: {message}"),
    )
}

impl From<BadParam> for AppError {
    fn from(bad: BadParam) -> Self {
        invalid(bad.param, bad.message)
    }
}

/// The key that signs cursors (one per deployment, in the database).
async fn cursor_key(state: &AppState) -> Result<CursorKey, AppError> {
    let (value,): (String,) = sqlx::query_as("SELECT value FROM audit_keys WHERE name = 'cursor'")
        .fetch_one(state.db.pool())
        .await?;
    Ok(CursorKey::new(value.as_bytes()))
}

/// One page of `scope`'s events that match `query`, newest first.
pub async fn search(
    state: &AppState,
    scope: &AdminScope,
    query: &AuditQuery,
) -> Result<Page<StoredEvent>, AppError> {
    let filter = query.raw_filter().check()?;
    let limit = match query
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| invalid("limit", "not a number"))?,
        ),
    };
    let limit = crate::paging::limit(limit).map_err(|m| invalid("limit", m))?;
    let chain = scope.org().id.to_string();
    let key = cursor_key(state).await?;
    let before = match query
        .cursor
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        None => None,
        Some(c) => Some(key.open(&chain, c).ok_or_else(|| {
            AppError::client(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor: not a cursor of this organization's audit log; start from the first page",
            )
        })?),
    };
    let rows = fetch_page(state, &chain, &filter, before, limit + 1).await?;
    Ok(crate::paging::into_page(rows, limit, |e| {
        key.sign(&chain, e.seq.unwrap_or_default())
    }))
}

async fn fetch_page(
    state: &AppState,
    chain: &str,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, AppError> {
    let (clause, binds) = where_clause(chain, filter, before);
    let sql = format!(
        "SELECT {} FROM audit_events WHERE {clause} ORDER BY seq DESC LIMIT {limit}",
        super::store::COLUMNS
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        q = match bind {
            super::query::Bind::Text(v) => q.bind(v),
            super::query::Bind::Int(v) => q.bind(v),
        };
    }
    let rows = q.fetch_all(state.db.pool()).await?;
    Ok(rows.iter().map(StoredEvent::of).collect::<Result<_, _>>()?)
}

/// One event of `scope`'s organization; 404 for an event of another organization.
pub async fn event(
    state: &AppState,
    scope: &AdminScope,
    id: &str,
) -> Result<StoredEvent, AppError> {
    let sql = format!(
        "SELECT {} FROM audit_events WHERE id = $1 AND chain = $2",
        super::store::COLUMNS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .bind(scope.org().id.to_string())
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(|| {
            AppError::not_found("there is no such event in this organization's audit log")
        })?;
    Ok(StoredEvent::of(&row)?)
}

/// An event with what it means, for people.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Explained {
    #[serde(flatten)]
    pub event: StoredEvent,
    /// For `sso.signin.failed`: the reason code in words.
    pub reason_message: Option<String>,
}

/// Adds the words of an SSO failure's reason code.
pub fn explain(event: StoredEvent) -> Explained {
    let reason_message = event.details["reason"]
        .as_str()
        .and_then(crate::saml::acs::Reason::from_code)
        .map(|r| r.message().to_string());
    Explained {
        event,
        reason_message,
    }
}

/// The head of the organization's chain and its retention checkpoint.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ChainHead {
    /// The number of the newest event (0 before the first).
    pub seq: i64,
    /// The newest event's hash: record it elsewhere to prove later that nothing before it changed.
    pub hash: String,
    /// The last event pruned by retention, if any (the chain verifies from there).
    pub checkpoint_seq: Option<i64>,
    pub checkpoint_hash: Option<String>,
    pub retention_days: i64,
}

pub async fn chain_head(state: &AppState, scope: &AdminScope) -> Result<ChainHead, AppError> {
    let chain = scope.org().id.to_string();
    let pool = state.db.pool();
    let head = super::store::head(pool, &chain).await?;
    let checkpoint = super::store::last_checkpoint(pool, &chain).await?;
    Ok(ChainHead {
        seq: head.as_ref().map_or(0, |h| h.0),
        hash: head.map_or(super::chain::GENESIS.to_string(), |h| h.1),
        checkpoint_seq: checkpoint.as_ref().map(|c| c.0),
        checkpoint_hash: checkpoint.map(|c| c.1),
        retention_days: retention::days(pool, &chain).await?,
    })
}

async fn audit_settings(
    tx: &mut crate::db::Tx,
    now: i64,
    scope: &AdminScope,
    action: AuditAction,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    super::record(
        tx,
        now,
        Event {
            org_id: Some(scope.org().id),
            action,
            actor: scope.actor(),
            target: Some(super::Target::org(scope.org().id)),
            meta: scope.meta(),
            details,
        },
    )
    .await
}

/// Sets the retention period (days); audited.
pub async fn set_retention(
    state: &AppState,
    scope: &AdminScope,
    days: i64,
) -> Result<(), AppError> {
    let days = retention::check_days(days).map_err(|m| invalid("retention_days", m))?;
    let now = state.clock.now_ms();
    let before = retention::days(state.db.pool(), &scope.org().id.to_string()).await?;
    let mut tx = state.db.begin().await?;
    retention::set_days(&mut tx, now, &scope.org().id.to_string(), days).await?;
    let details = serde_json::json!({ "from_days": before, "to_days": days });
    audit_settings(
        &mut tx,
        now,
        scope,
        AuditAction::AuditRetentionChanged,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the webhook URL (checked: https and public addresses outside `--dev`); returns the new
/// signing secret, shown once.
pub async fn set_webhook(
    state: &AppState,
    scope: &AdminScope,
    url: &str,
) -> Result<String, AppError> {
    let url = url.trim();
    let parsed = url::Url::parse(url).map_err(|_| refused_url("it is not a valid URL"))?;
    if url.len() > 2000 {
        return Err(refused_url("it is longer than 2000 characters"));
    }
    crate::net::check_url(&parsed, state.config.dev, webhook::TIMEOUT)
        .await
        .map_err(|r| refused_url(&r.0))?;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let secret = webhook::put(&mut tx, now, &scope.org().id.to_string(), url).await?;
    let details = serde_json::json!({ "url": url });
    audit_settings(
        &mut tx,
        now,
        scope,
        AuditAction::AuditWebhookConfigured,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

fn refused_url(why: &str) -> AppError {
    AppError::client(
        StatusCode::BAD_REQUEST,
        "webhook_url_refused",
        format!("webhook_url: the URL was refused: {why}"),
    )
}

/// Removes the webhook; audited. 404 when there is none.
pub async fn remove_webhook(state: &AppState, scope: &AdminScope) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    if !webhook::delete(&mut tx, &scope.org().id.to_string()).await? {
        return Err(AppError::not_found("no webhook is configured"));
    }
    audit_settings(
        &mut tx,
        now,
        scope,
        AuditAction::AuditWebhookRemoved,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sends a signed test event to the webhook now and logs the attempt; audited.
pub async fn test_webhook(
    state: &AppState,
    scope: &AdminScope,
) -> Result<webhook::Attempt, AppError> {
    let org_id = scope.org().id.to_string();
    let hook = webhook::get(state.db.pool(), &org_id)
        .await?
        .ok_or_else(|| AppError::not_found("no webhook is configured"))?;
    let now = state.clock.now_ms();
    let body = serde_json::json!({
        "type": "test",
        "org_id": org_id,
        "occurred_at": now,
        "message": "A test event from nulab-pass: the signature and the endpoint work.",
    })
    .to_string();
    let attempt = webhook::post(&hook.url, &hook.secret, now, &body, state.config.dev).await;
    webhook::log(&mut *state.db.write().await?, &org_id, None, &attempt, now).await?;
    let mut tx = state.db.begin().await?;
    let details = serde_json::json!({
        "delivered": attempt.delivered(),
        "status_code": attempt.status,
        "error": attempt.error,
    });
    audit_settings(
        &mut tx,
        now,
        scope,
        AuditAction::AuditWebhookTested,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(attempt)
}
