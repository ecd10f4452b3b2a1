//! Who owns an email address. Only a confirmed address is claimed: a sign-up or an email change
//! names an address without taking it, so any number of unconfirmed sign-ups (and pending
//! changes) may name one address and none blocks anyone. The first account to confirm it, or an
//! organization creating a managed account with it (or migrating into one), takes it; every
//! unconfirmed account naming it then loses its claim ([`release_claims`]): the address no longer
//! finds it, its confirmation links die and its sign-ins end (like Google's and Atlassian's
//! "conflicting" unverified accounts, which give way to the managed one). An email change keeps
//! the confirmed address until the new one is confirmed, then tells the old address, with a
//! link that restores it ([`report_email_change`]).

use super::store::{self, LinkPurpose};
use super::{Account, AccountError, AccountKind, AccountStatus, Email, password};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::db::{Db, Tx};
use crate::mail::{self, Mail, MailAction, MailKind};
use crate::secrets;

/// How long the old address may report an email change.
pub const REPORT_LINK_MS: i64 = 14 * DAY_MS;

/// Why an address was claimed (the `reason` of `account.email_claim_lost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Another account confirmed it (a sign-up, an email change, the operator's vouching).
    ConfirmedByAnother,
    /// An organization created a managed account with it, or gave it to one.
    ManagedAccount,
    /// An account with it was migrated into a managed account.
    Migrated,
    /// The old address of a reported email change was restored.
    Restored,
}

impl Claim {
    fn as_str(self) -> &'static str {
        match self {
            Claim::ConfirmedByAnother => "confirmed_by_another_account",
            Claim::ManagedAccount => "managed_account",
            Claim::Migrated => "migrated",
            Claim::Restored => "restored_after_report",
        }
    }
}

/// `holder` now holds `email`: every other unconfirmed Nulab account naming it loses its claim,
/// its links to confirm it die and its sign-ins end, each audited. Returns how many lost.
pub async fn release_claims(
    tx: &mut Tx,
    now: i64,
    email: &str,
    holder: crate::ids::AccountId,
    why: Claim,
    meta: &RequestMeta,
) -> Result<usize, sqlx::Error> {
    let released = store::release_unconfirmed(tx, &email.to_lowercase(), holder, now).await?;
    for id in &released {
        store::expire_tokens(tx, *id, LinkPurpose::VerifyEmail, now).await?;
        super::end_every_sign_in(tx, *id, now).await?;
        audit::record(
            tx,
            now,
            audit::Event {
                org_id: None,
                action: AuditAction::AccountEmailClaimLost,
                actor: &Actor::System("accounts"),
                target: Some(Target::account(*id)),
                meta,
                details: serde_json::json!({
                    "email": email,
                    "reason": why.as_str(),
                    "claimed_by": holder.to_string(),
                }),
            },
        )
        .await?;
    }
    Ok(released.len())
}

/// What a confirmation link confirmed.
pub struct Confirmed {
    pub account: Account,
    /// For an email change: the address it replaced.
    pub changed_from: Option<String>,
}

/// Consumes a confirmation link: a sign-up's address, or the new address of an email change.
/// Expired, used or unknown links, and links of an account that lost its claim, change nothing;
/// an address another account confirmed first is `EmailClaimed`.
pub async fn verify_email(
    tx: &mut Tx,
    now: i64,
    token: &str,
    meta: &RequestMeta,
    base_url: &str,
) -> Result<Confirmed, AccountError> {
    let hash = secrets::hash_token(token.trim());
    let mut found = None;
    for purpose in [LinkPurpose::VerifyEmail, LinkPurpose::ChangeEmail] {
        if let Some(row) = store::token(tx, &hash, purpose).await? {
            found = Some((row, purpose));
            break;
        }
    }
    let (row, purpose) = found.ok_or(AccountError::LinkInvalid)?;
    if row.used_at.is_some() {
        return Err(AccountError::LinkUsed);
    }
    if row.expires_at <= now {
        return Err(AccountError::LinkExpired);
    }
    let account = store::by_id(&mut **tx, row.account_id)
        .await?
        .filter(|a| a.status != AccountStatus::Deleted)
        .ok_or(AccountError::LinkInvalid)?;
    let email = Email::parse(&row.email)?;
    store::use_token(tx, &row.token_hash, now).await?;
    let changed_from = if purpose == LinkPurpose::VerifyEmail {
        confirm_sign_up(tx, now, &account, &row.email).await?;
        None
    } else {
        confirm_change(tx, now, &account, &email, base_url).await?;
        Some(account.email.clone())
    };
    release_claims(
        tx,
        now,
        email.as_str(),
        account.id,
        Claim::ConfirmedByAnother,
        meta,
    )
    .await?;
    let (action, details) = match &changed_from {
        None => (
            AuditAction::AccountEmailVerified,
            serde_json::json!({ "email": email.as_str() }),
        ),
        Some(from) => (
            AuditAction::AccountEmailChanged,
            serde_json::json!({ "from": from, "to": email.as_str() }),
        ),
    };
    record(tx, now, &account, action, meta, details).await?;
    let account = store::by_id(&mut **tx, account.id)
        .await?
        .ok_or(AccountError::LinkInvalid)?;
    Ok(Confirmed {
        account,
        changed_from,
    })
}

