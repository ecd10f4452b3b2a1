//! Applying a check to a domain (shared by "verify now" and the job), and the re-verification
//! job itself: claims due domains, looks each up outside any transaction, then applies the
//! result to the row as it is by then. Several server instances can run it at once: a claim
//! is a lease in the row (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and a result is applied
//! only while its claim still stands.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{
    By, Change, CheckResult, Domain, DomainError, DomainSettings, DomainStatus, TxtAnswer,
    TxtLookup, audit_domain, decide, store,
};
use crate::AppState;
use crate::audit::{Actor, AuditAction, RequestMeta};
use crate::db::{Db, Tx};
use crate::mail::{self, Mail, MailAction};

/// How long a claim keeps other instances off a domain (a batch of lookups fits well inside).
const LEASE_MS: i64 = 10 * 60 * 1000;
/// Domains claimed at a time.
const BATCH: i64 = 20;
/// Earliest retry after a check that changed nothing but found no answer past a deadline.
const RETRY_FLOOR_MS: i64 = 15 * 60 * 1000;
/// How often the job looks for due domains (each domain is due once per recheck interval).
const POLL: Duration = Duration::from_secs(60);
/// The job's name in audit events.
const JOB: &str = "domains.recheck";

/// What one run of [`recheck_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecheckSummary {
    pub checked: u32,
    pub verified: u32,
    pub record_missing: u32,
    pub restored: u32,
    pub lapsed: u32,
    pub expired: u32,
    /// Lookups that got no answer (timeouts, SERVFAIL, ...).
    pub dns_failures: u32,
}

/// Checks every domain that is due (pending, verified and lapsed ones whose next check time has
/// come), as of `now`. Tests call it directly with a moved clock; the job calls it every minute.
pub async fn recheck_all(
    db: &Db,
    lookup: &TxtLookup,
    now: i64,
    settings: &DomainSettings,
    base_url: &str,
) -> Result<RecheckSummary, DomainError> {
    let mut summary = RecheckSummary::default();
    let lease_until = now + LEASE_MS;
    loop {
        let claimed = store::claim_due(
            &mut *db.write().await?,
            db.dialect(),
            now,
            lease_until,
            BATCH,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(summary);
        }
        for domain in claimed {
            let answer = lookup.lookup(&domain.name).await;
            let mut tx = db.begin().await?;
            match apply_claimed(
                &mut tx,
                now,
                lease_until,
                settings,
                base_url,
                &domain,
                &answer,
            )
            .await
            {
                Ok(Some(change)) => {
                    tx.commit().await?;
                    summary.checked += 1;
                    if matches!(answer, TxtAnswer::Failure(_)) {
                        summary.dns_failures += 1;
                    }
                    match change {
                        Change::Verified => summary.verified += 1,
                        Change::RecordMissing => summary.record_missing += 1,
                        Change::RecordRestored => summary.restored += 1,
                        Change::Lapsed => summary.lapsed += 1,
                        Change::Expired => summary.expired += 1,
                        Change::None | Change::VerificationFailed => {}
                    }
                }
                // Someone else checked it meanwhile (an admin, or an instance whose lease
                // replaced ours): their result stands.
                Ok(None) => tx.rollback().await?,
                // The claim stays, so the domain is retried once the lease ends.
                Err(err) => {
                    tx.rollback().await?;
                    tracing::warn!(domain_id = %domain.id, error = %err, "domain re-check failed");
                }
            }
        }
    }
}

/// Applies the job's `answer` if its claim on the domain still stands.
async fn apply_claimed(
    tx: &mut Tx,
    now: i64,
    lease_until: i64,
    settings: &DomainSettings,
    base_url: &str,
    claimed: &Domain,
    answer: &TxtAnswer,
) -> Result<Option<Change>, DomainError> {
    if !store::lock(tx, None, claimed.id).await? {
        return Ok(None);
    }
    let Some(domain) = store::by_id_any(&mut **tx, claimed.id).await? else {
        return Ok(None);
    };
    if domain.claimed_until != Some(lease_until) || domain.status == DomainStatus::Expired {
        return Ok(None);
    }
    let actor = Actor::System(JOB);
    let meta = RequestMeta::default();
    let by = By {
        actor: &actor,
        meta: &meta,
    };
    let (_, change) = apply(tx, now, &by, settings, base_url, domain, answer, false).await?;
    Ok(Some(change))
}

