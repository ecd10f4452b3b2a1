//! SQL of API tokens. It sits below `orgs` in the layer order (it uses nothing above `audit`),
//! so that a change of an admin's role can revoke the tokens that admin created.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{ApiToken, Scopes};
use crate::db::Tx;
use crate::ids::{AccountId, ApiTokenId, OrgId};

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

/// The columns every read selects (`t` is the token, `c` its creator), as a literal for `concat!`.
macro_rules! select {
    ($($rest:expr),*) => { concat!("SELECT t.id, t.org_id, t.name, t.prefix, t.scopes, t.operator, t.created_by, \
     c.email AS created_by_email, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, \
     t.revoked_reason FROM api_tokens t LEFT JOIN accounts c ON c.id = t.created_by " $(, $rest)*) };
}

fn from_row(row: &AnyRow) -> Result<ApiToken, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org_id: String = row.try_get("org_id")?;
    let scopes: String = row.try_get("scopes")?;
    let created_by: Option<String> = row.try_get("created_by")?;
    Ok(ApiToken {
        id: ApiTokenId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org_id).ok_or_else(|| bad("org_id"))?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        scopes: Scopes::parse(&scopes).map_err(|_| bad("scopes"))?,
        operator: row.try_get::<i64, _>("operator")? != 0,
        created_by: created_by
            .map(|c| AccountId::parse(&c).ok_or_else(|| bad("created_by")))
            .transpose()?,
        created_by_email: row.try_get("created_by_email")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

const INSERT: &str = "INSERT INTO api_tokens (id, org_id, name, token_hash, prefix, created_by, \
     created_at, scopes, expires_at, operator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(super) async fn insert(tx: &mut Tx, token: &ApiToken, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(token.id.to_string())
        .bind(token.org_id.to_string())
        .bind(token.name.clone())
        .bind(hash.to_string())
        .bind(token.prefix.clone())
        .bind(token.created_by.map(|c| c.to_string()))
        .bind(token.created_at)
        .bind(token.scopes.to_text())
        .bind(token.expires_at)
        .bind(i64::from(token.operator))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    id: ApiTokenId,
) -> Result<Option<ApiToken>, sqlx::Error> {
    const SQL: &str = select!("WHERE t.org_id = $1 AND t.id = $2");
    let row = sqlx::query(SQL)
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every token of an organization, newest first (revoked and expired ones included).
pub async fn list(pool: &sqlx::AnyPool, org: OrgId) -> Result<Vec<ApiToken>, sqlx::Error> {
    const SQL: &str = select!("WHERE t.org_id = $1 ORDER BY t.created_at DESC, t.id");
    let rows = sqlx::query(SQL)
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

const REVOKE: &str = "UPDATE api_tokens SET revoked_at = $2, revoked_reason = $3 \
     WHERE id = $1 AND revoked_at IS NULL";

pub(super) async fn revoke(
    tx: &mut Tx,
    id: ApiTokenId,
    now: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE)
        .bind(id.to_string())
        .bind(now)
        .bind(reason.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A token is live when it is not revoked and was made by the operator or by an account that is
/// still an active admin of the token's organization. The second half holds even if some path
/// that ends an admin's rights forgot to revoke (each path does revoke, with an audit event).
macro_rules! live {
    () => { "t.revoked_at IS NULL AND (t.operator = 1 OR EXISTS (SELECT 1 FROM memberships m \
     JOIN accounts a ON a.id = m.account_id WHERE m.org_id = t.org_id AND m.account_id = t.created_by \
     AND m.role = 'admin' AND a.status = 'active'))" };
}

/// The live token with this hash (expired ones included: the caller tells them apart).
pub(super) async fn live_by_hash(
    pool: &sqlx::AnyPool,
    hash: &str,
) -> Result<Option<ApiToken>, sqlx::Error> {
    const SQL: &str = select!("WHERE t.token_hash = $1 AND ", live!());
    let row = sqlx::query(SQL)
        .bind(hash.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The unrevoked tokens `account` created, in one organization or in all.
pub(super) async fn held_by(
    tx: &mut Tx,
    account: AccountId,
    org: Option<OrgId>,
) -> Result<Vec<ApiToken>, sqlx::Error> {
    const SQL: &str = select!(
        "WHERE t.created_by = $1 AND t.revoked_at IS NULL AND (t.org_id = $2 OR $2 = '') \
         ORDER BY t.created_at, t.id"
    );
    let rows = sqlx::query(SQL)
        .bind(account.to_string())
        .bind(org.map(|o| o.to_string()).unwrap_or_default())
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

const TOUCH: &str = "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1";

pub(super) async fn touch(
    pool: &sqlx::AnyPool,
    id: ApiTokenId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(TOUCH)
        .bind(id.to_string())
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}
