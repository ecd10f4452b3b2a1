//! SQLite's WAL checkpoints in the server: off the writer's commits, beside the writer four
//! times a second, and once a second on the writer so that the log starts over (README:
//! Performance, "SQLite: checkpoints beside the writer, not inside its commits").

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Db, Dialect};

/// How often the background checkpoint copies the log from a reading connection (SQLite):
/// often enough that each copy is small, and the log is synced at least this often.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Every how many of those rounds the checkpoint ends on the writing connection, so that the
/// log starts over (once a second): that step syncs the log and the database file while every
/// writer waits (9-11 ms on average here at 600 sign-ins/s after the catch-up below, 13-15 ms
/// without it), so it bounds the log's size (about a second of writes) and sets the tail of
/// sign-in latency (README: Performance).
const WRITER_STEP_EVERY: u32 = 4;

/// The checkpoint of every step: copies what it can without waiting for anyone.
const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// Before the writer's step, the reading connection's step runs again while the pass before it
/// left more than this many frames appended behind it (about 1 MiB), at most
/// [`CATCH_UP_AT_MOST`] times, so that the writer's step, which every writer waits for, copies
/// and syncs only what arrived during the last, short, pass (docs/performance.md, "The writer's
/// step after a catch-up").
const CATCH_UP_FRAMES: i64 = 256;
const CATCH_UP_AT_MOST: u32 = 3;

/// Whether the passive step that began with the log `after` frames long had more than
/// [`CATCH_UP_FRAMES`] to copy, the frames appended since the step before it began with the
/// log `before` frames long: a long pass, during which as long a tail may have been appended.
/// A log that started over in between, or a step that failed, ends the catch-up.
fn long_pass(before: Option<i64>, after: Option<i64>) -> bool {
    matches!((before, after), (Some(a), Some(b)) if b - a > CATCH_UP_FRAMES)
}

impl Db {
    /// The server's WAL checkpoints, on SQLite (nothing to do on PostgreSQL). By default SQLite
    /// checkpoints inside the commit that grows the log past 1,000 pages: that commit copies the
    /// log into the database file and syncs it while holding the write lock, so every writer
    /// waits (about a fifth of the sign-ins per second under load, README: Performance). From
    /// here on the writer never checkpoints inside a commit; four times a second this task runs
    /// a passive checkpoint on a reading connection, which copies the bulk of the log beside the
    /// writer and the readers and never waits for them, and once a second after it (and after
    /// up to three more such passes, while each had more than a few frames to copy) one on the
    /// writing connection (queued like any transaction), which copies only what arrived
    /// meanwhile and lets the log start over. Durability is unchanged (the log is synced at
    /// each checkpoint, four times a second); the log holds about a second of writes (up to
    /// about 130 MB under the heaviest sign-in load measured) and is cut back to 64 MiB when it
    /// starts over. Processes that do not run this (the operator CLI) keep SQLite's default.
    pub fn checkpoint_in_background(&self) -> tokio::task::JoinHandle<()> {
        let db = self.clone();
        tokio::spawn(async move {
            if db.dialect != Dialect::Sqlite {
                return;
            }
            db.background_checkpoints.store(true, Ordering::SeqCst);
            // The writing connection exists already: switch it too (new connections read the
            // flag when they open).
            if let Err(err) = db.on_writer("PRAGMA wal_autocheckpoint = 0").await {
                tracing::warn!(error = %err, "could not move checkpoints off the writer");
            }
            for round in 1u64.. {
                tokio::time::sleep(CHECKPOINT_EVERY).await;
                // The bulk beside the writer, then (every WRITER_STEP_EVERY rounds) the rest on
                // it: what the writer appended meanwhile is copied while nobody writes, so the
                // checkpoint can complete and the next transaction starts the log over. Without
                // that second step the log never starts over while writes go on (557 MiB after
                // 15 s of sign-ins).
                let mut log = db.checkpoint_beside().await;
                if round % u64::from(WRITER_STEP_EVERY) != 0 {
                    continue;
                }
                // Before the writer's step, catch up with what was appended during the last
                // pass, while that is more than a few frames: the writer's step, which every
                // writer waits for, then copies and syncs only what arrived during the last,
                // short, pass.
                for _ in 0..CATCH_UP_AT_MOST {
                    let before = log;
                    log = db.checkpoint_beside().await;
                    if !long_pass(before, log) {
                        break;
                    }
                }
                if let Err(err) = db.on_writer(CHECKPOINT).await {
                    tracing::warn!(error = %err, "WAL checkpoint on the writer failed");
                }
            }
        })
    }

