//! Pages that change credentials: choosing a password from an emailed link, changing one's
//! own password (also when a temporary or expired one must be replaced), and changing a Nulab
//! account's email.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use tower_sessions::Session;

use super::credentials;
use super::pages::{MessagePage, form_error};
use crate::AppState;
use crate::accounts::session::SignedIn;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, flash, session, take_flash};

/// Session key of where to go after a forced password change.
pub const NEXT_KEY: &str = "after_password_change";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/password/set", get(set_page).post(set_password))
        .route("/account/password", get(change_page).post(change_password))
        .route("/account/email", get(email_page).post(change_email))
}

#[derive(Template, WebTemplate)]
#[template(path = "password_set.html")]
struct SetPage {
    layout: Layout,
    token: String,
    email: String,
    activation: bool,
    hints: Vec<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn set_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<TokenQuery>,
) -> Result<SetPage, AppError> {
    let token = q.token.unwrap_or_default();
    let link = credentials::password_link(&state.db, state.clock.now_ms(), &token).await?;
    let policy = super::policy_for(state.db.pool(), &link.account).await?;
    Ok(SetPage {
        layout: Layout::new(&session, None).await?,
        token,
        email: link.account.email.clone(),
        activation: link.purpose == super::store::LinkPurpose::Activate,
        hints: policy.hints(),
        error: None,
    })
}

#[derive(Deserialize)]
struct SetForm {
    token: String,
    password: String,
    confirm: String,
}

async fn set_password(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<SetForm>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let result = if form.password != form.confirm {
        Err(super::AccountError::WeakPassword(vec![
            "the two passwords differ".to_string(),
        ]))
    } else {
        credentials::set_password_with_link(&state.db, now, &form.token, &form.password, &meta)
            .await
    };
    match result {
        Ok(account) => Ok(MessagePage {
            layout: Layout::new(&session, None).await?,
            title: "Password set".to_string(),
            message: format!(
                "The password of {} is set. Sign in with it now.",
                account.email
            ),
            link: Some(("Sign in".to_string(), "/signin".to_string())),
        }
        .into_response()),
        Err(err) => {
            // A dead link has no form to show again: the error page says why.
            let link = credentials::password_link(&state.db, now, &form.token).await?;
            let policy = super::policy_for(state.db.pool(), &link.account).await?;
            let layout = Layout::new(&session, None).await?;
            Ok(form_error(err.into(), |error| {
                SetPage {
                    layout,
                    token: form.token.clone(),
                    email: link.account.email.clone(),
                    activation: link.purpose == super::store::LinkPurpose::Activate,
                    hints: policy.hints(),
                    error: Some(error),
                }
                .into_response()
            }))
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "password_change.html")]
struct ChangePage {
    layout: Layout,
    forced: bool,
    hints: Vec<String>,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
}

async fn change_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<ChangePage, AppError> {
    let SignedIn { account, session } = signed_in;
    let policy = super::policy_for(state.db.pool(), &account).await?;
    Ok(ChangePage {
        layout: Layout::new(&session, Some(&account)).await?,
        forced: session
            .get::<bool>(session::MUST_CHANGE_KEY)
            .await?
            .unwrap_or(false),
        hints: policy.hints(),
        notice: take_flash(&session).await?,
        error: None,
    })
}

#[derive(Deserialize)]
struct ChangeForm {
    current: String,
    password: String,
    confirm: String,
}

async fn change_password(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<ChangeForm>,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    let now = state.clock.now_ms();
    let result = if form.password != form.confirm {
        Err(super::AccountError::WeakPassword(vec![
            "the two new passwords differ".to_string(),
        ]))
    } else {
        credentials::change_password(
            &state.db,
            now,
            &account,
            &form.current,
            &form.password,
            &meta,
        )
        .await
    };
    match result {
        Ok(()) => {
            // Every session ended with the change; this browser continues in a new one.
            let next: Option<String> = session.get(NEXT_KEY).await?;
            let method = session::method(&session)
                .await?
                .unwrap_or(session::SignInMethod::Password);
            session.flush().await?;
            super::session::start_session(&state, &session, &account, method).await?;
            flash(
                &session,
                "Your password was changed. Other browsers were signed out.",
            )
            .await?;
            Ok(Redirect::to(&super::pages::safe_next(next.as_deref())).into_response())
        }
        Err(err) => {
            let policy = super::policy_for(state.db.pool(), &account).await?;
            let forced = session
                .get::<bool>(session::MUST_CHANGE_KEY)
                .await?
                .unwrap_or(false);
            let layout = Layout::new(&session, Some(&account)).await?;
            Ok(form_error(err.into(), |error| {
                ChangePage {
                    layout,
                    forced,
                    hints: policy.hints(),
                    notice: None,
                    error: Some(error),
                }
                .into_response()
            }))
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "email_change.html")]
struct EmailPage {
    layout: Layout,
    current: String,
    /// An address asked for and not confirmed yet.
    pending: Option<String>,
    managed: bool,
    error: Option<String>,
}

async fn email_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<EmailPage, AppError> {
    let SignedIn { account, session } = signed_in;
    let now = state.clock.now_ms();
    Ok(EmailPage {
        layout: Layout::new(&session, Some(&account)).await?,
        current: account.email.clone(),
        pending: super::store::pending_email(state.db.pool(), account.id, now).await?,
        managed: account.kind == super::AccountKind::Managed,
        error: None,
    })
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
    password: String,
}

async fn change_email(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<EmailForm>,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    let now = state.clock.now_ms();
    match super::ownership::request_email_change(
        &state.db,
        now,
        &account,
        &form.password,
        &form.email,
        &meta,
        &state.base_url(),
    )
    .await
    {
        Ok(pending) => Ok(MessagePage {
            layout: Layout::new(&session, Some(&account)).await?,
            title: "Check your email".to_string(),
            message: format!(
                "We sent a confirmation link to {pending}. Your email stays {} until you follow it.",
                account.email
            ),
            link: Some(("Go to your account".to_string(), "/account".to_string())),
        }
        .into_response()),
        Err(err) => {
            let layout = Layout::new(&session, Some(&account)).await?;
            Ok(form_error(err.into(), |error| {
                EmailPage {
                    layout,
                    current: account.email.clone(),
                    pending: None,
                    managed: account.kind == super::AccountKind::Managed,
                    error: Some(error),
                }
                .into_response()
            }))
        }
    }
}
