//! Rate limits shared by every instance: hits are counted in the database per limit and key
//! (a client address, an email address, a product), and going over a limit's rate blocks that
//! key for a while. Blocks back off: the first lasts the rate's window, each further block in a
//! row twice as long, up to `--limit-backoff-max`; a day without a block forgets the strikes.
//! A block always ends, so an attacker cannot lock anyone out for good: whoever gets it right
//! after the block has passed gets in. A blocked request is refused before it does anything
//! (429 with `Retry-After`), and is not counted itself. Each block is audited once, when it
//! starts (`request.rate_limited`, or `account.sign_in_paused` for an account's sign-in).

mod store;

use std::net::IpAddr;

use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::config::{Rate, RateLimits};
use crate::db::{Db, Tx};
use crate::ids::OrgId;
use crate::web::error::AppError;

/// Each thing that is limited. The name is stored (the row's bucket) and audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Password and second-factor attempts for one account (keyed by its email address, so an
    /// address without an account is answered the same way).
    SignInPerAccount,
    /// Failed password and second-factor attempts from one client address.
    SignInPerAddress,
    /// Failed token requests of one product.
    TokenPerClient,
    /// Failed token requests from one client address.
    TokenPerAddress,
    /// Requests that send email, from one client address.
    EmailPerAddress,
    /// Emails sent on request to one recipient.
    EmailPerRecipient,
    /// SSO sign-ins started from one client address.
    SsoLoginPerAddress,
    /// Failed ACS posts from one client address.
    AcsFailuresPerAddress,
    /// Notices to an organization's admins about attacks (one per `--limit-alert-every`).
    AttackAlertPerOrg,
}

impl Limit {
    /// The stored and audited name.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::SignInPerAccount => "sign_in_per_account",
            Limit::SignInPerAddress => "sign_in_per_address",
            Limit::TokenPerClient => "token_per_client",
            Limit::TokenPerAddress => "token_per_address",
            Limit::EmailPerAddress => "email_per_address",
            Limit::EmailPerRecipient => "email_per_recipient",
            Limit::SsoLoginPerAddress => "sso_login_per_address",
            Limit::AcsFailuresPerAddress => "acs_failures_per_address",
            Limit::AttackAlertPerOrg => "attack_alert_per_org",
        }
    }

    fn rate(self, limits: &RateLimits) -> Rate {
        match self {
            Limit::SignInPerAccount => limits.sign_in_per_account,
            Limit::SignInPerAddress => limits.sign_in_per_address,
            Limit::TokenPerClient => limits.token_per_client,
            Limit::TokenPerAddress => limits.token_per_address,
            Limit::EmailPerAddress => limits.email_per_address,
            Limit::EmailPerRecipient => limits.email_per_recipient,
            Limit::SsoLoginPerAddress => limits.sso_login_per_address,
            Limit::AcsFailuresPerAddress => limits.acs_failures_per_address,
            Limit::AttackAlertPerOrg => Rate {
                max: 1,
                window_ms: limits.alert_every_ms,
            },
        }
    }
}

/// One counter: a limit and its key, and what a block of it is about (for the audit event).
#[derive(Clone, Debug)]
pub struct Bucket {
    pub limit: Limit,
    key: String,
    pub org_id: Option<OrgId>,
    pub target: Option<Target>,
}

impl Bucket {
    /// The client address of the request (an IPv6 address counts by its /64, which one
    /// subscriber usually holds whole). `None` when the address is unknown.
    pub fn address(limit: Limit, meta: &RequestMeta) -> Option<Bucket> {
        let ip: IpAddr = meta.ip.as_deref()?.parse().ok()?;
        let key = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        };
        Some(Bucket::new(limit, key))
    }

    /// An email address, stored only as the SHA-256 of its lowercase form.
    pub fn email(limit: Limit, email: &str) -> Bucket {
        let norm = email.trim().to_lowercase();
        Bucket::new(limit, crate::secrets::hash_token(&norm))
    }

    /// Any other key: a product's client id, an organization id.
    pub fn new(limit: Limit, key: impl Into<String>) -> Bucket {
        Bucket {
            limit,
            key: key.into(),
            org_id: None,
            target: None,
        }
    }

    /// Names what a block is about in its audit event.
    pub fn about(mut self, org_id: Option<OrgId>, target: Option<Target>) -> Bucket {
        self.org_id = org_id;
        self.target = target;
        self
    }
}

/// A key that is blocked: the request is refused.
#[derive(Clone, Debug)]
pub struct Blocked {
    pub limit: Limit,
    pub until: i64,
    /// Blocks of this key in a row, this one included.
    pub strikes: i64,
    /// This request started the block (it was audited now).
    pub started_now: bool,
    pub org_id: Option<OrgId>,
    pub target: Option<Target>,
}

impl Blocked {
    /// Seconds until the block ends, rounded up.
    pub fn retry_after_secs(&self, now: i64) -> i64 {
        ((self.until - now).max(0) + 999) / 1000
    }

