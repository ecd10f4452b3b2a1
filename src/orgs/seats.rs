//! Seats of an organization: how many it subscribed (the `orgs.seats` column) and how many its
//! managed accounts take (the `orgs.seats_used` column, which triggers on `accounts` keep).
//! Claiming a seat and changing the subscription are rules of
//! `managed` (rule 4 of the design), which call these.

use serde::Serialize;
use sqlx::{Any, Executor, Row};

use crate::db::Tx;
use crate::ids::OrgId;

/// Seats of an organization.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct Seats {
    pub subscribed: i64,
    pub used: i64,
}

impl Seats {
    pub fn free(&self) -> i64 {
        (self.subscribed - self.used).max(0)
    }
}

/// Both numbers are columns of the organization's row: `seats_used` is kept by triggers on
/// `accounts` (schema migration 23), which move it in the transaction of every change that
/// takes or frees a seat, so reading it is one row however large the organization is.
const SEATS_OF: &str = "SELECT seats, seats_used FROM orgs WHERE id = $1";

/// Seats subscribed and used, in one read of the organization's row.
pub async fn of<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Seats, sqlx::Error> {
    let row = sqlx::query(SEATS_OF)
        .bind(org.to_string())
        .fetch_one(exec)
        .await?;
    Ok(Seats {
        subscribed: row.try_get("seats")?,
        used: row.try_get("seats_used")?,
    })
}

/// Seats taken: active and suspended managed accounts (deleted ones free their seat).
pub async fn used<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<i64, sqlx::Error> {
    Ok(of(exec, org).await?.used)
}

const SEATS: &str = "SELECT seats FROM orgs WHERE id = $1";

/// Subscribed seats of an organization.
pub async fn subscribed<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(SEATS)
        .bind(org.to_string())
        .fetch_one(exec)
        .await?;
    row.try_get("seats")
}

const SET_SEATS: &str = "UPDATE orgs SET seats = $2 WHERE id = $1";

/// Sets the subscribed seats.
pub async fn set_subscribed(tx: &mut Tx, org: OrgId, seats: i64) -> Result<(), sqlx::Error> {
    sqlx::query(SET_SEATS)
        .bind(org.to_string())
        .bind(seats)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
