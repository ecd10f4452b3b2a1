//! The SQL of rate limits: one row per (limit, key). Every statement is a single-row upsert or
//! update, so concurrent requests on several instances count into the same row; on PostgreSQL
//! the first statement of a hit locks the row until the transaction ends, so a block is started
//! once.

use sqlx::{Any, Executor, Row};

use super::Bucket;
use crate::clock::DAY_MS;
use crate::db::Tx;

/// A block in force.
pub(super) struct BlockRow {
    pub until: i64,
    pub strikes: i64,
}

/// Strikes are forgotten this long after the last block.
const STRIKE_MEMORY_MS: i64 = DAY_MS;

const BLOCKED: &str = "SELECT blocked_until, strikes FROM rate_limits \
     WHERE bucket = $1 AND key = $2 AND blocked_until > $3";

pub(super) async fn blocked<'c>(
    exec: impl Executor<'c, Database = Any>,
    bucket: &Bucket,
    now: i64,
) -> Result<Option<BlockRow>, sqlx::Error> {
    let row = sqlx::query(BLOCKED)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .bind(now)
        .fetch_optional(exec)
        .await?;
    row.map(|r| {
        Ok(BlockRow {
            until: r.try_get("blocked_until")?,
            strikes: r.try_get("strikes")?,
        })
    })
    .transpose()
}

/// [`BLOCKED`] for one bucket (`$2`, `$3`, now `$4`) beside another room's scalar read that
/// takes `$1`, as one statement: always one row, with `beside` and, when the bucket is blocked,
/// `blocked_until` and `strikes` (null otherwise).
pub(super) fn blocked_beside(scalar: &str) -> String {
    format!(
        "SELECT ({scalar}) AS beside, r.blocked_until, r.strikes FROM (SELECT 1 AS one) AS o \
         LEFT JOIN rate_limits r ON r.bucket = $2 AND r.key = $3 AND r.blocked_until > $4"
    )
}

/// The row of [`blocked_beside`]: the scalar read's value and the block, when there is one.
pub(super) async fn blocked_and<'c>(
    exec: impl Executor<'c, Database = Any>,
    statement: &'static str,
    param: String,
    bucket: &Bucket,
    now: i64,
) -> Result<(Option<i64>, Option<BlockRow>), sqlx::Error> {
    let row = sqlx::query(statement)
        .bind(param)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .bind(now)
        .fetch_one(exec)
        .await?;
    let until: Option<i64> = row.try_get("blocked_until")?;
    let strikes: Option<i64> = row.try_get("strikes")?;
    let block = until
        .zip(strikes)
        .map(|(until, strikes)| BlockRow { until, strikes });
    Ok((row.try_get("beside")?, block))
}

/// Counts one hit; a window that has passed starts again at this hit.
const HIT: &str = "INSERT INTO rate_limits (bucket, key, hits, window_start, strikes) \
     VALUES ($1, $2, 1, $3, 0) ON CONFLICT (bucket, key) DO UPDATE SET \
     hits = CASE WHEN rate_limits.window_start <= $4 THEN 1 ELSE rate_limits.hits + 1 END, \
     window_start = CASE WHEN rate_limits.window_start <= $4 THEN $3 \
                         ELSE rate_limits.window_start END \
     RETURNING hits, blocked_until, strikes";

/// The hits in the current window, this one included, and a block in force (one that another
/// request started while this one waited for the row).
pub(super) async fn hit(
    tx: &mut Tx,
    bucket: &Bucket,
    now: i64,
    window_ms: i64,
) -> Result<(i64, Option<BlockRow>), sqlx::Error> {
    let row = sqlx::query(HIT)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .bind(now)
        .bind(now - window_ms)
        .fetch_one(&mut **tx)
        .await?;
    let until: Option<i64> = row.try_get("blocked_until")?;
    let block = match until {
        Some(until) if until > now => Some(BlockRow {
            until,
            strikes: row.try_get("strikes")?,
        }),
        _ => None,
    };
    Ok((row.try_get("hits")?, block))
}

