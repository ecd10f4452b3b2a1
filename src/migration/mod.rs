//! Migration: turning a Nulab account that is a member of an organization into a managed account
//! of that organization, after its user consents through an emailed link (DESIGN rule 5).
//!
//! Requests reserve seats (pending requests plus managed accounts never exceed the seats when a
//! request is made); executing one re-checks everything in one transaction, under the org lock,
//! and moves a `pending` request to its final status with a conditional update, so parallel
//! acceptances, cancellations and expiries decide it exactly once.

mod admin_pages;
pub mod api;
pub mod jobs;
mod mails;
pub mod overview;
pub mod pages;
pub mod store;

use std::collections::BTreeMap;

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
                "no free seat: pending requests and managed accounts already use every seat; add seats or cancel requests".to_string()
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

/// One named account in a request batch.
#[derive(Clone, Debug)]
pub enum Wanted {
    Id(String),
    Email(String),
}

/// The outcome for one named account.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RequestResult {
    /// The account id or email as given.
    pub input: String,
    pub account_id: Option<String>,
    #[schema(value_type = Option<String>)]
    pub id: Option<MigrationId>,
    pub status: Option<MigrationStatus>,
    /// A reason code when no request was made.
    pub error: Option<&'static str>,
    pub message: Option<String>,
}

/// The account `wanted` names, if any.
async fn resolve(tx: &mut Tx, wanted: &Wanted) -> Result<Result<Account, Ineligible>, sqlx::Error> {
    let found = match wanted {
        Wanted::Id(raw) => match AccountId::parse(raw) {
            Some(id) => accounts::store::by_id(&mut **tx, id).await?,
            None => {
                return Ok(Err(Ineligible::InvalidInput(
                    raw.chars().take(80).collect(),
                )));
            }
        },
        Wanted::Email(raw) => match Email::parse(raw) {
            Ok(email) => accounts::store::by_email(&mut **tx, &email).await?,
            Err(_) => {
                return Ok(Err(Ineligible::InvalidInput(
                    raw.chars().take(80).collect(),
                )));
            }
        },
    };
    // An account outside the org is "not a member", whether or not it exists elsewhere.
    Ok(found.ok_or(Ineligible::NotAMember))
}

/// The rules on the account itself (membership first, so nothing leaks about non-members).
async fn check_account(
    tx: &mut Tx,
    org: OrgId,
    account: &Account,
    domain_verified: bool,
) -> Result<Result<(), Ineligible>, sqlx::Error> {
    if orgs::store::role_of(&mut **tx, org, account.id)
        .await?
        .is_none()
    {
        return Ok(Err(Ineligible::NotAMember));
    }
    Ok(if account.kind == AccountKind::Managed {
        Err(Ineligible::AlreadyManaged)
    } else if account.status != AccountStatus::Active {
        Err(Ineligible::AccountInactive)
    } else if !account.email_verified {
        Err(Ineligible::EmailNotVerified)
    } else if !domain_verified {
        Err(Ineligible::DomainNotVerified(domain_of(&account.email)))
    } else {
        Ok(())
    })
}

