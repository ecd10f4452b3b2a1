//! Domains: an organization proves it owns an email domain by publishing a DNS TXT record
//! `nulab-pass-verification=<token>` at the domain itself. A domain is `pending` until the record
//! is seen, then `verified`; a verified domain whose record disappears warns the admins and,
//! after a grace period, becomes `lapsed`; a pending domain that never shows its record
//! `expired`s and can be retried with a new token. [`recheck_all`] is the re-verification job.
//!
//! The rest of the service asks one question through [`is_email_domain_verified`].

pub mod api;
pub mod dns;
mod lifecycle;
mod name;
pub mod pages;
mod recheck;
pub mod store;
pub mod transition;

use serde::Serialize;

use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::db::{Batch, Db, Tx};
use crate::ids::OrgId;
use crate::mail::MailError;
use crate::orgs::AdminScope;
use crate::web::error::AppError;

pub use dns::{DnsFailure, DnsSetupError, TxtAnswer, TxtLookup};
pub use lifecycle::{Change, CheckResult, decide};
pub use name::{DomainName, PUBLIC_MAIL_DOMAINS, is_public_mail_domain};
pub use recheck::{RecheckSummary, recheck_all, spawn_recheck};

/// The text before the token in every verification record.
pub const RECORD_PREFIX: &str = "nulab-pass-verification=";

/// The whole TXT record text an organization publishes for `token`.
pub fn record_text(token: &str) -> String {
    format!("{RECORD_PREFIX}{token}")
}

/// A domain's id: a random UUID, stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DomainId(pub uuid::Uuid);

impl DomainId {
    pub fn new() -> Self {
        DomainId(uuid::Uuid::new_v4())
    }
    /// Parses the text form; `None` when it is not a UUID.
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::parse_str(raw.trim()).ok().map(DomainId)
    }
}

impl Default for DomainId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for DomainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a domain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DomainStatus {
    /// Added; waiting for the TXT record.
    Pending,
    /// The record was found. Stays verified during a grace period when the record goes missing.
    Verified,
    /// The record stayed missing past the grace period; verified again when it comes back.
    Lapsed,
    /// Pending too long; needs a new token.
    Expired,
}

impl DomainStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainStatus::Pending => "pending",
            DomainStatus::Verified => "verified",
            DomainStatus::Lapsed => "lapsed",
            DomainStatus::Expired => "expired",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(DomainStatus::Pending),
            "verified" => Some(DomainStatus::Verified),
            "lapsed" => Some(DomainStatus::Lapsed),
            "expired" => Some(DomainStatus::Expired),
            _ => None,
        }
    }
}

/// A domain of an organization, as stored.
#[derive(Clone, Debug)]
pub struct Domain {
    pub id: DomainId,
    pub org_id: OrgId,
    pub name: DomainName,
    pub status: DomainStatus,
    /// Random, at least 128 bits; public once published, so stored as is.
    pub token: String,
    pub created_at: i64,
    /// When the current token was issued: a pending domain expires counting from here.
    pub token_issued_at: i64,
    pub verified_at: Option<i64>,
    pub last_checked_at: Option<i64>,
    /// Code of the last check's result (see [`CheckResult::code`]).
    pub last_check_result: Option<String>,
    /// The last check's result in words.
    pub last_check_message: Option<String>,
    /// Set while a verified domain's record is missing: the grace period runs from here.
    pub record_missing_since: Option<i64>,
    pub next_check_at: i64,
    pub(crate) claimed_until: Option<i64>,
}

impl Domain {
    /// The name at which the TXT record goes: the domain itself.
    pub fn txt_name(&self) -> &str {
        self.name.as_str()
    }
    /// The whole text of the TXT record.
    pub fn txt_value(&self) -> String {
        record_text(&self.token)
    }
    /// When a verified domain with a missing record lapses unless the record comes back.
    pub fn lapses_at(&self, settings: &DomainSettings) -> Option<i64> {
        match self.status {
            DomainStatus::Verified => self.record_missing_since.map(|t| t + settings.grace_ms),
            _ => None,
        }
    }
    /// When a pending domain expires unless its record is found.
    pub fn expires_at(&self, settings: &DomainSettings) -> Option<i64> {
        (self.status == DomainStatus::Pending).then(|| self.token_issued_at + settings.pending_ms)
    }
}

/// Timing rules, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct DomainSettings {
    /// Time between two checks of one domain by the job.
    pub recheck_ms: i64,
    /// How long a verified domain may miss its record before it lapses.
    pub grace_ms: i64,
    /// How long a pending domain waits for its record before it expires.
    pub pending_ms: i64,
}

