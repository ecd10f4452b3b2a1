//! The JSON API of an organization's session settings.

use axum::Json;
use axum::extract::State;

use super::SessionSettings;
use crate::AppState;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// How long a sign-in of the organization's members lasts.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/session-settings", operation_id = "get_session_settings", tag = "sign-in",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = SessionSettings)), security(("bearer" = ["read"])))]
pub async fn get_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
) -> Result<Json<SessionSettings>, ApiError> {
    Ok(Json(super::settings(&state.db, &scope).await?))
}

/// Sets the session lifetime (1–720 hours); it applies from each member's next sign-in.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/session-settings", operation_id = "put_session_settings", tag = "sign-in",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = SessionSettings,
    responses((status = 200, body = SessionSettings), (status = 400, body = ErrorBody)), security(("bearer" = ["sso"])))]
pub async fn put_settings(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Sso>,
    ApiJson(settings): ApiJson<SessionSettings>,
) -> Result<Json<SessionSettings>, ApiError> {
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::set_settings(&mut tx, state.clock.now_ms(), &scope, settings).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(settings))
}
