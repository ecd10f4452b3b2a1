//! A read-write transaction: a connection with `BEGIN` and `COMMIT` sent as statement text. On
//! SQLite it is the one writing connection with `BEGIN IMMEDIATE`, and they travel with a
//! [`Batch`]'s statements in one call to the connection's thread ([`Db::begin_with`],
//! [`Tx::commit_with`]): a sign-in's transactions hold the write lock for two round trips
//! instead of four (sqlx's own `BEGIN` and `COMMIT` are a round trip each, and the connection's
//! thread waits for the caller to take each answer). On PostgreSQL it is a connection lent from
//! the pool ([`super::lend`]), which a transaction that ended cleanly gives back without sqlx's
//! ping: one round trip fewer per transaction.
//!
//! sqlx does not know of a transaction begun by text, so this type ends it whatever happens: a
//! failed statement of [`Db::begin_with`] or [`Tx::commit_with`] rolls back before the error is
//! returned, and a `Tx` dropped open (an error path with `?`, a request whose client went away)
//! sends the `ROLLBACK` from a task of its own, which holds the connection until it is done, so
//! the next transaction never finds one open. Where a `ROLLBACK` cannot be sent or fails, the
//! connection is closed instead (closing rolls back what it left open) and the next holder gets
//! another ([`super::writer`]).

use std::ops::{Deref, DerefMut};

use sqlx::{AnyConnection, Executor};

use super::batch::{Batch, Outcome};
use super::{Db, Dialect, Writing};

/// A transaction; store functions take `&mut Tx` so callers compose them atomically. It
/// dereferences to its connection, on which statements run as on any sqlx executor.
pub struct Tx {
    /// `None` once committed or rolled back.
    open: Option<Open>,
}

enum Open {
    /// The writing connection (SQLite) or one lent from the pool (PostgreSQL), inside a
    /// transaction begun by text.
    Text(Writing),
}

const BEGIN: &str = "BEGIN IMMEDIATE";
const BEGIN_POSTGRES: &str = "BEGIN";
const COMMIT: &str = "COMMIT";
const ROLLBACK: &str = "ROLLBACK";

impl Db {
    /// Starts a read-write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that later writes fails with SQLITE_BUSY
    /// under concurrency instead of waiting, which would break check-then-insert rules.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let (tx, _) = self.begin_with(Batch::new()).await?;
        Ok(tx)
    }

    /// [`Db::begin`], then `batch` in the same call (on SQLite): the transaction and its
    /// statements' outcomes. When a statement fails, the transaction is rolled back and the
    /// error returned.
    pub async fn begin_with(&self, batch: Batch) -> Result<(Tx, Vec<Outcome>), sqlx::Error> {
        let conn = self.write().await?;
        // Held by a `Tx` before `BEGIN` is sent: a caller that goes away while it runs leaves a
        // transaction that `Drop` ends.
        let mut tx = Tx {
            open: Some(Open::Text(conn)),
        };
        match self.dialect {
            Dialect::Postgres => {
                if let Err(err) = (&mut *tx).execute(BEGIN_POSTGRES).await {
                    tx.end_text().await;
                    return Err(err);
                }
                run_in(tx, batch).await
            }
            Dialect::Sqlite => match batch.run_text(&mut tx, Some(BEGIN), None).await {
                Ok(outcomes) => Ok((tx, outcomes)),
                Err(err) => {
                    tx.end_text().await;
                    Err(err)
                }
            },
        }
    }
}

/// Where a transaction's first statements go: into one already open, or into one they begin
/// (in the same call on SQLite).
pub enum Opening<'a> {
    Open(Tx),
    Begin(&'a Db),
}

