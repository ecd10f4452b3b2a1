//! Pages of organizations: creating one, and the admin area's member management.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{MemberFilter, Org, OrgSlug, Role};
use crate::AppState;
use crate::accounts::pages::form_error;
use crate::accounts::session::SignedIn;
use crate::accounts::{AccountKind, AccountStatus};
use crate::ids::AccountId;
use crate::orgs::Member;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::form::{FormState, sentence};
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orgs/new", get(new_org_page).post(create_org))
        .route("/admin/{org}/members", get(members_page).post(add_member))
        .route("/admin/{org}/members/{account_id}/role", post(change_role))
        .route(
            "/admin/{org}/members/{account_id}/remove",
            post(remove_member),
        )
        .route(
            "/admin/{org}/invitations/{invitation_id}/resend",
            post(resend_invitation),
        )
        .route(
            "/admin/{org}/invitations/{invitation_id}/revoke",
            post(revoke_invitation),
        )
        .route("/account/orgs/{org}/leave", post(leave))
}

async fn leave(
    State(state): State<AppState>,
    signed_in: SignedIn,
    crate::web::extract::ClientMeta(meta): crate::web::extract::ClientMeta,
    Path(slug): Path<String>,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    let org = super::store::by_slug(state.db.pool(), &slug)
        .await?
        .ok_or(super::OrgError::NotAMember)?;
    let mut tx = state.db.begin().await?;
    super::leave(&mut tx, state.clock.now_ms(), &account, &org, &meta).await?;
    tx.commit().await?;
    flash(&session, format!("You left {}.", org.name)).await?;
    Ok(Redirect::to("/account").into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "org_new.html")]
struct NewOrgPage {
    layout: Layout,
    slug: String,
    name: String,
    error: Option<String>,
}

