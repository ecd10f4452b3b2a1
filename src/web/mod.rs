//! Router assembly, layers (tracing, body limit, sessions, CSRF, security headers), and the
//! layout data every page shares.

pub mod csrf;
pub mod error;
pub mod extract;
pub mod session;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::AppState;
use crate::accounts::Account;
use error::AppError;

/// Data the page layout needs: who is signed in and the form token.
#[derive(Clone, Debug)]
pub struct Layout {
    pub signed_in: Option<String>,
    pub csrf: String,
}

impl Layout {
    pub async fn new(session: &Session, account: Option<&Account>) -> Result<Layout, AppError> {
        Ok(Layout {
            signed_in: account.map(|a| a.email.clone()),
            csrf: csrf::token(session).await?,
        })
    }
}

/// Builds the router with every layer.
pub fn router(state: AppState) -> Router {
    let session_layer = SessionManagerLayer::new(session::DbSessionStore::new(state.db.clone()))
        .with_name("nulab_pass_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.is_https())
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(i64::from(
            state.config.session_hours,
        ))));
    let limit = state.config.max_body_bytes;

    let mut pages = Router::new()
        .route("/", get(home))
        .merge(crate::accounts::pages::routes())
        .merge(crate::orgs::pages::routes())
        .merge(crate::api_tokens::pages::routes())
        .merge(crate::domains::pages::routes())
        .merge(crate::managed::pages::routes())
        .merge(crate::migration::pages::routes())
        .merge(crate::sign_in::pages::routes())
        .merge(crate::oidc::endpoints::routes())
        .merge(crate::saml::pages::routes());
    if state.config.dev {
        pages = pages.merge(crate::mail::pages::routes());
    }

    // The ACS reads its body itself, up to its own limit, so that it refuses an oversized
    // response with a reason code and an audit event; everything else has the configured limit.
    let acs = crate::saml::acs_page::routes();
    let limited = Router::new()
        .merge(pages)
        .merge(crate::api::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit));

    Router::new()
        .merge(limited)
        .merge(acs)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest_service("/static", ServeDir::new(static_dir()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf::guard))
        .layer(session_layer)
        .layer(axum::middleware::map_response(bare_server_error))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(
            // The span names the route, never the query string: links carry tokens.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
                tracing::info_span!("request", method = %req.method(), route = route.as_deref().unwrap_or("-"))
            }),
        )
        .with_state(state)
}

/// The session layer answers a failure to save a session (its store is the database) with an
/// empty 500 of its own, after logging the cause: give it the error page and an error id.
async fn bare_server_error(response: Response) -> Response {
    let bare = response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    AppError::Internal(anyhow::anyhow!(
        "the session could not be saved (the session layer logged why just before)"
    ))
    .into_response()
}

/// Where static files live: beside the binary's working directory, or the crate in development.
fn static_dir() -> std::path::PathBuf {
    let local = std::path::PathBuf::from("static");
    if local.is_dir() {
        local
    } else {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
    }
}

async fn home(session: Session) -> Result<Response, AppError> {
    let to = if session::account_id(&session).await?.is_some() {
        "/account"
    } else {
        "/signin"
    };
    Ok(Redirect::to(to).into_response())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}

async fn not_found() -> AppError {
    AppError::not_found("There is no page at this address.")
}

/// A Unix-millisecond time as `YYYY-MM-DD HH:MM UTC` for pages.
pub fn format_time(ms: impl std::borrow::Borrow<i64>) -> String {
    let ms = *ms.borrow();
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".to_string())
}

const FLASH_KEY: &str = "flash";

/// Keeps a one-time notice for the next page this browser opens (after a redirect).
pub async fn flash(session: &Session, message: impl Into<String>) -> Result<(), AppError> {
    session.insert(FLASH_KEY, message.into()).await?;
    Ok(())
}

/// Takes the one-time notice, if any.
pub async fn take_flash(session: &Session) -> Result<Option<String>, AppError> {
    Ok(session.remove::<String>(FLASH_KEY).await?)
}
