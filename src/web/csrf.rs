//! CSRF protection for every state-changing form: a per-session token that each form carries in
//! a hidden `csrf` field (or an `X-CSRF-Token` header, or for file uploads a `csrf` query
//! parameter in the form's action). The API authenticates with bearer
//! tokens, not cookies, and is exempt.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::error::AppError;
use crate::AppState;
use crate::secrets;

const KEY: &str = "csrf";

/// This session's CSRF token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(existing) = session.get::<String>(KEY).await? {
        return Ok(existing);
    }
    let fresh = secrets::new_token("");
    session.insert(KEY, fresh.clone()).await?;
    Ok(fresh)
}

/// Paths whose POSTs do not come from our own forms.
fn exempt(path: &str) -> bool {
    // The ACS receives the IdP's cross-site POST; the signed response is its own proof.
    path.starts_with("/api/")
        || (path.starts_with("/sso/") && path.ends_with("/acs"))
        // So does the SLO endpoint: an IdP's POSTed LogoutRequest or LogoutResponse is signed.
        || (path.starts_with("/sso/") && path.ends_with("/slo"))
        // OIDC endpoints that products call, or post browsers to: they authenticate the
        // product, or change nothing without the user's own confirmation.
        || matches!(
            path,
            "/oauth/token" | "/oauth/userinfo" | "/oauth/authorize" | "/oauth/logout"
        )
}

/// Refuses unsafe requests without the session's CSRF token (403) and bodies over the limit (413).
pub async fn guard(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || exempt(request.uri().path())
    {
        return next.run(request).await;
    }
    let expected = match session.get::<String>(KEY).await {
        Ok(value) => value,
        Err(err) => return AppError::from(err).into_response(),
    };
    let (parts, body) = request.into_parts();
    let from_header = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let bytes = match to_bytes(body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return AppError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request is too large",
            )
            .into_response();
        }
    };
    let presented = from_header.or_else(|| {
        is_form
            .then(|| {
                url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == KEY)
                    .map(|(_, v)| v.into_owned())
            })
            .flatten()
    });
    // File uploads (multipart) carry the token in the form's action URL instead.
    let presented = presented.or_else(|| {
        parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == KEY)
                .map(|(_, v)| v.into_owned())
        })
    });
    let valid = matches!((&expected, &presented), (Some(e), Some(p)) if secrets::same(e, p));
    if !valid {
        tracing::warn!(path = %parts.uri.path(), "request refused: missing or wrong CSRF token");
        return AppError::forbidden(
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
