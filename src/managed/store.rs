//! SQL of managed accounts (the seats they take are `orgs::seats`).

use crate::accounts::AccountStatus;
use crate::db::Tx;
use crate::ids::AccountId;

const SET_STATUS: &str = "UPDATE accounts SET status = $2, updated_at = $3 WHERE id = $1";

pub(super) async fn set_status(
    tx: &mut Tx,
    id: AccountId,
    status: AccountStatus,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_STATUS)
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const FORCE_CHANGE: &str =
    "UPDATE accounts SET must_change_password = 1, updated_at = $2 WHERE id = $1";

pub(super) async fn force_password_change(
    tx: &mut Tx,
    id: AccountId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(FORCE_CHANGE)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const TOMBSTONE: &str = "UPDATE accounts SET status = 'deleted', deleted_at = $2, password_hash = NULL, \
     updated_at = $2 WHERE id = $1";
const DELETE_MEMBERSHIPS: &str = "DELETE FROM memberships WHERE account_id = $1";
const KILL_TOKENS: &str = "UPDATE email_tokens SET expires_at = $2 WHERE account_id = $1 AND used_at IS NULL AND expires_at > $2";

/// Turns an account into a tombstone: no password, no memberships, no live links; the row and
/// its id stay so that product data referring to it stays attributable.
pub(super) async fn tombstone(tx: &mut Tx, id: AccountId, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(TOMBSTONE)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(DELETE_MEMBERSHIPS)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(KILL_TOKENS)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
