//! Organizations: creation, members and roles. Changes go through an [`AdminScope`], which only
//! the admin extractors (a signed-in admin, an org API token) and the operator CLI can make.

pub mod api;
pub mod extract;
pub mod gate;
pub mod invitations;
pub mod pages;
pub mod seats;
pub mod store;

use serde::Serialize;

use crate::accounts::{self, Account, AccountKind, AccountStatus, Email};
use crate::api_tokens::holders;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};
use crate::paging::Page;
use crate::web::error::AppError;

/// The "organization ID" users type: 3–32 lowercase letters, digits and hyphens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Validates a slug; surrounding spaces are ignored and letters are lowercased.
    pub fn parse(raw: &str) -> Result<OrgSlug, OrgError> {
        let slug = raw.trim().to_ascii_lowercase();
        let ok = (3..=32).contains(&slug.len())
            && slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !slug.starts_with('-')
            && !slug.ends_with('-');
        if ok {
            Ok(OrgSlug(slug))
        } else {
            Err(OrgError::InvalidSlug(raw.trim().chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organization.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Org {
    #[schema(value_type = String)]
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    /// Subscribed seats; each managed account takes one.
    pub seats: i64,
    pub created_at: i64,
}

/// A member's role in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// One member of an organization, as lists show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub email: String,
    pub name: String,
    pub kind: AccountKind,
    pub role: Role,
    pub status: AccountStatus,
    pub last_sign_in_at: Option<i64>,
    pub joined_at: i64,
}

/// What can go wrong with organizations, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(
        "\u{201c}{0}\u{201d} is not a valid organization ID: use 3 to 32 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
    )]
    InvalidSlug(String),
    #[error("the organization ID \u{201c}{0}\u{201d} is taken; choose another")]
    SlugTaken(String),
    #[error("an organization name is required (at most 200 characters)")]
    InvalidName,
    #[error("no account uses the email {0}; the person must sign up first")]
    NoSuchAccount(String),
    #[error(
        "{0} has not confirmed their email address yet; ask them to follow the link in the confirmation email"
    )]
    EmailNotVerified(String),
    #[error("{0} is already a member of this organization")]
    AlreadyMember(String),
    #[error("{0} is a managed account of another organization and cannot join this one")]
    ManagedElsewhere(String),
    #[error("the account {0} is suspended")]
    AccountSuspended(String),
    #[error("that account is not a member of this organization")]
    NotAMember,
    #[error("the organization must keep at least one admin: make someone else an admin first")]
    LastAdmin,
    #[error(
        "a managed account cannot leave its organization: its admins control it (an admin can delete it instead)"
    )]
    ManagedCannotLeave,
    #[error("confirm your email address before creating an organization")]
    CreatorNotVerified,
    #[error(
        "a managed account belongs to its organization and cannot create another one; sign up with a personal Nulab account to do that"
    )]
    ManagedCreator,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How OrgError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<OrgError> for AppError {
    fn from(err: OrgError) -> AppError {
        use axum::http::StatusCode as S;
        let err = match err {
            OrgError::Account(inner) => return inner.into(),
            OrgError::Db(e) => return AppError::Internal(e.into()),
            other => other,
        };
        let (status, code) = match &err {
            OrgError::InvalidSlug(_) => (S::BAD_REQUEST, "invalid_slug"),
            OrgError::SlugTaken(_) => (S::CONFLICT, "slug_taken"),
            OrgError::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            OrgError::NoSuchAccount(_) => (S::NOT_FOUND, "account_not_found"),
            OrgError::EmailNotVerified(_) => (S::CONFLICT, "email_not_verified"),
            OrgError::AlreadyMember(_) => (S::CONFLICT, "already_member"),
            OrgError::ManagedElsewhere(_) => (S::CONFLICT, "managed_elsewhere"),
            OrgError::AccountSuspended(_) => (S::CONFLICT, "account_suspended"),
            OrgError::NotAMember => (S::NOT_FOUND, "not_a_member"),
            OrgError::LastAdmin => (S::CONFLICT, "last_admin"),
            OrgError::ManagedCannotLeave => (S::CONFLICT, "managed_cannot_leave"),
            OrgError::CreatorNotVerified => (S::FORBIDDEN, "email_not_verified"),
            OrgError::ManagedCreator => (S::FORBIDDEN, "managed_account"),
            OrgError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            OrgError::Account(_) | OrgError::Db(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        AppError::client(status, code, err.to_string())
    }
}

/// The right to administer one organization, held by a validated admin, API token or operator.
#[derive(Clone, Debug)]
pub struct AdminScope {
    org: Org,
    actor: Actor,
    meta: RequestMeta,
}

impl AdminScope {
    /// Only the admin extractors and the operator CLI call this, after checking the right.
    pub(crate) fn grant(org: Org, actor: Actor, meta: RequestMeta) -> Self {
        AdminScope { org, actor, meta }
    }
    /// The operator's scope: someone with shell access to the server (the CLI, tests).
    pub fn operator(org: Org) -> Self {
        Self::grant(org, Actor::Operator, RequestMeta::default())
    }
    pub fn org(&self) -> &Org {
        &self.org
    }
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// Records an event about this org, by this scope's actor.
    pub async fn audit(
        &self,
        tx: &mut Tx,
        now: i64,
        action: AuditAction,
        target: Target,
        details: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        audit::record(
            tx,
            now,
            audit::Event {
                org_id: Some(self.org.id),
                action,
                actor: &self.actor,
                target: Some(target),
                meta: &self.meta,
                details,
            },
        )
        .await
    }
}

/// Checks an organization's display name.
pub fn check_name(name: &str) -> Result<String, OrgError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(OrgError::InvalidName);
    }
    Ok(name.to_string())
}

