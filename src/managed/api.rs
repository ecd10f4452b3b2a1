//! The JSON API of managed accounts, the password policy and seats.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::csv::BulkReport;
use super::{ManagedAccount, ManagedChanges, NewManaged};
use crate::AppState;
use crate::accounts::policy::PasswordPolicy;
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::ids::AccountId;
use crate::orgs::seats::Seats;
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

fn id_in_path(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).ok_or_else(|| {
        ApiError(AppError::client(
            StatusCode::NOT_FOUND,
            "not_found",
            "no managed account with this id belongs to this organization",
        ))
    })
}

/// Creates a managed account on a verified domain, within the free seats.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/managed-accounts", operation_id = "create_managed_account", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = NewManaged,
    responses((status = 201, body = ManagedAccount), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn create(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    ApiJson(body): ApiJson<NewManaged>,
) -> Result<(StatusCode, Json<ManagedAccount>), ApiError> {
    let hash =
        super::prepare_password(state.db.pool(), scope.org().id, body.password.as_deref()).await?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let account = super::create(
        &mut tx,
        state.clock.now_ms(),
        &scope,
        &body,
        hash.as_deref(),
        &state.base_url(),
    )
    .await?;
    let view = super::view(&mut tx, scope.org().id, &account).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Creates managed accounts from CSV (`email,name[,role]`); each row is reported.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/managed-accounts/import", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = BulkReport), (status = 400, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn import(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<BulkReport>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::client(
                rejection.status(),
                "too_large",
                "the request body is too large",
            )
        } else {
            AppError::client(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                rejection.body_text(),
            )
        }
    })?;
    let body = String::from_utf8(body.to_vec()).map_err(|_| {
        AppError::client(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the CSV must be UTF-8 text",
        )
    })?;
    let clock = state.clock.clone();
    Ok(Json(
        super::csv::import(
            &state.db,
            || clock.now_ms(),
            &scope,
            &body,
            &state.base_url(),
        )
        .await?,
    ))
}

/// One managed account.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/managed-accounts/{id}", operation_id = "get_managed_account", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "account id")),
    responses((status = 200, body = ManagedAccount), (status = 404, body = ErrorBody)), security(("bearer" = ["read"])))]
pub async fn get(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<ManagedAccount>, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let account = super::get(&mut tx, scope.org().id, id).await?;
    let view = super::view(&mut tx, scope.org().id, &account).await?;
    tx.rollback().await.map_err(AppError::from)?;
    Ok(Json(view))
}

/// Changes name, role or email (to another address on a verified domain).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/managed-accounts/{id}", operation_id = "update_managed_account", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "account id")),
    request_body = ManagedChanges,
    responses((status = 200, body = ManagedAccount), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = ["members"])))]
pub async fn update(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ManagedChanges>,
) -> Result<Json<ManagedAccount>, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let account = super::update(&mut tx, state.clock.now_ms(), &scope, id, &body).await?;
    let view = super::view(&mut tx, scope.org().id, &account).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(view))
}

/// Deletes the account (a tombstone keeps its id; its seat is freed).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/managed-accounts/{id}", operation_id = "delete_managed_account", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "account id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = ["members"])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = id_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::delete(&mut tx, state.clock.now_ms(), &scope, id).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An action on a managed account.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// For `reset-password`: also end sessions and require a new password at the next sign-in.
    #[serde(default)]
    pub force_change: bool,
}

/// `suspend`, `reactivate`, `sign-out` (everywhere) or `reset-password`.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/managed-accounts/{id}/{action}", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)"), ("id" = String, Path, description = "account id"),
        ("action" = String, Path, description = "suspend, reactivate, sign-out or reset-password")),
    request_body(content = Option<ActionBody>),
    responses((status = 200, body = ManagedAccount), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)), security(("bearer" = ["members"])))]
pub async fn action(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ManagedAccount>, ApiError> {
    let id = id_in_path(&id)?;
    // The body is optional: none, or JSON `null` as the document allows, means no options.
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice::<Option<ActionBody>>(&body)
            .map_err(|e| AppError::client(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?
            .unwrap_or_default()
    };
    let now = state.clock.now_ms();
    if action == "reset-password" {
        super::pages::reset_allowed(&state, now, id).await?;
    }
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    match action.as_str() {
        "suspend" => drop(super::suspend(&mut tx, now, &scope, id).await?),
        "reactivate" => drop(super::reactivate(&mut tx, now, &scope, id).await?),
        "sign-out" => drop(super::sign_out_everywhere(&mut tx, now, &scope, id).await?),
        "reset-password" => {
            super::reset_password(
                &mut tx,
                now,
                &scope,
                id,
                body.force_change,
                &state.base_url(),
            )
            .await?
        }
        _ => {
            return Err(ApiError(AppError::not_found(
                "unknown action: use suspend, reactivate, sign-out or reset-password",
            )));
        }
    }
    let account = super::get(&mut tx, scope.org().id, id).await?;
    let view = super::view(&mut tx, scope.org().id, &account).await?;
    tx.commit().await.map_err(AppError::from)?;
    if action == "reset-password" {
        super::pages::reset_sent(&state, now, id)
            .await
            .map_err(AppError::from)?;
    }
    Ok(Json(view))
}

/// The password policy of managed accounts.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/password-policy", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = PasswordPolicy)), security(("bearer" = ["read"])))]
pub async fn get_policy(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
) -> Result<Json<PasswordPolicy>, ApiError> {
    Ok(Json(
        crate::accounts::store::policy(state.db.pool(), scope.org().id)
            .await
            .map_err(AppError::from)?,
    ))
}

/// Replaces the password policy; it applies from the next password set.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/password-policy", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)")), request_body = PasswordPolicy,
    responses((status = 200, body = PasswordPolicy), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`no_break_glass_admin`: password sign-in cannot be turned off before an admin with a Nulab account has two-step verification")),
    security(("bearer" = ["sso"])))]
pub async fn put_policy(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Sso>,
    ApiJson(policy): ApiJson<PasswordPolicy>,
) -> Result<Json<PasswordPolicy>, ApiError> {
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::set_policy(&mut tx, state.clock.now_ms(), &scope, &policy).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(policy))
}

/// Seats subscribed and used.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/seats", tag = "managed accounts",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = Seats)), security(("bearer" = ["billing"])))]
pub async fn seats(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Billing>,
) -> Result<Json<Seats>, ApiError> {
    Ok(Json(
        crate::orgs::seats::of(state.db.pool(), scope.org().id)
            .await
            .map_err(AppError::from)?,
    ))
}
