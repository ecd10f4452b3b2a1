//! Extractors that carry authorization in their types: a handler that takes [`OrgAdmin`] or
//! [`ApiAdmin`] cannot run unless the caller administers the organization in the path.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use super::error::{ApiError, AppError};
use super::session;
use crate::AppState;
use crate::accounts::{self, Account, AccountStatus};
use crate::api_tokens;
use crate::audit::{Actor, RequestMeta};
use crate::orgs::{self, AdminScope, Role};

/// Where the request came from, for audit events.
pub struct ClientMeta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientMeta(meta_of(parts)))
    }
}

fn meta_of(parts: &Parts) -> RequestMeta {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(400).collect());
    RequestMeta { ip, user_agent }
}

/// The signed-in, active account. Pages without one redirect to the sign-in page.
pub struct SignedIn {
    pub account: Account,
    pub session: Session,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
        let Some(id) = session::account_id(&session).await? else {
            return Err(AppError::SignInRequired { next });
        };
        match accounts::store::by_id(state.db.pool(), id).await? {
            Some(account) if account.status == AccountStatus::Active => {
                // The organization's session lifetime is over: sign in again.
                if !crate::sign_in::session_alive(state, &session, &account).await? {
                    session.flush().await?;
                    return Err(AppError::SignInRequired { next });
                }
                // A temporary or expired password: nothing else until it is changed.
                let must_change = session
                    .get::<bool>(session::MUST_CHANGE_KEY)
                    .await?
                    .unwrap_or(false);
                if must_change && !PASSWORD_CHANGE_PATHS.contains(&parts.uri.path()) {
                    return Err(AppError::RedirectTo("/account/password".to_string()));
                }
                Ok(SignedIn { account, session })
            }
            // Suspended or deleted since signing in: the session ends now.
            _ => {
                session.flush().await?;
                Err(AppError::SignInRequired { next })
            }
        }
    }
}

/// Pages a user who must change their password may still open.
const PASSWORD_CHANGE_PATHS: &[&str] = &["/account/password", "/signout"];

/// The path's `{org}` slug.
async fn org_slug(parts: &mut Parts, state: &AppState) -> Option<String> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .ok()?;
    params.get("org").cloned()
}

/// A signed-in admin of the organization in the path. Non-members get 404 (the page does not
/// say whether the organization exists); members who are not admins get 403.
pub struct OrgAdmin {
    pub scope: AdminScope,
    pub account: Account,
    pub session: Session,
}

impl FromRequestParts<AppState> for OrgAdmin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        let not_found =
            || AppError::not_found("There is no organization with this ID that you administer.");
        let slug = org_slug(parts, state).await.ok_or_else(not_found)?;
        let org = orgs::store::by_slug(state.db.pool(), &slug)
            .await?
            .ok_or_else(not_found)?;
        match orgs::store::role_of(state.db.pool(), org.id, signed_in.account.id).await? {
            Some(Role::Admin) => Ok(OrgAdmin {
                scope: AdminScope::grant(org, signed_in.account.actor(), meta_of(parts)),
                account: signed_in.account,
                session: signed_in.session,
            }),
            Some(Role::Member) => Err(AppError::forbidden(
                "Only admins of this organization can open its admin pages.",
            )),
            None => Err(not_found()),
        }
    }
}

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
        let (token, org) = api_tokens::authenticate(state.db.pool(), state.clock.now_ms(), secret)
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

/// A urlencoded form whose rejection is a readable 400 page.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| PageForm(v))
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request is too large",
                ),
                _ => AppError::bad_request(
                    "The form was incomplete or malformed. Go back and fill in every field.",
                ),
            })
    }
}

/// The UTF-8 text of the file a page uploads as the multipart field `file` (a CSV file); every
/// rejection is a readable 400 (or 413) page.
pub struct UploadedText(pub String);

impl<S: Send + Sync> FromRequest<S> for UploadedText {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let malformed = || AppError::bad_request("the upload is malformed; choose the file again");
        let mut multipart = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|_| malformed())?;
        let mut text = None;
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the file is too large",
                )
            } else {
                malformed()
            }
        })? {
            if field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|_| malformed())?;
                text = Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| AppError::bad_request("the file must be UTF-8 text"))?,
                );
            }
        }
        text.map(UploadedText)
            .ok_or_else(|| AppError::bad_request("choose a file to upload"))
    }
}

/// A JSON body whose rejection is a JSON 400 (or 413) error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(|rejection| {
                let status = rejection.status();
                let err = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::client(status, "too_large", "the request body is too large")
                } else {
                    AppError::client(
                        StatusCode::BAD_REQUEST,
                        "invalid_body",
                        rejection.body_text(),
                    )
                };
                ApiError(err)
            })
    }
}
