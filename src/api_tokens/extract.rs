//! [`ApiAdmin`]: the proof that a JSON API request carries a live API token of the organization
//! in the path.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use crate::AppState;
use crate::audit::Actor;
use crate::orgs::AdminScope;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::{meta_of, org_slug};

/// A request of the JSON API with a live API token of the organization in the path.
pub struct ApiAdmin(pub AdminScope);

impl FromRequestParts<AppState> for ApiAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |msg: &str| {
            ApiError(AppError::client(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                msg,
            ))
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("send an API token: Authorization: Bearer <token>"))?;
        let secret = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be \"Bearer <token>\""))?;
        let (token, org) = super::authenticate(state.db.pool(), state.clock.now_ms(), secret)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| unauthorized("the API token is not valid or has been revoked"))?;
        let slug = org_slug(parts, state).await.unwrap_or_default();
        if !slug.eq_ignore_ascii_case(&org.slug) {
            return Err(ApiError(AppError::forbidden(
                "this API token is not valid for that organization",
            )));
        }
        let actor = Actor::ApiToken {
            id: token.id.to_string(),
            name: token.name,
        };
        Ok(ApiAdmin(AdminScope::grant(org, actor, meta_of(parts))))
    }
}
