//! The sign-in pages: identifier first (work email or organization ID), then the IdP or the
//! password form, then the second factor when the account has one; and the pages that set the
//! second factor up and the organization's session lifetime.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::second_factor::{self, SecondFactorError};
use super::{Route, route, with_return_to};
use crate::AppState;
use crate::accounts::pages::{form_error, local_path as safe_next};
use crate::accounts::{self, Account, AccountError, AccountStatus};
use crate::ids::AccountId;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(identify_page).post(password_sign_in))
        .route("/signin/identify", post(identify))
        .route("/signin/two-step", get(two_step_page).post(two_step))
        .merge(super::settings_pages::routes())
        .merge(super::account_page::routes())
}

#[derive(Template, WebTemplate)]
#[template(path = "signin_identify.html")]
struct IdentifyPage {
    layout: Layout,
    identifier: String,
    next: String,
    error: Option<String>,
    /// The product this sign-in continues to (an OpenID Connect request), for the heading.
    product: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "signin.html")]
struct PasswordPage {
    layout: Layout,
    email: String,
    next: String,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    sso_url: Option<String>,
    product: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "signin_two_step.html")]
struct TwoStepPage {
    layout: Layout,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct IdentifyQuery {
    next: Option<String>,
    login_hint: Option<String>,
    /// `password`: the password form at once (a Nulab account on a domain that signs in with
    /// single sign-on).
    with: Option<String>,
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

async fn identify_page(
    session: Session,
    Query(q): Query<IdentifyQuery>,
) -> Result<Response, AppError> {
    let layout = Layout::new(&session, None).await?;
    let hint: String = q.login_hint.unwrap_or_default().chars().take(254).collect();
    let next = safe_next(q.next.as_deref());
    let product = session::signing_in_to(&session, &next).await?;
    if q.with.as_deref() == Some("password") {
        return Ok(PasswordPage {
            layout,
            email: hint,
            next,
            notice: None,
            error: None,
            sso_url: None,
            product,
        }
        .into_response());
    }
    Ok(IdentifyPage {
        layout,
        identifier: hint,
        product,
        next,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
struct IdentifyForm {
    identifier: String,
    next: Option<String>,
}

async fn identify(
    State(state): State<AppState>,
    session: Session,
    PageForm(form): PageForm<IdentifyForm>,
) -> Result<Response, AppError> {
    let next = safe_next(form.next.as_deref());
    let layout = Layout::new(&session, None).await?;
    let product = session::signing_in_to(&session, &next).await?;
    let page = |error: String, status: StatusCode| {
        with_status(
            IdentifyPage {
                layout: layout.clone(),
                identifier: form.identifier.clone(),
                next: next.clone(),
                error: Some(error),
                product: product.clone(),
            }
            .into_response(),
            status,
        )
    };
    match route(&state.db, &state.base_url(), &form.identifier).await {
        Ok(Route::Sso { login_url }) => {
            Ok(Redirect::to(&with_return_to(&login_url, &next)).into_response())
        }
        Ok(Route::Password { email }) => Ok(PasswordPage {
            layout: layout.clone(),
            email,
            next: next.clone(),
            notice: None,
            error: None,
            sso_url: None,
            product: product.clone(),
        }
        .into_response()),
        Ok(Route::NoSuchSsoOrg { identifier }) => Ok(page(
            format!(
                "No organization with single sign-on has the ID \u{201c}{identifier}\u{201d}. Check the ID, or enter your email address instead."
            ),
            StatusCode::NOT_FOUND,
        )),
        Err(err) => Ok(form_error(err.into(), |e| page(e, StatusCode::BAD_REQUEST))),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// A password sign-in waiting for its second factor.
#[derive(Serialize, Deserialize)]
struct Pending {
    account_id: AccountId,
    next: String,
    must_change_password: bool,
    started_at: i64,
    wrong_codes: u32,
}

const PENDING_KEY: &str = "pending_second_factor";
/// How long the second-factor step may take.
const PENDING_MS: i64 = 5 * 60_000;
/// Wrong codes before the password must be entered again.
const MAX_WRONG_CODES: u32 = 5;

async fn password_sign_in(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<PasswordForm>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let next = safe_next(form.next.as_deref());
    match super::password::sign_in_with_password(
        &state.db,
        &state.config,
        now,
        &form.email,
        &form.password,
        &meta,
    )
    .await
    {
        Ok(signed_in) if signed_in.second_factor_required => {
            session.cycle_id().await?;
            let pending = Pending {
                account_id: signed_in.account.id,
                next,
                must_change_password: signed_in.must_change_password,
                started_at: now,
                wrong_codes: 0,
            };
            session.insert(PENDING_KEY, pending).await?;
            Ok(Redirect::to("/signin/two-step").into_response())
        }
        Ok(signed_in) => {
            finish(
                &state,
                &session,
                &signed_in.account,
                signed_in.must_change_password,
                &next,
                false,
            )
            .await
        }
        Err(err) => {
            // A managed account whose organization requires SSO is offered the IdP instead.
            let sso_url = match &err {
                AccountError::PasswordSignInDisabled => {
                    match route(&state.db, &state.base_url(), &form.email).await {
                        Ok(Route::Sso { login_url }) => Some(with_return_to(&login_url, &next)),
                        _ => None,
                    }
                }
                _ => None,
            };
            let layout = Layout::new(&session, None).await?;
            let product = session::signing_in_to(&session, &next).await?;
            Ok(form_error(err.into(), |error| {
                PasswordPage {
                    layout,
                    email: form.email.clone(),
                    next,
                    notice: None,
                    error: Some(error),
                    sso_url,
                    product,
                }
                .into_response()
            }))
        }
    }
}

/// Starts the signed-in session (applying the organization's lifetime) and goes on.
async fn finish(
    state: &AppState,
    session: &Session,
    account: &Account,
    must_change: bool,
    next: &str,
    second_factor: bool,
) -> Result<Response, AppError> {
    crate::accounts::session::start_session(
        state,
        session,
        account,
        session::SignInMethod::Password,
    )
    .await?;
    if second_factor {
        session.insert(session::SECOND_FACTOR_KEY, "otp").await?;
    }
    if must_change {
        session.insert(session::MUST_CHANGE_KEY, true).await?;
        session
            .insert(accounts::password_pages::NEXT_KEY, next)
            .await?;
        return Ok(Redirect::to("/account/password").into_response());
    }
    Ok(Redirect::to(next).into_response())
}

/// The pending sign-in and its account, while it may still be completed.
async fn pending(
    state: &AppState,
    session: &Session,
) -> Result<Option<(Pending, Account)>, AppError> {
    let Some(pending) = session.get::<Pending>(PENDING_KEY).await? else {
        return Ok(None);
    };
    if state.clock.now_ms() - pending.started_at > PENDING_MS {
        session.remove::<Pending>(PENDING_KEY).await?;
        return Ok(None);
    }
    match accounts::store::by_id(state.db.pool(), pending.account_id).await? {
        Some(account) if account.status == AccountStatus::Active => Ok(Some((pending, account))),
        _ => {
            session.remove::<Pending>(PENDING_KEY).await?;
            Ok(None)
        }
    }
}

fn start_again() -> AppError {
    AppError::client(
        StatusCode::UNAUTHORIZED,
        "sign_in_expired",
        "This sign-in has expired or was cancelled. Sign in again with your password.",
    )
}

async fn two_step_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<TwoStepPage, AppError> {
    let (_, account) = pending(&state, &session).await?.ok_or_else(start_again)?;
    Ok(TwoStepPage {
        layout: Layout::new(&session, None).await?,
        email: account.email,
        error: None,
    })
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn two_step(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, AppError> {
    let (mut pending, account) = pending(&state, &session).await?.ok_or_else(start_again)?;
    let now = state.clock.now_ms();
    match second_factor::complete_sign_in(
        &state.db,
        &state.totp_key,
        &state.config,
        now,
        &account,
        &form.code,
        &meta,
    )
    .await
    {
        Ok(()) => {
            session.remove::<Pending>(PENDING_KEY).await?;
            finish(
                &state,
                &session,
                &account,
                pending.must_change_password,
                &pending.next,
                true,
            )
            .await
        }
        Err(SecondFactorError::WrongCode) => {
            pending.wrong_codes += 1;
            if pending.wrong_codes >= MAX_WRONG_CODES {
                session.remove::<Pending>(PENDING_KEY).await?;
                return Err(AppError::client(
                    StatusCode::UNAUTHORIZED,
                    "too_many_codes",
                    "Too many wrong codes. Sign in again with your password.",
                ));
            }
            session.insert(PENDING_KEY, &pending).await?;
            let page = TwoStepPage {
                layout: Layout::new(&session, None).await?,
                email: account.email,
                error: Some(SecondFactorError::WrongCode.to_string()),
            };
            Ok(with_status(page.into_response(), StatusCode::UNAUTHORIZED))
        }
        Err(err @ SecondFactorError::Paused(_)) => {
            session.remove::<Pending>(PENDING_KEY).await?;
            Err(err.into())
        }
        Err(err) => Err(err.into()),
    }
}
