//! Per-organization API tokens for the admin JSON API. A token is shown once at creation and
//! stored only as its SHA-256 hash.

pub mod extract;
pub mod pages;
pub mod store;

use serde::Serialize;

use crate::audit::{AuditAction, Target};
use crate::db::Tx;
use crate::ids::{ApiTokenId, OrgId};
use crate::orgs::{AdminScope, Org};
use crate::secrets;
use crate::web::error::AppError;

/// Every token starts with this, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "np_";

/// A token as lists show it (never the secret).
#[derive(Clone, Debug, Serialize)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub org_id: OrgId,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What can go wrong with tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token name is required (at most 100 characters)")]
    InvalidName,
    #[error("no such token in this organization")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How TokenError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<TokenError> for AppError {
    fn from(err: TokenError) -> AppError {
        match err {
            TokenError::InvalidName => AppError::client(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_name",
                err.to_string(),
            ),
            TokenError::NotFound => AppError::client(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                err.to_string(),
            ),
            TokenError::Db(e) => AppError::Internal(e.into()),
        }
    }
}

/// Creates a token; returns it with its secret, which is never shown again.
pub async fn create(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    name: &str,
) -> Result<(ApiToken, String), TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(TokenError::InvalidName);
    }
    let secret = secrets::new_token(TOKEN_PREFIX);
    let token = ApiToken {
        id: ApiTokenId::new(),
        org_id: scope.org().id,
        name: name.to_string(),
        prefix: secret.chars().take(TOKEN_PREFIX.len() + 6).collect(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    let creator = match scope.actor() {
        crate::audit::Actor::Account { id, .. } => Some(id.clone()),
        _ => None,
    };
    store::insert(tx, &token, &secrets::hash_token(&secret), creator).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ApiTokenCreated,
            Target::api_token(token.id),
            serde_json::json!({ "name": token.name, "prefix": token.prefix }),
        )
        .await?;
    Ok((token, secret))
}

/// Revokes a token of this organization; it stops working at once.
pub async fn revoke(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: ApiTokenId,
) -> Result<(), TokenError> {
    let token = store::by_id(&mut **tx, scope.org().id, id)
        .await?
        .ok_or(TokenError::NotFound)?;
    if token.revoked_at.is_some() {
        return Ok(());
    }
    store::revoke(tx, id, now).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ApiTokenRevoked,
            Target::api_token(id),
            serde_json::json!({ "name": token.name, "prefix": token.prefix }),
        )
        .await?;
    Ok(())
}

/// The live token with this secret and its organization.
pub async fn authenticate(
    pool: &sqlx::AnyPool,
    now: i64,
    secret: &str,
) -> Result<Option<(ApiToken, Org)>, sqlx::Error> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let found = store::by_hash(pool, &secrets::hash_token(secret)).await?;
    if let Some((token, _)) = &found {
        // Recording every use would make each API call a write; once a minute is enough.
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            store::touch(pool, token.id, now).await?;
        }
    }
    Ok(found)
}
