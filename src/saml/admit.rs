//! The ACS's account rules, after the signature check: the replay cache, the active managed
//! account of the connection's organization with the response's email, its domain verified (or
//! the organization's transition) and routed to the connection, and the request spent once.
//!
//! A response to a request of this browser is admitted in a transaction of its own ([`admit`]),
//! which stays open for the sign-in's writes. An IdP-initiated response is admitted and its
//! grant parked ([`super::acs_grant`]) by group commit ([`Arrivals`], a [`db::Committer`]): the
//! responses waiting at the same time share one transaction, in which one statement records all
//! their IDs in the replay cache, one reads their accounts, one their domains, and one parks the
//! grants of those admitted. Each is judged on its own, in arrival order, by the same rules as
//! alone: an ID recorded before, or by an admitted response before it in the group, refuses it
//! as replayed. A refused response keeps nothing: the IDs the group recorded for it alone are
//! forgotten in the same transaction, as its own transaction's rollback would. A response that
//! waits alone is admitted as before, and a group that fails is admitted again one by one.

use std::sync::Arc;

use super::acs::{Reason, Rejection, Verified};
use super::store::{self, ReplayKey};
use super::{Connection, acs_grant, mapping};
use crate::accounts::{self, Account, AccountKind, AccountStatus};
use crate::db::{self, Batch, Committer, Db, Grouped, Tx};

/// A response whose signatures and conditions hold, before the account rules.
pub(super) struct Checked {
    pub verified: Verified,
    pub email: accounts::Email,
    pub request: Option<store::PendingRequest>,
}

/// Everything the ACS decides, short of the session (the caller holds the request it answered).
pub(super) struct Admitted {
    pub account: Account,
    pub verified: Verified,
}

/// A refused response, with the request it answered.
pub(super) type Refused = (Rejection, Option<store::PendingRequest>);

/// The replay cache, the account rules, the domain rules and spending the request, in a
/// transaction they begin: their statements go to the database in one batch (one round trip
/// on SQLite, with the `BEGIN`), and their outcomes are judged in that order; a refusal rolls
/// all of them back. Admitted, the transaction stays open for the sign-in's writes.
pub(super) async fn admit(
    db: &Db,
    connection: &Connection,
    checked: Checked,
    now: i64,
) -> Result<Result<(Tx, Admitted), Refused>, sqlx::Error> {
    let Checked {
        verified,
        email,
        request,
    } = checked;
    let mut batch = Batch::new();
    store::remember_in(
        &mut batch,
        &connection.idp_entity_id,
        &verified.assertion_id,
        verified.response_id.as_deref(),
        verified.valid_until,
    );
    let account_at = accounts::store::by_email_in(&mut batch, &email);
    let domain_at =
        crate::domains::email_domain_verified_in(&mut batch, connection.org_id, email.domain());
    let request_at = request
        .as_ref()
        .map(|r| store::use_request_in(&mut batch, &r.id, now));
    // A failed statement rolls the transaction back before the error comes here.
    let (mut tx, outcomes) = match db.begin_with(batch).await {
        Ok(begun) => begun,
        // Only the replay cache's insert can break a unique rule here.
        Err(e) if db::is_unique_violation(&e) => {
            return Ok(Err((replayed(&verified), request)));
        }
        Err(e) => return Err(e),
    };
    let found = outcomes[account_at]
        .rows
        .first()
        .map(accounts::store::from_row)
        .transpose()?;
    let judged = match admit_account(found, connection, &email) {
        Err(rejection) => Err(rejection),
        Ok(account) => {
            let found = (
                account.created_at,
                !outcomes[domain_at].rows.is_empty(),
                request_at.is_none_or(|at| outcomes[at].affected == 1),
            );
            admit_domain(&mut tx, connection, &email, found, now)
                .await?
                .map(|()| account)
        }
    };
    match judged {
        Ok(account) => Ok(Ok((tx, Admitted { account, verified }))),
        Err(rejection) => {
            tx.rollback().await?;
            Ok(Err((rejection, request)))
        }
    }
}

fn replayed(verified: &Verified) -> Rejection {
    Rejection::new(
        Reason::Replayed,
        format!(
            "assertion {} or response {:?} was already accepted",
            verified.assertion_id, verified.response_id
        ),
    )
}

