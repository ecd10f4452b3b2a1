//! Brute-force protection of password sign-in: wrong passwords are counted per account, and after
//! `MAX_FAILURES` within `WINDOW_MS` password sign-in to that account pauses for `PAUSE_MS`.
//! During a pause the password is not even checked, so guessing cannot go on; a successful
//! sign-in or a new password (set through an emailed link or by the user) ends the count.

use sqlx::{Any, Executor, Row};

use super::{Account, AccountId};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::db::Tx;

/// Wrong passwords that pause password sign-in.
pub const MAX_FAILURES: i64 = 10;
/// The window in which they are counted.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// How long password sign-in pauses.
pub const PAUSE_MS: i64 = 15 * 60 * 1000;

const PAUSED_UNTIL: &str =
    "SELECT paused_until FROM password_failures WHERE account_id = $1 AND paused_until > $2";

/// Until when password sign-in to the account is paused, if it is now.
pub async fn paused_until<'c>(
    exec: impl Executor<'c, Database = Any>,
    account: AccountId,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(PAUSED_UNTIL)
        .bind(account.to_string())
        .bind(now)
        .fetch_optional(exec)
        .await?;
    row.map(|r| r.try_get("paused_until")).transpose()
}

/// Counts one failure; a failure older than the window starts the count again.
const COUNT: &str = "INSERT INTO password_failures (account_id, failures, first_at, paused_until) \
     VALUES ($1, 1, $2, NULL) ON CONFLICT (account_id) DO UPDATE SET \
     failures = CASE WHEN password_failures.first_at <= $3 THEN 1 ELSE password_failures.failures + 1 END, \
     first_at = CASE WHEN password_failures.first_at <= $3 THEN $2 ELSE password_failures.first_at END \
     RETURNING failures";

/// A pause starts and the count begins again.
const PAUSE: &str = "UPDATE password_failures SET paused_until = $2, failures = 0, first_at = $3 \
     WHERE account_id = $1";

/// Records a wrong password. Returns the end of the pause when this failure starts one.
pub async fn failed(tx: &mut Tx, account: AccountId, now: i64) -> Result<Option<i64>, sqlx::Error> {
    let failures: i64 = sqlx::query(COUNT)
        .bind(account.to_string())
        .bind(now)
        .bind(now - WINDOW_MS)
        .fetch_one(&mut **tx)
        .await?
        .try_get("failures")?;
    if failures < MAX_FAILURES {
        return Ok(None);
    }
    let until = now + PAUSE_MS;
    sqlx::query(PAUSE)
        .bind(account.to_string())
        .bind(until)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(Some(until))
}

/// Counts a wrong password or second-factor code for `account`; a pause it starts is audited.
pub async fn count_failure(
    tx: &mut Tx,
    now: i64,
    account: &Account,
    meta: &RequestMeta,
) -> Result<(), sqlx::Error> {
    let Some(until) = failed(tx, account.id, now).await? else {
        return Ok(());
    };
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: account.org_id,
            action: AuditAction::AccountSignInPaused,
            actor: &audit::Actor::Anonymous,
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({
                "failures": MAX_FAILURES,
                "window_minutes": WINDOW_MS / 60_000,
                "paused_until": until,
            }),
        },
    )
    .await
}

const CLEAR: &str = "DELETE FROM password_failures WHERE account_id = $1";

/// Ends the count (and any pause): the password was right, or a new one was set.
pub async fn clear(tx: &mut Tx, account: AccountId) -> Result<(), sqlx::Error> {
    sqlx::query(CLEAR)
        .bind(account.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
