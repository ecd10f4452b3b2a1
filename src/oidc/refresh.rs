//! The refresh-token grant. A refresh token exists only where the product was granted
//! `offline_access`; each use rotates it and asks again whether the sign-in it came from may
//! still reach the product: the account is active, and for a managed account its organization
//! still allows it (no "SSO required" against a password sign-in, its email domain still
//! verified, the organization's session lifetime not over). A refusal revokes the whole grant and
//! answers `invalid_grant`, so a product cannot keep trying. A Nulab account's grant names no
//! organization (its ID token carries no `org`), so no organization's policy applies to it.

use super::store::{self, Client, TokenKind, TokenRow};
use super::token::{OAuthError, active_account, issue, record};
use crate::AppState;
use crate::accounts::{self, Account, AccountKind};
use crate::audit::{AuditAction, RequestMeta};
use crate::db::Tx;
use crate::secrets;

const HOUR_MS: i64 = 3_600_000;

/// Why a refresh was refused after the token itself was accepted; recorded as `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Expired,
    AccountInactive,
    SsoRequired,
    DomainNotVerified,
    SessionLifetimeOver,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::AccountInactive => "account_inactive",
            Refusal::SsoRequired => "sso_required",
            Refusal::DomainNotVerified => "domain_not_verified",
            Refusal::SessionLifetimeOver => "session_lifetime_over",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Refusal::Expired => "the refresh token has expired; sign in again",
            Refusal::AccountInactive => "the account can no longer sign in",
            Refusal::SsoRequired => {
                "the organization requires single sign-on; sign in again through it"
            }
            Refusal::DomainNotVerified => {
                "the account's email domain is no longer verified by its organization"
            }
            Refusal::SessionLifetimeOver => {
                "the organization's session lifetime is over; sign in again"
            }
        }
    }
}

/// `grant_type=refresh_token`.
pub(super) async fn grant(
    state: &AppState,
    meta: &RequestMeta,
    client: &Client,
    refresh: Option<&str>,
) -> Result<serde_json::Value, OAuthError> {
    let refresh =
        refresh.ok_or_else(|| OAuthError::bad("invalid_request", "refresh_token is required"))?;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let row = store::token(&mut *tx, &secrets::hash_token(refresh), TokenKind::Refresh)
        .await?
        .ok_or_else(|| OAuthError::grant("the refresh token is not valid"))?;
    if row.client_id != client.client_id {
        return Err(OAuthError::grant(
            "the refresh token was not issued to this client",
        ));
    }
    if row.revoked_at.is_some() {
        return Err(OAuthError::grant("the refresh token has been revoked"));
    }
    if row.used_at.is_some() {
        return reused(tx, now, &row, client, meta).await;
    }
    let account = match check(&mut tx, &row, now).await? {
        Ok(account) => account,
        Err(refusal) => return refuse(tx, now, &row, client, meta, refusal).await,
    };
    if !store::use_token(&mut tx, &row.token_hash, now).await? {
        return Err(OAuthError::grant("the refresh token has already been used"));
    }
    let issued = issue(
        state,
        &mut tx,
        now,
        client,
        &account,
        (&row.grant_id, row.expires_at),
        &row.scope,
        (row.auth_time, &row.amr, row.sign_in_id.as_deref()),
        None,
    )
    .await?;
    record(
        &mut tx,
        now,
        AuditAction::OidcTokenRefreshed,
        (account.id, Some(&account)),
        client,
        meta,
        serde_json::json!({ "grant": "refresh_token" }),
    )
    .await?;
    tx.commit().await?;
    issued.respond(state)
}

/// A rotated refresh token came back: someone kept a copy. The whole grant ends.
async fn reused(
    mut tx: Tx,
    now: i64,
    row: &TokenRow,
    client: &Client,
    meta: &RequestMeta,
) -> Result<serde_json::Value, OAuthError> {
    let revoked = store::revoke_grant(&mut tx, &row.grant_id, now).await?;
    let account = accounts::store::by_id(&mut *tx, row.account_id).await?;
    record(
        &mut tx,
        now,
        AuditAction::OidcRefreshTokenReused,
        (row.account_id, account.as_ref()),
        client,
        meta,
        serde_json::json!({ "tokens_revoked": revoked }),
    )
    .await?;
    tx.commit().await?;
    Err(OAuthError::grant(
        "the refresh token has already been used; the sign-in is revoked",
    ))
}

/// Whether the grant may still be refreshed now; the account when it may.
async fn check(
    tx: &mut Tx,
    row: &TokenRow,
    now: i64,
) -> Result<Result<Account, Refusal>, sqlx::Error> {
    if row.expires_at <= now {
        return Ok(Err(Refusal::Expired));
    }
    let Some(account) = active_account(tx, row.account_id).await? else {
        return Ok(Err(Refusal::AccountInactive));
    };
    let (AccountKind::Managed, Some(org)) = (account.kind, account.org_id) else {
        return Ok(Ok(account));
    };
    let policy = accounts::store::policy(&mut **tx, org).await?;
    if !policy.password_sign_in && !row.amr.iter().any(|m| m == "saml") {
        return Ok(Err(Refusal::SsoRequired));
    }
    let domain = accounts::Email::parse(&account.email)
        .map(|e| e.domain().to_string())
        .unwrap_or_default();
    if !crate::domains::is_email_domain_verified(tx, org, &domain).await?
        && !crate::domains::transition::allows(tx, org, account.created_at, now).await?
    {
        return Ok(Err(Refusal::DomainNotVerified));
    }
    // The lifetime as the organization sets it now, not as it was when the grant began.
    if let Some(hours) = accounts::store::lifetime_hours(&mut **tx, org).await?
        && row.auth_time + hours * HOUR_MS <= now
    {
        return Ok(Err(Refusal::SessionLifetimeOver));
    }
    Ok(Ok(account))
}

/// Revokes the grant, audits why, and answers `invalid_grant`.
async fn refuse(
    mut tx: Tx,
    now: i64,
    row: &TokenRow,
    client: &Client,
    meta: &RequestMeta,
    refusal: Refusal,
) -> Result<serde_json::Value, OAuthError> {
    let revoked = store::revoke_grant(&mut tx, &row.grant_id, now).await?;
    let account = accounts::store::by_id(&mut *tx, row.account_id).await?;
    record(
        &mut tx,
        now,
        AuditAction::OidcRefreshRefused,
        (row.account_id, account.as_ref()),
        client,
        meta,
        serde_json::json!({ "reason": refusal.code(), "tokens_revoked": revoked }),
    )
    .await?;
    tx.commit().await?;
    Err(OAuthError::grant(refusal.description()))
}