impl DomainSettings {
    pub fn from_config(config: &crate::Config) -> Self {
        let ms = |n: u64, unit: i64| {
            i64::try_from(n)
                .unwrap_or(i64::MAX / unit)
                .saturating_mul(unit)
        };
        DomainSettings {
            recheck_ms: ms(config.domain_recheck_hours.max(1), 3_600_000),
            grace_ms: ms(config.domain_grace_days, DAY_MS),
            pending_ms: ms(config.domain_pending_days.max(1), DAY_MS),
        }
    }
}

/// What can go wrong with domains, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(
        "\u{201c}{0}\u{201d} is not a valid domain name: enter a name such as example.com (letters, digits and hyphens; at least two labels)"
    )]
    InvalidDomain(String),
    #[error(
        "\u{201c}{0}\u{201d} is an IP address; enter your email domain instead, such as example.com"
    )]
    IpAddress(String),
    #[error(
        "\u{201c}{0}\u{201d} is not just a domain name: leave out https://, paths and ports and enter only the domain, such as example.com"
    )]
    NotJustADomain(String),
    #[error(
        "\u{201c}{0}\u{201d} is an email address; enter only the part after @, such as example.com"
    )]
    EmailNotDomain(String),
    #[error(
        "{0} is a public mail domain that anyone can use; only a domain your organization owns can be verified"
    )]
    PublicMailDomain(String),
    #[error("{0} is already on this organization's list of domains")]
    AlreadyAdded(String),
    #[error(
        "{0} is already verified by another organization; a domain can be verified by only one organization at a time. If your organization owns it, contact support"
    )]
    VerifiedElsewhere(String),
    #[error("there is no such domain in this organization")]
    NotFound,
    #[error(
        "the verification token of {0} has expired; retry with a new token and publish the new record"
    )]
    Expired(String),
    #[error("{0} is {1}; only an expired domain gets a new token")]
    NotExpired(String, &'static str),
    #[error(
        "{domain} still has {count} managed account{plural}; delete them or change their email addresses before removing the domain",
        plural = if *count == 1 { "" } else { "s" }
    )]
    InUse { domain: String, count: i64 },
    #[error(transparent)]
    DnsSetup(#[from] DnsSetupError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How DomainError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<DomainError> for AppError {
    fn from(err: DomainError) -> AppError {
        use axum::http::StatusCode as S;
        let (status, code) = match &err {
            DomainError::InvalidDomain(_) => (S::BAD_REQUEST, "invalid_domain"),
            DomainError::IpAddress(_) => (S::BAD_REQUEST, "ip_address"),
            DomainError::NotJustADomain(_) => (S::BAD_REQUEST, "not_a_domain"),
            DomainError::EmailNotDomain(_) => (S::BAD_REQUEST, "email_not_domain"),
            DomainError::PublicMailDomain(_) => (S::BAD_REQUEST, "public_mail_domain"),
            DomainError::AlreadyAdded(_) => (S::CONFLICT, "domain_exists"),
            DomainError::VerifiedElsewhere(_) => (S::CONFLICT, "domain_verified_elsewhere"),
            DomainError::NotFound => (S::NOT_FOUND, "domain_not_found"),
            DomainError::Expired(_) => (S::CONFLICT, "domain_expired"),
            DomainError::NotExpired(..) => (S::CONFLICT, "domain_not_expired"),
            DomainError::InUse { .. } => (S::CONFLICT, "domain_in_use"),
            DomainError::DnsSetup(_) | DomainError::Mail(_) | DomainError::Db(_) => {
                return AppError::Internal(err.into());
            }
        };
        AppError::client(status, code, err.to_string())
    }
}

/// Who makes a change: an admin scope's actor or the re-verification job.
pub(crate) struct By<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) meta: &'a RequestMeta,
}

impl<'a> By<'a> {
    fn scope(scope: &'a AdminScope) -> Self {
        By {
            actor: scope.actor(),
            meta: scope.meta(),
        }
    }
}

/// Records an event about `domain` in the caller's transaction.
async fn audit_domain(
    tx: &mut Tx,
    now: i64,
    by: &By<'_>,
    action: AuditAction,
    domain: &Domain,
    mut details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    if let Some(map) = details.as_object_mut() {
        map.insert("domain".into(), domain.name.as_str().into());
    }
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(domain.org_id),
            action,
            actor: by.actor,
            target: Some(Target {
                kind: "domain",
                id: domain.id.to_string(),
            }),
            meta: by.meta,
            details,
        },
    )
    .await
}

