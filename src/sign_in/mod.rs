//! How people sign in: the identifier-first routing (a work email or an organization ID goes to
//! the organization's IdP when it has SSO, otherwise to the password form), the TOTP second
//! factor and break-glass sign-in of admins of organizations that require SSO, and each
//! organization's session lifetime.

pub mod account_page;
pub mod alert;
pub mod api;
pub mod pages;
pub mod password;
pub mod second_factor;
pub mod settings_pages;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::accounts::{self, Account, AccountKind, Email};
use crate::audit::AuditAction;
use crate::db::{Db, Tx};
use crate::ids::AccountId;
use crate::orgs::AdminScope;
use store::OrgRef;

/// Session lifetime when no organization of the account sets one, in hours.
pub const DEFAULT_LIFETIME_HOURS: i64 = 12;
/// Longest session lifetime an organization may choose: 30 days.
pub const MAX_LIFETIME_HOURS: i64 = 30 * 24;

/// What can go wrong with sign-in settings, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(
        "the session lifetime must be a whole number of hours between 1 and {MAX_LIFETIME_HOURS} (30 days)"
    )]
    InvalidLifetime,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Where the identifier a person typed leads.
#[derive(Clone, Debug)]
pub enum Route {
    /// To the organization's IdP: the SSO login URL (without `return_to`).
    Sso { login_url: String },
    /// To the password form, prefilled with the email.
    Password { email: String },
    /// An organization ID without SSO.
    NoSuchSsoOrg { identifier: String },
}

/// Decides where `identifier` (a work email or an organization ID) signs in. The answer
/// depends only on the identifier's domain, never on whether an account uses the address, is
/// managed, or belongs to another organization (no enumeration): a domain an organization
/// verified and routes to an IdP goes to that IdP; every other address gets the password form
/// (a managed account whose organization forbids passwords learns so only after its right
/// password, with the IdP offered). A Nulab account on an SSO domain signs in through the
/// password form that the identify page and the IdP's refusal link to.
pub async fn route(
    db: &Db,
    base_url: &str,
    identifier: &str,
) -> Result<Route, accounts::AccountError> {
    let identifier = identifier.trim();
    if !identifier.contains('@') {
        return Ok(
            match crate::saml::sso_start_for(db, base_url, identifier).await? {
                Some(sso) => Route::Sso {
                    login_url: sso.login_url,
                },
                None => Route::NoSuchSsoOrg {
                    identifier: identifier.chars().take(64).collect(),
                },
            },
        );
    }
    let email = Email::parse(identifier)?;
    Ok(
        match crate::saml::sso_start_for(db, base_url, email.as_str()).await? {
            Some(sso) => Route::Sso {
                login_url: sso.login_url,
            },
            None => Route::Password {
                email: email.to_string(),
            },
        },
    )
}

/// `login_url` with `return_to` appended.
pub fn with_return_to(login_url: &str, return_to: &str) -> String {
    let sep = if login_url.contains('?') { '&' } else { '?' };
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    format!("{login_url}{sep}return_to={encoded}")
}

/// The session lifetime an organization uses, in hours.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Hours a sign-in lasts, 1–720 (30 days); applied at each sign-in. Default 12.
    #[schema(minimum = 1, maximum = 720)]
    pub session_lifetime_hours: i64,
}

/// The organization's session settings (the default when it never set them).
pub async fn settings(db: &Db, scope: &AdminScope) -> Result<SessionSettings, SignInError> {
    Ok(SessionSettings {
        session_lifetime_hours: accounts::store::lifetime_hours(db.pool(), scope.org().id)
            .await?
            .unwrap_or(DEFAULT_LIFETIME_HOURS),
    })
}

/// Changes the session lifetime; it applies from each member's next sign-in.
pub async fn set_settings(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    new: SessionSettings,
) -> Result<(), SignInError> {
    if !(1..=MAX_LIFETIME_HOURS).contains(&new.session_lifetime_hours) {
        return Err(SignInError::InvalidLifetime);
    }
    let before = accounts::store::lifetime_hours(&mut **tx, scope.org().id).await?;
    if before == Some(new.session_lifetime_hours) {
        return Ok(());
    }
    accounts::store::put_lifetime_hours(tx, scope.org().id, new.session_lifetime_hours, now)
        .await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::SessionSettingsChanged,
            crate::audit::Target::org(scope.org().id),
            serde_json::json!({
                "from": before.unwrap_or(DEFAULT_LIFETIME_HOURS),
                "to": new.session_lifetime_hours,
            }),
        )
        .await?;
    Ok(())
}

/// The organizations requiring SSO that `account` administers: a password sign-in of such an
/// admin is a break-glass sign-in and needs a second factor. Managed accounts never qualify.
pub async fn break_glass_orgs<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &Account,
) -> Result<Vec<OrgRef>, sqlx::Error> {
    if account.kind != AccountKind::Nulab {
        return Ok(Vec::new());
    }
    store::sso_required_admin_orgs(exec, account.id).await
}

/// How many admins of the org could still sign in if its IdP broke: Nulab accounts with a
/// password and a confirmed second factor. "SSO required" needs at least one.
pub async fn break_glass_admins<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    org: crate::ids::OrgId,
) -> Result<Vec<String>, sqlx::Error> {
    store::break_glass_admins(exec, org).await
}

/// Whether the account has a confirmed second factor.
pub async fn has_second_factor<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: AccountId,
) -> Result<bool, sqlx::Error> {
    Ok(store::totp(exec, account)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some()))
}