fn domain_of(email: &str) -> String {
    email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// How an admin is named to users.
fn asker(actor: &Actor) -> String {
    match actor {
        Actor::Account { email, .. } => email.clone(),
        Actor::ApiToken { name, .. } => {
            format!("an administrator (API token \u{201c}{name}\u{201d})")
        }
        _ => "an administrator".to_string(),
    }
}

/// Asks each named account to migrate, within the free seats (pending requests count), in one
/// transaction: every request is either made with its email queued, or rejected with a reason.
pub async fn request_batch(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    wanted: &[Wanted],
    base_url: &str,
) -> Result<Vec<RequestResult>, MigrationError> {
    if wanted.is_empty() || wanted.len() > MAX_BATCH {
        return Err(MigrationError::BadBatch);
    }
    let org = scope.org();
    let mut resolved = Vec::with_capacity(wanted.len());
    for w in wanted {
        resolved.push(resolve(tx, w).await?);
    }
    // Domain rows before the org row, in a fixed order: the order managed-account creation
    // takes them, so the two cannot deadlock on PostgreSQL.
    let mut verified = BTreeMap::new();
    for account in resolved.iter().flatten() {
        verified.insert(domain_of(&account.email), false);
    }
    for (domain, ok) in verified.iter_mut() {
        *ok = crate::domains::is_email_domain_verified(tx, org.id, domain).await?;
    }
    orgs::store::lock(tx, org.id).await?;
    let seats = crate::orgs::seats::subscribed(&mut **tx, org.id).await?;
    let used = crate::orgs::seats::used(&mut **tx, org.id).await?;
    let mut free = seats - used - store::pending_count(&mut **tx, org.id).await?;
    let days = store::link_days(&mut **tx, org.id).await?;
    let by = asker(scope.actor());
    let mut results = Vec::with_capacity(wanted.len());
    let mut asked = Vec::new();
    for (w, found) in wanted.iter().zip(resolved) {
        let input = match w {
            Wanted::Id(s) | Wanted::Email(s) => s.clone(),
        };
        let outcome: Result<Account, (Ineligible, Option<Account>)> = match found {
            Err(why) => Err((why, None)),
            Ok(account) => {
                let domain_ok = verified.get(&domain_of(&account.email)) == Some(&true);
                match check_account(tx, org.id, &account, domain_ok).await? {
                    Err(why) => Err((why, Some(account))),
                    Ok(()) if store::has_pending(&mut **tx, org.id, account.id).await? => {
                        Err((Ineligible::PendingRequest, Some(account)))
                    }
                    Ok(()) if free <= 0 => Err((Ineligible::NoFreeSeats, Some(account))),
                    Ok(()) => Ok(account),
                }
            }
        };
        results.push(match outcome {
            Ok(account) => {
                free -= 1;
                let request =
                    create_one(tx, now, scope, org, &account, &by, days, base_url).await?;
                asked.push(account.email.clone());
                RequestResult {
                    input,
                    account_id: Some(account.id.to_string()),
                    id: Some(request.id),
                    status: Some(MigrationStatus::Pending),
                    error: None,
                    message: None,
                }
            }
            Err((why, account)) => RequestResult {
                input,
                account_id: account.map(|a| a.id.to_string()),
                id: None,
                status: None,
                error: Some(why.code()),
                message: Some(why.message()),
            },
        });
    }
    if !asked.is_empty() {
        mails::admins_asked(tx, now, org, &by, &asked, days).await?;
    }
    Ok(results)
}

/// Makes one pending request, emails its link and audits it.
#[allow(clippy::too_many_arguments)]
async fn create_one(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    org: &Org,
    account: &Account,
    by: &str,
    days: i64,
    base_url: &str,
) -> Result<MigrationRequest, MigrationError> {
    let token = secrets::new_token("");
    let request = MigrationRequest {
        id: MigrationId::new(),
        org_id: org.id,
        account_id: account.id,
        email: account.email.clone(),
        requested_by: by.to_string(),
        status: MigrationStatus::Pending,
        failure: None,
        requested_at: now,
        emailed_at: Some(now),
        reminded_at: None,
        opened_at: None,
        decided_at: None,
        expires_at: now + days * DAY_MS,
        password_failures: 0,
        password_failures_since: None,
    };
    store::insert(tx, &request, &secrets::hash_token(&token)).await?;
    mails::user_asked(tx, now, org, &request, &link(base_url, &token), false).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MigrationRequested,
            Target::account(account.id),
            serde_json::json!({ "request": request.id.to_string(), "email": account.email, "expires_at": request.expires_at }),
        )
        .await?;
    Ok(request)
}

fn link(base_url: &str, token: &str) -> String {
    format!("{base_url}/migration/{token}")
}

/// Sends a new link for a pending request; every earlier link dies.
pub async fn resend(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: MigrationId,
    base_url: &str,
) -> Result<MigrationRequest, MigrationError> {
    let org = scope.org();
    let request = store::by_id(&mut **tx, org.id, id)
        .await?
        .ok_or(MigrationError::NotFound)?;
    let days = store::link_days(&mut **tx, org.id).await?;
    let token = secrets::new_token("");
    let expires_at = now + days * DAY_MS;
    if !store::rotate(tx, id, &secrets::hash_token(&token), expires_at, now).await? {
        return Err(MigrationError::NotPending(request.status));
    }
    let request = MigrationRequest {
        expires_at,
        emailed_at: Some(now),
        reminded_at: None,
        failure: None,
        ..request
    };
    mails::user_asked(tx, now, org, &request, &link(base_url, &token), false).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MigrationResent,
            Target::account(request.account_id),
            serde_json::json!({ "request": id.to_string(), "email": request.email, "expires_at": expires_at }),
        )
        .await?;
    Ok(request)
}

