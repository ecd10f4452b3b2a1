//! Password sign-in: the email and password are checked (throttled, in constant time whether
//! or not the email exists), the organization's policy decides whether a password may be used
//! at all (for its managed accounts), and an account with a second factor must also pass it
//! ([`super::second_factor`]). Success and failure are both audited.

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
/// tells the caller whether the email exists.
pub async fn sign_in_with_password(
    db: &Db,
    now: i64,
    email: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<SignIn, AccountError> {
    let found = match Email::parse(email) {
        Ok(email) => accounts::store::credentials(db.pool(), &email.normalized()).await?,
        Err(_) => None,
    };
    // While password sign-in to the account is paused, the password is not even checked.
    let paused = match &found {
        Some((account, _)) => throttle::paused_until(db.pool(), account.id, now).await?,
        None => None,
    };
    let verified = match &found {
        _ if paused.is_some() => false,
        Some((_, Some(hash))) => password::verify(password, hash).await?,
        // Spend the same time as a real check so timing does not reveal which emails exist.
        _ => {
            password::burn(password).await?;
            false
        }
    };
    let account = found.as_ref().map(|(a, _)| a);
    let outcome = match (account, verified) {
        _ if paused.is_some() => Err(AccountError::SignInPaused(
            paused.map(crate::clock::format_time).unwrap_or_default(),
        )),
        (Some(account), true) if account.status == AccountStatus::Active => {
            admit(db, now, account).await?
        }
        (Some(account), true) if account.status == AccountStatus::Suspended => {
            Err(AccountError::Suspended)
        }
        _ => Err(AccountError::InvalidCredentials),
    };
    record(db, now, email, account, &outcome, meta).await?;
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

/// Audits the outcome in one transaction, counting a wrong password towards the pause and
/// clearing the count on success.
async fn record(
    db: &Db,
    now: i64,
    email: &str,
    account: Option<&Account>,
    outcome: &Result<SignIn, AccountError>,
    meta: &RequestMeta,
) -> Result<(), AccountError> {
    let mut tx = db.begin().await?;
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
            throttle::clear(&mut tx, account.id).await?;
            accounts::store::touch_sign_in(&mut tx, account.id, now).await?;
            (
                Some(account),
                AuditAction::AccountSignedIn,
                account.actor(),
                serde_json::json!({ "method": "password" }),
            )
        }
        Err(err) => {
            if let (Some(account), AccountError::InvalidCredentials) = (account, err) {
                throttle::count_failure(&mut tx, now, account, meta).await?;
            }
            (
                account,
                AuditAction::AccountSignInFailed,
                Actor::Anonymous,
                serde_json::json!({
                    "method": "password",
                    "reason": failure_reason(err),
                    "email": email.trim().chars().take(254).collect::<String>(),
                }),
            )
        }
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
        AccountError::SignInPaused(_) => "sign_in_paused",
        _ => "error",
    }
}
