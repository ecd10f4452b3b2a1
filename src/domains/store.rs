//! SQL of domains.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Domain, DomainId, DomainName, DomainStatus};
use crate::db::{Batch, Dialect, DialectSql, Tx, skip_locked};
use crate::ids::OrgId;

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

/// The columns every domain query reads, in one place.
macro_rules! columns {
    () => {
        "id, org_id, domain, status, token, created_at, token_issued_at, \
     verified_at, last_checked_at, last_check_result, last_check_message, record_missing_since, \
     next_check_at, claimed_until"
    };
}

fn from_row(row: &AnyRow) -> Result<Domain, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org_id: String = row.try_get("org_id")?;
    let status: String = row.try_get("status")?;
    Ok(Domain {
        id: DomainId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org_id).ok_or_else(|| bad("org_id"))?,
        name: DomainName::from_stored(row.try_get("domain")?),
        status: DomainStatus::parse(&status).ok_or_else(|| bad("status"))?,
        token: row.try_get("token")?,
        created_at: row.try_get("created_at")?,
        token_issued_at: row.try_get("token_issued_at")?,
        verified_at: row.try_get("verified_at")?,
        last_checked_at: row.try_get("last_checked_at")?,
        last_check_result: row.try_get("last_check_result")?,
        last_check_message: row.try_get("last_check_message")?,
        record_missing_since: row.try_get("record_missing_since")?,
        next_check_at: row.try_get("next_check_at")?,
        claimed_until: row.try_get("claimed_until")?,
    })
}

const INSERT: &str = "INSERT INTO domains (id, org_id, domain, status, token, created_at, \
     token_issued_at, next_check_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) async fn insert(tx: &mut Tx, domain: &Domain, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(domain.id.to_string())
        .bind(domain.org_id.to_string())
        .bind(domain.name.as_str().to_string())
        .bind(domain.status.as_str())
        .bind(domain.token.clone())
        .bind(domain.created_at)
        .bind(domain.token_issued_at)
        .bind(domain.next_check_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM domains WHERE id = $1 AND org_id = $2"
);

/// A domain of the organization.
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    id: DomainId,
) -> Result<Option<Domain>, sqlx::Error> {
    let row = sqlx::query(BY_ID)
        .bind(id.to_string())
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

const BY_ID_ANY: &str = concat!("SELECT ", columns!(), " FROM domains WHERE id = $1");

/// A domain of any organization (the job).
pub(super) async fn by_id_any<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: DomainId,
) -> Result<Option<Domain>, sqlx::Error> {
    let row = sqlx::query(BY_ID_ANY)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM domains WHERE org_id = $1 ORDER BY domain"
);