const STRIKES: &str = "SELECT strikes, tripped_at FROM rate_limits WHERE bucket = $1 AND key = $2";

/// Starts a block unless one is in force; the count starts again after it.
const START_BLOCK: &str = "UPDATE rate_limits SET blocked_until = $3, strikes = $4, \
     tripped_at = $5, hits = 0, window_start = $5 \
     WHERE bucket = $1 AND key = $2 AND (blocked_until IS NULL OR blocked_until <= $5)";

/// Starts a block: the rate's window for the first in a row, twice the last one's length for
/// each next, never longer than `backoff_max_ms` (nor shorter than the window). `None` when a
/// block is already in force.
pub(super) async fn start_block(
    tx: &mut Tx,
    bucket: &Bucket,
    now: i64,
    window_ms: i64,
    backoff_max_ms: i64,
) -> Result<Option<BlockRow>, sqlx::Error> {
    let row = sqlx::query(STRIKES)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .fetch_one(&mut **tx)
        .await?;
    let (strikes, tripped_at): (i64, Option<i64>) =
        (row.try_get("strikes")?, row.try_get("tripped_at")?);
    let strikes = match tripped_at {
        Some(at) if at > now - STRIKE_MEMORY_MS => strikes + 1,
        _ => 1,
    };
    let until = now + block_ms(window_ms, strikes, backoff_max_ms);
    let done = sqlx::query(START_BLOCK)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .bind(until)
        .bind(strikes)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok((done.rows_affected() == 1).then_some(BlockRow { until, strikes }))
}

/// The length of the `strikes`-th block in a row.
fn block_ms(window_ms: i64, strikes: i64, backoff_max_ms: i64) -> i64 {
    let doublings = u32::try_from((strikes - 1).clamp(0, 30)).unwrap_or(30);
    window_ms
        .saturating_mul(1_i64 << doublings)
        .min(backoff_max_ms.max(window_ms))
}

const GIVE_BACK: &str =
    "UPDATE rate_limits SET hits = hits - 1 WHERE bucket = $1 AND key = $2 AND hits > 0";

pub(super) async fn give_back(tx: &mut Tx, bucket: &Bucket) -> Result<(), sqlx::Error> {
    sqlx::query(GIVE_BACK)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const CLEAR: &str = "DELETE FROM rate_limits WHERE bucket = $1 AND key = $2";

pub(super) async fn clear(tx: &mut Tx, bucket: &Bucket) -> Result<(), sqlx::Error> {
    sqlx::query(CLEAR)
        .bind(bucket.limit.as_str())
        .bind(bucket.key.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Rows whose window (at most seven days), block and strikes have all passed.
const FORGET_STALE: &str = "DELETE FROM rate_limits WHERE window_start < $1 \
     AND (blocked_until IS NULL OR blocked_until < $2) \
     AND (tripped_at IS NULL OR tripped_at < $3)";

pub(super) async fn forget_stale(
    conn: &mut sqlx::AnyConnection,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(FORGET_STALE)
        .bind(now - 7 * DAY_MS)
        .bind(now)
        .bind(now - STRIKE_MEMORY_MS)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::block_ms;

    #[test]
    fn blocks_double_up_to_the_maximum_and_never_go_below_the_window() {
        let min = 60_000;
        assert_eq!(block_ms(15 * min, 1, 60 * min), 15 * min);
        assert_eq!(block_ms(15 * min, 2, 60 * min), 30 * min);
        assert_eq!(block_ms(15 * min, 3, 60 * min), 60 * min);
        assert_eq!(block_ms(15 * min, 9, 60 * min), 60 * min);
        assert_eq!(block_ms(120 * min, 1, 60 * min), 120 * min);
        assert_eq!(block_ms(min, 1000, 60 * min), 60 * min);
    }
}
