//! Connections of the pool lent without sqlx's ping at their return. sqlx's pool pings every
//! connection it takes back (a round trip to PostgreSQL, on SQLite a hand-off to the
//! connection's thread and back), to find one that broke in use and to flush the rollback of a
//! transaction dropped open. A holder that knows its use ended cleanly, every statement answered
//! and no transaction open, says so ([`Lent::done`]): the connection is then kept here, out of
//! the pool, for the next holder, without a ping. Every other return is checked as the pool
//! checks it: a connection of the pool goes back to it (which pings it), a kept one is pinged
//! here and closed when the ping fails.
//!
//! Kept connections are at most [`MOST`]; the pool opens others in their place (a connection
//! taken out of it stops counting against its size). On PostgreSQL one idle for
//! [`super::PING_IDLE_AFTER`] is pinged before it is lent again, as the pool does with its own.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};

use super::PING_IDLE_AFTER;

/// The most connections kept out of the pool at once.
const MOST: usize = 8;

/// The connections kept out of the pool, the most recently used last.
#[derive(Debug)]
pub(super) struct Spares {
    kept: Mutex<Kept>,
    /// PostgreSQL: a connection can be lost while idle (a restart, a proxy's idle timeout).
    ping_when_idle: bool,
}

#[derive(Debug, Default)]
struct Kept {
    idle: Vec<(AnyConnection, Instant)>,
    closed: bool,
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

    fn has_room(&self) -> bool {
        self.with(|k| !k.closed && k.idle.len() < MOST)
    }

    /// Keeps `conn` when there is room; otherwise it is closed.
    fn keep(&self, conn: AnyConnection) {
        let refused = self.with(|k| {
            if k.closed || k.idle.len() >= MOST {
                return Some(conn);
            }
            k.idle.push((conn, Instant::now()));
            None
        });
        drop(refused);
    }

    /// The most recently kept connection that still answers, if any.
    async fn take(&self) -> Option<AnyConnection> {
        loop {
            let (mut conn, since) = self.with(|k| k.idle.pop())?;
            if !self.ping_when_idle || since.elapsed() < PING_IDLE_AFTER {
                return Some(conn);
            }
            if conn.ping().await.is_ok() {
                return Some(conn);
            }
        }
    }

    /// Closes the kept connections; later returns are closed instead of kept.
    pub(super) async fn close(&self) {
        let idle = self.with(|k| {
            k.closed = true;
            std::mem::take(&mut k.idle)
        });
        for (conn, _) in idle {
            if let Err(err) = conn.close().await {
                tracing::debug!(error = %err, "closing a kept connection failed");
            }
        }
    }
}

/// A connection lent from `pool`: a kept one when there is one, else the pool's.
pub(super) async fn lend(spares: &Arc<Spares>, pool: &AnyPool) -> Result<Lent, sqlx::Error> {
    let source = match spares.take().await {
        Some(conn) => Source::Kept(conn),
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
    Kept(AnyConnection),
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
            Some(Source::Kept(conn)) => {
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
            Some(Source::Kept(conn)) => drop(conn),
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
            (Source::Pool(conn), true) if self.spares.has_room() => self.spares.keep(conn.detach()),
            // The pool takes its own back, and pings it.
            (Source::Pool(conn), _) => drop(conn),
            (Source::Kept(conn), true) => self.spares.keep(conn),
            (Source::Kept(mut conn), false) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let spares = self.spares.clone();
                    runtime.spawn(async move {
                        if conn.ping().await.is_ok() {
                            spares.keep(conn);
                        }
                    });
                }
                Err(_) => drop(conn),
            },
        }
    }
}

impl Deref for Lent {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.source {
            Some(Source::Pool(conn)) => conn,
            Some(Source::Kept(conn)) => conn,
            None => unreachable!("a Lent is consumed when it is given back"),
        }
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.source {
            Some(Source::Pool(conn)) => conn,
            Some(Source::Kept(conn)) => conn,
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

    async fn kept(spares: &Spares) -> usize {
        // A return without `done` is checked in a task of its own: wait for it, boundedly.
        for _ in 0..200 {
            let n = spares.with(|k| k.idle.len());
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        0
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
        assert_eq!(spares.with(|k| k.idle.len()), 1, "kept at once, unpinged");

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
        assert_eq!(spares.with(|k| k.idle.len()), 0);
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
}
