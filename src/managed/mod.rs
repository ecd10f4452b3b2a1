//! Managed accounts: accounts owned by one organization, on its verified domains, whose
//! password rules, status and deletion its admins control; and the seats they take.

mod actions;
pub mod api;
pub mod csv;
pub mod pages;

mod mails;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::accounts::policy::PasswordPolicy;
use crate::accounts::{self, Account, AccountError, AccountKind, AccountStatus, Email};
use crate::audit::{AuditAction, Target};
use crate::clock::DAY_MS;
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};
use crate::mail::{self, MailError};
use crate::orgs::{self, AdminScope, Org, Role};
use crate::secrets;
use crate::web::error::AppError;

pub use actions::*;

/// Lifetime of an activation link (first password).
pub const ACTIVATION_LINK_MS: i64 = 7 * DAY_MS;
/// Lifetime of a password-reset link.
pub const RESET_LINK_MS: i64 = DAY_MS;

/// What can go wrong with managed accounts, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error(
        "{0} is not a verified domain of this organization: verify it on the Domains page first"
    )]
    DomainNotVerified(String),
    #[error(
        "all {seats} seats are in use ({used} of {seats}): add seats on the billing page (/admin/{slug}/billing) or delete managed accounts that are no longer needed"
    )]
    NoFreeSeats { used: i64, seats: i64, slug: String },
    #[error("no managed account with this id belongs to this organization")]
    NotFound,
    #[error("the password policy is not valid: {0}")]
    InvalidPolicy(String),
    #[error(
        "the organization must keep at least one active admin: make someone else an admin first"
    )]
    LastAdmin,
    #[error("managed accounts cannot do this themselves: {0}")]
    NotAllowedForManaged(&'static str),
    #[error("the role must be \u{201c}admin\u{201d} or \u{201c}member\u{201d}")]
    InvalidRole,
    #[error(
        "single sign-on cannot be required yet: no admin could sign in if the IdP failed. At least one admin who is a Nulab account must set up two-step verification on their account page first; that admin keeps a password sign-in (with the code) for emergencies"
    )]
    NoBreakGlassAdmin,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Org(#[from] orgs::OrgError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How ManagedError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<ManagedError> for AppError {
    fn from(err: ManagedError) -> AppError {
        use ManagedError as E;
        use axum::http::StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Account(inner) => return inner.into(),
            E::Org(inner) => return inner.into(),
            E::Mail(inner) => return inner.into(),
            E::Db(inner) => return inner.into(),
            E::DomainNotVerified(_) => (S::CONFLICT, "domain_not_verified"),
            E::NoFreeSeats { .. } => (S::CONFLICT, "no_free_seats"),
            E::NotFound => (S::NOT_FOUND, "not_found"),
            E::InvalidPolicy(_) => (S::BAD_REQUEST, "invalid_policy"),
            E::LastAdmin => (S::CONFLICT, "last_admin"),
            E::NotAllowedForManaged(_) => (S::FORBIDDEN, "managed_by_org"),
            E::InvalidRole => (S::BAD_REQUEST, "invalid_role"),
            E::NoBreakGlassAdmin => (S::CONFLICT, "no_break_glass_admin"),
        };
        AppError::client(status, code, message)
    }
}

/// A managed account to create.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewManaged {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 1–200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `admin` or `member` (default `member`).
    pub role: Option<Role>,
    /// An initial password the user must change at first sign-in. Without it, the user gets
    /// an activation link by email to choose a first password.
    pub password: Option<String>,
}

/// A managed account with its role, as the admin pages and API show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ManagedAccount {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub email: String,
    pub name: String,
    pub status: AccountStatus,
    pub role: Option<Role>,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub password_set: bool,
    pub must_change_password: bool,
}

/// Rule 4 of the design: takes the org's lock, then refuses when no seat is free. Call it in
/// the transaction that then adds the managed account.
pub async fn claim_seat(tx: &mut Tx, org: &Org) -> Result<(), ManagedError> {
    orgs::store::lock(tx, org.id).await?;
    let orgs::seats::Seats {
        subscribed: seats,
        used,
    } = orgs::seats::of(&mut **tx, org.id).await?;
    if used >= seats {
        return Err(ManagedError::NoFreeSeats {
            used,
            seats,
            slug: org.slug.clone(),
        });
    }
    Ok(())
}

/// Hashes an initial password after checking it against the org's policy (outside any
/// transaction: hashing is slow).
pub async fn prepare_password(
    pool: &sqlx::AnyPool,
    org: OrgId,
    password: Option<&str>,
) -> Result<Option<String>, ManagedError> {
    match password.filter(|p| !p.is_empty()) {
        Some(password) => {
            let policy = crate::accounts::store::policy(pool, org).await?;
            accounts::check_new_password(&policy, password)?;
            Ok(Some(
                accounts::password::hash(password)
                    .await
                    .map_err(AccountError::from)?,
            ))
        }
        None => Ok(None),
    }
}

