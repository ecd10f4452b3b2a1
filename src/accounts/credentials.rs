//! Changing credentials: setting a password from an emailed link (activation or reset) and
//! changing one's own password (a Nulab account's email changes in `ownership`).

use super::store::{self, LinkPurpose};
use super::{Account, AccountError, AccountKind, AccountStatus, password};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::db::Db;
use crate::secrets;

/// An activation or reset link that is still usable, and its account.
pub struct PasswordLink {
    pub account: Account,
    pub purpose: LinkPurpose,
    token_hash: String,
}

/// Finds the live password link for `token`.
pub async fn password_link(db: &Db, now: i64, token: &str) -> Result<PasswordLink, AccountError> {
    let hash = secrets::hash_token(token.trim());
    let mut tx = db.begin().await?;
    let mut found = None;
    for purpose in [LinkPurpose::Activate, LinkPurpose::ResetPassword] {
        if let Some(row) = store::token(&mut tx, &hash, purpose).await? {
            found = Some((row, purpose));
            break;
        }
    }
    tx.rollback().await?;
    let (row, purpose) = found.ok_or(AccountError::LinkInvalid)?;
    if row.used_at.is_some() {
        return Err(AccountError::LinkUsed);
    }
    if row.expires_at <= now {
        return Err(AccountError::LinkExpired);
    }
    let account = store::by_id(db.pool(), row.account_id)
        .await?
        .ok_or(AccountError::LinkInvalid)?;
    if account.status == AccountStatus::Deleted
        || account.email.to_lowercase() != row.email.to_lowercase()
    {
        return Err(AccountError::LinkInvalid);
    }
    if account.status == AccountStatus::Suspended {
        return Err(AccountError::Suspended);
    }
    Ok(PasswordLink {
        account,
        purpose,
        token_hash: row.token_hash,
    })
}

/// Sets the password from a link: checks the policy, uses the link up (once, even under
/// concurrent submissions), ends the account's other sessions and audits it.
pub async fn set_password_with_link(
    db: &Db,
    now: i64,
    token: &str,
    new_password: &str,
    meta: &RequestMeta,
) -> Result<Account, AccountError> {
    let link = password_link(db, now, token).await?;
    let policy = super::policy_for(db.pool(), &link.account).await?;
    super::check_new_password(&policy, new_password)?;
    let hash = password::hash(new_password).await?;
    let mut tx = db.begin().await?;
    store::use_token(&mut tx, &link.token_hash, now)
        .await
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => AccountError::LinkUsed,
            other => other.into(),
        })?;
    store::set_password(&mut tx, link.account.id, &hash, now).await?;
    super::end_every_sign_in(&mut tx, link.account.id, now).await?;
    let action = if link.purpose == LinkPurpose::Activate {
        AuditAction::ManagedAccountActivated
    } else {
        AuditAction::AccountPasswordChanged
    };
    audit::record(
        &mut tx,
        now,
        audit::Event {
            org_id: link.account.org_id,
            action,
            actor: &link.account.actor(),
            target: Some(Target::account(link.account.id)),
            meta,
            details: serde_json::json!({ "via": link.purpose.as_str() }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Account {
        must_change_password: false,
        password_changed_at: Some(now),
        ..link.account
    })
}

/// Changes the signed-in account's own password; every session of the account ends (the
/// caller signs the current browser in again).
pub async fn change_password(
    db: &Db,
    now: i64,
    account: &Account,
    current: &str,
    new_password: &str,
    meta: &RequestMeta,
) -> Result<(), AccountError> {
    let policy = super::policy_for(db.pool(), account).await?;
    if account.kind == AccountKind::Managed && !policy.password_sign_in {
        return Err(AccountError::PasswordSignInDisabled);
    }
    let stored = store::password_hash(db.pool(), account.id).await?;
    let current_ok = match &stored {
        Some(hash) => password::verify(current, hash).await?,
        None => false,
    };
    if !current_ok {
        return Err(AccountError::WrongCurrentPassword);
    }
    if current == new_password {
        return Err(AccountError::WeakPassword(vec![
            "it must differ from the current password".to_string(),
        ]));
    }
    super::check_new_password(&policy, new_password)?;
    let hash = password::hash(new_password).await?;
    let mut tx = db.begin().await?;
    store::set_password(&mut tx, account.id, &hash, now).await?;
    super::end_every_sign_in(&mut tx, account.id, now).await?;
    audit::record(
        &mut tx,
        now,
        audit::Event {
            org_id: account.org_id,
            action: AuditAction::AccountPasswordChanged,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "via": "account_page" }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
