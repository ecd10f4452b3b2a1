//! SQL of migration requests, their consent links and each org's link lifetime.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{MigrationId, MigrationRequest, MigrationStatus};
use crate::db::{Dialect, Tx, skip_locked};
use crate::ids::{AccountId, OrgId};

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

const COLUMNS: &str = "r.id, r.org_id, r.account_id, r.email, r.requested_by, r.status, r.failure, \
     r.requested_at, r.emailed_at, r.reminded_at, r.opened_at, r.decided_at, r.expires_at, \
     r.password_failures, r.password_failures_since";

fn from_row(row: &AnyRow) -> Result<MigrationRequest, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org: String = row.try_get("org_id")?;
    let account: String = row.try_get("account_id")?;
    let status: String = row.try_get("status")?;
    Ok(MigrationRequest {
        id: MigrationId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| bad("org_id"))?,
        account_id: AccountId::parse(&account).ok_or_else(|| bad("account_id"))?,
        email: row.try_get("email")?,
        requested_by: row.try_get("requested_by")?,
        status: MigrationStatus::parse(&status).ok_or_else(|| bad("status"))?,
        failure: row.try_get("failure")?,
        requested_at: row.try_get("requested_at")?,
        emailed_at: row.try_get("emailed_at")?,
        reminded_at: row.try_get("reminded_at")?,
        opened_at: row.try_get("opened_at")?,
        decided_at: row.try_get("decided_at")?,
        expires_at: row.try_get("expires_at")?,
        password_failures: row.try_get("password_failures")?,
        password_failures_since: row.try_get("password_failures_since")?,
    })
}

const INSERT: &str = "INSERT INTO migration_requests (id, org_id, account_id, email, requested_by, \
     status, token_hash, requested_at, emailed_at, expires_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $7, $8, $7)";

/// Inserts a pending request whose link was emailed at `now`.
pub(super) async fn insert(
    tx: &mut Tx,
    request: &MigrationRequest,
    token_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(request.id.to_string())
        .bind(request.org_id.to_string())
        .bind(request.account_id.to_string())
        .bind(request.email.clone())
        .bind(request.requested_by.clone())
        .bind(token_hash.to_string())
        .bind(request.requested_at)
        .bind(request.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One request of the org.
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    id: MigrationId,
) -> Result<Option<MigrationRequest>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM migration_requests r WHERE r.org_id = $1 AND r.id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The request whose current link (or reminder link) hashes to `token_hash`.
pub async fn by_token<'c>(
    exec: impl Executor<'c, Database = Any>,
    token_hash: &str,
) -> Result<Option<MigrationRequest>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migration_requests r WHERE r.token_hash = $1 OR r.reminder_token_hash = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(token_hash.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Requests of the org, newest first, optionally of one status.
pub async fn list(
    pool: &sqlx::AnyPool,
    org: OrgId,
    status: Option<MigrationStatus>,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<MigrationRequest>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migration_requests r WHERE r.org_id = $1 AND ($2 = '' OR r.status = $2) \
         AND (r.requested_at, r.id) < ($3, $4) ORDER BY r.requested_at DESC, r.id DESC LIMIT $5"
    );
    // The first page starts after every request: no time is later than i64::MAX.
    let (time, id) = before.unwrap_or((i64::MAX, ""));
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .bind(status.map(|s| s.as_str()).unwrap_or(""))
        .bind(time)
        .bind(id.to_string())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

const COUNTS: &str =
    "SELECT status, COUNT(*) AS n FROM migration_requests WHERE org_id = $1 GROUP BY status";

/// How many requests the org has in each status.
pub async fn counts(pool: &sqlx::AnyPool, org: OrgId) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(COUNTS)
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect()
}

const PENDING_COUNT: &str =
    "SELECT COUNT(*) AS n FROM migration_requests WHERE org_id = $1 AND status = 'pending'";

/// Pending requests of the org: each reserves a seat.
pub async fn pending_count<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<i64, sqlx::Error> {
    sqlx::query(PENDING_COUNT)
        .bind(org.to_string())
        .fetch_one(exec)
        .await?
        .try_get("n")
}

const HAS_PENDING: &str = "SELECT COUNT(*) AS n FROM migration_requests \
     WHERE org_id = $1 AND account_id = $2 AND status = 'pending'";

/// Whether the account already has a pending request of this org.
pub async fn has_pending<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    account: AccountId,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query(HAS_PENDING)
        .bind(org.to_string())
        .bind(account.to_string())
        .fetch_one(exec)
        .await?
        .try_get("n")?;
    Ok(n > 0)
}