/// Withdraws a pending request; its seat is free again and its link dies.
pub async fn cancel(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: MigrationId,
) -> Result<MigrationRequest, MigrationError> {
    let org = scope.org();
    orgs::store::lock(tx, org.id).await?;
    let request = store::by_id(&mut **tx, org.id, id)
        .await?
        .ok_or(MigrationError::NotFound)?;
    if !store::decide(tx, id, MigrationStatus::Cancelled, None, now).await? {
        return Err(MigrationError::NotPending(request.status));
    }
    scope
        .audit(
            tx,
            now,
            AuditAction::MigrationCancelled,
            Target::account(request.account_id),
            serde_json::json!({ "request": id.to_string(), "email": request.email }),
        )
        .await?;
    mails::user_cancelled(tx, now, org, &request).await?;
    Ok(MigrationRequest {
        status: MigrationStatus::Cancelled,
        decided_at: Some(now),
        ..request
    })
}

/// Sets how many days new consent links stay valid (1–30).
pub async fn set_link_days(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    days: i64,
) -> Result<(), MigrationError> {
    if !(1..=30).contains(&days) {
        return Err(MigrationError::InvalidLinkDays);
    }
    let before = store::link_days(&mut **tx, scope.org().id).await?;
    store::set_link_days(tx, scope.org().id, days, now).await?;
    scope
        .audit(
            tx,
            now,
            AuditAction::MigrationSettingsChanged,
            Target::org(scope.org().id),
            serde_json::json!({ "link_days": { "from": before, "to": days } }),
        )
        .await?;
    Ok(())
}

/// A live consent link: its request, account and organization.
pub struct Consent {
    pub request: MigrationRequest,
    pub account: Account,
    pub org: Org,
    token_hash: String,
}

/// Why a request's link no longer works, if it does not.
fn link_state(request: &MigrationRequest, now: i64) -> Result<(), MigrationError> {
    match request.status {
        MigrationStatus::Pending if request.expires_at <= now => Err(MigrationError::LinkExpired),
        MigrationStatus::Pending => Ok(()),
        MigrationStatus::Expired => Err(MigrationError::LinkExpired),
        MigrationStatus::Cancelled => Err(MigrationError::LinkCancelled),
        done => Err(MigrationError::LinkDecided(done)),
    }
}

/// Finds the live request behind `token` (read only).
pub async fn consent(db: &Db, now: i64, token: &str) -> Result<Consent, MigrationError> {
    let token_hash = secrets::hash_token(token.trim());
    let request = store::by_token(db.pool(), &token_hash)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    link_state(&request, now)?;
    let account = accounts::store::by_id(db.pool(), request.account_id)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    let org = orgs::store::by_id(db.pool(), request.org_id)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    Ok(Consent {
        request,
        account,
        org,
        token_hash,
    })
}

/// Records that the consent page was opened (first time only).
pub async fn opened(db: &Db, now: i64, consent: &Consent) -> Result<(), MigrationError> {
    Ok(store::mark_opened(db.pool(), consent.request.id, now).await?)
}

/// How the user proves control of the account on the consent page.
pub enum Proof {
    /// This browser is signed in as this account (id from the session).
    SignedIn(AccountId),
    /// The account's password typed on the page, with the authenticator code when the account
    /// has a second factor.
    Password { password: String, code: String },
}

/// Refuses a browser signed in as another account.
pub async fn refuse_other_account(
    db: &Db,
    consent: &Consent,
    signed_in: Option<AccountId>,
) -> Result<(), MigrationError> {
    match signed_in {
        Some(id) if id != consent.account.id => {
            let other = accounts::store::by_id(db.pool(), id).await?;
            Err(MigrationError::OtherAccount {
                signed_in: other
                    .map(|a| a.email)
                    .unwrap_or_else(|| "another account".into()),
            })
        }
        _ => Ok(()),
    }
}

/// Whether the org's policy could reject a password this server has only as a hash: then the
/// user must choose a new one at the next sign-in (a stricter rule than Nulab's own, or an
/// expired password).
fn may_violate_unseen(policy: &PasswordPolicy, account: &Account, now: i64) -> bool {
    let nulab = accounts::nulab_policy();
    policy.min_length > nulab.min_length
        || (policy.require_three_classes && !nulab.require_three_classes)
        || (policy.reject_common && !nulab.reject_common)
        || policy.is_expired(account.password_changed_at, now)
}