/// The email's domain is verified for the organization (or the account is one of those an
/// organization brought in from before domain verification, during its transition) and routed
/// to this connection; the request was spent once. `found` holds the account's creation time,
/// whether the domain's statement found it verified, and whether the request's was the one
/// that spent it.
async fn admit_domain(
    tx: &mut Tx,
    connection: &Connection,
    email: &accounts::Email,
    found: (i64, bool, bool),
    now: i64,
) -> Result<Result<(), Rejection>, sqlx::Error> {
    let (created_at, verified, request_spent) = found;
    let org = connection.org_id;
    if !verified && !crate::domains::transition::allows(tx, org, created_at, now).await? {
        return Ok(Err(Rejection::new(
            Reason::DomainNotVerified,
            format!("{} is not verified for the organization", email.domain()),
        )));
    }
    if !connection.routes(email.domain()) {
        return Ok(Err(Rejection::new(
            Reason::DomainNotRouted,
            format!("{} is not among the connection's domains", email.domain()),
        )));
    }
    if !request_spent {
        return Ok(Err(Rejection::new(
            Reason::Replayed,
            "the request was already answered",
        )));
    }
    Ok(Ok(()))
}

/// The active managed account of the connection's organization with this email, or why not.
fn admit_account(
    found: Option<Account>,
    connection: &Connection,
    email: &accounts::Email,
) -> Result<Account, Rejection> {
    let refused = |reason, detail: String| Err(Rejection::new(reason, detail));
    match found {
        None => refused(Reason::UnknownAccount, format!("no account uses {email}")),
        Some(a) if a.kind == AccountKind::Nulab => {
            refused(Reason::NotManaged, format!("{email} is a Nulab account"))
        }
        Some(a) if a.org_id != Some(connection.org_id) => refused(
            Reason::UnknownAccount,
            format!("{email} is a managed account of another organization"),
        ),
        Some(a) if a.status == AccountStatus::Suspended => {
            refused(Reason::AccountSuspended, format!("{email} is suspended"))
        }
        Some(a) => Ok(a),
    }
}

/// What an admitted response grants `account`.
pub(super) fn grant_of(
    account: &Account,
    verified: &Verified,
    connection: &Connection,
    idp_initiated: bool,
) -> acs_grant::Grant {
    acs_grant::Grant {
        account_id: account.id,
        assertion_id: verified.assertion_id.clone(),
        name: mapping::display_name(verified, &connection.settings),
        subject: verified.name_id.clone().map(|name_id| super::slo::Subject {
            name_id,
            format: verified.name_id_format.clone(),
            name_qualifier: verified.name_qualifiers.0.clone(),
            sp_name_qualifier: verified.name_qualifiers.1.clone(),
        }),
        session_index: verified.session_index.clone(),
        session_until: verified.session_not_on_or_after,
        idp_initiated,
    }
}

/// The most IdP-initiated responses admitted together: their callers wait for the slowest
/// statement of the group, and on PostgreSQL its domain rows stay share-locked until its commit.
const MAX_GROUP: usize = 32;

/// An IdP-initiated response, verified, to admit and park.
pub struct Arrival {
    pub connection: Arc<Connection>,
    pub verified: Verified,
    pub email: accounts::Email,
    pub now: i64,
}

impl Arrival {
    /// The IDs the replay cache keeps for it: the assertion's, and the response's.
    fn replay_keys(&self) -> Vec<ReplayKey> {
        let idp = &self.connection.idp_entity_id;
        std::iter::once(&self.verified.assertion_id)
            .chain(self.verified.response_id.as_ref())
            .map(|id| (idp.clone(), id.clone()))
            .collect()
    }
}

/// The handle of the parked grant (for the browser's cookie), or why the response was refused.
pub type Arrived = Result<String, Rejection>;

/// Admits IdP-initiated responses and parks their grants (see the module's text).
pub struct Arrivals {
    db: Db,
}

/// The committer of `db`'s IdP-initiated responses, one per server.
pub fn committer(db: Db) -> Committer<Arrivals> {
    Committer::new(Arrivals { db }, MAX_GROUP)
}

