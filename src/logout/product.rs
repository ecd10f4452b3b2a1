//! OpenID Connect RP-Initiated Logout 1.0: a product sends the browser to
//! `/oauth/logout`. With an `id_token_hint` for this very session the sign-in ends at once;
//! otherwise the user confirms first (a page on another site must not sign people out). The
//! browser then goes to a registered `post_logout_redirect_uri` of the product, through the IdP
//! first when the sign-in came through one with Single Logout.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use crate::AppState;
use crate::audit;
use crate::oidc::{authorize, store};
use crate::web::Layout;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::session;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/logout", get(logout_get).post(logout_post))
        .route("/oauth/logout/confirm", post(logout_confirm))
}

#[derive(Template, WebTemplate)]
#[template(path = "logout.html")]
struct LogoutPage {
    layout: Layout,
    product: String,
    id_token_hint: String,
    client_id: String,
    post_logout_redirect_uri: String,
    state: String,
}

/// The logout request, checked: where to send the browser afterwards (exactly a registered
/// post-logout URI of the product), and whether the product proved it speaks for this session.
struct LogoutRequest {
    product: Option<store::Client>,
    redirect: Option<String>,
    hinted_sub: Option<String>,
    raw: std::collections::HashMap<String, String>,
}

async fn check_logout(state: &AppState, raw: &[u8]) -> Result<LogoutRequest, AppError> {
    let params = authorize::parse_params(raw)
        .map_err(|e| AppError::bad_request(format!("This sign-out request is malformed: {e}.")))?;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let hint = match get("id_token_hint") {
        Some(jwt) => state.oidc_keys.verify_own(jwt)?,
        None => None,
    };
    if get("id_token_hint").is_some() && hint.is_none() {
        return Err(AppError::bad_request(
            "The id_token_hint of this sign-out request was not issued by this server.",
        ));
    }
    let aud = hint
        .as_ref()
        .and_then(|c| c.get("aud"))
        .and_then(|a| a.as_str())
        .map(str::to_string);
    let client_id = match (get("client_id"), aud.as_deref()) {
        (Some(id), Some(aud)) if id != aud => {
            return Err(AppError::bad_request(
                "client_id and id_token_hint name different products.",
            ));
        }
        (Some(id), _) => Some(id.to_string()),
        (None, aud) => aud.map(str::to_string),
    };
    let product = match &client_id {
        Some(id) => Some(
            store::client_by_id(state.db.pool(), id)
                .await?
                .ok_or_else(|| {
                    AppError::bad_request("This sign-out request names no registered product.")
                })?,
        ),
        None => None,
    };
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = product
                .as_ref()
                .is_some_and(|p| p.post_logout_redirect_uris.iter().any(|u| u == uri));
            if !registered {
                return Err(AppError::bad_request(
                    "This sign-out request asks to go to an address that is not registered for the product (post_logout_redirect_uri must match exactly, and the product must be named by client_id or id_token_hint).",
                ));
            }
            let mut url = url::Url::parse(uri)
                .map_err(|_| AppError::bad_request("post_logout_redirect_uri is not valid"))?;
            if let Some(st) = get("state") {
                url.query_pairs_mut().append_pair("state", st);
            }
            Some(url.to_string())
        }
    };
    let hinted_sub = hint
        .as_ref()
        .and_then(|c| c.get("sub"))
        .and_then(|s| s.as_str())
        .map(str::to_string);
    Ok(LogoutRequest {
        product,
        redirect,
        hinted_sub,
        raw: params,
    })
}

/// Signs the browser out for `product` and goes to `redirect` (or the sign-in page).
async fn sign_out(
    state: &AppState,
    session: &Session,
    meta: &audit::RequestMeta,
    product: Option<&store::Client>,
    redirect: Option<String>,
) -> Result<Response, AppError> {
    let via = match product {
        Some(p) => format!("oidc_logout:{}", p.name),
        None => "oidc_logout".to_string(),
    };
    super::sign_out(
        state,
        session,
        meta,
        &via,
        redirect.as_deref().unwrap_or("/signin"),
    )
    .await
}

/// RP-initiated logout. With an `id_token_hint` for this very session the session ends at once;
/// otherwise the user confirms first (a page on another site must not sign people out).
async fn logout(
    state: &AppState,
    session: &Session,
    meta: &audit::RequestMeta,
    raw: &[u8],
) -> Result<Response, AppError> {
    let request = check_logout(state, raw).await?;
    let current = session::account_id(session).await?;
    let Some(current) = current else {
        return Ok(Redirect::to(request.redirect.as_deref().unwrap_or("/signin")).into_response());
    };
    if request.hinted_sub.as_deref() == Some(current.to_string().as_str()) {
        return sign_out(
            state,
            session,
            meta,
            request.product.as_ref(),
            request.redirect,
        )
        .await;
    }
    let field = |k: &str| request.raw.get(k).cloned().unwrap_or_default();
    Ok(LogoutPage {
        layout: Layout::new(session, None).await?,
        product: request
            .product
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        id_token_hint: field("id_token_hint"),
        client_id: field("client_id"),
        post_logout_redirect_uri: field("post_logout_redirect_uri"),
        state: field("state"),
    }
    .into_response())
}

async fn logout_get(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    logout(&state, &session, &meta, q.unwrap_or_default().as_bytes()).await
}

async fn logout_post(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    body: Bytes,
) -> Result<Response, AppError> {
    logout(&state, &session, &meta, &body).await
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    id_token_hint: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    post_logout_redirect_uri: String,
    #[serde(default)]
    state: String,
}

async fn logout_confirm(
    State(state): State<AppState>,
    session: Session,
    ClientMeta(meta): ClientMeta,
    PageForm(form): PageForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let raw: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("id_token_hint", form.id_token_hint),
            ("client_id", form.client_id),
            ("post_logout_redirect_uri", form.post_logout_redirect_uri),
            ("state", form.state),
        ])
        .finish();
    let request = check_logout(&state, raw.as_bytes()).await?;
    sign_out(
        &state,
        &session,
        &meta,
        request.product.as_ref(),
        request.redirect,
    )
    .await
}
