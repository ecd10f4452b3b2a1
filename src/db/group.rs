//! Rows of one table inserted by group commit. Under load many requests each insert one row
//! and commit it on its own: on SQLite each takes the one writing connection (a checkout, the
//! statement, the release ping), on PostgreSQL each is a statement and a commit of its own.
//! [`GroupInsert::insert`] hands its row to one committer task, which inserts every row waiting
//! at the time in one multi-row `INSERT`, one commit, and answers each caller when that commit
//! has returned: what a caller is told is as durable as before, and with one caller waiting
//! nothing changes but a hand-off. A group whose statement fails is inserted again row by row,
//! so that each caller gets its own row's outcome (a unique violation reaches only its owner).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::batch::bound;
use super::{Db, Param};

/// The most rows in one statement: the parameters of a group stay far below either
/// database's limit (SQLite's 32,766), and a group's statement text stays short.
const MAX_ROWS: usize = 64;

/// Inserts into one table by group commit (see the module's text). Clones share the committer.
#[derive(Clone)]
pub struct GroupInsert {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// `INSERT INTO table (columns...)`, without `VALUES`.
    head: &'static str,
    columns: usize,
    /// The committer's queue; a new committer starts when there is none or it ended (its
    /// runtime shut down).
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    statements: AtomicU64,
}

struct Job {
    row: Vec<Param>,
    done: oneshot::Sender<Result<(), sqlx::Error>>,
}

impl std::fmt::Debug for GroupInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupInsert")
            .field("head", &self.inner.head)
            .finish()
    }
}

impl GroupInsert {
    /// Inserts through `db`'s writer with `head` (`INSERT INTO t (a, b)`, a table and columns
    /// of the code, never input), rows of `columns` values.
    pub fn new(db: Db, head: &'static str, columns: usize) -> Self {
        GroupInsert {
            inner: Arc::new(Inner {
                db,
                head,
                columns,
                queue: Mutex::new(None),
                statements: AtomicU64::new(0),
            }),
        }
    }

    /// Inserts `row` and returns when it is committed: its own error when it could not be.
    pub async fn insert(&self, row: Vec<Param>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.inner.columns);
        let (done, answer) = oneshot::channel();
        let job = Job { row, done };
        let job = match self.queue().send(job) {
            Ok(()) => return answer.await.unwrap_or_else(|_| Err(gone())),
            Err(mpsc::error::SendError(job)) => job,
        };
        // No committer to take it (its runtime is shutting down): on its own.
        self.inner.execute(vec![job.row]).await
    }

    /// How many `INSERT` statements it has sent (groups, and rows inserted again one by one).
    pub fn statements(&self) -> u64 {
        self.inner.statements.load(Ordering::Relaxed)
    }

    fn queue(&self) -> mpsc::UnboundedSender<Job> {
        let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = queue.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(commit_groups(self.inner.clone(), receiver));
        *queue = Some(sender.clone());
        sender
    }
}

/// The committer: every row waiting, up to [`MAX_ROWS`], in one statement; then the next.
async fn commit_groups(inner: Arc<Inner>, mut receiver: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_ROWS {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let rows = jobs.iter().map(|j| j.row.clone()).collect();
        match inner.execute(rows).await {
            Ok(()) => {
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(err) if jobs.len() == 1 => {
                let _ = jobs.pop().map(|job| job.done.send(Err(err)));
            }
            Err(err) => {
                tracing::debug!(error = %err, rows = jobs.len(), "a group insert failed; row by row");
                for job in jobs {
                    let outcome = inner.execute(vec![job.row]).await;
                    let _ = job.done.send(outcome);
                }
            }
        }
    }
}

impl Inner {
    /// One `INSERT` of `rows`, committed on its own.
    async fn execute(&self, rows: Vec<Vec<Param>>) -> Result<(), sqlx::Error> {
        let mut sql = format!("{} VALUES ", self.head);
        let mut values = Vec::with_capacity(rows.len() * self.columns);
        for (r, row) in rows.into_iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            let placeholders: Vec<String> = (1..=self.columns)
                .map(|c| format!("${}", values.len() + c))
                .collect();
            sql.push('(');
            sql.push_str(&placeholders.join(", "));
            sql.push(')');
            values.extend(row);
        }
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.db.write().await?.execute(bound(&sql, values)).await?;
        Ok(())
    }
}

fn gone() -> sqlx::Error {
    sqlx::Error::Protocol("the group insert's committer ended before answering".to_string())
}
