//! SQL of accounts (their email tokens: [`tokens`]).

mod tokens;

pub use tokens::*;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::policy::PasswordPolicy;
use super::{Account, AccountId, AccountKind, AccountStatus, Email};
use crate::db::{Batch, Dialect, DialectSql, Outcome, Tx, flag};
use crate::ids::OrgId;

/// The columns every account read selects (table alias `a`), in the shape `from_row` reads.
#[macro_export]
macro_rules! account_columns {
    () => {
        "a.id, a.email, a.name, a.kind, a.org_id, a.status, a.email_verified_at, a.created_at, \
         a.last_sign_in_at, a.password_changed_at, a.must_change_password, a.sessions_valid_after"
    };
}

/// `account_columns!()` as a constant, for other rooms' joins (table alias `a`).
pub const COLUMNS: &str = account_columns!();

/// Reads an account from a row selected with `account_columns!()`.
pub fn from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let decode = |col: &str, what: &str| sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: format!("unknown {what}").into(),
    };
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let verified_at: Option<i64> = row.try_get("email_verified_at")?;
    Ok(Account {
        id: AccountId::parse(&id).ok_or_else(|| decode("id", "account id"))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| decode("kind", "account kind"))?,
        org_id: {
            let org: Option<String> = row.try_get("org_id")?;
            match org {
                Some(raw) => Some(OrgId::parse(&raw).ok_or_else(|| decode("org_id", "org id"))?),
                None => None,
            }
        },
        status: AccountStatus::parse(&status).ok_or_else(|| decode("status", "account status"))?,
        email_verified: verified_at.is_some(),
        created_at: row.try_get("created_at")?,
        last_sign_in_at: row.try_get("last_sign_in_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        sessions_valid_after: row.try_get("sessions_valid_after")?,
    })
}

const INSERT: &str = "INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, \
     password_hash, email_verified_at, created_at, updated_at, password_changed_at, must_change_password) \
     VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $9, $10, $11)";

/// A new, active account row: a Nulab account (sign-up) or a managed account (`managed`).
pub struct NewRow<'a> {
    pub id: AccountId,
    pub email: &'a Email,
    pub name: &'a str,
    pub kind: AccountKind,
    pub org_id: Option<OrgId>,
    pub password_hash: Option<&'a str>,
    pub email_verified_at: Option<i64>,
    pub password_changed_at: Option<i64>,
    pub must_change_password: bool,
}

/// The one `INSERT INTO accounts`.
pub async fn insert(tx: &mut Tx, now: i64, row: &NewRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(row.id.to_string())
        .bind(row.email.to_string())
        .bind(row.email.normalized())
        .bind(row.name.to_string())
        .bind(row.kind.as_str())
        .bind(row.org_id.map(|o| o.to_string()))
        .bind(row.password_hash.map(str::to_string))
        .bind(row.email_verified_at)
        .bind(now)
        .bind(row.password_changed_at)
        .bind(flag(row.must_change_password))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const BY_ID: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts a WHERE a.id = $1"
);