    /// The refusal of a page or API call: 429 `rate_limited` with `Retry-After`.
    pub fn to_error(&self, now: i64) -> AppError {
        let secs = self.retry_after_secs(now);
        AppError::Throttled {
            code: "rate_limited",
            message: format!(
                "Too many attempts. Wait {} and try again.",
                wait_words(secs)
            ),
            retry_after_secs: secs,
        }
    }
}

/// "3 minutes", "1 hour", "40 seconds".
pub fn wait_words(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        s if s < 60 => plural(s.max(1), "second"),
        s if s < 2 * 3600 => plural((s + 59) / 60, "minute"),
        s => plural((s + 3599) / 3600, "hour"),
    }
}

/// The first of `buckets` that is blocked now, counting nothing; every bucket read on one
/// reading connection.
pub async fn blocked(
    db: &Db,
    now: i64,
    buckets: &[Bucket],
) -> Result<Option<Blocked>, sqlx::Error> {
    blocked_on(&mut *db.pool().acquire().await?, now, buckets).await
}

/// [`blocked`], read on `conn`: a reading connection the caller took for other reads of its
/// own too.
pub async fn blocked_on(
    conn: &mut sqlx::AnyConnection,
    now: i64,
    buckets: &[Bucket],
) -> Result<Option<Blocked>, sqlx::Error> {
    for bucket in buckets {
        if let Some(row) = store::blocked(&mut *conn, bucket, now).await? {
            return Ok(Some(blocked_of(bucket, &row, false)));
        }
    }
    Ok(None)
}

/// A scalar read of another room's (one `i64` or null, taking one text parameter as `$1`) that
/// a request makes with its block check in one statement ([`blocked_beside`]): one round trip
/// for both before any work. Made once, where the caller keeps its statements.
pub struct Beside {
    alone: &'static str,
    with_block: String,
}

impl Beside {
    /// `scalar`: a `SELECT` of one column and at most one row, with `$1` its only parameter.
    pub fn new(scalar: &'static str) -> Beside {
        Beside {
            alone: scalar,
            with_block: store::blocked_beside(scalar),
        }
    }
}

/// [`blocked_on`] for at most one bucket, and `beside`'s read with `param`, in one statement:
/// the block (when `bucket` is blocked now, counting nothing) and the read's value.
pub async fn blocked_beside(
    conn: &mut sqlx::AnyConnection,
    now: i64,
    bucket: Option<&Bucket>,
    beside: &'static Beside,
    param: String,
) -> Result<(Option<Blocked>, Option<i64>), sqlx::Error> {
    let Some(bucket) = bucket else {
        let value = sqlx::query_scalar(beside.alone)
            .bind(param)
            .fetch_optional(conn)
            .await?;
        return Ok((None, value));
    };
    let (value, row) =
        store::blocked_and(conn, beside.with_block.as_str(), param, bucket, now).await?;
    Ok((row.map(|row| blocked_of(bucket, &row, false)), value))
}

/// Counts one request in every bucket, unless one of them is blocked (then nothing is
/// counted). A bucket that goes over its rate starts a block, audited in `tx`; the request
/// that starts it is refused too. Returns the block that refuses the request.
pub async fn take(
    tx: &mut Tx,
    limits: &RateLimits,
    now: i64,
    buckets: &[Bucket],
    meta: &RequestMeta,
) -> Result<Option<Blocked>, sqlx::Error> {
    for bucket in buckets {
        if let Some(row) = store::blocked(&mut **tx, bucket, now).await? {
            return Ok(Some(blocked_of(bucket, &row, false)));
        }
    }
    let mut refused = None;
    for bucket in buckets {
        if let Some(block) = hit(tx, limits, now, bucket, meta, 1).await? {
            refused.get_or_insert(block);
        }
    }
    Ok(refused)
}

/// The counters of a request that sends email: the client address (when `meta` has one;
/// admins' actions pass none, so bulk work from one office goes on) and the recipients (an
/// email address, or the id of what is sent again).
fn email_buckets(meta: &RequestMeta, recipients: &[Bucket]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Bucket::address(Limit::EmailPerAddress, meta)
        .into_iter()
        .collect();
    buckets.extend_from_slice(recipients);
    buckets
}

/// Whether a request that would send email must wait (checked first: a refused request sends
/// nothing and counts nothing).
pub async fn email_blocked(
    db: &Db,
    now: i64,
    meta: &RequestMeta,
    recipients: &[Bucket],
) -> Result<Option<Blocked>, sqlx::Error> {
    blocked(db, now, &email_buckets(meta, recipients)).await
}

/// Counts email that was sent, in its own transaction (only what was sent counts: a refused
/// duplicate costs nothing); reaching a limit starts its block for the next requests.
pub async fn email_sent(
    db: &Db,
    limits: &RateLimits,
    now: i64,
    meta: &RequestMeta,
    recipients: &[Bucket],
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    count(&mut tx, limits, now, &email_buckets(meta, recipients), meta).await?;
    tx.commit().await
}

/// The per-recipient counter of email sent to `email`.
pub fn recipient(email: &str) -> Bucket {
    Bucket::email(Limit::EmailPerRecipient, email)
}

