//! Brute-force protection of passwords and second-factor codes, on the shared rate limits
//! (`crate::limits`): attempts are counted per account (keyed by the email address typed, so an
//! address without an account is paused just the same and the pause tells nothing) and per
//! client address (failures only, whatever the account). Past `--limit-sign-in-per-account`
//! password sign-in to the account pauses; past `--limit-sign-in-per-address` the address
//! waits. During a pause the password is not even checked. A successful sign-in or a new
//! password (set through an emailed link or by the user) ends the account's count and pause.

use super::Account;
use crate::audit::{RequestMeta, Target};
use crate::config::RateLimits;
use crate::db::{Db, Tx};
use crate::limits::{self, Blocked, Bucket, Limit};

/// The account's (or the typed address's) counter.
pub fn account_bucket(email: &str, account: Option<&Account>) -> Bucket {
    let email = account.map_or(email, |a| a.email.as_str());
    Bucket::email(Limit::SignInPerAccount, email).about(
        account.and_then(|a| a.org_id),
        account.map(|a| Target::account(a.id)),
    )
}

/// The counters of one attempt: the account's and the client address's.
pub fn buckets(email: &str, account: Option<&Account>, meta: &RequestMeta) -> Vec<Bucket> {
    let mut buckets = vec![account_bucket(email, account)];
    buckets.extend(Bucket::address(Limit::SignInPerAddress, meta));
    buckets
}

/// Counts a password attempt before the password is checked (so that parallel guesses are
/// counted too), in its own transaction. `Some` refuses the attempt.
pub async fn take_attempt(
    db: &Db,
    limits: &RateLimits,
    now: i64,
    email: &str,
    account: Option<&Account>,
    meta: &RequestMeta,
) -> Result<Option<Blocked>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let refused = limits::take(&mut tx, limits, now, &buckets(email, account, meta), meta).await?;
    tx.commit().await?;
    Ok(refused)
}

/// The password was right: the counts get the attempt back, and when the sign-in is complete
/// (no second factor still to come) the account's count ends.
pub async fn succeeded(
    tx: &mut Tx,
    email: &str,
    account: Option<&Account>,
    meta: &RequestMeta,
    complete: bool,
) -> Result<(), sqlx::Error> {
    let all = buckets(email, account, meta);
    limits::give_back(tx, &all).await?;
    if complete {
        limits::clear(tx, &all[0]).await?;
    }
    Ok(())
}

/// Whether the account or the address is paused now (for a check that counts afterwards).
pub async fn paused(
    db: &Db,
    now: i64,
    account: &Account,
    meta: &RequestMeta,
) -> Result<Option<Blocked>, sqlx::Error> {
    limits::blocked(db, now, &buckets(&account.email, Some(account), meta)).await
}

/// Counts a wrong second-factor code (or a wrong password checked elsewhere) for `account`.
/// Returns the pauses it starts.
pub async fn count_failure(
    tx: &mut Tx,
    limits: &RateLimits,
    now: i64,
    account: &Account,
    meta: &RequestMeta,
) -> Result<Vec<Blocked>, sqlx::Error> {
    let all = buckets(&account.email, Some(account), meta);
    limits::count(tx, limits, now, &all, meta).await
}

/// Ends the account's count (and any pause): the password was right, or a new one was set.
pub async fn clear(tx: &mut Tx, account: &Account) -> Result<(), sqlx::Error> {
    limits::clear(tx, &account_bucket(&account.email, Some(account))).await
}
