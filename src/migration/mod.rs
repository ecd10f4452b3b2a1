//! Migration: turning a Nulab account that is a member of an organization into a managed account
//! of that organization, after its user consents through an emailed link (DESIGN rule 5).
//!
//! Requests reserve seats (pending requests plus managed accounts never exceed the seats when a
//! request is made); executing one re-checks everything in one transaction, under the org lock,
//! and moves a `pending` request to its final status with a conditional update, so parallel
//! acceptances, cancellations and expiries decide it exactly once.

mod admin_pages;
pub mod api;
mod consent;
pub mod jobs;
mod mails;
pub mod overview;
pub mod pages;
mod requests;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::accounts::policy::PasswordPolicy;
use crate::accounts::{self, Account, AccountKind, AccountStatus, Email};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::db::{Db, Tx};
use crate::ids::{AccountId, OrgId};
use crate::mail::MailError;
use crate::orgs::{self, AdminScope, Org};
use crate::secrets;

/// Days a consent link stays valid unless the org chose otherwise.
pub const DEFAULT_LINK_DAYS: i64 = 14;
/// The reminder goes out this long before a link expires.
pub const REMINDER_LEAD_MS: i64 = 3 * DAY_MS;
/// Wrong passwords on one request's consent page are counted in windows of this length...
pub const PASSWORD_WINDOW_MS: i64 = 15 * 60 * 1000;
/// ...and after this many, the page refuses passwords until the window ends.
pub const MAX_PASSWORD_FAILURES: i64 = 5;
/// Most accounts one request batch may name.
pub const MAX_BATCH: usize = 1000;

/// A migration request's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MigrationId(pub uuid::Uuid);

impl MigrationId {
    pub fn new() -> Self {
        MigrationId(uuid::Uuid::new_v4())
    }
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::parse_str(raw.trim()).ok().map(MigrationId)
    }
}

impl Default for MigrationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for MigrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Life of a request: `pending` until the user decides, an admin cancels, or the link expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationStatus {
    Pending,
    Completed,
    Declined,
    Expired,
    Cancelled,
}

impl MigrationStatus {
    pub const ALL: [MigrationStatus; 5] = [
        MigrationStatus::Pending,
        MigrationStatus::Completed,
        MigrationStatus::Declined,
        MigrationStatus::Expired,
        MigrationStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Pending => "pending",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Declined => "declined",
            MigrationStatus::Expired => "expired",
            MigrationStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A migration request with its history (Unix ms).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MigrationRequest {
    #[schema(value_type = String)]
    pub id: MigrationId,
    #[schema(value_type = String)]
    pub org_id: OrgId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub email: String,
    /// Who asked: an admin's email or an API token's name.
    pub requested_by: String,
    pub status: MigrationStatus,
    /// Why the last attempt to execute it failed (a reason code), if it did.
    pub failure: Option<String>,
    pub requested_at: i64,
    pub emailed_at: Option<i64>,
    pub reminded_at: Option<i64>,
    pub opened_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub expires_at: i64,
    #[serde(skip)]
    pub password_failures: i64,
    #[serde(skip)]
    pub password_failures_since: Option<i64>,
}

/// Why an account cannot be asked (or migrated) now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ineligible {
    InvalidInput(String),
    NotAMember,
    AlreadyManaged,
    AccountInactive,
    EmailNotVerified,
    DomainNotVerified(String),
    PendingRequest,
    NoFreeSeats,
    /// The account is the only admin of another organization, which migrating would leave
    /// without one.
    LastAdminElsewhere,
}

impl Ineligible {
    /// The stable reason code (API `error`, the request's `failure`).
    pub fn code(&self) -> &'static str {
        match self {
            Ineligible::InvalidInput(_) => "invalid_input",
            Ineligible::NotAMember => "not_a_member",
            Ineligible::AlreadyManaged => "already_managed",
            Ineligible::AccountInactive => "account_inactive",
            Ineligible::EmailNotVerified => "email_not_verified",
            Ineligible::DomainNotVerified(_) => "domain_not_verified",
            Ineligible::PendingRequest => "pending_request",
            Ineligible::NoFreeSeats => "no_free_seats",
            Ineligible::LastAdminElsewhere => "last_admin_elsewhere",
        }
    }
    /// What it means, for admins.
    pub fn message(&self) -> String {
        match self {
            Ineligible::InvalidInput(raw) => {
                format!("\u{201c}{raw}\u{201d} is neither an account id nor an email address")
            }
            Ineligible::NotAMember => "not a member of this organization".to_string(),
            Ineligible::AlreadyManaged => "already a managed account".to_string(),
            Ineligible::AccountInactive => "the account is suspended or deleted".to_string(),
            Ineligible::EmailNotVerified => {
                "the user has not confirmed their email address yet".to_string()
            }
            Ineligible::DomainNotVerified(d) => {
                format!("{d} is not a verified domain of this organization: verify it first")
            }
            Ineligible::PendingRequest => {
                "a migration request is already pending: resend or cancel it".to_string()
            }
            Ineligible::NoFreeSeats => {
                "no free seat: pending requests and managed accounts already use every seat; add seats on the billing page (Admin → Billing) or cancel requests".to_string()
            }
            Ineligible::LastAdminElsewhere => {
                "the account is the only admin of another organization, which migrating would leave without an admin: the user must make someone else an admin there (or leave it) first".to_string()
            }
        }
    }
}