impl Opening<'_> {
    /// The transaction, open (begun here if it was not); nothing runs on a new one yet.
    pub async fn open(self) -> Result<Tx, sqlx::Error> {
        match self {
            Opening::Open(tx) => Ok(tx),
            Opening::Begin(db) => db.begin().await,
        }
    }

    /// Runs `batch` in the transaction, begun with it if it was not open: the transaction and
    /// the outcomes. When a statement fails the error is returned and the transaction rolled
    /// back.
    pub async fn run(self, batch: Batch) -> Result<(Tx, Vec<Outcome>), sqlx::Error> {
        match self {
            Opening::Open(tx) => run_in(tx, batch).await,
            Opening::Begin(db) => db.begin_with(batch).await,
        }
    }
}

impl Tx {
    /// Which database the transaction runs on.
    pub fn dialect(&self) -> super::Dialect {
        if self.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
            super::Dialect::Sqlite
        } else {
            super::Dialect::Postgres
        }
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.commit_with(Batch::new()).await.map(|_| ())
    }

    /// Runs `batch`, then commits, in one call on SQLite: the batch's outcomes. When a statement
    /// or the commit fails, nothing is kept and the error is returned.
    pub async fn commit_with(mut self, batch: Batch) -> Result<Vec<Outcome>, sqlx::Error> {
        if self.open.is_none() {
            return Err(ended());
        }
        let ran = if self.dialect() == super::Dialect::Sqlite {
            batch.run_text(&mut self, None, Some(COMMIT)).await
        } else {
            match batch.run(&mut self).await {
                Ok(outcomes) => (&mut *self).execute(COMMIT).await.map(|_| outcomes),
                Err(err) => Err(err),
            }
        };
        match ran {
            Ok(outcomes) => {
                // Committed: the next holder may have the connection, with no ping.
                if let Some(Open::Text(conn)) = self.open.take() {
                    conn.done();
                }
                Ok(outcomes)
            }
            Err(err) => {
                self.end_text().await;
                Err(err)
            }
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.open.take() {
            Some(Open::Text(conn)) => {
                rollback_text(conn).await;
                Ok(())
            }
            None => Err(ended()),
        }
    }

    /// Ends a transaction that may still be open, after a failure: rolled back, or its
    /// connection closed.
    async fn end_text(&mut self) {
        if let Some(Open::Text(conn)) = self.open.take() {
            rollback_text(conn).await;
        }
    }

    fn connection(&self) -> &AnyConnection {
        match &self.open {
            Some(Open::Text(conn)) => conn,
            None => unreachable!("a Tx is consumed when it ends"),
        }
    }

    fn connection_mut(&mut self) -> &mut AnyConnection {
        match &mut self.open {
            Some(Open::Text(conn)) => conn,
            None => unreachable!("a Tx is consumed when it ends"),
        }
    }
}

/// Runs `batch` in the open `tx`; rolls back when a statement fails.
async fn run_in(mut tx: Tx, batch: Batch) -> Result<(Tx, Vec<Outcome>), sqlx::Error> {
    match batch.run(&mut tx).await {
        Ok(outcomes) => Ok((tx, outcomes)),
        Err(err) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback after a failed batch failed");
            }
            Err(err)
        }
    }
}

/// Sends `ROLLBACK` on a connection that may be inside a transaction begun by text; one whose
/// `ROLLBACK` fails (there was nothing to roll back, or the connection is broken) is closed rather
/// than given back, which rolls back whatever it held.
async fn rollback_text(mut conn: Writing) {
    match (&mut *conn).execute(ROLLBACK).await {
        Ok(_) => conn.done(),
        Err(err) => {
            tracing::debug!(error = %err, "ROLLBACK failed; closing the connection");
            conn.discard().await;
        }
    }
}

fn ended() -> sqlx::Error {
    sqlx::Error::Protocol("the transaction has already ended".to_string())
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(Open::Text(conn)) = self.open.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(rollback_text(conn));
                }
                // No runtime to send it from: closing the connection rolls back.
                Err(_) => conn.forget(),
            }
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.connection()
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.connection_mut()
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.open {
            Some(Open::Text(_)) => "open",
            None => "ended",
        };
        f.debug_struct("Tx").field("state", &state).finish()
    }
}