/// Applies a lookup's answer to `domain` (locked and current in `tx`): stores the check,
/// changes the status by [`decide`], writes the audit event and queues the admins' emails.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply(
    tx: &mut Tx,
    now: i64,
    by: &By<'_>,
    settings: &DomainSettings,
    base_url: &str,
    domain: Domain,
    answer: &TxtAnswer,
    manual: bool,
) -> Result<(Domain, Change), DomainError> {
    let mut result = CheckResult::of(answer, &domain.txt_value());
    let mut change = decide(&domain, &result, now, settings, manual);
    if change == Change::Verified
        && store::verified_elsewhere(&mut **tx, domain.org_id, &domain.name).await?
    {
        if manual {
            return Err(DomainError::VerifiedElsewhere(domain.name.to_string()));
        }
        result = CheckResult::VerifiedElsewhere;
        change = match domain.expires_at(settings) {
            Some(deadline) if now >= deadline => Change::Expired,
            _ => Change::None,
        };
    }

    let next = next_state(&domain, &result, change, now, settings);
    store::save_check(tx, &next, now).await?;

    let report = Report {
        by,
        settings,
        base_url,
        manual,
    };
    report
        .change(tx, now, &domain, &next, &result, change)
        .await?;
    Ok((next, change))
}

/// The domain after a check: the result stored, the status changed, the next check planned.
fn next_state(
    domain: &Domain,
    result: &CheckResult,
    change: Change,
    now: i64,
    settings: &DomainSettings,
) -> Domain {
    let mut next = Domain {
        last_checked_at: Some(now),
        last_check_result: Some(result.code().to_string()),
        last_check_message: Some(result.describe()),
        claimed_until: None,
        ..domain.clone()
    };
    match change {
        Change::Verified => {
            next.status = DomainStatus::Verified;
            next.verified_at = Some(now);
            next.record_missing_since = None;
        }
        Change::RecordMissing => next.record_missing_since = Some(now),
        Change::RecordRestored => next.record_missing_since = None,
        Change::Lapsed => {
            next.status = DomainStatus::Lapsed;
            next.record_missing_since = None;
        }
        Change::Expired => next.status = DomainStatus::Expired,
        Change::None | Change::VerificationFailed => {}
    }
    // Come back when the interval ends, or sooner when a deadline (end of grace, expiry)
    // falls before it; never at once, so a failing lookup is not retried in a loop.
    let deadline = next
        .lapses_at(settings)
        .or_else(|| next.expires_at(settings))
        .unwrap_or(i64::MAX);
    next.next_check_at = (now + settings.recheck_ms)
        .min(deadline)
        .max(now + RETRY_FLOOR_MS.min(settings.recheck_ms));
    next
}

/// Who checked and how: what the audit events and the admins' emails of a change need.
struct Report<'a> {
    by: &'a By<'a>,
    settings: &'a DomainSettings,
    base_url: &'a str,
    manual: bool,
}

