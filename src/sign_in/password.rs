//! Password sign-in: the email and password are checked (throttled, in constant time whether
//! or not the email exists), the organization's policy decides whether a password may be used
//! at all (for its managed accounts), and an account with a second factor must also pass it
//! ([`super::second_factor`]). Success and failure are both audited.

use crate::Config;
use crate::accounts::{
    self, Account, AccountError, AccountKind, AccountStatus, Email, password, throttle,
};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Db;

/// A successful password sign-in.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub account: Account,
    /// The password is a temporary one or too old: the user must set a new one first.
    pub must_change_password: bool,
    /// The account has a second factor: the sign-in completes only after its code
    /// (`sign_in::second_factor::complete_sign_in`).
    pub second_factor_required: bool,
}

/// Checks an email and password. Success and failure are both audited; on failure nothing
/// tells the caller whether the email exists. The attempt is counted (per email address and
/// per client address) before the password is checked; while either is paused the password is
/// not checked at all.
pub async fn sign_in_with_password(
    db: &Db,
    config: &Config,
    now: i64,
    email: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<SignIn, AccountError> {
    let found = match Email::parse(email) {
        Ok(email) => accounts::store::credentials(db.pool(), &email.normalized()).await?,
        Err(_) => None,
    };
    let account = found.as_ref().map(|(a, _)| a);
    let typed = email.trim();
    let block = throttle::take_attempt(db, &config.limits, now, typed, account, meta).await?;
    if let Some(block) = block {
        let refused = Err(AccountError::of_block(&block, now));
        // Only the attempt that starts a pause is audited (with the pause itself); the ones
        // refused during it change nothing.
        if block.started_now {
            record(db, now, email, account, &refused, false, meta).await?;
            let mut tx = db.begin().await?;
            super::alert::after_block(&mut tx, config, now, account, &block, meta).await?;
            tx.commit().await?;
        }
        return refused;
    }
    let verified = match &found {
        Some((_, Some(hash))) => password::verify(password, hash).await?,
        // Spend the same time as a real check so timing does not reveal which emails exist.
        _ => {
            password::burn(password).await?;
            false
        }
    };
    let outcome = match (account, verified) {
        (Some(account), true) if account.status == AccountStatus::Active => {
            admit(db, now, account).await?
        }
        (Some(account), true) if account.status == AccountStatus::Suspended => {
            Err(AccountError::Suspended)
        }
        _ => Err(AccountError::InvalidCredentials),
    };
    record(db, now, email, account, &outcome, verified, meta).await?;
    outcome
}

/// The account's password is right and it is active: may it sign in with a password, and does
/// it need its second factor?
async fn admit(
    db: &Db,
    now: i64,
    account: &Account,
) -> Result<Result<SignIn, AccountError>, AccountError> {
    let policy = accounts::policy_for(db.pool(), account).await?;
    if account.kind == AccountKind::Managed && !policy.password_sign_in {
        return Ok(Err(AccountError::PasswordSignInDisabled));
    }
    // An organization's "SSO required" never refuses a Nulab account its own sign-in: it gates
    // only that organization's admin area (`orgs::gate`).
    let second_factor = super::has_second_factor(db.pool(), account.id).await?;
    Ok(Ok(SignIn {
        must_change_password: account.must_change_password
            || policy.is_expired(account.password_changed_at, now),
        account: account.clone(),
        second_factor_required: second_factor,
    }))
}

/// Audits the outcome in one transaction; a right password takes its attempt back from the
/// counts (and ends the account's).
async fn record(
    db: &Db,
    now: i64,
    email: &str,
    account: Option<&Account>,
    outcome: &Result<SignIn, AccountError>,
    verified: bool,
    meta: &RequestMeta,
) -> Result<(), AccountError> {
    let mut tx = db.begin().await?;
    if verified {
        let complete = !matches!(
            outcome,
            Ok(SignIn {
                second_factor_required: true,
                ..
            })
        );
        throttle::succeeded(&mut tx, email.trim(), account, meta, complete).await?;
    }
    let (account, action, actor, details) = match outcome {
        // Not signed in yet: the second factor completes (and audits) the sign-in.
        Ok(SignIn {
            account,
            second_factor_required: true,
            ..
        }) => (
            Some(account),
            AuditAction::AccountPasswordVerified,
            account.actor(),
            serde_json::json!({ "method": "password", "second_factor": "totp" }),
        ),
        Ok(SignIn { account, .. }) => {
            accounts::store::touch_sign_in(&mut tx, account.id, now).await?;
            (
                Some(account),
                AuditAction::AccountSignedIn,
                account.actor(),
                serde_json::json!({ "method": "password" }),
            )
        }
        Err(err) => (
            account,
            AuditAction::AccountSignInFailed,
            Actor::Anonymous,
            serde_json::json!({
                "method": "password",
                "reason": failure_reason(err),
                "email": email.trim().chars().take(254).collect::<String>(),
            }),
        ),
    };
    audit::record(
        &mut tx,
        now,
        audit::Event {
            org_id: account.and_then(|a| a.org_id),
            action,
            actor: &actor,
            target: account.map(|a| Target::account(a.id)),
            meta,
            details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Why a password sign-in failed, as recorded in the audit event.
fn failure_reason(err: &AccountError) -> &'static str {
    match err {
        AccountError::Suspended => "account_suspended",
        AccountError::InvalidCredentials => "invalid_credentials",
        AccountError::PasswordSignInDisabled => "password_sign_in_disabled",
        AccountError::SignInPaused { .. } => "sign_in_paused",
        AccountError::RateLimited(_) => "rate_limited",
        _ => "error",
    }
}