/// The per-recipient counter of what is sent again (an invitation, a migration request), by
/// its id.
pub fn resent(kind: &str, id: impl std::fmt::Display) -> Bucket {
    Bucket::new(Limit::EmailPerRecipient, format!("{kind}:{id}"))
}

/// Counts one failure in every bucket after the fact (the request has its own answer); a
/// bucket that reaches its rate starts a block, audited in `tx`, which refuses the next
/// requests (so at most `max` are let through per window). Returns the blocks that started.
pub async fn count(
    tx: &mut Tx,
    limits: &RateLimits,
    now: i64,
    buckets: &[Bucket],
    meta: &RequestMeta,
) -> Result<Vec<Blocked>, sqlx::Error> {
    let mut started = Vec::new();
    for bucket in buckets {
        if let Some(block) = hit(tx, limits, now, bucket, meta, 0).await? {
            started.push(block);
        }
    }
    Ok(started)
}

/// Whether this is the first hit of `bucket` in its window (for notices sent at most once per
/// window); no block is ever started.
pub async fn first_in_window(
    tx: &mut Tx,
    limits: &RateLimits,
    now: i64,
    bucket: &Bucket,
) -> Result<bool, sqlx::Error> {
    let rate = bucket.limit.rate(limits);
    let (hits, _) = store::hit(tx, bucket, now, rate.window_ms).await?;
    Ok(hits == 1)
}

/// Takes back one counted request (it succeeded, and success is not what the limit counts).
pub async fn give_back(tx: &mut Tx, buckets: &[Bucket]) -> Result<(), sqlx::Error> {
    for bucket in buckets {
        store::give_back(tx, bucket).await?;
    }
    Ok(())
}

/// Forgets a bucket: its count, any block and its strikes (the account signed in, or got a
/// new password).
pub async fn clear(tx: &mut Tx, bucket: &Bucket) -> Result<(), sqlx::Error> {
    store::clear(tx, bucket).await
}

/// One hit; at `max + over` hits a block starts (once, even with several instances counting).
/// A request counted before it runs is refused when it goes over (`over` 1); one counted after
/// it ran starts the block when it reaches the rate (`over` 0).
async fn hit(
    tx: &mut Tx,
    limits: &RateLimits,
    now: i64,
    bucket: &Bucket,
    meta: &RequestMeta,
    over: i64,
) -> Result<Option<Blocked>, sqlx::Error> {
    let rate = bucket.limit.rate(limits);
    let (hits, in_force) = store::hit(tx, bucket, now, rate.window_ms).await?;
    if let Some(row) = in_force {
        return Ok(Some(blocked_of(bucket, &row, false)));
    }
    if hits < rate.max + over {
        return Ok(None);
    }
    let Some(row) =
        store::start_block(tx, bucket, now, rate.window_ms, limits.backoff_max_ms).await?
    else {
        // Another request started the block a moment ago.
        return Ok(store::blocked(&mut **tx, bucket, now)
            .await?
            .map(|row| blocked_of(bucket, &row, false)));
    };
    let block = blocked_of(bucket, &row, true);
    audit_block(tx, now, &block, rate, meta).await?;
    Ok(Some(block))
}

fn blocked_of(bucket: &Bucket, row: &store::BlockRow, started_now: bool) -> Blocked {
    Blocked {
        limit: bucket.limit,
        until: row.until,
        strikes: row.strikes,
        started_now,
        org_id: bucket.org_id,
        target: bucket.target.clone(),
    }
}

async fn audit_block(
    tx: &mut Tx,
    now: i64,
    block: &Blocked,
    rate: Rate,
    meta: &RequestMeta,
) -> Result<(), sqlx::Error> {
    let action = match block.limit {
        Limit::SignInPerAccount => AuditAction::AccountSignInPaused,
        _ => AuditAction::RequestRateLimited,
    };
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: block.org_id,
            action,
            actor: &audit::Actor::Anonymous,
            target: block.target.clone(),
            meta,
            details: serde_json::json!({
                "limit": block.limit.as_str(),
                "max": rate.max,
                "window_seconds": rate.window_ms / 1000,
                "blocked_until": block.until,
                "strikes": block.strikes,
            }),
        },
    )
    .await
}

/// Forgets rows that neither count nor block any more (the clean-up job).
pub async fn forget_stale(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    store::forget_stale(&mut *db.write().await?, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_address_counts_by_its_prefix_and_a_mapped_one_as_ipv4() {
        let key = |ip: &str| {
            let meta = RequestMeta {
                ip: Some(ip.to_string()),
                user_agent: None,
            };
            Bucket::address(Limit::SignInPerAddress, &meta).map(|b| b.key)
        };
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), key("2001:db8:1:2:ffff::1"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(key("not an address"), None);
    }

    #[test]
    fn waits_are_said_in_words() {
        assert_eq!(wait_words(0), "1 second");
        assert_eq!(wait_words(61), "2 minutes");
        assert_eq!(wait_words(900), "15 minutes");
        assert_eq!(wait_words(3 * 3600), "3 hours");
    }
}
