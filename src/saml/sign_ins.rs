//! Parked sign-ins completed together. Every IdP-initiated sign-in ends with the browser's
//! return to `/sso/{id}/continue` ([`super::acs_grant`]), whose transaction spends the parked
//! grant and writes the sign-in (last sign-in time, SAML session, audit event). Under load the
//! returns waiting at the same time are completed by group commit ([`db::Committer`]): one
//! statement spends all their grants, one batch writes their rows (one statement for all their
//! last sign-in times, one for their SAML sessions, one reads their organizations' session
//! lifetimes) and takes each audit chain's head once, one commit. Each caller is answered after
//! that commit, and only with its own outcome: a grant another request spent first signs nobody
//! in and keeps nothing of its own, whatever the others do; a grant named twice in one group is
//! spent by the first naming it only. A return that waits alone is completed on its own, as before, and a group
//! that fails is completed again one by one.
//!
//! Rule 6 holds: each sign-in's audit event commits in the same transaction as its writes.
//! The chain stays whole: a chain's head is advanced once by the number of its events in the
//! group, and they are numbered and hashed in turn, each after the one before.

use std::collections::HashSet;
use std::sync::Arc;

use super::Connection;
use super::acs_grant::{self, Grant, Writes};
use crate::accounts::Account;
use crate::audit::{self, RequestMeta};
use crate::db::{self, Batch, Committer, Db, DialectSql, Grouped, Opening, Outcome};

/// The most sign-ins completed together: one group's audit chain heads are held on PostgreSQL
/// until its commit, and its callers wait for the slowest statement of it.
const MAX_GROUP: usize = 32;

/// One parked sign-in to complete.
pub struct Completion {
    /// The key of the handle in the browser's cookie ([`crate::secrets::token_key`]), which
    /// names the parked grant.
    pub handle_key: String,
    pub connection: Arc<Connection>,
    pub account: Account,
    pub grant: Grant,
    pub meta: RequestMeta,
    /// Joins the audit event's details.
    pub extra: serde_json::Value,
    pub sign_in_id: String,
    pub now: i64,
}

impl Completion {
    fn writes(&self) -> Writes<'_> {
        Writes {
            connection: &self.connection,
            account: &self.account,
            grant: &self.grant,
            meta: &self.meta,
            sign_in_id: &self.sign_in_id,
            now: self.now,
        }
    }
}

/// A completed sign-in's session lifetime (`None`: the server's inactivity timeout applies);
/// `None` when the grant was spent by another request first, and nothing was kept.
pub type Completed = Option<Option<i64>>;

/// Completes parked sign-ins (see the module's text).
pub struct SignIns {
    db: Db,
}

/// The committer of `db`'s parked sign-ins, one per server.
pub fn committer(db: Db) -> Committer<SignIns> {
    Committer::new(SignIns { db }, MAX_GROUP)
}

pub(super) const SPEND: &str =
    "UPDATE saml_pending_sign_ins SET used_at = $2 WHERE handle_hash = $1 AND used_at IS NULL";

/// Spends the grants whose handles' keys are the JSON array `$1`, each once: the keys of
/// those it spent.
static SPEND_ALL: DialectSql = DialectSql::new(|d| {
    format!(
        "UPDATE saml_pending_sign_ins SET used_at = $2 WHERE {} \
         AND used_at IS NULL RETURNING handle_hash",
        db::in_json_texts(d, "handle_hash", "$1")
    )
});

/// Spends the grant of `handle_key` once, in the transaction that completes its sign-in.
pub(super) fn push_spend(batch: &mut Batch, handle_key: &str, now: i64) {
    batch.push(SPEND, vec![handle_key.into(), now.into()]);
}

/// Whether [`push_spend`]'s statement, the first of `outcomes`, spent the grant (`false`:
/// another request spent it first).
pub(super) fn spent_once(outcomes: &[Outcome]) -> bool {
    outcomes.first().is_some_and(|s| s.affected == 1)
}

impl Grouped for SignIns {
    type Job = Completion;
    type Answer = Completed;

    async fn alone(&self, job: &Completion) -> Result<Completed, sqlx::Error> {
        let mut spend = Batch::new();
        push_spend(&mut spend, &job.handle_key, job.now);
        acs_grant::commit(
            Opening::Begin(&self.db),
            &job.writes(),
            job.extra.clone(),
            spend,
            spent_once,
        )
        .await
    }

    async fn together(&self, jobs: &[Completion]) -> Result<Vec<Completed>, sqlx::Error> {
        let now = jobs.iter().map(|j| j.now).max().unwrap_or_default();
        let list = db::json_texts(jobs.iter().map(|j| &j.handle_key));
        let mut spend = Batch::new();
        spend.push(
            SPEND_ALL.get(self.db.dialect()),
            vec![list.into(), now.into()],
        );
        let (tx, outcomes) = self.db.begin_with(spend).await?;
        let mut spent = HashSet::new();
        for row in outcomes
            .first()
            .map(|o| o.rows.as_slice())
            .unwrap_or_default()
        {
            spent.insert(sqlx::Row::try_get::<String, _>(row, "handle_hash")?);
        }
        // A grant signs in once: the first job naming it (`remove`), never a second.
        let (completing, jobs_at): (Vec<&Completion>, Vec<usize>) = jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| spent.remove(&j.handle_key))
            .map(|(at, j)| (j, at))
            .unzip();
        let mut answers: Vec<Completed> = jobs.iter().map(|_| None).collect();
        if completing.is_empty() {
            tx.rollback().await?;
            return Ok(answers);
        }
        let writes: Vec<Writes<'_>> = completing.iter().map(|j| j.writes()).collect();
        let mut batch = Batch::new();
        let lifetimes = Writes::push_all(&mut batch, self.db.dialect(), &writes, now);
        let actors: Vec<audit::Actor> = completing.iter().map(|j| j.account.actor()).collect();
        let events: Vec<audit::Event<'_>> = writes
            .iter()
            .zip(&completing)
            .zip(&actors)
            .map(|((w, j), actor)| w.event(actor, j.extra.clone()))
            .collect();
        let (mut placed, outcomes) =
            audit::record_all_after(Opening::Open(tx), batch, now, &events).await?;
        let lifetimes = lifetimes.ms(&outcomes, completing.iter().map(|j| &j.account))?;
        // As for one sign-in ([`acs_grant::commit`]): each browser learns of its sign-in from its
        // session, written by a synchronous commit after this one.
        placed.defer_flush();
        placed.commit().await?;
        for (at, lifetime) in jobs_at.into_iter().zip(lifetimes) {
            answers[at] = Some(lifetime);
        }
        Ok(answers)
    }
}
