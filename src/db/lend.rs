//! Connections of the pool lent without sqlx's ping at their return. sqlx's pool pings every
//! connection it takes back (a round trip to PostgreSQL, on SQLite a hand-off to the
//! connection's thread and back), to find one that broke in use and to flush the rollback of a
//! transaction dropped open. A holder that knows its use ended cleanly, every statement answered
//! and no transaction open, says so ([`Lent::done`]): the connection is then kept here, out of
//! the pool, for the next holder, without a ping. Every other return is checked as the pool
//! checks it: a connection of the pool goes back to it (which pings it), a kept one is pinged
//! here and closed when the ping fails.
//!
//! Kept connections are at most [`MOST`], each for at most [`KEPT_AT_MOST`]; the pool opens
//! others in their place (a connection taken out of it stops counting against its size). On
//! PostgreSQL one idle for [`super::PING_IDLE_AFTER`] is pinged before it is lent again, as the
//! pool does with its own.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};

use super::PING_IDLE_AFTER;

/// The most connections kept out of the pool at once.
const MOST: usize = 8;

/// A connection is kept out of the pool for at most this long, then closed, and the pool opens
/// another in its place: connections are renewed as the pool's own are (sqlx's default
/// `max_lifetime`), after a database's failover, say.
const KEPT_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// The connections kept out of the pool: idle ones, the most recently used last, and how many
/// are lent. Idle and lent together are at most [`MOST`], so one that comes back always has its
/// place: a connection leaves the pool once and stays out until it is closed, and the pool
/// never opens connections to replace ones closed for want of room.
#[derive(Debug)]
pub(super) struct Spares {
    kept: Mutex<Kept>,
    /// PostgreSQL: a connection can be lost while idle (a restart, a proxy's idle timeout).
    ping_when_idle: bool,
}

#[derive(Debug, Default)]
struct Kept {
    idle: Vec<Idle>,
    lent: usize,
    closed: bool,
}

#[derive(Debug)]
struct Idle {
    conn: AnyConnection,
    /// When it was first kept.
    kept_at: Instant,
    since: Instant,
}

impl Spares {
    pub(super) fn new(ping_when_idle: bool) -> Spares {
        Spares {
            kept: Mutex::new(Kept::default()),
            ping_when_idle,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Kept) -> T) -> T {
        // A panic while holding the lock leaves a list that is still whole: keep using it.
        f(&mut self.kept.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes a place for a connection of the pool that a holder gives back clean: `false` when
    /// there is none (it goes back to the pool).
    fn take_place(&self) -> bool {
        self.with(|k| {
            let free = !k.closed && k.idle.len() + k.lent < MOST;
            if free {
                k.lent += 1;
            }
            free
        })
    }

    /// A kept connection comes back (`None`: it was closed), first kept at `kept_at`: idle again
    /// in its place, unless it is too old or the spares are closed.
    fn give_back(&self, conn: Option<AnyConnection>, kept_at: Instant) {
        let refused = self.with(|k| {
            k.lent = k.lent.saturating_sub(1);
            let conn = conn?;
            if k.closed || kept_at.elapsed() >= KEPT_AT_MOST {
                return Some(conn);
            }
            k.idle.push(Idle {
                conn,
                kept_at,
                since: Instant::now(),
            });
            None
        });
        if let Some(conn) = refused {
            close_soon(conn);
        }
    }

    /// The most recently kept connection that still answers, with when it was first kept; it
    /// counts as lent until [`Spares::give_back`].
    async fn take(&self) -> Option<(AnyConnection, Instant)> {
        loop {
            let Idle {
                mut conn,
                kept_at,
                since,
            } = self.with(|k| {
                let idle = k.idle.pop()?;
                k.lent += 1;
                Some(idle)
            })?;
            if !self.ping_when_idle || since.elapsed() < PING_IDLE_AFTER {
                return Some((conn, kept_at));
            }
            if conn.ping().await.is_ok() {
                return Some((conn, kept_at));
            }
            self.give_back(None, kept_at);
        }
    }

    /// Closes the idle connections; those lent are closed when they come back.
    pub(super) async fn close(&self) {
        let idle = self.with(|k| {
            k.closed = true;
            std::mem::take(&mut k.idle)
        });
        for Idle { conn, .. } in idle {
            if let Err(err) = conn.close().await {
                tracing::debug!(error = %err, "closing a kept connection failed");
            }
        }
    }
}

/// Closes `conn` from a task of its own (telling the database, where there is a runtime to send
/// it from; otherwise the connection is dropped).
fn close_soon(conn: AnyConnection) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(err) = conn.close().await {
                tracing::debug!(error = %err, "closing a connection no longer kept failed");
            }
        });
    }
}

