//! Accounts: sign-up, email verification, passwords and sign-in of Nulab accounts.
//! An account's `id` is a random UUID that never changes (it is the OIDC `sub`).

pub mod credentials;
pub mod ownership;
pub mod pages;
pub mod password;
pub mod password_pages;
pub mod policy;
pub mod session;
pub mod store;
pub mod throttle;
pub mod totp;
pub mod totp_key;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::db::Tx;
use crate::mail::{self, Mail, MailAction, MailError};
use crate::secrets;
use policy::PasswordPolicy;

pub use crate::ids::AccountId;
use crate::ids::OrgId;
use crate::web::error::AppError;
pub use ownership::{Confirmed, verify_email};

/// A validated email address; the domain is lowercase. [`Email::normalized`] is the
/// case-insensitive key that makes emails unique.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates an address: one `@`, a dot-atom local part of 1–64 characters, a domain of at
    /// least two labels of letters, digits and hyphens; 254 characters at most.
    pub fn parse(raw: &str) -> Result<Email, AccountError> {
        let raw = raw.trim();
        let invalid = || AccountError::InvalidEmail(raw.chars().take(80).collect());
        if raw.len() > 254 {
            return Err(invalid());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let domain = domain.to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && domain.len() <= 253
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
        if !local_ok || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: the whole address in lowercase.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Self-managed Nulab account, or a managed account owned by one organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Nulab,
    Managed,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Nulab => "nulab",
            AccountKind::Managed => "managed",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "nulab" => Some(AccountKind::Nulab),
            "managed" => Some(AccountKind::Managed),
            _ => None,
        }
    }
    /// Words for pages.
    pub fn label(self) -> &'static str {
        match self {
            AccountKind::Nulab => "Nulab account",
            AccountKind::Managed => "managed account",
        }
    }
}

/// Life state of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Suspended,
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "deleted" => Some(AccountStatus::Deleted),
            _ => None,
        }
    }
}

/// An account as the rest of the code sees it (never its password hash).
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub name: String,
    pub kind: AccountKind,
    pub org_id: Option<OrgId>,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub password_changed_at: Option<i64>,
    /// The next sign-in must set a new password (an initial or reset password).
    pub must_change_password: bool,
    /// Every sign-in (browser session, OIDC code or token) that started before this time
    /// (Unix ms) is over: see [`end_every_sign_in`].
    pub sessions_valid_after: i64,
}

impl crate::web::session::SessionAccount for Account {
    fn account_id(&self) -> AccountId {
        self.id
    }
    fn email(&self) -> &str {
        &self.email
    }
}

impl Account {
    /// The audit actor for this account.
    pub fn actor(&self) -> Actor {
        Actor::Account {
            id: self.id.to_string(),
            email: self.email.clone(),
        }
    }
}