/// A unique violation of a confirmed address: another account confirmed it first.
fn claimed(e: sqlx::Error) -> AccountError {
    if crate::db::is_unique_violation(&e) {
        AccountError::EmailClaimed
    } else {
        e.into()
    }
}

/// A sign-up's address is confirmed, unless the account no longer names it or lost its claim.
async fn confirm_sign_up(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    linked: &str,
) -> Result<(), AccountError> {
    // A link for an address the account no longer names proves nothing.
    if !account.email.eq_ignore_ascii_case(linked) {
        return Err(AccountError::LinkInvalid);
    }
    if !store::set_email_verified(tx, account.id, now)
        .await
        .map_err(claimed)?
    {
        return Err(AccountError::LinkInvalid);
    }
    Ok(())
}

/// The new address of a Nulab account's email change becomes its (confirmed) address, and the
/// old address is told.
async fn confirm_change(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    email: &Email,
    base_url: &str,
) -> Result<(), AccountError> {
    if account.kind != AccountKind::Nulab {
        return Err(AccountError::LinkInvalid);
    }
    store::set_email(tx, account.id, email, Some(now), now)
        .await
        .map_err(claimed)?;
    store::expire_tokens(tx, account.id, LinkPurpose::ChangeEmail, now).await?;
    tell_old_address(tx, now, account, email, base_url).await
}

async fn record(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    action: AuditAction,
    meta: &RequestMeta,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: None,
            action,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details,
        },
    )
    .await
}

/// The old address hears of the change, with a link that restores it.
async fn tell_old_address(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    new: &Email,
    base_url: &str,
) -> Result<(), AccountError> {
    let old = Email::parse(&account.email)?;
    let token = secrets::new_token("");
    store::expire_tokens(tx, account.id, LinkPurpose::ReportEmailChange, now).await?;
    let hash = secrets::hash_token(&token);
    let (purpose, until) = (LinkPurpose::ReportEmailChange, now + REPORT_LINK_MS);
    store::insert_token(tx, &hash, account.id, purpose, &old, now, until).await?;
    let mail = Mail {
        kind: MailKind::AccountEmailChanged,
        to: old.to_string(),
        subject: "The email address of your nulab-pass account was changed".to_string(),
        paragraphs: vec![
            format!("Hello {},", account.name),
            format!(
                "The email address of your nulab-pass account was changed from {old} to {new} on {} (UTC). Sign-in and every notice now use {new}.",
                crate::clock::format_time(now)
            ),
            "If you made this change, there is nothing to do. If you did not, report it: we restore this address, you choose a new password, and every session of the account ends.".to_string(),
        ],
        action: Some(MailAction {
            label: "I did not make this change".to_string(),
            url: format!("{base_url}/account/email-change-report?token={token}"),
        }),
        closing: vec!["The link works once and expires in 14 days.".to_string()],
    };
    mail::enqueue(tx, now, &mail).await?;
    Ok(())
}

