//! Pages of accounts: sign-up, sign-out and email verification (the account page, which also
//! shows organizations and the second factor, is `sign_in::account_page`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use super::{AccountError, Email, NewAccount};
use crate::AppState;
use crate::accounts::session::SignedIn;
use crate::audit::Actor;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signup", get(signup_page).post(signup))
        .route("/verify-email", get(verify_email))
        .route(
            "/account/email-change-report",
            get(report_page).post(report_change),
        )
        .route("/account/resend-verification", post(resend_verification))
        .merge(super::password_pages::routes())
}

#[derive(Template, WebTemplate)]
#[template(path = "signup.html")]
struct SignupPage {
    layout: Layout,
    email: String,
    name: String,
    error: Option<String>,
}

/// A page with a title, a sentence and an optional link.
#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
    pub link: Option<(String, String)>,
}

/// Re-renders a form page with the error's message and status; internal errors pass through.
pub fn form_error(err: AppError, render: impl FnOnce(String) -> Response) -> Response {
    match err.user_message() {
        Some(message) => {
            let status = err.status();
            let mut response = render(crate::web::form::sentence(message));
            *response.status_mut() = status;
            if let Some(secs) = err.retry_after_secs() {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs.max(1)),
                );
            }
            response
        }
        None => err.into_response(),
    }
}

async fn signup_page(session: Session) -> Result<SignupPage, AppError> {
    Ok(SignupPage {
        layout: Layout::new(&session, None).await?,
        email: String::new(),
        name: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    name: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<SignupForm>,
) -> Result<Response, AppError> {
    let result = async {
        let email = Email::parse(&form.email)?;
        let name = super::check_name(&form.name)?;
        super::check_password(&form.password)?;
        let now = state.clock.now_ms();
        let recipient = [crate::limits::recipient(email.as_str())];
        let limits = &state.config.limits;
        if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient).await?
        {
            return Err(AccountError::RateLimited(block.retry_after_secs(now)));
        }
        let password_hash = super::password::hash(&form.password).await?;
        let mut tx = state.db.begin().await?;
        let new = NewAccount {
            email,
            name,
            password_hash,
            email_verified: false,
        };
        let account = super::sign_up(
            &mut tx,
            now,
            new,
            &Actor::Anonymous,
            &meta,
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        crate::limits::email_sent(&state.db, limits, now, &meta, &recipient).await?;
        Ok::<_, AccountError>(account)
    }
    .await;
    match result {
        Ok(account) => {
            super::session::start_session(
                &state,
                &session,
                &account,
                session::SignInMethod::Password,
            )
            .await?;
            let layout = Layout::new(&session, Some(&account)).await?;
            Ok(MessagePage {
                layout,
                title: "Check your email".to_string(),
                message: format!(
                    "We sent a confirmation link to {}. Follow it to confirm your address; organizations can add you once it is confirmed.",
                    account.email
                ),
                link: Some(("Go to your account".to_string(), "/account".to_string())),
            }
            .into_response())
        }
        Err(err) => {
            let layout = Layout::new(&session, None).await?;
            Ok(form_error(err.into(), |error| {
                SignupPage {
                    layout,
                    email: form.email.clone(),
                    name: form.name.clone(),
                    error: Some(error),
                }
                .into_response()
            }))
        }
    }
}

/// A same-site path to continue to (`/account` when `next` is missing or points elsewhere).
pub fn local_path(next: Option<&str>) -> String {
    safe_next(next)
}

/// Only same-site paths are followed after sign-in (no open redirect; see
/// [`crate::web::local_path`]); anything else goes to the account page.
pub(super) fn safe_next(next: Option<&str>) -> String {
    next.and_then(crate::web::local_path)
        .unwrap_or_else(|| "/account".to_string())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn verify_email(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    Query(q): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let token = q.token.unwrap_or_default();
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    match super::verify_email(&mut tx, now, &token, &meta, &state.base_url()).await {
        Ok(confirmed) => {
            tx.commit().await?;
            let email = &confirmed.account.email;
            let message = match &confirmed.changed_from {
                None => {
                    format!("{email} is confirmed. Organizations can now add you as a member.")
                }
                Some(from) => format!(
                    "Your email is now {email}. We told {from} about the change, with a way to undo it."
                ),
            };
            Ok(MessagePage {
                layout: Layout::new(&session, None).await?,
                title: "Email confirmed".to_string(),
                message,
                link: Some(("Go to your account".to_string(), "/account".to_string())),
            }
            .into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            Err(err.into())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "email_change_report.html")]
struct ReportPage {
    layout: Layout,
    token: String,
    current: String,
    restores: String,
    error: Option<String>,
}

/// The old address's link: what reporting the change does, and a form to do it.
async fn report_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let token = q.token.unwrap_or_default();
    let link = super::ownership::report_link(&state.db, state.clock.now_ms(), &token).await?;
    Ok(ReportPage {
        layout: Layout::new(&session, None).await?,
        token,
        current: link.account.email,
        restores: link.restores,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
struct ReportForm {
    token: String,
    password: String,
    confirm: String,
}

async fn report_change(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<ReportForm>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let result = if form.password != form.confirm {
        Err(AccountError::WeakPassword(vec![
            "the two passwords differ".to_string(),
        ]))
    } else {
        super::ownership::report_email_change(&state.db, now, &form.token, &form.password, &meta)
            .await
    };
    match result {
        Ok(account) => {
            // Whoever is signed in here is signed out too.
            session.flush().await?;
            Ok(MessagePage {
                layout: Layout::new(&session, None).await?,
                title: "Your address is restored".to_string(),
                message: format!(
                    "The account's email is {} again, its password is the one you just chose, and every session ended. Sign in to review your account.",
                    account.email
                ),
                link: Some(("Sign in".to_string(), "/signin".to_string())),
            }
            .into_response())
        }
        Err(err) => {
            let link = super::ownership::report_link(&state.db, now, &form.token).await;
            let layout = Layout::new(&session, None).await?;
            match link {
                Ok(link) => Ok(form_error(err.into(), |error| {
                    ReportPage {
                        layout,
                        token: form.token.clone(),
                        current: link.account.email.clone(),
                        restores: link.restores.clone(),
                        error: Some(error),
                    }
                    .into_response()
                })),
                Err(link_err) => Err(link_err.into()),
            }
        }
    }
}

async fn resend_verification(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    signed_in: SignedIn,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    if !account.email_verified {
        let email = Email::parse(&account.email)?;
        let now = state.clock.now_ms();
        let recipient = [crate::limits::recipient(email.as_str())];
        let limits = &state.config.limits;
        if let Some(block) = crate::limits::email_blocked(&state.db, now, &meta, &recipient).await?
        {
            return Err(block.to_error(now));
        }
        let mut tx = state.db.begin().await?;
        super::send_verification(
            &mut tx,
            now,
            account.id,
            &email,
            &account.name,
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        crate::limits::email_sent(&state.db, limits, now, &meta, &recipient).await?;
    }
    Ok(MessagePage {
        layout: Layout::new(&session, Some(&account)).await?,
        title: "Check your email".to_string(),
        message: format!(
            "We sent a new confirmation link to {}. Earlier links no longer work.",
            account.email
        ),
        link: Some(("Go to your account".to_string(), "/account".to_string())),
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(
            safe_next(Some("/admin/acme/members")),
            "/admin/acme/members"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/account");
        assert_eq!(safe_next(Some("https://evil.example")), "/account");
        assert_eq!(safe_next(Some("/\\evil.example")), "/account");
        assert_eq!(safe_next(None), "/account");
    }
}