/// What can go wrong with migration, in words the reader can act on.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("no migration request with this id belongs to this organization")]
    NotFound,
    #[error("this request is already {}: only pending requests can be changed", .0.as_str())]
    NotPending(MigrationStatus),
    #[error("name between 1 and {MAX_BATCH} accounts, in account_ids or in emails (not both)")]
    BadBatch,
    #[error("the link lifetime must be between 1 and 30 days")]
    InvalidLinkDays,
    #[error(
        "this link is not valid. If your administrator sent the request again, use the link in the newest email"
    )]
    LinkInvalid,
    #[error("this link has expired; ask your organization's administrator to send it again")]
    LinkExpired,
    #[error("your organization's administrator cancelled this request; the link no longer works")]
    LinkCancelled,
    #[error("this request has already been answered ({}); the link no longer works", .0.as_str())]
    LinkDecided(MigrationStatus),
    #[error(
        "you are signed in as {signed_in}, but this request is for another account. Sign out, then open the link again"
    )]
    OtherAccount { signed_in: String },
    #[error("enter the password of this account, or sign in as it first")]
    ProofRequired,
    #[error("the password is wrong")]
    WrongPassword,
    #[error(
        "too many wrong passwords or codes for this request; try again in 15 minutes, or sign in first"
    )]
    TooManyAttempts,
    #[error(
        "too many wrong passwords or codes: wait {} and try again, or sign in first",
        crate::limits::wait_words(*.0)
    )]
    RateLimited(i64),
    #[error(
        "this account uses two-step verification: enter the code from your authenticator app as well"
    )]
    SecondFactorRequired,
    #[error("the code from the authenticator app is wrong or was already used")]
    WrongCode,
    #[error("the migration cannot be completed: {}", .0.message())]
    Precondition(Ineligible),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Hash(#[from] accounts::password::HashError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub use consent::*;
pub use requests::*;

impl From<MigrationError> for crate::web::error::AppError {
    fn from(err: MigrationError) -> Self {
        use crate::web::error::AppError;
        use axum::http::StatusCode as S;
        let message = err.to_string();
        let (status, code) = match &err {
            MigrationError::Mail(_) | MigrationError::Hash(_) => {
                return AppError::Internal(anyhow::anyhow!(message));
            }
            MigrationError::Db(_) => match err {
                MigrationError::Db(e) => return e.into(),
                _ => unreachable!("matched above"),
            },
            MigrationError::NotFound => (S::NOT_FOUND, "not_found"),
            MigrationError::NotPending(_) => (S::CONFLICT, "not_pending"),
            MigrationError::BadBatch => (S::BAD_REQUEST, "invalid_body"),
            MigrationError::InvalidLinkDays => (S::BAD_REQUEST, "invalid_link_days"),
            MigrationError::LinkInvalid => (S::NOT_FOUND, "link_invalid"),
            MigrationError::LinkExpired => (S::GONE, "link_expired"),
            MigrationError::LinkCancelled => (S::GONE, "link_cancelled"),
            MigrationError::LinkDecided(_) => (S::GONE, "link_used"),
            MigrationError::OtherAccount { .. } => (S::FORBIDDEN, "other_account"),
            MigrationError::ProofRequired => (S::BAD_REQUEST, "proof_required"),
            MigrationError::WrongPassword => (S::FORBIDDEN, "wrong_password"),
            MigrationError::TooManyAttempts => (S::TOO_MANY_REQUESTS, "too_many_attempts"),
            MigrationError::RateLimited(secs) => {
                return AppError::Throttled {
                    code: "rate_limited",
                    message,
                    retry_after_secs: *secs,
                };
            }
            MigrationError::SecondFactorRequired => (S::FORBIDDEN, "second_factor_required"),
            MigrationError::WrongCode => (S::FORBIDDEN, "wrong_second_factor"),
            MigrationError::Precondition(why) => (S::CONFLICT, why.code()),
        };
        AppError::client(status, code, message)
    }
}
