//! The audit log JSON API: `/api/v1/orgs/{org}/audit-events` (a page, or with `format` the
//! streamed export), one event, the chain head, and the retention and webhook settings.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{AuditQuery, ChainHead, Explained};
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::audit::webhook::{self, Delivery};
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// A page of events, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<Explained>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page. Opaque, signed, and
    /// valid only for this organization.
    pub next_cursor: Option<String>,
}

/// The organization's events that match the filters, newest first, a page at a time; with
/// `format=csv` or `format=jsonl`, every matching event streamed in that format.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events", operation_id = "list_audit_events", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)"), AuditQuery),
    responses(
        (status = 200, description = "A page of events; or, with `format`, the export (CSV with a header row, or one JSON event per line)",
            content((EventPage = "application/json"), (String = "text/csv"), (String = "application/jsonl"))),
        (status = 400, description = "A parameter is not valid (the message names it): `invalid_parameter`, `invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn list(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    if let Some(format) = query.format.as_deref().filter(|f| !f.is_empty()) {
        return Ok(super::pages::export_response(
            &state, &scope, &query, format,
        )?);
    }
    let page = super::search(&state, &scope, &query).await?;
    Ok(Json(EventPage {
        items: page.items.into_iter().map(super::explain).collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// One event of the organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events/{id}", operation_id = "get_audit_event", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "event id")),
    responses((status = 200, body = Explained), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn get(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Explained>, ApiError> {
    Ok(Json(super::explain(
        super::event(&state, &scope, &id).await?,
    )))
}

/// The head of the organization's hash chain (record it elsewhere; `nulab-pass audit verify`
/// checks the chain up to it).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-chain", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = ChainHead), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn chain(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
) -> Result<Json<ChainHead>, ApiError> {
    Ok(Json(super::chain_head(&state, &scope).await?))
}

/// The audit settings: retention and the webhook (its secret is never shown again).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Settings {
    pub retention_days: i64,
    pub webhook_url: Option<String>,
    /// The webhook's last delivery error while it retries.
    pub webhook_last_error: Option<String>,
    /// The newest delivery attempts, newest first.
    pub deliveries: Vec<Delivery>,
}

async fn settings_of(state: &AppState, org_id: &str) -> Result<Settings, AppError> {
    let pool = state.db.pool();
    let hook = webhook::get(pool, org_id).await?;
    Ok(Settings {
        retention_days: crate::audit::retention::days(pool, org_id).await?,
        webhook_url: hook.as_ref().map(|h| h.url.clone()),
        webhook_last_error: hook.and_then(|h| h.last_error),
        deliveries: webhook::deliveries(pool, org_id, 50).await?,
    })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-settings", operation_id = "get_audit_settings", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = Settings), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn get_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(
        settings_of(&state, &scope.org().id.to_string()).await?,
    ))
}

/// A change of the audit settings; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// Days events are kept, 30–3650 (default 400).
    retention_days: Option<i64>,
    /// The webhook URL (https, public addresses); `""` removes the webhook (if there is none,
    /// nothing changes).
    webhook_url: Option<String>,
}

/// The settings after a change, and the webhook's new signing secret when the URL was set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingsChanged {
    #[serde(flatten)]
    pub settings: Settings,
    /// Shown only now: verify `X-Nulab-Pass-Signature` with it.
    pub webhook_secret: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/audit-settings", operation_id = "put_audit_settings", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)")),
    request_body = PutSettings,
    responses((status = 200, body = SettingsChanged),
        (status = 400, description = "`invalid_parameter` (retention_days) or `webhook_url_refused`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn put_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
    ApiJson(body): ApiJson<PutSettings>,
) -> Result<Json<SettingsChanged>, ApiError> {
    // Check both before changing either: a refused URL leaves the retention as it was.
    if let Some(days) = body.retention_days {
        crate::audit::retention::check_days(days)
            .map_err(|m| super::invalid("retention_days", m))?;
    }
    let mut secret = None;
    match body.webhook_url.as_deref().map(str::trim) {
        None => {}
        // Already without a webhook: nothing to remove (a PUT states what should hold).
        Some("") => {
            let org_id = scope.org().id.to_string();
            if webhook::get(state.db.pool(), &org_id)
                .await
                .map_err(AppError::from)?
                .is_some()
            {
                super::remove_webhook(&state, &scope).await?
            }
        }
        Some(url) => secret = Some(super::set_webhook(&state, &scope, url).await?),
    }
    if let Some(days) = body.retention_days {
        super::set_retention(&state, &scope, days).await?;
    }
    Ok(Json(SettingsChanged {
        settings: settings_of(&state, &scope.org().id.to_string()).await?,
        webhook_secret: secret,
    }))
}

/// What a test delivery came to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

/// Sends a signed test event to the webhook now.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/audit-settings/webhook-test", tag = "audit",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = TestResult), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["audit"])))]
pub async fn test_webhook(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Audit>,
) -> Result<Json<TestResult>, ApiError> {
    let attempt = super::test_webhook(&state, &scope).await?;
    Ok(Json(TestResult {
        delivered: attempt.delivered(),
        status_code: attempt.status,
        error: attempt.error,
    }))
}