const DECIDE: &str = "UPDATE migration_requests SET status = $2, decided_at = $3, updated_at = $3, \
     failure = $4, reminder_token_hash = NULL WHERE id = $1 AND status = 'pending'";

/// Moves a pending request to a final status. `false` when it was no longer pending (someone
/// else decided first): the caller must then change nothing.
pub(super) async fn decide(
    tx: &mut Tx,
    id: MigrationId,
    to: MigrationStatus,
    failure: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(DECIDE)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now)
        .bind(failure.map(str::to_string))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const SET_FAILURE: &str =
    "UPDATE migration_requests SET failure = $2, updated_at = $3 WHERE id = $1";

/// Records why an acceptance could not be executed (the request stays pending).
pub(super) async fn set_failure(
    tx: &mut Tx,
    id: MigrationId,
    failure: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_FAILURE)
        .bind(id.to_string())
        .bind(failure.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const OPENED: &str =
    "UPDATE migration_requests SET opened_at = $2 WHERE id = $1 AND opened_at IS NULL";

/// Records the first time the consent page was opened.
pub(super) async fn mark_opened(
    pool: &sqlx::AnyPool,
    id: MigrationId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(OPENED)
        .bind(id.to_string())
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

const ROTATE: &str = "UPDATE migration_requests SET token_hash = $2, reminder_token_hash = NULL, \
     expires_at = $3, emailed_at = $4, reminded_at = NULL, failure = NULL, password_failures = 0, \
     password_failures_since = NULL, updated_at = $4 WHERE id = $1 AND status = 'pending'";

/// Replaces the links of a pending request (every earlier link dies) with a new expiry.
pub(super) async fn rotate(
    tx: &mut Tx,
    id: MigrationId,
    token_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(ROTATE)
        .bind(id.to_string())
        .bind(token_hash.to_string())
        .bind(expires_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const PASSWORD_FAILED: &str = "UPDATE migration_requests SET \
     password_failures = CASE WHEN password_failures_since IS NOT NULL AND password_failures_since > $3 \
       THEN password_failures + 1 ELSE 1 END, \
     password_failures_since = CASE WHEN password_failures_since IS NOT NULL AND password_failures_since > $3 \
       THEN password_failures_since ELSE $2 END, \
     updated_at = $2 WHERE id = $1";

/// Counts a wrong password in the current window (which starts at the first failure).
pub(super) async fn password_failed(
    tx: &mut Tx,
    id: MigrationId,
    now: i64,
    window_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(PASSWORD_FAILED)
        .bind(id.to_string())
        .bind(now)
        .bind(now - window_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Pending requests whose links have expired, locked for this transaction.
pub(super) async fn due_expired(
    tx: &mut Tx,
    dialect: Dialect,
    now: i64,
    limit: i64,
) -> Result<Vec<MigrationRequest>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migration_requests r WHERE r.status = 'pending' AND r.expires_at <= $1 \
         ORDER BY r.expires_at LIMIT $2{}",
        skip_locked(dialect)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Pending requests that expire within `lead_ms` and have had no reminder, locked.
pub(super) async fn due_reminders(
    tx: &mut Tx,
    dialect: Dialect,
    now: i64,
    lead_ms: i64,
    limit: i64,
) -> Result<Vec<MigrationRequest>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migration_requests r WHERE r.status = 'pending' AND r.reminded_at IS NULL \
         AND r.expires_at > $1 AND r.expires_at <= $2 ORDER BY r.expires_at LIMIT $3{}",
        skip_locked(dialect)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(now + lead_ms)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

const REMINDED: &str = "UPDATE migration_requests SET reminded_at = $2, reminder_token_hash = $3, \
     updated_at = $2 WHERE id = $1 AND status = 'pending' AND reminded_at IS NULL";

/// Records a reminder and its own link (the first link keeps working too).
pub(super) async fn set_reminded(
    tx: &mut Tx,
    id: MigrationId,
    token_hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(REMINDED)
        .bind(id.to_string())
        .bind(now)
        .bind(token_hash.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending requests of other orgs for this account (it can be migrated only once).
pub(super) async fn pending_elsewhere(
    tx: &mut Tx,
    account: AccountId,
    org: OrgId,
) -> Result<Vec<MigrationRequest>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM migration_requests r WHERE r.account_id = $1 AND r.org_id <> $2 \
         AND r.status = 'pending'"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account.to_string())
        .bind(org.to_string())
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

const MAKE_MANAGED: &str = "UPDATE accounts SET kind = 'managed', org_id = $2, \
     must_change_password = CASE WHEN $3 = 1 THEN 1 ELSE must_change_password END, updated_at = $4 \
     WHERE id = $1 AND kind = 'nulab' AND status = 'active'";

/// Turns the Nulab account into a managed account of `org` (same id, email and password).
pub(super) async fn make_managed(
    tx: &mut Tx,
    account: AccountId,
    org: OrgId,
    must_change_password: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(MAKE_MANAGED)
        .bind(account.to_string())
        .bind(org.to_string())
        .bind(i64::from(must_change_password))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const INVOLVED_ORGS: &str = "SELECT org_id FROM memberships WHERE account_id = $1 \
     UNION SELECT org_id FROM migration_requests WHERE account_id = $1 AND status = 'pending'";

/// Every organization a migration of `account` changes besides its own: those it is a member
/// of (the membership ends, tokens it created there are revoked) and those with a pending
/// request for it (cancelled).
pub async fn involved_orgs<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
) -> Result<BTreeSet<OrgId>, sqlx::Error> {
    let rows = sqlx::query(INVOLVED_ORGS)
        .bind(account.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(crate::orgs::store::org_id_of).collect()
}

const OTHER_ORGS: &str = "SELECT o.id, o.name FROM memberships m JOIN orgs o ON o.id = m.org_id \
     WHERE m.account_id = $1 AND m.org_id <> $2 ORDER BY o.name, o.id";

/// The other organizations the account is a member of (id, name).
pub async fn other_orgs<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
    org: OrgId,
) -> Result<Vec<(OrgId, String)>, sqlx::Error> {
    let rows = sqlx::query(OTHER_ORGS)
        .bind(account.to_string())
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            Ok((
                OrgId::parse(&id).ok_or_else(|| bad("id"))?,
                r.try_get("name")?,
            ))
        })
        .collect()
}

const DELETE_OTHER_MEMBERSHIPS: &str =
    "DELETE FROM memberships WHERE account_id = $1 AND org_id <> $2";

pub(super) async fn delete_other_memberships(
    tx: &mut Tx,
    account: AccountId,
    org: OrgId,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(DELETE_OTHER_MEMBERSHIPS)
        .bind(account.to_string())
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

const LINK_DAYS: &str = "SELECT link_days FROM migration_settings WHERE org_id = $1";

/// Days a consent link stays valid in this org (default 14).
pub async fn link_days<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(LINK_DAYS)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    match row {
        Some(row) => row.try_get("link_days"),
        None => Ok(super::DEFAULT_LINK_DAYS),
    }
}

const SET_LINK_DAYS: &str = "INSERT INTO migration_settings (org_id, link_days, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (org_id) DO UPDATE SET link_days = excluded.link_days, \
     updated_at = excluded.updated_at";

pub(super) async fn set_link_days(
    tx: &mut Tx,
    org: OrgId,
    days: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_LINK_DAYS)
        .bind(org.to_string())
        .bind(days)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const CANDIDATES: &str = "SELECT a.id, a.email, a.name, a.status, a.email_verified_at, \
     (SELECT COUNT(*) FROM migration_requests r WHERE r.org_id = m.org_id \
      AND r.account_id = m.account_id AND r.status = 'pending') AS pending \
     FROM memberships m JOIN accounts a ON a.id = m.account_id \
     WHERE m.org_id = $1 AND a.kind = 'nulab' ORDER BY m.sort_key, m.account_id LIMIT $2";

/// A Nulab-account member as the eligibility overview reads it.
pub struct CandidateRow {
    pub account_id: AccountId,
    pub email: String,
    pub name: String,
    pub active: bool,
    pub email_verified: bool,
    pub pending: bool,
}

/// The first `limit` Nulab-account members of the org in member-list order, each with its state
/// and whether a request for it is pending: one query, whatever the size of the org.
pub async fn candidates(
    pool: &sqlx::AnyPool,
    org: OrgId,
    limit: i64,
) -> Result<Vec<CandidateRow>, sqlx::Error> {
    let rows = sqlx::query(CANDIDATES)
        .bind(org.to_string())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let status: String = row.try_get("status")?;
            let verified_at: Option<i64> = row.try_get("email_verified_at")?;
            let pending: i64 = row.try_get("pending")?;
            Ok(CandidateRow {
                account_id: AccountId::parse(&id).ok_or_else(|| bad("id"))?,
                email: row.try_get("email")?,
                name: row.try_get("name")?,
                active: status == crate::accounts::AccountStatus::Active.as_str(),
                email_verified: verified_at.is_some(),
                pending: pending > 0,
            })
        })
        .collect()
}