/// A connection lent from `pool`: a kept one when there is one, else the pool's.
pub(super) async fn lend(spares: &Arc<Spares>, pool: &AnyPool) -> Result<Lent, sqlx::Error> {
    let source = match spares.take().await {
        Some((conn, kept_at)) => Source::Kept(conn, kept_at),
        None => Source::Pool(pool.acquire().await?),
    };
    Ok(Lent {
        source: Some(source),
        spares: spares.clone(),
        clean: false,
    })
}

/// A connection lent ([`lend`]); it dereferences to the connection. Given back when dropped:
/// without a ping after [`Lent::done`], with one otherwise.
pub struct Lent {
    source: Option<Source>,
    spares: Arc<Spares>,
    clean: bool,
}

enum Source {
    Pool(PoolConnection<Any>),
    /// With when it was first kept.
    Kept(AnyConnection, Instant),
}

impl Lent {
    /// Gives the connection back after a use that ended cleanly: every statement answered, none
    /// failed, no transaction open. It is kept for the next holder without a ping.
    pub fn done(mut self) {
        self.clean = true;
    }

    /// Closes the connection instead of giving it back (it may be broken, or inside a
    /// transaction that could not be rolled back): closing rolls back what it held.
    pub async fn discard(mut self) {
        match self.source.take() {
            Some(Source::Pool(mut conn)) => conn.close_on_drop(),
            Some(Source::Kept(conn, kept_at)) => {
                self.spares.give_back(None, kept_at);
                if let Err(err) = conn.close().await {
                    tracing::debug!(error = %err, "closing a discarded connection failed");
                }
            }
            None => {}
        }
    }

    /// [`Lent::discard`] where nothing can be awaited (no runtime): the connection is dropped.
    pub fn forget(mut self) {
        match self.source.take() {
            Some(Source::Pool(conn)) => drop(conn.detach()),
            Some(Source::Kept(conn, kept_at)) => {
                self.spares.give_back(None, kept_at);
                drop(conn);
            }
            None => {}
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(source) = self.source.take() else {
            return;
        };
        match (source, self.clean) {
            (Source::Pool(conn), true) if self.spares.take_place() => {
                self.spares.give_back(Some(conn.detach()), Instant::now())
            }
            // The pool takes its own back, and pings it.
            (Source::Pool(conn), _) => drop(conn),
            (Source::Kept(conn, kept_at), true) => self.spares.give_back(Some(conn), kept_at),
            (Source::Kept(mut conn, kept_at), false) => {
                let spares = self.spares.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            let answered = conn.ping().await.is_ok();
                            spares.give_back(answered.then_some(conn), kept_at);
                        });
                    }
                    Err(_) => spares.give_back(None, kept_at),
                }
            }
        }
    }
}

