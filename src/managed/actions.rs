//! What admins do to one managed account: look it up, suspend, reactivate, sign out
//! everywhere, reset its password, change it, delete it. Each ends the account's sign-ins where
//! the change requires it, and keeps at least one admin.

use super::*;
use crate::api_tokens::holders;

/// The managed account `id` of this org, with its role; deleted ones are not found.
pub async fn get(tx: &mut Tx, org: OrgId, id: AccountId) -> Result<Account, ManagedError> {
    match accounts::store::by_id(&mut **tx, id).await? {
        Some(a)
            if a.kind == AccountKind::Managed
                && a.org_id == Some(org)
                && a.status != AccountStatus::Deleted =>
        {
            Ok(a)
        }
        _ => Err(ManagedError::NotFound),
    }
}

/// Refuses to take away the org's last active admin.
pub(super) async fn keep_an_admin(
    tx: &mut Tx,
    org: OrgId,
    id: AccountId,
) -> Result<(), ManagedError> {
    orgs::store::lock(tx, org).await?;
    let is_admin = orgs::store::role_of(&mut **tx, org, id).await? == Some(Role::Admin);
    if is_admin && orgs::store::count_admins(&mut **tx, org).await? <= 1 {
        return Err(ManagedError::LastAdmin);
    }
    Ok(())
}

/// The API tokens the account created die with its rights (a managed account belongs to this
/// organization only).
async fn revoke_tokens(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
    reason: holders::Reason,
) -> Result<usize, sqlx::Error> {
    let by = holders::ChangedBy {
        actor: scope.actor(),
        meta: scope.meta(),
    };
    holders::revoke_held_by(tx, now, id, None, reason, by).await
}

/// Suspends: the account cannot sign in by any means, and its sessions end now.
pub async fn suspend(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
) -> Result<Account, ManagedError> {
    let account = get(tx, scope.org().id, id).await?;
    if account.status == AccountStatus::Suspended {
        return Ok(account);
    }
    keep_an_admin(tx, scope.org().id, id).await?;
    store::set_status(tx, id, AccountStatus::Suspended, now).await?;
    let ended = crate::accounts::end_every_sign_in(tx, id, now).await?;
    revoke_tokens(tx, now, scope, id, holders::Reason::Suspended).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountSuspended,
            Target::account(id),
            serde_json::json!({ "email": account.email, "sessions_ended": ended }),
        )
        .await?;
    Ok(Account {
        status: AccountStatus::Suspended,
        ..account
    })
}

/// Lets a suspended account sign in again.
pub async fn reactivate(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
) -> Result<Account, ManagedError> {
    let account = get(tx, scope.org().id, id).await?;
    if account.status == AccountStatus::Active {
        return Ok(account);
    }
    store::set_status(tx, id, AccountStatus::Active, now).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountReactivated,
            Target::account(id),
            serde_json::json!({ "email": account.email }),
        )
        .await?;
    Ok(Account {
        status: AccountStatus::Active,
        ..account
    })
}

/// Ends every session of the account.
pub async fn sign_out_everywhere(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
) -> Result<u64, ManagedError> {
    let account = get(tx, scope.org().id, id).await?;
    let ended = crate::accounts::end_every_sign_in(tx, id, now).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountSignedOut,
            Target::account(id),
            serde_json::json!({ "email": account.email, "sessions_ended": ended }),
        )
        .await?;
    Ok(ended)
}

/// Emails a password-reset link; with `force_change`, sessions end and the current password
/// must be replaced at the next sign-in.
pub async fn reset_password(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
    force_change: bool,
    base_url: &str,
) -> Result<(), ManagedError> {
    let account = get(tx, scope.org().id, id).await?;
    send_password_link(
        tx,
        now,
        &account,
        scope.org(),
        accounts::store::LinkPurpose::ResetPassword,
        base_url,
    )
    .await?;
    if force_change {
        store::force_password_change(tx, id, now).await?;
        crate::accounts::end_every_sign_in(tx, id, now).await?;
    }
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountPasswordReset,
            Target::account(id),
            serde_json::json!({ "email": account.email, "force_change": force_change }),
        )
        .await?;
    Ok(())
}

/// Changes to a managed account; absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    /// Another address on a verified domain of the organization.
    pub email: Option<String>,
}

/// Changes name, role or email (email only to a verified domain of the org).
pub async fn update(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
    changes: &ManagedChanges,
) -> Result<Account, ManagedError> {
    let org = scope.org().id;
    let account = get(tx, org, id).await?;
    if let Some(name) = &changes.name {
        let name = accounts::check_name(name)?;
        if name != account.name {
            accounts::store::set_name(tx, id, &name, now).await?;
            scope
                .audit(
                    tx,
                    now,
                    AuditAction::ManagedAccountRenamed,
                    Target::account(id),
                    serde_json::json!({ "from": account.name, "to": name }),
                )
                .await?;
        }
    }
    if let Some(raw) = &changes.email {
        let email = Email::parse(raw)?;
        if email.normalized() != account.email.to_lowercase() {
            if !crate::domains::is_email_domain_verified(tx, org, email.domain()).await? {
                return Err(ManagedError::DomainNotVerified(email.domain().to_string()));
            }
            accounts::store::set_email(tx, id, &email, Some(now), now)
                .await
                .map_err(|e| {
                    if crate::db::is_unique_violation(&e) {
                        ManagedError::Account(AccountError::EmailTaken)
                    } else {
                        e.into()
                    }
                })?;
            let claim = accounts::ownership::Claim::ManagedAccount;
            accounts::ownership::release_claims(tx, now, email.as_str(), id, claim, scope.meta())
                .await?;
            scope
                .audit(
                    tx,
                    now,
                    AuditAction::ManagedAccountEmailChanged,
                    Target::account(id),
                    serde_json::json!({ "from": account.email, "to": email.as_str() }),
                )
                .await?;
        }
    }
    if let Some(role) = changes.role {
        orgs::change_role(tx, now, scope, id, role).await?;
    }
    accounts::store::by_id(&mut **tx, id)
        .await?
        .ok_or(ManagedError::NotFound)
}

/// Deletes: the account can never sign in again, its seat is freed, its id stays as a
/// tombstone, and its email may be used by a new account (with a new id).
pub async fn delete(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: AccountId,
) -> Result<(), ManagedError> {
    let account = get(tx, scope.org().id, id).await?;
    keep_an_admin(tx, scope.org().id, id).await?;
    crate::accounts::end_every_sign_in(tx, id, now).await?;
    store::tombstone(tx, id, now).await?;
    revoke_tokens(tx, now, scope, id, holders::Reason::Deleted).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountDeleted,
            Target::account(id),
            serde_json::json!({ "email": account.email }),
        )
        .await?;
    Ok(())
}
