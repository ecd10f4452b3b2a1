//! Asking for migrations: one request per eligible account (checked against verified domains
//! and free seats, counting pending requests), resending, cancelling, the link lifetime.

use super::*;

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
pub(super) async fn resolve(
    tx: &mut Tx,
    wanted: &Wanted,
) -> Result<Result<Account, Ineligible>, sqlx::Error> {
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
pub(super) async fn check_account(
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
    } else if !orgs::store::sole_admin_of(&mut **tx, account.id, org)
        .await?
        .is_empty()
    {
        Err(Ineligible::LastAdminElsewhere)
    } else {
        Ok(())
    })
}

pub(super) fn domain_of(email: &str) -> String {
    email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// How an admin is named to users.
pub(super) fn asker(actor: &Actor) -> String {
    match actor {
        Actor::Account { email, .. } => email.clone(),
        Actor::ApiToken { name, .. } => {
            format!("An administrator (API token \u{201c}{name}\u{201d})")
        }
        _ => "An administrator".to_string(),
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
    let seats = crate::orgs::seats::of(&mut **tx, org.id).await?;
    let mut free = seats.subscribed - seats.used - store::pending_count(&mut **tx, org.id).await?;
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
pub(super) async fn create_one(
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

pub(super) fn link(base_url: &str, token: &str) -> String {
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