impl Report<'_> {
    /// Writes the audit event of `change` and queues the admins' emails it calls for.
    async fn change(
        &self,
        tx: &mut Tx,
        now: i64,
        domain: &Domain,
        next: &Domain,
        result: &CheckResult,
        change: Change,
    ) -> Result<(), DomainError> {
        let (by, settings, base_url, manual) = (self.by, self.settings, self.base_url, self.manual);
        let reason = serde_json::json!({ "reason": result.code(), "result": result.describe() });
        match change {
            Change::None => {}
            Change::Verified => {
                let again = domain.status == DomainStatus::Lapsed;
                let details = serde_json::json!({ "again": again, "manual": manual });
                audit_domain(tx, now, by, AuditAction::DomainVerified, next, details).await?;
            }
            Change::VerificationFailed => {
                audit_domain(
                    tx,
                    now,
                    by,
                    AuditAction::DomainVerificationFailed,
                    next,
                    reason,
                )
                .await?;
            }
            Change::RecordMissing => {
                audit_domain(tx, now, by, AuditAction::DomainRecordMissing, next, reason).await?;
                warn_admins(tx, now, next, settings, base_url, Warning::Missing).await?;
            }
            Change::RecordRestored => {
                let details = serde_json::json!({ "missing_since": domain.record_missing_since });
                audit_domain(
                    tx,
                    now,
                    by,
                    AuditAction::DomainRecordRestored,
                    next,
                    details,
                )
                .await?;
            }
            Change::Lapsed => {
                audit_domain(tx, now, by, AuditAction::DomainLapsed, next, reason).await?;
                warn_admins(tx, now, next, settings, base_url, Warning::Lapsed).await?;
            }
            Change::Expired => {
                audit_domain(tx, now, by, AuditAction::DomainExpired, next, reason).await?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Warning {
    Missing,
    Lapsed,
}

/// Queues an email to every active admin of the domain's organization.
async fn warn_admins(
    tx: &mut Tx,
    now: i64,
    domain: &Domain,
    settings: &DomainSettings,
    base_url: &str,
    warning: Warning,
) -> Result<(), DomainError> {
    let Some((slug, org_name)) = store::org_label(&mut **tx, domain.org_id).await? else {
        return Ok(());
    };
    let name = domain.name.as_str();
    let record = format!("{name}. IN TXT \"{}\"", domain.txt_value());
    let (kind, subject, paragraphs) = match warning {
        Warning::Missing => {
            let lapses = domain
                .lapses_at(settings)
                .map(crate::clock::format_time)
                .unwrap_or_default();
            (
                crate::mail::MailKind::DomainRecordMissing,
                format!("Action needed: the verification record of {name} is missing"),
                vec![
                    format!(
                        "nulab-pass could not find the TXT record that proves {org_name} owns {name}."
                    ),
                    format!(
                        "Publish it again before {lapses}. After that the domain lapses: no new managed accounts or migrations on it, and no SSO sign-in for its accounts until it is verified again."
                    ),
                    format!("The record: {record}"),
                ],
            )
        }
        Warning::Lapsed => (
            crate::mail::MailKind::DomainLapsed,
            format!("{name} is no longer verified for {org_name}"),
            vec![
                format!(
                    "The TXT record that proves {org_name} owns {name} stayed missing through the grace period, so the domain has lapsed."
                ),
                "Until it is verified again there are no new managed accounts or migrations on it, and its accounts cannot sign in through SSO.".to_string(),
                format!("Publish this record and the domain is verified again at the next check: {record}"),
            ],
        ),
    };
    for to in crate::orgs::store::admin_emails(&mut **tx, domain.org_id).await? {
        let mail = Mail {
            kind,
            to,
            subject: subject.clone(),
            paragraphs: paragraphs.clone(),
            action: Some(MailAction {
                label: "Open the organization's domains".to_string(),
                url: format!("{base_url}/admin/{slug}/domains"),
            }),
            closing: vec![
                "You receive this email because you are an admin of this organization.".to_string(),
            ],
        };
        mail::enqueue(tx, now, &mail).await?;
    }
    Ok(())
}

/// Starts the re-verification job: every minute, [`recheck_all`] with the configured name
/// servers and timing.
pub fn spawn_recheck(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let settings = DomainSettings::from_config(&state.config);
        let base_url = state.base_url();
        loop {
            match TxtLookup::from_config(&state.config) {
                Ok(lookup) => {
                    let now = state.clock.now_ms();
                    match recheck_all(&state.db, &lookup, now, &settings, &base_url).await {
                        Ok(summary) if summary.checked > 0 => {
                            tracing::info!(?summary, "domains re-checked");
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "domain re-check failed"),
                    }
                }
                Err(err) => tracing::warn!(error = %err, "domain re-check cannot resolve"),
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
