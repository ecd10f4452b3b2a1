//! Discovery, JWKS and RP-initiated logout, and the provider's routes.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_sessions::Session;

use super::{authorize, store, token};
use crate::AppState;
use crate::audit::{self, AuditAction, Target};
use crate::web::Layout;
use crate::web::error::AppError;
use crate::web::extract::{ClientMeta, PageForm};
use crate::web::session;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route(
            "/oauth/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/oauth/authorize/resume", get(authorize::resume))
        .route("/oauth/token", post(token::token))
        .route(
            "/oauth/userinfo",
            get(token::userinfo).post(token::userinfo),
        )
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/logout", get(logout_get).post(logout_post))
        .route("/oauth/logout/confirm", post(logout_confirm))
}

async fn discovery(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = state.base_url();
    Json(serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "jwks_uri": format!("{base}/oauth/jwks"),
        "end_session_endpoint": format!("{base}/oauth/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": super::SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "email", "email_verified", "name", "org"],
        "prompt_values_supported": ["none", "login"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(state.oidc_keys.jwks()?))
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

async fn sign_out(
    state: &AppState,
    session: &Session,
    meta: &audit::RequestMeta,
    product: Option<&store::Client>,
) -> Result<(), AppError> {
    if let Some(id) = session::account_id(session).await? {
        let now = state.clock.now_ms();
        let mut tx = state.db.begin().await?;
        if let Some(account) = crate::accounts::store::by_id(&mut *tx, id).await? {
            audit::record(
                &mut tx,
                now,
                audit::Event {
                    org_id: account.org_id,
                    action: AuditAction::AccountSignedOut,
                    actor: &account.actor(),
                    target: Some(Target::account(account.id)),
                    meta,
                    details: serde_json::json!({ "via": "oidc_logout", "product": product.map(|p| p.name.clone()) }),
                },
            )
            .await?;
        }
        tx.commit().await?;
    }
    session.flush().await?;
    Ok(())
}

fn after_logout(redirect: Option<String>) -> Response {
    Redirect::to(redirect.as_deref().unwrap_or("/signin")).into_response()
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
        return Ok(after_logout(request.redirect));
    };
    if request.hinted_sub.as_deref() == Some(current.to_string().as_str()) {
        sign_out(state, session, meta, request.product.as_ref()).await?;
        return Ok(after_logout(request.redirect));
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
    sign_out(&state, &session, &meta, request.product.as_ref()).await?;
    Ok(after_logout(request.redirect))
}
