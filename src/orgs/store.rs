//! SQL of organizations and memberships.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Member, MemberFilter, Org, Role};
use crate::accounts::{AccountKind, AccountStatus};
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

fn org_from_row(row: &AnyRow) -> Result<Org, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(Org {
        id: OrgId::parse(&id).ok_or_else(|| bad("id"))?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        seats: row.try_get("seats")?,
        created_at: row.try_get("created_at")?,
    })
}

fn member_from_row(row: &AnyRow) -> Result<Member, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let role: String = row.try_get("role")?;
    Ok(Member {
        account_id: AccountId::parse(&id).ok_or_else(|| bad("id"))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| bad("kind"))?,
        role: Role::parse(&role).ok_or_else(|| bad("role"))?,
        status: AccountStatus::parse(&status).ok_or_else(|| bad("status"))?,
        last_sign_in_at: row.try_get("last_sign_in_at")?,
        joined_at: row.try_get("joined_at")?,
    })
}

const INSERT: &str =
    "INSERT INTO orgs (id, slug, name, seats, created_at) VALUES ($1, $2, $3, $4, $5)";

pub(super) async fn insert(tx: &mut Tx, org: &Org) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(org.id.to_string())
        .bind(org.slug.clone())
        .bind(org.name.clone())
        .bind(org.seats)
        .bind(org.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const BY_SLUG: &str = "SELECT id, slug, name, seats, created_at FROM orgs WHERE slug = $1";

/// The organization with this slug.
pub async fn by_slug<'c>(
    exec: impl Executor<'c, Database = Any>,
    slug: &str,
) -> Result<Option<Org>, sqlx::Error> {
    let row = sqlx::query(BY_SLUG)
        .bind(slug.to_ascii_lowercase())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(org_from_row).transpose()
}

const BY_ID: &str = "SELECT id, slug, name, seats, created_at FROM orgs WHERE id = $1";

/// The organization with this id.
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: OrgId,
) -> Result<Option<Org>, sqlx::Error> {
    let row = sqlx::query(BY_ID)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(org_from_row).transpose()
}

const LOCK: &str = "UPDATE orgs SET seats = seats WHERE id = $1";

/// Takes the organization's row lock for the rest of the transaction (PostgreSQL; SQLite's
/// `BEGIN IMMEDIATE` already serialises writers). One statement that works on both.
pub async fn lock(tx: &mut Tx, org: OrgId) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK)
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the rows of every organization in `orgs`, in id order. A transaction that changes
/// more than one organization takes them all this way before anything else of theirs, so two
/// such transactions on PostgreSQL wait for each other instead of deadlocking.
pub async fn lock_all(
    tx: &mut Tx,
    orgs: &std::collections::BTreeSet<OrgId>,
) -> Result<(), sqlx::Error> {
    for org in orgs {
        lock(tx, *org).await?;
    }
    Ok(())
}

const INSERT_MEMBERSHIP: &str = "INSERT INTO memberships (org_id, account_id, role, created_at, sort_key) \
     SELECT $1, a.id, $3, $4, a.email_norm FROM accounts a WHERE a.id = $2";

/// Adds a membership row.
pub async fn insert_membership(
    tx: &mut Tx,
    org: OrgId,
    account: AccountId,
    role: Role,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_MEMBERSHIP)
        .bind(org.to_string())
        .bind(account.to_string())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const MEMBER: &str = "SELECT a.id, a.email, a.name, a.kind, a.status, a.last_sign_in_at, m.role, \
     m.created_at AS joined_at FROM memberships m JOIN accounts a ON a.id = m.account_id \
     WHERE m.org_id = $1 AND m.account_id = $2";

/// One member of an organization.
pub async fn member<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    account: AccountId,
) -> Result<Option<Member>, sqlx::Error> {
    let row = sqlx::query(MEMBER)
        .bind(org.to_string())
        .bind(account.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(member_from_row).transpose()
}

const MEMBERS: &str = "SELECT a.id, a.email, a.name, a.kind, a.status, a.last_sign_in_at, m.role, \
     m.created_at AS joined_at FROM memberships m JOIN accounts a ON a.id = m.account_id \
     WHERE m.org_id = $1 AND ($2 = '' OR a.kind = $2) AND ($3 = '' OR a.status = $3) \
     AND (m.sort_key, m.account_id) > ($4, $5) \
     ORDER BY m.sort_key, m.account_id LIMIT $6";

pub(super) async fn members(
    pool: &sqlx::AnyPool,
    org: OrgId,
    filter: &MemberFilter,
    after: Option<&[String]>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    let (after_email, after_id) = match after {
        Some([email, id]) => (email.clone(), id.clone()),
        _ => (String::new(), String::new()),
    };
    let rows = sqlx::query(MEMBERS)
        .bind(org.to_string())
        .bind(filter.kind.map(|k| k.as_str()).unwrap_or(""))
        .bind(filter.status.map(|s| s.as_str()).unwrap_or(""))
        .bind(after_email)
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(member_from_row).collect()
}

const ADMIN_EMAILS: &str = "SELECT a.email FROM memberships m JOIN accounts a ON a.id = m.account_id \
     WHERE m.org_id = $1 AND m.role = 'admin' AND a.status = 'active' ORDER BY a.email_norm";

/// Email addresses of the organization's active admins (for notices), by email. The one
/// query of admins' emails: domains, SSO and migration notices all use it.
pub async fn admin_emails<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(ADMIN_EMAILS)
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("email")).collect()
}