/// One account by id (deleted ones included).
pub async fn by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: AccountId,
) -> Result<Option<Account>, sqlx::Error> {
    let row = sqlx::query(BY_ID)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Of the live accounts that name an address, the one it finds: the account that confirmed it
/// (or the managed account that holds it); otherwise the newest unconfirmed sign-up that has not
/// lost its claim. `$1` is the normalized address.
macro_rules! by_address {
    () => {
        concat!(
            " FROM accounts a WHERE a.email_norm = $1 AND a.status <> 'deleted' \
             AND a.email_released_at IS NULL ORDER BY ",
            address_order!(),
            " LIMIT 1"
        )
    };
}

/// Which of the live accounts naming one address it finds first (see [`by_email`]).
macro_rules! address_order {
    () => {
        "CASE WHEN a.email_verified_at IS NULL AND a.kind = 'nulab' THEN 1 ELSE 0 END, \
         a.created_at DESC, a.id"
    };
}

const BY_EMAIL: &str = concat!("SELECT ", account_columns!(), by_address!());

/// The live account an address finds: the one that confirmed it, else the newest unconfirmed
/// sign-up with it (several unconfirmed sign-ups may name one address).
pub async fn by_email<'c>(
    exec: impl Executor<'c, Database = Any>,
    email: &Email,
) -> Result<Option<Account>, sqlx::Error> {
    let row = sqlx::query(BY_EMAIL)
        .bind(email.normalized())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// [`by_email`] as a statement of `batch`; read its row with [`from_row`].
pub fn by_email_in(batch: &mut Batch, email: &Email) -> usize {
    batch.push(BY_EMAIL, vec![email.normalized().into()])
}

/// For each normalized address of the JSON array `$1`, the account [`by_email`] finds, with its
/// `email_norm`.
static BY_EMAILS: DialectSql = DialectSql::new(|d| {
    format!(
        "SELECT {}, a.email_norm FROM (SELECT a.*, ROW_NUMBER() OVER \
         (PARTITION BY a.email_norm ORDER BY {}) AS pick FROM accounts a \
         WHERE {} AND a.status <> 'deleted' AND a.email_released_at IS NULL) \
         AS a WHERE a.pick = 1",
        account_columns!(),
        address_order!(),
        crate::db::in_json_texts(d, "a.email_norm", "$1")
    )
});

/// [`by_email`] for many addresses in one statement of `batch`: read it with [`by_emails_of`].
pub fn by_emails_in(batch: &mut Batch, dialect: Dialect, emails: &[&Email]) -> usize {
    let list = crate::db::json_texts(emails.iter().map(|e| e.normalized()));
    batch.push(BY_EMAILS.get(dialect), vec![list.into()])
}

/// The accounts [`by_emails_in`]'s statement found, by normalized address.
pub fn by_emails_of(
    outcome: &Outcome,
) -> Result<std::collections::HashMap<String, Account>, sqlx::Error> {
    outcome
        .rows
        .iter()
        .map(|row| Ok((row.try_get("email_norm")?, from_row(row)?)))
        .collect()
}

const CREDENTIALS: &str = concat!(
    "SELECT ",
    account_columns!(),
    ", a.password_hash",
    by_address!()
);

/// The live account that this normalized email finds (see [`by_email`]) and its password hash.
pub(crate) async fn credentials(
    pool: &sqlx::AnyPool,
    email_norm: &str,
) -> Result<Option<(Account, Option<String>)>, sqlx::Error> {
    let row = sqlx::query(CREDENTIALS)
        .bind(email_norm.to_string())
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(Some((from_row(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

const TOUCH_SIGN_IN: &str = "UPDATE accounts SET last_sign_in_at = $2 WHERE id = $1";

pub(crate) async fn touch_sign_in(tx: &mut Tx, id: AccountId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(TOUCH_SIGN_IN)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// [`touch_sign_in`] as a statement of `batch` whose outcome is not read
/// ([`Batch::push_unread`]: no later statement of the batch may write the account's row).
pub(crate) fn touch_sign_in_in(batch: &mut Batch, id: AccountId, now: i64) {
    batch.push_unread(TOUCH_SIGN_IN, vec![id.to_string().into(), now.into()]);
}

/// Sets the last sign-in time of the accounts whose ids are the JSON array `$1` to `$2`.
static TOUCH_SIGN_INS: DialectSql = DialectSql::new(|d| {
    format!(
        "UPDATE accounts SET last_sign_in_at = $2 WHERE {}",
        crate::db::in_json_texts(d, "id", "$1")
    )
});

/// [`touch_sign_in_in`] for the accounts `ids` of several sign-ins recorded together at `now`,
/// in one statement whatever their number.
pub(crate) fn touch_sign_ins_in(batch: &mut Batch, dialect: Dialect, ids: &[AccountId], now: i64) {
    batch.push_unread(
        TOUCH_SIGN_INS.get(dialect),
        vec![crate::db::json_texts(ids).into(), now.into()],
    );
}

const SET_VERIFIED: &str = "UPDATE accounts SET email_verified_at = $2, updated_at = $2 \
     WHERE id = $1 AND email_released_at IS NULL";

/// Marks the account's address confirmed; `false` when the account lost its claim to it. A
/// unique violation means another account confirmed the address first.
pub(super) async fn set_email_verified(
    tx: &mut Tx,
    id: AccountId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(SET_VERIFIED)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

const RELEASE: &str = "UPDATE accounts SET email_released_at = $3, updated_at = $3 \
     WHERE email_norm = $1 AND id <> $2 AND status <> 'deleted' AND kind = 'nulab' \
     AND email_verified_at IS NULL AND email_released_at IS NULL RETURNING id";

/// Every other live, unconfirmed Nulab account naming `email_norm` loses its claim to it;
/// returns those accounts.
pub(super) async fn release_unconfirmed(
    tx: &mut Tx,
    email_norm: &str,
    holder: AccountId,
    now: i64,
) -> Result<Vec<AccountId>, sqlx::Error> {
    let rows = sqlx::query(RELEASE)
        .bind(email_norm.to_string())
        .bind(holder.to_string())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        ids.extend(AccountId::parse(&id));
    }
    Ok(ids)
}

const CLAIMED_BY_OTHER: &str = "SELECT COUNT(*) AS n FROM accounts WHERE email_norm = $1 \
     AND id <> $2 AND status <> 'deleted' AND (email_verified_at IS NOT NULL OR kind = 'managed')";

/// Whether another live account holds `email_norm` as its confirmed (or managed) address.
pub async fn claimed_by_other<'c>(
    exec: impl Executor<'c, Database = Any>,
    email_norm: &str,
    account: Option<AccountId>,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(CLAIMED_BY_OTHER)
        .bind(email_norm.to_string())
        .bind(account.map(|a| a.to_string()).unwrap_or_default())
        .fetch_one(exec)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

const SET_PASSWORD: &str = "UPDATE accounts SET password_hash = $2, password_changed_at = $3, \
     must_change_password = 0, updated_at = $3 WHERE id = $1";

/// Stores a new password hash; a forced change is satisfied, and counted wrong passwords (and
/// any pause of password sign-in) end.
pub async fn set_password(
    tx: &mut Tx,
    id: AccountId,
    hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_PASSWORD)
        .bind(id.to_string())
        .bind(hash.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    match by_id(&mut **tx, id).await? {
        Some(account) => super::throttle::clear(tx, &account).await,
        None => Ok(()),
    }
}

const PASSWORD_HASH: &str = "SELECT password_hash FROM accounts WHERE id = $1";

/// The stored password hash of an account, if it has a password.
pub async fn password_hash<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: AccountId,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(PASSWORD_HASH)
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?;
    match row {
        Some(row) => row.try_get("password_hash"),
        None => Ok(None),
    }
}

const SET_EMAIL: &str = "UPDATE accounts SET email = $2, email_norm = $3, \
     email_verified_at = $5, updated_at = $4 WHERE id = $1";
const SET_SORT_KEY: &str = "UPDATE memberships SET sort_key = $2 WHERE account_id = $1";

/// Changes the email (and the member lists' sort key). `verified_at` is `None` when the new
/// address must be confirmed again, or the time an organization vouched for it.
pub async fn set_email(
    tx: &mut Tx,
    id: AccountId,
    email: &Email,
    verified_at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_EMAIL)
        .bind(id.to_string())
        .bind(email.to_string())
        .bind(email.normalized())
        .bind(now)
        .bind(verified_at)
        .execute(&mut **tx)
        .await?;
    sqlx::query(SET_SORT_KEY)
        .bind(id.to_string())
        .bind(email.normalized())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const LIFETIME: &str = "SELECT lifetime_hours FROM session_settings WHERE org_id = $1";

/// The org's configured session lifetime in hours, if it set one.
pub async fn lifetime_hours<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(LIFETIME)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    lifetime_of_row(row.as_ref())
}

/// [`lifetime_hours`] as a statement of `batch`; returns its index.
pub(crate) fn lifetime_hours_in(batch: &mut Batch, org: OrgId) -> usize {
    batch.push(LIFETIME, vec![org.to_string().into()])
}

/// The configured lifetimes of the organizations whose ids are the JSON array `$1`.
static LIFETIMES: DialectSql = DialectSql::new(|d| {
    format!(
        "SELECT org_id, lifetime_hours FROM session_settings WHERE {}",
        crate::db::in_json_texts(d, "org_id", "$1")
    )
});

/// [`lifetime_hours_in`] for several organizations in one statement of `batch`; returns its
/// index ([`lifetimes_hours_of`] reads it).
pub(crate) fn lifetimes_hours_in(batch: &mut Batch, dialect: Dialect, orgs: &[OrgId]) -> usize {
    batch.push(
        LIFETIMES.get(dialect),
        vec![crate::db::json_texts(orgs).into()],
    )
}

/// The answer of [`lifetimes_hours_in`]'s statement: each organization that set a lifetime,
/// with it in hours.
pub(crate) fn lifetimes_hours_of(
    outcome: &Outcome,
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    (outcome.rows.iter())
        .map(|r| Ok((r.try_get("org_id")?, r.try_get("lifetime_hours")?)))
        .collect()
}

/// The answer of [`lifetime_hours_in`]'s statement.
pub(crate) fn lifetime_hours_of(outcome: &Outcome) -> Result<Option<i64>, sqlx::Error> {
    lifetime_of_row(outcome.rows.first())
}

/// The lifetime in `LIFETIME`'s answer row, if there is one.
fn lifetime_of_row(row: Option<&AnyRow>) -> Result<Option<i64>, sqlx::Error> {
    row.map(|r| r.try_get("lifetime_hours")).transpose()
}

const PUT_LIFETIME: &str = "INSERT INTO session_settings (org_id, lifetime_hours, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (org_id) DO UPDATE SET lifetime_hours = excluded.lifetime_hours, \
     updated_at = excluded.updated_at";

pub async fn put_lifetime_hours(
    tx: &mut Tx,
    org: OrgId,
    hours: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(PUT_LIFETIME)
        .bind(org.to_string())
        .bind(hours)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const POLICY: &str = "SELECT min_length, require_three_classes, reject_common, max_age_days, \
     password_sign_in FROM password_policies WHERE org_id = $1";

/// The organization's password policy (the defaults until an admin changes it).
pub async fn policy<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<PasswordPolicy, sqlx::Error> {
    let row = sqlx::query(POLICY)
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    let Some(row) = row else {
        return Ok(PasswordPolicy::default());
    };
    Ok(PasswordPolicy {
        min_length: row.try_get("min_length")?,
        require_three_classes: row.try_get::<i64, _>("require_three_classes")? != 0,
        reject_common: row.try_get::<i64, _>("reject_common")? != 0,
        max_age_days: row.try_get("max_age_days")?,
        password_sign_in: row.try_get::<i64, _>("password_sign_in")? != 0,
    })
}

const SET_POLICY: &str = "INSERT INTO password_policies (org_id, min_length, require_three_classes, \
     reject_common, max_age_days, password_sign_in, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (org_id) DO UPDATE SET min_length = excluded.min_length, \
     require_three_classes = excluded.require_three_classes, reject_common = excluded.reject_common, \
     max_age_days = excluded.max_age_days, password_sign_in = excluded.password_sign_in, \
     updated_at = excluded.updated_at";

/// Sets the organization's password policy.
pub async fn set_policy(
    tx: &mut Tx,
    org: OrgId,
    policy: &PasswordPolicy,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_POLICY)
        .bind(org.to_string())
        .bind(policy.min_length)
        .bind(flag(policy.require_three_classes))
        .bind(flag(policy.reject_common))
        .bind(policy.max_age_days)
        .bind(flag(policy.password_sign_in))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const END_SIGN_INS: &str = "UPDATE accounts SET sessions_valid_after = $2 WHERE id = $1";

/// Stamps the account so that every sign-in that started before `now` is over.
pub(super) async fn end_sign_ins(tx: &mut Tx, id: AccountId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(END_SIGN_INS)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SET_NAME: &str = "UPDATE accounts SET name = $2, updated_at = $3 WHERE id = $1";

/// Renames an account.
pub async fn set_name(tx: &mut Tx, id: AccountId, name: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(SET_NAME)
        .bind(id.to_string())
        .bind(name.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