/// What can go wrong with accounts, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("\u{201c}{0}\u{201d} is not a valid email address")]
    InvalidEmail(String),
    #[error("an account with this email already exists; sign in instead")]
    EmailTaken,
    #[error(
        "another account confirmed this address first, so this link can no longer confirm it; sign in with that account, or use another address"
    )]
    EmailClaimed,
    #[error("that is already your email address")]
    EmailUnchanged,
    #[error("a name is required (at most 200 characters)")]
    InvalidName,
    #[error("the password is not accepted: {}", .0.join("; "))]
    WeakPassword(Vec<String>),
    #[error(
        "your organization does not allow signing in with a password; sign in through your organization's single sign-on"
    )]
    PasswordSignInDisabled,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error(
        "your account is managed by your organization, so you cannot {0} yourself; ask your organization's admin"
    )]
    ManagedByOrg(&'static str),
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("this account is suspended; ask your organization's admin")]
    Suspended,
    #[error(
        "too many wrong passwords or codes: signing in to this account with a password is paused until {until}; try again then"
    )]
    SignInPaused {
        until: String,
        retry_after_secs: i64,
    },
    #[error("too many attempts: wait {} and try again", crate::limits::wait_words(*.0))]
    RateLimited(i64),
    #[error("this link is not valid; request a new one")]
    LinkInvalid,
    #[error("this link has expired; request a new one")]
    LinkExpired,
    #[error("this link has already been used")]
    LinkUsed,
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How AccountError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<AccountError> for AppError {
    fn from(err: AccountError) -> AppError {
        use axum::http::StatusCode as S;
        let (status, code) = match &err {
            AccountError::InvalidEmail(_) => (S::BAD_REQUEST, "invalid_email"),
            AccountError::EmailTaken => (S::CONFLICT, "email_taken"),
            AccountError::EmailClaimed => (S::CONFLICT, "email_claimed"),
            AccountError::EmailUnchanged => (S::BAD_REQUEST, "email_unchanged"),
            AccountError::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            AccountError::WeakPassword(_) => (S::BAD_REQUEST, "weak_password"),
            AccountError::PasswordSignInDisabled => (S::FORBIDDEN, "password_sign_in_disabled"),
            AccountError::WrongCurrentPassword => (S::FORBIDDEN, "wrong_password"),
            AccountError::ManagedByOrg(_) => (S::FORBIDDEN, "managed_by_org"),
            AccountError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            AccountError::Suspended => (S::FORBIDDEN, "account_suspended"),
            AccountError::SignInPaused {
                retry_after_secs, ..
            } => return throttled("sign_in_paused", &err, *retry_after_secs),
            AccountError::RateLimited(secs) => return throttled("rate_limited", &err, *secs),
            AccountError::LinkInvalid => (S::BAD_REQUEST, "link_invalid"),
            AccountError::LinkExpired => (S::GONE, "link_expired"),
            AccountError::LinkUsed => (S::GONE, "link_used"),
            AccountError::Mail(_) | AccountError::Hash(_) | AccountError::Db(_) => {
                return AppError::Internal(err.into());
            }
        };
        AppError::client(status, code, err.to_string())
    }
}

fn throttled(code: &'static str, err: &AccountError, retry_after_secs: i64) -> AppError {
    AppError::Throttled {
        code,
        message: err.to_string(),
        retry_after_secs,
    }
}

impl AccountError {
    /// The refusal of a sign-in attempt that `block` stopped: the account's pause, or the
    /// client address's wait.
    pub fn of_block(block: &crate::limits::Blocked, now: i64) -> AccountError {
        let retry_after_secs = block.retry_after_secs(now);
        match block.limit {
            crate::limits::Limit::SignInPerAccount => AccountError::SignInPaused {
                until: crate::clock::format_time(block.until),
                retry_after_secs,
            },
            _ => AccountError::RateLimited(retry_after_secs),
        }
    }
}

/// Longest password accepted anywhere (argon2 accepts more; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Lifetime of an email-verification link.
pub const VERIFY_LINK_MS: i64 = 2 * DAY_MS;

/// The password rules of Nulab accounts: at least 12 characters, not a common password.
pub fn nulab_policy() -> PasswordPolicy {
    PasswordPolicy::default()
}

/// Checks a new password against `policy`; the error lists every rule it breaks.
pub fn check_new_password(policy: &PasswordPolicy, password: &str) -> Result<(), AccountError> {
    let broken = policy.violations(password);
    if broken.is_empty() {
        Ok(())
    } else {
        Err(AccountError::WeakPassword(broken))
    }
}

/// Checks a new Nulab account password.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    check_new_password(&nulab_policy(), password)
}

/// The password policy that applies to `account`: its organization's for a managed account.
pub async fn policy_for<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &Account,
) -> Result<PasswordPolicy, sqlx::Error> {
    match (account.kind, account.org_id) {
        (AccountKind::Managed, Some(org)) => store::policy(exec, org).await,
        _ => Ok(nulab_policy()),
    }
}

/// Ends every sign-in of the account, in the caller's transaction: its browser sessions are
/// deleted, and the stamp `sessions_valid_after` makes every session, OIDC code and token that
/// started before `now` invalid where it is loaded (`session::session_alive`, `oidc::store`).
/// Returns how many browser sessions ended.
pub async fn end_every_sign_in(
    tx: &mut Tx,
    account: AccountId,
    now: i64,
) -> Result<u64, sqlx::Error> {
    store::end_sign_ins(tx, account, now).await?;
    crate::web::session::end_all_for(tx, account).await
}

/// Checks a display name.
pub fn check_name(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidName);
    }
    Ok(name.to_string())
}