/// Creates a managed account on a verified domain of the org, within its seats. Without an
/// initial password, the user gets an activation link.
pub async fn create(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    new: &NewManaged,
    password_hash: Option<&str>,
    base_url: &str,
) -> Result<Account, ManagedError> {
    let org = scope.org();
    let email = Email::parse(&new.email)?;
    let name = accounts::check_name(&new.name)?;
    let role = new.role.unwrap_or(Role::Member);
    if !crate::domains::is_email_domain_verified(tx, org.id, email.domain()).await? {
        return Err(ManagedError::DomainNotVerified(email.domain().to_string()));
    }
    claim_seat(tx, org).await?;
    let id = AccountId::new();
    // Its email counts as verified because the org verified the domain.
    let row = accounts::store::NewRow {
        id,
        email: &email,
        name: &name,
        kind: AccountKind::Managed,
        org_id: Some(org.id),
        password_hash,
        email_verified_at: Some(now),
        password_changed_at: password_hash.map(|_| now),
        must_change_password: password_hash.is_some(),
    };
    accounts::store::insert(tx, now, &row).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            ManagedError::Account(AccountError::EmailTaken)
        } else {
            e.into()
        }
    })?;
    orgs::store::insert_membership(tx, org.id, id, role, now).await?;
    // The organization's account takes precedence over unconfirmed sign-ups with the address.
    let claim = accounts::ownership::Claim::ManagedAccount;
    accounts::ownership::release_claims(tx, now, email.as_str(), id, claim, scope.meta()).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::ManagedAccountCreated,
            Target::account(id),
            serde_json::json!({ "email": email.as_str(), "role": role.as_str(), "initial_password": password_hash.is_some() }),
        )
        .await?;
    let account = accounts::store::by_id(&mut **tx, id)
        .await?
        .ok_or(ManagedError::NotFound)?;
    if password_hash.is_none() {
        send_password_link(
            tx,
            now,
            &account,
            org,
            accounts::store::LinkPurpose::Activate,
            base_url,
        )
        .await?;
    } else {
        mail::enqueue(tx, now, &mails::created(org, &account, base_url)).await?;
    }
    Ok(account)
}

/// Issues a single-use link to set a password (activation or reset) and emails it.
pub(super) async fn send_password_link(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    org: &Org,
    purpose: accounts::store::LinkPurpose,
    base_url: &str,
) -> Result<(), ManagedError> {
    let token = secrets::new_token("");
    let email = Email::parse(&account.email)?;
    let lifetime = if purpose == accounts::store::LinkPurpose::Activate {
        ACTIVATION_LINK_MS
    } else {
        RESET_LINK_MS
    };
    accounts::store::expire_tokens(tx, account.id, accounts::store::LinkPurpose::Activate, now)
        .await?;
    accounts::store::expire_tokens(
        tx,
        account.id,
        accounts::store::LinkPurpose::ResetPassword,
        now,
    )
    .await?;
    accounts::store::insert_token(
        tx,
        &secrets::hash_token(&token),
        account.id,
        purpose,
        &email,
        now,
        now + lifetime,
    )
    .await?;
    let url = format!("{base_url}/password/set?token={token}");
    let mail = match purpose {
        accounts::store::LinkPurpose::Activate => mails::activation(org, account, url),
        _ => mails::password_reset(org, account, url),
    };
    mail::enqueue(tx, now, &mail).await?;
    Ok(())
}

/// Replaces the org's password policy; it applies from the next password set.
pub async fn set_policy(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    policy: &PasswordPolicy,
) -> Result<(), ManagedError> {
    policy.validate().map_err(ManagedError::InvalidPolicy)?;
    let before = crate::accounts::store::policy(&mut **tx, scope.org().id).await?;
    if &before == policy {
        return Ok(());
    }
    if before.password_sign_in && !policy.password_sign_in {
        // "SSO required" must never lock the organization out when its IdP fails.
        orgs::store::lock(tx, scope.org().id).await?;
        if crate::sign_in::break_glass_admins(&mut **tx, scope.org().id)
            .await?
            .is_empty()
        {
            return Err(ManagedError::NoBreakGlassAdmin);
        }
    }
    crate::accounts::store::set_policy(tx, scope.org().id, policy, now).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::PasswordPolicyChanged,
            Target::org(scope.org().id),
            serde_json::json!({ "from": before, "to": policy }),
        )
        .await?;
    Ok(())
}

/// The view of a managed account the admin pages and API show.
pub async fn view(
    tx: &mut Tx,
    org: OrgId,
    account: &Account,
) -> Result<ManagedAccount, ManagedError> {
    let role = orgs::store::role_of(&mut **tx, org, account.id).await?;
    let password_set = accounts::store::password_hash(&mut **tx, account.id)
        .await?
        .is_some();
    Ok(ManagedAccount {
        id: account.id,
        email: account.email.clone(),
        name: account.name.clone(),
        status: account.status,
        role,
        created_at: account.created_at,
        last_sign_in_at: account.last_sign_in_at,
        password_set,
        must_change_password: account.must_change_password,
    })
}
