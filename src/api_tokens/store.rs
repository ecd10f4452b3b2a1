//! SQL of API tokens.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::ApiToken;
use crate::db::Tx;
use crate::ids::{ApiTokenId, OrgId};
use crate::orgs::Org;

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

fn from_row(row: &AnyRow) -> Result<ApiToken, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org_id: String = row.try_get("org_id")?;
    Ok(ApiToken {
        id: ApiTokenId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org_id).ok_or_else(|| bad("org_id"))?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const INSERT: &str = "INSERT INTO api_tokens (id, org_id, name, token_hash, prefix, created_by, \
     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) async fn insert(
    tx: &mut Tx,
    token: &ApiToken,
    hash: &str,
    created_by: Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(token.id.to_string())
        .bind(token.org_id.to_string())
        .bind(token.name.clone())
        .bind(hash.to_string())
        .bind(token.prefix.clone())
        .bind(created_by)
        .bind(token.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const BY_ID: &str = "SELECT id, org_id, name, prefix, created_at, last_used_at, revoked_at \
     FROM api_tokens WHERE org_id = $1 AND id = $2";

pub(super) async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    id: ApiTokenId,
) -> Result<Option<ApiToken>, sqlx::Error> {
    let row = sqlx::query(BY_ID)
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

const LIST: &str = "SELECT id, org_id, name, prefix, created_at, last_used_at, revoked_at \
     FROM api_tokens WHERE org_id = $1 ORDER BY created_at DESC, id";

/// Every token of an organization, newest first (revoked ones included).
pub async fn list(pool: &sqlx::AnyPool, org: OrgId) -> Result<Vec<ApiToken>, sqlx::Error> {
    let rows = sqlx::query(LIST)
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

const REVOKE: &str = "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

pub(super) async fn revoke(tx: &mut Tx, id: ApiTokenId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const BY_HASH: &str = "SELECT t.id, t.org_id, t.name, t.prefix, t.created_at, t.last_used_at, \
     t.revoked_at, o.slug, o.name AS org_name, o.seats, o.created_at AS org_created_at \
     FROM api_tokens t JOIN orgs o ON o.id = t.org_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL";

pub(super) async fn by_hash(
    pool: &sqlx::AnyPool,
    hash: &str,
) -> Result<Option<(ApiToken, Org)>, sqlx::Error> {
    let Some(row) = sqlx::query(BY_HASH)
        .bind(hash.to_string())
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let token = from_row(&row)?;
    let org = Org {
        id: token.org_id,
        slug: row.try_get("slug")?,
        name: row.try_get("org_name")?,
        seats: row.try_get("seats")?,
        created_at: row.try_get("org_created_at")?,
    };
    Ok(Some((token, org)))
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