/// A Nulab account to create; the password is already hashed (hash outside the transaction).
pub struct NewAccount {
    pub email: Email,
    pub name: String,
    pub password_hash: String,
    /// The operator vouches for the address (CLI); otherwise a verification link is emailed.
    pub email_verified: bool,
}

/// Creates a Nulab account, writes its audit event and, unless verified, queues the
/// email-verification link.
pub async fn sign_up(
    tx: &mut Tx,
    now: i64,
    new: NewAccount,
    actor: &Actor,
    meta: &RequestMeta,
    base_url: &str,
) -> Result<Account, AccountError> {
    let id = AccountId::new();
    let verified_at = new.email_verified.then_some(now);
    let row = store::NewRow {
        id,
        email: &new.email,
        name: &new.name,
        kind: AccountKind::Nulab,
        org_id: None,
        password_hash: Some(&new.password_hash),
        email_verified_at: verified_at,
        password_changed_at: Some(now),
        must_change_password: false,
    };
    // Only a confirmed address is taken; unconfirmed sign-ups with it block no one.
    if store::claimed_by_other(&mut **tx, &new.email.normalized(), None).await? {
        return Err(AccountError::EmailTaken);
    }
    store::insert(tx, now, &row).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AccountError::EmailTaken
        } else {
            e.into()
        }
    })?;
    if new.email_verified {
        let reason = ownership::Claim::ConfirmedByAnother;
        ownership::release_claims(tx, now, new.email.as_str(), id, reason, meta).await?;
    }
    let action = if matches!(actor, Actor::Operator) {
        AuditAction::AccountCreated
    } else {
        AuditAction::AccountSignedUp
    };
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: None,
            action,
            actor,
            target: Some(Target::account(id)),
            meta,
            details: serde_json::json!({ "email": new.email.as_str(), "email_verified": new.email_verified }),
        },
    )
    .await?;
    if !new.email_verified {
        send_verification(tx, now, id, &new.email, &new.name, base_url).await?;
    }
    store::by_id(&mut **tx, id)
        .await?
        .ok_or(AccountError::Db(sqlx::Error::RowNotFound))
}

/// Issues a fresh verification link (earlier ones die) and queues the email.
pub async fn send_verification(
    tx: &mut Tx,
    now: i64,
    id: AccountId,
    email: &Email,
    name: &str,
    base_url: &str,
) -> Result<(), AccountError> {
    let token = secrets::new_token("");
    store::expire_tokens(tx, id, store::LinkPurpose::VerifyEmail, now).await?;
    store::insert_token(
        tx,
        &secrets::hash_token(&token),
        id,
        store::LinkPurpose::VerifyEmail,
        email,
        now,
        now + VERIFY_LINK_MS,
    )
    .await?;
    let mail = Mail {
        kind: crate::mail::MailKind::AccountVerifyEmail,
        to: email.to_string(),
        subject: "Confirm your email address for nulab-pass".to_string(),
        paragraphs: vec![
            format!("Hello {name},"),
            "Please confirm that this is your email address. Until you do, organizations cannot add you as a member.".to_string(),
        ],
        action: Some(MailAction { label: "Confirm my email".to_string(), url: format!("{base_url}/verify-email?token={token}") }),
        closing: vec!["The link works once and expires in 48 hours. If you did not sign up, ignore this email.".to_string()],
    };
    mail::enqueue(tx, now, &mail).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_normalized() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@example.com");
        assert_eq!(e.normalized(), "alice.smith@example.com");
        assert_eq!(e.domain(), "example.com");
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@example..com",
            "a b@example.com",
            "a@exa mple.com",
            "a@1.2.3.4",
            "<a>@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse("user+tag@corp.test").is_ok());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(matches!(
            check_password("short"),
            Err(AccountError::WeakPassword(_))
        ));
        assert!(check_password("twelve chars").is_ok());
        assert!(
            check_password("1qaz2wsx3edc").is_err(),
            "common passwords are refused"
        );
        assert!(check_password("ééééééééééé").is_err());
        assert!(check_password(&"x".repeat(257)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  Ada ").unwrap(), "Ada");
        assert!(check_name("   ").is_err());
        assert!(check_name("a\u{0007}b").is_err());
        assert!(check_name(&"n".repeat(201)).is_err());
    }
}