const COUNT_ADMINS: &str = "SELECT COUNT(*) AS n FROM memberships m JOIN accounts a ON a.id = m.account_id \
     WHERE m.org_id = $1 AND m.role = 'admin' AND a.status = 'active'";

/// How many active admins the organization has.
pub async fn count_admins<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(COUNT_ADMINS)
        .bind(org.to_string())
        .fetch_one(exec)
        .await?;
    row.try_get("n")
}

const SET_ROLE: &str = "UPDATE memberships SET role = $3 WHERE org_id = $1 AND account_id = $2";

pub(super) async fn set_role(
    tx: &mut Tx,
    org: OrgId,
    account: AccountId,
    role: Role,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_ROLE)
        .bind(org.to_string())
        .bind(account.to_string())
        .bind(role.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const DELETE_MEMBERSHIP: &str = "DELETE FROM memberships WHERE org_id = $1 AND account_id = $2";

pub(super) async fn delete_membership(
    tx: &mut Tx,
    org: OrgId,
    account: AccountId,
) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_MEMBERSHIP)
        .bind(org.to_string())
        .bind(account.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const ROLE_OF: &str = "SELECT m.role FROM memberships m WHERE m.org_id = $1 AND m.account_id = $2";

/// The account's role in the organization, if it is a member.
pub async fn role_of<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    account: AccountId,
) -> Result<Option<Role>, sqlx::Error> {
    let row = sqlx::query(ROLE_OF)
        .bind(org.to_string())
        .bind(account.to_string())
        .fetch_optional(exec)
        .await?;
    match row {
        Some(row) => {
            let role: String = row.try_get("role")?;
            Ok(Some(Role::parse(&role).ok_or_else(|| bad("role"))?))
        }
        None => Ok(None),
    }
}

const ORGS_OF: &str = "SELECT o.id, o.slug, o.name, o.seats, o.created_at, m.role FROM memberships m \
     JOIN orgs o ON o.id = m.org_id WHERE m.account_id = $1 ORDER BY o.slug";

/// The organizations an account belongs to, with its role in each.
pub async fn orgs_of(
    pool: &sqlx::AnyPool,
    account: AccountId,
) -> Result<Vec<(Org, Role)>, sqlx::Error> {
    let rows = sqlx::query(ORGS_OF)
        .bind(account.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("role")?;
            Ok((
                org_from_row(row)?,
                Role::parse(&role).ok_or_else(|| bad("role"))?,
            ))
        })
        .collect()
}

const SOLE_ADMIN_OF: &str = "SELECT o.id, o.slug, o.name, o.seats, o.created_at FROM memberships m \
     JOIN orgs o ON o.id = m.org_id WHERE m.account_id = $1 AND m.org_id <> $2 AND m.role = 'admin' \
     AND NOT EXISTS (SELECT 1 FROM memberships m2 JOIN accounts a2 ON a2.id = m2.account_id \
     WHERE m2.org_id = m.org_id AND m2.role = 'admin' AND a2.status = 'active' \
     AND m2.account_id <> m.account_id) ORDER BY o.name";

/// The organizations other than `except` of which `account` is the only active admin.
pub async fn sole_admin_of<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
    except: OrgId,
) -> Result<Vec<Org>, sqlx::Error> {
    let rows = sqlx::query(SOLE_ADMIN_OF)
        .bind(account.to_string())
        .bind(except.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(org_from_row).collect()
}

const ADMIN_ORG_IDS: &str =
    "SELECT org_id FROM memberships WHERE account_id = $1 AND role = 'admin' ORDER BY org_id";

/// The organizations `account` administers, by id (the order locks are taken in).
pub async fn admin_org_ids<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
) -> Result<Vec<OrgId>, sqlx::Error> {
    let rows = sqlx::query(ADMIN_ORG_IDS)
        .bind(account.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(org_id_of).collect()
}

/// The `org_id` column of `row`.
pub fn org_id_of(row: &AnyRow) -> Result<OrgId, sqlx::Error> {
    let id: String = row.try_get("org_id")?;
    OrgId::parse(&id).ok_or_else(|| bad("org_id"))
}

const MEMBER_KINDS: &str = "SELECT a.kind, COUNT(*) AS n FROM memberships m \
     JOIN accounts a ON a.id = m.account_id WHERE m.org_id = $1 GROUP BY a.kind";

/// How many members the organization has of each account kind (`(managed, nulab)`).
pub async fn member_kinds<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<(i64, i64), sqlx::Error> {
    let rows = sqlx::query(MEMBER_KINDS)
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    let (mut managed, mut nulab) = (0, 0);
    for row in rows {
        let n: i64 = row.try_get("n")?;
        match AccountKind::parse(&row.try_get::<String, _>("kind")?) {
            Some(AccountKind::Managed) => managed += n,
            Some(AccountKind::Nulab) => nulab += n,
            None => return Err(bad("kind")),
        }
    }
    Ok((managed, nulab))
}