    /// A passive checkpoint on a reading connection: the log's length in frames when it
    /// began, or `None` when it failed (logged).
    async fn checkpoint_beside(&self) -> Option<i64> {
        match sqlx::query_as::<_, (i64, i64, i64)>(CHECKPOINT)
            .fetch_one(&self.pool)
            .await
        {
            Ok((_busy, log, _copied)) => Some(log),
            Err(err) => {
                tracing::warn!(error = %err, "WAL checkpoint failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use sqlx::AnyConnection;

    async fn autocheckpoint(conn: &mut AnyConnection) -> i64 {
        sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// The catch-up before the writer's step goes on only after a pass that had more than a
    /// few frames to copy, and stops when the log started over or a step failed.
    #[test]
    fn a_catch_up_pass_follows_only_a_long_one() {
        let long = CATCH_UP_FRAMES + 1;
        assert!(long_pass(Some(1_000), Some(1_000 + long)));
        assert!(!long_pass(Some(1_000), Some(1_000 + CATCH_UP_FRAMES)));
        assert!(!long_pass(Some(1_000), Some(1_000)));
        // Started over between the two steps: shorter than before.
        assert!(!long_pass(Some(20_000), Some(40)));
        assert!(!long_pass(None, Some(long)));
        assert!(!long_pass(Some(0), None));
    }

    /// The checkpoint sequence number in the log's header (bytes 12..16, big-endian): SQLite
    /// raises it each time the log starts over, which it does only after a checkpoint copied
    /// all of it into the database.
    fn log_generation(db_file: &std::path::Path) -> u32 {
        let wal = std::fs::read(db_file.with_extension("db-wal")).unwrap();
        u32::from_be_bytes(wal[12..16].try_into().unwrap())
    }

    async fn insert(db: &Db, rows: usize) {
        let mut tx = db.begin().await.unwrap();
        for _ in 0..rows {
            sqlx::query("INSERT INTO filler (body) VALUES ($1)")
                .bind("x".repeat(4_000))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn the_server_checkpoints_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ckpt.db");
        let url = format!("sqlite://{}", file.display());

        // Without the job, SQLite's default: the writer checkpoints inside its commits.
        let plain = Db::connect(&url).await.unwrap();
        assert_eq!(
            autocheckpoint(&mut plain.write().await.unwrap()).await,
            1_000
        );
        sqlx::query("CREATE TABLE filler (body TEXT NOT NULL)")
            .execute(&mut *plain.write().await.unwrap())
            .await
            .unwrap();
        plain.close().await;

        let db = Db::connect(&url).await.unwrap();
        let job = db.checkpoint_in_background();
        let mut waited = 0;
        while autocheckpoint(&mut db.write().await.unwrap()).await != 0 {
            assert!(waited < 200, "the writer still checkpoints");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        // About 2,000 pages, twice SQLite's threshold: the writer's commit leaves them in the
        // log (with the default it would have copied them itself).
        insert(&db, 2_000).await;
        let before = log_generation(&file);
        // Nobody else checkpoints here, so the log starts over (at the next write) only once the
        // job has copied it all.
        let mut waited = 0;
        while log_generation(&file) == before {
            assert!(
                waited < 300,
                "the background job never checkpointed the log"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            insert(&db, 1).await;
            waited += 1;
        }
        job.abort();
        db.close().await;
    }

    /// Writes that never pause (one transaction after another, with reads beside them) still
    /// let the log start over: the job's last step runs on the writing connection, between
    /// two transactions. A checkpoint from a reading connection alone never completes while
    /// the writer keeps appending, and the log grows without end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("busy.db");
        let db = Db::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (body TEXT NOT NULL)")
            .execute(&mut *db.write().await.unwrap())
            .await
            .unwrap();
        let job = db.checkpoint_in_background();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    // A short read, as the server's are: the newest row.
                    let _: Option<i64> =
                        sqlx::query_scalar("SELECT rowid FROM filler ORDER BY rowid DESC LIMIT 1")
                            .fetch_optional(db.pool())
                            .await
                            .unwrap();
                }
            })
        };
        insert(&db, 10).await;
        let first = log_generation(&file);
        let started = std::time::Instant::now();
        let mut restarts = std::collections::BTreeSet::new();
        // Eight of the job's steps on the writer, 10 pages a transaction and no pause between
        // transactions; measured: 7 restarts with that step, 2-4 without it.
        while started.elapsed() < CHECKPOINT_EVERY * WRITER_STEP_EVERY * 8 {
            insert(&db, 10).await;
            restarts.insert(log_generation(&file));
        }
        stop.store(true, Ordering::SeqCst);
        reader.await.unwrap();
        job.abort();
        db.close().await;
        let restarted = restarts.iter().filter(|g| **g != first).count();
        assert!(
            restarted >= 5,
            "the log started over {restarted} times in eight steps on the writer"
        );
    }
}