/// Checks the password proof (and the authenticator code of an account with a second factor)
/// outside the migration's transaction (hashing is slow); a wrong one is counted towards the
/// request's limit. Returns the plaintext when it was checked.
async fn check_proof(
    db: &Db,
    now: i64,
    consent: &Consent,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<Option<String>, MigrationError> {
    let (password, code) = match proof {
        Proof::SignedIn(id) if *id == consent.account.id => return Ok(None),
        Proof::SignedIn(id) => {
            refuse_other_account(db, consent, Some(*id)).await?;
            return Err(MigrationError::ProofRequired);
        }
        Proof::Password { password, .. } if password.is_empty() => {
            return Err(MigrationError::ProofRequired);
        }
        Proof::Password { password, code } => (password, code.trim()),
    };
    let second_factor = crate::sign_in::has_second_factor(db.pool(), consent.account.id).await?;
    if second_factor && code.is_empty() {
        return Err(MigrationError::SecondFactorRequired);
    }
    let r = &consent.request;
    if r.password_failures >= MAX_PASSWORD_FAILURES
        && r.password_failures_since
            .is_some_and(|t| t > now - PASSWORD_WINDOW_MS)
    {
        return Err(MigrationError::TooManyAttempts);
    }
    let stored = accounts::store::password_hash(db.pool(), consent.account.id).await?;
    let ok = match (&stored, password.len() <= accounts::MAX_PASSWORD_LEN) {
        (Some(hash), true) => accounts::password::verify(password, hash).await?,
        _ => false,
    };
    let mut tx = db.begin().await?;
    // The code is checked (and spent) only after the right password, so a wrong password never
    // burns a valid code.
    let failure = if !ok {
        Some(MigrationError::WrongPassword)
    } else if second_factor
        && !crate::sign_in::second_factor::use_code(&mut tx, consent.account.id, code, now).await?
    {
        Some(MigrationError::WrongCode)
    } else {
        None
    };
    let Some(failure) = failure else {
        tx.commit().await?;
        return Ok(Some(password.clone()));
    };
    let reason = match failure {
        MigrationError::WrongCode => "wrong_second_factor",
        _ => "wrong_password",
    };
    store::password_failed(&mut tx, r.id, now, PASSWORD_WINDOW_MS).await?;
    record(
        &mut tx,
        now,
        consent,
        AuditAction::MigrationFailed,
        meta,
        serde_json::json!({ "request": r.id.to_string(), "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Err(failure)
}

async fn record(
    tx: &mut Tx,
    now: i64,
    consent: &Consent,
    action: AuditAction,
    meta: &RequestMeta,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(consent.org.id),
            action,
            actor: &consent.account.actor(),
            target: Some(Target::account(consent.account.id)),
            meta,
            details,
        },
    )
    .await
}

/// The user agrees: after the proof, executes the migration in one transaction, or changes
/// nothing but the request's recorded failure.
pub async fn accept(
    db: &Db,
    now: i64,
    token: &str,
    proof: Proof,
    meta: &RequestMeta,
) -> Result<(Account, Org), MigrationError> {
    let consent = consent(db, now, token).await?;
    let password = check_proof(db, now, &consent, &proof, meta).await?;
    let org = &consent.org;
    let mut tx = db.begin().await?;
    // Domain row, then org row: the order managed-account creation uses.
    let domain_ok = crate::domains::is_email_domain_verified(
        &mut tx,
        org.id,
        &domain_of(&consent.account.email),
    )
    .await?;
    orgs::store::lock(&mut tx, org.id).await?;
    // Everything again, as it is now that this transaction holds the locks.
    let request = store::by_token(&mut *tx, &consent.token_hash)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    link_state(&request, now)?;
    let account = accounts::store::by_id(&mut *tx, request.account_id)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    let mut problem = check_account(&mut tx, org.id, &account, domain_ok)
        .await?
        .err();
    if problem.is_none() {
        let seats = crate::orgs::seats::subscribed(&mut *tx, org.id).await?;
        let used = crate::orgs::seats::used(&mut *tx, org.id).await?;
        if used >= seats {
            problem = Some(Ineligible::NoFreeSeats);
        }
    }
    if let Some(why) = problem {
        store::set_failure(&mut tx, request.id, why.code(), now).await?;
        record(
            &mut tx,
            now,
            &consent,
            AuditAction::MigrationFailed,
            meta,
            serde_json::json!({ "request": request.id.to_string(), "reason": why.code() }),
        )
        .await?;
        mails::admins_failed(&mut tx, now, org, &request, &why).await?;
        tx.commit().await?;
        return Err(MigrationError::Precondition(why));
    }
    if !store::decide(&mut tx, request.id, MigrationStatus::Completed, None, now).await? {
        return Err(MigrationError::LinkDecided(MigrationStatus::Completed));
    }
    let policy = crate::accounts::store::policy(&mut *tx, org.id).await?;
    let must_change = policy.password_sign_in
        && match &password {
            Some(p) => !policy.violations(p).is_empty(),
            None => may_violate_unseen(&policy, &account, now),
        };
    if !store::make_managed(&mut tx, account.id, org.id, must_change, now).await? {
        return Err(MigrationError::Precondition(Ineligible::AlreadyManaged));
    }
    let others = store::other_orgs(&mut *tx, account.id, org.id).await?;
    store::delete_other_memberships(&mut tx, account.id, org.id).await?;
    let sessions = crate::accounts::end_every_sign_in(&mut tx, account.id, now).await?;
    for (other_org, _) in &others {
        audit::record(&mut tx, now, audit::Event {
            org_id: Some(*other_org),
            action: AuditAction::MemberRemoved,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "email": account.email, "reason": "migrated_to_managed", "to_org": org.slug }),
        }).await?;
    }
    for stale in store::pending_elsewhere(&mut tx, account.id, org.id).await? {
        if store::decide(
            &mut tx,
            stale.id,
            MigrationStatus::Cancelled,
            Some("migrated_elsewhere"),
            now,
        )
        .await?
        {
            audit::record(&mut tx, now, audit::Event {
                org_id: Some(stale.org_id),
                action: AuditAction::MigrationCancelled,
                actor: &account.actor(),
                target: Some(Target::account(account.id)),
                meta,
                details: serde_json::json!({ "request": stale.id.to_string(), "reason": "migrated_elsewhere" }),
            }).await?;
        }
    }
    let left: Vec<String> = others.into_iter().map(|(_, name)| name).collect();
    record(
        &mut tx,
        now,
        &consent,
        AuditAction::MigrationAccepted,
        meta,
        serde_json::json!({
            "request": request.id.to_string(),
            "email": account.email,
            "memberships_ended": left,
            "sessions_ended": sessions,
            "must_change_password": must_change,
            "proof": if password.is_some() { "password" } else { "session" },
        }),
    )
    .await?;
    mails::user_completed(
        &mut tx,
        now,
        org,
        &account,
        &left,
        must_change,
        !policy.password_sign_in,
    )
    .await?;
    mails::admins_outcome(&mut tx, now, org, &request, MigrationStatus::Completed).await?;
    let migrated = accounts::store::by_id(&mut *tx, account.id)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    tx.commit().await?;
    Ok((migrated, consent.org.clone()))
}

