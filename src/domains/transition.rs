//! The domain transition of an organization imported from before domain verification was
//! required (`nulab-pass org import-legacy`): its managed accounts that existed at the import
//! keep signing in on domains the organization has not verified, until the transition ends;
//! then rule 1 of the design applies to them as to everyone.

use serde::Serialize;

use super::store;
use crate::clock::DAY_MS;
use crate::db::Tx;
use crate::ids::OrgId;

/// A managed account that depends on a domain the organization has not verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Dependent {
    pub email: String,
    pub domain: String,
}

/// An organization's transition: when it ends and who depends on it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Transition {
    pub imported_at: i64,
    pub until: i64,
    /// Whole days left, counting a started day (0 once it has ended).
    pub days_left: i64,
    pub accounts: Vec<Dependent>,
}

impl Transition {
    /// Whether the transition still lets its accounts sign in.
    pub fn running(&self, now: i64) -> bool {
        now < self.until
    }
}

/// The organization's transition, if it was imported, with the accounts that still depend on an
/// unverified domain.
pub async fn of(
    conn: &mut sqlx::AnyConnection,
    org: OrgId,
    now: i64,
) -> Result<Option<Transition>, sqlx::Error> {
    let Some((imported_at, until)) = store::legacy_window(&mut *conn, org).await? else {
        return Ok(None);
    };
    let verified = store::verified_names(&mut *conn, org).await?;
    let accounts = store::managed_emails_before(&mut *conn, org, imported_at)
        .await?
        .into_iter()
        .filter_map(|email| {
            let domain = email.rsplit_once('@')?.1.to_ascii_lowercase();
            (!verified.contains(&domain)).then_some(Dependent { email, domain })
        })
        .collect();
    Ok(Some(Transition {
        imported_at,
        until,
        days_left: ((until - now).max(0) + DAY_MS - 1) / DAY_MS,
        accounts,
    }))
}

/// Whether an account created at `created_at` may still sign in on an unverified domain of
/// `org` at `now`: only during the transition, and only if it existed at the import.
pub async fn allows(
    tx: &mut Tx,
    org: OrgId,
    created_at: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    Ok(match store::legacy_window(&mut **tx, org).await? {
        Some((imported_at, until)) => now < until && created_at <= imported_at,
        None => false,
    })
}

/// Starts the transition (the caller audits it and emails the admins).
pub async fn start(tx: &mut Tx, org: OrgId, now: i64, until: i64) -> Result<(), sqlx::Error> {
    store::start_legacy(tx, org, now, until).await
}

/// Organizations in a transition whose admins were last reminded before `before`.
pub async fn due_reminders(
    pool: &sqlx::AnyPool,
    now: i64,
    before: i64,
) -> Result<Vec<OrgId>, sqlx::Error> {
    store::legacy_due(pool, now, before).await
}

/// Notes that the admins were reminded at `now`.
pub async fn reminded(tx: &mut Tx, org: OrgId, now: i64) -> Result<(), sqlx::Error> {
    store::legacy_reminded(tx, org, now).await
}
