//! Per-organization API tokens for the admin JSON API. A token is shown once at creation and
//! stored only as its SHA-256 hash. Each has scopes ([`scopes`]), an expiry (default 90 days, at
//! most a year), and either the admin who created it (it dies when that admin stops being an
//! active admin of the organization: [`holders`]) or the operator's mark.

pub mod extract;
pub mod holders;
pub mod pages;
pub mod scopes;
pub mod store;

use serde::Serialize;

use crate::audit::{Actor, AuditAction, Target};
use crate::clock::DAY_MS;
use crate::db::Tx;
use crate::ids::{AccountId, ApiTokenId, OrgId};
use crate::orgs::{AdminScope, Org};
use crate::secrets;
use crate::web::error::AppError;
pub use scopes::{Scope, Scopes};

/// Every token starts with this, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "np_";
/// Days a token lives when its creator does not say.
pub const DEFAULT_DAYS: i64 = 90;
/// The longest life a token may have.
pub const MAX_DAYS: i64 = 365;

/// A token as lists show it (never the secret).
#[derive(Clone, Debug, Serialize)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub org_id: OrgId,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    pub scopes: Scopes,
    /// Made by the operator's command line (no creating admin).
    pub operator: bool,
    /// The admin who created it; the token dies when they stop being an active admin.
    pub created_by: Option<AccountId>,
    pub created_by_email: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Why it was revoked: `revoked` by an admin, or what happened to its creator.
    pub revoked_reason: Option<String>,
}

impl ApiToken {
    /// `active`, `expired` or `revoked`, at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "active"
        }
    }
}

/// What a new token should be.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub name: String,
    pub scopes: Scopes,
    /// 1..=[`MAX_DAYS`].
    pub expires_in_days: i64,
}

impl NewToken {
    /// Every scope and the default expiry.
    pub fn full(name: &str) -> NewToken {
        NewToken {
            name: name.to_string(),
            scopes: Scopes::all(),
            expires_in_days: DEFAULT_DAYS,
        }
    }
}

/// What can go wrong with tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token name is required (at most 100 characters)")]
    InvalidName,
    #[error("choose at least one scope")]
    NoScope,
    #[error("a token expires after 1 to 365 days")]
    InvalidExpiry,
    #[error("only an admin or the operator can create a token")]
    NotAnAdmin,
    #[error("no such token in this organization")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How TokenError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<TokenError> for AppError {
    fn from(err: TokenError) -> AppError {
        use axum::http::StatusCode as S;
        let (status, code) = match err {
            TokenError::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            TokenError::NoScope => (S::BAD_REQUEST, "invalid_scopes"),
            TokenError::InvalidExpiry => (S::BAD_REQUEST, "invalid_expiry"),
            TokenError::NotAnAdmin => (S::FORBIDDEN, "forbidden"),
            TokenError::NotFound => (S::NOT_FOUND, "not_found"),
            TokenError::Db(e) => return AppError::Internal(e.into()),
        };
        AppError::client(status, code, err.to_string())
    }
}

/// Creates a token with every scope and the default expiry; returns it with its secret, which is
/// never shown again.
pub async fn create(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    name: &str,
) -> Result<(ApiToken, String), TokenError> {
    create_with(tx, now, scope, &NewToken::full(name)).await
}

/// Creates a token as `new` says. An admin's token is tied to that admin; the operator's is
/// marked as the operator's.
pub async fn create_with(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    new: &NewToken,
) -> Result<(ApiToken, String), TokenError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(TokenError::InvalidName);
    }
    if !(1..=MAX_DAYS).contains(&new.expires_in_days) {
        return Err(TokenError::InvalidExpiry);
    }
    let (created_by, created_by_email, operator) = match scope.actor() {
        Actor::Account { id, email } => (
            Some(AccountId::parse(id).ok_or(TokenError::NotAnAdmin)?),
            Some(email.clone()),
            false,
        ),
        Actor::Operator => (None, None, true),
        _ => return Err(TokenError::NotAnAdmin),
    };
    let secret = secrets::new_token(TOKEN_PREFIX);
    let token = ApiToken {
        id: ApiTokenId::new(),
        org_id: scope.org().id,
        name: name.to_string(),
        prefix: secret.chars().take(TOKEN_PREFIX.len() + 6).collect(),
        scopes: new.scopes.clone(),
        operator,
        created_by,
        created_by_email,
        created_at: now,
        expires_at: now + new.expires_in_days * DAY_MS,
        last_used_at: None,
        revoked_at: None,
        revoked_reason: None,
    };
    store::insert(tx, &token, &secrets::hash_token(&secret)).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ApiTokenCreated,
            Target::api_token(token.id),
            serde_json::json!({
                "name": token.name, "prefix": token.prefix, "scopes": token.scopes,
                "expires_at": token.expires_at, "operator": token.operator,
            }),
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
    store::revoke(tx, id, now, "revoked").await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ApiTokenRevoked,
            Target::api_token(id),
            serde_json::json!({ "name": token.name, "prefix": token.prefix, "reason": "revoked" }),
        )
        .await?;
    Ok(())
}

/// Why a presented secret does not authenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked, or its creator is no longer an active admin.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// The live token with this secret and its organization.
pub async fn authenticate(
    pool: &sqlx::AnyPool,
    now: i64,
    secret: &str,
) -> Result<Result<(ApiToken, Org), Refusal>, sqlx::Error> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(Err(Refusal::Invalid));
    }
    let Some(token) = store::live_by_hash(pool, &secrets::hash_token(secret)).await? else {
        return Ok(Err(Refusal::Invalid));
    };
    if token.expires_at <= now {
        return Ok(Err(Refusal::Expired));
    }
    let Some(org) = crate::orgs::store::by_id(pool, token.org_id).await? else {
        return Ok(Err(Refusal::Invalid));
    };
    // Recording every use would make each API call a write; once a minute is enough.
    if token.last_used_at.is_none_or(|t| now - t > 60_000) {
        store::touch(pool, token.id, now).await?;
    }
    Ok(Ok((token, org)))
}