/// A fresh verification token: 256 random bits, URL-safe base64.
fn new_token() -> String {
    crate::secrets::new_token("")
}

/// Adds a domain to the organization as `pending` with a new token.
pub async fn add(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    settings: &DomainSettings,
    raw: &str,
) -> Result<Domain, DomainError> {
    let name = DomainName::parse(raw)?;
    let org_id = scope.org().id;
    if store::verified_elsewhere(&mut **tx, org_id, &name).await? {
        return Err(DomainError::VerifiedElsewhere(name.to_string()));
    }
    let domain = Domain {
        id: DomainId::new(),
        org_id,
        name,
        status: DomainStatus::Pending,
        token: new_token(),
        created_at: now,
        token_issued_at: now,
        verified_at: None,
        last_checked_at: None,
        last_check_result: None,
        last_check_message: None,
        record_missing_since: None,
        next_check_at: now + settings.recheck_ms.min(settings.pending_ms),
        claimed_until: None,
    };
    store::insert(tx, &domain, now).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            DomainError::AlreadyAdded(domain.name.to_string())
        } else {
            e.into()
        }
    })?;
    let details =
        serde_json::json!({ "txt_name": domain.txt_name(), "txt_value": domain.txt_value() });
    audit_domain(
        tx,
        now,
        &By::scope(scope),
        AuditAction::DomainAdded,
        &domain,
        details,
    )
    .await?;
    Ok(domain)
}

/// One domain of the organization.
pub async fn get(db: &Db, org: OrgId, id: DomainId) -> Result<Domain, DomainError> {
    store::by_id(db.pool(), org, id)
        .await?
        .ok_or(DomainError::NotFound)
}

/// The organization's domains, by name.
pub async fn list(db: &Db, org: OrgId) -> Result<Vec<Domain>, DomainError> {
    Ok(store::list(db.pool(), org).await?)
}

/// "Verify now": looks the record up and applies the result. The lookup runs outside any
/// transaction (it may take the whole DNS timeout, and a SQLite write transaction would hold
/// every other writer that long); the result is then applied to the row as it is by then.
/// A record that is found while another organization holds the domain is refused and
/// changes nothing.
pub async fn verify_now(
    db: &Db,
    lookup: &TxtLookup,
    now: i64,
    scope: &AdminScope,
    settings: &DomainSettings,
    base_url: &str,
    id: DomainId,
) -> Result<Domain, DomainError> {
    let domain = get(db, scope.org().id, id).await?;
    if domain.status == DomainStatus::Expired {
        return Err(DomainError::Expired(domain.name.to_string()));
    }
    let answer = lookup.lookup(&domain.name).await;
    let mut tx = db.begin().await?;
    let domain = apply_manual(&mut tx, now, scope, settings, base_url, id, &answer).await?;
    tx.commit().await?;
    Ok(domain)
}

