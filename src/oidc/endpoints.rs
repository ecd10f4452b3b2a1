//! Discovery and JWKS, and the provider's routes (RP-initiated logout lives in `logout`, which
//! also ends the sign-in at the IdP).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{authorize, token};
use crate::AppState;
use crate::web::error::AppError;

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
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": super::SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "email", "email_verified", "name", "org"],
        "prompt_values_supported": ["none", "login"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(state.oidc_keys.jwks()?))
}
