//! SQL of sign-in: TOTP credentials, break-glass admins, and organizations' session lifetimes.

use sqlx::{Any, Executor, Row};

use crate::accounts::totp_key::TotpKey;
use crate::db::Tx;
use crate::ids::{AccountId, OrgId};

/// A TOTP credential; `confirmed_at` is `None` while enrollment waits for the first code.
#[derive(Clone, Debug)]
pub struct TotpRow {
    /// The secret as stored: sealed with the TOTP key ([`open_secret`] reads it).
    pub secret: String,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
    pub created_at: i64,
}

const TOTP: &str = "SELECT secret, confirmed_at, last_step, created_at FROM totp_credentials WHERE account_id = $1";

pub async fn totp<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
) -> Result<Option<TotpRow>, sqlx::Error> {
    let row = sqlx::query(TOTP)
        .bind(account.to_string())
        .fetch_optional(exec)
        .await?;
    row.map(|row| {
        Ok(TotpRow {
            secret: row.try_get("secret")?,
            confirmed_at: row.try_get("confirmed_at")?,
            last_step: row.try_get("last_step")?,
            created_at: row.try_get("created_at")?,
        })
    })
    .transpose()
}

/// The base32 secret of `row`, opened with the TOTP key. A value that does not open (another
/// key, or a row copied from another account) is a decoding error, never a match.
pub fn open_secret(
    key: &TotpKey,
    account: AccountId,
    row: &TotpRow,
) -> Result<String, sqlx::Error> {
    key.open(account, &row.secret)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

const PLAINTEXT_TOTP: &str = "SELECT account_id, secret FROM totp_credentials \
     WHERE secret NOT LIKE 'v1:%'";
const SEAL_TOTP: &str =
    "UPDATE totp_credentials SET secret = $3 WHERE account_id = $1 AND secret = $2";

/// Seals every secret stored before TOTP secrets were sealed (run at start-up, before the
/// server listens; several instances may run it at once: each row changes once). Returns how
/// many it sealed.
pub async fn seal_plaintext_totp(db: &crate::db::Db, key: &TotpKey) -> anyhow::Result<u64> {
    let rows = sqlx::query(PLAINTEXT_TOTP).fetch_all(db.pool()).await?;
    let mut sealed = 0;
    for row in rows {
        let id: String = row.try_get("account_id")?;
        let plain: String = row.try_get("secret")?;
        let Some(account) = AccountId::parse(&id) else {
            continue;
        };
        let done = sqlx::query(SEAL_TOTP)
            .bind(id)
            .bind(plain.clone())
            .bind(key.seal(account, &plain)?)
            .execute(&mut *db.write().await?)
            .await?;
        sealed += done.rows_affected();
    }
    if sealed > 0 {
        tracing::info!(sealed, "sealed TOTP secrets stored before sealing");
    }
    Ok(sealed)
}

const PUT_PENDING_TOTP: &str = "INSERT INTO totp_credentials (account_id, secret, confirmed_at, \
     last_step, created_at) VALUES ($1, $2, NULL, 0, $3) ON CONFLICT (account_id) DO UPDATE \
     SET secret = excluded.secret, created_at = excluded.created_at, last_step = 0 \
     WHERE totp_credentials.confirmed_at IS NULL";

/// Stores a new unconfirmed secret, already sealed (never over a confirmed one).
pub async fn put_pending_totp(
    tx: &mut Tx,
    account: AccountId,
    secret: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(PUT_PENDING_TOTP)
        .bind(account.to_string())
        .bind(secret.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const CONFIRM_TOTP: &str = "UPDATE totp_credentials SET confirmed_at = $2, last_step = $3 \
     WHERE account_id = $1 AND confirmed_at IS NULL";

pub async fn confirm_totp(
    tx: &mut Tx,
    account: AccountId,
    now: i64,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CONFIRM_TOTP)
        .bind(account.to_string())
        .bind(now)
        .bind(step)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const USE_STEP: &str = "UPDATE totp_credentials SET last_step = $2 \
     WHERE account_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2";

/// Records that the code of `step` was used; `false` when it (or a later one) already was.
pub async fn use_totp_step(
    tx: &mut Tx,
    account: AccountId,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(USE_STEP)
        .bind(account.to_string())
        .bind(step)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const DELETE_TOTP: &str = "DELETE FROM totp_credentials WHERE account_id = $1";

pub async fn delete_totp(tx: &mut Tx, account: AccountId) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_TOTP)
        .bind(account.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An organization named in sign-in messages and break-glass notices.
#[derive(Clone, Debug)]
pub struct OrgRef {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
}

fn org_ref(row: &sqlx::any::AnyRow) -> Result<OrgRef, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(OrgRef {
        id: OrgId::parse(&id).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "id".into(),
            source: "not an org id".into(),
        })?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
    })
}

const SSO_REQUIRED_ADMIN_ORGS: &str = "SELECT o.id, o.slug, o.name FROM memberships m \
     JOIN orgs o ON o.id = m.org_id JOIN password_policies p ON p.org_id = m.org_id \
     WHERE m.account_id = $1 AND m.role = 'admin' AND p.password_sign_in = 0 ORDER BY o.slug";

/// The organizations that require SSO and that this account administers.
pub async fn sso_required_admin_orgs<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
) -> Result<Vec<OrgRef>, sqlx::Error> {
    let rows = sqlx::query(SSO_REQUIRED_ADMIN_ORGS)
        .bind(account.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(org_ref).collect()
}

const ORG_BY_ID: &str = "SELECT id, slug, name FROM orgs WHERE id = $1";

pub async fn org_by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Option<OrgRef>, sqlx::Error> {
    let row = sqlx::query(ORG_BY_ID)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(org_ref).transpose()
}

const BREAK_GLASS_ADMINS: &str = "SELECT a.email FROM memberships m \
     JOIN accounts a ON a.id = m.account_id JOIN totp_credentials t ON t.account_id = a.id \
     WHERE m.org_id = $1 AND m.role = 'admin' AND a.kind = 'nulab' AND a.status = 'active' \
     AND a.password_hash IS NOT NULL AND t.confirmed_at IS NOT NULL ORDER BY a.email_norm";

/// Emails of the admins who can sign in without SSO: active Nulab accounts with a password
/// and a confirmed second factor.
pub async fn break_glass_admins<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(BREAK_GLASS_ADMINS)
        .bind(org.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("email")).collect()
}