/// The user declines: the request ends and its seat is free; admins may ask again later.
pub async fn decline(
    db: &Db,
    now: i64,
    token: &str,
    signed_in: Option<AccountId>,
    meta: &RequestMeta,
) -> Result<(), MigrationError> {
    let consent = consent(db, now, token).await?;
    refuse_other_account(db, &consent, signed_in).await?;
    let mut tx = db.begin().await?;
    let request = store::by_token(&mut *tx, &consent.token_hash)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    link_state(&request, now)?;
    if !store::decide(&mut tx, request.id, MigrationStatus::Declined, None, now).await? {
        return Err(MigrationError::LinkDecided(MigrationStatus::Declined));
    }
    record(
        &mut tx,
        now,
        &consent,
        AuditAction::MigrationDeclined,
        meta,
        serde_json::json!({ "request": request.id.to_string(), "email": request.email }),
    )
    .await?;
    mails::user_declined(&mut tx, now, &consent.org, &request).await?;
    mails::admins_outcome(
        &mut tx,
        now,
        &consent.org,
        &request,
        MigrationStatus::Declined,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What the consent page shows.
pub struct ConsentView {
    /// Other organizations whose membership ends (names).
    pub other_orgs: Vec<String>,
    /// The organization signs its managed accounts in only through SSO.
    pub sso_required: bool,
    /// An SSO connection routes the account's domain.
    pub sso_ready: bool,
}

/// Facts for the consent page.
pub async fn consent_view(db: &Db, consent: &Consent) -> Result<ConsentView, MigrationError> {
    let other_orgs = store::other_orgs(db.pool(), consent.account.id, consent.org.id)
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let policy = crate::accounts::store::policy(db.pool(), consent.org.id).await?;
    let domain = domain_of(&consent.account.email);
    let sso_ready = crate::saml::store::of_org(db.pool(), consent.org.id)
        .await?
        .iter()
        .any(|c| c.routes(&domain));
    Ok(ConsentView {
        other_orgs,
        sso_required: !policy.password_sign_in,
        sso_ready,
    })
}

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
            MigrationError::SecondFactorRequired => (S::FORBIDDEN, "second_factor_required"),
            MigrationError::WrongCode => (S::FORBIDDEN, "wrong_second_factor"),
            MigrationError::Precondition(why) => (S::CONFLICT, why.code()),
        };
        AppError::client(status, code, message)
    }
}
