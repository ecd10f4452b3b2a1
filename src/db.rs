//! The database: one pool over SQLite or PostgreSQL, transactions, schema migrations, and the
//! only place that knows how the two dialects differ.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, SqlSafeStr};

mod batch;
mod checkpoint;
mod group;
mod json;
mod lend;
mod tx;
mod writer;
pub use batch::{Batch, Outcome, Param};
pub use group::{Committer, GroupInsert, Grouped};
pub use json::{DialectSql, in_json_texts, json_rows, json_rows_text, json_text, json_texts};
pub use lend::Lent;
use lend::Spares;
pub use tx::{Opening, Tx};
use writer::Writer;
pub use writer::Writing;

/// Which database a pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The connection pool plus its dialect. On SQLite, transactions and [`Db::write`] use the one
/// writing connection ([`writer`]): SQLite has one write lock, and writers of this process then
/// queue for it in order instead of sleeping in SQLite's busy handler (which backs off up to
/// 100 ms a try), while reads go on in parallel through [`Db::pool`] (WAL).
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// The pool's connections kept out of it after a clean use ([`lend`]).
    spares: Arc<Spares>,
    /// SQLite's writing connection; `None` on PostgreSQL, where writes take the pool's.
    writer: Option<Writer>,
    dialect: Dialect,
    /// SQLite: whether WAL checkpoints run in the background ([`Db::checkpoint_in_background`])
    /// instead of on the commit that fills the log; read by every new connection.
    background_checkpoints: Arc<AtomicBool>,
}

/// PostgreSQL: a connection idle at least this long is pinged before it is used again; one used
/// more recently than that was pinged when it came back (the same window as HikariCP's
/// `aliveBypassWindowMs`).
pub const PING_IDLE_AFTER: Duration = Duration::from_millis(500);

/// Schema migrations, embedded in the binary: (version, description, SQLite text, PostgreSQL text).
const SCHEMA: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "domains",
        include_str!("../migrations/sqlite/0002_domains.sql"),
        include_str!("../migrations/postgres/0002_domains.sql"),
    ),
    (
        3,
        "managed accounts",
        include_str!("../migrations/sqlite/0003_managed_accounts.sql"),
        include_str!("../migrations/postgres/0003_managed_accounts.sql"),
    ),
    (
        4,
        "saml",
        include_str!("../migrations/sqlite/0004_saml.sql"),
        include_str!("../migrations/postgres/0004_saml.sql"),
    ),
    (
        5,
        "oidc and sign-in",
        include_str!("../migrations/sqlite/0005_oidc_sign_in.sql"),
        include_str!("../migrations/postgres/0005_oidc_sign_in.sql"),
    ),
    (
        6,
        "migration requests",
        include_str!("../migrations/sqlite/0006_migration.sql"),
        include_str!("../migrations/postgres/0006_migration.sql"),
    ),
    (
        7,
        "password throttle",
        include_str!("../migrations/sqlite/0007_password_throttle.sql"),
        include_str!("../migrations/postgres/0007_password_throttle.sql"),
    ),
    (
        8,
        "sessions valid after",
        include_str!("../migrations/sqlite/0008_sessions_valid_after.sql"),
        include_str!("../migrations/postgres/0008_sessions_valid_after.sql"),
    ),
    (
        9,
        "attribute mapping",
        include_str!("../migrations/sqlite/0009_attribute_mapping.sql"),
        include_str!("../migrations/postgres/0009_attribute_mapping.sql"),
    ),
    (
        10,
        "audit log",
        include_str!("../migrations/sqlite/0010_audit_log.sql"),
        include_str!("../migrations/postgres/0010_audit_log.sql"),
    ),
    (
        11,
        "billing",
        include_str!("../migrations/sqlite/0011_billing.sql"),
        include_str!("../migrations/postgres/0011_billing.sql"),
    ),
    (
        12,
        "invitations",
        include_str!("../migrations/sqlite/0012_invitations.sql"),
        include_str!("../migrations/postgres/0012_invitations.sql"),
    ),
    (
        13,
        "tokens and secrets",
        include_str!("../migrations/sqlite/0013_tokens_and_secrets.sql"),
        include_str!("../migrations/postgres/0013_tokens_and_secrets.sql"),
    ),
    (
        14,
        "single logout",
        include_str!("../migrations/sqlite/0014_single_logout.sql"),
        include_str!("../migrations/postgres/0014_single_logout.sql"),
    ),
    (
        15,
        "parked idp-initiated sign-ins",
        include_str!("../migrations/sqlite/0015_parked_sso_sign_ins.sql"),
        include_str!("../migrations/postgres/0015_parked_sso_sign_ins.sql"),
    ),
    (
        16,
        "email ownership and secrets at rest",
        include_str!("../migrations/sqlite/0016_email_ownership_and_secrets_at_rest.sql"),
        include_str!("../migrations/postgres/0016_email_ownership_and_secrets_at_rest.sql"),
    ),
    (
        17,
        "rate limits",
        include_str!("../migrations/sqlite/0017_rate_limits.sql"),
        include_str!("../migrations/postgres/0017_rate_limits.sql"),
    ),
    (
        18,
        "saml connection version",
        include_str!("../migrations/sqlite/0018_saml_connection_version.sql"),
        include_str!("../migrations/postgres/0018_saml_connection_version.sql"),
    ),
    (
        19,
        "saml certificate holds",
        include_str!("../migrations/sqlite/0019_saml_certificate_holds.sql"),
        include_str!("../migrations/postgres/0019_saml_certificate_holds.sql"),
    ),
    (
        22,
        "billing period change",
        include_str!("../migrations/sqlite/0022_billing_period_change.sql"),
        include_str!("../migrations/postgres/0022_billing_period_change.sql"),
    ),
    (
        23,
        "seats used",
        include_str!("../migrations/sqlite/0023_seats_used.sql"),
        include_str!("../migrations/postgres/0023_seats_used.sql"),
    ),
];

