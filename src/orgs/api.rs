//! The admin JSON API of an organization and its members (`/api/v1/orgs/{org}/...`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Member, MemberFilter, Org, Role};
use crate::AppState;
use crate::accounts::{AccountKind, AccountStatus};
use crate::api_tokens::extract::ApiAdmin;
use crate::ids::AccountId;
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// One page of members.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MemberPage {
    pub items: Vec<Member>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "organizations",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = Org), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_org(ApiAdmin(scope): ApiAdmin) -> Json<Org> {
    Json(scope.org().clone())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct MembersQuery {
    /// `nulab` or `managed`.
    kind: Option<String>,
    /// `active` or `suspended`.
    status: Option<String>,
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<i64>,
}

/// Members, ordered by email, a page at a time.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)"), MembersQuery),
    responses((status = 200, body = MemberPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_members(
    State(state): State<AppState>,
    ApiAdmin(scope): ApiAdmin,
    Query(q): Query<MembersQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let limit = crate::paging::limit(q.limit).map_err(AppError::bad_request)?;
    let filter = MemberFilter {
        kind: match q.kind.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(
                AccountKind::parse(k)
                    .ok_or_else(|| AppError::bad_request("kind must be nulab or managed"))?,
            ),
            None => None,
        },
        status: match q.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(AccountStatus::parse(s).ok_or_else(|| {
                AppError::bad_request("status must be active, suspended or deleted")
            })?),
            None => None,
        },
    };
    let page = super::list_members(
        state.db.pool(),
        scope.org().id,
        &filter,
        q.cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(MemberPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Email of an existing Nulab account with a confirmed address.
    email: String,
    /// `admin` or `member` (default `member`).
    role: Option<Role>,
}

/// Adds an existing Nulab account as a member.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)")),
    request_body = AddMember,
    responses((status = 201, body = Member), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_member(
    State(state): State<AppState>,
    ApiAdmin(scope): ApiAdmin,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let member = super::add_member(
        &mut tx,
        state.clock.now_ms(),
        &scope,
        &body.email,
        body.role.unwrap_or(Role::Member),
    )
    .await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// `admin` or `member`.
    role: Role,
}

fn account_in_path(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).ok_or_else(|| {
        ApiError(AppError::client(
            StatusCode::NOT_FOUND,
            "not_a_member",
            "that account is not a member of this organization",
        ))
    })
}

/// Changes a member's role.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{account_id}", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)"), ("account_id" = String, Path, description = "account id")),
    request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_member(
    State(state): State<AppState>,
    ApiAdmin(scope): ApiAdmin,
    Path((_, account_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Json<Member>, ApiError> {
    let account = account_in_path(&account_id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let member =
        super::change_role(&mut tx, state.clock.now_ms(), &scope, account, body.role).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(Json(member))
}

/// Removes a member (not the last admin; managed accounts are deleted, not removed).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{account_id}", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)"), ("account_id" = String, Path, description = "account id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiAdmin(scope): ApiAdmin,
    Path((_, account_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = account_in_path(&account_id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::remove_member(&mut tx, state.clock.now_ms(), &scope, account).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