impl Deref for Lent {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.source {
            Some(Source::Pool(conn)) => conn,
            Some(Source::Kept(conn, _)) => conn,
            None => unreachable!("a Lent is consumed when it is given back"),
        }
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.source {
            Some(Source::Pool(conn)) => conn,
            Some(Source::Kept(conn, _)) => conn,
            None => unreachable!("a Lent is consumed when it is given back"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Executor;
    use sqlx::any::AnyPoolOptions;

    use super::*;

    /// Whether `conn` is the connection that made the temporary table `mine` (a temporary
    /// table belongs to its connection).
    async fn made_mine(conn: &mut Lent) -> bool {
        sqlx::query("SELECT count(*) FROM mine")
            .fetch_one(&mut **conn)
            .await
            .is_ok()
    }

    /// How many are kept idle once none is lent (a return without `done` is checked in a task
    /// of its own: wait for it, boundedly).
    async fn kept(spares: &Spares) -> usize {
        for _ in 0..500 {
            if let Some(idle) = spares.with(|k| (k.lent == 0).then_some(k.idle.len())) {
                return idle;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a lent connection never came back");
    }

    #[tokio::test]
    async fn a_clean_use_is_kept_an_unclean_one_checked_a_discarded_one_closed() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("l.db").display());
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let spares = Arc::new(Spares::new(false));

        let mut first = lend(&spares, &pool).await.unwrap();
        (&mut *first)
            .execute("CREATE TEMP TABLE mine (v INTEGER)")
            .await
            .unwrap();
        first.done();
        assert_eq!(
            spares.with(|k| (k.idle.len(), k.lent)),
            (1, 0),
            "kept at once, unpinged"
        );

        let mut again = lend(&spares, &pool).await.unwrap();
        assert!(
            made_mine(&mut again).await,
            "the kept connection is lent again"
        );
        drop(again);
        assert_eq!(kept(&spares).await, 1, "checked, then kept");

        let mut checked = lend(&spares, &pool).await.unwrap();
        assert!(made_mine(&mut checked).await);
        checked.discard().await;
        assert_eq!(spares.with(|k| (k.idle.len(), k.lent)), (0, 0));
        let mut other = lend(&spares, &pool).await.unwrap();
        assert!(
            !made_mine(&mut other).await,
            "a discarded connection is never lent"
        );
        other.done();

        spares.close().await;
        assert_eq!(spares.with(|k| k.idle.len()), 0);
        let last = lend(&spares, &pool).await.unwrap();
        last.done();
        assert_eq!(
            spares.with(|k| k.idle.len()),
            0,
            "nothing is kept once closed"
        );
        pool.close().await;
    }

    /// However many are given back clean at once, at most MOST are kept, and a kept one that
    /// comes back always finds its place: none is closed for want of room.
    #[tokio::test]
    async fn at_most_most_are_kept_and_a_kept_one_always_comes_back() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let pool = AnyPoolOptions::new()
            .max_connections(MOST as u32 + 4)
            .connect(&url)
            .await
            .unwrap();
        let spares = Arc::new(Spares::new(false));
        let mut all = Vec::new();
        for _ in 0..MOST + 4 {
            all.push(lend(&spares, &pool).await.unwrap());
        }
        for conn in all {
            conn.done();
        }
        assert_eq!(spares.with(|k| (k.idle.len(), k.lent)), (MOST, 0));
        // Every kept one lent, one more from the pool, all back clean, the pool's last.
        let mut again = Vec::new();
        for n in 0..MOST {
            let mut conn = lend(&spares, &pool).await.unwrap();
            let sql = format!("CREATE TEMP TABLE mine_{n} (v INTEGER)");
            (&mut *conn)
                .execute(sqlx::AssertSqlSafe(sql))
                .await
                .unwrap();
            again.push(conn);
        }
        assert_eq!(spares.with(|k| (k.idle.len(), k.lent)), (0, MOST));
        let from_pool = lend(&spares, &pool).await.unwrap();
        for conn in again {
            conn.done();
        }
        from_pool.done();
        assert_eq!(spares.with(|k| (k.idle.len(), k.lent)), (MOST, 0));
        // The kept ones are the same connections: each still has its own table.
        let mut tables = 0;
        let mut held = Vec::new();
        for _ in 0..MOST {
            let mut conn = lend(&spares, &pool).await.unwrap();
            for n in 0..MOST {
                let sql = format!("SELECT count(*) FROM mine_{n}");
                if sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut *conn)
                    .await
                    .is_ok()
                {
                    tables += 1;
                }
            }
            held.push(conn);
        }
        assert_eq!(tables, MOST);
        held.into_iter().for_each(Lent::done);
        pool.close().await;
    }
}
