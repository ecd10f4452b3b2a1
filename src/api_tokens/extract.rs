//! [`ApiAdmin`]: the proof that a JSON API request carries a live API token of the organization
//! in the path, holding the scope the endpoint needs (`ApiAdmin<need::Members>`).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Refusal, Scope};
use crate::AppState;
use crate::audit::Actor;
use crate::orgs::AdminScope;
use crate::web::error::{ApiError, AppError};
use crate::web::extract::{meta_of, org_slug};

/// The scope an endpoint needs, as a type.
pub trait Need: Send + Sync {
    const SCOPE: Scope;
}

/// One type per scope, for `ApiAdmin<need::X>`.
pub mod need {
    use super::{Need, Scope};

    macro_rules! need {
        ($($name:ident => $scope:ident),*) => {$(
            #[doc = concat!("Needs the `", stringify!($name), "` scope.")]
            pub struct $name;
            impl Need for $name {
                const SCOPE: Scope = Scope::$scope;
            }
        )*};
    }
    need!(Read => Read, Members => Members, Domains => Domains, Sso => Sso, Billing => Billing, Audit => Audit);
}

/// A request of the JSON API with a live, unexpired API token of the organization in the path
/// that holds the scope `N`.
pub struct ApiAdmin<N: Need>(pub AdminScope, pub PhantomData<N>);

/// A refusal with RFC 6750's `WWW-Authenticate` challenge beside the usual JSON error.
fn refuse(status: StatusCode, code: &'static str, message: String, challenge: String) -> Response {
    let mut response = ApiError(AppError::client(status, code, message)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn unauthorized(message: &str) -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        message.to_string(),
        "Bearer error=\"invalid_token\"".to_string(),
    )
}

impl<N: Need> FromRequestParts<AppState> for ApiAdmin<N> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(unauthorized(
                "send an API token: Authorization: Bearer <token>",
            ));
        };
        let Some(secret) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(unauthorized(
                "the Authorization header must be \"Bearer <token>\"",
            ));
        };
        let found = super::authenticate(state.db.pool(), state.clock.now_ms(), secret)
            .await
            .map_err(|e| ApiError(AppError::from(e)).into_response())?;
        let (token, org) = match found {
            Ok(found) => found,
            Err(Refusal::Expired) => {
                return Err(unauthorized("the API token has expired; create a new one"));
            }
            Err(Refusal::Invalid) => {
                return Err(unauthorized(
                    "the API token is not valid or has been revoked",
                ));
            }
        };
        let slug = org_slug(parts, state).await.unwrap_or_default();
        if !slug.eq_ignore_ascii_case(&org.slug) {
            return Err(ApiError(AppError::forbidden(
                "this API token is not valid for that organization",
            ))
            .into_response());
        }
        if !token.scopes.contains(N::SCOPE) {
            let scope = N::SCOPE.as_str();
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "missing_scope",
                format!("this API token lacks the `{scope}` scope that this endpoint needs"),
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            ));
        }
        let actor = Actor::ApiToken {
            id: token.id.to_string(),
            name: token.name,
        };
        Ok(ApiAdmin(
            AdminScope::grant(org, actor, meta_of(parts)),
            PhantomData,
        ))
    }
}