/// The organization's domains, by name.
pub async fn list(pool: &sqlx::AnyPool, org: OrgId) -> Result<Vec<Domain>, sqlx::Error> {
    let rows = sqlx::query(LIST)
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

const LOCK: &str = "UPDATE domains SET updated_at = updated_at WHERE id = $1";
const LOCK_IN_ORG: &str =
    "UPDATE domains SET updated_at = updated_at WHERE id = $1 AND org_id = $2";

/// Takes the domain's row lock for the rest of the transaction (PostgreSQL; SQLite's
/// `BEGIN IMMEDIATE` already serialises writers). `false` when there is no such domain (in
/// `org`, when given).
pub(super) async fn lock(
    tx: &mut Tx,
    org: Option<OrgId>,
    id: DomainId,
) -> Result<bool, sqlx::Error> {
    let done = match org {
        Some(org) => {
            sqlx::query(LOCK_IN_ORG)
                .bind(id.to_string())
                .bind(org.to_string())
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query(LOCK)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

const VERIFIED_ELSEWHERE: &str = "SELECT COUNT(*) AS n FROM domains \
     WHERE domain = $1 AND status = 'verified' AND org_id <> $2";

/// Whether another organization holds `name` verified.
pub(super) async fn verified_elsewhere<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    name: &DomainName,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(VERIFIED_ELSEWHERE)
        .bind(name.as_str().to_string())
        .bind(org.to_string())
        .fetch_one(exec)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

const SAVE_CHECK: &str = "UPDATE domains SET status = $2, verified_at = $3, \
     record_missing_since = $4, last_checked_at = $5, last_check_result = $6, \
     last_check_message = $7, next_check_at = $8, claimed_until = NULL, updated_at = $9 \
     WHERE id = $1";

/// Stores a check's outcome (status, last check, next check) and releases any claim.
pub(super) async fn save_check(tx: &mut Tx, domain: &Domain, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(SAVE_CHECK)
        .bind(domain.id.to_string())
        .bind(domain.status.as_str())
        .bind(domain.verified_at)
        .bind(domain.record_missing_since)
        .bind(domain.last_checked_at)
        .bind(domain.last_check_result.clone())
        .bind(domain.last_check_message.clone())
        .bind(domain.next_check_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const RENEW: &str = "UPDATE domains SET status = 'pending', token = $2, token_issued_at = $3, \
     verified_at = NULL, last_checked_at = NULL, last_check_result = NULL, \
     last_check_message = NULL, record_missing_since = NULL, next_check_at = $4, \
     claimed_until = NULL, updated_at = $3 WHERE id = $1";

/// Gives the domain a new token and makes it pending again.
pub(super) async fn renew(tx: &mut Tx, domain: &Domain, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(RENEW)
        .bind(domain.id.to_string())
        .bind(domain.token.clone())
        .bind(now)
        .bind(domain.next_check_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const DELETE: &str = "DELETE FROM domains WHERE id = $1";

pub(super) async fn delete(tx: &mut Tx, id: DomainId) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// Domain names hold only letters, digits, dots and hyphens, so the pattern has no wildcard
// but its leading `%`.
const COUNT_MANAGED: &str = "SELECT COUNT(*) AS n FROM accounts WHERE kind = 'managed' \
     AND org_id = $1 AND status <> 'deleted' AND email_norm LIKE $2";

/// Managed accounts of the organization (not deleted) with an email address on `name`.
pub(super) async fn count_managed_accounts<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    name: &DomainName,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(COUNT_MANAGED)
        .bind(org.to_string())
        .bind(format!("%@{}", name.as_str()))
        .fetch_one(exec)
        .await?;
    row.try_get("n")
}

const VERIFIED: &str =
    "SELECT id FROM domains WHERE org_id = $1 AND domain = $2 AND status = 'verified'";

/// Whether `domain` is verified for `org`, share-locking its row when it is
/// ([`Batch::push_shared`]): transactions that rely on the answer run side by side, and a
/// removal or lapse of the domain waits for them all.
pub(super) async fn lock_verified(
    tx: &mut Tx,
    org: OrgId,
    domain: &str,
) -> Result<bool, sqlx::Error> {
    let mut batch = Batch::new();
    let at = lock_verified_in(&mut batch, org, domain);
    Ok(!batch.run(tx).await?[at].rows.is_empty())
}

/// [`lock_verified`] as a statement of `batch`: it returns a row when the domain is verified.
pub(super) fn lock_verified_in(batch: &mut Batch, org: OrgId, domain: &str) -> usize {
    batch.push_shared(VERIFIED, vec![org.to_string().into(), domain.into()])
}

/// Of the `[org_id, domain]` pairs of the JSON array `$1`, those verified.
static VERIFIED_PAIRS: DialectSql = DialectSql::new(|d| {
    let pairs = crate::db::json_rows(d, "$1", 2, &[]);
    // PostgreSQL takes the sub-select for a hundred rows and would scan every domain: the names
    // as an array first, an index condition.
    let names = match d {
        Dialect::Sqlite => String::new(),
        Dialect::Postgres => format!("domain = ANY (ARRAY(SELECT c1 FROM ({pairs}) AS n)) AND "),
    };
    format!(
        "SELECT org_id, domain FROM domains WHERE status = 'verified' \
         AND {names}(org_id, domain) IN (SELECT c0, c1 FROM ({pairs}) AS p)"
    )
});

/// [`lock_verified_in`] for many pairs in one statement: it returns the verified pairs, their
/// rows share-locked.
pub(super) fn lock_verified_pairs_in(
    batch: &mut Batch,
    dialect: Dialect,
    pairs: &[(OrgId, String)],
) -> usize {
    let list: Vec<[String; 2]> = pairs
        .iter()
        .map(|(org, domain)| [org.to_string(), domain.clone()])
        .collect();
    let list = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    batch.push_shared(VERIFIED_PAIRS.get(dialect), vec![list.into()])
}

/// Claims up to `limit` due domains until `lease_until`; another instance skips them until the
/// lease ends.
pub(super) async fn claim_due(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Domain>, sqlx::Error> {
    let sql = format!(
        "UPDATE domains SET claimed_until = $1 WHERE id IN (SELECT id FROM domains \
         WHERE status IN ('pending', 'verified', 'lapsed') AND next_check_at <= $2 \
         AND (claimed_until IS NULL OR claimed_until < $2) \
         ORDER BY next_check_at, id LIMIT $3{}) RETURNING {}",
        skip_locked(dialect),
        columns!()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

const ORG_LABEL: &str = "SELECT slug, name FROM orgs WHERE id = $1";

/// The organization's slug and name, for emails.
pub(super) async fn org_label<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query(ORG_LABEL)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    row.map(|row| Ok((row.try_get("slug")?, row.try_get("name")?)))
        .transpose()
}

const VERIFIED_DOMAINS: &str =
    "SELECT domain FROM domains WHERE org_id = $1 AND status = 'verified' ORDER BY domain";

/// The organization's verified domains, by name.
pub async fn verified_domains<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(VERIFIED_DOMAINS)
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("domain")).collect()
}

const LEGACY_WINDOW: &str =
    "SELECT legacy_imported_at, legacy_domains_until FROM orgs WHERE id = $1";

/// When an organization was imported from before domain verification, and until when its
/// accounts keep working on unverified domains.
pub async fn legacy_window<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query(LEGACY_WINDOW)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let imported: Option<i64> = row.try_get("legacy_imported_at")?;
    let until: Option<i64> = row.try_get("legacy_domains_until")?;
    Ok(imported.zip(until))
}

const VERIFIED_NAMES: &str = "SELECT domain FROM domains WHERE org_id = $1 AND status = 'verified'";

/// The names of the organization's verified domains.
pub async fn verified_names<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<std::collections::BTreeSet<String>, sqlx::Error> {
    let rows = sqlx::query(VERIFIED_NAMES)
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("domain")).collect()
}

const MANAGED_BEFORE: &str = "SELECT email FROM accounts WHERE org_id = $1 AND kind = 'managed' \
     AND status IN ('active', 'suspended') AND created_at <= $2 ORDER BY email_norm";

/// Emails of the organization's managed accounts created at or before `at`.
pub async fn managed_emails_before<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    at: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(MANAGED_BEFORE)
        .bind(org.to_string())
        .bind(at)
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("email")).collect()
}

const START_LEGACY: &str = "UPDATE orgs SET legacy_imported_at = $2, legacy_domains_until = $3, \
     legacy_reminded_at = $2 WHERE id = $1";

pub async fn start_legacy(
    tx: &mut Tx,
    org: OrgId,
    now: i64,
    until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(START_LEGACY)
        .bind(org.to_string())
        .bind(now)
        .bind(until)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const LEGACY_DUE: &str = "SELECT id FROM orgs WHERE legacy_domains_until > $1 \
     AND legacy_reminded_at <= $2 ORDER BY id";

pub async fn legacy_due(
    pool: &sqlx::AnyPool,
    now: i64,
    before: i64,
) -> Result<Vec<OrgId>, sqlx::Error> {
    let rows = sqlx::query(LEGACY_DUE)
        .bind(now)
        .bind(before)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            OrgId::parse(&id).ok_or_else(|| sqlx::Error::Decode("bad org id".into()))
        })
        .collect()
}

const LEGACY_REMINDED: &str = "UPDATE orgs SET legacy_reminded_at = $2 WHERE id = $1";

pub async fn legacy_reminded(tx: &mut Tx, org: OrgId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(LEGACY_REMINDED)
        .bind(org.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