/// Applies an admin's lookup `answer` to the domain inside `tx` (see [`verify_now`]).
pub async fn apply_manual(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    settings: &DomainSettings,
    base_url: &str,
    id: DomainId,
    answer: &TxtAnswer,
) -> Result<Domain, DomainError> {
    let org_id = scope.org().id;
    if !store::lock(tx, Some(org_id), id).await? {
        return Err(DomainError::NotFound);
    }
    let domain = store::by_id(&mut **tx, org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    if domain.status == DomainStatus::Expired {
        return Err(DomainError::Expired(domain.name.to_string()));
    }
    let (domain, _) = recheck::apply(
        tx,
        now,
        &By::scope(scope),
        settings,
        base_url,
        domain,
        answer,
        true,
    )
    .await?;
    Ok(domain)
}

/// Issues a new token for an expired domain, which becomes pending again.
pub async fn renew_token(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    settings: &DomainSettings,
    id: DomainId,
) -> Result<Domain, DomainError> {
    let org_id = scope.org().id;
    if !store::lock(tx, Some(org_id), id).await? {
        return Err(DomainError::NotFound);
    }
    let domain = store::by_id(&mut **tx, org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    if domain.status != DomainStatus::Expired {
        return Err(DomainError::NotExpired(
            domain.name.to_string(),
            domain.status.as_str(),
        ));
    }
    let renewed = Domain {
        status: DomainStatus::Pending,
        token: new_token(),
        token_issued_at: now,
        verified_at: None,
        last_checked_at: None,
        last_check_result: None,
        last_check_message: None,
        record_missing_since: None,
        next_check_at: now + settings.recheck_ms.min(settings.pending_ms),
        claimed_until: None,
        ..domain
    };
    store::renew(tx, &renewed, now).await?;
    let details = serde_json::json!({ "txt_value": renewed.txt_value() });
    audit_domain(
        tx,
        now,
        &By::scope(scope),
        AuditAction::DomainTokenRenewed,
        &renewed,
        details,
    )
    .await?;
    Ok(renewed)
}

/// Removes a domain from the organization. Refused while managed accounts (not deleted) of
/// the organization have an email address on it.
pub async fn remove(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: DomainId,
) -> Result<(), DomainError> {
    let org_id = scope.org().id;
    // The row lock first: account creation takes it too (see `is_email_domain_verified`), so
    // the count below cannot miss an account being created at the same time.
    if !store::lock(tx, Some(org_id), id).await? {
        return Err(DomainError::NotFound);
    }
    let domain = store::by_id(&mut **tx, org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let count = store::count_managed_accounts(&mut **tx, org_id, &domain.name).await?;
    if count > 0 {
        return Err(DomainError::InUse {
            domain: domain.name.to_string(),
            count,
        });
    }
    store::delete(tx, id).await?;
    let details = serde_json::json!({ "status": domain.status.as_str() });
    audit_domain(
        tx,
        now,
        &By::scope(scope),
        AuditAction::DomainRemoved,
        &domain,
        details,
    )
    .await?;
    Ok(())
}

/// The organization's verified domains, by name.
pub async fn verified_domains<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    org: OrgId,
) -> Result<Vec<String>, sqlx::Error> {
    store::verified_domains(exec, org).await
}

/// **The** question the rest of the service asks about domains: is `email_domain` (the part
/// of an email address after `@`) a verified domain of organization `org`?
///
/// Call it inside the transaction that relies on the answer: creating a managed account,
/// executing a migration, admitting an SSO sign-in. While the answer is `true` the domain's
/// row stays share-locked until that transaction ends, so a concurrent removal or lapse of the
/// domain waits for it and then sees its effect (the managed-account count that blocks
/// removal, for instance), while the sign-ins of one domain never wait for each other. A domain in its grace period (record missing, not yet lapsed) still
/// counts as verified; `pending`, `lapsed` and `expired` domains do not.
pub async fn is_email_domain_verified(
    tx: &mut Tx,
    org: OrgId,
    email_domain: &str,
) -> Result<bool, sqlx::Error> {
    store::lock_verified(tx, org, &normalized_domain(email_domain)).await
}

/// [`is_email_domain_verified`] as a statement of `batch`: the domain is verified when the
/// statement returned a row.
pub fn email_domain_verified_in(batch: &mut Batch, org: OrgId, email_domain: &str) -> usize {
    store::lock_verified_in(batch, org, &normalized_domain(email_domain))
}

/// [`email_domain_verified_in`] for many `(organization, email domain)` pairs in one statement
/// of `batch`; read it with [`VerifiedPairs::of`].
pub fn email_domains_verified_in(
    batch: &mut Batch,
    dialect: crate::db::Dialect,
    pairs: &[(OrgId, &str)],
) -> usize {
    let pairs: Vec<(OrgId, String)> = pairs
        .iter()
        .map(|(org, domain)| (*org, normalized_domain(domain)))
        .collect();
    store::lock_verified_pairs_in(batch, dialect, &pairs)
}

/// The pairs [`email_domains_verified_in`]'s statement found verified.
pub struct VerifiedPairs(std::collections::HashSet<(String, String)>);

impl VerifiedPairs {
    pub fn of(outcome: &crate::db::Outcome) -> Result<VerifiedPairs, sqlx::Error> {
        use sqlx::Row;
        outcome
            .rows
            .iter()
            .map(|row| Ok((row.try_get("org_id")?, row.try_get("domain")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map(VerifiedPairs)
    }

    /// Whether the email domain is verified for `org`.
    pub fn holds(&self, org: OrgId, email_domain: &str) -> bool {
        self.0
            .contains(&(org.to_string(), normalized_domain(email_domain)))
    }
}

fn normalized_domain(email_domain: &str) -> String {
    email_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_text_and_token_strength() {
        let token = new_token();
        assert!(token.len() >= 22, "at least 128 bits in base64");
        assert_eq!(
            record_text(&token),
            format!("nulab-pass-verification={token}")
        );
        assert_ne!(new_token(), token);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