impl Grouped for Arrivals {
    type Job = Arrival;
    type Answer = Arrived;

    async fn alone(&self, job: &Arrival) -> Result<Arrived, sqlx::Error> {
        let checked = Checked {
            verified: job.verified.clone(),
            email: job.email.clone(),
            request: None,
        };
        let (tx, admitted) = match admit(&self.db, &job.connection, checked, job.now).await? {
            Ok(admitted) => admitted,
            Err((rejection, _)) => return Ok(Err(rejection)),
        };
        let grant = grant_of(&admitted.account, &job.verified, &job.connection, true);
        let mut park = Batch::new();
        let handles = acs_grant::park_all_in(
            &mut park,
            self.db.dialect(),
            &[(&job.connection, &grant, job.now)],
        )
        .map_err(|e| sqlx::Error::Encode(e.into()))?;
        tx.commit_with(park).await?;
        Ok(Ok(handles.into_iter().next().unwrap_or_default()))
    }

    async fn together(&self, jobs: &[Arrival]) -> Result<Vec<Arrived>, sqlx::Error> {
        let dialect = self.db.dialect();
        let keys: Vec<Vec<ReplayKey>> = jobs.iter().map(Arrival::replay_keys).collect();
        let mut batch = Batch::new();
        let ids: Vec<(&ReplayKey, i64)> = jobs
            .iter()
            .zip(&keys)
            .flat_map(|(job, keys)| keys.iter().map(|k| (k, job.verified.valid_until)))
            .collect();
        let remembered_at = store::remember_all_in(&mut batch, dialect, &ids);
        let emails: Vec<&accounts::Email> = jobs.iter().map(|j| &j.email).collect();
        let accounts_at = accounts::store::by_emails_in(&mut batch, dialect, &emails);
        let pairs: Vec<_> = jobs
            .iter()
            .map(|j| (j.connection.org_id, j.email.domain()))
            .collect();
        let domains_at = crate::domains::email_domains_verified_in(&mut batch, dialect, &pairs);
        let (mut tx, outcomes) = self.db.begin_with(batch).await?;
        // The IDs this group recorded, until an admitted response takes its own.
        let mut unclaimed = store::remembered(&outcomes[remembered_at])?;
        let found = accounts::store::by_emails_of(&outcomes[accounts_at])?;
        let verified = crate::domains::VerifiedPairs::of(&outcomes[domains_at])?;
        let mut answers: Vec<Arrived> = Vec::with_capacity(jobs.len());
        let mut grants = Vec::new();
        for (at, (job, keys)) in jobs.iter().zip(&keys).enumerate() {
            if !keys.iter().all(|k| unclaimed.contains(k)) {
                answers.push(Err(replayed(&job.verified)));
                continue;
            }
            let account = match admit_account(
                found.get(&job.email.normalized()).cloned(),
                &job.connection,
                &job.email,
            ) {
                Ok(account) => account,
                Err(rejection) => {
                    answers.push(Err(rejection));
                    continue;
                }
            };
            let domain = (
                account.created_at,
                verified.holds(job.connection.org_id, job.email.domain()),
                true,
            );
            if let Err(rejection) =
                admit_domain(&mut tx, &job.connection, &job.email, domain, job.now).await?
            {
                answers.push(Err(rejection));
                continue;
            }
            for key in keys {
                unclaimed.remove(key);
            }
            grants.push((at, grant_of(&account, &job.verified, &job.connection, true)));
            answers.push(Ok(String::new()));
        }
        if grants.is_empty() {
            tx.rollback().await?;
            return Ok(answers);
        }
        let mut park = Batch::new();
        // What the refused recorded, as their own rollback would (on PostgreSQL in the same
        // call as the grants).
        store::forget_all_in(&mut park, &unclaimed);
        let parking: Vec<_> = grants
            .iter()
            .map(|(at, grant)| (jobs[*at].connection.as_ref(), grant, jobs[*at].now))
            .collect();
        let handles = acs_grant::park_all_in(&mut park, dialect, &parking)
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
        tx.commit_with(park).await?;
        for ((at, _), handle) in grants.iter().zip(handles) {
            answers[*at] = Ok(handle);
        }
        Ok(answers)
    }
}
