//! The JSON API of migration requests.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{MigrationId, MigrationRequest, MigrationStatus, RequestResult, Wanted};
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// Accounts to ask: by id or by email (exactly one of the two).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct NewMigrations {
    /// Account ids (UUIDs), up to 1,000.
    #[schema(min_items = 1, max_items = 1000)]
    pub account_ids: Option<Vec<String>>,
    /// Email addresses, up to 1,000.
    #[schema(min_items = 1, max_items = 1000)]
    pub emails: Option<Vec<String>>,
}

/// One result per named account, in order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MigrationResults {
    pub requested: usize,
    pub rejected: usize,
    pub results: Vec<RequestResult>,
}

/// Asks members to migrate; each gets a request (and an email) or a reason why not.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/migrations", operation_id = "create_migrations", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = NewMigrations,
    responses((status = 200, body = MigrationResults), (status = 400, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn create(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    ApiJson(body): ApiJson<NewMigrations>,
) -> Result<Json<MigrationResults>, ApiError> {
    let wanted: Vec<Wanted> = match (body.account_ids, body.emails) {
        (Some(ids), None) => ids.into_iter().map(Wanted::Id).collect(),
        (None, Some(emails)) => emails.into_iter().map(Wanted::Email).collect(),
        _ => return Err(super::MigrationError::BadBatch.into()),
    };
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let results = super::request_batch(
        &mut tx,
        state.clock.now_ms(),
        &scope,
        &wanted,
        &state.base_url(),
    )
    .await?;
    tx.commit().await.map_err(AppError::from)?;
    let requested = results.iter().filter(|r| r.id.is_some()).count();
    Ok(Json(MigrationResults {
        requested,
        rejected: results.len() - requested,
        results,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// pending, completed, declined, expired or cancelled
    pub status: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// A page of requests (newest first) with their history, and counts by status.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MigrationList {
    pub counts: std::collections::BTreeMap<String, i64>,
    pub requests: Vec<MigrationRequest>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the org's migration requests, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/migrations", operation_id = "list_migrations", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)"), ListQuery),
    responses((status = 200, body = MigrationList), (status = 400, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
    Query(query): Query<ListQuery>,
) -> Result<Json<MigrationList>, ApiError> {
    let status = parse_status(query.status.as_deref())?;
    let limit = crate::paging::limit(query.limit).map_err(AppError::bad_request)?;
    // The cursor is the last request's time and id.
    let before = crate::paging::after(query.cursor.as_deref(), 2)
        .and_then(|parts| {
            parts
                .map(|p| {
                    let time = p[0].parse::<i64>().map_err(|_| crate::paging::BAD_CURSOR)?;
                    Ok((time, p[1].clone()))
                })
                .transpose()
        })
        .map_err(AppError::bad_request)?;
    let org = scope.org().id;
    let rows = super::store::list(
        state.db.pool(),
        org,
        status,
        before.as_ref().map(|(t, id)| (*t, id.as_str())),
        limit + 1,
    )
    .await
    .map_err(AppError::from)?;
    let page = crate::paging::into_page(rows, limit, |r| {
        crate::paging::encode_cursor(&[&r.requested_at.to_string(), &r.id.to_string()])
    });
    let mut counts: std::collections::BTreeMap<String, i64> = MigrationStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (s, n) in super::store::counts(state.db.pool(), org)
        .await
        .map_err(AppError::from)?
    {
        counts.insert(s, n);
    }
    Ok(Json(MigrationList {
        counts,
        requests: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// The status filter of lists; unknown values are a clear 400.
pub fn parse_status(raw: Option<&str>) -> Result<Option<MigrationStatus>, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => MigrationStatus::parse(s).map(Some).ok_or_else(|| {
            AppError::bad_request(
                "status must be pending, completed, declined, expired or cancelled",
            )
        }),
    }
}

fn id_in_path(raw: &str) -> Result<MigrationId, ApiError> {
    MigrationId::parse(raw).ok_or_else(|| ApiError(super::MigrationError::NotFound.into()))
}

/// Sends a new link (the old one dies) with a fresh expiry.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/migrations/{id}/resend", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "request id")),
    responses((status = 200, body = MigrationRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn resend(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<MigrationRequest>, ApiError> {
    let id = id_in_path(&id)?;
    let now = state.clock.now_ms();
    let recipient = [crate::limits::resent("migration", id)];
    let limits = &state.config.limits;
    let meta = crate::audit::RequestMeta::default();
    if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?
    {
        return Err(block.to_error(now).into());
    }
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let request = super::resend(&mut tx, now, &scope, id, &state.base_url()).await?;
    tx.commit().await.map_err(AppError::from)?;
    crate::limits::email_sent(&state.db, limits, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?;
    Ok(Json(request))
}

/// Cancels a pending request: its link dies and its seat is free.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/migrations/{id}/cancel", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "request id")),
    responses((status = 200, body = MigrationRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn cancel(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<MigrationRequest>, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let request = super::cancel(&mut tx, state.clock.now_ms(), &scope, id).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(request))
}

/// Migration settings of an organization.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    /// Days a consent link stays valid (1–30, default 14).
    #[schema(minimum = 1, maximum = 30)]
    pub link_days: i64,
}

/// The org's migration settings.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/migration-settings", operation_id = "get_migration_settings", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = MigrationSettings)), security(("bearer" = ["read"])))]
pub async fn get_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
) -> Result<Json<MigrationSettings>, ApiError> {
    let link_days = super::store::link_days(state.db.pool(), scope.org().id)
        .await
        .map_err(AppError::from)?;
    Ok(Json(MigrationSettings { link_days }))
}

/// Changes the org's migration settings (applies to links sent from now on).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/migration-settings", operation_id = "put_migration_settings", tag = "migration",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = MigrationSettings,
    responses((status = 200, body = MigrationSettings), (status = 400, body = ErrorBody)), security(("bearer" = ["members"])))]
pub async fn put_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    ApiJson(body): ApiJson<MigrationSettings>,
) -> Result<(StatusCode, Json<MigrationSettings>), ApiError> {
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::set_link_days(&mut tx, state.clock.now_ms(), &scope, body.link_days).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok((StatusCode::OK, Json(body)))
}