/// Creates an organization with `admin` as its first admin and `trial_seats` seats (the trial
/// of `--billing-trial-seats`; `billing` decides every later number).
#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut Tx,
    now: i64,
    slug: &OrgSlug,
    name: &str,
    admin: &Account,
    trial_seats: i64,
    actor: &Actor,
    meta: &RequestMeta,
) -> Result<Org, OrgError> {
    let name = check_name(name)?;
    // A managed account belongs to exactly one organization: it cannot found another.
    if admin.kind == AccountKind::Managed {
        return Err(OrgError::ManagedCreator);
    }
    if !admin.email_verified {
        return Err(OrgError::CreatorNotVerified);
    }
    let org = Org {
        id: OrgId::new(),
        slug: slug.as_str().to_string(),
        name,
        seats: trial_seats,
        created_at: now,
    };
    store::insert(tx, &org).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            OrgError::SlugTaken(org.slug.clone())
        } else {
            e.into()
        }
    })?;
    store::insert_membership(tx, org.id, admin.id, Role::Admin, now).await?;
    let scope = AdminScope::grant(org.clone(), actor.clone(), meta.clone());
    scope
        .audit(
            tx,
            now,
            AuditAction::OrgCreated,
            Target::org(org.id),
            serde_json::json!({ "slug": org.slug, "name": org.name, "trial_seats": trial_seats }),
        )
        .await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberAdded,
            Target::account(admin.id),
            serde_json::json!({ "email": admin.email, "role": "admin" }),
        )
        .await?;
    Ok(org)
}

/// Adds an existing, email-verified Nulab account to the organization directly, without an
/// invitation: only the operator CLI may (admins invite, [`invitations::invite`]). An open
/// invitation for the address becomes this membership.
pub async fn add_member(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    email: &str,
    role: Role,
) -> Result<Member, OrgError> {
    let email = Email::parse(email)?;
    let account = accounts::store::by_email(&mut **tx, &email)
        .await?
        .ok_or_else(|| OrgError::NoSuchAccount(email.to_string()))?;
    let org_id = scope.org().id;
    if account.kind == AccountKind::Managed {
        return Err(if account.org_id == Some(org_id) {
            OrgError::AlreadyMember(account.email)
        } else {
            OrgError::ManagedElsewhere(account.email)
        });
    }
    if account.status == AccountStatus::Suspended {
        return Err(OrgError::AccountSuspended(account.email));
    }
    if !account.email_verified {
        return Err(OrgError::EmailNotVerified(account.email));
    }
    store::insert_membership(tx, org_id, account.id, role, now)
        .await
        .map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                OrgError::AlreadyMember(account.email.clone())
            } else {
                e.into()
            }
        })?;
    let invitation = invitations::close_for_direct_add(tx, now, org_id, &account.email).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberAdded,
            Target::account(account.id),
            serde_json::json!({
                "email": account.email,
                "role": role.as_str(),
                "invitation": invitation.map(|i| i.to_string()),
            }),
        )
        .await?;
    store::member(&mut **tx, org_id, account.id)
        .await?
        .ok_or(OrgError::NotAMember)
}

