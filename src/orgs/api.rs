//! The admin JSON API of an organization and its members (`/api/v1/orgs/{org}/...`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::invitations::store::{EntryQuery, Rows};
use super::invitations::{self, InvitationId, InvitedEntry, Listed};
use super::{Member, Org, Role};
use crate::AppState;
use crate::accounts::{AccountKind, AccountStatus};
use crate::api_tokens::extract::{ApiAdmin, need};
use crate::ids::AccountId;
use crate::web::ErrorBody;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::ApiJson;

/// One page of members and open invitations.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MemberPage {
    /// Members, and open invitations (`status` `invited` or `invitation_expired`, with an
    /// `invitation_id` and no account), by email.
    pub items: Vec<Listed>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "organizations",
    params(("org" = String, Path, description = "organization ID (slug)")),
    responses((status = 200, body = Org), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_org(ApiAdmin(scope, _): ApiAdmin<need::Read>) -> Json<Org> {
    Json(scope.org().clone())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct MembersQuery {
    /// `nulab` or `managed`.
    kind: Option<String>,
    /// `active`, `suspended` or `deleted` (members only), or `invited` (open invitations only).
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
    security(("bearer" = ["read"])))]
pub async fn list_members(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Read>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let limit = crate::paging::limit(q.limit).map_err(AppError::bad_request)?;
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(
            AccountKind::parse(k)
                .ok_or_else(|| AppError::bad_request("kind must be nulab or managed"))?,
        ),
        None => None,
    };
    let (status, rows) = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some("invited") => (None, Rows::InvitationsOnly),
        Some(s) => (
            Some(AccountStatus::parse(s).ok_or_else(|| {
                AppError::bad_request("status must be active, suspended, deleted or invited")
            })?),
            Rows::MembersOnly,
        ),
        None if kind.is_some() => (None, Rows::MembersOnly),
        None => (None, Rows::Both),
    };
    let query = EntryQuery {
        org: scope.org().id,
        kind,
        status,
        rows,
        after: None,
        limit,
        now: state.clock.now_ms(),
    };
    let page = invitations::list(state.db.pool(), query, q.cursor.as_deref()).await?;
    Ok(Json(MemberPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The email address to invite.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// `admin` or `member` (default `member`).
    role: Option<Role>,
}

/// Invites an email address: an invitation is stored and emailed, with the same answer whether
/// or not an account uses the address. It takes effect only when the invitee accepts.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)")),
    request_body = AddMember,
    responses((status = 201, body = InvitedEntry), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn add_member(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<InvitedEntry>), ApiError> {
    let now = state.clock.now_ms();
    let recipient = [crate::limits::recipient(&body.email)];
    let limits = &state.config.limits;
    let meta = crate::audit::RequestMeta::default();
    if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?
    {
        return Err(block.to_error(now).into());
    }
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let invitation = invitations::invite(
        &mut tx,
        now,
        &scope,
        &body.email,
        body.role.unwrap_or(Role::Member),
        &state.base_url(),
    )
    .await
    .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    crate::limits::email_sent(&state.db, limits, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?;
    Ok((StatusCode::CREATED, Json(entry(&invitation, now))))
}

fn entry(invitation: &invitations::Invitation, now: i64) -> InvitedEntry {
    InvitedEntry {
        invitation_id: invitation.id.to_string(),
        email: invitation.email.clone(),
        role: invitation.role,
        status: invitations::listed_status(invitation.status, invitation.expires_at, now),
        invited_at: invitation.sent_at,
        expires_at: invitation.expires_at,
    }
}

fn invitation_in_path(raw: &str) -> Result<InvitationId, ApiError> {
    InvitationId::parse(raw).ok_or_else(|| ApiError(invitations::InvitationError::NotFound.into()))
}

/// Sends an open invitation again with a new link and expiry (the old link stops working).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations/{invitation_id}/resend", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)"), ("invitation_id" = String, Path, description = "invitation id")),
    responses((status = 200, body = InvitedEntry), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn resend_invitation(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<InvitedEntry>, ApiError> {
    let id = invitation_in_path(&id)?;
    let now = state.clock.now_ms();
    let recipient = [crate::limits::resent("invitation", id)];
    let limits = &state.config.limits;
    let meta = crate::audit::RequestMeta::default();
    if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?
    {
        return Err(block.to_error(now).into());
    }
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let invitation = invitations::resend(&mut tx, now, &scope, id, &state.base_url())
        .await
        .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    crate::limits::email_sent(&state.db, limits, now, &meta, &recipient)
        .await
        .map_err(AppError::from)?;
    Ok(Json(entry(&invitation, now)))
}

/// Revokes an open invitation; its link stops working.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{invitation_id}", tag = "members",
    params(("org" = String, Path, description = "organization ID (slug)"), ("invitation_id" = String, Path, description = "invitation id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = ["members"])))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = invitation_in_path(&id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    invitations::revoke(&mut tx, state.clock.now_ms(), &scope, id)
        .await
        .map_err(AppError::from)?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
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
    security(("bearer" = ["members"])))]
pub async fn update_member(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
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
    security(("bearer" = ["members"])))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiAdmin(scope, _): ApiAdmin<need::Members>,
    Path((_, account_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = account_in_path(&account_id)?;
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    super::remove_member(&mut tx, state.clock.now_ms(), &scope, account).await?;
    tx.commit().await.map_err(AppError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
