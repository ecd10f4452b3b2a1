//! The invitee's side: the emailed link's page, and accepting or declining (from that page or
//! from `/account`, which lists pending invitations). The admin's side (invite, resend, revoke)
//! is on the members page (`orgs::pages`) and in the API (`orgs::api`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_sessions::Session;

use super::{Invitation, InvitationError, InvitationId};
use crate::AppState;
use crate::accounts::session::SignedIn;
use crate::orgs::Org;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;
use crate::web::{Layout, flash, session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invitations/{token}", get(link_page))
        .route("/account/invitations/{id}/accept", post(accept))
        .route("/account/invitations/{id}/decline", post(decline))
}

#[derive(Template, WebTemplate)]
#[template(path = "invitation.html")]
struct InvitationPage {
    layout: Layout,
    invitation: Invitation,
    org: Org,
    /// The path of this page, for signing in and coming back.
    here: String,
    /// Signed in as an account that may answer.
    can_answer: bool,
    /// Signed in, but this account cannot answer: why.
    problem: Option<String>,
    signed_in: bool,
}

async fn link_page(
    State(state): State<AppState>,
    session: Session,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let (invitation, org) = super::by_link(&state.db, state.clock.now_ms(), &token).await?;
    let account = match session::account_id(&session).await? {
        Some(id) => crate::accounts::store::by_id(state.db.pool(), id).await?,
        None => None,
    };
    let problem = match &account {
        Some(a) => super::may_answer(a, &invitation)
            .err()
            .map(|e| e.to_string()),
        None => None,
    };
    let page = InvitationPage {
        layout: Layout::new(&session, account.as_ref().map(|a| a as _)).await?,
        here: format!("/invitations/{}", token.trim()),
        can_answer: account.is_some() && problem.is_none(),
        signed_in: account.is_some(),
        problem,
        invitation,
        org,
    };
    Ok(page.into_response())
}

fn parse_id(raw: &str) -> Result<InvitationId, AppError> {
    InvitationId::parse(raw).ok_or_else(|| InvitationError::NotFound.into())
}

async fn accept(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let SignedIn { account, session } = signed_in;
    let org = super::accept(&state.db, state.clock.now_ms(), &account, id, &meta).await?;
    flash(&session, format!("You joined {}.", org.name)).await?;
    Ok(Redirect::to("/account").into_response())
}

async fn decline(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let SignedIn { account, session } = signed_in;
    let org = super::decline(&state.db, state.clock.now_ms(), &account, id, &meta).await?;
    flash(
        &session,
        format!("You declined the invitation to {}.", org.name),
    )
    .await?;
    Ok(Redirect::to("/account").into_response())
}
