//! The user's side of a migration: the consent link, the proof of control, and executing the
//! migration in one transaction (or declining it).

use super::*;
use crate::api_tokens::holders;

/// A live consent link: its request, account and organization.
pub struct Consent {
    pub request: MigrationRequest,
    pub account: Account,
    pub org: Org,
    token_hash: String,
}

/// Why a request's link no longer works, if it does not.
pub(super) fn link_state(request: &MigrationRequest, now: i64) -> Result<(), MigrationError> {
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
pub(super) fn may_violate_unseen(policy: &PasswordPolicy, account: &Account, now: i64) -> bool {
    let nulab = accounts::nulab_policy();
    policy.min_length > nulab.min_length
        || (policy.require_three_classes && !nulab.require_three_classes)
        || (policy.reject_common && !nulab.reject_common)
        || policy.is_expired(account.password_changed_at, now)
}

/// Checks the password proof (and the authenticator code of an account with a second factor)
/// outside the migration's transaction (hashing is slow); a wrong one is counted towards the
/// request's limit. Returns the plaintext when it was checked.
pub(super) async fn check_proof(
    db: &Db,
    key: &crate::accounts::totp_key::TotpKey,
    config: &crate::Config,
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
    // The account's and the client address's sign-in limits count here too, so the consent
    // page is no way around them.
    if let Some(block) = accounts::throttle::paused(db, now, &consent.account, meta).await? {
        return Err(MigrationError::RateLimited(block.retry_after_secs(now)));
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
        && !crate::sign_in::second_factor::use_code(&mut tx, key, consent.account.id, code, now)
            .await?
    {
        Some(MigrationError::WrongCode)
    } else {
        None
    };
    let Some(failure) = failure else {
        accounts::throttle::clear(&mut tx, &consent.account).await?;
        tx.commit().await?;
        return Ok(Some(password.clone()));
    };
    let account = &consent.account;
    for block in
        accounts::throttle::count_failure(&mut tx, &config.limits, now, account, meta).await?
    {
        crate::sign_in::alert::after_block(&mut tx, config, now, Some(account), &block, meta)
            .await?;
    }
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

pub(super) async fn record(
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
    key: &crate::accounts::totp_key::TotpKey,
    config: &crate::Config,
    now: i64,
    token: &str,
    proof: Proof,
    meta: &RequestMeta,
) -> Result<(Account, Org), MigrationError> {
    let consent = consent(db, now, token).await?;
    let password = check_proof(db, key, config, now, &consent, &proof, meta).await?;
    let mut tx = db.begin().await?;
    let (request, account, involved) = match recheck(&mut tx, now, &consent).await? {
        Ok(found) => found,
        Err((request, why)) => {
            let org = &consent.org;
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
    };
    let executed = Executed {
        consent: &consent,
        request: &request,
        account: &account,
        password: password.as_deref(),
        involved: &involved,
    };
    let migrated = execute(&mut tx, now, executed, meta).await?;
    tx.commit().await?;
    Ok((migrated, consent.org.clone()))
}

/// What [`recheck`] finds: the request, its account and every organization the migration
/// changes (locked), or the request and why the account can no longer be migrated.
type Rechecked =
    Result<(MigrationRequest, Account, BTreeSet<OrgId>), (MigrationRequest, Ineligible)>;

/// Everything again, as it is now that this transaction holds the locks.
async fn recheck(tx: &mut Tx, now: i64, consent: &Consent) -> Result<Rechecked, MigrationError> {
    let org = &consent.org;
    // Domain row, then org rows: the order managed-account creation uses.
    let domain_ok =
        crate::domains::is_email_domain_verified(tx, org.id, &domain_of(&consent.account.email))
            .await?;
    let involved = lock_involved(tx, org.id, consent.account.id).await?;
    let request = store::by_token(&mut **tx, &consent.token_hash)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    link_state(&request, now)?;
    let account = accounts::store::by_id(&mut **tx, request.account_id)
        .await?
        .ok_or(MigrationError::LinkInvalid)?;
    let mut problem = check_account(tx, org.id, &account, domain_ok).await?.err();
    if problem.is_none() {
        let seats = crate::orgs::seats::of(&mut **tx, org.id).await?;
        if seats.used >= seats.subscribed {
            problem = Some(Ineligible::NoFreeSeats);
        }
    }
    Ok(match problem {
        Some(why) => Err((request, why)),
        None => Ok((request, account, involved)),
    })
}

/// Locks the row of the migration's organization and of every other it changes (those the
/// account is a member of, admins included, and those with a pending request for it), all in
/// id order ([`orgs::store::lock_all`]). So no admin elsewhere can leave or be demoted between
/// the checks and the end of the migration, and two migrations crossing each other's
/// organizations wait for each other instead of deadlocking on PostgreSQL. A membership or
/// request that appears before the locks are held is found by the next round and locked too.
async fn lock_involved(
    tx: &mut Tx,
    org: OrgId,
    account: AccountId,
) -> Result<BTreeSet<OrgId>, sqlx::Error> {
    let mut locked = BTreeSet::new();
    loop {
        let mut wanted = store::involved_orgs(&mut **tx, account).await?;
        wanted.insert(org);
        let new: BTreeSet<OrgId> = wanted.difference(&locked).copied().collect();
        if new.is_empty() {
            return Ok(locked);
        }
        orgs::store::lock_all(tx, &new).await?;
        locked.extend(new);
    }
}

/// What an accepted migration executes on.
#[derive(Clone, Copy)]
struct Executed<'a> {
    consent: &'a Consent,
    request: &'a MigrationRequest,
    account: &'a Account,
    /// The password typed on the consent page, when that was the proof.
    password: Option<&'a str>,
    /// Every organization the migration changes, its own included (rows locked).
    involved: &'a BTreeSet<OrgId>,
}

/// Rule 5 of the design, inside the caller's transaction: kind → managed, other orgs'
/// memberships removed, every sign-in ended, audit written, emails queued.
async fn execute(
    tx: &mut Tx,
    now: i64,
    e: Executed<'_>,
    meta: &RequestMeta,
) -> Result<Account, MigrationError> {
    let (org, account, request) = (&e.consent.org, e.account, e.request);
    if !store::decide(tx, request.id, MigrationStatus::Completed, None, now).await? {
        return Err(MigrationError::LinkDecided(MigrationStatus::Completed));
    }
    let policy = crate::accounts::store::policy(&mut **tx, org.id).await?;
    let must_change = policy.password_sign_in
        && match e.password {
            Some(p) => !policy.violations(p).is_empty(),
            None => may_violate_unseen(&policy, account, now),
        };
    if !store::make_managed(tx, account.id, org.id, must_change, now).await? {
        return Err(MigrationError::Precondition(Ineligible::AlreadyManaged));
    }
    let left = end_other_ties(tx, now, account, e, meta).await?;
    let sessions = crate::accounts::end_every_sign_in(tx, account.id, now).await?;
    // The managed account holds its address: an unconfirmed sign-up naming it gives way.
    let claim = crate::accounts::ownership::Claim::Migrated;
    crate::accounts::ownership::release_claims(tx, now, &account.email, account.id, claim, meta)
        .await?;
    record(
        tx,
        now,
        e.consent,
        AuditAction::MigrationAccepted,
        meta,
        serde_json::json!({
            "request": request.id.to_string(),
            "email": account.email,
            "memberships_ended": left,
            "sessions_ended": sessions,
            "must_change_password": must_change,
            "proof": if e.password.is_some() { "password" } else { "session" },
        }),
    )
    .await?;
    mails::user_completed(
        tx,
        now,
        org,
        account,
        &left,
        must_change,
        !policy.password_sign_in,
    )
    .await?;
    mails::admins_outcome(tx, now, org, request, MigrationStatus::Completed).await?;
    accounts::store::by_id(&mut **tx, account.id)
        .await?
        .ok_or(MigrationError::LinkInvalid)
}

/// Ends the account's memberships of other organizations and cancels their pending requests;
/// returns the names of the organizations it left.
async fn end_other_ties(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    e: Executed<'_>,
    meta: &RequestMeta,
) -> Result<Vec<String>, MigrationError> {
    let org = &e.consent.org;
    let others = store::other_orgs(&mut **tx, account.id, org.id).await?;
    store::delete_other_memberships(tx, account.id, org.id).await?;
    let mut cancelled = Vec::new();
    for stale in store::pending_elsewhere(tx, account.id, org.id).await? {
        let reason = Some("migrated_elsewhere");
        if store::decide(tx, stale.id, MigrationStatus::Cancelled, reason, now).await? {
            cancelled.push(stale);
        }
    }
    // Rows first, then every chain written below (and the migration's own) in chain order.
    audit::take_chains(tx, e.involved.iter().copied()).await?;
    for (other_org, _) in &others {
        audit::record(tx, now, audit::Event {
            org_id: Some(*other_org),
            action: AuditAction::MemberRemoved,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "email": account.email, "reason": "migrated_to_managed", "to_org": org.slug }),
        }).await?;
        let by = holders::ChangedBy {
            actor: &account.actor(),
            meta,
        };
        holders::revoke_held_by(
            tx,
            now,
            account.id,
            Some(*other_org),
            holders::Reason::Migrated,
            by,
        )
        .await?;
    }
    for stale in cancelled {
        audit::record(tx, now, audit::Event {
            org_id: Some(stale.org_id),
            action: AuditAction::MigrationCancelled,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "request": stale.id.to_string(), "reason": "migrated_elsewhere" }),
        }).await?;
    }
    Ok(others.into_iter().map(|(_, name)| name).collect())
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
    /// Other organizations of which the account is the only admin: migrating now would leave
    /// them without one, so agreeing is refused until the user fixes it (names).
    pub sole_admin_of: Vec<String>,
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
    let sso_ready = crate::saml::connections_of(db.pool(), consent.org.id)
        .await?
        .iter()
        .any(|c| c.routes(&domain));
    let sole_admin_of = orgs::store::sole_admin_of(db.pool(), consent.account.id, consent.org.id)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    Ok(ConsentView {
        sole_admin_of,
        other_orgs,
        sso_required: !policy.password_sign_in,
        sso_ready,
    })
}