async fn new_org_page(signed_in: SignedIn) -> Result<NewOrgPage, AppError> {
    Ok(NewOrgPage {
        layout: Layout::new(&signed_in.session, Some(&signed_in.account)).await?,
        slug: String::new(),
        name: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
struct NewOrgForm {
    slug: String,
    name: String,
}

async fn create_org(
    State(state): State<AppState>,
    signed_in: SignedIn,
    crate::web::extract::ClientMeta(meta): crate::web::extract::ClientMeta,
    PageForm(form): PageForm<NewOrgForm>,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    let result = async {
        let slug = OrgSlug::parse(&form.slug)?;
        let now = state.clock.now_ms();
        let mut tx = state.db.begin().await?;
        let org = super::create(
            &mut tx,
            now,
            &slug,
            &form.name,
            &account,
            state.config.billing.trial_seats,
            &account.actor(),
            &meta,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, super::OrgError>(org)
    }
    .await;
    match result {
        Ok(org) => {
            flash(
                &session,
                format!("Organization {} created. You are its admin.", org.name),
            )
            .await?;
            Ok(Redirect::to(&format!("/admin/{}/members", org.slug)).into_response())
        }
        Err(err) => {
            let layout = Layout::new(&session, Some(&account)).await?;
            Ok(form_error(err.into(), |error| {
                NewOrgPage {
                    layout,
                    slug: form.slug.clone(),
                    name: form.name.clone(),
                    error: Some(error),
                }
                .into_response()
            }))
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/members.html")]
struct MembersPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    members: Vec<Member>,
    next_cursor: Option<String>,
    filter_kind: String,
    filter_status: String,
    seats: super::seats::Seats,
    /// Whether any listed member is a Nulab account, which the admin may select for migration.
    nulab_members: bool,
    /// Open invitations (the first [`INVITATIONS_SHOWN`] by email), with their listed status.
    invitations: Vec<(super::invitations::Invitation, &'static str)>,
    /// The "create a managed account" form.
    create: FormState,
    /// The "invite a member" form.
    invite: FormState,
}

/// The members page's forms as shown again after one of them failed.
#[derive(Default)]
pub struct MemberForms {
    pub create: FormState,
    pub invite: FormState,
}

/// How many open invitations the members page lists (the API pages through all of them).
const INVITATIONS_SHOWN: i64 = 200;

#[derive(Deserialize, Default)]
pub struct MembersQuery {
    kind: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

/// The members page; `forms` holds a failed form's input and errors, `error` an error of an
/// action on a row.
pub async fn render_members(
    state: &AppState,
    admin: &OrgAdmin,
    query: &MembersQuery,
    forms: MemberForms,
    error: Option<String>,
) -> Result<Response, AppError> {
    let kind = query.kind.as_deref().filter(|k| !k.is_empty());
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    let filter = MemberFilter {
        kind: kind
            .map(|k| {
                AccountKind::parse(k).ok_or_else(|| AppError::bad_request("unknown kind filter"))
            })
            .transpose()?,
        status: status
            .map(|s| {
                AccountStatus::parse(s)
                    .ok_or_else(|| AppError::bad_request("unknown status filter"))
            })
            .transpose()?,
    };
    let page = super::list_members(
        state.db.pool(),
        admin.scope.org().id,
        &filter,
        query.cursor.as_deref(),
        crate::paging::DEFAULT_LIMIT,
    )
    .await?;
    let nulab_members = page.items.iter().any(|m| m.kind == AccountKind::Nulab);
    let now = state.clock.now_ms();
    let invitations = super::invitations::store::open_of_org(
        state.db.pool(),
        admin.scope.org().id,
        INVITATIONS_SHOWN,
    )
    .await?
    .into_iter()
    .map(|i| {
        let status = super::invitations::listed_status(i.status, i.expires_at, now);
        (i, status)
    })
    .collect();
    Ok(MembersPage {
        create: forms.create,
        invite: forms.invite,
        invitations,
        nulab_members,
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "members",
        notice: take_flash(&admin.session).await?,
        error,
        members: page.items,
        next_cursor: page.next_cursor,
        filter_kind: kind.unwrap_or("").to_string(),
        filter_status: status.unwrap_or("").to_string(),
        seats: super::seats::of(state.db.pool(), admin.scope.org().id).await?,
    }
    .into_response())
}

async fn members_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(query): Query<MembersQuery>,
) -> Result<Response, AppError> {
    render_members(&state, &admin, &query, MemberForms::default(), None).await
}

/// Redirects back to the member list with a notice, or re-renders it with the error.
async fn after_change(
    state: &AppState,
    admin: &OrgAdmin,
    result: Result<String, AppError>,
) -> Result<Response, AppError> {
    match result {
        Ok(notice) => {
            flash(&admin.session, notice).await?;
            Ok(Redirect::to(&format!("/admin/{}/members", admin.scope.org().slug)).into_response())
        }
        Err(err) => match err.user_message().map(str::to_string) {
            Some(message) => {
                let mut response = render_members(
                    state,
                    admin,
                    &MembersQuery::default(),
                    MemberForms::default(),
                    Some(sentence(&message)),
                )
                .await?;
                *response.status_mut() = err.status();
                Ok(response)
            }
            None => Err(err),
        },
    }
}

#[derive(Deserialize)]
struct AddMemberForm {
    email: String,
    role: String,
}

fn parse_role(raw: &str) -> Result<Role, AppError> {
    Role::parse(raw).ok_or_else(|| {
        AppError::bad_request("the role must be \u{201c}admin\u{201d} or \u{201c}member\u{201d}")
    })
}

async fn add_member(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<AddMemberForm>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let recipient = [crate::limits::recipient(&form.email)];
    let limits = &state.config.limits;
    let meta = crate::audit::RequestMeta::default();
    if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient).await? {
        return Err(block.to_error(now));
    }
    let result = async {
        let role = parse_role(&form.role)?;
        let mut tx = state.db.begin().await?;
        let invitation = super::invitations::invite(
            &mut tx,
            state.clock.now_ms(),
            &admin.scope,
            &form.email,
            role,
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        crate::limits::email_sent(&state.db, limits, now, &meta, &recipient).await?;
        Ok::<_, AppError>(format!(
            "{} was invited as {}. They join when they accept.",
            invitation.email,
            invitation.role.as_str()
        ))
    }
    .await;
    let Err(err) = result else {
        return after_change(&state, &admin, result).await;
    };
    let status = err.status();
    let invite = FormState::typed(&[("email", &form.email), ("role", &form.role)]).with_error(
        err,
        |code| match code {
            "invalid_role" | "bad_request" => Some("role"),
            "forbidden" | "not_found" => None,
            _ => Some("email"),
        },
    )?;
    let forms = MemberForms {
        invite,
        ..MemberForms::default()
    };
    let mut response =
        render_members(&state, &admin, &MembersQuery::default(), forms, None).await?;
    *response.status_mut() = status;
    Ok(response)
}

fn parse_invitation(raw: &str) -> Result<super::invitations::InvitationId, AppError> {
    super::invitations::InvitationId::parse(raw)
        .ok_or_else(|| super::invitations::InvitationError::NotFound.into())
}

async fn resend_invitation(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let recipient = [crate::limits::resent("invitation", &id)];
    let limits = &state.config.limits;
    let meta = crate::audit::RequestMeta::default();
    if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient).await? {
        return Err(block.to_error(now));
    }
    let result = async {
        let id = parse_invitation(&id)?;
        let mut tx = state.db.begin().await?;
        let invitation = super::invitations::resend(
            &mut tx,
            state.clock.now_ms(),
            &admin.scope,
            id,
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        crate::limits::email_sent(&state.db, limits, now, &meta, &recipient).await?;
        Ok::<_, AppError>(format!(
            "The invitation to {} was sent again.",
            invitation.email
        ))
    }
    .await;
    after_change(&state, &admin, result).await
}

async fn revoke_invitation(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let result = async {
        let id = parse_invitation(&id)?;
        let mut tx = state.db.begin().await?;
        super::invitations::revoke(&mut tx, state.clock.now_ms(), &admin.scope, id).await?;
        tx.commit().await?;
        Ok::<_, AppError>("The invitation was revoked.".to_string())
    }
    .await;
    after_change(&state, &admin, result).await
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

fn parse_account(raw: &str) -> Result<AccountId, AppError> {
    AccountId::parse(raw)
        .ok_or_else(|| AppError::not_found("that account is not a member of this organization"))
}

async fn change_role(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, account_id)): Path<(String, String)>,
    PageForm(form): PageForm<RoleForm>,
) -> Result<Response, AppError> {
    let result = async {
        let account = parse_account(&account_id)?;
        let role = parse_role(&form.role)?;
        let mut tx = state.db.begin().await?;
        let member =
            super::change_role(&mut tx, state.clock.now_ms(), &admin.scope, account, role).await?;
        tx.commit().await?;
        Ok::<_, AppError>(format!("{} is now {}.", member.email, member.role.as_str()))
    }
    .await;
    after_change(&state, &admin, result).await
}

async fn remove_member(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, account_id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let result = async {
        let account = parse_account(&account_id)?;
        let mut tx = state.db.begin().await?;
        super::remove_member(&mut tx, state.clock.now_ms(), &admin.scope, account).await?;
        tx.commit().await?;
        Ok::<_, AppError>("The member was removed.".to_string())
    }
    .await;
    after_change(&state, &admin, result).await
}