/// Changes a member's role; the last admin cannot be demoted.
pub async fn change_role(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    account: AccountId,
    role: Role,
) -> Result<Member, OrgError> {
    let org_id = scope.org().id;
    // Serialise role changes of this org so two demotions cannot both see "another admin".
    store::lock(tx, org_id).await?;
    let member = store::member(&mut **tx, org_id, account)
        .await?
        .ok_or(OrgError::NotAMember)?;
    if member.role == role {
        return Ok(member);
    }
    if member.role == Role::Admin && store::count_admins(&mut **tx, org_id).await? <= 1 {
        return Err(OrgError::LastAdmin);
    }
    store::set_role(tx, org_id, account, role).await?;
    if member.role == Role::Admin {
        let by = holders::ChangedBy {
            actor: scope.actor(),
            meta: scope.meta(),
        };
        holders::revoke_held_by(tx, now, account, Some(org_id), holders::Reason::Demoted, by)
            .await?;
    }
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberRoleChanged,
            Target::account(account),
            serde_json::json!({ "email": member.email, "from": member.role.as_str(), "to": role.as_str() }),
        )
        .await?;
    Ok(Member { role, ..member })
}

/// Removes a Nulab account from the organization; the last admin cannot be removed.
pub async fn remove_member(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    account: AccountId,
) -> Result<(), OrgError> {
    let org_id = scope.org().id;
    store::lock(tx, org_id).await?;
    let member = store::member(&mut **tx, org_id, account)
        .await?
        .ok_or(OrgError::NotAMember)?;
    if member.kind == AccountKind::Managed {
        return Err(OrgError::ManagedCannotLeave);
    }
    if member.role == Role::Admin && store::count_admins(&mut **tx, org_id).await? <= 1 {
        return Err(OrgError::LastAdmin);
    }
    store::delete_membership(tx, org_id, account).await?;
    let by = holders::ChangedBy {
        actor: scope.actor(),
        meta: scope.meta(),
    };
    holders::revoke_held_by(tx, now, account, Some(org_id), holders::Reason::Removed, by).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberRemoved,
            Target::account(account),
            serde_json::json!({ "email": member.email, "role": member.role.as_str() }),
        )
        .await?;
    Ok(())
}

/// The signed-in account leaves an organization. Managed accounts cannot leave theirs, and the
/// last admin cannot leave.
pub async fn leave(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    org: &Org,
    meta: &RequestMeta,
) -> Result<(), OrgError> {
    store::lock(tx, org.id).await?;
    let member = store::member(&mut **tx, org.id, account.id)
        .await?
        .ok_or(OrgError::NotAMember)?;
    if member.kind == AccountKind::Managed {
        return Err(OrgError::ManagedCannotLeave);
    }
    if member.role == Role::Admin && store::count_admins(&mut **tx, org.id).await? <= 1 {
        return Err(OrgError::LastAdmin);
    }
    store::delete_membership(tx, org.id, account.id).await?;
    let scope = AdminScope::grant(org.clone(), account.actor(), meta.clone());
    let by = holders::ChangedBy {
        actor: scope.actor(),
        meta,
    };
    holders::revoke_held_by(tx, now, account.id, Some(org.id), holders::Reason::Left, by).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MemberLeft,
            Target::account(account.id),
            serde_json::json!({ "email": account.email }),
        )
        .await?;
    Ok(())
}

/// Filters of the member list.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub kind: Option<AccountKind>,
    pub status: Option<AccountStatus>,
}

/// One page of members, ordered by email.
pub async fn list_members(
    pool: &sqlx::AnyPool,
    org: OrgId,
    filter: &MemberFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page<Member>, OrgError> {
    let after = crate::paging::after(cursor, 2).map_err(|e| OrgError::BadRequest(e.to_string()))?;
    let rows = store::members(pool, org, filter, after.as_deref(), limit + 1).await?;
    Ok(crate::paging::into_page(rows, limit, |m| {
        crate::paging::encode_cursor(&[&m.email.to_lowercase(), &m.account_id.to_string()])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rules() {
        assert_eq!(OrgSlug::parse(" Acme-Corp ").unwrap().as_str(), "acme-corp");
        assert!(OrgSlug::parse("abc").is_ok());
        assert!(OrgSlug::parse(&"a".repeat(32)).is_ok());
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a_b_c",
            "acmé",
            "acme corp",
            "",
            &"a".repeat(33),
        ] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