/// A Nulab account asks to change its email: after its password, a confirmation link goes to the
/// new address. Nothing else changes until it is followed: the account keeps (and signs in with)
/// its confirmed address. Managed accounts cannot change their own email: their admins do.
pub async fn request_email_change(
    db: &Db,
    now: i64,
    account: &Account,
    current_password: &str,
    new_email: &str,
    meta: &RequestMeta,
    base_url: &str,
) -> Result<String, AccountError> {
    if account.kind == AccountKind::Managed {
        return Err(AccountError::ManagedByOrg("change the email address"));
    }
    let email = Email::parse(new_email)?;
    let stored = store::password_hash(db.pool(), account.id).await?;
    let ok = match &stored {
        Some(hash) => password::verify(current_password, hash).await?,
        None => false,
    };
    if !ok {
        return Err(AccountError::WrongCurrentPassword);
    }
    if email.normalized() == account.email.to_lowercase() {
        return Err(AccountError::EmailUnchanged);
    }
    let mut tx = db.begin().await?;
    if store::claimed_by_other(&mut *tx, &email.normalized(), Some(account.id)).await? {
        return Err(AccountError::EmailTaken);
    }
    let token = secrets::new_token("");
    store::expire_tokens(&mut tx, account.id, LinkPurpose::ChangeEmail, now).await?;
    let hash = secrets::hash_token(&token);
    let (purpose, until) = (LinkPurpose::ChangeEmail, now + super::VERIFY_LINK_MS);
    store::insert_token(&mut tx, &hash, account.id, purpose, &email, now, until).await?;
    let mail = Mail {
        kind: MailKind::AccountVerifyEmail,
        to: email.to_string(),
        subject: "Confirm your new email address for nulab-pass".to_string(),
        paragraphs: vec![
            format!("Hello {},", account.name),
            format!(
                "Please confirm that this is your new email address. Until you do, your account keeps {}.",
                account.email
            ),
        ],
        action: Some(MailAction {
            label: "Confirm my email".to_string(),
            url: format!("{base_url}/verify-email?token={token}"),
        }),
        closing: vec![
            "The link works once and expires in 48 hours. If you did not ask for this, ignore this email.".to_string(),
        ],
    };
    mail::enqueue(&mut tx, now, &mail).await?;
    let details = serde_json::json!({ "from": account.email, "to": email.as_str() });
    let action = AuditAction::AccountEmailChangeRequested;
    record(&mut tx, now, account, action, meta, details).await?;
    tx.commit().await?;
    Ok(email.to_string())
}

/// A live report link and the account it restores.
pub struct ReportLink {
    pub account: Account,
    /// The address the report restores.
    pub restores: String,
    token_hash: String,
}

/// Finds the live report link for `token`: unused, unexpired, and the account still has the
/// address the change gave it (not the one the link restores).
pub async fn report_link(db: &Db, now: i64, token: &str) -> Result<ReportLink, AccountError> {
    let hash = secrets::hash_token(token.trim());
    let mut tx = db.begin().await?;
    let row = store::token(&mut tx, &hash, LinkPurpose::ReportEmailChange).await?;
    tx.rollback().await?;
    let row = row.ok_or(AccountError::LinkInvalid)?;
    if row.used_at.is_some() {
        return Err(AccountError::LinkUsed);
    }
    if row.expires_at <= now {
        return Err(AccountError::LinkExpired);
    }
    let account = store::by_id(db.pool(), row.account_id)
        .await?
        .filter(|a| a.status == AccountStatus::Active && a.kind == AccountKind::Nulab)
        .ok_or(AccountError::LinkInvalid)?;
    if account.email.eq_ignore_ascii_case(&row.email) {
        return Err(AccountError::LinkUsed);
    }
    Ok(ReportLink {
        account,
        restores: row.email,
        token_hash: row.token_hash,
    })
}

/// The old address reports an email change it did not make: the address is restored (and
/// confirmed: the link proves it), the new password replaces the one whoever changed the email
/// knew, and every sign-in of the account ends. Once only.
pub async fn report_email_change(
    db: &Db,
    now: i64,
    token: &str,
    new_password: &str,
    meta: &RequestMeta,
) -> Result<Account, AccountError> {
    let link = report_link(db, now, token).await?;
    super::check_password(new_password)?;
    let hash = password::hash(new_password).await?;
    let restores = Email::parse(&link.restores)?;
    let account = &link.account;
    let mut tx = db.begin().await?;
    store::use_token(&mut tx, &link.token_hash, now)
        .await
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => AccountError::LinkUsed,
            other => other.into(),
        })?;
    store::set_email(&mut tx, account.id, &restores, Some(now), now)
        .await
        .map_err(claimed)?;
    store::set_password(&mut tx, account.id, &hash, now).await?;
    store::expire_tokens(&mut tx, account.id, LinkPurpose::ChangeEmail, now).await?;
    super::end_every_sign_in(&mut tx, account.id, now).await?;
    release_claims(
        &mut tx,
        now,
        restores.as_str(),
        account.id,
        Claim::Restored,
        meta,
    )
    .await?;
    let details = serde_json::json!({ "from": account.email, "restored": restores.as_str() });
    let action = AuditAction::AccountEmailChangeReported;
    record(&mut tx, now, account, action, meta, details).await?;
    let updated = store::by_id(&mut *tx, account.id)
        .await?
        .ok_or(AccountError::LinkInvalid)?;
    tx.commit().await?;
    Ok(updated)
}
