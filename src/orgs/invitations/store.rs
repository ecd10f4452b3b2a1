//! SQL of invitations, and of the member list that shows them beside the members.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Invitation, InvitationId, InvitationStatus, Listed};
use crate::accounts::{AccountKind, AccountStatus};
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};
use crate::orgs::{Member, Role};

fn bad(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unexpected {col}").into(),
    }
}

/// `SELECT` of every invitation column, then the rest of the statement.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT id, org_id, email, role, status, invited_by, created_at, sent_at, ",
            "expires_at, decided_at FROM invitations ",
            $rest
        )
    };
}

fn from_row(row: &AnyRow) -> Result<Invitation, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let org: String = row.try_get("org_id")?;
    let role: String = row.try_get("role")?;
    let status: String = row.try_get("status")?;
    Ok(Invitation {
        id: InvitationId::parse(&id).ok_or_else(|| bad("id"))?,
        org_id: OrgId::parse(&org).ok_or_else(|| bad("org_id"))?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| bad("role"))?,
        status: InvitationStatus::parse(&status).ok_or_else(|| bad("status"))?,
        invited_by: row.try_get("invited_by")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const INSERT: &str = "INSERT INTO invitations (id, org_id, email, email_norm, role, status, \
     token_hash, invited_by, created_at, sent_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8, $9)";

pub(super) async fn insert(
    tx: &mut Tx,
    invitation: &Invitation,
    token_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(invitation.id.to_string())
        .bind(invitation.org_id.to_string())
        .bind(invitation.email.clone())
        .bind(invitation.email.to_lowercase())
        .bind(invitation.role.as_str())
        .bind(token_hash.to_string())
        .bind(invitation.invited_by.clone())
        .bind(invitation.created_at)
        .bind(invitation.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The invitation with this id, of this organization.
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    id: InvitationId,
) -> Result<Option<Invitation>, sqlx::Error> {
    const SQL: &str = select!("WHERE id = $1 AND org_id = $2");
    let row = sqlx::query(SQL)
        .bind(id.to_string())
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The invitation with this id, addressed to `email_norm`.
pub async fn for_email<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: InvitationId,
    email_norm: &str,
) -> Result<Option<Invitation>, sqlx::Error> {
    const SQL: &str = select!("WHERE id = $1 AND email_norm = $2");
    let row = sqlx::query(SQL)
        .bind(id.to_string())
        .bind(email_norm.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The invitation whose emailed link hashes to `token_hash`.
pub async fn by_token<'c>(
    exec: impl Executor<'c, Database = Any>,
    token_hash: &str,
) -> Result<Option<Invitation>, sqlx::Error> {
    const SQL: &str = select!("WHERE token_hash = $1");
    let row = sqlx::query(SQL)
        .bind(token_hash.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Pending, unexpired invitations addressed to `email_norm`, oldest first.
pub async fn pending_for_email<'c>(
    exec: impl Executor<'c, Database = Any>,
    email_norm: &str,
    now: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    const SQL: &str = select!(
        "WHERE email_norm = $1 AND status = 'pending' \
         AND expires_at > $2 ORDER BY created_at, id"
    );
    let rows = sqlx::query(SQL)
        .bind(email_norm.to_string())
        .bind(now)
        .fetch_all(exec)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Open (pending or expired) invitations of the organization, by email, at most `limit`.
pub async fn open_of_org<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    const SQL: &str = select!(
        "WHERE org_id = $1 AND status IN ('pending', 'expired') \
         ORDER BY email_norm, id LIMIT $2"
    );
    let rows = sqlx::query(SQL)
        .bind(org.to_string())
        .bind(limit)
        .fetch_all(exec)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The open invitation of the organization for `email_norm`, if any.
pub async fn open_for<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    email_norm: &str,
) -> Result<Option<Invitation>, sqlx::Error> {
    const SQL: &str = select!(
        "WHERE org_id = $1 AND email_norm = $2 \
         AND status IN ('pending', 'expired')"
    );
    let row = sqlx::query(SQL)
        .bind(org.to_string())
        .bind(email_norm.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

const DECIDE: &str = "UPDATE invitations SET status = $2, decided_at = $3 \
     WHERE id = $1 AND status IN ('pending', 'expired') AND ($4 = 0 OR status = 'pending')";

/// Moves an open invitation to its final status; `false` when it was no longer open (or, with
/// `only_pending`, no longer pending). The condition makes parallel decisions decide it once.
pub(super) async fn decide(
    tx: &mut Tx,
    id: InvitationId,
    status: InvitationStatus,
    now: i64,
    only_pending: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(DECIDE)
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(now)
        .bind(i64::from(only_pending))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const RENEW: &str = "UPDATE invitations SET status = 'pending', token_hash = $2, sent_at = $3, \
     expires_at = $4 WHERE id = $1 AND status IN ('pending', 'expired')";

/// A new link and expiry for an open invitation (the old link stops working).
pub(super) async fn renew(
    tx: &mut Tx,
    id: InvitationId,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(RENEW)
        .bind(id.to_string())
        .bind(token_hash.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending invitations past their expiry, at most `limit`.
pub(super) async fn due<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: i64,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    const SQL: &str = select!(
        "WHERE status = 'pending' AND expires_at <= $1 \
         ORDER BY expires_at, id LIMIT $2"
    );
    let rows = sqlx::query(SQL)
        .bind(now)
        .bind(limit)
        .fetch_all(exec)
        .await?;
    rows.iter().map(from_row).collect()
}

const EXPIRE: &str = "UPDATE invitations SET status = 'expired' \
     WHERE id = $1 AND status = 'pending' AND expires_at <= $2";

pub(super) async fn expire(tx: &mut Tx, id: InvitationId, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(EXPIRE)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const MEMBER_WITH_EMAIL: &str = "SELECT a.id FROM memberships m JOIN accounts a \
     ON a.id = m.account_id WHERE m.org_id = $1 AND a.email_norm = $2 AND a.status <> 'deleted'";

/// The member of the organization that uses `email_norm`, if one does.
pub(super) async fn member_with_email<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    email_norm: &str,
) -> Result<Option<AccountId>, sqlx::Error> {
    let row = sqlx::query(MEMBER_WITH_EMAIL)
        .bind(org.to_string())
        .bind(email_norm.to_string())
        .fetch_optional(exec)
        .await?;
    match row {
        Some(row) => {
            let id: String = row.try_get("id")?;
            Ok(Some(AccountId::parse(&id).ok_or_else(|| bad("id"))?))
        }
        None => Ok(None),
    }
}

/// Which rows the member list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Both,
    MembersOnly,
    InvitationsOnly,
}

impl Rows {
    fn as_str(self) -> &'static str {
        match self {
            Rows::Both => "both",
            Rows::MembersOnly => "members",
            Rows::InvitationsOnly => "invitations",
        }
    }
}

/// Members and open invitations, one order by (email, id); each side uses its own index and
/// limit, so a page costs two index range scans whatever the size of the organization.
const ENTRIES: &str = "SELECT * FROM ( \
     SELECT * FROM (SELECT 'member' AS entry, a.id AS entry_id, a.email, a.name, a.kind, \
       a.status, a.last_sign_in_at, m.role, m.created_at AS since, CAST(0 AS BIGINT) AS expires_at, \
       m.sort_key AS sort_key FROM memberships m JOIN accounts a ON a.id = m.account_id \
       WHERE m.org_id = $1 AND $7 <> 'invitations' AND ($2 = '' OR a.kind = $2) \
       AND ($3 = '' OR a.status = $3) AND (m.sort_key, m.account_id) > ($4, $5) \
       ORDER BY m.sort_key, m.account_id LIMIT $6) mm \
     UNION ALL \
     SELECT * FROM (SELECT 'invitation' AS entry, i.id AS entry_id, i.email, '' AS name, \
       '' AS kind, i.status, CAST(NULL AS BIGINT) AS last_sign_in_at, i.role, i.sent_at AS since, i.expires_at, \
       i.email_norm AS sort_key FROM invitations i \
       WHERE i.org_id = $1 AND $7 <> 'members' AND i.status IN ('pending', 'expired') \
       AND (i.email_norm, i.id) > ($4, $5) ORDER BY i.email_norm, i.id LIMIT $6) ii \
     ) x ORDER BY x.sort_key, x.entry_id LIMIT $6";

/// Query of [`entries`].
pub struct EntryQuery<'a> {
    pub org: OrgId,
    pub kind: Option<AccountKind>,
    pub status: Option<AccountStatus>,
    pub rows: Rows,
    pub after: Option<&'a [String]>,
    pub limit: i64,
    pub now: i64,
}

/// One page of members and invitations with each row's sort key.
pub(super) async fn entries(
    pool: &sqlx::AnyPool,
    q: &EntryQuery<'_>,
) -> Result<Vec<(Listed, String)>, sqlx::Error> {
    let (after_email, after_id) = match q.after {
        Some([email, id]) => (email.clone(), id.clone()),
        _ => (String::new(), String::new()),
    };
    let rows = sqlx::query(ENTRIES)
        .bind(q.org.to_string())
        .bind(q.kind.map(|k| k.as_str()).unwrap_or(""))
        .bind(q.status.map(|s| s.as_str()).unwrap_or(""))
        .bind(after_email)
        .bind(after_id)
        .bind(q.limit)
        .bind(q.rows.as_str())
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| entry_from_row(row, q.now)).collect()
}

fn entry_from_row(row: &AnyRow, now: i64) -> Result<(Listed, String), sqlx::Error> {
    let entry: String = row.try_get("entry")?;
    let id: String = row.try_get("entry_id")?;
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| bad("role"))?;
    let status: String = row.try_get("status")?;
    let sort_key: String = row.try_get("sort_key")?;
    let listed = if entry == "member" {
        let kind: String = row.try_get("kind")?;
        Listed::Member(Member {
            account_id: AccountId::parse(&id).ok_or_else(|| bad("entry_id"))?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            kind: AccountKind::parse(&kind).ok_or_else(|| bad("kind"))?,
            role,
            status: AccountStatus::parse(&status).ok_or_else(|| bad("status"))?,
            last_sign_in_at: row.try_get("last_sign_in_at")?,
            joined_at: row.try_get("since")?,
        })
    } else {
        let stored = InvitationStatus::parse(&status).ok_or_else(|| bad("status"))?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Listed::Invitation(super::InvitedEntry {
            invitation_id: id,
            email: row.try_get("email")?,
            role,
            status: super::listed_status(stored, expires_at, now),
            invited_at: row.try_get("since")?,
            expires_at,
        })
    };
    Ok((listed, sort_key))
}
