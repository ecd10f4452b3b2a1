//! The consent page a user reaches from the emailed link, and the admin's Migrations page.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use super::{MigrationError, Proof};
use crate::AppState;
use crate::accounts::pages::MessagePage;
use crate::clock::format_time;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/migration/{token}", get(consent_page))
        .route("/migration/{token}/accept", post(accept))
        .route("/migration/{token}/decline", post(decline))
        .merge(super::admin_pages::routes())
}

#[derive(Template, WebTemplate)]
#[template(path = "migration_consent.html")]
struct ConsentPage {
    layout: Layout,
    token: String,
    org_name: String,
    requested_by: String,
    email: String,
    expires: String,
    other_orgs: Vec<String>,
    sso_required: bool,
    sso_ready: bool,
    /// Organizations the account is the only admin of: agreeing waits until that changes.
    sole_admin_of: Vec<String>,
    signed_in_as_this: bool,
    /// The account has a second factor: the password needs its code.
    second_factor: bool,
    other_account: Option<String>,
    error: Option<String>,
}

async fn render(
    state: &AppState,
    session: &Session,
    token: &str,
    error: Option<String>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let consent = super::consent(&state.db, now, token).await?;
    let signed_in = session::account_id(session).await?;
    let other_account = match super::refuse_other_account(&state.db, &consent, signed_in).await {
        Ok(()) => None,
        Err(MigrationError::OtherAccount { signed_in }) => Some(signed_in),
        Err(e) => return Err(e.into()),
    };
    let view = super::consent_view(&state.db, &consent).await?;
    let signed_in_account = match signed_in {
        Some(id) => crate::accounts::store::by_id(state.db.pool(), id).await?,
        None => None,
    };
    let page = ConsentPage {
        layout: Layout::new(session, signed_in_account.as_ref().map(|a| a as _)).await?,
        token: token.to_string(),
        org_name: consent.org.name.clone(),
        requested_by: consent.request.requested_by.clone(),
        email: consent.account.email.clone(),
        expires: format_time(consent.request.expires_at),
        other_orgs: view.other_orgs,
        sso_required: view.sso_required,
        sso_ready: view.sso_ready,
        sole_admin_of: view.sole_admin_of,
        signed_in_as_this: signed_in == Some(consent.account.id),
        second_factor: crate::sign_in::has_second_factor(state.db.pool(), consent.account.id)
            .await?,
        error,
        other_account: other_account.clone(),
    };
    let status = if other_account.is_some() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    if other_account.is_none() {
        super::opened(&state.db, now, &consent).await?;
    }
    Ok((status, page).into_response())
}

async fn consent_page(
    State(state): State<AppState>,
    session: Session,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    render(&state, &session, &token, None).await
}

#[derive(Deserialize)]
struct AcceptForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

async fn accept(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    Path(token): Path<String>,
    PageForm(form): PageForm<AcceptForm>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let proof = match session::account_id(&session).await? {
        Some(id) => Proof::SignedIn(id),
        None => Proof::Password {
            password: form.password,
            code: form.code,
        },
    };
    match super::accept(
        &state.db,
        &state.totp_key,
        &state.config,
        now,
        &token,
        proof,
        &meta,
    )
    .await
    {
        Ok((account, org)) => {
            // The account's sessions ended in the migration's transaction; this browser's too.
            session.flush().await?;
            let org = org.name;
            Ok(MessagePage {
                layout: Layout::new(&session, None).await?,
                title: "Your account is now a managed account".to_string(),
                message: format!(
                    "{} is now managed by {org}. It is the same account, so your product data stays. You were signed out everywhere: sign in again.",
                    account.email
                ),
                link: Some(("Sign in".to_string(), "/signin".to_string())),
            }
            .into_response())
        }
        Err(
            err @ (MigrationError::WrongPassword
            | MigrationError::ProofRequired
            | MigrationError::TooManyAttempts
            | MigrationError::SecondFactorRequired
            | MigrationError::WrongCode
            | MigrationError::Precondition(_)),
        ) => {
            let err = AppError::from(err);
            let status = err.status();
            let mut page = render(
                &state,
                &session,
                &token,
                err.user_message().map(crate::web::form::sentence),
            )
            .await?;
            if page.status() == StatusCode::OK {
                *page.status_mut() = status;
            }
            Ok(page)
        }
        Err(err) => Err(err.into()),
    }
}

async fn decline(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let signed_in = session::account_id(&session).await?;
    super::decline(&state.db, now, &token, signed_in, &meta).await?;
    let signed_in_account = match signed_in {
        Some(id) => crate::accounts::store::by_id(state.db.pool(), id).await?,
        None => None,
    };
    Ok(MessagePage {
        layout: Layout::new(&session, signed_in_account.as_ref().map(|a| a as _)).await?,
        title: "You declined".to_string(),
        message: "Nothing changed: your account stays a Nulab account that you manage yourself. The organization's administrators have been told.".to_string(),
        link: None,
    }
    .into_response())
}
