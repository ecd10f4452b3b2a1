//! SQLite's one writing connection, kept by this process behind a queue of its own instead of
//! in a pool of one. A pool gives a connection back through a task it spawns, which pings the
//! connection (a hand-off to the connection's thread and back) before the next writer may have
//! it; a sign-in takes the writer two or three times, and on SQLite every other writer waits
//! through each of those steps (docs/performance.md, "The writer is the bound"). Here the next
//! writer in line has the connection as soon as the last one lets go of it.
//!
//! What the pool's ping was for is kept where it applies: a transaction left open is rolled
//! back by [`super::Tx`] before the connection is let go; a connection whose `ROLLBACK` fails
//! (its thread gone) is closed ([`Writing::discard`]) and the next writer opens another.
//! Statements of one connection run in order on its thread, so one whose caller went away
//! finishes before the next writer's start.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{AnyConnection, Connection};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::lend::Lent;

/// How long a writer waits in line before its request fails (as a pool's acquire timeout).
const WAIT_AT_MOST: Duration = Duration::from_secs(30);

/// The writing connection of a SQLite database (see the module's text).
#[derive(Clone, Debug)]
pub(super) struct Writer {
    slot: Arc<Mutex<Slot>>,
    url: Arc<str>,
    background_checkpoints: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(super) struct Slot {
    /// `None` until opened, and after [`Writing::discard`].
    conn: Option<AnyConnection>,
    /// [`Writer::close`] ran: no connection is opened again, as a closed pool gives none.
    closed: bool,
}

/// A connection held for writing: SQLite's writing connection (the next writer waits until it
/// is dropped) or, on PostgreSQL, one lent from the pool ([`Lent`]). It dereferences to the
/// connection.
pub struct Writing(Held);

enum Held {
    Lent(Lent),
    Sqlite(OwnedMutexGuard<Slot>),
}

impl Writer {
    /// Opens the writing connection of the SQLite database at `url` (which creates the file
    /// and switches it to WAL).
    pub(super) async fn open(
        url: &str,
        background_checkpoints: Arc<AtomicBool>,
    ) -> Result<Writer, sqlx::Error> {
        let writer = Writer {
            slot: Arc::new(Mutex::new(Slot {
                conn: None,
                closed: false,
            })),
            url: url.into(),
            background_checkpoints,
        };
        drop(writer.lock().await?);
        Ok(writer)
    }

    /// Waits for the connection (in the order writers asked), opening it when it is not open.
    pub(super) async fn lock(&self) -> Result<Writing, sqlx::Error> {
        let mut slot = tokio::time::timeout(WAIT_AT_MOST, self.slot.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if slot.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        if slot.conn.is_none() {
            let mut conn = AnyConnection::connect(&self.url).await?;
            let background = self.background_checkpoints.load(Ordering::SeqCst);
            super::prepare_sqlite(&mut conn, background).await?;
            slot.conn = Some(conn);
        }
        Ok(Writing(Held::Sqlite(slot)))
    }

    /// Closes the connection, once the writer holding it lets go; later writers get
    /// `PoolClosed`.
    pub(super) async fn close(&self) {
        let conn = {
            let mut slot = self.slot.lock().await;
            slot.closed = true;
            slot.conn.take()
        };
        close(conn).await;
    }
}

async fn close(conn: Option<AnyConnection>) {
    if let Some(conn) = conn
        && let Err(err) = conn.close().await
    {
        tracing::debug!(error = %err, "closing the writing connection failed");
    }
}

impl Writing {
    pub(super) fn lent(conn: Lent) -> Writing {
        Writing(Held::Lent(conn))
    }

    /// Lets go of the connection after a use that ended cleanly ([`Lent::done`]): every
    /// statement answered, none failed, no transaction open.
    pub fn done(self) {
        match self.0 {
            Held::Lent(conn) => conn.done(),
            Held::Sqlite(slot) => drop(slot),
        }
    }

    /// Closes the connection instead of letting the next writer have it (it may be broken or
    /// inside a transaction that could not be rolled back): closing rolls back what it held,
    /// and the next writer opens another.
    pub async fn discard(self) {
        match self.0 {
            Held::Lent(conn) => conn.discard().await,
            Held::Sqlite(mut slot) => close(slot.conn.take()).await,
        }
    }

    /// [`Writing::discard`] where nothing can be awaited (no runtime): the connection is
    /// dropped, and its thread closes it.
    pub(super) fn forget(self) {
        match self.0 {
            Held::Lent(conn) => conn.forget(),
            Held::Sqlite(mut slot) => drop(slot.conn.take()),
        }
    }
}

impl Deref for Writing {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            Held::Lent(conn) => conn,
            Held::Sqlite(slot) => slot.conn.as_ref().expect("opened when it was locked"),
        }
    }
}

impl DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            Held::Lent(conn) => conn,
            Held::Sqlite(slot) => slot.conn.as_mut().expect("opened when it was locked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use super::*;

    /// The writer of a new database in `dir`.
    async fn writer_in(dir: &tempfile::TempDir, background_checkpoints: bool) -> Writer {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        Writer::open(&url, Arc::new(AtomicBool::new(background_checkpoints)))
            .await
            .unwrap()
    }

    async fn pragma(w: &mut Writing, name: &str) -> i64 {
        let sql = format!("PRAGMA {name}");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **w)
            .await
            .unwrap()
    }

    /// A connection discarded inside a transaction keeps none of it; the next writer gets a
    /// new connection, set as the first was, outside any transaction.
    #[tokio::test]
    async fn a_discarded_connection_is_opened_again_as_the_first_was() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_in(&dir, true).await;
        let mut w = writer.lock().await.unwrap();
        for sql in [
            "CREATE TABLE t (v INTEGER NOT NULL)",
            "BEGIN IMMEDIATE",
            "INSERT INTO t (v) VALUES (1)",
        ] {
            (&mut *w).execute(sql).await.unwrap();
        }
        w.discard().await;

        let mut w = writer.lock().await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *w)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *w)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma(&mut w, "foreign_keys").await, 1);
        assert_eq!(pragma(&mut w, "synchronous").await, 1);
        assert_eq!(pragma(&mut w, "wal_autocheckpoint").await, 0);
        (&mut *w).execute("BEGIN IMMEDIATE").await.unwrap();
        (&mut *w).execute("ROLLBACK").await.unwrap();
        drop(w);
        writer.close().await;
        assert!(matches!(
            writer.lock().await.err(),
            Some(sqlx::Error::PoolClosed)
        ));
    }

    /// Writers take the connection one at a time: increments read and written back by 20
    /// concurrent writers, each yielding while it holds the connection, lose none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_hold_the_connection_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_in(&dir, false).await;
        (&mut *writer.lock().await.unwrap())
            .execute("CREATE TABLE c (n INTEGER NOT NULL); INSERT INTO c (n) VALUES (0)")
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let mut w = writer.lock().await.unwrap();
                    let n: i64 = sqlx::query_scalar("SELECT n FROM c")
                        .fetch_one(&mut *w)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                    sqlx::query("UPDATE c SET n = $1")
                        .bind(n + 1)
                        .execute(&mut *w)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let n: i64 = sqlx::query_scalar("SELECT n FROM c")
            .fetch_one(&mut *writer.lock().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n, 20);
        writer.close().await;
    }
}