impl Db {
    /// Connects to `url` (`sqlite://...` or `postgres://...`); a SQLite file is created if absent.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            anyhow::bail!("NULAB_PASS_DATABASE_URL must start with sqlite:// or postgres://");
        };
        let background_checkpoints = Arc::new(AtomicBool::new(false));
        let (pool, writer) = match dialect {
            Dialect::Sqlite => {
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                // The writer first: it creates the file and switches it to WAL.
                let writer = Writer::open(&url, background_checkpoints.clone()).await?;
                let readers = sqlite_pool(&url, 8, background_checkpoints.clone()).await?;
                (readers, Some(writer))
            }
            Dialect::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    // sqlx pings a connection when it takes it back (that ping stays: it
                    // closes a connection that broke in use and sends a dropped transaction's
                    // rollback at once) and, by default, again before each use: a second
                    // round trip to PostgreSQL per statement outside a transaction, several
                    // per sign-in. A connection checked at its release can have been lost
                    // since only while it sat idle (a restart, a proxy's idle timeout), so
                    // only one idle for PING_IDLE_AFTER is pinged before use; one whose ping
                    // fails is closed and another taken.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_IDLE_AFTER {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect(url)
                    .await?;
                (pool, None)
            }
        };
        Ok(Db {
            pool,
            spares: Arc::new(Spares::new(dialect == Dialect::Postgres)),
            writer,
            dialect,
            background_checkpoints,
        })
    }

    /// Applies every schema migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrations = SCHEMA
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match self.dialect {
                    Dialect::Sqlite => sqlite,
                    Dialect::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The pool, for single reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A reading connection of the pool for reads on a request's own path: given back without
    /// a ping when its holder says its use ended cleanly ([`Lent::done`]; [`lend`]).
    pub async fn read(&self) -> Result<Lent, sqlx::Error> {
        lend::lend(&self.spares, &self.pool).await
    }

    /// A connection for writes outside a transaction (the session store, the jobs' claims): on
    /// SQLite the writing connection, held until the returned value is dropped (never ask for
    /// it while holding a transaction of this `Db`, or a `Writing`: both wait for the one
    /// connection); on PostgreSQL one lent from the pool ([`Db::read`]'s way).
    pub async fn write(&self) -> Result<Writing, sqlx::Error> {
        match &self.writer {
            Some(writer) => writer.lock().await,
            None => Ok(Writing::lent(self.read().await?)),
        }
    }

    /// Runs `sql` on the writing connection; one that fails other than with the database's
    /// own error (its thread gone) is closed, and the next writer opens another.
    async fn on_writer(&self, sql: &'static str) -> Result<(), sqlx::Error> {
        let mut writing = self.write().await?;
        match (&mut *writing).execute(sql).await {
            Ok(_) => Ok(()),
            Err(err) => {
                if !matches!(err, sqlx::Error::Database(_)) {
                    writing.discard().await;
                }
                Err(err)
            }
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Round-trips a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.spares.close().await;
        self.pool.close().await;
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
    }
}

/// A SQLite pool of `size` connections on `url`.
async fn sqlite_pool(
    url: &str,
    size: u32,
    background_checkpoints: Arc<AtomicBool>,
) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection lives in this process (a thread of sqlx's): nothing can take it
        // away between its release, where sqlx pings it, and its next use, so the default ping
        // before each use would only cost a hand-off to that thread and back, several per
        // sign-in.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let background = background_checkpoints.load(Ordering::SeqCst);
            Box::pin(async move { prepare_sqlite(conn, background).await })
        })
        .connect(url)
        .await
}

/// What every SQLite connection of the server is set to when it opens. WAL lets readers go on
/// beside the writer and the CLI and jobs write while the server runs; synchronous = NORMAL
/// syncs at checkpoints, not at each commit (a power cut may lose the last commits, never
/// corrupt the file: see README, Performance); the busy timeout makes writers of other
/// processes wait. The log file is cut back to 64 MiB whenever it starts over. With
/// `background_checkpoints`, no commit checkpoints ([`Db::checkpoint_in_background`]).
async fn prepare_sqlite(
    conn: &mut AnyConnection,
    background_checkpoints: bool,
) -> Result<(), sqlx::Error> {
    conn.execute(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 30000; \
         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
         PRAGMA journal_size_limit = 67108864;",
    )
    .await?;
    if background_checkpoints {
        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
    }
    Ok(())
}

/// The row-locking suffix for "claim some due rows" sub-selects: several server instances may
/// claim at once on PostgreSQL; SQLite serialises writers, so it needs none.
pub fn skip_locked(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

/// Whether `err` is a unique-constraint violation (both databases).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Booleans are stored as integers so one query text works on both databases.
pub fn flag(value: bool) -> i64 {
    i64::from(value)
}
