//! The TOTP second factor: enrollment on the account page (confirmed by the password and a first
//! code), the check after a password sign-in (each code works once), and removal (never leaving
//! an organization that requires SSO without an admin who can sign in without it).

use axum::http::StatusCode;

use super::store;
use crate::accounts::totp_key::TotpKey;
use crate::accounts::{self, Account, totp};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::{Db, Tx};
use crate::ids::AccountId;
use crate::mail::MailError;
use crate::web::error::AppError;

/// Name authenticator apps show for the codes.
pub const ISSUER: &str = "nulab-pass";

/// What can go wrong with the second factor, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum SecondFactorError {
    #[error("the password is wrong")]
    WrongPassword,
    #[error(
        "the code is wrong or has already been used; enter the current code from your authenticator app"
    )]
    WrongCode,
    #[error(
        "too many wrong passwords or codes: signing in to this account is paused; wait {} and sign in again",
        crate::limits::wait_words(*.0)
    )]
    Paused(i64),
    #[error("two-step verification is already set up for this account")]
    AlreadyEnrolled,
    #[error("two-step verification is not set up for this account")]
    NotEnrolled,
    #[error(
        "this account has no password, so it signs in through single sign-on and needs no second factor here"
    )]
    NoPassword,
    #[error(
        "you are the only admin of {0} who can sign in without single sign-on, and {0} requires it: another admin must set up two-step verification first, or {0} would be locked out when its IdP fails"
    )]
    LastBreakGlassAdmin(String),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Hash(#[from] accounts::password::HashError),
    #[error(transparent)]
    Sealed(#[from] accounts::totp_key::SealError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<SecondFactorError> for AppError {
    fn from(err: SecondFactorError) -> Self {
        use SecondFactorError as E;
        let (status, code) = match &err {
            E::WrongPassword => (StatusCode::FORBIDDEN, "wrong_password"),
            E::WrongCode => (StatusCode::UNAUTHORIZED, "wrong_code"),
            E::Paused(secs) => {
                return AppError::Throttled {
                    code: "sign_in_paused",
                    message: err.to_string(),
                    retry_after_secs: *secs,
                };
            }
            E::AlreadyEnrolled => (StatusCode::CONFLICT, "already_enrolled"),
            E::NotEnrolled => (StatusCode::CONFLICT, "not_enrolled"),
            E::NoPassword => (StatusCode::CONFLICT, "no_password"),
            E::LastBreakGlassAdmin(_) => (StatusCode::CONFLICT, "last_break_glass_admin"),
            E::Mail(_) | E::Hash(_) | E::Sealed(_) | E::Db(_) => {
                return AppError::Internal(err.into());
            }
        };
        AppError::client(status, code, err.to_string())
    }
}

/// The secret to show while enrolling: the pending one, or a fresh one.
pub async fn pending_secret(
    db: &Db,
    key: &TotpKey,
    now: i64,
    account: &Account,
) -> Result<String, SecondFactorError> {
    let mut tx = db.begin().await?;
    let secret = match store::totp(&mut *tx, account.id).await? {
        Some(row) if row.confirmed_at.is_some() => return Err(SecondFactorError::AlreadyEnrolled),
        Some(row) => key.open(account.id, &row.secret)?,
        None => {
            let secret = totp::new_secret();
            let sealed = key.seal(account.id, &secret)?;
            store::put_pending_totp(&mut tx, account.id, &sealed, now).await?;
            secret
        }
    };
    tx.commit().await?;
    Ok(secret)
}

async fn check_password(
    db: &Db,
    account: &Account,
    password: &str,
) -> Result<(), SecondFactorError> {
    let stored = accounts::store::password_hash(db.pool(), account.id)
        .await?
        .ok_or(SecondFactorError::NoPassword)?;
    if accounts::password::verify(password, &stored).await? {
        Ok(())
    } else {
        Err(SecondFactorError::WrongPassword)
    }
}

/// Confirms enrollment with the account's password and a first code from the app.
pub async fn confirm(
    db: &Db,
    key: &TotpKey,
    now: i64,
    account: &Account,
    password: &str,
    code: &str,
    meta: &RequestMeta,
) -> Result<(), SecondFactorError> {
    check_password(db, account, password).await?;
    let mut tx = db.begin().await?;
    let row = match store::totp(&mut *tx, account.id).await? {
        Some(row) if row.confirmed_at.is_some() => return Err(SecondFactorError::AlreadyEnrolled),
        Some(row) => row,
        None => return Err(SecondFactorError::NotEnrolled),
    };
    let secret = key.open(account.id, &row.secret)?;
    let step = totp::matching_step(&secret, code, now).ok_or(SecondFactorError::WrongCode)?;
    if !store::confirm_totp(&mut tx, account.id, now, step).await? {
        return Err(SecondFactorError::AlreadyEnrolled);
    }
    record(
        &mut tx,
        now,
        account,
        None,
        AuditAction::AccountTotpEnrolled,
        meta,
        serde_json::json!({ "method": "totp" }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the second factor, unless the account is the last admin who could sign in to an
/// organization that requires SSO without it.
pub async fn remove(
    db: &Db,
    key: &TotpKey,
    now: i64,
    account: &Account,
    password: &str,
    code: &str,
    meta: &RequestMeta,
) -> Result<(), SecondFactorError> {
    check_password(db, account, password).await?;
    let mut tx = db.begin().await?;
    if !super::has_second_factor(&mut *tx, account.id).await? {
        return Err(SecondFactorError::NotEnrolled);
    }
    if !use_code(&mut tx, key, account.id, code, now).await? {
        return Err(SecondFactorError::WrongCode);
    }
    for org in super::break_glass_orgs(&mut *tx, account).await? {
        crate::orgs::store::lock(&mut tx, org.id).await?;
        let others = store::break_glass_admins(&mut *tx, org.id).await?;
        if !others
            .iter()
            .any(|email| !email.eq_ignore_ascii_case(&account.email))
        {
            return Err(SecondFactorError::LastBreakGlassAdmin(org.name));
        }
    }
    store::delete_totp(&mut tx, account.id).await?;
    record(
        &mut tx,
        now,
        account,
        None,
        AuditAction::AccountTotpRemoved,
        meta,
        serde_json::json!({ "method": "totp" }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether `code` is the account's current authenticator code, used now for the first time (a
/// code is spent by its first use, so a replay is refused).
pub async fn use_code(
    tx: &mut Tx,
    key: &TotpKey,
    account: AccountId,
    code: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let row = store::totp(&mut **tx, account)
        .await?
        .filter(|r| r.confirmed_at.is_some());
    Ok(match row {
        Some(row) => match totp::matching_step(&store::open_secret(key, account, &row)?, code, now)
        {
            Some(step) => store::use_totp_step(tx, account, step).await?,
            None => false,
        },
        None => false,
    })
}

/// Checks the code that completes a password sign-in. Success signs the account in (audited).
/// A wrong or replayed code is audited as a failed sign-in. (Break-glass entry into an
/// organization that requires SSO is audited where it happens: `orgs::gate`.)
pub async fn complete_sign_in(
    db: &Db,
    key: &TotpKey,
    config: &crate::Config,
    now: i64,
    account: &Account,
    code: &str,
    meta: &RequestMeta,
) -> Result<(), SecondFactorError> {
    if let Some(block) = accounts::throttle::paused(db, now, account, meta).await? {
        return Err(SecondFactorError::Paused(block.retry_after_secs(now)));
    }
    let mut tx = db.begin().await?;
    if !use_code(&mut tx, key, account.id, code, now).await? {
        let blocks =
            accounts::throttle::count_failure(&mut tx, &config.limits, now, account, meta).await?;
        for block in &blocks {
            super::alert::after_block(&mut tx, config, now, Some(account), block, meta).await?;
        }
        audit::record(
            &mut tx,
            now,
            audit::Event {
                org_id: account.org_id,
                action: AuditAction::AccountSignInFailed,
                actor: &Actor::Anonymous,
                target: Some(Target::account(account.id)),
                meta,
                details: serde_json::json!({ "method": "password", "second_factor": "totp", "reason": "wrong_second_factor", "email": account.email }),
            },
        )
        .await?;
        tx.commit().await?;
        return Err(SecondFactorError::WrongCode);
    }
    accounts::throttle::clear(&mut tx, account).await?;
    accounts::store::touch_sign_in(&mut tx, account.id, now).await?;
    record(
        &mut tx,
        now,
        account,
        account.org_id,
        AuditAction::AccountSignedIn,
        meta,
        serde_json::json!({ "method": "password", "second_factor": "totp" }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn record(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    org_id: Option<crate::ids::OrgId>,
    action: AuditAction,
    meta: &RequestMeta,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id,
            action,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details,
        },
    )
    .await
}
