//! Settings pages of sign-in: two-step verification on the account, and an organization's
//! session lifetime.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::second_factor::{self, ISSUER, SecondFactorError};
use super::{SessionSettings, store};
use crate::AppState;
use crate::accounts::session::SignedIn;
use crate::accounts::totp;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/two-step", get(totp_page).post(totp_confirm))
        .route("/account/two-step/remove", post(totp_remove))
        .route(
            "/admin/{org}/session-settings",
            get(settings_page).post(save_settings),
        )
}

#[derive(Template, WebTemplate)]
#[template(path = "two_step_setup.html")]
struct TotpPage {
    layout: Layout,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    enrolled_at: Option<i64>,
    secret: String,
    otpauth: String,
    /// The `otpauth://` URI as a QR code (a `data:` URL of an SVG image).
    qr: Option<String>,
    no_password: bool,
}

async fn render_totp(
    state: &AppState,
    signed_in: &SignedIn,
    error: Option<String>,
) -> Result<Response, AppError> {
    let SignedIn { account, session } = signed_in;
    let row = store::totp(state.db.pool(), account.id).await?;
    let mut page = TotpPage {
        layout: Layout::new(session, Some(account)).await?,
        notice: take_flash(session).await?,
        error,
        enrolled_at: row.as_ref().and_then(|r| r.confirmed_at),
        secret: String::new(),
        otpauth: String::new(),
        qr: None,
        no_password: false,
    };
    if page.enrolled_at.is_none() {
        match second_factor::pending_secret(
            &state.db,
            &state.totp_key,
            state.clock.now_ms(),
            account,
        )
        .await
        {
            Ok(secret) => {
                page.otpauth = totp::otpauth_uri(ISSUER, &account.email, &secret);
                page.qr = totp::qr_data_url(&page.otpauth);
                page.secret = secret;
            }
            Err(SecondFactorError::AlreadyEnrolled) => {}
            Err(err) => return Err(err.into()),
        }
        page.no_password = crate::accounts::store::password_hash(state.db.pool(), account.id)
            .await?
            .is_none();
    }
    Ok(page.into_response())
}

async fn totp_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, AppError> {
    render_totp(&state, &signed_in, None).await
}

#[derive(Deserialize)]
struct TotpForm {
    password: String,
    code: String,
}

async fn totp_result(
    state: &AppState,
    signed_in: SignedIn,
    result: Result<(), SecondFactorError>,
    done: &str,
) -> Result<Response, AppError> {
    match result {
        Ok(()) => {
            flash(&signed_in.session, done).await?;
            Ok(Redirect::to("/account/two-step").into_response())
        }
        Err(err) => {
            let err = AppError::from(err);
            let status = err.status();
            let Some(message) = err.user_message().map(str::to_string) else {
                return Err(err);
            };
            let mut response = render_totp(state, &signed_in, Some(message)).await?;
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

async fn totp_confirm(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<TotpForm>,
) -> Result<Response, AppError> {
    let result = second_factor::confirm(
        &state.db,
        &state.totp_key,
        state.clock.now_ms(),
        &signed_in.account,
        &form.password,
        &form.code,
        &meta,
    )
    .await;
    totp_result(
        &state,
        signed_in,
        result,
        "Two-step verification is on: each password sign-in now asks for a code from your app.",
    )
    .await
}

async fn totp_remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<TotpForm>,
) -> Result<Response, AppError> {
    let result = second_factor::remove(
        &state.db,
        &state.totp_key,
        state.clock.now_ms(),
        &signed_in.account,
        &form.password,
        &form.code,
        &meta,
    )
    .await;
    totp_result(&state, signed_in, result, "Two-step verification is off.").await
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/session_settings.html")]
struct SettingsPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    hours: String,
    max_hours: i64,
}

async fn settings_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<SettingsPage, AppError> {
    let current = super::settings(&state.db, &admin.scope).await?;
    Ok(SettingsPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "session-settings",
        notice: take_flash(&admin.session).await?,
        error: None,
        hours: current.session_lifetime_hours.to_string(),
        max_hours: super::MAX_LIFETIME_HOURS,
    })
}

#[derive(Deserialize)]
struct SettingsForm {
    session_lifetime_hours: String,
}

async fn save_settings(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<SettingsForm>,
) -> Result<Response, AppError> {
    let result = async {
        let hours = form
            .session_lifetime_hours
            .trim()
            .parse::<i64>()
            .map_err(|_| super::SignInError::InvalidLifetime)?;
        let mut tx = state.db.begin().await?;
        super::set_settings(
            &mut tx,
            state.clock.now_ms(),
            &admin.scope,
            SessionSettings {
                session_lifetime_hours: hours,
            },
        )
        .await?;
        tx.commit().await?;
        Ok::<_, super::SignInError>(())
    }
    .await;
    match result {
        Ok(()) => {
            flash(
                &admin.session,
                "The session lifetime was saved. It applies from each member's next sign-in.",
            )
            .await?;
            Ok(Redirect::to(&format!(
                "/admin/{}/session-settings",
                admin.scope.org().slug
            ))
            .into_response())
        }
        Err(err) => {
            let err = AppError::from(err);
            let status = err.status();
            let Some(message) = err.user_message().map(str::to_string) else {
                return Err(err);
            };
            let mut page = SettingsPage {
                layout: Layout::new(&admin.session, Some(&admin.account)).await?,
                org: admin.scope.org().clone(),
                section: "session-settings",
                notice: None,
                error: Some(message),
                hours: form.session_lifetime_hours.clone(),
                max_hours: super::MAX_LIFETIME_HOURS,
            }
            .into_response();
            *page.status_mut() = status;
            Ok(page)
        }
    }
}

impl From<super::SignInError> for AppError {
    fn from(err: super::SignInError) -> Self {
        match err {
            super::SignInError::InvalidLifetime => AppError::client(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_session_lifetime",
                err.to_string(),
            ),
            super::SignInError::Db(e) => e.into(),
        }
    }
}
